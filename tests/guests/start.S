/* Test guest entry points.
 *
 * _start: 64-bit entry as warren-vmm provides it (long mode, identity
 * page tables, interrupts off).
 * pvh_start: 32-bit protected-mode entry from a PVH loader (QEMU microvm,
 * XEN_ELFNOTE_PHYS32_ENTRY): builds page tables for the low 1 GiB and
 * enters long mode, then joins _start.
 *
 * Both first write the boot marker port (0x3f0) and then one byte ('>') to
 * COM1, so a benchmark can time "first guest instruction" and "first serial
 * byte" the same way under any VMM. */
#define BOOT_MARKER_PORT 0x3f0
#define COM1 0x3f8

	.section .note.Xen, "a"
	.balign 4
	.long 4          /* name size: "Xen\0" */
	.long 4          /* descriptor size */
	.long 18         /* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.long pvh_start

	.section .text.entry, "ax"
	.code64
	.globl _start
_start:
	mov $BOOT_MARKER_PORT, %dx
	out %al, %dx
	mov $COM1, %dx
	mov $'>', %al
	out %al, %dx
	lea boot_stack_top(%rip), %rsp
	call guest_setup
	call guest_main
	mov $1, %edi
	call guest_exit
1:	hlt
	jmp 1b

	.code32
	.globl pvh_start
pvh_start:
	cli
	mov $BOOT_MARKER_PORT, %dx
	out %al, %dx
	mov $COM1, %dx
	mov $'>', %al
	out %al, %dx
	/* PML4[0] -> PDPT, PDPT[0] -> PD, PD[i] = i * 2 MiB (1 GiB) */
	mov $pvh_pdpt, %eax
	or $7, %eax
	mov %eax, pvh_pml4
	mov $pvh_pd, %eax
	or $7, %eax
	mov %eax, pvh_pdpt
	xor %ecx, %ecx
2:	mov %ecx, %eax
	shl $21, %eax
	or $0x87, %eax
	mov %eax, pvh_pd(,%ecx,8)
	inc %ecx
	cmp $512, %ecx
	jne 2b
	mov $pvh_pml4, %eax
	mov %eax, %cr3
	mov %cr4, %eax
	or $0x20, %eax          /* PAE */
	mov %eax, %cr4
	mov $0xc0000080, %ecx   /* EFER.LME */
	rdmsr
	or $0x100, %eax
	wrmsr
	mov %cr0, %eax
	or $0x80000001, %eax    /* PG | PE */
	mov %eax, %cr0
	lgdt pvh_gdt_descriptor
	ljmp $0x08, $3f
	.code64
3:	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	lea boot_stack_top(%rip), %rsp
	call guest_setup
	call guest_main
	mov $1, %edi
	call guest_exit
4:	hlt
	jmp 4b

	.section .rodata
	.balign 8
pvh_gdt:
	.quad 0
	.quad 0x00af9b000000ffff  /* 0x08 code64 */
	.quad 0x00cf93000000ffff  /* 0x10 data */
pvh_gdt_descriptor:
	.word pvh_gdt_descriptor - pvh_gdt - 1
	.long pvh_gdt

	.section .bss
	.balign 4096
pvh_pml4: .skip 4096
pvh_pdpt: .skip 4096
pvh_pd: .skip 4096
	.balign 16
	.skip 16384
	.globl boot_stack_top
boot_stack_top:

/* Interrupt stubs: vectors 0-47 push (error code or 0) and the vector,
 * then guest_interrupt(frame) runs and iretq returns. */
	.text
	.code64
.macro STUB vector
	.balign 16
	.if (\vector == 8) || (\vector >= 10 && \vector <= 14) || (\vector == 17) || (\vector == 21) || (\vector == 29) || (\vector == 30)
	.else
	push $0
	.endif
	push $\vector
	jmp interrupt_common
.endm
	.balign 16
	.globl interrupt_stubs
interrupt_stubs:
	.altmacro
	.set vector, 0
	.rept 48
	STUB %vector
	.set vector, vector + 1
	.endr
	.noaltmacro

interrupt_common:
	push %rax
	push %rcx
	push %rdx
	push %rsi
	push %rdi
	push %r8
	push %r9
	push %r10
	push %r11
	mov %rsp, %rdi
	call guest_interrupt
	pop %r11
	pop %r10
	pop %r9
	pop %r8
	pop %rdi
	pop %rsi
	pop %rdx
	pop %rcx
	pop %rax
	add $16, %rsp
	iretq

/* SYSCALL lands here (LSTAR): rcx = user rip, r11 = user rflags. */
	.globl syscall_entry
syscall_entry:
	lea syscall_stack_top(%rip), %rsp
	mov %rax, %rdi
	call guest_syscall
5:	hlt
	jmp 5b

	.section .bss
	.balign 16
	.skip 8192
syscall_stack_top:

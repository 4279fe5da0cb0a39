/* Runtime of the test guests: console, exit, GDT/TSS/IDT, user mode. */
#include "guest.h"

struct tss {
	uint32_t reserved0;
	uint64_t rsp0, rsp1, rsp2;
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3, iomap_base;
} __attribute__((packed));

struct idt_entry {
	uint16_t offset_low, selector;
	uint8_t ist, type;
	uint16_t offset_middle;
	uint32_t offset_high, reserved;
} __attribute__((packed));

struct descriptor_pointer {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

extern char interrupt_stubs[];
extern char syscall_entry[];
static uint64_t gdt[7] __attribute__((aligned(16)));
static struct tss tss __attribute__((aligned(16)));
static struct idt_entry idt[48] __attribute__((aligned(16)));
static void (*handlers[48])(struct interrupt_frame *frame);
static uint8_t kernel_stack[8192] __attribute__((aligned(16)));
static uint8_t user_stack[8192] __attribute__((aligned(16)));

void guest_puts(const char *text)
{
	while (*text)
		outb(PORT_COM1, (uint8_t)*text++);
}

void guest_put_hex(uint64_t value)
{
	char text[19] = "0x";

	for (int i = 0; i < 16; i++)
		text[2 + i] = "0123456789abcdef"[(value >> (60 - 4 * i)) & 0xf];
	text[18] = 0;
	guest_puts(text);
}

void guest_exit(int code)
{
	outb(PORT_DEBUG_EXIT, (uint8_t)code);
	for (;;)
		__asm__ volatile("cli; hlt");
}

void guest_set_handler(unsigned vector, void (*handler)(struct interrupt_frame *frame))
{
	if (vector < 48)
		handlers[vector] = handler;
}

void guest_interrupt(struct interrupt_frame *frame)
{
	if (frame->vector < 48 && handlers[frame->vector]) {
		handlers[frame->vector](frame);
		return;
	}
	guest_puts("unexpected exception ");
	guest_put_hex(frame->vector);
	guest_puts(" error ");
	guest_put_hex(frame->error);
	guest_puts(" rip ");
	guest_put_hex(frame->rip);
	guest_puts(" cs ");
	guest_put_hex(frame->cs);
	guest_puts("\n");
	guest_exit(GUEST_UNEXPECTED_EXCEPTION);
}

void guest_setup(void)
{
	struct descriptor_pointer pointer;
	uint64_t tss_base = (uint64_t)&tss;

	gdt[0] = 0;
	gdt[1] = 0x00af9b000000ffffull; /* kernel code64 */
	gdt[2] = 0x00cf93000000ffffull; /* kernel data */
	gdt[3] = 0x00cff3000000ffffull; /* user data, DPL 3 */
	gdt[4] = 0x00affb000000ffffull; /* user code64, DPL 3 */
	gdt[5] = (sizeof(tss) - 1) | ((tss_base & 0xffffff) << 16) | (0x89ull << 40) |
		 ((tss_base >> 24) & 0xff) << 56;
	gdt[6] = tss_base >> 32;
	tss.rsp0 = (uint64_t)(kernel_stack + sizeof(kernel_stack));
	tss.iomap_base = sizeof(tss);

	pointer.limit = sizeof(gdt) - 1;
	pointer.base = (uint64_t)gdt;
	__asm__ volatile("lgdt %0" : : "m"(pointer));
	__asm__ volatile("pushq %0; leaq 1f(%%rip), %%rax; pushq %%rax; lretq; 1:"
			 :
			 : "i"(KERNEL_CS)
			 : "rax", "memory");
	__asm__ volatile("mov %0, %%ds; mov %0, %%es; mov %0, %%ss" : : "r"(KERNEL_DS));
	__asm__ volatile("ltr %0" : : "r"((uint16_t)TSS_SELECTOR));

	for (int i = 0; i < 48; i++) {
		uint64_t address = (uint64_t)(interrupt_stubs + 16 * i);

		idt[i].offset_low = (uint16_t)address;
		idt[i].selector = KERNEL_CS;
		idt[i].ist = 0;
		idt[i].type = 0x8e; /* present, DPL 0, interrupt gate */
		idt[i].offset_middle = (uint16_t)(address >> 16);
		idt[i].offset_high = (uint32_t)(address >> 32);
		idt[i].reserved = 0;
	}
	pointer.limit = sizeof(idt) - 1;
	pointer.base = (uint64_t)idt;
	__asm__ volatile("lidt %0" : : "m"(pointer));
}

void guest_enter_user(void (*fn)(void))
{
	uint64_t user_rsp = (uint64_t)(user_stack + sizeof(user_stack) - 8);

	__asm__ volatile("pushq %0\n\t" /* SS */
			 "pushq %1\n\t" /* RSP */
			 "pushq %2\n\t" /* RFLAGS: IOPL 3, IF 0 */
			 "pushq %3\n\t" /* CS */
			 "pushq %4\n\t" /* RIP */
			 "iretq"
			 :
			 : "i"(USER_DS | 3), "r"(user_rsp), "i"(0x3002), "i"(USER_CS | 3),
			   "r"((uint64_t)fn)
			 : "memory");
	__builtin_unreachable();
}

#define MSR_EFER   0xc0000080u
#define MSR_STAR   0xc0000081u
#define MSR_LSTAR  0xc0000082u
#define MSR_SFMASK 0xc0000084u

void guest_enable_syscall(void)
{
	/* SYSCALL: CS = STAR[47:32], SS = +8; SYSRET: SS = STAR[63:48] + 8,
	 * CS = +16 (Intel SDM vol. 2B, SYSCALL/SYSRET) */
	wrmsr(MSR_STAR, ((uint64_t)(KERNEL_DS | 3) << 48) | ((uint64_t)KERNEL_CS << 32));
	wrmsr(MSR_LSTAR, (uint64_t)syscall_entry);
	wrmsr(MSR_SFMASK, 0x700); /* TF, IF, DF */
	wrmsr(MSR_EFER, rdmsr(MSR_EFER) | 1);
}

__attribute__((weak)) void guest_syscall(uint64_t rax)
{
	guest_puts("unexpected SYSCALL\n");
	guest_exit(GUEST_FAIL);
}

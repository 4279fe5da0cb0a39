/* syscall-probe: runs a loop at CPL3, then SYSCALL. Exit code 0: SYSCALL
 * reached the guest kernel's LSTAR handler (hardware KVM); 2: it did not
 * (an exception arrived instead, or SYSCALL fell through; printed). The
 * CPL3 part touches no ports (IOPL 3 is not honoured on kvm_pvm hosts): it
 * records its progress in memory and leaves CPL3 through ud2 if SYSCALL
 * falls through. */
#include "guest.h"

/* 1: CPL3 loop done, 2: SYSCALL fell through, 3: SYSCALL reached LSTAR but
 * still at CPL3 (what kvm_pvm does) */
static volatile int progress;
static volatile uint16_t syscall_cs;

static volatile uint64_t user_sum;

static void user_code(void)
{
	for (uint64_t i = 0; i < 10000000; i++)
		user_sum += i;
	progress = 1;
	__asm__ volatile("mov $42, %%eax; syscall" : : : "rax", "rcx", "r11", "memory");
	progress = 2;
	__asm__ volatile("ud2");
}

void guest_syscall(uint64_t rax)
{
	uint16_t cs;

	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	if (cs & 3) {
		syscall_cs = cs;
		progress = 3;
		__asm__ volatile("ud2"); /* back to CPL0 through the IDT */
	}
	guest_puts(progress == 1 ? "cpl3 loop done\n" : "cpl3 loop not done\n");
	guest_puts(rax == 42 ? "SYSCALL reached the guest kernel\n"
			     : "SYSCALL reached the guest kernel with a wrong rax\n");
	guest_exit(rax == 42 ? GUEST_PASS : GUEST_FAIL);
}

static void exception(struct interrupt_frame *frame)
{
	guest_puts(progress >= 1 ? "cpl3 loop done\n" : "cpl3 loop not done\n");
	if (progress == 2) {
		guest_puts("SYSCALL did not reach the guest kernel: it fell through at CPL3\n");
	} else if (progress == 3) {
		guest_puts(
		    "SYSCALL did not reach the guest kernel: it jumped to LSTAR but stayed at "
		    "CPL3, cs ");
		guest_put_hex(syscall_cs);
		guest_puts("\n");
	} else {
		guest_puts("SYSCALL did not reach the guest kernel: exception ");
		guest_put_hex(frame->vector);
		guest_puts(" at rip ");
		guest_put_hex(frame->rip);
		guest_puts(" cs ");
		guest_put_hex(frame->cs);
		guest_puts("\n");
	}
	guest_exit(GUEST_SYSCALL_NOT_REACHED);
}

void guest_main(void)
{
	for (unsigned vector = 0; vector < 32; vector++)
		guest_set_handler(vector, exception);
	guest_enable_syscall();
	guest_puts("entering CPL3\n");
	guest_enter_user(user_code);
}

/* triple-fault: with an empty IDT any exception escalates to a triple
 * fault; the VM must stop with exit reason "shutdown". */
#include "guest.h"

void guest_main(void)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) empty = {0, 0};

	guest_puts("triple faulting\n");
	__asm__ volatile("lidt %0" : : "m"(empty));
	__asm__ volatile("ud2");
	guest_puts("still running after the fault\n");
	guest_exit(GUEST_FAIL);
}

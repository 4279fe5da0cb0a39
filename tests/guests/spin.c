/* spin: never exits on its own (CPL3 loop, native speed even on kvm_pvm);
 * the VMM's watchdog or a stop request must end it. */
#include "guest.h"

static void spin(void)
{
	for (;;)
		__asm__ volatile("" ::: "memory");
}

void guest_main(void)
{
	guest_puts("spinning\n");
	guest_enter_user(spin);
}

/* reset: asks the i8042 keyboard controller to pulse the reset line, as
 * Linux's reboot=k does; the VM must stop with exit reason "reset". */
#include "guest.h"

void guest_main(void)
{
	guest_puts("resetting\n");
	while (inb(0x64) & 0x02)
		;
	outb(0x64, 0xfe);
	guest_puts("still running after reset\n");
	guest_exit(GUEST_FAIL);
}

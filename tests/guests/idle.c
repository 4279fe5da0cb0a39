/* idle: prints a line, then halts with interrupts off forever (a VMM
 * memory benchmark samples the process while it sits there). */
#include "guest.h"

void guest_main(void)
{
	guest_puts("idle guest up\n");
	for (;;)
		__asm__ volatile("cli; hlt");
}

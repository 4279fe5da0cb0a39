/* hello: prints a line on COM1 and reports pass on the debug-exit port. */
#include "guest.h"

void guest_main(void)
{
	guest_puts("hello from warren guest\n");
	guest_exit(GUEST_PASS);
}

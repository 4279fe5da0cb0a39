/* roundtrip: port and MMIO accesses of every size reach the VMM's test
 * register and come back (it answers the complement of the last write, so
 * plain RAM or a dropped access fails). */
#include "guest.h"

static int failures;

static void check(const char *what, uint64_t got, uint64_t expected)
{
	if (got == expected)
		return;
	failures++;
	guest_puts("mismatch ");
	guest_puts(what);
	guest_puts(": got ");
	guest_put_hex(got);
	guest_puts(" expected ");
	guest_put_hex(expected);
	guest_puts("\n");
}

void guest_main(void)
{
	volatile uint8_t *mmio8 = (volatile uint8_t *)TEST_MMIO_BASE;
	volatile uint16_t *mmio16 = (volatile uint16_t *)TEST_MMIO_BASE;
	volatile uint32_t *mmio32 = (volatile uint32_t *)TEST_MMIO_BASE;
	volatile uint64_t *mmio64 = (volatile uint64_t *)TEST_MMIO_BASE;

	outb(PORT_TEST, 0x5a);
	check("port 8", inb(PORT_TEST), 0xa5);
	outw(PORT_TEST, 0x1234);
	check("port 16", inw(PORT_TEST), 0xedcb);
	outl(PORT_TEST, 0xdeadbeef);
	check("port 32", inl(PORT_TEST), 0x21524110);
	*mmio8 = 0x0f;
	check("mmio 8", *mmio8, 0xf0);
	*mmio16 = 0x8001;
	check("mmio 16", *mmio16, 0x7ffe);
	*mmio32 = 0x01020304;
	check("mmio 32", *mmio32, 0xfefdfcfb);
	*mmio64 = 0x0123456789abcdefull;
	check("mmio 64", *mmio64, 0xfedcba9876543210ull);
	check("unhandled port", inb(0x2e8), 0xff);
	if (failures == 0) {
		guest_puts("roundtrip ok\n");
		guest_exit(GUEST_PASS);
	}
	guest_exit(GUEST_FAIL);
}

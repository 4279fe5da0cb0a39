/* timer: the 8254 PIT (channel 0, ~1 kHz) through the 8259 PIC (IRQ 0 ->
 * vector 32) interrupts the guest; passes after 10 ticks. */
#include "guest.h"

#define TICKS_WANTED 10

static volatile unsigned ticks;

static void timer_tick(struct interrupt_frame *frame)
{
	ticks++;
	outb(0x20, 0x20); /* EOI */
}

static void spurious(struct interrupt_frame *frame)
{
	if (frame->vector >= 40)
		outb(0xa0, 0x20);
	outb(0x20, 0x20);
}

void guest_main(void)
{
	for (unsigned vector = 33; vector < 48; vector++)
		guest_set_handler(vector, spurious);
	guest_set_handler(32, timer_tick);
	/* 8259 PIC: ICW1-4, master at 0x20 (vectors 32-39), slave at 0x28 */
	outb(0x20, 0x11);
	outb(0xa0, 0x11);
	outb(0x21, 32);
	outb(0xa1, 40);
	outb(0x21, 4);
	outb(0xa1, 2);
	outb(0x21, 1);
	outb(0xa1, 1);
	outb(0x21, 0xfe); /* only IRQ 0 */
	outb(0xa1, 0xff);
	/* PIT channel 0, lobyte/hibyte, mode 2, divisor 1193 (~1 kHz) */
	outb(0x43, 0x34);
	outb(0x40, 1193 & 0xff);
	outb(0x40, 1193 >> 8);
	__asm__ volatile("sti");
	while (ticks < TICKS_WANTED)
		__asm__ volatile("hlt");
	__asm__ volatile("cli");
	guest_puts("timer ok\n");
	guest_exit(GUEST_PASS);
}

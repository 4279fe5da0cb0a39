/* serial_irq: the UART raises IRQ 4 (THR empty) through the 8259 PIC when
 * IER enables it, as Linux's 8250 driver uses it; IIR reports the cause and
 * reading it acknowledges. Passes after interrupts for 3 transmitted bytes. */
#include "guest.h"

#define COM1_IER (PORT_COM1 + 1)
#define COM1_IIR (PORT_COM1 + 2)

static volatile unsigned interrupts;
static volatile uint8_t last_iir;

static void serial_interrupt(struct interrupt_frame *frame)
{
	last_iir = inb(COM1_IIR); /* acknowledges THRE */
	interrupts++;
	outb(0x20, 0x20);
}

static void spurious(struct interrupt_frame *frame)
{
	if (frame->vector >= 40)
		outb(0xa0, 0x20);
	outb(0x20, 0x20);
}

void guest_main(void)
{
	for (unsigned vector = 32; vector < 48; vector++)
		guest_set_handler(vector, spurious);
	guest_set_handler(36, serial_interrupt);
	outb(0x20, 0x11);
	outb(0xa0, 0x11);
	outb(0x21, 32);
	outb(0xa1, 40);
	outb(0x21, 4);
	outb(0xa1, 2);
	outb(0x21, 1);
	outb(0xa1, 1);
	outb(0x21, 0xef); /* only IRQ 4 */
	outb(0xa1, 0xff);
	if ((inb(COM1_IIR) & 0x0f) != 0x01) { /* nothing pending before IER */
		guest_puts("IIR reports an interrupt before IER enabled one\n");
		guest_exit(GUEST_FAIL);
	}
	__asm__ volatile("sti");
	outb(COM1_IER, 0x02); /* THRI: raises at once, THR is empty */
	for (unsigned wanted = 1; wanted <= 3; wanted++) {
		for (unsigned spins = 0; interrupts < wanted && spins < 100000; spins++)
			__asm__ volatile("pause");
		if (interrupts < wanted || (last_iir & 0x0f) != 0x02) {
			__asm__ volatile("cli");
			guest_puts("missing THRE interrupt\n");
			guest_exit(GUEST_FAIL);
		}
		outb(PORT_COM1, (uint8_t)('0' + wanted)); /* THR write re-arms THRE */
	}
	__asm__ volatile("cli");
	outb(COM1_IER, 0);
	guest_puts("\nserial irq ok\n");
	guest_exit(GUEST_PASS);
}

/* serial: a 16550A UART as Linux's 8250 driver sees it (THR/RBR, IER, IIR/
 * FCR, LCR, MCR, LSR, MSR, SCR and the divisor latch), output only: the
 * receive side never has data. Interrupts (THR empty) are reported through
 * set_irq as a level the caller forwards to the PIC/IOAPIC line. */
#ifndef WARREN_VMM_SERIAL_H
#define WARREN_VMM_SERIAL_H

#include <pthread.h>
#include <stdint.h>

#include "mmio_bus.h"

#define SERIAL_COM1_BASE 0x3f8
#define SERIAL_COM1_IRQ	 4

struct serial {
	pthread_mutex_t lock;
	uint8_t ier, lcr, mcr, scr, fcr, divisor_low, divisor_high;
	int thr_empty_pending; /* THRE interrupt condition not yet acknowledged */
	int irq_level;
	void (*output)(void *opaque, uint8_t byte);
	void (*set_irq)(void *opaque, int level);
	void *opaque;
};

/* Initialises a UART whose transmitted bytes go to output(opaque, byte) and
 * whose interrupt line goes to set_irq(opaque, level) (may be NULL). */
void serial__init(struct serial *serial, void (*output)(void *opaque, uint8_t byte),
		  void (*set_irq)(void *opaque, int level), void *opaque);

/* Port handlers for [base, base + 8). */
extern const struct mmio_bus_ops serial__ops;

#endif

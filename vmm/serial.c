/* serial: 16550A register model (National Semiconductor PC16550D data
 * sheet; Linux drivers/tty/serial/8250/8250_port.c is what probes it). */
#include "serial.h"

#include <string.h>

#define REG_DATA 0 /* RBR/THR, DLL when DLAB */
#define REG_IER	 1 /* DLM when DLAB */
#define REG_IIR	 2 /* FCR on write */
#define REG_LCR	 3
#define REG_MCR	 4
#define REG_LSR	 5
#define REG_MSR	 6
#define REG_SCR	 7

#define LCR_DLAB	 0x80
#define IER_RDI		 0x01
#define IER_THRI	 0x02
#define IIR_NO_INTERRUPT 0x01
#define IIR_THRI	 0x02
#define IIR_FIFO_ENABLED 0xc0
#define FCR_ENABLE_FIFO	 0x01
#define LSR_THRE	 0x20
#define LSR_TEMT	 0x40
#define MCR_DTR		 0x01
#define MCR_RTS		 0x02
#define MCR_OUT1	 0x04
#define MCR_OUT2	 0x08
#define MCR_LOOP	 0x10
#define MSR_CTS		 0x10
#define MSR_DSR		 0x20
#define MSR_RI		 0x40
#define MSR_DCD		 0x80

void serial__init(struct serial *serial, void (*output)(void *opaque, uint8_t byte),
		  void (*set_irq)(void *opaque, int level), void *opaque)
{
	memset(serial, 0, sizeof(*serial));
	pthread_mutex_init(&serial->lock, NULL);
	serial->output = output;
	serial->set_irq = set_irq;
	serial->opaque = opaque;
	serial->mcr = MCR_OUT2;
	serial->divisor_low = 12; /* 9600 baud */
}

/* Called with the lock held. */
static void serial__update_irq(struct serial *serial)
{
	int level = (serial->ier & IER_THRI) && serial->thr_empty_pending;

	if (level != serial->irq_level) {
		serial->irq_level = level;
		if (serial->set_irq)
			serial->set_irq(serial->opaque, level);
	}
}

static uint8_t serial__read_register(struct serial *serial, uint64_t offset)
{
	uint8_t value = 0;

	switch (offset) {
	case REG_DATA:
		value = (serial->lcr & LCR_DLAB) ? serial->divisor_low : 0; /* no input */
		break;
	case REG_IER:
		value = (serial->lcr & LCR_DLAB) ? serial->divisor_high : serial->ier;
		break;
	case REG_IIR:
		value = (serial->fcr & FCR_ENABLE_FIFO) ? IIR_FIFO_ENABLED : 0;
		if ((serial->ier & IER_THRI) && serial->thr_empty_pending) {
			value |= IIR_THRI;
			serial->thr_empty_pending = 0; /* reading IIR acknowledges THRE */
		} else {
			value |= IIR_NO_INTERRUPT;
		}
		break;
	case REG_LCR:
		value = serial->lcr;
		break;
	case REG_MCR:
		value = serial->mcr;
		break;
	case REG_LSR:
		value = LSR_THRE | LSR_TEMT; /* we transmit at once; never data ready */
		break;
	case REG_MSR:
		if (serial->mcr & MCR_LOOP) {
			value = ((serial->mcr & MCR_DTR) ? MSR_DSR : 0) |
				((serial->mcr & MCR_RTS) ? MSR_CTS : 0) |
				((serial->mcr & MCR_OUT1) ? MSR_RI : 0) |
				((serial->mcr & MCR_OUT2) ? MSR_DCD : 0);
		} else {
			value = MSR_DCD | MSR_DSR | MSR_CTS;
		}
		break;
	case REG_SCR:
		value = serial->scr;
		break;
	default:
		break;
	}
	return value;
}

static void serial__write_register(struct serial *serial, uint64_t offset, uint8_t value)
{
	switch (offset) {
	case REG_DATA:
		if (serial->lcr & LCR_DLAB) {
			serial->divisor_low = value;
			break;
		}
		if (!(serial->mcr & MCR_LOOP) && serial->output)
			serial->output(serial->opaque, value);
		serial->thr_empty_pending = 1; /* transmitted at once: empty again */
		break;
	case REG_IER:
		if (serial->lcr & LCR_DLAB) {
			serial->divisor_high = value;
			break;
		}
		/* enabling THRI with an empty THR raises the interrupt at once */
		if ((value & IER_THRI) && !(serial->ier & IER_THRI))
			serial->thr_empty_pending = 1;
		serial->ier = value & 0x0f;
		break;
	case REG_IIR:
		serial->fcr = value;
		break;
	case REG_LCR:
		serial->lcr = value;
		break;
	case REG_MCR:
		serial->mcr = value & 0x1f;
		break;
	case REG_SCR:
		serial->scr = value;
		break;
	default: /* LSR, MSR: read only */
		break;
	}
}

static void serial__read(void *opaque, uint64_t offset, uint8_t *data, uint32_t size)
{
	struct serial *serial = opaque;

	pthread_mutex_lock(&serial->lock);
	for (uint32_t i = 0; i < size && offset + i < 8; i++)
		data[i] = serial__read_register(serial, offset + i);
	serial__update_irq(serial);
	pthread_mutex_unlock(&serial->lock);
}

static void serial__write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t size)
{
	struct serial *serial = opaque;

	pthread_mutex_lock(&serial->lock);
	for (uint32_t i = 0; i < size && offset + i < 8; i++)
		serial__write_register(serial, offset + i, data[i]);
	serial__update_irq(serial);
	pthread_mutex_unlock(&serial->lock);
}

const struct mmio_bus_ops serial__ops = {
    .read = serial__read,
    .write = serial__write,
};

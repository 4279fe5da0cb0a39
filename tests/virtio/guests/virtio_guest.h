/* virtio_guest: a minimal virtio-mmio v2 driver for the freestanding test
 * guests (tests/guests/ runtime). Runs at CPL3 (native speed on kvm_pvm):
 * the identity map is user-accessible, ports work with IOPL 3. Polls the
 * used ring, interrupts stay off. Split rings, no EVENT_IDX, no indirect. */
#ifndef WARREN_TESTS_VIRTIO_GUEST_H
#define WARREN_TESTS_VIRTIO_GUEST_H

#include <stdint.h>

#include "guest.h"

#define VIRTIO_WINDOW(n) (0xd0000000ul + 0x1000ul * (n))
#define QUEUE_SIZE	 16

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct guest_queue {
	struct vring_desc desc[QUEUE_SIZE] __attribute__((aligned(16)));
	uint16_t avail[3 + QUEUE_SIZE] __attribute__((aligned(4096)));
	uint16_t used[3 + 4 * QUEUE_SIZE] __attribute__((aligned(4096)));
	uint16_t avail_idx;
	uint16_t used_seen;
};

static inline void barrier(void)
{
	__asm__ volatile("" ::: "memory");
}

static inline uint32_t mmio_read(uint64_t base, uint32_t offset)
{
	return *(volatile uint32_t *)(base + offset);
}

static inline void mmio_write(uint64_t base, uint32_t offset, uint32_t value)
{
	*(volatile uint32_t *)(base + offset) = value;
}

static __attribute__((unused)) void guest_fail(const char *why)
{
	guest_puts("FAIL: ");
	guest_puts(why);
	guest_puts("\n");
	guest_exit(GUEST_FAIL);
}

/* Port output from CPL3: IOPL 3 is not honoured on every host (kvm_pvm
 * raises #GP), so the #GP handler (CPL0) emulates `out %al, (%dx)`. */
static __attribute__((unused)) void emulate_port_output(struct interrupt_frame *frame)
{
	const uint8_t *instruction = (const uint8_t *)frame->rip;

	if ((frame->cs & 3) != 3 || instruction[0] != 0xee) {
		guest_puts("unexpected #GP\n");
		guest_exit(GUEST_UNEXPECTED_EXCEPTION);
	}
	outb((uint16_t)frame->rdx, (uint8_t)frame->rax);
	frame->rip += 1;
}

static inline void virtio_guest__enter_user(void (*fn)(void))
{
	guest_set_handler(13, emulate_port_output);
	guest_enter_user(fn);
}

/* 3.1.1 driver initialisation up to FEATURES_OK; returns 0 or fails. */
static __attribute__((unused)) void virtio_guest__init(uint64_t base, uint32_t device_id,
						       uint32_t features_low)
{
	if (mmio_read(base, 0x000) != 0x74726976 || mmio_read(base, 0x004) != 2)
		guest_fail("no virtio-mmio v2 device");
	if (mmio_read(base, 0x008) != device_id)
		guest_fail("unexpected device id");
	mmio_write(base, 0x070, 0);
	mmio_write(base, 0x070, 1);
	mmio_write(base, 0x070, 3);
	mmio_write(base, 0x014, 1);
	if (!(mmio_read(base, 0x010) & 1))
		guest_fail("device lacks VERSION_1");
	mmio_write(base, 0x024, 0);
	mmio_write(base, 0x020, features_low);
	mmio_write(base, 0x024, 1);
	mmio_write(base, 0x020, 1); /* VERSION_1 */
	mmio_write(base, 0x070, 3 | 8);
	if (!(mmio_read(base, 0x070) & 8))
		guest_fail("FEATURES_OK refused");
}

static __attribute__((unused)) void virtio_guest__queue(uint64_t base, unsigned index,
							struct guest_queue *q)
{
	mmio_write(base, 0x030, index);
	if (mmio_read(base, 0x034) < QUEUE_SIZE)
		guest_fail("queue too small");
	mmio_write(base, 0x038, QUEUE_SIZE);
	mmio_write(base, 0x080, (uint32_t)(uint64_t)q->desc);
	mmio_write(base, 0x084, (uint32_t)((uint64_t)q->desc >> 32));
	mmio_write(base, 0x090, (uint32_t)(uint64_t)q->avail);
	mmio_write(base, 0x094, (uint32_t)((uint64_t)q->avail >> 32));
	mmio_write(base, 0x0a0, (uint32_t)(uint64_t)q->used);
	mmio_write(base, 0x0a4, (uint32_t)((uint64_t)q->used >> 32));
	mmio_write(base, 0x044, 1);
	if (mmio_read(base, 0x044) != 1)
		guest_fail("queue not ready");
}

static __attribute__((unused)) void virtio_guest__driver_ok(uint64_t base)
{
	mmio_write(base, 0x070, 1 | 2 | 8 | 4);
	if ((mmio_read(base, 0x070) & 0x44) != 4)
		guest_fail("DRIVER_OK refused or NEEDS_RESET");
}

/* Offers the chain starting at head and notifies. */
static __attribute__((unused)) void virtio_guest__publish(uint64_t base, unsigned index,
							  struct guest_queue *q, uint16_t head)
{
	q->avail[2 + (q->avail_idx % QUEUE_SIZE)] = head;
	barrier();
	q->avail_idx++;
	*(volatile uint16_t *)&q->avail[1] = q->avail_idx;
	barrier();
	mmio_write(base, 0x050, index);
}

/* Waits (bounded spin) for the next used element; returns its length. */
static __attribute__((unused)) uint32_t virtio_guest__wait_used(struct guest_queue *q, uint32_t *id)
{
	uint32_t *element;

	for (uint64_t spins = 0; *(volatile uint16_t *)&q->used[1] == q->used_seen; spins++) {
		if (spins > 4000000000ull)
			guest_fail("timeout waiting for the device");
		__asm__ volatile("pause");
	}
	barrier();
	element = (uint32_t *)&q->used[2 + 4 * (q->used_seen % QUEUE_SIZE)];
	q->used_seen++;
	if (id)
		*id = element[0];
	return element[1];
}

#endif

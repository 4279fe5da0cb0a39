/* test_driver: a synthetic guest for the virtio tests and fuzzers. Guest
 * memory is a malloc'ed buffer wrapped in struct guest_memory; a small
 * "driver" lays out split rings in it and offers chains the way a guest
 * driver does (virtio 1.x 2.7.13). Header-only, static functions. */
#ifndef WARREN_TESTS_VIRTIO_TEST_DRIVER_H
#define WARREN_TESTS_VIRTIO_TEST_DRIVER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guest_memory.h"
#include "virtio_mmio.h"
#include "virtqueue.h"

struct test_guest {
	struct guest_memory memory;
};

static inline struct test_guest *test_guest__create(uint64_t size)
{
	struct test_guest *guest = calloc(1, sizeof(*guest));

	if (!guest)
		return NULL;
	guest->memory.host = aligned_alloc(4096, size);
	if (!guest->memory.host) {
		free(guest);
		return NULL;
	}
	memset(guest->memory.host, 0, size);
	guest->memory.size = size;
	guest->memory.low_size = size;
	guest->memory.memfd = -1;
	return guest;
}

static inline void test_guest__destroy(struct test_guest *guest)
{
	if (!guest)
		return;
	free(guest->memory.host);
	free(guest);
}

static inline void *test_guest__ptr(struct test_guest *guest, uint64_t gpa)
{
	return guest->memory.host + gpa;
}

struct test_vring {
	uint16_t size;
	uint64_t desc, avail, used;
	uint16_t avail_idx;
	uint16_t used_seen;
	uint16_t next_desc;
};

struct test_buffer {
	uint64_t gpa;
	uint32_t len;
	bool writable;
};

/* Lays out a ring of `size` entries at gpa `base` (needs 16*size + 6 +
 * 2*size + padding + 6 + 8*size bytes). */
static inline void test_vring__init(struct test_guest *guest, struct test_vring *ring,
				    uint16_t size, uint64_t base)
{
	memset(ring, 0, sizeof(*ring));
	ring->size = size;
	ring->desc = base;
	ring->avail = base + 16ull * size;
	ring->used = (ring->avail + 6 + 2ull * size + 4095) & ~4095ull;
	memset(test_guest__ptr(guest, base), 0, (size_t)(ring->used + 6 + 8ull * size - base));
}

static inline struct virtq_desc *test_vring__desc(struct test_guest *guest, struct test_vring *ring,
						  uint16_t index)
{
	return (struct virtq_desc *)test_guest__ptr(guest, ring->desc + 16ull * index);
}

static inline uint16_t *test_vring__avail(struct test_guest *guest, struct test_vring *ring)
{
	return (uint16_t *)test_guest__ptr(guest, ring->avail);
}

static inline uint16_t *test_vring__used16(struct test_guest *guest, struct test_vring *ring)
{
	return (uint16_t *)test_guest__ptr(guest, ring->used);
}

/* Puts head into the avail ring and publishes it. */
static inline void test_vring__publish(struct test_guest *guest, struct test_vring *ring,
				       uint16_t head)
{
	uint16_t *avail = test_vring__avail(guest, ring);

	avail[2 + (ring->avail_idx % ring->size)] = head;
	ring->avail_idx++;
	__atomic_store_n(&avail[1], ring->avail_idx, __ATOMIC_RELEASE);
}

/* Writes a chain of n descriptors from the next free slots; returns head. */
static inline uint16_t test_vring__add_chain(struct test_guest *guest, struct test_vring *ring,
					     const struct test_buffer *buffers, unsigned n,
					     bool publish)
{
	uint16_t head = ring->next_desc;

	for (unsigned i = 0; i < n; i++) {
		uint16_t index = ring->next_desc;
		struct virtq_desc *desc = test_vring__desc(guest, ring, index);

		ring->next_desc = (uint16_t)((ring->next_desc + 1) % ring->size);
		desc->addr = buffers[i].gpa;
		desc->len = buffers[i].len;
		desc->flags = (uint16_t)((buffers[i].writable ? VIRTQ_DESC_F_WRITE : 0) |
					 (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
		desc->next = ring->next_desc;
	}
	if (publish)
		test_vring__publish(guest, ring, head);
	return head;
}

/* Next used element, if any. */
static inline bool test_vring__get_used(struct test_guest *guest, struct test_vring *ring,
					uint32_t *id, uint32_t *len)
{
	uint16_t *used = test_vring__used16(guest, ring);
	uint16_t idx = __atomic_load_n(&used[1], __ATOMIC_ACQUIRE);
	struct virtq_used_elem *element;

	if (idx == ring->used_seen)
		return false;
	element = (struct virtq_used_elem *)test_guest__ptr(
	    guest, ring->used + 4 + 8ull * (ring->used_seen % ring->size));
	*id = element->id;
	*len = element->len;
	ring->used_seen++;
	return true;
}

static inline bool test_vring__has_used(struct test_guest *guest, struct test_vring *ring)
{
	return __atomic_load_n(&test_vring__used16(guest, ring)[1], __ATOMIC_ACQUIRE) !=
	       ring->used_seen;
}

/* EVENT_IDX (2.7.10): asks for an interrupt after the next used element,
 * as a driver does once it has consumed everything. */
static inline void test_vring__set_used_event(struct test_guest *guest, struct test_vring *ring)
{
	uint16_t *avail = test_vring__avail(guest, ring);

	__atomic_store_n(&avail[2 + ring->size], ring->used_seen, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* --- virtio-mmio register access, as a guest driver does it ------------ */

static inline uint32_t test_mmio__read(struct virtio_mmio *t, uint64_t offset)
{
	uint8_t data[4];

	virtio_mmio__read(t, offset, data, 4);
	return (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
	       (uint32_t)data[3] << 24;
}

static inline void test_mmio__write(struct virtio_mmio *t, uint64_t offset, uint32_t value)
{
	uint8_t data[4] = {(uint8_t)value, (uint8_t)(value >> 8), (uint8_t)(value >> 16),
			   (uint8_t)(value >> 24)};

	virtio_mmio__write(t, offset, data, 4);
}

/* Negotiates `features` (must include VERSION_1); returns the status read
 * back after FEATURES_OK (3.1.1 steps 1-6). */
static inline uint32_t test_mmio__negotiate(struct virtio_mmio *t, uint64_t features)
{
	test_mmio__write(t, VIRTIO_MMIO_STATUS, 0);
	test_mmio__write(t, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	test_mmio__write(t, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	test_mmio__write(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	test_mmio__write(t, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
	test_mmio__write(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	test_mmio__write(t, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
	test_mmio__write(t, VIRTIO_MMIO_STATUS,
			 VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			     VIRTIO_STATUS_FEATURES_OK);
	return test_mmio__read(t, VIRTIO_MMIO_STATUS);
}

/* Sets up queue `index` on ring (4.2.3.2). */
static inline void test_mmio__setup_queue(struct virtio_mmio *t, unsigned index,
					  const struct test_vring *ring)
{
	test_mmio__write(t, VIRTIO_MMIO_QUEUE_SEL, index);
	test_mmio__write(t, VIRTIO_MMIO_QUEUE_NUM, ring->size);
	test_mmio__write(t, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)ring->desc);
	test_mmio__write(t, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(ring->desc >> 32));
	test_mmio__write(t, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)ring->avail);
	test_mmio__write(t, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (uint32_t)(ring->avail >> 32));
	test_mmio__write(t, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)ring->used);
	test_mmio__write(t, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (uint32_t)(ring->used >> 32));
	test_mmio__write(t, VIRTIO_MMIO_QUEUE_READY, 1);
}

static inline void test_mmio__driver_ok(struct virtio_mmio *t)
{
	test_mmio__write(t, VIRTIO_MMIO_STATUS,
			 VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			     VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

#endif

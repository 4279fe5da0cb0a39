/* virtqueue: the device side of a split virtqueue (virtio 1.x, 2.7), with
 * indirect descriptors (2.7.5.3) and VIRTIO_F_EVENT_IDX (2.7.7.2, 2.7.10).
 *
 * Everything in the rings comes from the guest and is hostile. Every
 * address and length is translated through guest_memory__ptr() (so the
 * device never touches memory outside the guest's), every index is read
 * once and bounded. A violation returns -EPROTO and marks the queue broken:
 * the transport then sets DEVICE_NEEDS_RESET and stops using the device
 * until the driver resets it (see virtio_mmio.h). Not thread-safe: the
 * caller serialises access (the transport's lock). */
#ifndef WARREN_VMM_VIRTQUEUE_H
#define WARREN_VMM_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h> /* guest_memory.h uses NULL without including it */
#include <sys/uio.h>

#include "guest_memory.h"

#define VIRTQ_MAX_SIZE	1024 /* largest queue size a device may offer */
#define VIRTQ_MAX_CHAIN 256  /* descriptors (and iovecs) in one chain, indirect included */

/* 2.7.5 descriptor flags */
#define VIRTQ_DESC_F_NEXT     1
#define VIRTQ_DESC_F_WRITE    2
#define VIRTQ_DESC_F_INDIRECT 4
/* 2.7.6 / 2.7.8 ring flags */
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY	   1

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};

/* Why a queue broke; counted by the transport's metrics. */
enum virtq_error {
	VIRTQ_OK = 0,
	VIRTQ_ERROR_RING,	  /* bad size, unaligned or out-of-memory ring */
	VIRTQ_ERROR_AVAIL_INDEX,  /* avail idx moved by more than the queue size */
	VIRTQ_ERROR_HEAD,	  /* head index >= queue size */
	VIRTQ_ERROR_DESCRIPTOR,	  /* next index out of range, buffer outside memory */
	VIRTQ_ERROR_CHAIN_LENGTH, /* loop or chain longer than allowed */
	VIRTQ_ERROR_INDIRECT,	  /* bad table size/address, nested, NEXT|INDIRECT */
	VIRTQ_ERROR_ORDER,	  /* device-readable after device-writable */
	VIRTQ_ERROR_USED,	  /* push of a head that is not in flight */
};

struct virtq {
	const struct guest_memory *memory;
	uint16_t size;
	bool ready;
	bool broken;
	bool event_idx; /* VIRTIO_F_EVENT_IDX negotiated */
	bool indirect;	/* VIRTIO_F_INDIRECT_DESC negotiated */
	enum virtq_error error;
	uint64_t desc_addr, avail_addr, used_addr;
	/* Host views of the rings, valid while ready. */
	struct virtq_desc *desc;
	uint16_t *avail; /* flags, idx, ring[size], used_event */
	uint8_t *used;	 /* flags, idx, ring[size] (8 bytes each), avail_event */
	uint16_t last_avail_idx;
	uint16_t used_idx;
	uint16_t signalled_used;
	bool signalled_used_valid;
	uint16_t in_flight;
};

/* One popped chain: the device-readable buffers come first
 * (iov[0..readable_count)), then the device-writable ones. */
struct virtq_chain {
	uint16_t head;
	unsigned readable_count;
	unsigned iov_count;
	uint64_t readable_bytes;
	uint64_t writable_bytes;
	struct iovec iov[VIRTQ_MAX_CHAIN];
};

/* Resets q to "not ready" over memory. */
void virtq__init(struct virtq *q, const struct guest_memory *memory);

/* Validates and maps a queue the driver configured (4.2.3.2): size a power
 * of two in [1, max_size], rings aligned (16/2/4) and inside guest memory.
 * 0, or -EINVAL with q->error set (q stays not ready). */
int virtq__enable(struct virtq *q, uint16_t size, uint16_t max_size, uint64_t desc_addr,
		  uint64_t avail_addr, uint64_t used_addr, bool event_idx, bool indirect);

/* Takes the next available chain into chain. 1 when one was taken, 0 when
 * the ring is empty (or the queue is not ready), -EPROTO on a violation
 * (q->broken and q->error set; nothing was taken). */
int virtq__pop(struct virtq *q, struct virtq_chain *chain);

/* Gives back the last popped chain unused (e.g. no packet to receive). */
void virtq__unpop(struct virtq *q);

/* Publishes head as used with `written` bytes written into its writable
 * buffers (2.7.8, with the write barrier before the index update). */
int virtq__push(struct virtq *q, uint16_t head, uint32_t written);

/* virtq__push in two steps, for batches: add_used writes the element and
 * advances the device's used index privately; publish_used makes every
 * element added so far visible to the driver at once (one index store). */
int virtq__add_used(struct virtq *q, uint16_t head, uint32_t written);
void virtq__publish_used(struct virtq *q);

/* After pushes: true when the driver wants an interrupt now (2.7.10 with
 * EVENT_IDX: used_event crossed; else unless VIRTQ_AVAIL_F_NO_INTERRUPT). */
bool virtq__should_interrupt(struct virtq *q);

/* Asks the driver for notifications (or not) of new buffers (2.7.10 both
 * ways). Enabling returns true when buffers arrived meanwhile (the caller
 * must then keep popping instead of waiting for a notification). */
bool virtq__set_notification(struct virtq *q, bool enable);

/* True when the avail ring holds chains not yet popped. */
bool virtq__has_available(struct virtq *q);

const char *virtq__error_name(enum virtq_error error);

#endif

/* virtqueue: split virtqueue, device side (virtio 1.x 2.7). See virtqueue.h.
 *
 * Ring words shared with the guest are read with __atomic loads exactly
 * once each (no double fetch), and descriptors are copied to the stack
 * before they are checked. Barriers (2.7.7, 2.7.8, 2.7.10):
 *   - acquire after reading avail->idx, before reading ring entries;
 *   - release between writing a used element and publishing used->idx;
 *   - full fence between publishing used->idx / avail_event and reading
 *     the driver's used_event / avail->idx again. */
#include "virtqueue.h"

#include <errno.h>
#include <string.h>

static inline bool is_power_of_two(uint32_t value)
{
	return value && !(value & (value - 1));
}

static inline uint16_t load16(const uint16_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline void store16(uint16_t *p, uint16_t value)
{
	__atomic_store_n(p, value, __ATOMIC_RELAXED);
}

static inline uint16_t *used_flags(struct virtq *q)
{
	return (uint16_t *)q->used;
}

static inline uint16_t *used_idx_ptr(struct virtq *q)
{
	return (uint16_t *)(q->used + 2);
}

static inline uint16_t *avail_event_ptr(struct virtq *q)
{
	return (uint16_t *)(q->used + 4 + 8 * (uint32_t)q->size);
}

static inline uint16_t *used_event_ptr(struct virtq *q)
{
	return &q->avail[2 + q->size];
}

void virtq__init(struct virtq *q, const struct guest_memory *memory)
{
	memset(q, 0, sizeof(*q));
	q->memory = memory;
}

static int virtq__fail(struct virtq *q, enum virtq_error error)
{
	q->broken = true;
	q->error = error;
	return -EPROTO;
}

int virtq__enable(struct virtq *q, uint16_t size, uint16_t max_size, uint64_t desc_addr,
		  uint64_t avail_addr, uint64_t used_addr, bool event_idx, bool indirect)
{
	const struct guest_memory *memory = q->memory;
	void *desc, *avail, *used;

	q->ready = false;
	if (!is_power_of_two(size) || size > max_size || max_size > VIRTQ_MAX_SIZE)
		goto bad;
	/* 2.7: alignment 16 (descriptor table), 2 (driver area), 4 (device area). */
	if ((desc_addr & 15) || (avail_addr & 1) || (used_addr & 3))
		goto bad;
	desc = guest_memory__ptr(memory, desc_addr, 16ull * size);
	avail = guest_memory__ptr(memory, avail_addr, 6ull + 2ull * size);
	used = guest_memory__ptr(memory, used_addr, 6ull + 8ull * size);
	if (!desc || !avail || !used)
		goto bad;
	q->size = size;
	q->desc_addr = desc_addr;
	q->avail_addr = avail_addr;
	q->used_addr = used_addr;
	q->desc = desc;
	q->avail = avail;
	q->used = used;
	q->event_idx = event_idx;
	q->indirect = indirect;
	q->last_avail_idx = 0;
	q->used_idx = 0;
	q->signalled_used = 0;
	q->signalled_used_valid = false;
	q->in_flight = 0;
	q->broken = false;
	q->error = VIRTQ_OK;
	q->ready = true;
	return 0;
bad:
	q->error = VIRTQ_ERROR_RING;
	return -EINVAL;
}

bool virtq__has_available(struct virtq *q)
{
	if (!q->ready || q->broken)
		return false;
	return __atomic_load_n(&q->avail[1], __ATOMIC_ACQUIRE) != q->last_avail_idx;
}

/* Appends one buffer to the chain, in order (2.7.4.2: readable ones first). */
static int chain__add(struct virtq *q, struct virtq_chain *chain, const struct virtq_desc *desc)
{
	bool writable = desc->flags & VIRTQ_DESC_F_WRITE;
	void *host;

	if (chain->iov_count >= VIRTQ_MAX_CHAIN)
		return virtq__fail(q, VIRTQ_ERROR_CHAIN_LENGTH);
	host = guest_memory__ptr(q->memory, desc->addr, desc->len);
	if (!host)
		return virtq__fail(q, VIRTQ_ERROR_DESCRIPTOR);
	if (!writable && chain->iov_count != chain->readable_count)
		return virtq__fail(q, VIRTQ_ERROR_ORDER);
	chain->iov[chain->iov_count].iov_base = host;
	chain->iov[chain->iov_count].iov_len = desc->len;
	chain->iov_count++;
	if (writable) {
		chain->writable_bytes += desc->len;
	} else {
		chain->readable_count++;
		chain->readable_bytes += desc->len;
	}
	return 0;
}

/* 2.7.5.3: an indirect table, whose entries may not be indirect again. */
static int chain__walk_indirect(struct virtq *q, struct virtq_chain *chain,
				const struct virtq_desc *table_desc)
{
	const uint8_t *table;
	uint32_t count, index, steps;
	struct virtq_desc desc;

	if (!q->indirect || table_desc->len == 0 || table_desc->len % sizeof(struct virtq_desc) ||
	    (table_desc->flags & VIRTQ_DESC_F_NEXT) || (table_desc->flags & VIRTQ_DESC_F_WRITE))
		return virtq__fail(q, VIRTQ_ERROR_INDIRECT);
	count = table_desc->len / sizeof(struct virtq_desc);
	if (count > VIRTQ_MAX_CHAIN)
		return virtq__fail(q, VIRTQ_ERROR_INDIRECT);
	table = guest_memory__ptr(q->memory, table_desc->addr, table_desc->len);
	if (!table)
		return virtq__fail(q, VIRTQ_ERROR_INDIRECT);
	index = 0;
	for (steps = 0;; steps++) {
		if (steps >= count)
			return virtq__fail(q, VIRTQ_ERROR_CHAIN_LENGTH); /* loop */
		memcpy(&desc, table + (size_t)index * sizeof(desc), sizeof(desc));
		if (desc.flags & VIRTQ_DESC_F_INDIRECT)
			return virtq__fail(q, VIRTQ_ERROR_INDIRECT);
		if (chain__add(q, chain, &desc) < 0)
			return -EPROTO;
		if (!(desc.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		index = desc.next;
		if (index >= count)
			return virtq__fail(q, VIRTQ_ERROR_DESCRIPTOR);
	}
}

int virtq__pop(struct virtq *q, struct virtq_chain *chain)
{
	uint16_t avail_idx, head, index;
	struct virtq_desc desc;
	unsigned steps;

	if (!q->ready || q->broken)
		return 0;
	avail_idx = __atomic_load_n(&q->avail[1], __ATOMIC_ACQUIRE);
	if (avail_idx == q->last_avail_idx)
		return 0;
	/* More chains than the queue holds cannot be outstanding. */
	if ((uint16_t)(avail_idx - q->last_avail_idx) > q->size)
		return virtq__fail(q, VIRTQ_ERROR_AVAIL_INDEX);
	head = load16(&q->avail[2 + (q->last_avail_idx & (q->size - 1))]);
	if (head >= q->size)
		return virtq__fail(q, VIRTQ_ERROR_HEAD);

	chain->head = head;
	chain->readable_count = 0;
	chain->iov_count = 0;
	chain->readable_bytes = 0;
	chain->writable_bytes = 0;
	index = head;
	/* A chain visits each descriptor at most once: more than `size` steps
	 * means a loop (2.7.5.2). */
	for (steps = 0;; steps++) {
		if (steps >= q->size)
			return virtq__fail(q, VIRTQ_ERROR_CHAIN_LENGTH);
		memcpy(&desc, &q->desc[index], sizeof(desc));
		if (desc.flags & VIRTQ_DESC_F_INDIRECT) {
			/* The indirect descriptor is the whole chain (no NEXT). */
			if (chain->iov_count != 0 || (desc.flags & VIRTQ_DESC_F_NEXT))
				return virtq__fail(q, VIRTQ_ERROR_INDIRECT);
			if (chain__walk_indirect(q, chain, &desc) < 0)
				return -EPROTO;
			break;
		}
		if (chain__add(q, chain, &desc) < 0)
			return -EPROTO;
		if (!(desc.flags & VIRTQ_DESC_F_NEXT))
			break;
		index = desc.next;
		if (index >= q->size)
			return virtq__fail(q, VIRTQ_ERROR_DESCRIPTOR);
	}
	if (q->in_flight >= q->size)
		return virtq__fail(q, VIRTQ_ERROR_AVAIL_INDEX);
	q->last_avail_idx++;
	q->in_flight++;
	return 1;
}

void virtq__unpop(struct virtq *q)
{
	if (q->in_flight) {
		q->last_avail_idx--;
		q->in_flight--;
	}
}

int virtq__add_used(struct virtq *q, uint16_t head, uint32_t written)
{
	struct virtq_used_elem *element;

	if (!q->ready || q->broken)
		return -ENODEV;
	if (head >= q->size || q->in_flight == 0)
		return virtq__fail(q, VIRTQ_ERROR_USED);
	element =
	    (struct virtq_used_elem *)(q->used + 4 + 8 * (uint32_t)(q->used_idx & (q->size - 1)));
	__atomic_store_n(&element->id, head, __ATOMIC_RELAXED);
	__atomic_store_n(&element->len, written, __ATOMIC_RELAXED);
	q->used_idx++;
	q->in_flight--;
	return 0;
}

void virtq__publish_used(struct virtq *q)
{
	if (!q->ready || q->broken)
		return;
	/* 2.7.8: the elements must be visible before the index that covers them. */
	__atomic_store_n(used_idx_ptr(q), q->used_idx, __ATOMIC_RELEASE);
}

int virtq__push(struct virtq *q, uint16_t head, uint32_t written)
{
	int ret = virtq__add_used(q, head, written);

	if (ret == 0)
		virtq__publish_used(q);
	return ret;
}

/* 2.7.10.1: vring_need_event(event_idx, new_idx, old_idx). */
static inline bool need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old_idx);
}

bool virtq__should_interrupt(struct virtq *q)
{
	uint16_t old, event;
	bool valid;

	if (!q->ready || q->broken)
		return false;
	/* Our used->idx store must be visible before we read the driver's wish. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!q->event_idx)
		return !(load16(&q->avail[0]) & VIRTQ_AVAIL_F_NO_INTERRUPT);
	old = q->signalled_used;
	valid = q->signalled_used_valid;
	q->signalled_used = q->used_idx;
	q->signalled_used_valid = true;
	if (!valid)
		return true;
	event = load16(used_event_ptr(q));
	return need_event(event, q->used_idx, old);
}

bool virtq__set_notification(struct virtq *q, bool enable)
{
	if (!q->ready || q->broken)
		return false;
	if (q->event_idx) {
		/* Ask to be notified when the driver publishes past what we saw. */
		if (enable)
			store16(avail_event_ptr(q), q->last_avail_idx);
	} else {
		uint16_t flags = load16(used_flags(q));

		if (enable)
			flags &= (uint16_t)~VIRTQ_USED_F_NO_NOTIFY;
		else
			flags |= VIRTQ_USED_F_NO_NOTIFY;
		store16(used_flags(q), flags);
	}
	if (!enable)
		return false;
	/* The driver may have added buffers before seeing our request. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return virtq__has_available(q);
}

const char *virtq__error_name(enum virtq_error error)
{
	switch (error) {
	case VIRTQ_OK:
		return "ok";
	case VIRTQ_ERROR_RING:
		return "bad ring size or address";
	case VIRTQ_ERROR_AVAIL_INDEX:
		return "avail index jumped past the queue size";
	case VIRTQ_ERROR_HEAD:
		return "head index out of range";
	case VIRTQ_ERROR_DESCRIPTOR:
		return "descriptor outside guest memory or bad next index";
	case VIRTQ_ERROR_CHAIN_LENGTH:
		return "descriptor chain loops or is too long";
	case VIRTQ_ERROR_INDIRECT:
		return "bad indirect descriptor table";
	case VIRTQ_ERROR_ORDER:
		return "readable descriptor after a writable one";
	case VIRTQ_ERROR_USED:
		return "used element for a head not in flight";
	}
	return "unknown";
}

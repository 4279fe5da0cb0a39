/* libFuzzer target: descriptor-chain walking. The input is the guest's
 * memory (rings, descriptor tables, indirect tables) plus a few bytes
 * choosing the queue size, ring addresses and negotiated features. Every
 * popped buffer must lie inside guest memory; ASan catches any access
 * outside it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "virtqueue.h"

#define GUEST_SIZE (256u << 10)

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct virtq_chain chain;
	struct guest_memory memory;
	struct virtq q;
	uint16_t queue_size;
	uint8_t *guest;

	if (size < 8)
		return 0;
	/* Exactly GUEST_SIZE bytes so ASan sees any overrun. */
	guest = calloc(1, GUEST_SIZE);
	if (!guest)
		return 0;
	memcpy(guest, data + 8, size - 8 < GUEST_SIZE ? size - 8 : GUEST_SIZE);
	memory = (struct guest_memory){
	    .host = guest, .size = GUEST_SIZE, .low_size = GUEST_SIZE, .memfd = -1};
	virtq__init(&q, &memory);
	queue_size = (uint16_t)(1u << (data[0] % 11)); /* 1..1024 */
	if (virtq__enable(&q, queue_size, VIRTQ_MAX_SIZE, (uint64_t)le16(data + 1) * 16,
			  (uint64_t)le16(data + 3) * 2, (uint64_t)le16(data + 5) * 4, data[7] & 1,
			  data[7] & 2) < 0)
		goto out;
	for (unsigned round = 0; round < 2u * queue_size + 2; round++) {
		int ret = virtq__pop(&q, &chain);

		if (ret <= 0)
			break;
		for (unsigned i = 0; i < chain.iov_count; i++) {
			uint8_t *base = chain.iov[i].iov_base;

			if (base < guest || base + chain.iov[i].iov_len > guest + GUEST_SIZE)
				abort(); /* escaped guest memory */
		}
		if (chain.readable_count > chain.iov_count || chain.iov_count > VIRTQ_MAX_CHAIN)
			abort();
		if (round & 1)
			virtq__unpop(&q);
		else if (virtq__push(&q, chain.head, (uint32_t)chain.writable_bytes) < 0)
			abort(); /* a popped head must be pushable */
		virtq__should_interrupt(&q);
		virtq__set_notification(&q, round & 2);
	}
out:
	free(guest);
	return 0;
}

/* libFuzzer target: the virtio-blk request parser and checker. The input
 * is guest memory holding an 8-entry descriptor table at 0 (the chain
 * starts at descriptor 0, with indirect descriptors allowed), the request
 * header, data and status buffers wherever the descriptors point, and 9
 * leading bytes: capacity, read-only and feature flags. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "block.h"
#include "virtqueue.h"

#define GUEST_SIZE (64u << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct virtq_chain chain;
	struct virtio_blk_request request;
	struct guest_memory memory;
	struct virtq q;
	uint64_t capacity = 0;
	uint16_t *avail;
	uint8_t *guest;

	if (size < 9)
		return 0;
	guest = calloc(1, GUEST_SIZE);
	if (!guest)
		return 0;
	memcpy(guest, data + 9, size - 9 < GUEST_SIZE ? size - 9 : GUEST_SIZE);
	memcpy(&capacity, data, 8);
	memory = (struct guest_memory){
	    .host = guest, .size = GUEST_SIZE, .low_size = GUEST_SIZE, .memfd = -1};
	/* Rings: descriptors at 0 (8 x 16 bytes), avail at 0x80, used at 0x100. */
	avail = (uint16_t *)(guest + 0x80);
	avail[0] = 0;
	avail[1] = 1;
	avail[2] = 0;
	virtq__init(&q, &memory);
	if (virtq__enable(&q, 8, 8, 0, 0x80, 0x100, false, true) < 0)
		abort();
	if (virtq__pop(&q, &chain) == 1 && virtio_blk__parse(&chain, &request) == 0) {
		uint64_t features = data[8] & 0x80 ? ~0ull : 0;
		uint8_t status = virtio_blk__check(&request, capacity, data[8] & 1, features);
		uint64_t total = 0;

		/* The data must be inside guest memory and add up. */
		for (unsigned i = 0; i < request.data_count; i++) {
			uint8_t *base = request.data[i].iov_base;

			if (base < guest || base + request.data[i].iov_len > guest + GUEST_SIZE)
				abort();
			total += request.data[i].iov_len;
		}
		if (total != request.data_bytes || !request.status || request.status < guest ||
		    request.status >= guest + GUEST_SIZE)
			abort();
		*request.status = status;
		if (status == VIRTIO_BLK_S_OK &&
		    (request.type == VIRTIO_BLK_T_IN || request.type == VIRTIO_BLK_T_OUT) &&
		    request.sector + request.data_bytes / 512 > capacity)
			abort(); /* accepted an out-of-range request */
	}
	free(guest);
	return 0;
}

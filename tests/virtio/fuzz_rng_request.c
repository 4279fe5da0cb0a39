/* libFuzzer target: virtio-rng's answer to a guest chain. The input is
 * guest memory holding an 8-entry descriptor table at 0 (the chain starts
 * at descriptor 0, indirect descriptors allowed) and whatever buffers the
 * descriptors point at, after 4 leading bytes: the byte cap. The fill must
 * stay inside the chain's writable buffers, inside guest memory, within
 * the cap, and never touch a chain that has readable buffers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "virtqueue.h"

#define GUEST_SIZE (64u << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct virtq_chain chain;
	struct guest_memory memory;
	struct virtq q;
	uint32_t cap = 0;
	uint16_t *avail;
	uint8_t *guest;

	if (size < 4)
		return 0;
	guest = calloc(1, GUEST_SIZE);
	if (!guest)
		return 0;
	memcpy(guest, data + 4, size - 4 < GUEST_SIZE ? size - 4 : GUEST_SIZE);
	memcpy(&cap, data, 4);
	cap %= 2 * VIRTIO_RNG_MAX_REQUEST_BYTES;
	memory = (struct guest_memory){
	    .host = guest, .size = GUEST_SIZE, .low_size = GUEST_SIZE, .memfd = -1};
	avail = (uint16_t *)(guest + 0x80);
	avail[0] = 0;
	avail[1] = 1;
	avail[2] = 0;
	virtq__init(&q, &memory);
	if (virtq__enable(&q, 8, 8, 0, 0x80, 0x100, false, true) < 0)
		abort();
	if (virtq__pop(&q, &chain) == 1) {
		int64_t written = virtio_rng__fill(&chain, cap);
		uint64_t writable = 0;

		for (unsigned i = 0; i < chain.iov_count; i++) {
			uint8_t *base = chain.iov[i].iov_base;

			if (base < guest || base + chain.iov[i].iov_len > guest + GUEST_SIZE)
				abort();
			if (i >= chain.readable_count)
				writable += chain.iov[i].iov_len;
		}
		if (chain.readable_count > 0 && written != -22)
			abort();
		if (written > (int64_t)cap || (written >= 0 && (uint64_t)written > writable))
			abort();
	}
	free(guest);
	return 0;
}

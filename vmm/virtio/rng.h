/* rng: virtio entropy device (virtio 1.1, 5.4; device id 4) on the
 * virtio-mmio transport. One request queue; the guest posts device-writable
 * buffers and the device fills them from the host's getrandom() (never
 * blocking: GRND_NONBLOCK) and returns them with the byte count written.
 *
 * Bounded and fair: at most VIRTIO_RNG_MAX_REQUEST_BYTES per buffer chain
 * (the guest gets fewer bytes than it asked for, which 5.4.6 allows), and
 * a Firecracker-style rate limiter (rate_limiter.h) on bytes and requests,
 * VIRTIO_RNG_DEFAULT_LIMIT unless the config sets "rate_limiter". A
 * throttled queue resumes from a timer, as block does. A chain with
 * device-readable buffers (5.4.6.1: the driver MUST NOT post them) is
 * returned with 0 bytes and counted in errors. No feature bits, no config
 * space. */
#ifndef WARREN_VMM_VIRTIO_RNG_H
#define WARREN_VMM_VIRTIO_RNG_H

#include <jansson.h>
#include <stdint.h>

#include "virtio_mmio.h"
#include "virtqueue.h"

#define VIRTIO_ID_RNG		     4
#define VIRTIO_RNG_MAX_REQUEST_BYTES 4096u
/* 64 KiB per 100 ms (640 KiB/s) and 1,000 requests/s, 256 KiB of burst:
 * ample for a guest's crng (it reads 32-64 bytes per reseed), cheap for
 * the host. */
#define VIRTIO_RNG_DEFAULT_LIMIT                                                                   \
	"{\"bandwidth\":{\"size\":65536,\"one_time_burst\":262144,\"refill_time\":100},"           \
	"\"ops\":{\"size\":100,\"refill_time\":100}}"

/* Fills the device-writable buffers of chain with random bytes, at most
 * max_bytes in all. Returns the bytes written, -EINVAL when the chain has
 * device-readable buffers, or -errno of getrandom() when nothing could be
 * written. Pure but for getrandom() (fuzz target). */
int64_t virtio_rng__fill(const struct virtq_chain *chain, uint32_t max_bytes);

struct virtio_rng_options {
	const json_t *rate_limiter; /* NULL: VIRTIO_RNG_DEFAULT_LIMIT; {}: unlimited */
	uint16_t queue_size;	    /* QueueNumMax; 0: 64 */
};

struct virtio_rng;

/* Sets up the device on loop (call before the loop runs or on its thread).
 * notify_fd/irq_fd: see virtio_mmio__init; not closed by the device. NULL
 * with a reason in error on failure. */
struct virtio_rng *virtio_rng__create(const struct guest_memory *memory, struct event_loop *loop,
				      const struct virtio_rng_options *options, int notify_fd,
				      int irq_fd, char *error, size_t error_size);
/* Loop thread. Freed now, or by its throttle timer's callback if one is
 * pending (run the loop a little afterwards, as for block). */
void virtio_rng__destroy(struct virtio_rng *rng);
struct virtio_mmio *virtio_rng__transport(struct virtio_rng *rng);
/* Loop thread: replaces the rate limiter (JSON of rate_limiter.h). */
int virtio_rng__set_rate_limit(struct virtio_rng *rng, const json_t *config, char *error,
			       size_t error_size);
/* Loop thread: new object {type, requests, bytes, errors, rate_limited,
 * rate_limiter, + the transport's figures}. */
json_t *virtio_rng__metrics(struct virtio_rng *rng);

#endif

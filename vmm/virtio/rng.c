/* rng: virtio entropy device (virtio 1.1, 5.4). See rng.h. */
#include "rng.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "event_loop.h"
#include "rate_limiter.h"
#include "warren/clock.h"

#define RNG_DEFAULT_QUEUE_SIZE 64

struct virtio_rng {
	struct virtio_mmio transport;
	struct event_loop *loop;
	uint16_t queue_size;
	struct rate_limiter limiter;
	int64_t throttle_timer;	  /* -1 when not waiting */
	bool closing;		  /* destroyed: freed by the throttle timer's callback */
	struct virtq_chain chain; /* last: large */

	/* metrics (loop thread, under the transport lock) */
	uint64_t requests, bytes, errors, rate_limited;
};

int64_t virtio_rng__fill(const struct virtq_chain *chain, uint32_t max_bytes)
{
	uint64_t filled = 0;

	if (chain->readable_count > 0 || chain->iov_count > VIRTQ_MAX_CHAIN)
		return -EINVAL;
	for (unsigned i = 0; i < chain->iov_count && filled < max_bytes; i++) {
		uint8_t *base = chain->iov[i].iov_base;
		size_t want = chain->iov[i].iov_len, done = 0;

		if (want > max_bytes - filled)
			want = (size_t)(max_bytes - filled);
		while (done < want) {
			ssize_t n = getrandom(base + done, want - done, GRND_NONBLOCK);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return filled + done > 0 ? (int64_t)(filled + done)
							 : (n < 0 ? -errno : -EIO);
			done += (size_t)n;
		}
		filled += done;
	}
	return (int64_t)filled;
}

static void rng__free(struct virtio_rng *rng)
{
	virtio_mmio__uninit(&rng->transport);
	free(rng);
}

static void rng__process(struct virtio_rng *rng);

static bool on_throttle_timer(void *opaque, int32_t result)
{
	struct virtio_rng *rng = opaque;

	(void)result;
	rng->throttle_timer = -1;
	if (rng->closing)
		rng__free(rng);
	else
		rng__process(rng); /* expired, or cancelled by a new limit */
	return false;
}

/* Lock held. Answers one popped chain, or gives it back when the limiter
 * says wait (false: stop popping). */
static bool rng__answer(struct virtio_rng *rng, struct virtq *q)
{
	uint64_t now = clock__monotonic_ns();
	uint64_t want = rng->chain.writable_bytes;
	int64_t written;

	if (want > VIRTIO_RNG_MAX_REQUEST_BYTES)
		want = VIRTIO_RNG_MAX_REQUEST_BYTES;
	if (!rate_limiter__consume(&rng->limiter, want, now)) {
		virtq__unpop(q);
		rng->rate_limited++;
		if (rng->throttle_timer < 0)
			rng->throttle_timer = event_loop__timer(
			    rng->loop, rate_limiter__wait_ns(&rng->limiter, want, now),
			    on_throttle_timer, rng);
		return false;
	}
	written = virtio_rng__fill(&rng->chain, (uint32_t)want);
	rng->requests++;
	if (written < 0) {
		rng->errors++;
		written = 0;
	}
	rng->bytes += (uint64_t)written;
	if (virtq__push(q, rng->chain.head, (uint32_t)written) == 0)
		virtio_mmio__signal_used(&rng->transport, 0);
	return true;
}

/* Pops and answers every available request, until the limiter stops it. */
static void rng__process(struct virtio_rng *rng)
{
	virtio_mmio__lock(&rng->transport);
	for (;;) {
		struct virtq *q = virtio_mmio__queue(&rng->transport, 0);
		int ret;

		if (!q || rng->throttle_timer >= 0)
			break;
		virtq__set_notification(q, false);
		ret = virtq__pop(q, &rng->chain);
		if (ret < 0) {
			virtio_mmio__needs_reset(&rng->transport, q->error);
			break;
		}
		if (ret == 0) {
			if (virtq__set_notification(q, true))
				continue;
			break;
		}
		if (!rng__answer(rng, q))
			break;
	}
	virtio_mmio__unlock(&rng->transport);
}

static void rng__notify(void *opaque)
{
	rng__process(opaque);
}

static void rng__nothing(void *opaque)
{
	(void)opaque; /* reset / DRIVER_OK: no state beyond the queue */
}

struct virtio_rng *virtio_rng__create(const struct guest_memory *memory, struct event_loop *loop,
				      const struct virtio_rng_options *options, int notify_fd,
				      int irq_fd, char *error, size_t error_size)
{
	struct virtio_mmio_device device;
	struct virtio_rng *rng = calloc(1, sizeof(*rng));
	json_t *default_limit = NULL;
	const json_t *limit = options->rate_limiter;
	int ret;

	if (!rng) {
		snprintf(error, error_size, "rng: out of memory");
		return NULL;
	}
	rng->loop = loop;
	rng->throttle_timer = -1;
	rng->queue_size = options->queue_size ? options->queue_size : RNG_DEFAULT_QUEUE_SIZE;
	if (rng->queue_size > VIRTQ_MAX_SIZE || (rng->queue_size & (rng->queue_size - 1))) {
		snprintf(error, error_size, "rng: queue_size must be a power of two <= %d",
			 VIRTQ_MAX_SIZE);
		goto err;
	}
	rate_limiter__init(&rng->limiter);
	if (!limit)
		limit = default_limit = json_loads(VIRTIO_RNG_DEFAULT_LIMIT, 0, NULL);
	if (!limit || rate_limiter__configure(&rng->limiter, limit, clock__monotonic_ns(), error,
					      error_size) < 0) {
		if (!limit)
			snprintf(error, error_size, "rng: out of memory");
		goto err;
	}
	memset(&device, 0, sizeof(device));
	device.device_id = VIRTIO_ID_RNG;
	device.queue_count = 1;
	device.queue_max_size = rng->queue_size;
	device.opaque = rng;
	device.notify = rng__notify;
	device.reset = rng__nothing;
	device.driver_ok = rng__nothing;
	ret = virtio_mmio__init(&rng->transport, memory, loop, &device, notify_fd, irq_fd);
	if (ret < 0) {
		snprintf(error, error_size, "rng: transport: %s", strerror(-ret));
		goto err;
	}
	json_decref(default_limit);
	return rng;
err:
	json_decref(default_limit);
	free(rng);
	return NULL;
}

void virtio_rng__destroy(struct virtio_rng *rng)
{
	if (!rng)
		return;
	virtio_mmio__stop(&rng->transport);
	if (rng->throttle_timer >= 0) {
		/* Freed by the timer's callback (-ECANCELED, or expiry when the
		 * cancel could not be queued). */
		rng->closing = true;
		event_loop__cancel(rng->loop, rng->throttle_timer);
		return;
	}
	rng__free(rng);
}

struct virtio_mmio *virtio_rng__transport(struct virtio_rng *rng)
{
	return &rng->transport;
}

int virtio_rng__set_rate_limit(struct virtio_rng *rng, const json_t *config, char *error,
			       size_t error_size)
{
	int ret = rate_limiter__configure(&rng->limiter, config, clock__monotonic_ns(), error,
					  error_size);

	if (ret < 0)
		return ret;
	if (rng->throttle_timer < 0 || event_loop__cancel(rng->loop, rng->throttle_timer) < 0)
		rng__process(rng);
	return 0;
}

json_t *virtio_rng__metrics(struct virtio_rng *rng)
{
	json_t *metrics;

	virtio_mmio__lock(&rng->transport);
	metrics = json_pack("{s:s, s:I, s:I, s:I, s:I, s:o}", "type", "rng", "requests",
			    (json_int_t)rng->requests, "bytes", (json_int_t)rng->bytes, "errors",
			    (json_int_t)rng->errors, "rate_limited", (json_int_t)rng->rate_limited,
			    "rate_limiter", rate_limiter__to_json(&rng->limiter));
	virtio_mmio__add_metrics(&rng->transport, metrics);
	virtio_mmio__unlock(&rng->transport);
	return metrics;
}

/* test_device: what the device-level virtio tests share on top of
 * test_driver.h: the used elements a driver collected from its interrupt,
 * and running the event loop until they arrived or a deadline passed.
 * Header-only, static functions; include after test_driver.h. */
#ifndef WARREN_TESTS_VIRTIO_TEST_DEVICE_H
#define WARREN_TESTS_VIRTIO_TEST_DEVICE_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#include "event_loop.h"
#include "test_driver.h"

/* The last 256 used elements of a queue, by arrival. */
struct test_used_log {
	uint32_t id[256], len[256];
	unsigned seen;
};

/* Takes every used element of ring into log, re-arming EVENT_IDX until
 * nothing new came (what a guest driver's interrupt handler does). */
static inline void test_used_log__drain(struct test_guest *guest, struct test_vring *ring,
					struct test_used_log *log)
{
	uint32_t id, len;

	do {
		while (test_vring__get_used(guest, ring, &id, &len)) {
			log->id[log->seen % 256] = id;
			log->len[log->seen % 256] = len;
			log->seen++;
		}
		test_vring__set_used_event(guest, ring);
	} while (test_vring__has_used(guest, ring));
}

/* Consumes the interrupt eventfd and acknowledges the device's interrupt
 * status; false when the eventfd had nothing. */
static inline bool test_mmio__ack_interrupt(struct virtio_mmio *t, int irq_fd)
{
	uint64_t value;

	if (read(irq_fd, &value, sizeof(value)) < 0)
		return false;
	test_mmio__write(t, VIRTIO_MMIO_INTERRUPT_ACK,
			 test_mmio__read(t, VIRTIO_MMIO_INTERRUPT_STATUS));
	return true;
}

struct test_deadline {
	struct event_loop *loop;
	bool timed_out;
};

static inline bool test_deadline__fired(void *opaque, int32_t result)
{
	struct test_deadline *deadline = opaque;

	if (result == -ETIME) {
		deadline->timed_out = true;
		event_loop__stop(deadline->loop);
	}
	return false;
}

/* Runs loop until a callback stops it; true when timeout_ns passed first
 * (the loop was then stopped by the deadline). Asserting is the caller's. */
static inline bool test_loop__run_timed_out(struct event_loop *loop, uint64_t timeout_ns)
{
	struct test_deadline deadline = {loop, false};
	int64_t timer = event_loop__timer(loop, timeout_ns, test_deadline__fired, &deadline);

	if (timer < 0 || event_loop__run(loop) != 0)
		return true;
	if (!deadline.timed_out)
		event_loop__cancel(loop, timer);
	return deadline.timed_out;
}

#endif

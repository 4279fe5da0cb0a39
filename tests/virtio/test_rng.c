/* virtio-rng tests, no KVM: virtio_rng__fill over hand-built chains
 * (bounds, readable buffers refused), then the device driven by a
 * synthetic guest through its MMIO registers and ring with the real event
 * loop: buffers filled and returned with their length, the per-request
 * cap, a hostile chain, a ring violation (NEEDS_RESET), the rate limiter,
 * and the factory ({"type":"rng"} on a bus, device id 4). */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "event_loop.h"
#include "mmio_bus.h"
#include "rng.h"
#include "test_device.h"
#include "test_driver.h"
#include "virtio_devices.h"

#define GUEST_SIZE (4u << 20)
#define RING_BASE  0x10000u
#define DATA	   0x100000u /* 8 KiB per slot */
#define V1	   (1ull << VIRTIO_F_VERSION_1)

static unsigned zero_bytes(const uint8_t *p, size_t n)
{
	unsigned zeros = 0;

	for (size_t i = 0; i < n; i++)
		zeros += p[i] == 0;
	return zeros;
}

static void test_fill(void **unused)
{
	static struct virtq_chain chain;
	static uint8_t a[100], b[6000], c[16];

	(void)unused;
	memset(&chain, 0, sizeof(chain));
	memset(b, 0, sizeof(b));
	memset(c, 0xee, sizeof(c));
	chain.iov[0] = (struct iovec){a, sizeof(a)};
	chain.iov[1] = (struct iovec){b, sizeof(b)};
	chain.iov[2] = (struct iovec){c, sizeof(c)};
	chain.iov_count = 3;
	chain.writable_bytes = sizeof(a) + sizeof(b) + sizeof(c);
	/* Capped: 100 + 3996 bytes, b's tail and c untouched. */
	assert_int_equal(virtio_rng__fill(&chain, VIRTIO_RNG_MAX_REQUEST_BYTES),
			 VIRTIO_RNG_MAX_REQUEST_BYTES);
	assert_true(zero_bytes(b, 3996) < 3996 / 16);
	assert_int_equal(zero_bytes(b + 3996, sizeof(b) - 3996), sizeof(b) - 3996);
	assert_int_equal(c[0], 0xee);
	/* Everything when it fits. */
	assert_int_equal(virtio_rng__fill(&chain, 1u << 20), chain.writable_bytes);
	assert_true(c[0] != 0xee || c[1] != 0xee || c[2] != 0xee);
	/* No buffers: nothing written. */
	chain.iov_count = 0;
	assert_int_equal(virtio_rng__fill(&chain, 4096), 0);
	/* A device-readable buffer: refused (5.4.6.1). */
	chain.iov_count = 2;
	chain.readable_count = 1;
	assert_int_equal(virtio_rng__fill(&chain, 4096), -EINVAL);
}

/* --- device level ------------------------------------------------------ */

struct fixture {
	struct test_guest *guest;
	struct event_loop *loop;
	struct virtio_rng *rng;
	struct virtio_mmio *t;
	struct test_vring ring;
	int notify_fd, irq_fd;
	unsigned expected_used;
	struct test_used_log used;
};

static bool on_irq(void *opaque, int32_t result)
{
	struct fixture *f = opaque;

	if (result < 0)
		return false;
	if (!test_mmio__ack_interrupt(f->t, f->irq_fd))
		return true;
	test_used_log__drain(f->guest, &f->ring, &f->used);
	if (f->used.seen >= f->expected_used ||
	    (test_mmio__read(f->t, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET))
		event_loop__stop(f->loop);
	return true;
}

static void kick_and_wait(struct fixture *f, unsigned count)
{
	f->expected_used = f->used.seen + count;
	test_mmio__write(f->t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	assert_false(test_loop__run_timed_out(f->loop, 10ull * 1000000000ull));
}

static void create_device(struct fixture *f, const char *rate_limiter)
{
	struct virtio_rng_options options = {0};
	json_t *limiter = rate_limiter ? json_loads(rate_limiter, 0, NULL) : NULL;
	char error[256];

	f->guest = test_guest__create(GUEST_SIZE);
	f->loop = event_loop__create(64);
	assert_non_null(f->loop);
	f->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	f->irq_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	options.rate_limiter = limiter;
	f->rng = virtio_rng__create(&f->guest->memory, f->loop, &options, f->notify_fd, f->irq_fd,
				    error, sizeof(error));
	json_decref(limiter);
	if (!f->rng)
		fail_msg("create: %s", error);
	f->t = virtio_rng__transport(f->rng);
	assert_int_equal(test_mmio__read(f->t, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_RNG);
	assert_int_equal(test_mmio__read(f->t, VIRTIO_MMIO_QUEUE_NUM_MAX), 64);
	assert_true(event_loop__watch(f->loop, f->irq_fd, POLLIN, on_irq, f) >= 0);
	test_vring__init(f->guest, &f->ring, 64, RING_BASE);
	assert_true(test_mmio__negotiate(f->t, V1 | (1ull << VIRTIO_F_EVENT_IDX)) &
		    VIRTIO_STATUS_FEATURES_OK);
	test_mmio__setup_queue(f->t, 0, &f->ring);
	test_mmio__driver_ok(f->t);
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (!f)
		return 0;
	virtio_rng__destroy(f->rng);
	event_loop__destroy(f->loop);
	close(f->notify_fd);
	close(f->irq_fd);
	test_guest__destroy(f->guest);
	free(f);
	return 0;
}

static uint16_t post(struct fixture *f, unsigned slot, uint32_t len, bool writable)
{
	struct test_buffer buffer = {DATA + 8192ull * slot, len, writable};

	memset(test_guest__ptr(f->guest, buffer.gpa), 0, 8192);
	return test_vring__add_chain(f->guest, &f->ring, &buffer, 1, true);
}

static json_int_t metric(struct fixture *f, const char *name)
{
	json_t *metrics = virtio_rng__metrics(f->rng);
	json_int_t value = json_integer_value(json_object_get(metrics, name));

	json_decref(metrics);
	return value;
}

static void test_device_fills_buffers(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	uint16_t heads[8];

	*state = f;
	create_device(f, "{}");
	for (unsigned i = 0; i < 8; i++)
		heads[i] = post(f, i, 64, true);
	kick_and_wait(f, 8);
	for (unsigned i = 0; i < 8; i++) {
		assert_int_equal(f->used.id[i], heads[i]);
		assert_int_equal(f->used.len[i], 64);
		assert_true(zero_bytes(test_guest__ptr(f->guest, DATA + 8192ull * i), 64) < 16);
	}
	/* Two requests never see the same bytes. */
	assert_memory_not_equal(test_guest__ptr(f->guest, DATA),
				test_guest__ptr(f->guest, DATA + 8192), 64);
	/* An 8 KiB buffer gets the per-request cap. */
	post(f, 0, 8192, true);
	kick_and_wait(f, 1);
	assert_int_equal(f->used.len[8], VIRTIO_RNG_MAX_REQUEST_BYTES);
	assert_int_equal(zero_bytes(test_guest__ptr(f->guest, DATA + VIRTIO_RNG_MAX_REQUEST_BYTES),
				    8192 - VIRTIO_RNG_MAX_REQUEST_BYTES),
			 8192 - VIRTIO_RNG_MAX_REQUEST_BYTES);
	/* A device-readable buffer: returned empty, counted, device still live. */
	post(f, 1, 64, false);
	kick_and_wait(f, 1);
	assert_int_equal(f->used.len[9], 0);
	assert_int_equal(zero_bytes(test_guest__ptr(f->guest, DATA + 8192), 64), 64);
	assert_int_equal(metric(f, "errors"), 1);
	assert_int_equal(metric(f, "requests"), 10);
	assert_int_equal(metric(f, "bytes"), 8 * 64 + VIRTIO_RNG_MAX_REQUEST_BYTES);
	assert_false(test_mmio__read(f->t, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
}

static void test_device_hostile_ring(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct test_buffer outside = {GUEST_SIZE - 16, 64, true}; /* runs past guest RAM */

	*state = f;
	create_device(f, "{}");
	test_vring__add_chain(f->guest, &f->ring, &outside, 1, true);
	kick_and_wait(f, 1); /* stops on NEEDS_RESET */
	assert_true(test_mmio__read(f->t, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	assert_int_equal(metric(f, "needs_reset"), 1);
	assert_int_equal(metric(f, "bytes"), 0);
	/* Reset and reinitialise: it serves again. */
	test_vring__init(f->guest, &f->ring, 64, RING_BASE);
	f->used.seen = 0;
	test_mmio__negotiate(f->t, V1);
	test_mmio__setup_queue(f->t, 0, &f->ring);
	test_mmio__driver_ok(f->t);
	post(f, 0, 32, true);
	kick_and_wait(f, 1);
	assert_int_equal(f->used.len[0], 32);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void test_device_rate_limited(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	uint64_t start;

	*state = f;
	/* 2 requests per 100 ms: 6 requests need at least 2 refills. */
	create_device(f, "{\"ops\":{\"size\":2,\"refill_time\":100}}");
	start = now_ns();
	for (unsigned i = 0; i < 6; i++)
		post(f, i, 32, true);
	kick_and_wait(f, 6);
	assert_true(now_ns() - start >= 190 * 1000000ull);
	assert_true(metric(f, "rate_limited") >= 2);
	for (unsigned i = 0; i < 6; i++)
		assert_int_equal(f->used.len[i], 32);
}

/* Destroyed while throttled: the timer's callback frees it (no leak under
 * ASan, no use after free). */
static void test_destroy_while_throttled(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	*state = f;
	create_device(f, "{\"ops\":{\"size\":1,\"refill_time\":60000}}");
	post(f, 0, 32, true);
	post(f, 1, 32, true);
	kick_and_wait(f, 1);
	assert_int_equal(metric(f, "rate_limited"), 1);
	virtio_rng__destroy(f->rng);
	f->rng = NULL;
	/* Let the cancelled timer's callback run. */
	assert_true(test_loop__run_timed_out(f->loop, 20 * 1000000ull));
}

static void test_factory(void **unused)
{
	struct test_guest *guest = test_guest__create(1 << 20);
	struct event_loop *loop = event_loop__create(64);
	struct mmio_bus *bus = mmio_bus__create();
	struct vmm_device_host host = {
	    .vm_fd = -1, .memory = &guest->memory, .loop = loop, .bus = bus};
	struct vmm_device device;
	char error[256];
	uint8_t data[4] = {0};
	json_t *config = json_loads("{\"type\":\"rng\"}", 0, NULL), *metrics, *bad;

	(void)unused;
	assert_int_equal(virtio_devices__create(&host, config, MMIO_BUS_VIRTIO_BASE, 5, &device,
						error, sizeof(error)),
			 0);
	assert_string_equal(device.type, "rng");
	assert_true(
	    mmio_bus__dispatch(bus, MMIO_BUS_MEMORY, MMIO_BUS_VIRTIO_BASE + 8, data, 4, false));
	assert_int_equal(data[0], VIRTIO_ID_RNG);
	/* Without "rate_limiter": the default limits, not unlimited. */
	metrics = device.metrics(device.opaque);
	assert_string_equal(json_string_value(json_object_get(metrics, "type")), "rng");
	assert_int_equal(
	    json_integer_value(json_object_get(
		json_object_get(json_object_get(metrics, "rate_limiter"), "bandwidth"), "size")),
	    65536);
	json_decref(metrics);
	device.destroy(device.opaque);
	json_decref(config);
	bad = json_loads("{\"type\":\"rng\",\"queue_size\":3}", 0, NULL);
	assert_true(virtio_devices__create(&host, bad,
					   MMIO_BUS_VIRTIO_BASE + MMIO_BUS_VIRTIO_WINDOW, 6,
					   &device, error, sizeof(error)) < 0);
	assert_non_null(strstr(error, "power of two"));
	json_decref(bad);
	bad = json_loads("{\"type\":\"rng\",\"rate_limiter\":{\"ops\":{\"size\":\"x\"}}}", 0, NULL);
	assert_true(virtio_devices__create(&host, bad,
					   MMIO_BUS_VIRTIO_BASE + MMIO_BUS_VIRTIO_WINDOW, 6,
					   &device, error, sizeof(error)) < 0);
	json_decref(bad);
	mmio_bus__destroy(bus);
	event_loop__destroy(loop);
	test_guest__destroy(guest);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fill),
	    cmocka_unit_test_teardown(test_device_fills_buffers, teardown),
	    cmocka_unit_test_teardown(test_device_hostile_ring, teardown),
	    cmocka_unit_test_teardown(test_device_rate_limited, teardown),
	    cmocka_unit_test_teardown(test_destroy_while_throttled, teardown),
	    cmocka_unit_test(test_factory),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

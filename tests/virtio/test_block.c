/* virtio-blk tests.
 * Unit part: request parsing and checking (short header, bad sector range,
 * partial sectors, read-only, unknown types).
 * Device part (run with --device, label integration): a synthetic guest
 * drives the device through its MMIO registers and rings, with the real
 * io_uring event loop and a real image file: write a pattern, flush, read
 * back, verify the file on the host; GET_ID; read-only; discard/zeroes;
 * a ring violation (NEEDS_RESET); the rate limiter. */
#include <errno.h>
#include <fcntl.h>
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

#include "block.h"
#include "event_loop.h"
#include "test_device.h"
#include "test_driver.h"

#define GUEST_SIZE   (8u << 20)
#define RING_BASE    0x10000u
#define HEADERS	     0x100000u /* 16 bytes per request slot */
#define STATUS	     0x180000u /* 1 byte per slot */
#define DATA	     0x200000u /* 4 KiB per slot, 1 MiB */
#define READBACK     0x400000u /* 4 KiB per slot */
#define DISK_SECTORS 8192u     /* 4 MiB image */
#define V1	     (1ull << VIRTIO_F_VERSION_1)

static struct virtq_chain *chain_with(const struct test_buffer *buffers, unsigned n,
				      struct test_guest *guest)
{
	struct virtq_chain *chain = calloc(1, sizeof(*chain));

	for (unsigned i = 0; i < n; i++) {
		chain->iov[i].iov_base = test_guest__ptr(guest, buffers[i].gpa);
		chain->iov[i].iov_len = buffers[i].len;
		if (buffers[i].writable) {
			chain->writable_bytes += buffers[i].len;
		} else {
			chain->readable_count++;
			chain->readable_bytes += buffers[i].len;
		}
	}
	chain->iov_count = n;
	return chain;
}

static void write_header(struct test_guest *guest, uint64_t gpa, uint32_t type, uint64_t sector)
{
	uint8_t *p = test_guest__ptr(guest, gpa);

	memset(p, 0, 16);
	memcpy(p, &type, 4);
	memcpy(p + 8, &sector, 8);
}

static void test_parse(void **unused)
{
	struct test_guest *guest = test_guest__create(1 << 20);
	struct virtio_blk_request request;
	struct virtq_chain *chain;
	uint64_t features = (1ull << VIRTIO_BLK_F_FLUSH);

	/* Read of 2 sectors split over two buffers, header split too. */
	write_header(guest, 0x1000, VIRTIO_BLK_T_IN, 10);
	{
		struct test_buffer b[] = {{0x1000, 8, false},
					  {0x1008, 8, false},
					  {0x2000, 512, true},
					  {0x3000, 513, true}};
		chain = chain_with(b, 4, guest);
	}
	assert_int_equal(virtio_blk__parse(chain, &request), 0);
	assert_int_equal(request.type, VIRTIO_BLK_T_IN);
	assert_int_equal(request.sector, 10);
	assert_int_equal(request.data_bytes, 1024);
	assert_int_equal(request.data_count, 2);
	assert_ptr_equal(request.status, test_guest__ptr(guest, 0x3000 + 512));
	free(chain);

	/* The usual layout: the status byte alone in the last buffer, which
	 * is then not part of the data. */
	write_header(guest, 0x1000, VIRTIO_BLK_T_IN, 10);
	{
		struct test_buffer b[] = {
		    {0x1000, 16, false}, {0x2000, 1024, true}, {0x3000, 1, true}};
		chain = chain_with(b, 3, guest);
	}
	assert_int_equal(virtio_blk__parse(chain, &request), 0);
	assert_int_equal(request.data_bytes, 1024);
	assert_int_equal(request.data_count, 1);
	assert_ptr_equal(request.status, test_guest__ptr(guest, 0x3000));
	assert_int_equal(virtio_blk__check(&request, 12, false, features), VIRTIO_BLK_S_OK);
	assert_int_equal(virtio_blk__check(&request, 11, false, features), VIRTIO_BLK_S_IOERR);
	free(chain);

	/* Write: header and data in one buffer. */
	write_header(guest, 0x1000, VIRTIO_BLK_T_OUT, 0xfffffffffffffffeull);
	{
		struct test_buffer b[] = {{0x1000, 16 + 1024, false}, {0x4000, 1, true}};
		chain = chain_with(b, 2, guest);
	}
	assert_int_equal(virtio_blk__parse(chain, &request), 0);
	assert_int_equal(request.data_bytes, 1024);
	assert_ptr_equal(request.data[0].iov_base, test_guest__ptr(guest, 0x1010));
	/* sector + 2 wraps: refused, not overflowed */
	assert_int_equal(virtio_blk__check(&request, UINT64_MAX, false, features),
			 VIRTIO_BLK_S_IOERR);
	request.sector = 0;
	assert_int_equal(virtio_blk__check(&request, 100, false, features), VIRTIO_BLK_S_OK);
	assert_int_equal(virtio_blk__check(&request, 100, true, features),
			 VIRTIO_BLK_S_IOERR); /* RO */
	request.data_bytes = 1000;	      /* partial sector */
	assert_int_equal(virtio_blk__check(&request, 100, false, features), VIRTIO_BLK_S_IOERR);
	request.type = 99;
	assert_int_equal(virtio_blk__check(&request, 100, false, features), VIRTIO_BLK_S_UNSUPP);
	request.type = VIRTIO_BLK_T_FLUSH;
	assert_int_equal(virtio_blk__check(&request, 100, false, 0), VIRTIO_BLK_S_UNSUPP);
	request.type = VIRTIO_BLK_T_DISCARD;
	assert_int_equal(virtio_blk__check(&request, 100, false, 0), VIRTIO_BLK_S_UNSUPP);
	free(chain);

	/* Short header. */
	{
		struct test_buffer b[] = {{0x1000, 8, false}, {0x4000, 1, true}};
		chain = chain_with(b, 2, guest);
	}
	assert_int_equal(virtio_blk__parse(chain, &request), -EINVAL);
	assert_non_null(request.status); /* can still report IOERR */
	free(chain);
	/* No status byte. */
	{
		struct test_buffer b[] = {{0x1000, 16, false}};
		chain = chain_with(b, 1, guest);
	}
	assert_int_equal(virtio_blk__parse(chain, &request), -EINVAL);
	assert_null(request.status);
	free(chain);
	/* A write whose data is device-writable. */
	write_header(guest, 0x1000, VIRTIO_BLK_T_OUT, 0);
	{
		struct test_buffer b[] = {
		    {0x1000, 16, false}, {0x2000, 512, true}, {0x4000, 1, true}};
		chain = chain_with(b, 3, guest);
	}
	assert_int_equal(virtio_blk__parse(chain, &request), -EINVAL);
	free(chain);
	/* A read with readable data after the header. */
	write_header(guest, 0x1000, VIRTIO_BLK_T_IN, 0);
	{
		struct test_buffer b[] = {{0x1000, 16 + 512, false}, {0x4000, 1, true}};
		chain = chain_with(b, 2, guest);
	}
	assert_int_equal(virtio_blk__parse(chain, &request), -EINVAL);
	free(chain);
	test_guest__destroy(guest);
}

/* --- device-level tests ------------------------------------------------- */

struct device_fixture {
	struct test_guest *guest;
	struct event_loop *loop;
	struct virtio_blk *blk;
	struct virtio_mmio *t;
	struct test_vring ring;
	int notify_fd, irq_fd;
	char path[64];
	unsigned expected_used;
	struct test_used_log used;
};

static bool on_irq(void *opaque, int32_t result)
{
	struct device_fixture *f = opaque;

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

/* Notifies and runs the loop until `count` more used elements arrived. */
static void kick_and_wait(struct device_fixture *f, unsigned count)
{
	f->expected_used = f->used.seen + count;
	test_mmio__write(f->t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	assert_false(test_loop__run_timed_out(f->loop, 5ull * 1000000000ull));
}

static unsigned loop_entries = 256;
static bool direct_io;
static const char *base_image; /* set: the device is an overlay over it */

static void create_device(struct device_fixture *f, bool read_only, const char *rate_limiter)
{
	struct virtio_blk_options options = {0};
	char error[256];
	json_t *limiter = NULL;
	int fd;

	f->guest = test_guest__create(GUEST_SIZE);
	f->loop = event_loop__create(loop_entries);
	assert_non_null(f->loop);
	strcpy(f->path, "/tmp/warren-blk-XXXXXX");
	fd = mkstemp(f->path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, base_image ? 0 : DISK_SECTORS * 512ull), 0);
	close(fd);
	f->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	f->irq_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (rate_limiter)
		limiter = json_loads(rate_limiter, 0, NULL);
	options.path = f->path;
	options.read_only = read_only;
	options.direct = direct_io;
	options.base = base_image;
	options.id = "warren-test-disk";
	options.rate_limiter = limiter;
	f->blk = virtio_blk__create(&f->guest->memory, f->loop, &options, f->notify_fd, f->irq_fd,
				    error, sizeof(error));
	json_decref(limiter);
	if (!f->blk)
		fail_msg("create: %s", error);
	f->t = virtio_blk__transport(f->blk);
	assert_true(event_loop__watch(f->loop, f->irq_fd, POLLIN, on_irq, f) >= 0);
	test_vring__init(f->guest, &f->ring, 128, RING_BASE);
	assert_true(test_mmio__negotiate(
			f->t, V1 | (1ull << VIRTIO_F_EVENT_IDX) | (1ull << VIRTIO_F_INDIRECT_DESC) |
				  (1ull << VIRTIO_BLK_F_FLUSH) |
				  (read_only ? (1ull << VIRTIO_BLK_F_RO)
					     : (1ull << VIRTIO_BLK_F_WRITE_ZEROES))) &
		    VIRTIO_STATUS_FEATURES_OK);
	test_mmio__setup_queue(f->t, 0, &f->ring);
	test_mmio__driver_ok(f->t);
	assert_int_equal(test_mmio__read(f->t, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DRIVER_OK,
			 VIRTIO_STATUS_DRIVER_OK);
}

static int device_teardown(void **state)
{
	struct device_fixture *f = *state;

	if (!f)
		return 0;
	virtio_blk__destroy(f->blk);
	event_loop__destroy(f->loop);
	close(f->notify_fd);
	close(f->irq_fd);
	unlink(f->path);
	test_guest__destroy(f->guest);
	free(f);
	return 0;
}

/* Queues request `slot` (no notify). data_len 0: no data buffer. */
static uint16_t queue_request(struct device_fixture *f, unsigned slot, uint32_t type,
			      uint64_t sector, uint64_t data_gpa, uint32_t data_len,
			      bool data_writable)
{
	struct test_buffer b[3];
	unsigned n = 0;

	write_header(f->guest, HEADERS + 16 * slot, type, sector);
	*(uint8_t *)test_guest__ptr(f->guest, STATUS + slot) = 0xee;
	b[n++] = (struct test_buffer){HEADERS + 16 * slot, 16, false};
	if (data_len)
		b[n++] = (struct test_buffer){data_gpa, data_len, data_writable};
	b[n++] = (struct test_buffer){STATUS + slot, 1, true};
	return test_vring__add_chain(f->guest, &f->ring, b, n, true);
}

static uint8_t status_of(struct device_fixture *f, unsigned slot)
{
	return *(uint8_t *)test_guest__ptr(f->guest, STATUS + slot);
}

static void test_write_flush_read_verify(void **state)
{
	struct device_fixture *f = calloc(1, sizeof(*f));
	uint8_t file_block[4096];
	unsigned sectors[32];
	json_t *metrics;
	int fd;

	*state = f;
	create_device(f, false, NULL);
	/* 32 writes of 4 KiB at scattered sectors, all in one notification. */
	for (unsigned i = 0; i < 32; i++) {
		uint8_t *data = test_guest__ptr(f->guest, DATA + 4096 * i);

		sectors[i] = (i * 97 % 1000) * 8;
		for (unsigned j = 0; j < 4096; j++)
			data[j] = (uint8_t)(i * 31 + j * 7);
		queue_request(f, i, VIRTIO_BLK_T_OUT, sectors[i], DATA + 4096 * i, 4096, false);
	}
	kick_and_wait(f, 32);
	for (unsigned i = 0; i < 32; i++)
		assert_int_equal(status_of(f, i), VIRTIO_BLK_S_OK);
	queue_request(f, 40, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false);
	kick_and_wait(f, 1);
	assert_int_equal(status_of(f, 40), VIRTIO_BLK_S_OK);
	/* Read back into other buffers and compare. */
	for (unsigned i = 0; i < 32; i++)
		queue_request(f, i, VIRTIO_BLK_T_IN, sectors[i], READBACK + 4096 * i, 4096, true);
	kick_and_wait(f, 32);
	for (unsigned i = 0; i < 32; i++) {
		assert_int_equal(status_of(f, i), VIRTIO_BLK_S_OK);
		assert_memory_equal(test_guest__ptr(f->guest, READBACK + 4096 * i),
				    test_guest__ptr(f->guest, DATA + 4096 * i), 4096);
	}
	/* Used length of a read: data + status byte. */
	assert_int_equal(f->used.len[(f->used.seen - 1) % 256], 4097);
	/* The image on the host holds the pattern. */
	fd = open(f->path, O_RDONLY);
	assert_int_equal(pread(fd, file_block, 4096, sectors[5] * 512ull), 4096);
	assert_memory_equal(file_block, test_guest__ptr(f->guest, DATA + 4096 * 5), 4096);
	close(fd);
	metrics = virtio_blk__metrics(f->blk);
	assert_int_equal(json_integer_value(json_object_get(metrics, "writes")), 32);
	assert_int_equal(json_integer_value(json_object_get(metrics, "reads")), 32);
	assert_int_equal(json_integer_value(json_object_get(metrics, "flushes")), 1);
	assert_int_equal(json_integer_value(json_object_get(metrics, "write_bytes")), 32 * 4096);
	assert_int_equal(json_integer_value(json_object_get(metrics, "errors")), 0);
	json_decref(metrics);
}

static void test_bad_requests(void **state)
{
	struct device_fixture *f = calloc(1, sizeof(*f));
	json_t *metrics;

	*state = f;
	create_device(f, false, NULL);
	queue_request(f, 0, VIRTIO_BLK_T_IN, DISK_SECTORS - 1, DATA, 4096, true); /* past the end */
	queue_request(f, 1, VIRTIO_BLK_T_OUT, 0, DATA, 100, false); /* partial sector */
	queue_request(f, 2, 77, 0, 0, 0, false);		    /* unknown type */
	queue_request(f, 3, VIRTIO_BLK_T_GET_ID, 0, READBACK, 20, true);
	queue_request(f, 4, VIRTIO_BLK_T_IN, DISK_SECTORS - 8, DATA, 4096, true); /* last 4 KiB */
	kick_and_wait(f, 5);
	assert_int_equal(status_of(f, 0), VIRTIO_BLK_S_IOERR);
	assert_int_equal(status_of(f, 1), VIRTIO_BLK_S_IOERR);
	assert_int_equal(status_of(f, 2), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(status_of(f, 3), VIRTIO_BLK_S_OK);
	assert_memory_equal(test_guest__ptr(f->guest, READBACK), "warren-test-disk\0\0\0\0", 20);
	assert_int_equal(status_of(f, 4), VIRTIO_BLK_S_OK);
	metrics = virtio_blk__metrics(f->blk);
	assert_int_equal(json_integer_value(json_object_get(metrics, "errors")), 3);
	json_decref(metrics);
}

static void test_read_only(void **state)
{
	struct device_fixture *f = calloc(1, sizeof(*f));
	uint8_t block[512];
	int fd;

	*state = f;
	create_device(f, true, NULL);
	test_mmio__write(f->t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	assert_true(test_mmio__read(f->t, VIRTIO_MMIO_DEVICE_FEATURES) & (1u << VIRTIO_BLK_F_RO));
	memset(test_guest__ptr(f->guest, DATA), 0x5a, 512);
	queue_request(f, 0, VIRTIO_BLK_T_OUT, 0, DATA, 512, false);
	queue_request(f, 1, VIRTIO_BLK_T_IN, 0, READBACK, 512, true);
	kick_and_wait(f, 2);
	assert_int_equal(status_of(f, 0), VIRTIO_BLK_S_IOERR);
	assert_int_equal(status_of(f, 1), VIRTIO_BLK_S_OK);
	fd = open(f->path, O_RDONLY);
	assert_int_equal(pread(fd, block, 512, 0), 512);
	assert_int_equal(block[0], 0); /* unchanged */
	close(fd);
}

static void test_write_zeroes(void **state)
{
	struct device_fixture *f = calloc(1, sizeof(*f));
	uint8_t *segment;

	*state = f;
	create_device(f, false, NULL);
	memset(test_guest__ptr(f->guest, DATA), 0x77, 8192);
	queue_request(f, 0, VIRTIO_BLK_T_OUT, 64, DATA, 8192, false);
	kick_and_wait(f, 1);
	assert_int_equal(status_of(f, 0), VIRTIO_BLK_S_OK);
	segment = test_guest__ptr(f->guest, DATA + 0x10000);
	memset(segment, 0, 16);
	segment[0] = 66; /* sector 66, 4 sectors */
	segment[8] = 4;
	/* Requests in flight together are unordered (5.2.6.4): the driver
	 * waits for the zeroing before it reads the range back. */
	queue_request(f, 1, VIRTIO_BLK_T_WRITE_ZEROES, 0, DATA + 0x10000, 16, false);
	kick_and_wait(f, 1);
	assert_int_equal(status_of(f, 1), VIRTIO_BLK_S_OK);
	queue_request(f, 2, VIRTIO_BLK_T_IN, 64, READBACK, 8192, true);
	kick_and_wait(f, 1);
	assert_int_equal(status_of(f, 2), VIRTIO_BLK_S_OK);
	assert_int_equal(*(uint8_t *)test_guest__ptr(f->guest, READBACK + 1023), 0x77);
	assert_int_equal(*(uint8_t *)test_guest__ptr(f->guest, READBACK + 1024), 0);
	assert_int_equal(*(uint8_t *)test_guest__ptr(f->guest, READBACK + 3071), 0);
	assert_int_equal(*(uint8_t *)test_guest__ptr(f->guest, READBACK + 3072), 0x77);
}

static void test_ring_violation_needs_reset(void **state)
{
	struct device_fixture *f = calloc(1, sizeof(*f));
	json_t *metrics;

	*state = f;
	create_device(f, false, NULL);
	test_vring__publish(f->guest, &f->ring, 4000); /* head out of range */
	kick_and_wait(f, 1);			       /* stops on NEEDS_RESET (config interrupt) */
	assert_true(test_mmio__read(f->t, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	assert_true(test_mmio__read(f->t, VIRTIO_MMIO_INTERRUPT_STATUS) == 0); /* acked by on_irq */
	metrics = virtio_blk__metrics(f->blk);
	assert_int_equal(json_integer_value(json_object_get(metrics, "needs_reset")), 1);
	json_decref(metrics);
	/* Reset and reinitialise: the device works again. */
	test_vring__init(f->guest, &f->ring, 128, RING_BASE);
	f->used.seen = 0;
	test_mmio__negotiate(f->t, V1);
	test_mmio__setup_queue(f->t, 0, &f->ring);
	test_mmio__driver_ok(f->t);
	queue_request(f, 0, VIRTIO_BLK_T_IN, 0, READBACK, 512, true);
	kick_and_wait(f, 1);
	assert_int_equal(status_of(f, 0), VIRTIO_BLK_S_OK);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void test_rate_limited(void **state)
{
	struct device_fixture *f = calloc(1, sizeof(*f));
	json_t *metrics, *update;
	uint64_t start;
	char error[128];

	*state = f;
	/* 2 ops per 100 ms: 6 requests need at least 2 refills (~200 ms). */
	create_device(f, false, "{\"ops\":{\"size\":2,\"refill_time\":100}}");
	start = now_ns();
	for (unsigned i = 0; i < 6; i++)
		queue_request(f, i, VIRTIO_BLK_T_IN, i * 8, READBACK + 4096 * i, 4096, true);
	kick_and_wait(f, 6);
	assert_true(now_ns() - start >= 190 * 1000000ull);
	for (unsigned i = 0; i < 6; i++)
		assert_int_equal(status_of(f, i), VIRTIO_BLK_S_OK);
	metrics = virtio_blk__metrics(f->blk);
	assert_true(json_integer_value(json_object_get(metrics, "rate_limited")) >= 2);
	json_decref(metrics);
	/* Lifting the limit at run time: 64 requests complete at once. */
	update = json_object();
	assert_int_equal(virtio_blk__set_rate_limit(f->blk, update, error, sizeof(error)), 0);
	json_decref(update);
	start = now_ns();
	for (unsigned i = 0; i < 64; i++)
		queue_request(f, i, VIRTIO_BLK_T_IN, i * 8, READBACK, 512, true);
	kick_and_wait(f, 64);
	assert_true(now_ns() - start < 1500 * 1000000ull); /* limited: >= 3.1 s */
}

/* A loop with room for only a few operations: requests beyond it wait for
 * completions instead of failing. */
static void test_small_event_loop(void **state)
{
	struct device_fixture *f = calloc(1, sizeof(*f));

	*state = f;
	loop_entries = 6; /* notify watch + irq watch + 4 I/Os */
	create_device(f, false, NULL);
	loop_entries = 256;
	for (unsigned i = 0; i < 40; i++)
		queue_request(f, i, VIRTIO_BLK_T_IN, i * 8, READBACK + 4096 * i, 4096, true);
	kick_and_wait(f, 40);
	for (unsigned i = 0; i < 40; i++)
		assert_int_equal(status_of(f, i), VIRTIO_BLK_S_OK);
}

/* O_DIRECT: aligned guest buffers go straight to the file. */
static void test_direct_io(void **state)
{
	struct device_fixture *f = calloc(1, sizeof(*f));
	uint8_t block[4096] __attribute__((aligned(4096)));
	json_t *metrics;
	int fd;

	*state = f;
	direct_io = true;
	create_device(f, false, NULL);
	direct_io = false;
	memset(test_guest__ptr(f->guest, DATA), 0x3c, 4096);
	queue_request(f, 0, VIRTIO_BLK_T_OUT, 16, DATA, 4096, false);
	kick_and_wait(f, 1);
	queue_request(f, 1, VIRTIO_BLK_T_IN, 16, READBACK, 4096, true);
	kick_and_wait(f, 1);
	if (status_of(f, 0) == VIRTIO_BLK_S_IOERR) {
		printf("SKIP: O_DIRECT not supported by the file system of %s\n", f->path);
		skip();
	}
	assert_int_equal(status_of(f, 0), VIRTIO_BLK_S_OK);
	assert_int_equal(status_of(f, 1), VIRTIO_BLK_S_OK);
	assert_memory_equal(test_guest__ptr(f->guest, READBACK), test_guest__ptr(f->guest, DATA),
			    4096);
	fd = open(f->path, O_RDONLY);
	assert_int_equal(pread(fd, block, 4096, 16 * 512), 4096);
	assert_int_equal(block[100], 0x3c);
	close(fd);
	/* Both went through guest RAM registered once (fixed buffers). */
	metrics = virtio_blk__metrics(f->blk);
	assert_true(json_is_true(json_object_get(metrics, "fixed_buffers")));
	assert_int_equal(json_integer_value(json_object_get(metrics, "fixed_requests")), 2);
	assert_false(json_is_true(json_object_get(metrics, "inline_writes")));
	json_decref(metrics);
}

/* Copy-on-write over a base image, through the ring: reads see the base,
 * writes land in the overlay only, WRITE_ZEROES reads back zeros. */
static void test_overlay_device(void **state)
{
	struct device_fixture *f = calloc(1, sizeof(*f));
	char base[] = "/tmp/warren-blk-base-XXXXXX";
	static uint8_t pattern[DISK_SECTORS * 512];
	uint8_t check[4096];
	json_t *metrics;
	int fd = mkstemp(base);

	*state = f;
	assert_true(fd >= 0);
	for (unsigned i = 0; i < sizeof(pattern); i++)
		pattern[i] = (uint8_t)(i * 13 + 1);
	assert_int_equal(write(fd, pattern, sizeof(pattern)), (ssize_t)sizeof(pattern));
	base_image = base;
	create_device(f, false, NULL);
	base_image = NULL;
	queue_request(f, 0, VIRTIO_BLK_T_IN, 8, READBACK, 4096, true);
	kick_and_wait(f, 1);
	assert_int_equal(status_of(f, 0), VIRTIO_BLK_S_OK);
	assert_memory_equal(test_guest__ptr(f->guest, READBACK), pattern + 4096, 4096);
	memset(test_guest__ptr(f->guest, DATA), 0x77, 1024);
	queue_request(f, 1, VIRTIO_BLK_T_OUT, 9, DATA, 1024, false); /* inside a cluster */
	kick_and_wait(f, 1);
	queue_request(f, 2, VIRTIO_BLK_T_IN, 8, READBACK, 4096, true);
	kick_and_wait(f, 1);
	assert_int_equal(status_of(f, 1), VIRTIO_BLK_S_OK);
	assert_memory_equal(test_guest__ptr(f->guest, READBACK), pattern + 4096, 512);
	assert_int_equal(*(uint8_t *)test_guest__ptr(f->guest, READBACK + 512), 0x77);
	assert_memory_equal(test_guest__ptr(f->guest, READBACK + 1536), pattern + 4096 + 1536,
			    4096 - 1536);
	/* The base is untouched. */
	assert_int_equal(pread(fd, check, sizeof(check), 4096), (ssize_t)sizeof(check));
	assert_memory_equal(check, pattern + 4096, sizeof(check));
	metrics = virtio_blk__metrics(f->blk);
	assert_int_equal(json_integer_value(json_object_get(metrics, "overlay_clusters")), 1);
	assert_int_equal(json_integer_value(json_object_get(metrics, "capacity_sectors")),
			 DISK_SECTORS);
	json_decref(metrics);
	close(fd);
	unlink(base);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest unit[] = {
	    cmocka_unit_test(test_parse),
	};
	const struct CMUnitTest device[] = {
	    cmocka_unit_test_teardown(test_write_flush_read_verify, device_teardown),
	    cmocka_unit_test_teardown(test_bad_requests, device_teardown),
	    cmocka_unit_test_teardown(test_read_only, device_teardown),
	    cmocka_unit_test_teardown(test_write_zeroes, device_teardown),
	    cmocka_unit_test_teardown(test_ring_violation_needs_reset, device_teardown),
	    cmocka_unit_test_teardown(test_rate_limited, device_teardown),
	    cmocka_unit_test_teardown(test_small_event_loop, device_teardown),
	    cmocka_unit_test_teardown(test_direct_io, device_teardown),
	    cmocka_unit_test_teardown(test_overlay_device, device_teardown),
	};

	if (argc > 1 && strcmp(argv[1], "--device") == 0)
		return cmocka_run_group_tests_name("virtio-blk device", device, NULL, NULL);
	return cmocka_run_group_tests_name("virtio-blk parsing", unit, NULL, NULL);
}

/* bench_block: virtio-blk throughput from an in-process driver.
 *
 * A synthetic guest (tests/virtio/test_driver.h) drives the real device
 * (virtio-mmio registers, split rings with EVENT_IDX, the io_uring event
 * loop, a real image file) on one thread: the loop runs the device and the
 * driver's interrupt handler, which refills each completed slot. Figures:
 *   - 4 KiB random reads at queue depth 1, 8, 32 from a file in the page cache;
 *   - 4 KiB sequential writes at queue depth 1 with a flush every 64 writes.
 * IOPS, and CPU per I/O (user + system of this process / operations; it
 * includes the driver's side, which a real guest would pay in the guest).
 *
 * Usage: bench_block [seconds per case, default 2] [image path]
 * No QEMU comparison here: that needs a guest driver both VMMs can boot
 * (see the room's README). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "block.h"
#include "event_loop.h"
#include "test_driver.h"

#define GUEST_SIZE    (16u << 20)
#define RING_BASE     0x10000u
#define RING_SIZE     128u
#define HEADERS	      0x100000u
#define STATUS	      0x180000u
#define DATA	      0x200000u
#define IMAGE_BYTES   (256ull << 20)
#define IMAGE_SECTORS (IMAGE_BYTES / 512)

enum mode { RANDOM_READ, SEQUENTIAL_WRITE };

struct bench {
	struct test_guest *guest;
	struct event_loop *loop;
	struct virtio_blk *blk;
	struct virtio_mmio *t;
	struct test_vring ring;
	int notify_fd, irq_fd;
	enum mode mode;
	unsigned depth;
	bool running;
	uint64_t completed, errors, writes_since_flush, next_sector, flushes;
	bool flush_pending;
	uint64_t random_state;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns(void)
{
	struct rusage usage;

	getrusage(RUSAGE_SELF, &usage);
	return ((uint64_t)usage.ru_utime.tv_sec + (uint64_t)usage.ru_stime.tv_sec) * 1000000000ull +
	       ((uint64_t)usage.ru_utime.tv_usec + (uint64_t)usage.ru_stime.tv_usec) * 1000ull;
}

static uint64_t next_random(struct bench *b)
{
	b->random_state ^= b->random_state << 13;
	b->random_state ^= b->random_state >> 7;
	b->random_state ^= b->random_state << 17;
	return b->random_state;
}

/* Slot i owns descriptors 3i (header), 3i+1 (data), 3i+2 (status). */
static void submit(struct bench *b, unsigned slot, uint32_t type, uint64_t sector)
{
	uint8_t *header = test_guest__ptr(b->guest, HEADERS + 16 * slot);
	uint16_t head = (uint16_t)(3 * slot);
	struct virtq_desc *desc = test_vring__desc(b->guest, &b->ring, head);
	bool with_data = type != VIRTIO_BLK_T_FLUSH;

	memset(header, 0, 16);
	memcpy(header, &type, 4);
	memcpy(header + 8, &sector, 8);
	desc[0] = (struct virtq_desc){HEADERS + 16 * slot, 16, VIRTQ_DESC_F_NEXT,
				      (uint16_t)(with_data ? head + 1 : head + 2)};
	desc[1] = (struct virtq_desc){
	    DATA + 4096ull * slot, 4096,
	    (uint16_t)(VIRTQ_DESC_F_NEXT | (type == VIRTIO_BLK_T_IN ? VIRTQ_DESC_F_WRITE : 0)),
	    (uint16_t)(head + 2)};
	desc[2] = (struct virtq_desc){STATUS + slot, 1, VIRTQ_DESC_F_WRITE, 0};
	test_vring__publish(b->guest, &b->ring, head);
}

static void refill(struct bench *b, unsigned slot)
{
	if (b->mode == RANDOM_READ) {
		submit(b, slot, VIRTIO_BLK_T_IN, (next_random(b) % (IMAGE_SECTORS / 8)) * 8);
		return;
	}
	if (b->writes_since_flush == 64) {
		b->writes_since_flush = 0;
		b->flushes++;
		submit(b, slot, VIRTIO_BLK_T_FLUSH, 0);
		return;
	}
	b->writes_since_flush++;
	submit(b, slot, VIRTIO_BLK_T_OUT, b->next_sector);
	b->next_sector = (b->next_sector + 8) % IMAGE_SECTORS;
}

static bool on_irq(void *opaque, int32_t result)
{
	struct bench *b = opaque;
	uint32_t id, len;
	uint64_t value;
	bool refilled = false;

	if (result < 0)
		return false;
	if (read(b->irq_fd, &value, sizeof(value)) < 0)
		return true;
	test_mmio__write(b->t, VIRTIO_MMIO_INTERRUPT_ACK,
			 test_mmio__read(b->t, VIRTIO_MMIO_INTERRUPT_STATUS));
	do {
		while (test_vring__get_used(b->guest, &b->ring, &id, &len)) {
			unsigned slot = id / 3;

			if (*(uint8_t *)test_guest__ptr(b->guest, STATUS + slot) != VIRTIO_BLK_S_OK)
				b->errors++;
			b->completed++;
			if (b->running) {
				refill(b, slot);
				refilled = true;
			}
		}
		test_vring__set_used_event(b->guest, &b->ring);
	} while (test_vring__has_used(b->guest, &b->ring));
	if (refilled)
		test_mmio__write(b->t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	return true;
}

static bool on_end(void *opaque, int32_t result)
{
	struct bench *b = opaque;

	b->running = false;
	event_loop__stop(b->loop);
	return false;
}

static void run_case(struct bench *b, enum mode mode, unsigned depth, double seconds)
{
	uint64_t start, start_cpu, elapsed, cpu;

	b->mode = mode;
	b->depth = depth;
	b->completed = b->errors = b->flushes = 0;
	b->writes_since_flush = 0;
	b->running = true;
	for (unsigned slot = 0; slot < depth; slot++)
		refill(b, slot);
	start = now_ns();
	start_cpu = cpu_ns();
	test_mmio__write(b->t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	event_loop__timer(b->loop, (uint64_t)(seconds * 1e9), on_end, b);
	event_loop__run(b->loop);
	elapsed = now_ns() - start;
	cpu = cpu_ns() - start_cpu;
	/* Drain what is still in flight so the next case starts clean. */
	while (b->ring.used_seen != b->ring.avail_idx) {
		event_loop__timer(b->loop, 20 * 1000000ull, on_end, b);
		event_loop__run(b->loop);
	}
	printf("%-28s QD %2u  %9.0f IOPS  %6.2f us CPU/IO  (%llu ops%s%llu errors)\n",
	       mode == RANDOM_READ ? "4k random read (cached)" : "4k seq write, flush/64", depth,
	       (double)b->completed * 1e9 / (double)elapsed,
	       b->completed ? (double)cpu / 1000.0 / (double)b->completed : 0.0,
	       (unsigned long long)b->completed, mode == RANDOM_READ ? ", " : " incl. flushes, ",
	       (unsigned long long)b->errors);
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 2.0;
	const char *path = argc > 2 ? argv[2] : "/tmp/warren-bench-block.img";
	struct virtio_blk_options options = {.path = path, .queue_size = RING_SIZE};
	struct bench b = {.random_state = 0x9e3779b97f4a7c15ull};
	static uint8_t chunk[1 << 20];
	char error[256];
	int fd;

	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		fprintf(stderr, "bench_block: %s: %s\n", path, strerror(errno));
		return 1;
	}
	/* Written here, so the image is in the page cache. */
	for (uint64_t offset = 0; offset < IMAGE_BYTES; offset += sizeof(chunk)) {
		memset(chunk, (int)(offset >> 20), sizeof(chunk));
		if (pwrite(fd, chunk, sizeof(chunk), (off_t)offset) != (ssize_t)sizeof(chunk)) {
			fprintf(stderr, "bench_block: write image: %s\n", strerror(errno));
			return 1;
		}
	}
	fsync(fd);
	close(fd);
	b.guest = test_guest__create(GUEST_SIZE);
	b.loop = event_loop__create(512);
	b.notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	b.irq_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	b.blk = virtio_blk__create(&b.guest->memory, b.loop, &options, b.notify_fd, b.irq_fd, error,
				   sizeof(error));
	if (!b.blk) {
		fprintf(stderr, "bench_block: %s\n", error);
		return 1;
	}
	b.t = virtio_blk__transport(b.blk);
	event_loop__watch(b.loop, b.irq_fd, POLLIN, on_irq, &b);
	test_vring__init(b.guest, &b.ring, RING_SIZE, RING_BASE);
	if (!(test_mmio__negotiate(b.t, (1ull << VIRTIO_F_VERSION_1) |
					    (1ull << VIRTIO_F_EVENT_IDX) |
					    (1ull << VIRTIO_BLK_F_FLUSH)) &
	      VIRTIO_STATUS_FEATURES_OK)) {
		fprintf(stderr, "bench_block: feature negotiation failed\n");
		return 1;
	}
	test_mmio__setup_queue(b.t, 0, &b.ring);
	test_mmio__driver_ok(b.t);

	printf("warren virtio-blk, in-process driver, %.1f s per case, image %s (256 MiB)\n",
	       seconds, path);
	run_case(&b, RANDOM_READ, 1, seconds);
	run_case(&b, RANDOM_READ, 8, seconds);
	run_case(&b, RANDOM_READ, 32, seconds);
	run_case(&b, SEQUENTIAL_WRITE, 1, seconds);

	virtio_blk__destroy(b.blk);
	event_loop__destroy(b.loop);
	test_guest__destroy(b.guest);
	unlink(path);
	return 0;
}

/* Copy-on-write disk (vmm/virtio/overlay.c), no KVM: against a reference
 * model (the base's bytes with every operation applied) over a 1 MiB base
 * with a pattern: random sector-aligned writes split over several iovecs,
 * partial-cluster writes (copy-up), zeroes and discards; the base file is
 * never modified; the overlay survives close/reopen; a foreign overlay is
 * refused; and the overlay file holds only what was written (allocated
 * bytes vs the full copy a sandbox used to get). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "overlay.h"

#define DISK (1u << 20)

static char base_path[] = "/tmp/warren-overlay-base-XXXXXX";
static char overlay_path[64];
static uint8_t reference[DISK], scratch[DISK];
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t next_random(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static int setup(void **unused)
{
	int fd = mkstemp(base_path);

	(void)unused;
	if (fd < 0)
		return -1;
	for (unsigned i = 0; i < DISK; i++)
		reference[i] = (uint8_t)(i * 7 + i / 4096);
	if (write(fd, reference, DISK) != DISK)
		return -1;
	close(fd);
	snprintf(overlay_path, sizeof(overlay_path), "%s.overlay", base_path);
	unlink(overlay_path);
	return 0;
}

static int teardown(void **unused)
{
	(void)unused;
	unlink(base_path);
	unlink(overlay_path);
	return 0;
}

static struct blk_overlay *open_overlay(void)
{
	char error[256];
	uint64_t capacity = 0;
	struct blk_overlay *overlay =
	    blk_overlay__open(base_path, overlay_path, &capacity, error, sizeof(error));

	if (!overlay)
		fail_msg("open: %s", error);
	assert_int_equal(capacity, DISK);
	return overlay;
}

/* The whole disk read through the overlay equals the model. */
static void assert_matches(struct blk_overlay *overlay)
{
	struct iovec iov[3] = {
	    {scratch, 1000}, {scratch + 1000, 5000}, {scratch + 6000, DISK - 6000}};

	memset(scratch, 0xa5, sizeof(scratch));
	assert_int_equal(blk_overlay__read(overlay, iov, 3, 0, DISK), 0);
	assert_memory_equal(scratch, reference, DISK);
}

static void test_model(void **unused)
{
	static uint8_t data[65536];
	struct blk_overlay *overlay;
	uint8_t base_before[64];
	int fd;

	(void)unused;
	fd = open(base_path, O_RDONLY);
	assert_int_equal(pread(fd, base_before, sizeof(base_before), 4096 * 3),
			 sizeof(base_before));
	overlay = open_overlay();
	assert_int_equal(blk_overlay__clusters(overlay), 0);
	assert_matches(overlay);
	for (unsigned op = 0; op < 300; op++) {
		uint64_t sectors = 1 + next_random() % 96;
		uint64_t offset = (next_random() % (DISK / 512 - sectors)) * 512;
		uint64_t bytes = sectors * 512;
		unsigned kind = (unsigned)(next_random() % 8);

		if (kind < 6) { /* write, split over three iovecs at odd places */
			uint64_t cut1 = next_random() % (bytes + 1),
				 cut2 = cut1 + next_random() % (bytes - cut1 + 1);
			struct iovec iov[3] = {
			    {data, cut1}, {data + cut1, cut2 - cut1}, {data + cut2, bytes - cut2}};

			for (uint64_t i = 0; i < bytes; i++)
				data[i] = (uint8_t)next_random();
			assert_int_equal(blk_overlay__write(overlay, iov, 3, offset, bytes), 0);
			memcpy(reference + offset, data, bytes);
		} else {
			bool discard = kind == 7;
			uint64_t first = (offset + OVERLAY_CLUSTER - 1) / OVERLAY_CLUSTER;
			uint64_t last = (offset + bytes) / OVERLAY_CLUSTER;

			assert_int_equal(blk_overlay__zero(overlay, offset, bytes, discard), 0);
			if (!discard)
				memset(reference + offset, 0, bytes);
			else if (first < last) /* whole clusters read as zeros afterwards */
				memset(reference + first * OVERLAY_CLUSTER, 0,
				       (last - first) * OVERLAY_CLUSTER);
		}
		if (op % 25 == 0)
			assert_matches(overlay);
	}
	assert_matches(overlay);
	assert_int_equal(blk_overlay__flush(overlay), 0);
	blk_overlay__close(overlay);
	/* The base never changed. */
	{
		uint8_t after[64];

		assert_int_equal(pread(fd, after, sizeof(after), 4096 * 3), sizeof(after));
		assert_memory_equal(after, base_before, sizeof(after));
		close(fd);
	}
	/* Reopened: the same disk. */
	overlay = open_overlay();
	assert_true(blk_overlay__clusters(overlay) > 0);
	assert_matches(overlay);
	blk_overlay__close(overlay);
}

static void test_copy_up_and_allocation(void **unused)
{
	struct blk_overlay *overlay;
	uint8_t data[512], cluster[OVERLAY_CLUSTER];
	struct iovec iov = {data, sizeof(data)}, whole = {cluster, sizeof(cluster)};
	struct stat st;

	(void)unused;
	unlink(overlay_path);
	for (unsigned i = 0; i < DISK; i++)
		reference[i] = (uint8_t)(i * 7 + i / 4096);
	overlay = open_overlay();
	/* Fresh: header and bitmap only. */
	assert_int_equal(stat(overlay_path, &st), 0);
	printf("fresh overlay over a %u KiB base: %lld bytes allocated\n", DISK / 1024,
	       (long long)st.st_blocks * 512);
	assert_true(st.st_blocks * 512 <= 16384);
	/* 512 bytes in the middle of cluster 20: the rest comes from the base. */
	memset(data, 0x5a, sizeof(data));
	assert_int_equal(blk_overlay__write(overlay, &iov, 1, 20 * 4096 + 1024, sizeof(data)), 0);
	assert_int_equal(blk_overlay__clusters(overlay), 1);
	assert_int_equal(blk_overlay__read(overlay, &whole, 1, 20 * 4096, sizeof(cluster)), 0);
	assert_memory_equal(cluster, reference + 20 * 4096, 1024);
	assert_int_equal(cluster[1024], 0x5a);
	assert_int_equal(cluster[1535], 0x5a);
	assert_memory_equal(cluster + 1536, reference + 20 * 4096 + 1536, 4096 - 1536);
	/* 64 KiB written: the overlay holds about that, not the disk. */
	for (unsigned i = 0; i < 16; i++)
		assert_int_equal(blk_overlay__write(overlay, &whole, 1, (100 + i) * 4096ull, 4096),
				 0);
	assert_int_equal(blk_overlay__flush(overlay), 0);
	assert_int_equal(stat(overlay_path, &st), 0);
	printf("after 17 clusters written: %lld bytes allocated (base %u)\n",
	       (long long)st.st_blocks * 512, DISK);
	assert_true(st.st_blocks * 512 <= 17 * 4096 + 16384);
	blk_overlay__close(overlay);
}

static void test_foreign_overlay_refused(void **unused)
{
	char other[] = "/tmp/warren-overlay-other-XXXXXX", error[256] = "";
	uint64_t capacity;
	int fd = mkstemp(other);

	(void)unused;
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, DISK / 2), 0); /* another base: another size */
	close(fd);
	assert_null(blk_overlay__open(other, overlay_path, &capacity, error, sizeof(error)));
	assert_non_null(strstr(error, "does not belong"));
	assert_null(
	    blk_overlay__open("/nonexistent/base", overlay_path, &capacity, error, sizeof(error)));
	unlink(other);
}

/* test_overlay --measure BASE [MiB]: bytes allocated by a fresh overlay
 * over BASE and after writing MiB (default 8) of 4 KiB blocks spread over
 * the disk, next to a full sparse copy's (BASE's own allocated bytes). */
static int measure(const char *base, unsigned mib)
{
	char path[] = "/tmp/warren-overlay-measure-XXXXXX", error[256];
	static uint8_t block[4096];
	struct iovec iov = {block, sizeof(block)};
	struct blk_overlay *overlay;
	uint64_t capacity = 0, blocks;
	struct stat st, base_st;
	int fd = mkstemp(path);

	if (fd < 0 || ftruncate(fd, 0) || stat(base, &base_st))
		return 1;
	close(fd);
	overlay = blk_overlay__open(base, path, &capacity, error, sizeof(error));
	if (!overlay) {
		fprintf(stderr, "%s\n", error);
		return 1;
	}
	blk_overlay__flush(overlay);
	stat(path, &st);
	printf("base %s: %llu bytes, %llu allocated (what a full sparse copy allocates)\n", base,
	       (unsigned long long)base_st.st_size, (unsigned long long)base_st.st_blocks * 512);
	printf("fresh overlay: %llu bytes allocated\n", (unsigned long long)st.st_blocks * 512);
	blocks = (uint64_t)mib * 256;
	memset(block, 0x42, sizeof(block));
	for (uint64_t i = 0; i < blocks && capacity >= 4096; i++)
		blk_overlay__write(overlay, &iov, 1, (i * 7919 % (capacity / 4096)) * 4096, 4096);
	blk_overlay__flush(overlay);
	stat(path, &st);
	printf("after %u MiB written in 4 KiB blocks: %llu bytes allocated\n", mib,
	       (unsigned long long)st.st_blocks * 512);
	blk_overlay__close(overlay);
	unlink(path);
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_model),
	    cmocka_unit_test(test_copy_up_and_allocation),
	    cmocka_unit_test(test_foreign_overlay_refused),
	};

	if (argc >= 3 && strcmp(argv[1], "--measure") == 0)
		return measure(argv[2], argc > 3 ? (unsigned)atoi(argv[3]) : 8);
	return cmocka_run_group_tests(tests, setup, teardown);
}

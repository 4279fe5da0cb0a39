/* Unit (no KVM needed): the snapshot file format (vmm/snapshot.c). A fake
 * state round-trips; every truncation, every flipped byte, a wrong
 * version and hostile records with a valid checksum are refused with a
 * reason; the memory file is written sparse and maps back privately. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "snapshot.h"

static char error[256];

/* A state with recognisable values in every part. */
static struct snapshot_state *fake_state(uint32_t vcpus, uint32_t devices)
{
	struct snapshot_state *state = snapshot__alloc();

	assert_non_null(state);
	state->machine.vcpus = vcpus;
	state->machine.memory_size = 64ull << 20;
	state->machine.memory_low_size = 64ull << 20;
	state->machine.memory_bytes_written = 12345;
	state->clock.clock = 0x1122334455ull;
	for (uint32_t chip = 0; chip < 3; chip++) {
		state->irqchip[chip].chip_id = chip;
		memset(&state->irqchip[chip].chip, 0x10 + (int)chip,
		       sizeof(state->irqchip[chip].chip));
	}
	state->pit.channels[0].count = 0xabcd;
	state->serial.ier = 2;
	state->serial.divisor_low = 1;
	state->vcpu_count = vcpus;
	for (uint32_t i = 0; i < vcpus; i++) {
		struct snapshot_vcpu *vcpu = &state->vcpus[i];

		vcpu->present = SNAPSHOT_VCPU_REQUIRED | SNAPSHOT_VCPU_XSAVE | SNAPSHOT_VCPU_XCRS;
		vcpu->regs.rip = 0x1000000 + i;
		vcpu->regs.rsp = 0x8000 + i;
		vcpu->sregs.cr3 = 0x9000;
		memset(vcpu->xsave, (int)(0x40 + i), sizeof(vcpu->xsave));
		vcpu->xcrs.nr_xcrs = 1;
		vcpu->msr_count = 3;
		for (uint32_t m = 0; m < 3; m++) {
			vcpu->msrs[m].index = 0xc0000080 + m;
			vcpu->msrs[m].data = 0x500 + m + i;
		}
		memset(vcpu->lapic.regs, (int)i, sizeof(vcpu->lapic.regs));
		vcpu->mp_state.mp_state = i ? KVM_MP_STATE_HALTED : KVM_MP_STATE_RUNNABLE;
		vcpu->debugregs.dr7 = 0x400;
	}
	state->device_count = devices;
	for (uint32_t i = 0; i < devices; i++) {
		struct snapshot_device *device = &state->devices[i];

		snprintf(device->type, sizeof(device->type), "%s", i % 2 ? "net" : "block");
		device->mmio_base = 0xd0000000ull + i * 0x1000;
		device->irq = 5 + i;
		device->size = 40 + i * 3; /* odd sizes: padding exercised */
		memset(device->data, (int)(0xa0 + i), device->size);
	}
	return state;
}

static void encode(const struct snapshot_state *state, uint8_t **data, size_t *size)
{
	assert_int_equal(snapshot__encode(state, data, size), 0);
	assert_true(*size > SNAPSHOT_HEADER_SIZE);
}

/* Recomputes the header digest (what a hostile writer can do). */
static void reseal(uint8_t *data, size_t size)
{
	EVP_MD_CTX *context = EVP_MD_CTX_new();
	unsigned int length;

	assert_non_null(context);
	assert_true(EVP_DigestInit_ex(context, EVP_sha256(), NULL));
	assert_true(EVP_DigestUpdate(context, data, 96));
	assert_true(
	    EVP_DigestUpdate(context, data + SNAPSHOT_HEADER_SIZE, size - SNAPSHOT_HEADER_SIZE));
	assert_true(EVP_DigestFinal_ex(context, data + 96, &length));
	EVP_MD_CTX_free(context);
}

static void test_round_trip(void **unused)
{
	struct snapshot_state *state = fake_state(3, 3);
	struct snapshot_state *back = snapshot__alloc();
	uint8_t *data;
	size_t size;

	encode(state, &data, &size);
	assert_int_equal(snapshot__decode(data, size, back, error, sizeof(error)), 0);
	assert_int_equal(back->vcpu_count, 3);
	assert_int_equal(back->device_count, 3);
	assert_memory_equal(&back->machine, &state->machine, sizeof(state->machine));
	assert_memory_equal(&back->clock, &state->clock, sizeof(state->clock));
	assert_memory_equal(back->irqchip, state->irqchip, sizeof(state->irqchip));
	assert_memory_equal(&back->pit, &state->pit, sizeof(state->pit));
	assert_memory_equal(&back->serial, &state->serial, sizeof(state->serial));
	for (uint32_t i = 0; i < 3; i++) {
		assert_memory_equal(&back->vcpus[i], &state->vcpus[i], sizeof(state->vcpus[i]));
		assert_memory_equal(&back->devices[i], &state->devices[i],
				    offsetof(struct snapshot_device, data) +
					state->devices[i].size);
	}
	free(data);
	snapshot__free(back);
	snapshot__free(state);
}

static void test_encode_refuses_incomplete(void **unused)
{
	struct snapshot_state *state = fake_state(2, 0);
	uint8_t *data;
	size_t size;

	state->vcpus[1].present &= ~SNAPSHOT_VCPU_LAPIC;
	assert_int_equal(snapshot__encode(state, &data, &size), -EINVAL);
	state->vcpus[1].present |= SNAPSHOT_VCPU_LAPIC;
	state->vcpu_count = 0;
	assert_int_equal(snapshot__encode(state, &data, &size), -EINVAL);
	snapshot__free(state);
}

static void test_truncation_everywhere(void **unused)
{
	struct snapshot_state *state = fake_state(2, 2);
	struct snapshot_state *back = snapshot__alloc();
	uint8_t *data;
	size_t size;

	encode(state, &data, &size);
	for (size_t cut = 0; cut < size; cut++) {
		uint8_t *copy = malloc(cut ? cut : 1); /* exact size: ASan sees overreads */

		memcpy(copy, data, cut);
		error[0] = 0;
		assert_int_not_equal(snapshot__decode(copy, cut, back, error, sizeof(error)), 0);
		assert_true(error[0] != 0);
		free(copy);
	}
	free(data);
	snapshot__free(back);
	snapshot__free(state);
}

static void test_flipped_bytes(void **unused)
{
	struct snapshot_state *state = fake_state(1, 1);
	struct snapshot_state *back = snapshot__alloc();
	uint8_t *data;
	size_t size;

	encode(state, &data, &size);
	for (size_t at = 0; at < size; at++) {
		data[at] ^= 0x5a;
		error[0] = 0;
		assert_int_not_equal(snapshot__decode(data, size, back, error, sizeof(error)), 0);
		assert_true(error[0] != 0);
		data[at] ^= 0x5a;
	}
	data[40] ^= 1; /* reserved byte: the digest covers it */
	assert_int_equal(snapshot__decode(data, size, back, error, sizeof(error)), -EBADMSG);
	assert_non_null(strstr(error, "checksum"));
	data[40] ^= 1;
	assert_int_equal(snapshot__decode(data, size, back, error, sizeof(error)), 0);
	free(data);
	snapshot__free(back);
	snapshot__free(state);
}

static void test_wrong_version_and_magic(void **unused)
{
	struct snapshot_state *state = fake_state(1, 0);
	struct snapshot_state *back = snapshot__alloc();
	uint8_t *data;
	size_t size;

	encode(state, &data, &size);
	data[8] = 2;
	reseal(data, size);
	assert_int_equal(snapshot__decode(data, size, back, error, sizeof(error)), -EPROTO);
	assert_non_null(strstr(error, "version 2"));
	data[8] = SNAPSHOT_VERSION;
	data[0] = 'X';
	assert_int_equal(snapshot__decode(data, size, back, error, sizeof(error)), -EINVAL);
	assert_non_null(strstr(error, "magic"));
	free(data);
	snapshot__free(back);
	snapshot__free(state);
}

/* Hostile records that carry a valid checksum: each one refused. */
static void test_hostile_records(void **unused)
{
	struct snapshot_state *state = fake_state(2, 1);
	struct snapshot_state *back = snapshot__alloc();
	uint8_t *data;
	size_t size, first = SNAPSHOT_HEADER_SIZE;
	struct {
		size_t offset; /* from the first record's head */
		uint32_t value;
		const char *reason;
	} cases[] = {
	    {0, 99, "unknown record type"},	 /* type */
	    {4, 7, "machine"},			 /* machine with index 7: still one record */
	    {8, 0xfffffff0u, "bad record"},	 /* length past the end */
	    {8, 8, "machine record is 8 bytes"}, /* short machine */
	    {12, 1, "bad record"},		 /* reserved word */
	};

	encode(state, &data, &size);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t *copy = malloc(size);
		uint32_t value = cases[i].value;
		int result;

		memcpy(copy, data, size);
		memcpy(copy + first + cases[i].offset, &value, 4);
		reseal(copy, size);
		error[0] = 0;
		result = snapshot__decode(copy, size, back, error, sizeof(error));
		if (i == 1) { /* index is ignored for the machine record: accepted */
			assert_int_equal(result, 0);
		} else {
			assert_int_not_equal(result, 0);
			assert_non_null(strstr(error, cases[i].reason));
		}
		free(copy);
	}
	/* vCPU count in the header larger than the machine's: incomplete */
	{
		uint8_t *copy = malloc(size);
		uint32_t vcpus = 3;

		memcpy(copy, data, size);
		memcpy(copy + 24, &vcpus, 4);
		reseal(copy, size);
		assert_int_not_equal(snapshot__decode(copy, size, back, error, sizeof(error)), 0);
		vcpus = 1000;
		memcpy(copy + 24, &vcpus, 4);
		reseal(copy, size);
		assert_int_not_equal(snapshot__decode(copy, size, back, error, sizeof(error)), 0);
		assert_non_null(strstr(error, "vCPUs"));
		free(copy);
	}
	free(data);
	snapshot__free(back);
	snapshot__free(state);
}

static void test_files(void **unused)
{
	char directory[] = "/tmp/warren-snapshot-test-XXXXXX";
	char path[128];
	struct snapshot_state *state = fake_state(1, 1);
	struct snapshot_state *back = snapshot__alloc();
	int fd;

	assert_non_null(mkdtemp(directory));
	snprintf(path, sizeof(path), "%s/state", directory);
	assert_int_equal(snapshot__write_file(path, state, error, sizeof(error)), 0);
	assert_int_equal(snapshot__read_file(path, back, error, sizeof(error)), 0);
	assert_int_equal(back->vcpus[0].regs.rip, state->vcpus[0].regs.rip);
	/* truncate the file on disk: refused with "truncated" */
	assert_int_equal(truncate(path, 200), 0);
	assert_int_not_equal(snapshot__read_file(path, back, error, sizeof(error)), 0);
	assert_non_null(strstr(error, "truncated"));
	/* a directory, a missing file */
	assert_int_not_equal(snapshot__read_file(directory, back, error, sizeof(error)), 0);
	snprintf(path, sizeof(path), "%s/missing", directory);
	assert_int_equal(snapshot__read_file(path, back, error, sizeof(error)), -ENOENT);
	fd = open(directory, O_RDONLY);
	assert_true(fd >= 0);
	close(fd);
	snprintf(path, sizeof(path), "rm -rf %s", directory);
	assert_int_equal(system(path), 0);
	snapshot__free(back);
	snapshot__free(state);
}

/* Guest memory: only touched pages are written (sparse file), the content
 * maps back private (writes do not reach the file). */
static void check_memory_round_trip(bool use_memfd)
{
	const uint64_t size = 16ull << 20;
	char directory[] = "/tmp/warren-snapshot-mem-XXXXXX";
	char path[128], command[160];
	struct guest_memory memory = {.size = size, .low_size = size, .memfd = -1, .source_fd = -1};
	struct guest_memory restored = {0};
	struct snapshot_memory_stats stats;
	struct stat st;

	if (use_memfd) {
		memory.memfd = memfd_create("snapshot-test", MFD_CLOEXEC);
		assert_true(memory.memfd >= 0);
		assert_int_equal(ftruncate(memory.memfd, (off_t)size), 0);
		memory.host = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, memory.memfd, 0);
	} else {
		memory.host =
		    mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	}
	assert_true(memory.host != MAP_FAILED);
	memset(memory.host + 4096, 0x11, 4096);		   /* page 1 */
	memset(memory.host + (3ull << 20), 0x22, 3 << 20); /* 3 MiB at 3 MiB */
	memory.host[size - 1] = 0x33;			   /* last page */
	assert_non_null(mkdtemp(directory));
	snprintf(path, sizeof(path), "%s/memory", directory);
	assert_int_equal(snapshot__write_memory(&memory, path, &stats, error, sizeof(error)), 0);
	assert_true(stats.bytes_written >= 4096 + (3ull << 20) + 4096);
	assert_true(stats.bytes_written < size / 2);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal((uint64_t)st.st_size, size);
	assert_true((uint64_t)st.st_blocks * 512 < size / 2); /* holes kept */
	assert_int_equal(snapshot__map_memory(path, size, size, &restored, error, sizeof(error)),
			 0);
	assert_memory_equal(restored.host, memory.host, size);
	assert_true(restored.source_fd >= 0); /* kept for a later snapshot */
	restored.host[4096] = 0x77;	      /* private: the file keeps 0x11 */
	munmap(restored.host, size);
	close(restored.source_fd);
	assert_int_equal(snapshot__map_memory(path, size, size, &restored, error, sizeof(error)),
			 0);
	assert_int_equal(restored.host[4096], 0x11);
	munmap(restored.host, size);
	close(restored.source_fd);
	/* a memory file of the wrong size is refused */
	assert_int_equal(
	    snapshot__map_memory(path, size * 2, size * 2, &restored, error, sizeof(error)),
	    -EINVAL);
	assert_non_null(strstr(error, "bytes"));
	munmap(memory.host, size);
	if (memory.memfd >= 0)
		close(memory.memfd);
	snprintf(command, sizeof(command), "rm -rf %s", directory);
	assert_int_equal(system(command), 0);
}

static void test_memory_memfd(void **unused)
{
	check_memory_round_trip(true);
}

static void test_memory_anonymous(void **unused)
{
	check_memory_round_trip(false);
}

/* A restored guest's second snapshot: the pages written since the restore
 * come from memory, the rest is copied from the memory file it was
 * restored from (pagemap), and the result is the guest's memory exactly,
 * holes kept. */
static void test_memory_restored(void **unused)
{
	const uint64_t size = 16ull << 20;
	char directory[] = "/tmp/warren-snapshot-mem-XXXXXX";
	char first[128], second[128], command[160];
	struct guest_memory memory = {.size = size, .low_size = size, .memfd = -1, .source_fd = -1};
	struct guest_memory restored = {0}, again = {0};
	struct snapshot_memory_stats stats;
	struct stat st;
	volatile uint8_t touched;

	(void)unused;
	memory.host = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(memory.host != MAP_FAILED);
	memset(memory.host + 4096, 0x11, 4096);
	memset(memory.host + (3ull << 20), 0x22, 3 << 20);
	memory.host[size - 1] = 0x33;
	assert_non_null(mkdtemp(directory));
	snprintf(first, sizeof(first), "%s/first", directory);
	snprintf(second, sizeof(second), "%s/second", directory);
	assert_int_equal(snapshot__write_memory(&memory, first, &stats, error, sizeof(error)), 0);
	assert_int_equal(snapshot__map_memory(first, size, size, &restored, error, sizeof(error)),
			 0);
	touched = restored.host[(3ull << 20) + 8192]; /* read: still the file's page */
	assert_int_equal(touched, 0x22);
	restored.host[4096] = 0x77;			  /* written over data */
	memset(restored.host + (8ull << 20), 0x44, 4096); /* written over a hole */
	memset(restored.host + (4ull << 20), 0x00, 4096); /* data written to zeros */
	assert_int_equal(snapshot__open_pagemap(), 0);
	assert_int_equal(snapshot__write_memory(&restored, second, &stats, error, sizeof(error)),
			 0);
	/* most of the 3 MiB came from the file, the written pages from memory */
	assert_true(stats.bytes_copied >= (3ull << 20) - 3 * 4096);
	assert_true(stats.bytes_written < size / 2);
	assert_int_equal(stat(second, &st), 0);
	assert_true((uint64_t)st.st_blocks * 512 < size / 2); /* holes kept */
	assert_int_equal(snapshot__map_memory(second, size, size, &again, error, sizeof(error)), 0);
	assert_memory_equal(again.host, restored.host, size);
	assert_int_equal(again.host[4096], 0x77);
	assert_int_equal(again.host[(8ull << 20) + 100], 0x44);
	assert_int_equal(again.host[(4ull << 20) + 100], 0x00);
	assert_int_equal(again.host[size - 1], 0x33);
	munmap(again.host, size);
	close(again.source_fd);
	munmap(restored.host, size);
	close(restored.source_fd);
	munmap(memory.host, size);
	snprintf(command, sizeof(command), "rm -rf %s", directory);
	assert_int_equal(system(command), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_encode_refuses_incomplete),
	    cmocka_unit_test(test_truncation_everywhere),
	    cmocka_unit_test(test_flipped_bytes),
	    cmocka_unit_test(test_wrong_version_and_magic),
	    cmocka_unit_test(test_hostile_records),
	    cmocka_unit_test(test_files),
	    cmocka_unit_test(test_memory_memfd),
	    cmocka_unit_test(test_memory_anonymous),
	    cmocka_unit_test(test_memory_restored),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

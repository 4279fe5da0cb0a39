/* snapshot: the file format of a paused VM's state (docs/vmm-snapshot.md).
 *
 * A snapshot is two files: the state file (this module's encoder and
 * parser) and the memory file (guest RAM, byte for byte, written sparse:
 * pages the guest never touched are holes). The state file is a header
 * followed by a state section of records; a SHA-256 over the header (up
 * to the digest) and the whole state section guards against truncation
 * and corruption. The parser treats every byte as hostile: a file that is
 * short, corrupt, of another version, or whose records do not add up is
 * refused with a reason, never half-read.
 *
 * KVM structures are stored as the kernel's x86-64 ABI lays them out
 * (fixed by the KVM API): restore on the same kind of host and CPU only.
 * This module knows no KVM file descriptor: vm.c fills and applies a
 * struct snapshot_state. */
#ifndef WARREN_VMM_SNAPSHOT_H
#define WARREN_VMM_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/kvm.h>

#include "guest_memory.h"

#define SNAPSHOT_MAGIC		  "WRNSNAP\0"
#define SNAPSHOT_VERSION	  1
#define SNAPSHOT_HEADER_SIZE	  128
#define SNAPSHOT_MAX_VCPUS	  64
#define SNAPSHOT_MAX_DEVICES	  8
#define SNAPSHOT_MAX_MSRS	  256
#define SNAPSHOT_MAX_DEVICE_STATE 1024
#define SNAPSHOT_MAX_STATE_SIZE	  (64u << 20)
#define SNAPSHOT_DEVICE_TYPE_SIZE 16

/* The parts of one vCPU's state; a vCPU record set must hold them all. */
enum snapshot_vcpu_part {
	SNAPSHOT_VCPU_REGS = 1u << 0,
	SNAPSHOT_VCPU_SREGS = 1u << 1,
	SNAPSHOT_VCPU_FPU = 1u << 2,
	SNAPSHOT_VCPU_XSAVE = 1u << 3, /* optional: hosts without XSAVE */
	SNAPSHOT_VCPU_XCRS = 1u << 4,  /* optional: hosts without XSAVE */
	SNAPSHOT_VCPU_MSRS = 1u << 5,
	SNAPSHOT_VCPU_LAPIC = 1u << 6,
	SNAPSHOT_VCPU_EVENTS = 1u << 7,
	SNAPSHOT_VCPU_MP_STATE = 1u << 8,
	SNAPSHOT_VCPU_DEBUGREGS = 1u << 9,
};

#define SNAPSHOT_VCPU_REQUIRED                                                                     \
	(SNAPSHOT_VCPU_REGS | SNAPSHOT_VCPU_SREGS | SNAPSHOT_VCPU_FPU | SNAPSHOT_VCPU_MSRS |       \
	 SNAPSHOT_VCPU_LAPIC | SNAPSHOT_VCPU_EVENTS | SNAPSHOT_VCPU_MP_STATE |                     \
	 SNAPSHOT_VCPU_DEBUGREGS)

struct snapshot_vcpu {
	uint32_t present; /* enum snapshot_vcpu_part bits */
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
	/* struct kvm_xsave's fixed 4 KiB region (KVM_GET_XSAVE; its flexible
	 * tail for AMX and larger states is not saved) */
	uint32_t xsave[1024];
	struct kvm_xcrs xcrs;
	uint32_t msr_count;
	struct kvm_msr_entry msrs[SNAPSHOT_MAX_MSRS];
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp_state;
	struct kvm_debugregs debugregs;
};

/* The 16550A's registers (serial.h), as saved. */
struct snapshot_serial {
	uint8_t ier, lcr, mcr, scr, fcr, divisor_low, divisor_high;
	uint8_t thr_empty_pending; /* 0 or 1 */
	uint8_t irq_level;	   /* 0 or 1 */
	uint8_t reserved[7];
};

/* One device's state: its type (as configured) and an opaque blob the
 * device's own save/restore defines (and validates: hostile too). */
struct snapshot_device {
	char type[SNAPSHOT_DEVICE_TYPE_SIZE]; /* NUL-terminated */
	uint64_t mmio_base;
	uint32_t irq;
	uint32_t size;
	uint8_t data[SNAPSHOT_MAX_DEVICE_STATE];
};

/* The machine the snapshot was taken of: a restore must be configured the
 * same (vCPUs, memory, CPU profile, device types in order). */
struct snapshot_machine {
	uint32_t vcpus;
	uint32_t cpu_profile;
	uint64_t memory_size;
	uint64_t memory_low_size;
	uint64_t memory_bytes_written; /* data bytes in the memory file */
};

struct snapshot_state {
	struct snapshot_machine machine;
	struct kvm_clock_data clock;
	struct kvm_irqchip irqchip[3]; /* PIC master, PIC slave, IOAPIC */
	struct kvm_pit_state2 pit;
	struct snapshot_serial serial;
	uint32_t vcpu_count;
	struct snapshot_vcpu vcpus[SNAPSHOT_MAX_VCPUS];
	uint32_t device_count;
	struct snapshot_device devices[SNAPSHOT_MAX_DEVICES];
};

/* Loads what the checksum needs (OpenSSL's providers read their config
 * files on first use): call before a seccomp lock-down that forbids
 * opening files. 0 or -EIO. */
int snapshot__init(void);

/* A zeroed state on the heap (it is large: ~2 MiB with 64 vCPUs), or NULL. */
struct snapshot_state *snapshot__alloc(void);
void snapshot__free(struct snapshot_state *state);

/* Encodes state into a new buffer (*out, *out_size; free() it). Only the
 * first state->vcpu_count vCPUs and device_count devices are written.
 * 0, -EINVAL (counts out of range, a required part missing) or -ENOMEM. */
int snapshot__encode(const struct snapshot_state *state, uint8_t **out, size_t *out_size);

/* Parses data[0..size) into *state (zeroed first). 0, or -EINVAL /
 * -EPROTO (wrong version) / -EBADMSG (checksum) with the reason in
 * error[error_size]; *state is then unusable. Never reads outside data. */
int snapshot__decode(const uint8_t *data, size_t size, struct snapshot_state *state, char *error,
		     size_t error_size);

/* The state file: written to path (via path.tmp, fsync, rename) or read
 * and decoded (at most SNAPSHOT_MAX_STATE_SIZE bytes). 0 or -errno with a
 * reason. */
int snapshot__write_file(const char *path, const struct snapshot_state *state, char *error,
			 size_t error_size);
int snapshot__read_file(const char *path, struct snapshot_state *state, char *error,
			size_t error_size);

/* What writing guest memory did. */
struct snapshot_memory_stats {
	uint64_t bytes_written; /* data written (holes skipped), copies included */
	uint64_t extents;	/* write requests submitted */
	uint64_t bytes_copied;	/* of a restored guest: copied from its memory file */
};

/* Opens this process's /proc/self/pagemap for snapshot__write_memory of a
 * restored guest; call before the process loses /proc (its jail). 0 or
 * -errno; without it such a write scans every page instead. */
int snapshot__open_pagemap(void);

/* Writes guest RAM (memory->host, memory->size bytes) to a new sparse file
 * at path with io_uring: only the extents that hold data are written
 * (memfd-backed memory: SEEK_DATA/SEEK_HOLE on the memfd). A restored
 * guest (memory->source_fd, with the pagemap open): the pages it wrote
 * since are written from memory, the others copied from its memory file
 * in the kernel (copy_file_range, holes kept). Otherwise pages that are
 * all zero are skipped. Call only while the guest is paused. 0 or -errno
 * with a reason. */
int snapshot__write_memory(const struct guest_memory *memory, const char *path,
			   struct snapshot_memory_stats *stats, char *error, size_t error_size);

/* Maps a memory file as guest RAM: MAP_PRIVATE (copy on write, the file is
 * never changed; pages are read from it on first touch). The file must be
 * a regular file of exactly `size` bytes. 0 (memory->host, size, low_size
 * set, memfd -1, source_fd the file, kept open for a later snapshot) or
 * -errno with a reason. */
int snapshot__map_memory(const char *path, uint64_t size, uint64_t low_size,
			 struct guest_memory *memory, char *error, size_t error_size);

/* The memory file's path for a state file's path: "<path>.mem". New
 * string or NULL. */
char *snapshot__memory_path(const char *state_path);

#endif

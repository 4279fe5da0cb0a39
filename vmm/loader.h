/* loader: parses a guest kernel image and copies it into guest memory.
 *
 * Accepted: an ELF64 x86-64 executable (vmlinux or a test guest) entered at
 * e_entry in 64-bit mode, its PT_LOAD segments placed at p_paddr; and a
 * bzImage (boot protocol >= 2.12 with XLF_KERNEL_64) whose protected-mode
 * part is placed at LOADER_BZIMAGE_ADDRESS and entered at its 64-bit entry
 * (that address + 0x200, Documentation/x86/boot.rst "64-bit BOOT
 * PROTOCOL"). The image is hostile: every offset, size and address is
 * checked against the file and against guest RAM before anything is copied. */
#ifndef WARREN_VMM_LOADER_H
#define WARREN_VMM_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "guest_memory.h"

#define LOADER_MAX_SEGMENTS 16
/* Guest-physical memory below this is the VMM's (zero page, page tables,
 * GDT, command line); a kernel may not load there. */
#define LOADER_MIN_ADDRESS     0x100000ull
#define LOADER_BZIMAGE_ADDRESS 0x100000ull
/* Bytes of a bzImage's setup header copied into boot_params (0x1f1 up to
 * the end of the 2.15 header). */
#define LOADER_SETUP_HEADER_OFFSET 0x1f1
#define LOADER_SETUP_HEADER_END	   0x268

enum loader_kind {
	LOADER_ELF64 = 1,
	LOADER_BZIMAGE = 2,
};

struct loader_segment {
	uint64_t file_offset;
	uint64_t file_size;
	uint64_t address;     /* guest-physical */
	uint64_t memory_size; /* >= file_size; the rest is zeroed */
};

struct loader_image {
	enum loader_kind kind;
	uint64_t entry; /* guest-physical 64-bit entry point */
	uint32_t segment_count;
	struct loader_segment segments[LOADER_MAX_SEGMENTS];
	uint64_t end; /* highest guest-physical byte used + 1 */
	/* bzImage only */
	uint16_t protocol_version;
	uint32_t initrd_address_max;
	uint32_t command_line_size; /* 0 when the header does not say */
	uint8_t setup_header[LOADER_SETUP_HEADER_END - LOADER_SETUP_HEADER_OFFSET];
};

/* Parses `data[0..size)` for a guest whose RAM is described by `memory`
 * (only its sizes are read). Returns 0 and fills `image`, or -EINVAL with a
 * reason in error[error_size] ("ELF: segment 2 beyond guest memory", ...). */
int loader__parse(const uint8_t *data, size_t size, const struct guest_memory *memory,
		  struct loader_image *image, char *error, size_t error_size);

/* Copies a parsed image into guest memory (zeroing each segment's bss).
 * Returns 0 or -EFAULT (re-checks every range). */
int loader__load(const struct loader_image *image, const uint8_t *data, size_t size,
		 struct guest_memory *memory);

#endif

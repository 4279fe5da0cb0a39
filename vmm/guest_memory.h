/* guest_memory: the guest's physical memory as the VMM sees it.
 *
 * Layout (x86-64): RAM [0, min(size, GUEST_MEMORY_LOW_LIMIT)) and, when
 * larger, the rest from 4 GiB up, leaving [3 GiB, 4 GiB) for MMIO (virtio
 * devices, IOAPIC, LAPIC). Both regions live in one memfd mapping so a
 * snapshot can save it with one file. Every guest-physical address and
 * length that came from the guest is hostile: translate through
 * guest_memory__ptr(), which checks the whole range. */
#ifndef WARREN_VMM_GUEST_MEMORY_H
#define WARREN_VMM_GUEST_MEMORY_H

#include <stdbool.h>
#include <stdint.h>

#define GUEST_MEMORY_LOW_LIMIT (3ull << 30) /* MMIO hole starts here */
#define GUEST_MEMORY_HIGH_BASE (4ull << 30)

struct guest_memory {
	uint8_t *host;	   /* mapping of all guest RAM: low region then high */
	uint64_t size;	   /* total RAM bytes */
	uint64_t low_size; /* bytes mapped at guest-physical 0 */
	int memfd;	   /* backing memfd (-1 for anonymous) */
	int source_fd;	   /* the memory file a restore mapped privately (-1) */
};

/* Host pointer for the guest-physical range [gpa, gpa + len), or NULL when
 * any byte of it is outside RAM, the range wraps, or it straddles the MMIO
 * hole. len may be 0 (then gpa itself must be inside RAM or at its end). */
static inline void *guest_memory__ptr(const struct guest_memory *memory, uint64_t gpa, uint64_t len)
{
	uint64_t end;

	if (__builtin_add_overflow(gpa, len, &end))
		return NULL;
	if (end <= memory->low_size)
		return memory->host + gpa;
	if (gpa >= GUEST_MEMORY_HIGH_BASE &&
	    end - GUEST_MEMORY_HIGH_BASE <= memory->size - memory->low_size)
		return memory->host + memory->low_size + (gpa - GUEST_MEMORY_HIGH_BASE);
	return NULL;
}

/* True when [gpa, gpa + len) lies wholly inside guest RAM. */
static inline bool guest_memory__contains(const struct guest_memory *memory, uint64_t gpa,
					  uint64_t len)
{
	return guest_memory__ptr(memory, gpa, len) != NULL;
}

#endif

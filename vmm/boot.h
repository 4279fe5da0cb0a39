/* boot: the x86-64 machine state warren-vmm builds before the first guest
 * instruction: where the zero page, command line, GDT and page tables live
 * in guest memory, the e820 map, boot_params, and the vCPU registers for a
 * 64-bit entry (Documentation/x86/boot.rst, "64-bit BOOT PROTOCOL").
 *
 * Guest-physical layout below 1 MiB (all in RAM, marked usable in e820 only
 * below BOOT_EBDA_START; the kernel may not load below 1 MiB):
 *   0x0500 GDT           0x0520 IDT (empty)
 *   0x6000 setup_data: SETUP_RNG_SEED (BOOT_RNG_SEED_BYTES from getrandom())
 *   0x7000 boot_params   0x8ff0 initial stack top
 *   0x9000 PML4, 0xa000 PDPT, 0xb000-0xefff four page directories
 *   0x20000 command line (BOOT_COMMAND_LINE_MAX bytes) */
#ifndef WARREN_VMM_BOOT_H
#define WARREN_VMM_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include <asm/bootparam.h>
#include <linux/kvm.h>

#include "guest_memory.h"
#include "loader.h"

#define BOOT_GDT_ADDRESS	  0x500ull
#define BOOT_IDT_ADDRESS	  0x520ull
#define BOOT_SETUP_DATA_ADDRESS	  0x6000ull
#define BOOT_RNG_SEED_BYTES	  64u /* 512 bits: the guest's crng needs 256 */
#define BOOT_ZERO_PAGE_ADDRESS	  0x7000ull
#define BOOT_STACK_TOP		  0x8ff0ull
#define BOOT_PML4_ADDRESS	  0x9000ull
#define BOOT_PDPT_ADDRESS	  0xa000ull
#define BOOT_PD_ADDRESS		  0xb000ull /* four pages: 4 GiB with 2 MiB pages */
#define BOOT_PAGE_TABLES_END	  0xf000ull
#define BOOT_COMMAND_LINE_ADDRESS 0x20000ull
#define BOOT_COMMAND_LINE_MAX	  4096u /* including the NUL */
#define BOOT_EBDA_START		  0x9fc00ull
#define BOOT_HIGH_MEMORY_START	  0x100000ull
#define BOOT_MIN_MEMORY		  (8ull << 20)

/* GDT selectors (boot.rst: __BOOT_CS 0x10, __BOOT_DS 0x18) */
#define BOOT_CODE_SELECTOR 0x10
#define BOOT_DATA_SELECTOR 0x18
#define BOOT_TSS_SELECTOR  0x20
#define BOOT_GDT_ENTRIES   6 /* null, null, code64, data, tss (two slots) */

/* Writes the identity map of [0, 4 GiB) with 2 MiB pages (present, writable,
 * user) into the six pages at page_tables (which is guest-physical
 * BOOT_PML4_ADDRESS, laid out PML4, PDPT, PD0..PD3). */
void boot__build_page_tables(uint8_t *page_tables);

/* Fills gdt[BOOT_GDT_ENTRIES] (see the selectors above). */
void boot__build_gdt(uint64_t gdt[BOOT_GDT_ENTRIES]);

/* Fills the e820 table of `params` for `memory`: low RAM below the EBDA,
 * RAM from 1 MiB to the low limit, RAM above 4 GiB when present. Returns
 * the number of entries. */
unsigned boot__build_e820(struct boot_params *params, const struct guest_memory *memory);

/* Guest-physical address for an initrd of `size` bytes: page-aligned, as high
 * as possible in low RAM, below `address_max` (the kernel's
 * initrd_addr_max; 0: no limit beyond low RAM) and above `kernel_end`.
 * Returns 0 when it does not fit. */
uint64_t boot__initrd_address(const struct guest_memory *memory, uint64_t size, uint64_t kernel_end,
			      uint64_t address_max);

struct boot_setup {
	const char *command_line; /* final, NUL-terminated */
	uint64_t initrd_address;  /* 0: none */
	uint64_t initrd_size;
	uint32_t vcpus; /* > 1: an MP table announces the others (1: none, 8259 PIC only) */
};

/* Writes zero page, command line, GDT, IDT and page tables into guest
 * memory for `image`, and a setup_data SETUP_RNG_SEED of
 * BOOT_RNG_SEED_BYTES fresh bytes from getrandom() (boot protocol >= 2.09;
 * the guest's crng is then ready before its first getrandom()). Returns 0,
 * or -EINVAL (command line too long, memory smaller than BOOT_MIN_MEMORY)
 * / -EFAULT / -errno of getrandom(). */
int boot__setup_memory(struct guest_memory *memory, const struct loader_image *image,
		       const struct boot_setup *setup);

#define BOOT_MP_TABLE_ADDRESS 0xf0000ull /* in the reserved BIOS area */
#define BOOT_MP_TABLE_MAX     0x1000u
#define BOOT_IOAPIC_ADDRESS   0xfec00000u
#define BOOT_LAPIC_ADDRESS    0xfee00000u

/* Writes an Intel MultiProcessor Specification 1.4 table for `vcpus`
 * processors (APIC ids 0..vcpus-1, 0 the BSP), one ISA bus, the IOAPIC
 * (id = vcpus) with ISA IRQs 0-15 on pins 0-15, ExtINT on LINT0 and NMI on
 * LINT1, into table[BOOT_MP_TABLE_MAX] (guest-physical
 * BOOT_MP_TABLE_ADDRESS): the floating pointer, then the configuration
 * table. Returns the bytes used, or 0 when vcpus is 0 or too many. */
size_t boot__build_mp_table(uint8_t *table, uint32_t vcpus);

/* vCPU registers for the 64-bit entry of `image`: long mode with the page
 * tables above, flat segments, RSI = zero page, interrupts off. */
void boot__initial_registers(const struct loader_image *image, struct kvm_regs *regs,
			     struct kvm_sregs *sregs);

#endif

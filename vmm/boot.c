/* boot: 64-bit boot protocol setup (Documentation/x86/boot.rst, "64-bit
 * BOOT PROTOCOL" and "THE ZERO PAGE"; Intel SDM vol. 3A 4.5 for the
 * paging structures, 3.4.5 for segment descriptors). */
#include "boot.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

#define PAGE_PRESENT	  0x1ull
#define PAGE_WRITABLE	  0x2ull
#define PAGE_USER	  0x4ull
#define PAGE_SIZE_2M_FLAG 0x80ull
#define TABLE_FLAGS	  (PAGE_PRESENT | PAGE_WRITABLE | PAGE_USER)

#define CR0_PE	 0x1ull
#define CR0_MP	 0x2ull
#define CR0_ET	 0x10ull
#define CR0_NE	 0x20ull
#define CR0_WP	 0x10000ull
#define CR0_PG	 0x80000000ull
#define CR4_PAE	 0x20ull
#define EFER_SCE 0x1ull
#define EFER_LME 0x100ull
#define EFER_LMA 0x400ull

static void put64(uint8_t *p, uint64_t value)
{
	memcpy(p, &value, sizeof(value)); /* x86 is little endian */
}

void boot__build_page_tables(uint8_t *page_tables)
{
	uint8_t *pml4 = page_tables;
	uint8_t *pdpt = page_tables + (BOOT_PDPT_ADDRESS - BOOT_PML4_ADDRESS);
	uint8_t *pd = page_tables + (BOOT_PD_ADDRESS - BOOT_PML4_ADDRESS);

	memset(page_tables, 0, BOOT_PAGE_TABLES_END - BOOT_PML4_ADDRESS);
	put64(pml4, BOOT_PDPT_ADDRESS | TABLE_FLAGS);
	for (uint64_t i = 0; i < 4; i++)
		put64(pdpt + i * 8, (BOOT_PD_ADDRESS + i * 0x1000) | TABLE_FLAGS);
	for (uint64_t i = 0; i < 4 * 512; i++)
		put64(pd + i * 8, (i << 21) | TABLE_FLAGS | PAGE_SIZE_2M_FLAG);
}

/* Segment descriptor: base, limit, access byte and flags nibble. */
static uint64_t gdt_entry(uint8_t flags, uint8_t access, uint32_t base, uint32_t limit)
{
	return ((uint64_t)(base & 0xff000000u) << 32) | ((uint64_t)(flags & 0xf) << 52) |
	       ((uint64_t)(limit & 0x000f0000u) << 32) | ((uint64_t)access << 40) |
	       ((uint64_t)(base & 0x00ffffffu) << 16) | (uint64_t)(limit & 0x0000ffffu);
}

void boot__build_gdt(uint64_t gdt[BOOT_GDT_ENTRIES])
{
	gdt[0] = 0;
	gdt[1] = 0;
	gdt[2] = gdt_entry(0xa, 0x9b, 0, 0xfffff); /* code: L=1, G=1, present, ring 0 */
	gdt[3] = gdt_entry(0xc, 0x93, 0, 0xfffff); /* data: D/B=1, G=1 */
	gdt[4] = gdt_entry(0x0, 0x8b, 0, 0x67);	   /* 64-bit TSS (busy), upper half 0 */
	gdt[5] = 0;
}

static void e820_add(struct boot_params *params, uint64_t address, uint64_t size, uint32_t type)
{
	struct boot_e820_entry *entry;

	if (size == 0 || params->e820_entries >= E820_MAX_ENTRIES_ZEROPAGE)
		return;
	entry = &params->e820_table[params->e820_entries++];
	entry->addr = address;
	entry->size = size;
	entry->type = type;
}

unsigned boot__build_e820(struct boot_params *params, const struct guest_memory *memory)
{
	params->e820_entries = 0;
	e820_add(params, 0, BOOT_EBDA_START, 1 /* E820_TYPE_RAM */);
	e820_add(params, BOOT_EBDA_START, BOOT_HIGH_MEMORY_START - BOOT_EBDA_START,
		 2 /* reserved */);
	if (memory->low_size > BOOT_HIGH_MEMORY_START)
		e820_add(params, BOOT_HIGH_MEMORY_START, memory->low_size - BOOT_HIGH_MEMORY_START,
			 1);
	if (memory->size > memory->low_size)
		e820_add(params, GUEST_MEMORY_HIGH_BASE, memory->size - memory->low_size, 1);
	return params->e820_entries;
}

uint64_t boot__initrd_address(const struct guest_memory *memory, uint64_t size, uint64_t kernel_end,
			      uint64_t address_max)
{
	uint64_t limit = memory->low_size; /* first byte past the usable range */
	uint64_t address;

	if (address_max != 0 && address_max + 1 < limit)
		limit = address_max + 1;
	if (size == 0 || size > limit)
		return 0;
	address = (limit - size) & ~0xfffull;
	if (address < kernel_end || address < BOOT_HIGH_MEMORY_START)
		return 0;
	return address;
}

/* boot.rst "setup_data": one SETUP_RNG_SEED node at BOOT_SETUP_DATA_ADDRESS
 * (the only node: next = 0), linked from hdr.setup_data. The kernel mixes
 * the seed into its input pool and credits it (6.1: when
 * CONFIG_RANDOM_TRUST_BOOTLOADER or random.trust_bootloader=on; later
 * kernels by default), then zeroes it. 0, or -errno. */
static int boot__add_rng_seed(struct guest_memory *memory, struct boot_params *params)
{
	struct setup_data *node;
	size_t filled = 0;

	if (params->hdr.version < 0x0209)
		return 0; /* no setup_data before protocol 2.09 */
	node =
	    guest_memory__ptr(memory, BOOT_SETUP_DATA_ADDRESS, sizeof(*node) + BOOT_RNG_SEED_BYTES);
	if (node == NULL)
		return -EFAULT;
	memset(node, 0, sizeof(*node));
	node->type = SETUP_RNG_SEED;
	node->len = BOOT_RNG_SEED_BYTES;
	while (filled < BOOT_RNG_SEED_BYTES) {
		ssize_t n = getrandom(node->data + filled, BOOT_RNG_SEED_BYTES - filled, 0);

		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0)
			filled += (size_t)n;
	}
	params->hdr.setup_data = BOOT_SETUP_DATA_ADDRESS;
	return 0;
}

int boot__setup_memory(struct guest_memory *memory, const struct loader_image *image,
		       const struct boot_setup *setup)
{
	struct boot_params *params;
	uint64_t gdt[BOOT_GDT_ENTRIES];
	uint8_t *page_tables, *command_line, *gdt_memory, *idt_memory;
	size_t command_line_length = strlen(setup->command_line);
	uint32_t command_line_max = BOOT_COMMAND_LINE_MAX;
	int result;

	if (memory->low_size < BOOT_MIN_MEMORY)
		return -EINVAL;
	if (image->kind == LOADER_BZIMAGE && image->command_line_size != 0 &&
	    image->command_line_size + 1 < command_line_max)
		command_line_max = image->command_line_size + 1;
	if (command_line_length + 1 > command_line_max)
		return -EINVAL;

	params = guest_memory__ptr(memory, BOOT_ZERO_PAGE_ADDRESS, sizeof(*params));
	page_tables =
	    guest_memory__ptr(memory, BOOT_PML4_ADDRESS, BOOT_PAGE_TABLES_END - BOOT_PML4_ADDRESS);
	command_line = guest_memory__ptr(memory, BOOT_COMMAND_LINE_ADDRESS, BOOT_COMMAND_LINE_MAX);
	gdt_memory = guest_memory__ptr(memory, BOOT_GDT_ADDRESS, sizeof(gdt));
	idt_memory = guest_memory__ptr(memory, BOOT_IDT_ADDRESS, 8);
	if (!params || !page_tables || !command_line || !gdt_memory || !idt_memory)
		return -EFAULT;

	boot__build_page_tables(page_tables);
	boot__build_gdt(gdt);
	memcpy(gdt_memory, gdt, sizeof(gdt));
	memset(idt_memory, 0, 8);
	memset(command_line, 0, BOOT_COMMAND_LINE_MAX);
	memcpy(command_line, setup->command_line, command_line_length);

	memset(params, 0, sizeof(*params));
	if (image->kind == LOADER_BZIMAGE)
		memcpy(&params->hdr, image->setup_header, sizeof(image->setup_header));
	params->hdr.type_of_loader = 0xff; /* undefined loader */
	params->hdr.boot_flag = 0xaa55;
	params->hdr.header = 0x53726448; /* "HdrS" */
	if (image->kind != LOADER_BZIMAGE)
		params->hdr.version = 0x020f;
	params->hdr.loadflags |= LOADED_HIGH | KEEP_SEGMENTS;
	params->hdr.cmd_line_ptr = (uint32_t)BOOT_COMMAND_LINE_ADDRESS;
	params->ext_cmd_line_ptr = 0;
	params->hdr.cmdline_size = command_line_max - 1;
	if (image->kind == LOADER_BZIMAGE)
		params->hdr.code32_start = (uint32_t)LOADER_BZIMAGE_ADDRESS;
	if (setup->initrd_address != 0) {
		params->hdr.ramdisk_image = (uint32_t)setup->initrd_address;
		params->ext_ramdisk_image = (uint32_t)(setup->initrd_address >> 32);
		params->hdr.ramdisk_size = (uint32_t)setup->initrd_size;
		params->ext_ramdisk_size = (uint32_t)(setup->initrd_size >> 32);
	}
	boot__build_e820(params, memory);
	params->hdr.setup_data = 0; /* a bzImage's header may carry a stale value */
	result = boot__add_rng_seed(memory, params);
	if (result < 0)
		return result;
	if (setup->vcpus > 1) {
		uint8_t *mp_table =
		    guest_memory__ptr(memory, BOOT_MP_TABLE_ADDRESS, BOOT_MP_TABLE_MAX);

		if (mp_table == NULL || boot__build_mp_table(mp_table, setup->vcpus) == 0)
			return -EINVAL;
	}
	return 0;
}

static void boot__segment(struct kvm_segment *segment, uint16_t selector, uint8_t type, bool code)
{
	memset(segment, 0, sizeof(*segment));
	segment->base = 0;
	segment->limit = 0xffffffff;
	segment->selector = selector;
	segment->type = type;
	segment->present = 1;
	segment->dpl = 0;
	segment->db = code ? 0 : 1;
	segment->s = 1;
	segment->l = code ? 1 : 0;
	segment->g = 1;
}

void boot__initial_registers(const struct loader_image *image, struct kvm_regs *regs,
			     struct kvm_sregs *sregs)
{
	memset(regs, 0, sizeof(*regs));
	regs->rflags = 0x2; /* reserved bit 1; IF=0 */
	regs->rip = image->entry;
	regs->rsp = BOOT_STACK_TOP;
	regs->rbp = BOOT_STACK_TOP;
	regs->rsi = BOOT_ZERO_PAGE_ADDRESS;

	boot__segment(&sregs->cs, BOOT_CODE_SELECTOR, 0xb, true);
	boot__segment(&sregs->ds, BOOT_DATA_SELECTOR, 0x3, false);
	sregs->es = sregs->fs = sregs->gs = sregs->ss = sregs->ds;
	memset(&sregs->tr, 0, sizeof(sregs->tr));
	sregs->tr.selector = BOOT_TSS_SELECTOR;
	sregs->tr.limit = 0x67;
	sregs->tr.type = 0xb; /* 64-bit busy TSS */
	sregs->tr.present = 1;
	sregs->gdt.base = BOOT_GDT_ADDRESS;
	sregs->gdt.limit = BOOT_GDT_ENTRIES * 8 - 1;
	sregs->idt.base = BOOT_IDT_ADDRESS;
	sregs->idt.limit = 0;
	sregs->cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
	sregs->cr3 = BOOT_PML4_ADDRESS;
	sregs->cr4 = CR4_PAE;
	sregs->efer = EFER_LME | EFER_LMA | EFER_SCE;
}

/* Intel MultiProcessor Specification 1.4, chapter 4. */
static uint8_t mp_checksum(const uint8_t *bytes, size_t length)
{
	uint8_t sum = 0;

	for (size_t i = 0; i < length; i++)
		sum = (uint8_t)(sum + bytes[i]);
	return (uint8_t)(0 - sum);
}

static void put16(uint8_t *p, uint16_t value)
{
	memcpy(p, &value, sizeof(value));
}

static void put32(uint8_t *p, uint32_t value)
{
	memcpy(p, &value, sizeof(value));
}

size_t boot__build_mp_table(uint8_t *table, uint32_t vcpus)
{
	uint8_t *config = table + 16, *entry;
	uint16_t entries = 0;
	size_t length;

	if (vcpus == 0 || vcpus > 254 ||
	    16 + 44 + (size_t)vcpus * 20 + 8 + 8 + 16 * 8 + 2 * 8 > BOOT_MP_TABLE_MAX)
		return 0;
	memset(table, 0, BOOT_MP_TABLE_MAX);
	/* configuration table entries */
	entry = config + 44;
	for (uint32_t i = 0; i < vcpus; i++, entries++, entry += 20) {
		entry[0] = 0;		       /* processor */
		entry[1] = (uint8_t)i;	       /* local APIC id */
		entry[2] = 0x14;	       /* local APIC version */
		entry[3] = i == 0 ? 0x3 : 0x1; /* enabled, BSP */
		put32(entry + 4, 0x600);       /* family 6 */
		put32(entry + 8, 0x201);       /* FPU, APIC */
	}
	entry[0] = 1; /* bus 0: ISA */
	entry[1] = 0;
	memcpy(entry + 2, "ISA   ", 6);
	entry += 8, entries++;
	entry[0] = 2; /* IOAPIC */
	entry[1] = (uint8_t)vcpus;
	entry[2] = 0x11;
	entry[3] = 1; /* enabled */
	put32(entry + 4, BOOT_IOAPIC_ADDRESS);
	entry += 8, entries++;
	for (uint8_t irq = 0; irq < 16; irq++, entry += 8, entries++) {
		entry[0] = 3;	     /* I/O interrupt assignment */
		entry[1] = 0;	     /* INT */
		put16(entry + 2, 0); /* conforms to the bus */
		entry[4] = 0;	     /* bus 0 */
		entry[5] = irq;
		entry[6] = (uint8_t)vcpus; /* IOAPIC id */
		entry[7] = irq;		   /* pin */
	}
	for (uint8_t lint = 0; lint < 2; lint++, entry += 8, entries++) {
		entry[0] = 4;		      /* local interrupt assignment */
		entry[1] = lint == 0 ? 3 : 1; /* ExtINT, NMI */
		put16(entry + 2, 0);
		entry[4] = 0;
		entry[5] = 0;
		entry[6] = 0xff; /* all local APICs */
		entry[7] = lint;
	}
	length = (size_t)(entry - config);
	/* configuration table header */
	memcpy(config, "PCMP", 4);
	put16(config + 4, (uint16_t)length);
	config[6] = 4; /* spec 1.4 */
	memcpy(config + 8, "WARREN  ", 8);
	memcpy(config + 16, "MICROVM     ", 12);
	put16(config + 34, entries);
	put32(config + 36, BOOT_LAPIC_ADDRESS);
	config[7] = mp_checksum(config, length);
	/* floating pointer */
	memcpy(table, "_MP_", 4);
	put32(table + 4, (uint32_t)(BOOT_MP_TABLE_ADDRESS + 16));
	table[8] = 1; /* length in 16-byte units */
	table[9] = 4;
	table[10] = mp_checksum(table, 16);
	return 16 + length;
}

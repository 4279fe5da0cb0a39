/* loader: ELF64 (System V gABI, "Program Header") and bzImage
 * (Documentation/x86/boot.rst) parsing with hostile input in mind. */
#include "loader.h"

#include <elf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int loader__fail(char *error, size_t error_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int loader__fail(char *error, size_t error_size, const char *fmt, ...)
{
	va_list ap;

	if (error != NULL && error_size > 0) {
		va_start(ap, fmt);
		vsnprintf(error, error_size, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static uint16_t read16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t read32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

/* Guest range [address, address + length) is RAM and above the VMM's area. */
static int loader__check_range(const struct guest_memory *memory, uint64_t address, uint64_t length)
{
	if (address < LOADER_MIN_ADDRESS)
		return -1;
	return guest_memory__contains(memory, address, length) ? 0 : -1;
}

static int loader__parse_elf(const uint8_t *data, size_t size, const struct guest_memory *memory,
			     struct loader_image *image, char *error, size_t error_size)
{
	Elf64_Ehdr header;
	uint64_t table_size;
	bool entry_inside = false;

	if (size < sizeof(header))
		return loader__fail(error, error_size, "ELF: truncated header (%zu bytes)", size);
	memcpy(&header, data, sizeof(header));
	if (header.e_ident[EI_CLASS] != ELFCLASS64)
		return loader__fail(error, error_size, "ELF: not ELF64");
	if (header.e_ident[EI_DATA] != ELFDATA2LSB)
		return loader__fail(error, error_size, "ELF: not little endian");
	if (header.e_machine != EM_X86_64)
		return loader__fail(error, error_size, "ELF: machine %u is not x86-64",
				    header.e_machine);
	if (header.e_type != ET_EXEC)
		return loader__fail(error, error_size, "ELF: type %u is not an executable",
				    header.e_type);
	if (header.e_phentsize != sizeof(Elf64_Phdr))
		return loader__fail(error, error_size, "ELF: program header size %u",
				    header.e_phentsize);
	if (header.e_phnum == 0)
		return loader__fail(error, error_size, "ELF: no program headers");
	table_size = (uint64_t)header.e_phnum * sizeof(Elf64_Phdr);
	if (header.e_phoff > size || table_size > size - header.e_phoff)
		return loader__fail(error, error_size, "ELF: program headers beyond end of file");

	image->kind = LOADER_ELF64;
	image->segment_count = 0;
	image->end = 0;
	for (unsigned i = 0; i < header.e_phnum; i++) {
		Elf64_Phdr ph;
		struct loader_segment *segment;
		uint64_t end;

		memcpy(&ph, data + header.e_phoff + (uint64_t)i * sizeof(ph), sizeof(ph));
		if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
			continue;
		if (image->segment_count == LOADER_MAX_SEGMENTS)
			return loader__fail(error, error_size,
					    "ELF: more than %d loadable segments",
					    LOADER_MAX_SEGMENTS);
		if (ph.p_filesz > ph.p_memsz)
			return loader__fail(error, error_size,
					    "ELF: segment %u file size exceeds memory size", i);
		if (ph.p_offset > size || ph.p_filesz > size - ph.p_offset)
			return loader__fail(error, error_size, "ELF: segment %u beyond end of file",
					    i);
		if (__builtin_add_overflow(ph.p_paddr, ph.p_memsz, &end) ||
		    loader__check_range(memory, ph.p_paddr, ph.p_memsz) != 0)
			return loader__fail(error, error_size,
					    "ELF: segment %u [0x%llx, +0x%llx) beyond guest memory",
					    i, (unsigned long long)ph.p_paddr,
					    (unsigned long long)ph.p_memsz);
		for (uint32_t j = 0; j < image->segment_count; j++) {
			const struct loader_segment *other = &image->segments[j];

			if (ph.p_paddr < other->address + other->memory_size &&
			    other->address < end)
				return loader__fail(error, error_size,
						    "ELF: segment %u overlaps another segment", i);
		}
		segment = &image->segments[image->segment_count++];
		segment->file_offset = ph.p_offset;
		segment->file_size = ph.p_filesz;
		segment->address = ph.p_paddr;
		segment->memory_size = ph.p_memsz;
		if (header.e_entry >= ph.p_paddr && header.e_entry < end)
			entry_inside = true;
		if (end > image->end)
			image->end = end;
	}
	if (image->segment_count == 0)
		return loader__fail(error, error_size, "ELF: no loadable segments");
	if (!entry_inside)
		return loader__fail(error, error_size,
				    "ELF: entry 0x%llx outside the loaded segments",
				    (unsigned long long)header.e_entry);
	image->entry = header.e_entry;
	return 0;
}

/* Documentation/x86/boot.rst, "THE REAL-MODE KERNEL HEADER". */
#define BZIMAGE_SETUP_SECTS	0x1f1
#define BZIMAGE_BOOT_FLAG	0x1fe
#define BZIMAGE_HEADER		0x202
#define BZIMAGE_VERSION		0x206
#define BZIMAGE_LOADFLAGS	0x211
#define BZIMAGE_INITRD_ADDR_MAX 0x22c
#define BZIMAGE_XLOADFLAGS	0x236
#define BZIMAGE_CMDLINE_SIZE	0x238
#define BZIMAGE_INIT_SIZE	0x260
#define BZIMAGE_XLF_KERNEL_64	0x1
#define BZIMAGE_LOADED_HIGH	0x1

static int loader__parse_bzimage(const uint8_t *data, size_t size,
				 const struct guest_memory *memory, struct loader_image *image,
				 char *error, size_t error_size)
{
	unsigned setup_sects;
	uint64_t setup_size, kernel_size, init_size, span;

	if (size < LOADER_SETUP_HEADER_END)
		return loader__fail(error, error_size, "bzImage: truncated setup header");
	image->protocol_version = read16(data + BZIMAGE_VERSION);
	if (image->protocol_version < 0x20c)
		return loader__fail(
		    error, error_size,
		    "bzImage: boot protocol %u.%u too old (need 2.12 for 64-bit entry)",
		    image->protocol_version >> 8, image->protocol_version & 0xff);
	if (!(data[BZIMAGE_LOADFLAGS] & BZIMAGE_LOADED_HIGH))
		return loader__fail(error, error_size, "bzImage: not a bzImage (zImage loads low)");
	if (!(read16(data + BZIMAGE_XLOADFLAGS) & BZIMAGE_XLF_KERNEL_64))
		return loader__fail(error, error_size, "bzImage: no 64-bit entry (XLF_KERNEL_64)");
	setup_sects = data[BZIMAGE_SETUP_SECTS];
	if (setup_sects == 0)
		setup_sects = 4; /* boot.rst: 0 means 4 */
	setup_size = (uint64_t)(setup_sects + 1) * 512;
	if (setup_size >= size)
		return loader__fail(error, error_size, "bzImage: setup sectors beyond end of file");
	kernel_size = size - setup_size;
	if (kernel_size < 0x200 + 1)
		return loader__fail(error, error_size, "bzImage: protected-mode part too small");
	init_size = read32(data + BZIMAGE_INIT_SIZE);
	span = init_size > kernel_size ? init_size : kernel_size;
	if (loader__check_range(memory, LOADER_BZIMAGE_ADDRESS, span) != 0)
		return loader__fail(
		    error, error_size,
		    "bzImage: kernel needs 0x%llx bytes at 0x%llx, beyond guest memory",
		    (unsigned long long)span, (unsigned long long)LOADER_BZIMAGE_ADDRESS);
	image->kind = LOADER_BZIMAGE;
	image->segment_count = 1;
	image->segments[0] = (struct loader_segment){
	    .file_offset = setup_size,
	    .file_size = kernel_size,
	    .address = LOADER_BZIMAGE_ADDRESS,
	    .memory_size = kernel_size,
	};
	image->end = LOADER_BZIMAGE_ADDRESS + span;
	image->entry = LOADER_BZIMAGE_ADDRESS + 0x200;
	image->initrd_address_max = read32(data + BZIMAGE_INITRD_ADDR_MAX);
	image->command_line_size = read32(data + BZIMAGE_CMDLINE_SIZE);
	memcpy(image->setup_header, data + LOADER_SETUP_HEADER_OFFSET, sizeof(image->setup_header));
	return 0;
}

int loader__parse(const uint8_t *data, size_t size, const struct guest_memory *memory,
		  struct loader_image *image, char *error, size_t error_size)
{
	memset(image, 0, sizeof(*image));
	if (data == NULL || size < 4)
		return loader__fail(error, error_size, "kernel image too small (%zu bytes)", size);
	if (memcmp(data, ELFMAG, SELFMAG) == 0)
		return loader__parse_elf(data, size, memory, image, error, error_size);
	if (size >= BZIMAGE_HEADER + 4 && read16(data + BZIMAGE_BOOT_FLAG) == 0xaa55 &&
	    memcmp(data + BZIMAGE_HEADER, "HdrS", 4) == 0)
		return loader__parse_bzimage(data, size, memory, image, error, error_size);
	return loader__fail(error, error_size, "kernel image is neither ELF64 nor bzImage");
}

int loader__load(const struct loader_image *image, const uint8_t *data, size_t size,
		 struct guest_memory *memory)
{
	for (uint32_t i = 0; i < image->segment_count; i++) {
		const struct loader_segment *segment = &image->segments[i];
		uint8_t *target = guest_memory__ptr(memory, segment->address, segment->memory_size);

		if (target == NULL || segment->file_size > segment->memory_size ||
		    segment->file_offset > size || segment->file_size > size - segment->file_offset)
			return -EFAULT;
		memcpy(target, data + segment->file_offset, segment->file_size);
		memset(target + segment->file_size, 0, segment->memory_size - segment->file_size);
	}
	return 0;
}

/* libFuzzer target for the kernel loader (vmm/loader.c) and the zero-page
 * setup that follows it (vmm/boot.c). The first input byte picks how the
 * rest is used: raw image, or laid over a valid ELF64 / bzImage header
 * template (so the fuzzer spends its time past the magic checks). Every
 * accepted image is loaded into a 32 MiB guest; ASan/UBSan catch the rest. */
#include <elf.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "boot.h"
#include "loader.h"

#define GUEST_SIZE (32u << 20)
#define MAX_IMAGE  (64u * 1024u)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct guest_memory memory;
static uint8_t image[MAX_IMAGE];

static size_t build_image(const uint8_t *data, size_t size)
{
	uint8_t mode;

	if (size == 0)
		return 0;
	mode = data[0] % 3;
	data++;
	size--;
	if (size > MAX_IMAGE)
		size = MAX_IMAGE;
	memset(image, 0, sizeof(image));
	if (mode == 0) {
		memcpy(image, data, size);
		return size;
	}
	if (mode == 1) {
		Elf64_Ehdr header = {0};

		memcpy(header.e_ident, ELFMAG, SELFMAG);
		header.e_ident[EI_CLASS] = ELFCLASS64;
		header.e_ident[EI_DATA] = ELFDATA2LSB;
		header.e_type = ET_EXEC;
		header.e_machine = EM_X86_64;
		header.e_phoff = sizeof(header);
		header.e_phentsize = sizeof(Elf64_Phdr);
		/* the input supplies e_entry, e_phnum and everything after the header */
		if (size >= 10) {
			memcpy(&header.e_entry, data, 8);
			memcpy(&header.e_phnum, data + 8, 2);
			data += 10;
			size -= 10;
		}
		if (size > MAX_IMAGE - sizeof(header))
			size = MAX_IMAGE - sizeof(header);
		memcpy(image, &header, sizeof(header));
		memcpy(image + sizeof(header), data, size);
		return sizeof(header) + size;
	}
	/* bzImage: input overlays from 0x1f1, then the magic is forced */
	if (size > MAX_IMAGE - 0x1f1)
		size = MAX_IMAGE - 0x1f1;
	memcpy(image + 0x1f1, data, size);
	image[0x1fe] = 0x55;
	image[0x1ff] = 0xaa;
	memcpy(image + 0x202, "HdrS", 4);
	return size + 0x1f1 > 0x206 ? size + 0x1f1 : 0x206;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct loader_image parsed;
	struct boot_setup setup = {.command_line = "console=ttyS0"};
	char error[256];
	size_t image_size;

	if (memory.host == NULL) {
		memory.host = calloc(1, GUEST_SIZE);
		memory.size = memory.low_size = GUEST_SIZE;
		memory.memfd = -1;
		if (memory.host == NULL)
			abort();
	}
	image_size = build_image(data, size);
	if (loader__parse(image, image_size, &memory, &parsed, error, sizeof(error)) != 0)
		return 0;
	if (parsed.segment_count == 0 || parsed.segment_count > LOADER_MAX_SEGMENTS)
		abort();
	for (uint32_t i = 0; i < parsed.segment_count; i++) {
		const struct loader_segment *segment = &parsed.segments[i];

		if (segment->address < LOADER_MIN_ADDRESS ||
		    !guest_memory__contains(&memory, segment->address, segment->memory_size))
			abort(); /* the parser promised a fitting segment */
	}
	if (loader__load(&parsed, image, image_size, &memory) != 0)
		abort();
	/* -EINVAL is a fair answer (a bzImage whose cmdline_size is shorter
	 * than our command line); -EFAULT would mean a layout bug */
	if (boot__setup_memory(&memory, &parsed, &setup) == -EFAULT)
		abort();
	return 0;
}

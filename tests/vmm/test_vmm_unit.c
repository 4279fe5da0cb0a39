/* Unit: loader (hostile ELF64/bzImage headers), boot_params/e820 layout,
 * page tables, GDT, CPUID profiles, control-socket request parsing. */
#include <errno.h>
#include <elf.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "boot.h"
#include "control.h"
#include "cpuid.h"
#include "loader.h"
#include "mmio_bus.h"
#include "serial.h"
#include "vm.h"

#define MEMORY_SIZE (32ull << 20)

static struct guest_memory memory;
static uint8_t image[8192];
static char error[256];

static int setup(void **state)
{
	memory.size = MEMORY_SIZE;
	memory.low_size = MEMORY_SIZE;
	memory.host = calloc(1, MEMORY_SIZE);
	memory.memfd = -1;
	return memory.host ? 0 : -1;
}

static int teardown(void **state)
{
	free(memory.host);
	return 0;
}

/* A valid ELF64 with `segments` PT_LOAD headers at 1 MiB, 0x1000 each. */
static size_t make_elf(unsigned segments)
{
	Elf64_Ehdr *header = (Elf64_Ehdr *)image;

	memset(image, 0, sizeof(image));
	memcpy(header->e_ident, ELFMAG, SELFMAG);
	header->e_ident[EI_CLASS] = ELFCLASS64;
	header->e_ident[EI_DATA] = ELFDATA2LSB;
	header->e_type = ET_EXEC;
	header->e_machine = EM_X86_64;
	header->e_entry = 0x100010;
	header->e_phoff = sizeof(*header);
	header->e_phentsize = sizeof(Elf64_Phdr);
	header->e_phnum = (uint16_t)segments;
	for (unsigned i = 0; i < segments; i++) {
		Elf64_Phdr *ph = (Elf64_Phdr *)(image + sizeof(*header)) + i;

		ph->p_type = PT_LOAD;
		ph->p_offset = 0x1000;
		ph->p_filesz = 0x100;
		ph->p_memsz = 0x1000;
		ph->p_paddr = 0x100000 + i * 0x1000;
	}
	memset(image + 0x1000, 0xcc, 0x100);
	return sizeof(image);
}

static Elf64_Phdr *phdr(unsigned i)
{
	return (Elf64_Phdr *)(image + sizeof(Elf64_Ehdr)) + i;
}

static int parse(size_t size, struct loader_image *out)
{
	error[0] = 0;
	return loader__parse(image, size, &memory, out, error, sizeof(error));
}

static void expect_error(size_t size, const char *fragment)
{
	struct loader_image out;

	assert_int_equal(parse(size, &out), -22);
	printf("rejected: %s\n", error);
	assert_non_null(strstr(error, fragment));
}

static void test_elf_valid_loads(void **state)
{
	struct loader_image out;
	size_t size = make_elf(2);

	assert_int_equal(parse(size, &out), 0);
	assert_int_equal(out.kind, LOADER_ELF64);
	assert_int_equal(out.segment_count, 2);
	assert_int_equal(out.entry, 0x100010);
	assert_int_equal(out.end, 0x102000);
	memset(memory.host + 0x100000, 0x11, 0x2000);
	assert_int_equal(loader__load(&out, image, size, &memory), 0);
	assert_int_equal(memory.host[0x100000], 0xcc);
	assert_int_equal(memory.host[0x1000ff], 0xcc);
	assert_int_equal(memory.host[0x100100], 0); /* bss zeroed */
	assert_int_equal(memory.host[0x101fff], 0);
}

static void test_elf_hostile(void **state)
{
	size_t size;

	make_elf(1);
	expect_error(40, "truncated");
	expect_error(3, "too small");
	size = make_elf(1);
	image[EI_CLASS] = ELFCLASS32;
	expect_error(size, "ELF64");
	size = make_elf(1);
	((Elf64_Ehdr *)image)->e_machine = EM_386;
	expect_error(size, "x86-64");
	size = make_elf(1);
	((Elf64_Ehdr *)image)->e_phoff = sizeof(image) - 10;
	expect_error(size, "program headers beyond end of file");
	size = make_elf(1);
	((Elf64_Ehdr *)image)->e_phoff = UINT64_MAX - 8;
	expect_error(size, "program headers beyond end of file");
	size = make_elf(1);
	((Elf64_Ehdr *)image)->e_phnum = 0;
	expect_error(size, "no program headers");
	size = make_elf(1);
	phdr(0)->p_offset = sizeof(image) - 0x10;
	expect_error(size, "beyond end of file");
	size = make_elf(1);
	phdr(0)->p_offset = UINT64_MAX;
	expect_error(size, "beyond end of file");
	size = make_elf(1);
	phdr(0)->p_filesz = 0x2000;
	expect_error(size, "file size exceeds memory size");
	size = make_elf(2);
	phdr(1)->p_paddr = 0x100800; /* overlaps segment 0 */
	expect_error(size, "overlaps");
	size = make_elf(1);
	phdr(0)->p_paddr = MEMORY_SIZE - 0x800; /* runs past the end of RAM */
	expect_error(size, "beyond guest memory");
	size = make_elf(1);
	phdr(0)->p_paddr = UINT64_MAX - 0x10; /* wraps */
	expect_error(size, "beyond guest memory");
	size = make_elf(1);
	phdr(0)->p_paddr = 0x7000; /* over the VMM's zero page */
	expect_error(size, "beyond guest memory");
	size = make_elf(1);
	((Elf64_Ehdr *)image)->e_entry = 0x500000;
	expect_error(size, "entry");
	size = make_elf(1);
	phdr(0)->p_type = PT_NOTE;
	expect_error(size, "no loadable segments");
	memset(image, 0x41, sizeof(image));
	expect_error(sizeof(image), "neither ELF64 nor bzImage");
}

static size_t make_bzimage(void)
{
	memset(image, 0, sizeof(image));
	image[0x1f1] = 1; /* setup_sects: protected-mode part at 0x400 */
	image[0x1fe] = 0x55;
	image[0x1ff] = 0xaa;
	memcpy(image + 0x202, "HdrS", 4);
	image[0x206] = 0x0f; /* version 2.15 */
	image[0x207] = 0x02;
	image[0x211] = 0x01; /* LOADED_HIGH */
	image[0x236] = 0x01; /* XLF_KERNEL_64 */
	image[0x22c] = 0xff; /* initrd_addr_max 0x7fffffff */
	image[0x22d] = 0xff;
	image[0x22e] = 0xff;
	image[0x22f] = 0x7f;
	image[0x238] = 0xff; /* cmdline_size 2047 */
	image[0x239] = 0x07;
	image[0x261] = 0x40; /* init_size 0x4000 */
	return sizeof(image);
}

static void test_bzimage(void **state)
{
	struct loader_image out;
	size_t size = make_bzimage();

	assert_int_equal(parse(size, &out), 0);
	assert_int_equal(out.kind, LOADER_BZIMAGE);
	assert_int_equal(out.entry, 0x100200);
	assert_int_equal(out.segments[0].file_offset, 0x400);
	assert_int_equal(out.end, 0x100000 + 0x4000);
	assert_int_equal(out.command_line_size, 2047);
	assert_int_equal(out.initrd_address_max, 0x7fffffff);

	size = make_bzimage();
	image[0x206] = 0x0b;
	expect_error(size, "too old");
	size = make_bzimage();
	image[0x236] = 0;
	expect_error(size, "64-bit entry");
	size = make_bzimage();
	image[0x1f1] = 200; /* setup beyond end of file */
	expect_error(size, "setup sectors beyond end of file");
	size = make_bzimage();
	image[0x263] = 0x7f; /* init_size ~2 GiB */
	expect_error(size, "beyond guest memory");
	make_bzimage();
	expect_error(0x230, "truncated");
}

static void test_page_tables(void **state)
{
	uint8_t *tables = memory.host + BOOT_PML4_ADDRESS;
	uint64_t entry;

	boot__build_page_tables(tables);
	memcpy(&entry, tables, 8);
	assert_int_equal(entry, BOOT_PDPT_ADDRESS | 7);
	for (int i = 0; i < 4; i++) {
		memcpy(&entry, tables + 0x1000 + i * 8, 8);
		assert_int_equal(entry, (BOOT_PD_ADDRESS + i * 0x1000ull) | 7);
	}
	memcpy(&entry, tables + 0x1000 + 4 * 8, 8);
	assert_int_equal(entry, 0);
	memcpy(&entry, tables + 0x2000, 8);
	assert_int_equal(entry, 0x87);
	memcpy(&entry, tables + 0x2000 + 2047 * 8, 8); /* last 2 MiB below 4 GiB */
	assert_int_equal(entry, (2047ull << 21) | 0x87);
}

static void test_gdt(void **state)
{
	uint64_t gdt[BOOT_GDT_ENTRIES];

	boot__build_gdt(gdt);
	assert_int_equal(gdt[BOOT_CODE_SELECTOR / 8], 0x00af9b000000ffffull);
	assert_int_equal(gdt[BOOT_DATA_SELECTOR / 8], 0x00cf93000000ffffull);
}

static void test_e820_and_zero_page(void **state)
{
	struct guest_memory big = {.size = 5ull << 30, .low_size = GUEST_MEMORY_LOW_LIMIT};
	struct boot_params params;
	struct loader_image out;
	struct boot_setup boot = {.command_line = "console=ttyS0 x=1",
				  .initrd_address = 0x1000000,
				  .initrd_size = 0x1234};
	struct boot_params *zero_page =
	    (struct boot_params *)(memory.host + BOOT_ZERO_PAGE_ADDRESS);

	memset(&params, 0, sizeof(params));
	assert_int_equal(boot__build_e820(&params, &big), 4);
	assert_int_equal(params.e820_table[0].addr, 0);
	assert_int_equal(params.e820_table[0].size, BOOT_EBDA_START);
	assert_int_equal(params.e820_table[1].type, 2);
	assert_int_equal(params.e820_table[2].addr, 0x100000);
	assert_int_equal(params.e820_table[2].size, GUEST_MEMORY_LOW_LIMIT - 0x100000);
	assert_int_equal(params.e820_table[3].addr, GUEST_MEMORY_HIGH_BASE);
	assert_int_equal(params.e820_table[3].size, (5ull << 30) - GUEST_MEMORY_LOW_LIMIT);

	assert_int_equal(parse(make_elf(1), &out), 0);
	assert_int_equal(boot__setup_memory(&memory, &out, &boot), 0);
	assert_int_equal(zero_page->hdr.boot_flag, 0xaa55);
	assert_int_equal(zero_page->hdr.header, 0x53726448);
	assert_int_equal(zero_page->hdr.type_of_loader, 0xff);
	assert_int_equal(zero_page->hdr.cmd_line_ptr, BOOT_COMMAND_LINE_ADDRESS);
	assert_string_equal((char *)memory.host + BOOT_COMMAND_LINE_ADDRESS, "console=ttyS0 x=1");
	assert_int_equal(zero_page->hdr.ramdisk_image, 0x1000000);
	assert_int_equal(zero_page->hdr.ramdisk_size, 0x1234);
	assert_int_equal(zero_page->e820_entries, 3);
	assert_int_equal(zero_page->e820_table[2].size, MEMORY_SIZE - 0x100000);

	/* RNG seed: one SETUP_RNG_SEED node of fresh bytes, new on every boot */
	{
		struct setup_data *node =
		    (struct setup_data *)(memory.host + BOOT_SETUP_DATA_ADDRESS);
		uint8_t first[BOOT_RNG_SEED_BYTES];
		unsigned zeros = 0;

		assert_int_equal(zero_page->hdr.setup_data, BOOT_SETUP_DATA_ADDRESS);
		assert_int_equal(node->type, SETUP_RNG_SEED);
		assert_int_equal(node->len, BOOT_RNG_SEED_BYTES);
		assert_int_equal(node->next, 0);
		assert_true(BOOT_SETUP_DATA_ADDRESS + sizeof(*node) + BOOT_RNG_SEED_BYTES <=
			    BOOT_ZERO_PAGE_ADDRESS);
		for (unsigned i = 0; i < BOOT_RNG_SEED_BYTES; i++)
			zeros += node->data[i] == 0;
		assert_true(zeros < BOOT_RNG_SEED_BYTES / 4); /* random, not a zeroed buffer */
		memcpy(first, node->data, sizeof(first));
		assert_int_equal(boot__setup_memory(&memory, &out, &boot), 0);
		assert_memory_not_equal(first, node->data, sizeof(first));
	}

	/* initrd placement: page aligned, below the limit, above the kernel */
	assert_int_equal(boot__initrd_address(&memory, 0x1800, 0x200000, 0), MEMORY_SIZE - 0x2000);
	assert_int_equal(boot__initrd_address(&memory, 0x1000, 0x200000, 0xffffff), 0xfff000);
	assert_int_equal(boot__initrd_address(&memory, MEMORY_SIZE, 0x200000, 0), 0);
	assert_int_equal(boot__initrd_address(&memory, MEMORY_SIZE - 0x100000, 0x200000, 0), 0);

	/* a command line over the limit is refused */
	{
		char *long_line = malloc(BOOT_COMMAND_LINE_MAX + 1);

		memset(long_line, 'a', BOOT_COMMAND_LINE_MAX);
		long_line[BOOT_COMMAND_LINE_MAX] = 0;
		boot.command_line = long_line;
		assert_int_equal(boot__setup_memory(&memory, &out, &boot), -22);
		free(long_line);
	}
}

static uint8_t sum_bytes(const uint8_t *bytes, size_t length)
{
	uint8_t sum = 0;

	for (size_t i = 0; i < length; i++)
		sum = (uint8_t)(sum + bytes[i]);
	return sum;
}

static void test_mp_table(void **state)
{
	uint8_t *table = calloc(1, BOOT_MP_TABLE_MAX);
	uint8_t *config = table + 16;
	uint16_t length, entries;
	uint32_t pointer;
	size_t used = boot__build_mp_table(table, 4);

	assert_true(used > 16 + 44);
	assert_memory_equal(table, "_MP_", 4);
	memcpy(&pointer, table + 4, 4);
	assert_int_equal(pointer, BOOT_MP_TABLE_ADDRESS + 16);
	assert_int_equal(sum_bytes(table, 16), 0);
	assert_memory_equal(config, "PCMP", 4);
	memcpy(&length, config + 4, 2);
	memcpy(&entries, config + 34, 2);
	assert_int_equal(length + 16, used);
	assert_int_equal(sum_bytes(config, length), 0);
	assert_int_equal(entries, 4 + 1 + 1 + 16 + 2);
	assert_int_equal(config[44], 0);     /* first entry: processor */
	assert_int_equal(config[44 + 3], 3); /* enabled BSP */
	assert_int_equal(config[64 + 1], 1); /* second processor, APIC id 1 */
	assert_int_equal(config[64 + 3], 1); /* enabled, not BSP */
	assert_int_equal(boot__build_mp_table(table, 0), 0);
	assert_int_equal(boot__build_mp_table(table, 255), 0);
	free(table);
}

static void test_initial_registers(void **state)
{
	struct loader_image out = {.entry = 0x1000000};
	struct kvm_regs regs;
	struct kvm_sregs sregs;

	memset(&sregs, 0, sizeof(sregs));
	boot__initial_registers(&out, &regs, &sregs);
	assert_int_equal(regs.rip, 0x1000000);
	assert_int_equal(regs.rsi, BOOT_ZERO_PAGE_ADDRESS);
	assert_int_equal(regs.rflags & 0x200, 0); /* interrupts off */
	assert_int_equal(sregs.cs.selector, 0x10);
	assert_int_equal(sregs.cs.l, 1);
	assert_int_equal(sregs.ds.selector, 0x18);
	assert_true(sregs.efer & 0x500); /* LME | LMA */
	assert_true(sregs.cr0 & 0x80000001ull);
	assert_true(sregs.cr4 & 0x20);
	assert_int_equal(sregs.cr3, BOOT_PML4_ADDRESS);
}

static struct kvm_cpuid_entry2 cpuid_entries[7];

static void fill_cpuid(void)
{
	memset(cpuid_entries, 0, sizeof(cpuid_entries));
	cpuid_entries[0].function = 0;
	memcpy(&cpuid_entries[0].ebx, "Auth", 4);
	memcpy(&cpuid_entries[0].edx, "enti", 4);
	memcpy(&cpuid_entries[0].ecx, "cAMD", 4);
	cpuid_entries[1].function = 1;
	cpuid_entries[1].ecx = 0xffffffffu;
	cpuid_entries[1].ebx = 0xffffffffu;
	cpuid_entries[2].function = 7;
	cpuid_entries[2].ebx = 0xffffffffu;
	cpuid_entries[2].ecx = 0xffffffffu;
	cpuid_entries[3].function = 0xd;
	cpuid_entries[3].eax = 7;
	cpuid_entries[4].function = 0x80000001;
	cpuid_entries[4].ecx = 0xffffffffu;
	cpuid_entries[5].function = 0xb;
	cpuid_entries[6].function = 0x40000001;
	cpuid_entries[6].eax = 0xffffffffu;
}

static void test_cpuid_profiles(void **state)
{
	enum cpu_profile profile;
	char vendor[13] = {0};

	assert_true(cpuid__parse_profile("baseline", &profile));
	assert_int_equal(profile, CPU_PROFILE_BASELINE);
	assert_true(cpuid__parse_profile("host", &profile));
	assert_false(cpuid__parse_profile("Host", &profile));
	assert_false(cpuid__parse_profile(NULL, &profile));

	fill_cpuid();
	cpuid__apply_profile(cpuid_entries, 7, CPU_PROFILE_BASELINE, 2, 4);
	memcpy(vendor, &cpuid_entries[0].ebx, 4);
	memcpy(vendor + 4, &cpuid_entries[0].edx, 4);
	memcpy(vendor + 8, &cpuid_entries[0].ecx, 4);
	assert_string_equal(vendor, "GenuineIntel");
	assert_int_equal(cpuid_entries[1].ecx & (1u << 26), 0); /* XSAVE */
	assert_int_equal(cpuid_entries[1].ecx & (1u << 27), 0); /* OSXSAVE */
	assert_int_equal(cpuid_entries[1].ecx & (1u << 28), 0); /* AVX */
	assert_int_equal(cpuid_entries[1].ecx & (1u << 23), 0); /* POPCNT */
	assert_true(cpuid_entries[1].ecx & (1u << 31));		/* hypervisor */
	assert_true(cpuid_entries[1].ecx & (1u << 0));		/* SSE3 kept */
	assert_int_equal(cpuid_entries[1].ebx >> 24, 2);	/* APIC id */
	assert_int_equal((cpuid_entries[1].ebx >> 16) & 0xff, 4);
	assert_int_equal(cpuid_entries[2].ebx & (1u << 7), 0);	/* SMEP */
	assert_int_equal(cpuid_entries[2].ebx & (1u << 20), 0); /* SMAP */
	assert_int_equal(cpuid_entries[2].ebx & (1u << 5), 0);	/* AVX2 */
	assert_true(cpuid_entries[2].ebx & (1u << 0));		/* FSGSBASE kept */
	assert_int_equal(cpuid_entries[3].eax, 0);		/* leaf 0xd gone */
	assert_int_equal(cpuid_entries[4].ecx & (1u << 5), 0);	/* ABM */
	assert_int_equal(cpuid_entries[5].edx, 2);		/* x2APIC id */
	assert_int_equal(cpuid_entries[6].eax & (1u << 11), 0); /* PV send IPI */
	assert_int_equal(cpuid_entries[6].eax & (1u << 7), 0);	/* PV unhalt */
	assert_true(cpuid_entries[6].eax & (1u << 3));		/* kvm-clock kept */

	fill_cpuid();
	cpuid__apply_profile(cpuid_entries, 7, CPU_PROFILE_HOST, 0, 1);
	assert_true(cpuid_entries[6].eax & (1u << 11));
	assert_memory_equal(&cpuid_entries[0].ebx, "Auth", 4);
	assert_true(cpuid_entries[1].ecx & (1u << 26));
	assert_true(cpuid_entries[2].ebx & (1u << 20));
	assert_int_equal(cpuid_entries[3].eax, 7);
}

static struct vm *control_vm;

static json_t *handle(struct control *control, const char *line)
{
	char *text = control__handle_line(control, line, strlen(line));
	json_t *response = json_loads(text, 0, NULL);

	assert_non_null(text);
	free(text);
	assert_non_null(response);
	return response;
}

static void expect_control_error(struct control *control, const char *line, const char *fragment)
{
	json_t *response = handle(control, line);
	const char *message = json_string_value(json_object_get(response, "error"));

	assert_true(json_is_false(json_object_get(response, "ok")));
	assert_non_null(message);
	printf("%s -> %s\n", line, message);
	assert_non_null(strstr(message, fragment));
	json_decref(response);
}

static void test_control_parsing(void **state)
{
	struct control control = {0};
	json_t *response;

	control_vm = calloc(1, sizeof(*control_vm));
	vm__init(control_vm, NULL);
	control.vm = control_vm;
	expect_control_error(&control, "", "one JSON object");
	/* A client may not hand the VMM one of its own descriptors as a tap. */
	expect_control_error(&control,
			     "{\"op\":\"configure\",\"config\":{\"kernel\":\"/k\",\"devices\":"
			     "[{\"type\":\"net\",\"tap_fd\":3,\"mac\":\"02:00:00:00:00:01\"}]}}",
			     "tap_fd");
	expect_control_error(&control, "[1,2]", "one JSON object");
	expect_control_error(&control, "{\"op\":1}", "\"op\"");
	expect_control_error(&control, "{\"op\":\"x\",\"op\":\"y\"}", "one JSON object");
	expect_control_error(&control, "{\"op\":\"reboot\"}", "unknown op");
	expect_control_error(&control, "{\"op\":\"configure\"}", "must be an object");
	expect_control_error(&control, "{\"op\":\"configure\",\"config\":{}}",
			     "\"kernel\" is required");
	expect_control_error(&control, "{\"op\":\"configure\",\"config\":{\"kernel\":\"\"}}",
			     "non-empty string");
	expect_control_error(&control,
			     "{\"op\":\"configure\",\"config\":{\"kernel\":\"k\",\"vcpus\":0}}",
			     "\"vcpus\"");
	expect_control_error(&control,
			     "{\"op\":\"configure\",\"config\":{\"kernel\":\"k\",\"vcpus\":1.5}}",
			     "\"vcpus\"");
	expect_control_error(
	    &control, "{\"op\":\"configure\",\"config\":{\"kernel\":\"k\",\"memory_mib\":-1}}",
	    "\"memory_mib\"");
	expect_control_error(
	    &control,
	    "{\"op\":\"configure\",\"config\":{\"kernel\":\"k\",\"cpu_profile\":\"amd\"}}",
	    "cpu_profile");
	expect_control_error(&control,
			     "{\"op\":\"configure\",\"config\":{\"kernel\":\"k\",\"devices\":[1]}}",
			     "devices[0]");
	expect_control_error(&control,
			     "{\"op\":\"configure\",\"config\":{\"kernel\":\"k\",\"devices\":{}}}",
			     "\"devices\"");
	expect_control_error(&control, "{\"op\":\"pause\"}", "not running");
	expect_control_error(&control, "{\"op\":\"resume\"}", "not paused");
	expect_control_error(&control, "{\"op\":\"stop\"}", "not running");
	expect_control_error(&control, "{\"op\":\"console\",\"bytes\":\"x\"}", "bytes");
	expect_control_error(&control, "{\"op\":\"start\"}", "not configured");

	response =
	    handle(&control, "{\"op\":\"configure\",\"config\":{\"kernel\":\"/k\","
			     "\"cmdline\":\"console=ttyS0\",\"vcpus\":2,\"memory_mib\":256,"
			     "\"cpu_profile\":\"host\",\"devices\":[{\"type\":\"block\"}]}}");
	assert_true(json_is_true(json_object_get(response, "ok")));
	json_decref(response);
	assert_string_equal(control_vm->config.kernel, "/k");
	assert_string_equal(control_vm->config.command_line, "console=ttyS0");
	assert_int_equal(control_vm->config.vcpus, 2);
	assert_int_equal(control_vm->config.memory_mib, 256);
	assert_int_equal(control_vm->config.cpu_profile, CPU_PROFILE_HOST);
	assert_int_equal(json_array_size(control_vm->config.devices), 1);

	response = handle(&control, "{\"op\":\"state\"}");
	assert_string_equal(json_string_value(json_object_get(response, "state")), "configured");
	json_decref(response);
	response = handle(&control, "{\"op\":\"metrics\"}");
	assert_true(json_is_object(json_object_get(response, "exits")));
	json_decref(response);
	response = handle(&control, "{\"op\":\"console\",\"bytes\":10}");
	assert_string_equal(json_string_value(json_object_get(response, "data")), "");
	json_decref(response);
	response = handle(&control, "{\"op\":\"exit\"}");
	assert_true(control.exit_requested);
	json_decref(response);
	vm__destroy(control_vm);
	free(control_vm);
}

static void test_console_ring(void **state)
{
	struct console *console = malloc(sizeof(*console));
	uint8_t *tail;
	size_t count;

	assert_int_equal(console__init(console, NULL, NULL, false), 0);
	for (unsigned i = 0; i < CONSOLE_RING_SIZE + 10; i++)
		console__put(console, (uint8_t)('a' + i % 26));
	count = console__tail(console, 5, &tail);
	assert_int_equal(count, 5);
	assert_int_equal(tail[4], 'a' + (CONSOLE_RING_SIZE + 9) % 26);
	free(tail);
	count = console__tail(console, CONSOLE_RING_SIZE * 2, &tail);
	assert_int_equal(count, CONSOLE_RING_SIZE); /* bounded */
	free(tail);
	console__destroy(console);
	free(console);
}

static char serial_output[64];
static size_t serial_output_length;
static int serial_irq_level = -1;

static void capture_output(void *opaque, uint8_t byte)
{
	if (serial_output_length + 1 < sizeof(serial_output))
		serial_output[serial_output_length++] = (char)byte;
}

static void capture_irq(void *opaque, int level)
{
	serial_irq_level = level;
}

static uint8_t serial_in(struct serial *serial, uint64_t offset)
{
	uint8_t value = 0xee;

	serial__ops.read(serial, offset, &value, 1);
	return value;
}

static void serial_out(struct serial *serial, uint64_t offset, uint8_t value)
{
	serial__ops.write(serial, offset, &value, 1);
}

static void test_serial_registers(void **state)
{
	struct serial serial;

	serial__init(&serial, capture_output, capture_irq, NULL);
	serial_out(&serial, 0, 'h');
	serial_out(&serial, 0, 'i');
	assert_int_equal(serial_output_length, 2);
	assert_memory_equal(serial_output, "hi", 2);
	assert_int_equal(serial_in(&serial, 5), 0x60);	      /* THRE | TEMT, no data */
	assert_int_equal(serial_in(&serial, 2) & 0x0f, 0x01); /* no interrupt */
	assert_int_equal(serial_irq_level, -1);

	serial_out(&serial, 1, 0x02); /* IER: THRI -> pending at once */
	assert_int_equal(serial_irq_level, 1);
	assert_int_equal(serial_in(&serial, 1), 0x02);
	assert_int_equal(serial_in(&serial, 2) & 0x0f, 0x02); /* THRI, acknowledged */
	assert_int_equal(serial_irq_level, 0);
	assert_int_equal(serial_in(&serial, 2) & 0x0f, 0x01);
	serial_out(&serial, 0, '!'); /* transmitted: THR empty again */
	assert_int_equal(serial_irq_level, 1);
	serial_out(&serial, 1, 0x00);
	assert_int_equal(serial_irq_level, 0);

	serial_out(&serial, 2, 0x01); /* FCR: FIFO on -> IIR bits 7:6 */
	assert_int_equal(serial_in(&serial, 2) & 0xc0, 0xc0);
	serial_out(&serial, 3, 0x80); /* DLAB */
	serial_out(&serial, 0, 0x01);
	serial_out(&serial, 1, 0x00);
	assert_int_equal(serial_in(&serial, 0), 0x01);
	assert_int_equal(serial_output_length, 3); /* divisor writes are not output */
	serial_out(&serial, 3, 0x03);
	serial_out(&serial, 7, 0x5a);
	assert_int_equal(serial_in(&serial, 7), 0x5a);
	serial_out(&serial, 4, 0x10 | 0x01); /* loopback, DTR -> DSR */
	assert_int_equal(serial_in(&serial, 6) & 0x20, 0x20);
	serial_out(&serial, 0, 'x'); /* loopback: not transmitted */
	assert_int_equal(serial_output_length, 3);
	/* hostile sizes/offsets: stays inside the 8 registers */
	{
		uint8_t wide[8] = {0};

		serial__ops.read(&serial, 6, wide, 8);
		serial__ops.write(&serial, 7, wide, 8);
	}
	pthread_mutex_destroy(&serial.lock);
}

static int bus_reads;

static void bus_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t size)
{
	bus_reads++;
	data[0] = (uint8_t)offset;
}

static const struct mmio_bus_ops bus_ops = {.read = bus_read};

static void test_mmio_bus(void **state)
{
	struct mmio_bus *bus = mmio_bus__create();
	uint8_t data[8];

	assert_non_null(bus);
	assert_int_equal(
	    mmio_bus__register(bus, MMIO_BUS_MEMORY, 0x1000, 0x100, &bus_ops, NULL, "a"), 0);
	assert_int_equal(mmio_bus__register(bus, MMIO_BUS_MEMORY, 0x10ff, 1, &bus_ops, NULL, "b"),
			 -17);
	assert_int_equal(mmio_bus__register(bus, MMIO_BUS_PORT, 0x1000, 0x100, &bus_ops, NULL, "c"),
			 0);
	assert_int_equal(mmio_bus__register(bus, MMIO_BUS_MEMORY, 0x2000, 0, &bus_ops, NULL, "d"),
			 -22);
	assert_int_equal(
	    mmio_bus__register(bus, MMIO_BUS_MEMORY, UINT64_MAX - 4, 16, &bus_ops, NULL, "e"), -22);
	assert_true(mmio_bus__dispatch(bus, MMIO_BUS_MEMORY, 0x1010, data, 4, false));
	assert_int_equal(data[0], 0x10);
	assert_int_equal(data[1], 0); /* zero-filled */
	/* straddling the end of the range: not dispatched, reads all ones */
	assert_false(mmio_bus__dispatch(bus, MMIO_BUS_MEMORY, 0x10fe, data, 4, false));
	assert_int_equal(data[0], 0xff);
	assert_int_equal(data[3], 0xff);
	assert_false(mmio_bus__dispatch(bus, MMIO_BUS_MEMORY, UINT64_MAX - 1, data, 8, false));
	assert_true(
	    mmio_bus__dispatch(bus, MMIO_BUS_MEMORY, 0x1000, data, 1, true)); /* no write op */
	assert_int_equal(bus_reads, 1);
	mmio_bus__destroy(bus);
}

static int fake_create(const struct vmm_device_host *host, const json_t *config, uint64_t base,
		       uint32_t irq, struct vmm_device *out, char *reason, size_t reason_size)
{
	return -ENODEV;
}

/* The core finds a device's type in the table the binary hands it. */
static void test_device_types(void **state)
{
	static const struct vmm_device_type types[] = {
	    {.name = "fake", .create = fake_create},
	    {.name = "other", .create = NULL},
	    {.name = NULL},
	};

	assert_ptr_equal(mmio_bus__device_type(types, "fake"), &types[0]);
	assert_ptr_equal(mmio_bus__device_type(types, "other"), &types[1]);
	assert_null(mmio_bus__device_type(types, "fak"));
	assert_null(mmio_bus__device_type(types, NULL));
	assert_null(mmio_bus__device_type(NULL, "fake"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_elf_valid_loads),
	    cmocka_unit_test(test_elf_hostile),
	    cmocka_unit_test(test_bzimage),
	    cmocka_unit_test(test_page_tables),
	    cmocka_unit_test(test_gdt),
	    cmocka_unit_test(test_e820_and_zero_page),
	    cmocka_unit_test(test_initial_registers),
	    cmocka_unit_test(test_mp_table),
	    cmocka_unit_test(test_cpuid_profiles),
	    cmocka_unit_test(test_control_parsing),
	    cmocka_unit_test(test_console_ring),
	    cmocka_unit_test(test_serial_registers),
	    cmocka_unit_test(test_mmio_bus),
	    cmocka_unit_test(test_device_types),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

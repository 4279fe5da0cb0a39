/* virtio_blk_bench_guest: the same virtio-blk driver under warren-vmm and
 * QEMU microvm (PVH entry), for side-by-side figures. CPL3, polling, no
 * interrupts (VIRTQ_AVAIL_F_NO_INTERRUPT), no EVENT_IDX. Prints per case
 * "bench <name> qd <n> ops <count> cycles <tsc delta>" on COM1; the host
 * converts TSC cycles to time. Cases: 4 KiB random reads at QD 1, 8, 32
 * over the first 64 MiB; 4 KiB sequential writes (QD 1) with a flush
 * every 64. Device: warren's first window (0xd0000000) or QEMU microvm's
 * virtio-mmio slots (0xfeb00000 + 512 * i). */
#include "virtio_guest.h"

#undef QUEUE_SIZE
#define BENCH_QUEUE 128
#define DISK_BLOCKS (64u * 256u) /* 4 KiB blocks in 64 MiB */
#define MAX_DEPTH   32

struct bench_queue {
	struct vring_desc desc[BENCH_QUEUE] __attribute__((aligned(16)));
	uint16_t avail[3 + BENCH_QUEUE] __attribute__((aligned(4096)));
	uint16_t used[3 + 4 * BENCH_QUEUE] __attribute__((aligned(4096)));
};

static struct bench_queue queue __attribute__((aligned(4096)));
static uint16_t avail_idx, used_seen;
static uint8_t headers[MAX_DEPTH][16] __attribute__((aligned(16)));
static uint8_t statuses[MAX_DEPTH];
static uint8_t buffers[MAX_DEPTH][4096] __attribute__((aligned(4096)));
static uint64_t page_directory[512] __attribute__((aligned(4096)));
static uint64_t device_base;
static uint64_t random_state = 0x9e3779b97f4a7c15ull;
static uint64_t next_sector;
static unsigned writes_since_flush;

static inline uint64_t rdtsc(void)
{
	uint32_t low, high;

	__asm__ volatile("rdtsc" : "=a"(low), "=d"(high));
	return ((uint64_t)high << 32) | low;
}

static void put_decimal(uint64_t value)
{
	char text[21];
	int i = 20;

	text[i] = 0;
	do {
		text[--i] = (char)('0' + value % 10);
		value /= 10;
	} while (value);
	guest_puts(&text[i]);
}

static uint64_t next_random(void)
{
	random_state ^= random_state << 13;
	random_state ^= random_state >> 7;
	random_state ^= random_state << 17;
	return random_state;
}

/* Slot s owns descriptors 3s..3s+2. */
static void submit(unsigned slot, uint32_t type, uint64_t sector)
{
	uint16_t head = (uint16_t)(3 * slot);

	for (int i = 0; i < 16; i++)
		headers[slot][i] = 0;
	headers[slot][0] = (uint8_t)type;
	for (int i = 0; i < 8; i++)
		headers[slot][8 + i] = (uint8_t)(sector >> (8 * i));
	statuses[slot] = 0xee;
	queue.desc[head] = (struct vring_desc){(uint64_t)headers[slot], 16, 1,
					       (uint16_t)(type == 4 ? head + 2 : head + 1)};
	queue.desc[head + 1] =
	    (struct vring_desc){(uint64_t)buffers[slot], 4096, (uint16_t)(1 | (type == 0 ? 2 : 0)),
				(uint16_t)(head + 2)};
	queue.desc[head + 2] = (struct vring_desc){(uint64_t)&statuses[slot], 1, 2, 0};
	queue.avail[2 + (avail_idx % BENCH_QUEUE)] = head;
	avail_idx++;
}

static void publish(void)
{
	barrier();
	*(volatile uint16_t *)&queue.avail[1] = avail_idx;
	barrier();
	mmio_write(device_base, 0x050, 0);
}

static void refill(unsigned slot, int writes)
{
	if (!writes) {
		submit(slot, 0, (next_random() % DISK_BLOCKS) * 8);
	} else if (writes_since_flush == 64) {
		writes_since_flush = 0;
		submit(slot, 4, 0);
	} else {
		writes_since_flush++;
		submit(slot, 1, next_sector);
		next_sector = (next_sector + 8) % (DISK_BLOCKS * 8ull);
	}
}

static void run_case(const char *name, unsigned depth, uint64_t operations, int writes)
{
	uint64_t submitted = 0, completed = 0, start, cycles;

	start = rdtsc();
	for (unsigned slot = 0; slot < depth; slot++, submitted++)
		refill(slot, writes);
	publish();
	while (completed < operations) {
		int refilled = 0;

		while (*(volatile uint16_t *)&queue.used[1] != used_seen) {
			uint32_t id =
			    *(volatile uint32_t *)&queue.used[2 + 4 * (used_seen % BENCH_QUEUE)];
			unsigned slot = id / 3;

			used_seen++;
			completed++;
			if (slot >= MAX_DEPTH || statuses[slot] != 0)
				guest_fail("request failed");
			if (submitted < operations) {
				refill(slot, writes);
				submitted++;
				refilled = 1;
			}
		}
		if (refilled)
			publish();
		else
			__asm__ volatile("pause");
	}
	cycles = rdtsc() - start;
	guest_puts("bench ");
	guest_puts(name);
	guest_puts(" qd ");
	put_decimal(depth);
	guest_puts(" ops ");
	put_decimal(completed);
	guest_puts(" cycles ");
	put_decimal(cycles);
	guest_puts("\n");
}

static void user_main(void)
{
	device_base = 0;
	if (mmio_read(VIRTIO_WINDOW(0), 0) == 0x74726976 && mmio_read(VIRTIO_WINDOW(0), 8) == 2)
		device_base = VIRTIO_WINDOW(0);
	for (unsigned i = 0; i < 24 && !device_base; i++) {
		uint64_t base = 0xfeb00000ul + 0x200ul * i;

		if (mmio_read(base, 0) == 0x74726976 && mmio_read(base, 8) == 2)
			device_base = base;
	}
	if (!device_base)
		guest_fail("no virtio-blk device");
	virtio_guest__init(device_base, 2, 1u << 9 /* FLUSH */);
	mmio_write(device_base, 0x030, 0);
	if (mmio_read(device_base, 0x034) < BENCH_QUEUE)
		guest_fail("queue too small");
	mmio_write(device_base, 0x038, BENCH_QUEUE);
	mmio_write(device_base, 0x080, (uint32_t)(uint64_t)queue.desc);
	mmio_write(device_base, 0x084, 0);
	mmio_write(device_base, 0x090, (uint32_t)(uint64_t)queue.avail);
	mmio_write(device_base, 0x094, 0);
	mmio_write(device_base, 0x0a0, (uint32_t)(uint64_t)queue.used);
	mmio_write(device_base, 0x0a4, 0);
	mmio_write(device_base, 0x044, 1);
	queue.avail[0] = 1; /* VIRTQ_AVAIL_F_NO_INTERRUPT: we poll */
	virtio_guest__driver_ok(device_base);

	run_case("randread", 1, 20000, 0);
	run_case("randread", 8, 50000, 0);
	run_case("randread", 32, 50000, 0);
	run_case("seqwrite-flush64", 1, 10000, 1);
	guest_puts("bench done\n");
	guest_exit(GUEST_PASS);
}

/* QEMU's PVH entry maps only the low 1 GiB: map 3-4 GiB (MMIO) too. */
static void map_mmio_gigabyte(void)
{
	uint64_t cr3, *pml4, *pdpt;

	__asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
	pml4 = (uint64_t *)(cr3 & ~0xfffull);
	pdpt = (uint64_t *)(pml4[0] & 0x000ffffffffff000ull);
	if (pdpt[3] & 1)
		return;
	for (uint64_t i = 0; i < 512; i++)
		page_directory[i] = ((3ull << 30) + (i << 21)) | 0x87 | 0x18; /* PWT|PCD */
	pdpt[3] = (uint64_t)page_directory | 7;
	__asm__ volatile("mov %0, %%cr3" : : "r"(cr3) : "memory");
}

void guest_main(void)
{
	guest_puts("virtio-blk bench guest\n");
	map_mmio_gigabyte();
	virtio_guest__enter_user(user_main);
}

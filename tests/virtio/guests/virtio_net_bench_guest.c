/* virtio_net_bench_guest: small-frame rates of virtio-net, the same driver
 * under warren-vmm and QEMU microvm. CPL3, polling, no interrupts.
 *  1. posts receive buffers and waits for the host's "go" frame;
 *  2. TX: sends 200000 60-byte frames (up to 60 in flight), timed;
 *  3. sends a "rx-go" marker frame; the host then floods the tap;
 *  4. RX: counts 100000 received frames (recycling buffers), timed.
 * Prints "bench tx frames N cycles C" and "bench rx frames N cycles C". */
#include "virtio_guest.h"

#undef QUEUE_SIZE
#define BENCH_QUEUE    128
#define TX_FRAMES      200000u
#define RX_FRAMES      100000u
#define TX_DEPTH       60
#define RX_BUFFER_SIZE 1536

struct bench_queue {
	struct vring_desc desc[BENCH_QUEUE] __attribute__((aligned(16)));
	uint16_t avail[3 + BENCH_QUEUE] __attribute__((aligned(4096)));
	uint16_t used[3 + 4 * BENCH_QUEUE] __attribute__((aligned(4096)));
	uint16_t avail_idx, used_seen;
};

static struct bench_queue rx __attribute__((aligned(4096)));
static struct bench_queue tx __attribute__((aligned(4096)));
static uint8_t rx_buffers[BENCH_QUEUE][RX_BUFFER_SIZE] __attribute__((aligned(4096)));
static uint8_t tx_header[12];
static uint8_t tx_frame[60];
static uint8_t marker_frame[60];
static uint64_t page_directory[512] __attribute__((aligned(4096)));
static uint64_t device_base;

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

static void setup_queue(unsigned index, struct bench_queue *q)
{
	mmio_write(device_base, 0x030, index);
	if (mmio_read(device_base, 0x034) < BENCH_QUEUE)
		guest_fail("queue too small");
	mmio_write(device_base, 0x038, BENCH_QUEUE);
	mmio_write(device_base, 0x080, (uint32_t)(uint64_t)q->desc);
	mmio_write(device_base, 0x084, 0);
	mmio_write(device_base, 0x090, (uint32_t)(uint64_t)q->avail);
	mmio_write(device_base, 0x094, 0);
	mmio_write(device_base, 0x0a0, (uint32_t)(uint64_t)q->used);
	mmio_write(device_base, 0x0a4, 0);
	mmio_write(device_base, 0x044, 1);
	q->avail[0] = 1; /* no interrupts: we poll */
}

static void offer(struct bench_queue *q, uint16_t head)
{
	q->avail[2 + (q->avail_idx % BENCH_QUEUE)] = head;
	q->avail_idx++;
}

static void publish(unsigned index, struct bench_queue *q)
{
	barrier();
	*(volatile uint16_t *)&q->avail[1] = q->avail_idx;
	barrier();
	mmio_write(device_base, 0x050, index);
}

static int take_used(struct bench_queue *q, uint32_t *id)
{
	if (*(volatile uint16_t *)&q->used[1] == q->used_seen)
		return 0;
	barrier();
	*id = *(volatile uint32_t *)&q->used[2 + 4 * (q->used_seen % BENCH_QUEUE)];
	q->used_seen++;
	return 1;
}

/* Data frames are ethertype 0x88b5; the "rx-go" marker is 0x88b6, the
 * only one the host's driver listens to, so the 200,000 TX frames reach
 * nobody's socket on the host (the tap is the measured path). */
static void make_frame(uint8_t *frame, const uint8_t mac[6], const char *payload, uint8_t type_low)
{
	for (int j = 0; j < 6; j++) {
		frame[j] = 0xff;
		frame[6 + j] = mac[j];
	}
	frame[12] = 0x88;
	frame[13] = type_low;
	for (int j = 14; j < 60; j++)
		frame[j] = 0;
	for (int j = 0; payload[j]; j++)
		frame[14 + j] = (uint8_t)payload[j];
}

static void send_marker(void)
{
	uint32_t id;

	tx.desc[2 * TX_DEPTH] = (struct vring_desc){(uint64_t)tx_header, 12, 1, 2 * TX_DEPTH + 1};
	tx.desc[2 * TX_DEPTH + 1] = (struct vring_desc){(uint64_t)marker_frame, 60, 0, 0};
	offer(&tx, 2 * TX_DEPTH);
	publish(1, &tx);
	while (!take_used(&tx, &id))
		__asm__ volatile("pause");
}

static void user_main(void)
{
	uint8_t mac[6];
	uint32_t id;
	uint64_t start, sent = 0, done = 0, received = 0;

	if (mmio_read(VIRTIO_WINDOW(0), 0) == 0x74726976 && mmio_read(VIRTIO_WINDOW(0), 8) == 1)
		device_base = VIRTIO_WINDOW(0);
	for (unsigned i = 0; i < 24 && !device_base; i++) {
		uint64_t base = 0xfeb00000ul + 0x200ul * i;

		if (mmio_read(base, 0) == 0x74726976 && mmio_read(base, 8) == 1)
			device_base = base;
	}
	if (!device_base)
		guest_fail("no virtio-net device");
	virtio_guest__init(device_base, 1, 1u << 5 /* MAC */);
	for (int i = 0; i < 6; i++)
		mac[i] = *(volatile uint8_t *)(device_base + 0x100 + i);
	setup_queue(0, &rx);
	setup_queue(1, &tx);
	virtio_guest__driver_ok(device_base);
	for (uint16_t i = 0; i < BENCH_QUEUE; i++) {
		rx.desc[i] = (struct vring_desc){(uint64_t)rx_buffers[i], RX_BUFFER_SIZE, 2, 0};
		offer(&rx, i);
	}
	publish(0, &rx);
	guest_puts("bench waiting for go\n");
	while (!take_used(&rx, &id))
		__asm__ volatile("pause");
	offer(&rx, (uint16_t)id);
	publish(0, &rx);

	/* TX: descriptors 2i (header) and 2i+1 (frame) for slot i. */
	make_frame(tx_frame, mac, "bench-tx", 0xb5);
	make_frame(marker_frame, mac, "rx-go", 0xb6);
	for (unsigned i = 0; i < TX_DEPTH; i++) {
		tx.desc[2 * i] =
		    (struct vring_desc){(uint64_t)tx_header, 12, 1, (uint16_t)(2 * i + 1)};
		tx.desc[2 * i + 1] = (struct vring_desc){(uint64_t)tx_frame, 60, 0, 0};
	}
	start = rdtsc();
	for (unsigned i = 0; i < TX_DEPTH; i++, sent++)
		offer(&tx, (uint16_t)(2 * i));
	publish(1, &tx);
	while (done < TX_FRAMES) {
		int refilled = 0;

		while (take_used(&tx, &id)) {
			done++;
			if (sent < TX_FRAMES) {
				offer(&tx, (uint16_t)id);
				sent++;
				refilled = 1;
			}
		}
		if (refilled)
			publish(1, &tx);
		else
			__asm__ volatile("pause");
	}
	guest_puts("bench tx frames ");
	put_decimal(done);
	guest_puts(" cycles ");
	put_decimal(rdtsc() - start);
	guest_puts("\n");

	/* RX: drop what queued up meanwhile, ask for the flood, count. */
	while (take_used(&rx, &id))
		offer(&rx, (uint16_t)id);
	publish(0, &rx);
	/* The host may miss the marker while it drains our TX burst: repeat it
	 * until the flood starts. */
	for (uint64_t spins = 0; !take_used(&rx, &id); spins++) {
		if (spins % 2000000 == 0)
			send_marker();
		__asm__ volatile("pause");
	}
	offer(&rx, (uint16_t)id);
	start = rdtsc();
	while (received < RX_FRAMES) {
		int refilled = 0;

		while (take_used(&rx, &id)) {
			received++;
			offer(&rx, (uint16_t)id);
			refilled = 1;
		}
		if (refilled)
			publish(0, &rx);
		else
			__asm__ volatile("pause");
	}
	guest_puts("bench rx frames ");
	put_decimal(received);
	guest_puts(" cycles ");
	put_decimal(rdtsc() - start);
	guest_puts("\nbench done\n");
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
		page_directory[i] = ((3ull << 30) + (i << 21)) | 0x87 | 0x18;
	pdpt[3] = (uint64_t)page_directory | 7;
	__asm__ volatile("mov %0, %%cr3" : : "r"(cr3) : "memory");
}

void guest_main(void)
{
	guest_puts("virtio-net bench guest\n");
	map_mmio_gigabyte();
	virtio_guest__enter_user(user_main);
}

/* virtio_blk_guest: drives the first virtio-mmio device (virtio-blk) from
 * CPL3: writes a pattern to sectors 8..39, flushes, reads it back into
 * another buffer and compares, reads GET_ID, checks that a read past the
 * end fails with IOERR. The host then checks the image file. */
#include "virtio_guest.h"

#define SECTOR 8
#define BYTES  (32 * 512)

static struct guest_queue queue __attribute__((aligned(4096)));
static uint8_t header[16] __attribute__((aligned(16)));
static uint8_t status;
static uint8_t out_data[BYTES] __attribute__((aligned(4096)));
static uint8_t in_data[BYTES] __attribute__((aligned(4096)));

static uint8_t request(uint32_t type, uint64_t sector, uint8_t *data, uint32_t length, int writable)
{
	uint64_t base = VIRTIO_WINDOW(0);
	uint16_t n = 0;

	for (int i = 0; i < 16; i++)
		header[i] = 0;
	header[0] = (uint8_t)type;
	for (int i = 0; i < 8; i++)
		header[8 + i] = (uint8_t)(sector >> (8 * i));
	status = 0xee;
	queue.desc[0] = (struct vring_desc){(uint64_t)header, 16, 1, 1};
	if (length) {
		queue.desc[1] = (struct vring_desc){(uint64_t)data, length,
						    (uint16_t)(1 | (writable ? 2 : 0)), 2};
		n = 1;
	} else {
		queue.desc[0].next = 2;
	}
	queue.desc[2] = (struct vring_desc){(uint64_t)&status, 1, 2, 0};
	(void)n;
	virtio_guest__publish(base, 0, &queue, 0);
	virtio_guest__wait_used(&queue, 0);
	return *(volatile uint8_t *)&status;
}

static void user_main(void)
{
	uint64_t base = VIRTIO_WINDOW(0);
	uint8_t id[20];

	virtio_guest__init(base, 2, 1u << 9 /* FLUSH */);
	virtio_guest__queue(base, 0, &queue);
	virtio_guest__driver_ok(base);

	for (uint32_t i = 0; i < BYTES; i++)
		out_data[i] = (uint8_t)(i * 7 + 3);
	if (request(1, SECTOR, out_data, BYTES, 0) != 0)
		guest_fail("write");
	if (request(4, 0, 0, 0, 0) != 0)
		guest_fail("flush");
	if (request(0, SECTOR, in_data, BYTES, 1) != 0)
		guest_fail("read");
	for (uint32_t i = 0; i < BYTES; i++)
		if (in_data[i] != out_data[i])
			guest_fail("read back differs");
	if (request(8, 0, id, sizeof(id), 1) != 0 || id[0] != 'w')
		guest_fail("get id");
	if (request(0, 1ull << 40, in_data, 512, 1) != 1)
		guest_fail("read past the end did not fail");
	guest_puts("virtio-blk guest ok\n");
	guest_exit(GUEST_PASS);
}

void guest_main(void)
{
	guest_puts("virtio-blk guest\n");
	virtio_guest__enter_user(user_main);
}

/* virtio_net_guest: drives the first virtio-mmio device (virtio-net) from
 * CPL3. Posts receive buffers, waits for a frame from the host (ethertype
 * 0x88b5, payload "warren-host"), checks its virtio_net_hdr, then sends
 * four frames of its own ("warren-guest-N") and exits once the device has
 * consumed them. The host test checks they arrived on the tap. */
#include "virtio_guest.h"

#define RX_BUFFERS     8
#define RX_BUFFER_SIZE 2048
#define FRAMES	       4
#define ETHERTYPE_HI   0x88
#define ETHERTYPE_LO   0xb5

static struct guest_queue rx __attribute__((aligned(4096)));
static struct guest_queue tx __attribute__((aligned(4096)));
static uint8_t rx_buffers[RX_BUFFERS][RX_BUFFER_SIZE] __attribute__((aligned(4096)));
static uint8_t tx_header[12];
static uint8_t tx_frames[FRAMES][64];

static int starts_with(const uint8_t *data, const char *text)
{
	while (*text)
		if (*data++ != (uint8_t)*text++)
			return 0;
	return 1;
}

static void post_rx(uint64_t base, uint16_t index, int notify)
{
	rx.desc[index] = (struct vring_desc){(uint64_t)rx_buffers[index], RX_BUFFER_SIZE, 2, 0};
	rx.avail[2 + (rx.avail_idx % QUEUE_SIZE)] = index;
	barrier();
	rx.avail_idx++;
	*(volatile uint16_t *)&rx.avail[1] = rx.avail_idx;
	barrier();
	if (notify)
		mmio_write(base, 0x050, 0);
}

static void user_main(void)
{
	uint64_t base = VIRTIO_WINDOW(0);
	uint8_t mac[6];
	uint32_t id, length;

	/* MAC, and CSUM + GUEST_CSUM: the VMM then sets the tap's offloads
	 * (TUNSETOFFLOAD) at the first receive, under its seccomp filter. */
	virtio_guest__init(base, 1, (1u << 5) | (1u << 0) | (1u << 1));
	for (int i = 0; i < 6; i++)
		mac[i] = *(volatile uint8_t *)(base + 0x100 + i);
	if (mac[0] != 0x02 || mac[5] != 0x02)
		guest_fail("MAC from config");
	virtio_guest__queue(base, 0, &rx);
	virtio_guest__queue(base, 1, &tx);
	virtio_guest__driver_ok(base);
	for (uint16_t i = 0; i < RX_BUFFERS; i++)
		post_rx(base, i, i == RX_BUFFERS - 1);

	/* Receive until the host's frame shows up (other frames are recycled). */
	for (;;) {
		uint8_t *buffer;

		length = virtio_guest__wait_used(&rx, &id);
		if (id >= RX_BUFFERS || length > RX_BUFFER_SIZE)
			guest_fail("bad used element");
		buffer = rx_buffers[id];
		if (length >= 12 + 14 + 11 && buffer[12 + 12] == ETHERTYPE_HI &&
		    buffer[12 + 13] == ETHERTYPE_LO &&
		    starts_with(buffer + 12 + 14, "warren-host")) {
			if (buffer[10] != 1 || buffer[11] != 0 || buffer[0] != 0)
				guest_fail("virtio_net_hdr (num_buffers, flags)");
			break;
		}
		post_rx(base, (uint16_t)id, 1);
	}
	guest_puts("virtio-net guest received\n");

	for (int i = 0; i < FRAMES; i++) {
		uint8_t *frame = tx_frames[i];
		const char *payload = "warren-guest-";
		int n = 0;

		for (int j = 0; j < 6; j++) {
			frame[j] = 0xff;
			frame[6 + j] = mac[j];
		}
		frame[12] = ETHERTYPE_HI;
		frame[13] = ETHERTYPE_LO;
		while (payload[n]) {
			frame[14 + n] = (uint8_t)payload[n];
			n++;
		}
		frame[14 + n] = (uint8_t)('0' + i);
		for (int j = 15 + n; j < 64; j++)
			frame[j] = 0;
		tx.desc[2 * i] =
		    (struct vring_desc){(uint64_t)tx_header, 12, 1, (uint16_t)(2 * i + 1)};
		tx.desc[2 * i + 1] = (struct vring_desc){(uint64_t)frame, 64, 0, 0};
		virtio_guest__publish(base, 1, &tx, (uint16_t)(2 * i));
	}
	for (int i = 0; i < FRAMES; i++)
		virtio_guest__wait_used(&tx, &id);
	guest_puts("virtio-net guest ok\n");
	guest_exit(GUEST_PASS);
}

void guest_main(void)
{
	guest_puts("virtio-net guest\n");
	virtio_guest__enter_user(user_main);
}

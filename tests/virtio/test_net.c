/* virtio-net tests.
 * Unit part: RX header fix-up (split headers), TX chain validation, MAC
 * parsing.
 * Device part (--device, label integration): the test moves itself into a
 * new network namespace (no route anywhere; it vanishes with the process),
 * creates a tap there, and drives the device as a guest would with the
 * real io_uring loop: frames the guest sends arrive on the tap (seen by a
 * packet socket), frames written to the tap arrive in the guest's RX
 * buffers. Skips (77) without CAP_NET_ADMIN / namespaces. */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "event_loop.h"
#include "net.h"
#include "test_device.h"
#include "test_driver.h"
#include "tap_test_support.h"

#define GUEST_SIZE     (4u << 20)
#define RX_RING	       0x10000u
#define TX_RING	       0x30000u
#define RX_BUFFERS     0x100000u /* 2 KiB each */
#define TX_BUFFERS     0x200000u
#define ETHERTYPE_TEST 0x88b5 /* IEEE local experimental */
#define V1	       (1ull << VIRTIO_F_VERSION_1)

#define OFFLOADS_ALL (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)

static void test_fix_rx_header(void **unused)
{
	uint8_t a[5], b[100];
	struct iovec iov[2] = {{a, sizeof(a)}, {b, sizeof(b)}};

	memset(a, 0xff, sizeof(a));
	memset(b, 0xff, sizeof(b));
	a[0] = 2; /* DATA_VALID: advice, cleared without GUEST_CSUM */
	a[1] = 0;
	assert_true(virtio_net__fix_rx_header(iov, 2, 60, 0));
	for (int i = 0; i < 5; i++)
		assert_int_equal(a[i], 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(b[i], 0);
	assert_int_equal(b[5], 1); /* num_buffers at offset 10 = b[5] */
	assert_int_equal(b[6], 0);
	assert_int_equal(b[7], 0xff); /* frame untouched */
	assert_false(virtio_net__fix_rx_header(iov, 2, 11, 0));
}

static void test_rx_header_offloads(void **unused)
{
	uint8_t header[12 + 60];
	struct iovec iov = {header, sizeof(header)};

	/* A partial checksum or a GSO frame without the offload: dropped. */
	memset(header, 0, sizeof(header));
	header[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	assert_false(virtio_net__fix_rx_header(&iov, 1, sizeof(header), 0));
	header[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	header[1] = VIRTIO_NET_HDR_GSO_TCPV4;
	assert_false(virtio_net__fix_rx_header(&iov, 1, sizeof(header), TUN_F_CSUM));
	assert_false(virtio_net__fix_rx_header(&iov, 1, sizeof(header), TUN_F_CSUM | TUN_F_TSO6));
	/* With it: passed through untouched, num_buffers set. */
	header[2] = 54; /* hdr_len */
	assert_true(virtio_net__fix_rx_header(&iov, 1, sizeof(header), TUN_F_CSUM | TUN_F_TSO4));
	assert_int_equal(header[0], VIRTIO_NET_HDR_F_NEEDS_CSUM);
	assert_int_equal(header[1], VIRTIO_NET_HDR_GSO_TCPV4);
	assert_int_equal(header[2], 54);
	assert_int_equal(header[10], 1);
	/* UDP and ECN were never offered. */
	header[1] = 3;
	assert_false(virtio_net__fix_rx_header(&iov, 1, sizeof(header), OFFLOADS_ALL));
	header[1] = VIRTIO_NET_HDR_GSO_TCPV4 | 0x80;
	assert_false(virtio_net__fix_rx_header(&iov, 1, sizeof(header), OFFLOADS_ALL));
}

static void test_tap_offloads(void **unused)
{
	uint64_t csum = 1ull << VIRTIO_NET_F_GUEST_CSUM;
	uint64_t tso4 = 1ull << VIRTIO_NET_F_GUEST_TSO4, tso6 = 1ull << VIRTIO_NET_F_GUEST_TSO6;

	assert_int_equal(virtio_net__tap_offloads(0), 0);
	assert_int_equal(virtio_net__tap_offloads(tso4 | tso6), 0); /* TSO needs GUEST_CSUM */
	assert_int_equal(virtio_net__tap_offloads(csum), TUN_F_CSUM);
	assert_int_equal(virtio_net__tap_offloads(csum | tso4 | tso6), OFFLOADS_ALL);
	/* Host-side bits say nothing about what the guest accepts. */
	assert_int_equal(virtio_net__tap_offloads(1ull << VIRTIO_NET_F_HOST_TSO4), 0);
}

static void test_tx_valid(void **unused)
{
	struct virtq_chain *chain = calloc(1, sizeof(*chain));
	uint64_t csum = 1ull << VIRTIO_NET_F_CSUM, tso4 = 1ull << VIRTIO_NET_F_HOST_TSO4;
	uint8_t frame[12 + 100] = {0};

	chain->iov_count = chain->readable_count = 1;
	chain->iov[0] = (struct iovec){frame, sizeof(frame)};
	chain->readable_bytes = 12 + 60;
	assert_true(virtio_net__tx_valid(chain, 0));
	chain->readable_bytes = 12 + 13; /* shorter than an Ethernet header */
	assert_false(virtio_net__tx_valid(chain, 0));
	chain->readable_bytes = 12 + 65551; /* too long */
	assert_false(virtio_net__tx_valid(chain, 0));
	chain->readable_bytes = 12 + 60;
	chain->iov_count = 2; /* a writable descriptor in a TX chain */
	chain->writable_bytes = 10;
	assert_false(virtio_net__tx_valid(chain, 0));
	chain->iov_count = 1;
	chain->writable_bytes = 0;

	/* Header fields against the negotiated features. */
	frame[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	assert_false(virtio_net__tx_valid(chain, 0));
	assert_true(virtio_net__tx_valid(chain, csum));
	frame[0] = 2; /* DATA_VALID is the device's to set */
	assert_false(virtio_net__tx_valid(chain, csum));
	frame[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	frame[1] = VIRTIO_NET_HDR_GSO_TCPV4;
	frame[4] = 1448 & 0xff; /* gso_size */
	frame[5] = 1448 >> 8;
	assert_false(virtio_net__tx_valid(chain, csum));
	assert_true(virtio_net__tx_valid(chain, csum | tso4));
	frame[4] = 8; /* 64 KiB cut into 8-byte segments: refused */
	frame[5] = 0;
	assert_false(virtio_net__tx_valid(chain, csum | tso4));
	frame[4] = 1448 & 0xff;
	frame[5] = 1448 >> 8;
	frame[1] = VIRTIO_NET_HDR_GSO_TCPV6;
	assert_false(virtio_net__tx_valid(chain, csum | tso4));
	frame[1] = 3; /* UDP */
	assert_false(virtio_net__tx_valid(chain, csum | tso4));
	frame[0] = 0; /* GSO without a partial checksum */
	frame[1] = VIRTIO_NET_HDR_GSO_TCPV4;
	assert_false(virtio_net__tx_valid(chain, csum | tso4));
	/* The header split over two descriptors is read the same. */
	frame[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	chain->iov_count = chain->readable_count = 2;
	chain->iov[0] = (struct iovec){frame, 1};
	chain->iov[1] = (struct iovec){frame + 1, sizeof(frame) - 1};
	assert_true(virtio_net__tx_valid(chain, csum | tso4));
	free(chain);
}

static void test_parse_mac(void **unused)
{
	uint8_t mac[6];

	assert_int_equal(virtio_net__parse_mac("02:0a:0b:0c:0d:ff", mac), 0);
	assert_int_equal(mac[0], 2);
	assert_int_equal(mac[5], 0xff);
	assert_int_equal(virtio_net__parse_mac("02:0a:0b:0c:0d", mac), -EINVAL);
	assert_int_equal(virtio_net__parse_mac("02:0a:0b:0c:0d:ff:00", mac), -EINVAL);
	assert_int_equal(virtio_net__parse_mac(NULL, mac), -EINVAL);
}

/* --- device level ---------------------------------------------------------- */

struct net_fixture {
	struct test_guest *guest;
	struct event_loop *loop;
	struct virtio_net *net;
	struct virtio_mmio *t;
	struct test_vring rx, tx;
	int notify_fd, irq_fd, packet_fd, ifindex;
	struct test_used_log rx_log, tx_log;
	unsigned want_rx, want_tx;
};

static bool on_irq(void *opaque, int32_t result)
{
	struct net_fixture *f = opaque;

	if (result < 0)
		return false;
	if (!test_mmio__ack_interrupt(f->t, f->irq_fd))
		return true;
	test_used_log__drain(f->guest, &f->rx, &f->rx_log);
	test_used_log__drain(f->guest, &f->tx, &f->tx_log);
	if (f->rx_log.seen >= f->want_rx && f->tx_log.seen >= f->want_tx)
		event_loop__stop(f->loop);
	return true;
}

static bool on_deadline_stop(void *opaque, int32_t result)
{
	event_loop__stop(opaque);
	return false;
}

static void run_until(struct net_fixture *f, unsigned rx, unsigned tx)
{
	f->want_rx = rx;
	f->want_tx = tx;
	if (f->rx_log.seen >= rx && f->tx_log.seen >= tx)
		return;
	assert_false(test_loop__run_timed_out(f->loop, 5ull * 1000000000ull));
}

static uint64_t setup_offloads; /* offload features the next device_setup negotiates */

static int device_setup(void **state)
{
	struct net_fixture *f = calloc(1, sizeof(*f));
	struct virtio_net_options options = {.tap = "wtap0", .tap_fd = -1};
	struct sockaddr_ll address = {0};
	char error[256];

	*state = f;
	f->guest = test_guest__create(GUEST_SIZE);
	f->loop = event_loop__create(256);
	f->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	f->irq_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_int_equal(virtio_net__parse_mac("02:00:00:00:00:01", options.mac), 0);
	f->net = virtio_net__create(&f->guest->memory, f->loop, &options, f->notify_fd, f->irq_fd,
				    error, sizeof(error));
	if (!f->net)
		fail_msg("create: %s", error);
	f->t = virtio_net__transport(f->net);
	assert_int_equal(test_tap__interface_up("wtap0"), 0);
	f->ifindex = (int)if_nametoindex("wtap0");
	assert_true(f->ifindex > 0);
	f->packet_fd =
	    socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETHERTYPE_TEST));
	assert_true(f->packet_fd >= 0);
	address.sll_family = AF_PACKET;
	address.sll_protocol = htons(ETHERTYPE_TEST);
	address.sll_ifindex = f->ifindex;
	assert_int_equal(bind(f->packet_fd, (struct sockaddr *)&address, sizeof(address)), 0);
	assert_true(event_loop__watch(f->loop, f->irq_fd, POLLIN, on_irq, f) >= 0);

	test_vring__init(f->guest, &f->rx, 64, RX_RING);
	test_vring__init(f->guest, &f->tx, 64, TX_RING);
	assert_true(test_mmio__negotiate(f->t, V1 | (1ull << VIRTIO_F_EVENT_IDX) |
						   (1ull << VIRTIO_NET_F_MAC) | setup_offloads) &
		    VIRTIO_STATUS_FEATURES_OK);
	test_mmio__setup_queue(f->t, VIRTIO_NET_RX_QUEUE, &f->rx);
	test_mmio__setup_queue(f->t, VIRTIO_NET_TX_QUEUE, &f->tx);
	test_mmio__driver_ok(f->t);
	return 0;
}

static int offload_setup(void **state)
{
	setup_offloads = VIRTIO_NET_OFFLOAD_FEATURES;
	device_setup(state);
	setup_offloads = 0;
	return 0;
}

static int device_teardown(void **state)
{
	struct net_fixture *f = *state;
	int64_t timer;

	/* Reads parked on the tap are cancelled; the device is freed by their
	 * callbacks, so the loop runs a little longer. */
	virtio_net__destroy(f->net);
	timer = event_loop__timer(f->loop, 20 * 1000000ull, on_deadline_stop, f->loop);
	assert_true(timer >= 0);
	assert_int_equal(event_loop__run(f->loop), 0);
	event_loop__destroy(f->loop);
	close(f->packet_fd);
	close(f->notify_fd);
	close(f->irq_fd);
	test_guest__destroy(f->guest);
	free(f);
	return 0;
}

static size_t make_frame(uint8_t *frame, unsigned sequence, size_t payload)
{
	memset(frame, 0xff, 6); /* broadcast */
	memcpy(frame + 6, "\x02\x00\x00\x00\x00\x01", 6);
	frame[12] = ETHERTYPE_TEST >> 8;
	frame[13] = ETHERTYPE_TEST & 0xff;
	for (size_t i = 0; i < payload; i++)
		frame[14 + i] = (uint8_t)(sequence + i);
	return 14 + payload;
}

static void test_config_space(void **state)
{
	struct net_fixture *f = *state;
	uint8_t mac[6];

	for (int i = 0; i < 6; i++)
		virtio_mmio__read(f->t, VIRTIO_MMIO_CONFIG + i, &mac[i], 1);
	assert_memory_equal(mac, "\x02\x00\x00\x00\x00\x01", 6);
	assert_int_equal(test_mmio__read(f->t, VIRTIO_MMIO_DEVICE_ID), 1);
}

static void test_guest_to_tap(void **state)
{
	struct net_fixture *f = *state;
	uint8_t received[2048];

	/* 20 frames, header and frame in separate descriptors. */
	for (unsigned i = 0; i < 20; i++) {
		uint64_t header = TX_BUFFERS + 4096 * i;
		size_t length = make_frame(test_guest__ptr(f->guest, header + 64), i, 50 + i);
		struct test_buffer b[2] = {{header, 12, false},
					   {header + 64, (uint32_t)length, false}};

		memset(test_guest__ptr(f->guest, header), 0, 12);
		test_vring__add_chain(f->guest, &f->tx, b, 2, true);
	}
	test_mmio__write(f->t, VIRTIO_MMIO_QUEUE_NOTIFY, VIRTIO_NET_TX_QUEUE);
	run_until(f, 0, 20);
	for (unsigned i = 0; i < 20; i++) {
		ssize_t n = recv(f->packet_fd, received, sizeof(received), 0);

		assert_int_equal(n, 14 + 50 + i);
		assert_int_equal(received[14], (uint8_t)i);
		assert_memory_equal(received, test_guest__ptr(f->guest, TX_BUFFERS + 4096 * i + 64),
				    (size_t)n);
	}
}

static void test_tap_to_guest(void **state)
{
	struct net_fixture *f = *state;
	struct sockaddr_ll address = {0};
	uint8_t frame[256];
	json_t *metrics;

	address.sll_family = AF_PACKET;
	address.sll_ifindex = f->ifindex;
	address.sll_halen = 6;
	memset(address.sll_addr, 0xff, 6);
	/* Frames written before the guest has buffers wait in the tap. */
	for (unsigned i = 0; i < 3; i++) {
		size_t length = make_frame(frame, 100 + i, 80);

		assert_int_equal(sendto(f->packet_fd, frame, length, 0, (struct sockaddr *)&address,
					sizeof(address)),
				 (ssize_t)length);
	}
	for (unsigned i = 0; i < 16; i++) {
		struct test_buffer b = {RX_BUFFERS + 2048 * i, 2048, true};

		memset(test_guest__ptr(f->guest, b.gpa), 0xee, 2048);
		test_vring__add_chain(f->guest, &f->rx, &b, 1, true);
	}
	test_mmio__write(f->t, VIRTIO_MMIO_QUEUE_NOTIFY, VIRTIO_NET_RX_QUEUE);
	run_until(f, 3, 0);
	/* And frames that arrive while the guest waits. */
	for (unsigned i = 3; i < 8; i++) {
		size_t length = make_frame(frame, 100 + i, 80);

		assert_int_equal(sendto(f->packet_fd, frame, length, 0, (struct sockaddr *)&address,
					sizeof(address)),
				 (ssize_t)length);
	}
	/* Other traffic (e.g. IPv6 autoconf of the new link) may interleave:
	 * keep receiving until our 8 frames are in, in order. */
	unsigned ours = 0, scanned = 0;

	while (ours < 8) {
		run_until(f, scanned + 1, 0);
		for (; scanned < f->rx_log.seen; scanned++) {
			uint8_t *buffer = test_guest__ptr(
			    f->guest, RX_BUFFERS + 2048ull * f->rx_log.id[scanned % 256]);

			if (buffer[12 + 12] != (ETHERTYPE_TEST >> 8) ||
			    buffer[12 + 13] != (ETHERTYPE_TEST & 0xff))
				continue;
			assert_int_equal(f->rx_log.len[scanned % 256], 12 + 14 + 80);
			assert_int_equal(buffer[0], 0);	 /* flags cleared */
			assert_int_equal(buffer[10], 1); /* num_buffers */
			assert_int_equal(buffer[12 + 14], (uint8_t)(100 + ours));
			ours++;
		}
		assert_true(scanned < 16);
	}
	metrics = virtio_net__metrics(f->net);
	assert_true(json_integer_value(json_object_get(metrics, "rx_packets")) >= 8);
	json_decref(metrics);
}

static void test_bad_tx_chain_dropped(void **state)
{
	struct net_fixture *f = *state;
	struct test_buffer b = {TX_BUFFERS, 8, false}; /* shorter than a header */
	json_t *metrics;

	test_vring__add_chain(f->guest, &f->tx, &b, 1, true);
	test_mmio__write(f->t, VIRTIO_MMIO_QUEUE_NOTIFY, VIRTIO_NET_TX_QUEUE);
	run_until(f, 0, 1);
	metrics = virtio_net__metrics(f->net);
	assert_int_equal(json_integer_value(json_object_get(metrics, "tx_dropped")), 1);
	json_decref(metrics);
	assert_false(test_mmio__read(f->t, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
}

/* --- offloads, end to end through the host stack -------------------------- */

#define HOST_IP	 0x0a000001u /* 10.0.0.1 on the tap */
#define GUEST_IP 0x0a000002u /* 10.0.0.2 behind it */
#define UDP_PORT 5555

static void set_ipv4(const char *name, uint32_t address)
{
	struct ifreq request;
	struct sockaddr_in *in = (struct sockaddr_in *)&request.ifr_addr;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	memset(&request, 0, sizeof(request));
	snprintf(request.ifr_name, sizeof(request.ifr_name), "%s", name);
	in->sin_family = AF_INET;
	in->sin_addr.s_addr = htonl(address);
	assert_int_equal(ioctl(fd, SIOCSIFADDR, &request), 0);
	in->sin_addr.s_addr = htonl(0xffffff00u);
	assert_int_equal(ioctl(fd, SIOCSIFNETMASK, &request), 0);
	close(fd);
}

/* A static ARP entry: the host sends to GUEST_IP without asking. */
static void set_guest_neighbour(const char *name)
{
	struct arpreq request;
	struct sockaddr_in *in = (struct sockaddr_in *)&request.arp_pa;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	memset(&request, 0, sizeof(request));
	in->sin_family = AF_INET;
	in->sin_addr.s_addr = htonl(GUEST_IP);
	request.arp_ha.sa_family = ARPHRD_ETHER;
	memcpy(request.arp_ha.sa_data, "\x02\x00\x00\x00\x00\x01", 6);
	request.arp_flags = ATF_COM | ATF_PERM;
	snprintf(request.arp_dev, sizeof(request.arp_dev), "%s", name);
	assert_int_equal(ioctl(fd, SIOCSARP, &request), 0);
	close(fd);
}

static uint32_t sum16(const uint8_t *data, size_t length, uint32_t sum)
{
	for (size_t i = 0; i + 1 < length; i += 2)
		sum += (uint32_t)(data[i] << 8 | data[i + 1]);
	if (length & 1)
		sum += (uint32_t)data[length - 1] << 8;
	return sum;
}

static uint16_t fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

/* Guest -> host UDP datagram (Ethernet + IPv4 + UDP + payload) at `at`.
 * partial: the UDP checksum field holds only the pseudo-header sum and the
 * vnet header asks the host to finish it (NEEDS_CSUM, 5.1.6.2); otherwise
 * the field holds `checksum` as given. Returns the chain length. */
static size_t make_udp_frame(uint8_t *at, bool partial, uint16_t checksum)
{
	static const char payload[] = "offload-test";
	uint8_t *frame = at + 12, *ip = frame + 14, *udp = ip + 20;
	uint16_t udp_length = (uint16_t)(8 + sizeof(payload)),
		 ip_length = (uint16_t)(20 + udp_length);
	uint8_t pseudo[12];

	memset(at, 0, 12 + 14 + ip_length);
	if (partial) {
		at[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
		at[6] = 14 + 20; /* csum_start (le16) */
		at[8] = 6;	 /* csum_offset: UDP checksum field */
	}
	memset(frame, 0xff, 6); /* broadcast: no need to learn the tap's MAC */
	memcpy(frame + 6, "\x02\x00\x00\x00\x00\x01", 6);
	frame[12] = 0x08;
	ip[0] = 0x45;
	ip[2] = (uint8_t)(ip_length >> 8);
	ip[3] = (uint8_t)ip_length;
	ip[8] = 64;
	ip[9] = 17;
	for (int i = 0; i < 4; i++) {
		ip[12 + i] = (uint8_t)(GUEST_IP >> (24 - 8 * i));
		ip[16 + i] = (uint8_t)(HOST_IP >> (24 - 8 * i));
	}
	uint16_t ip_checksum = (uint16_t)~fold(sum16(ip, 20, 0));

	ip[10] = (uint8_t)(ip_checksum >> 8);
	ip[11] = (uint8_t)ip_checksum;
	udp[0] = 0x9c; /* source port 40000 */
	udp[1] = 0x40;
	udp[2] = UDP_PORT >> 8;
	udp[3] = UDP_PORT & 0xff;
	udp[4] = (uint8_t)(udp_length >> 8);
	udp[5] = (uint8_t)udp_length;
	memcpy(udp + 8, payload, sizeof(payload));
	if (partial) {
		memcpy(pseudo, ip + 12, 8);
		pseudo[8] = 0;
		pseudo[9] = 17;
		pseudo[10] = (uint8_t)(udp_length >> 8);
		pseudo[11] = (uint8_t)udp_length;
		checksum = fold(sum16(pseudo, sizeof(pseudo), 0)); /* not inverted: partial */
	}
	udp[6] = (uint8_t)(checksum >> 8);
	udp[7] = (uint8_t)checksum;
	return 12 + 14 + ip_length;
}

static int udp_listener(void)
{
	struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(UDP_PORT)};
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	address.sin_addr.s_addr = htonl(HOST_IP);
	assert_int_equal(bind(fd, (struct sockaddr *)&address, sizeof(address)), 0);
	return fd;
}

static void send_tx_chain(struct net_fixture *f, uint64_t at, size_t length, unsigned count)
{
	struct test_buffer b = {at, (uint32_t)length, false};

	test_vring__add_chain(f->guest, &f->tx, &b, 1, true);
	test_mmio__write(f->t, VIRTIO_MMIO_QUEUE_NOTIFY, VIRTIO_NET_TX_QUEUE);
	run_until(f, 0, count);
}

static ssize_t receive_within(int fd, void *buffer, size_t size, int timeout_ms)
{
	struct pollfd pfd = {fd, POLLIN, 0};

	if (poll(&pfd, 1, timeout_ms) <= 0)
		return -1;
	return recv(fd, buffer, size, 0);
}

/* The guest's partial checksum is completed by the host: a datagram with a
 * wrong checksum field arrives when NEEDS_CSUM says "finish it", and the
 * same bytes without NEEDS_CSUM are dropped by the host's UDP. */
static void test_tx_checksum_offload(void **state)
{
	struct net_fixture *f = *state;
	char received[64];
	size_t length;
	json_t *metrics;
	int fd;

	set_ipv4("wtap0", HOST_IP);
	fd = udp_listener();
	length = make_udp_frame(test_guest__ptr(f->guest, TX_BUFFERS), true, 0);
	send_tx_chain(f, TX_BUFFERS, length, 1);
	assert_int_equal(receive_within(fd, received, sizeof(received), 2000), 13);
	assert_string_equal(received, "offload-test");

	length = make_udp_frame(test_guest__ptr(f->guest, TX_BUFFERS + 4096), false, 0x1234);
	send_tx_chain(f, TX_BUFFERS + 4096, length, 2);
	assert_int_equal(receive_within(fd, received, sizeof(received), 200), -1);
	metrics = virtio_net__metrics(f->net);
	assert_int_equal(json_integer_value(json_object_get(metrics, "tx_packets")), 2);
	assert_true(json_is_true(json_object_get(metrics, "driver_ok")));
	assert_int_equal(json_integer_value(json_object_get(metrics, "features")) &
			     (json_int_t)VIRTIO_NET_OFFLOAD_FEATURES,
			 (json_int_t)VIRTIO_NET_OFFLOAD_FEATURES);
	json_decref(metrics);
	close(fd);
}

/* Without CSUM negotiated the same NEEDS_CSUM frame is refused by us, not
 * passed to the host. */
static void test_tx_offload_not_negotiated(void **state)
{
	struct net_fixture *f = *state;
	size_t length;
	json_t *metrics;

	length = make_udp_frame(test_guest__ptr(f->guest, TX_BUFFERS), true, 0);
	send_tx_chain(f, TX_BUFFERS, length, 1);
	metrics = virtio_net__metrics(f->net);
	assert_int_equal(json_integer_value(json_object_get(metrics, "tx_header_rejected")), 1);
	assert_int_equal(json_integer_value(json_object_get(metrics, "tx_packets")), 0);
	json_decref(metrics);
}

/* RX follows the driver's features: host UDP to the guest arrives with a
 * partial checksum (NEEDS_CSUM) only when GUEST_CSUM was negotiated, and
 * fully checksummed otherwise. */
static void check_rx_checksum_form(struct net_fixture *f, bool offloaded)
{
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(UDP_PORT)};
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	unsigned scanned = 0;
	json_t *metrics;
	bool seen = false;

	set_ipv4("wtap0", HOST_IP);
	set_guest_neighbour("wtap0");
	for (unsigned i = 0; i < 16; i++) {
		struct test_buffer b = {RX_BUFFERS + 2048 * i, 2048, true};

		test_vring__add_chain(f->guest, &f->rx, &b, 1, true);
	}
	test_mmio__write(f->t, VIRTIO_MMIO_QUEUE_NOTIFY, VIRTIO_NET_RX_QUEUE);
	/* Let the device see the buffers (and set the tap's offloads). */
	assert_true(event_loop__timer(f->loop, 20 * 1000000ull, on_deadline_stop, f->loop) >= 0);
	assert_int_equal(event_loop__run(f->loop), 0);
	to.sin_addr.s_addr = htonl(GUEST_IP);
	assert_int_equal(sendto(fd, "to-guest", 8, 0, (struct sockaddr *)&to, sizeof(to)), 8);
	while (!seen) {
		run_until(f, scanned + 1, 0);
		for (; scanned < f->rx_log.seen && !seen; scanned++) {
			uint8_t *header = test_guest__ptr(
			    f->guest, RX_BUFFERS + 2048ull * f->rx_log.id[scanned % 256]);
			uint8_t *frame = header + 12;

			if (frame[12] != 0x08 || frame[13] != 0x00 || frame[14 + 9] != 17)
				continue; /* not our IPv4/UDP */
			seen = true;
			assert_int_equal(header[10], 1); /* num_buffers */
			if (offloaded) {
				assert_int_equal(header[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM,
						 VIRTIO_NET_HDR_F_NEEDS_CSUM);
				assert_int_equal(header[6], 14 + 20); /* csum_start */
				assert_int_equal(header[8], 6);	      /* csum_offset */
			} else {
				assert_int_equal(header[0], 0);
			}
		}
		assert_true(scanned < 16);
	}
	metrics = virtio_net__metrics(f->net);
	assert_int_equal(json_integer_value(json_object_get(metrics, "tap_offloads")),
			 offloaded ? (json_int_t)(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) : 0);
	json_decref(metrics);
	close(fd);
}

static void test_rx_checksum_offload(void **state)
{
	check_rx_checksum_form(*state, true);
}

static void test_rx_without_offload(void **state)
{
	check_rx_checksum_form(*state, false);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest unit[] = {
	    cmocka_unit_test(test_fix_rx_header), cmocka_unit_test(test_rx_header_offloads),
	    cmocka_unit_test(test_tap_offloads),  cmocka_unit_test(test_tx_valid),
	    cmocka_unit_test(test_parse_mac),
	};
	const struct CMUnitTest device[] = {
	    cmocka_unit_test_setup_teardown(test_config_space, device_setup, device_teardown),
	    cmocka_unit_test_setup_teardown(test_guest_to_tap, device_setup, device_teardown),
	    cmocka_unit_test_setup_teardown(test_tap_to_guest, device_setup, device_teardown),
	    cmocka_unit_test_setup_teardown(test_bad_tx_chain_dropped, device_setup,
					    device_teardown),
	    cmocka_unit_test_setup_teardown(test_tx_checksum_offload, offload_setup,
					    device_teardown),
	    cmocka_unit_test_setup_teardown(test_tx_offload_not_negotiated, device_setup,
					    device_teardown),
	    cmocka_unit_test_setup_teardown(test_rx_checksum_offload, offload_setup,
					    device_teardown),
	    cmocka_unit_test_setup_teardown(test_rx_without_offload, device_setup, device_teardown),
	};

	if (argc > 1 && strcmp(argv[1], "--device") == 0) {
		/* Our own namespace: no route out, gone when we exit. */
		if (unshare(CLONE_NEWNET) < 0) {
			printf(
			    "SKIP: cannot create a network namespace (%s): needs CAP_SYS_ADMIN\n",
			    strerror(errno));
			return 77;
		}
		/* Keep IPv6 autoconf chatter off the test link. */
		FILE *sysctl = fopen("/proc/sys/net/ipv6/conf/default/disable_ipv6", "w");

		if (sysctl) {
			fputs("1", sysctl);
			fclose(sysctl);
		}
		if (access("/dev/net/tun", R_OK | W_OK) < 0) {
			printf("SKIP: /dev/net/tun not accessible (%s)\n", strerror(errno));
			return 77;
		}
		return cmocka_run_group_tests_name("virtio-net device", device, NULL, NULL);
	}
	return cmocka_run_group_tests_name("virtio-net headers", unit, NULL, NULL);
}

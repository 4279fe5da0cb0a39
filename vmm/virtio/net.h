/* net: virtio-net (virtio 1.x 5.1) over a tap opened with
 * IFF_TAP | IFF_NO_PI | IFF_VNET_HDR and a 12-byte vnet header
 * (TUNSETVNETHDRSZ), so a chain's bytes are exactly what the tap reads or
 * writes: struct virtio_net_hdr_v1 followed by the Ethernet frame.
 *
 * RX (queue 0): whenever the driver adds buffers, and when a one-shot poll
 * on the (non-blocking) tap fires, the device pops receive chains and
 * readv()s frames straight into the guest's buffers until the tap is empty
 * (then it arms the poll again) or the driver runs out of buffers (then
 * nothing is armed: its next notification restarts RX). TX (queue 1): every available chain
 * becomes one writev() to the tap on the loop thread (tap writes never
 * block). Both directions work in batches of at most 256 chains, with one
 * interrupt check per batch, and give the loop back in between.
 *
 * Offloads (5.1.3): offered CSUM, HOST_TSO4/6 (the guest may send partial
 * checksums and TCP segments up to 64 KiB, which the host kernel completes)
 * and GUEST_CSUM, GUEST_TSO4/6 (the tap may hand us the same). What the tap
 * gives us follows the driver's negotiated features (TUNSETOFFLOAD, applied
 * on the loop thread before each RX batch; none before FEATURES_OK and
 * after a reset). Every header is checked against the features: a TX
 * header with a flag or GSO type the driver did not negotiate drops the
 * frame (tx_header_rejected); an RX frame whose header does not fit what
 * the driver negotiated (queued before a change) is dropped
 * (rx_offload_dropped). No UFO, no ECN, no MRG_RXBUF: without it a Linux
 * driver that takes GUEST_TSO posts 64 KiB "big packet" chains, and
 * num_buffers is always 1 (5.1.6.4). */
#ifndef WARREN_VMM_VIRTIO_NET_H
#define WARREN_VMM_VIRTIO_NET_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "virtio_mmio.h"
#include "virtqueue.h"

#define VIRTIO_NET_F_CSUM	0
#define VIRTIO_NET_F_GUEST_CSUM 1
#define VIRTIO_NET_F_MAC	5
#define VIRTIO_NET_F_GUEST_TSO4 7
#define VIRTIO_NET_F_GUEST_TSO6 8
#define VIRTIO_NET_F_HOST_TSO4	11
#define VIRTIO_NET_F_HOST_TSO6	12
#define VIRTIO_NET_F_STATUS	16
#define VIRTIO_NET_OFFLOAD_FEATURES                                                                \
	((1ull << VIRTIO_NET_F_CSUM) | (1ull << VIRTIO_NET_F_GUEST_CSUM) |                         \
	 (1ull << VIRTIO_NET_F_GUEST_TSO4) | (1ull << VIRTIO_NET_F_GUEST_TSO6) |                   \
	 (1ull << VIRTIO_NET_F_HOST_TSO4) | (1ull << VIRTIO_NET_F_HOST_TSO6))
/* 5.1.6 header flags and GSO types */
#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1
#define VIRTIO_NET_HDR_GSO_NONE	    0
#define VIRTIO_NET_HDR_GSO_TCPV4    1
#define VIRTIO_NET_HDR_GSO_TCPV6    4
#define VIRTIO_NET_MIN_GSO_SIZE	    536 /* smallest TX segment size accepted (IPv4's default MSS) */
#define VIRTIO_NET_S_LINK_UP	    1
#define VIRTIO_NET_HDR_SIZE	    12	  /* struct virtio_net_hdr_v1 */
#define VIRTIO_NET_MAX_FRAME	    65550 /* 64 KiB + Ethernet/VLAN header */
#define VIRTIO_NET_CONFIG_SIZE	    10
#define VIRTIO_NET_RX_QUEUE	    0
#define VIRTIO_NET_TX_QUEUE	    1

/* Opens (creating if needed) tap `name` with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR,
 * 12-byte vnet header, non-blocking. fd or -errno with a reason. */
int virtio_net__open_tap(const char *name, char *error, size_t error_size);

/* The TUN_F_* offloads the tap may use towards a driver that negotiated
 * `features` (TSO only together with GUEST_CSUM). */
unsigned virtio_net__tap_offloads(uint64_t features);

/* Fixes a received header in place (iov = the chain's writable buffers,
 * holding `length` bytes from the tap whose offloads are `offloads`,
 * TUN_F_*): num_buffers = 1; without TUN_F_CSUM flags and GSO cleared.
 * false (drop the frame) when length is shorter than the header or the
 * header carries a checksum or GSO form outside `offloads`. */
bool virtio_net__fix_rx_header(struct iovec *iov, unsigned count, uint64_t length,
			       unsigned offloads);

/* True when a TX chain is acceptable under the negotiated `features`:
 * device-readable only, header plus a 14-byte Ethernet header at least,
 * at most VIRTIO_NET_MAX_FRAME more, and a header that uses only what was
 * negotiated (NEEDS_CSUM with CSUM; GSO TCPv4/v6 with HOST_TSO4/6,
 * NEEDS_CSUM and a gso_size of at least VIRTIO_NET_MIN_GSO_SIZE; nothing
 * else). */
bool virtio_net__tx_valid(const struct virtq_chain *chain, uint64_t features);

/* Parses "02:00:00:00:00:01" into mac. 0 or -EINVAL. */
int virtio_net__parse_mac(const char *text, uint8_t mac[6]);

struct virtio_net_options {
	const char *tap; /* tap name (opened here) ... */
	int tap_fd;	 /* ... or an open tap fd (taken over), -1 if none */
	uint8_t mac[6];
	const json_t *rx_rate_limiter; /* NULL: unlimited */
	const json_t *tx_rate_limiter;
	uint16_t queue_size; /* 0: 256 */
};

struct virtio_net;

/* Sets up the device on loop (before it runs, or on its thread). NULL with
 * a reason in error on failure. notify_fd/irq_fd: see virtio_mmio__init. */
struct virtio_net *virtio_net__create(const struct guest_memory *memory, struct event_loop *loop,
				      const struct virtio_net_options *options, int notify_fd,
				      int irq_fd, char *error, size_t error_size);
/* Loop thread, no I/O in flight. Closes the tap. */
void virtio_net__destroy(struct virtio_net *net);
struct virtio_mmio *virtio_net__transport(struct virtio_net *net);
/* Loop thread: {"rx": <rate_limiter JSON>, "tx": <...>}; a missing key
 * leaves that direction unchanged. */
int virtio_net__set_rate_limit(struct virtio_net *net, const json_t *config, char *error,
			       size_t error_size);
/* Loop thread: {rx_packets, rx_bytes, tx_packets, tx_bytes, rx_dropped,
 * tx_dropped, errors, rate_limited, needs_reset, ...}. */
json_t *virtio_net__metrics(struct virtio_net *net);

#endif

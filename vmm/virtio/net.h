/* net: virtio-net (virtio 1.x 5.1) over a tap opened with
 * IFF_TAP | IFF_NO_PI | IFF_VNET_HDR and a 12-byte vnet header
 * (TUNSETVNETHDRSZ), so a chain's bytes are exactly what the tap reads or
 * writes: struct virtio_net_hdr_v1 followed by the Ethernet frame.
 *
 * RX (queue 0): a multishot poll on the tap; on each event the device pops
 * a receive chain and readv()s the next frame straight into the guest's
 * buffers through io_uring (one read in flight, repeated until the tap is
 * empty, -EAGAIN gives the chain back). TX (queue 1): every available chain
 * becomes one writev() to the tap, all of them queued before the loop
 * submits (one io_uring_enter per notification batch).
 *
 * Offloads: none are negotiated. The tap is left without TUNSETOFFLOAD, so
 * the host kernel hands us fully checksummed, unsegmented frames, and the
 * guest must send the same; we clear any flags the tap sets in the RX
 * header (DATA_VALID needs VIRTIO_NET_F_GUEST_CSUM) and set num_buffers = 1
 * (5.1.6.3.1, no MRG_RXBUF). Features offered: MAC, STATUS (link up). */
#ifndef WARREN_VMM_VIRTIO_NET_H
#define WARREN_VMM_VIRTIO_NET_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "virtio_mmio.h"
#include "virtqueue.h"

#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_STATUS 16
#define VIRTIO_NET_S_LINK_UP 1
#define VIRTIO_NET_HDR_SIZE 12	/* struct virtio_net_hdr_v1 */
#define VIRTIO_NET_MAX_FRAME 65550 /* 64 KiB + Ethernet/VLAN header */
#define VIRTIO_NET_CONFIG_SIZE 10
#define VIRTIO_NET_RX_QUEUE 0
#define VIRTIO_NET_TX_QUEUE 1

/* Opens (creating if needed) tap `name` with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR,
 * 12-byte vnet header, non-blocking. fd or -errno with a reason. */
int virtio_net__open_tap(const char *name, char *error, size_t error_size);

/* Fixes a received header in place (iov = the chain's writable buffers,
 * holding `length` bytes from the tap): num_buffers = 1, flags and GSO
 * cleared unless the matching offloads were negotiated (never, for now).
 * false when length is shorter than the header. */
bool virtio_net__fix_rx_header(struct iovec *iov, unsigned count, uint64_t length);

/* True when a TX chain is acceptable: device-readable only, header plus a
 * 14-byte Ethernet header at least, at most VIRTIO_NET_MAX_FRAME more. */
bool virtio_net__tx_valid(const struct virtq_chain *chain);

/* Parses "02:00:00:00:00:01" into mac. 0 or -EINVAL. */
int virtio_net__parse_mac(const char *text, uint8_t mac[6]);

struct virtio_net_options {
	const char *tap;	/* tap name (opened here) ... */
	int tap_fd;		/* ... or an open tap fd (taken over), -1 if none */
	uint8_t mac[6];
	const json_t *rx_rate_limiter; /* NULL: unlimited */
	const json_t *tx_rate_limiter;
	uint16_t queue_size;	/* 0: 256 */
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

/* net: virtio-net device over a tap (virtio 1.x 5.1). See net.h. */
#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "event_loop.h"
#include "iov.h"
#include "rate_limiter.h"
#include "warren/clock.h"

#define NET_DEFAULT_QUEUE_SIZE 256
#define NET_BATCH	       256  /* chains per direction before other events get a turn */
#define NET_PUBLISH_EVERY      32   /* used elements per used-index update within a batch */
#define NET_RX_ESTIMATE	       1514 /* bytes charged per frame before we know its size */

struct virtio_net {
	struct virtio_mmio transport;
	struct event_loop *loop;
	int tap_fd;
	uint8_t config[VIRTIO_NET_CONFIG_SIZE];
	int64_t tap_poll;	       /* one-shot poll armed on the (empty) tap, or -1 */
	unsigned tap_offloads;	       /* TUN_F_* last given to TUNSETOFFLOAD */
	bool rx_deferred, tx_deferred; /* a batch ended early: resumed from the loop */
	int64_t rx_timer, tx_timer;
	struct virtq_chain rx_chain, tx_chain; /* scratch, loop thread */

	struct rate_limiter rx_limiter, tx_limiter;
	bool closing; /* destroyed: freed when the last callback ran */

	uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes;
	uint64_t rx_dropped, tx_dropped, errors, rx_rate_limited, tx_rate_limited;
	uint64_t rx_offload_dropped, tx_header_rejected;
};

int virtio_net__open_tap(const char *name, char *error, size_t error_size)
{
	struct ifreq request;
	int fd, header_size = VIRTIO_NET_HDR_SIZE, saved;

	if (!name || !*name || strlen(name) >= IFNAMSIZ) {
		snprintf(error, error_size, "net: tap name must be 1..%d characters", IFNAMSIZ - 1);
		return -EINVAL;
	}
	/* Blocking on purpose: io_uring then parks pending reads on the tap's
	 * wait queue instead of failing them with -EAGAIN (whose handling
	 * would differ between kernels). Tap writes never block. */
	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		saved = errno;
		snprintf(error, error_size, "net: open /dev/net/tun: %s", strerror(saved));
		return -saved;
	}
	memset(&request, 0, sizeof(request));
	request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	memcpy(request.ifr_name, name, strlen(name));
	if (ioctl(fd, TUNSETIFF, &request) < 0) {
		saved = errno;
		snprintf(error, error_size, "net: TUNSETIFF %s: %s", name, strerror(saved));
		goto err;
	}
	if (ioctl(fd, TUNSETVNETHDRSZ, &header_size) < 0) {
		saved = errno;
		snprintf(error, error_size, "net: TUNSETVNETHDRSZ: %s", strerror(saved));
		goto err;
	}
	/* No offloads: the kernel checksums and segments before handing frames to us. */
	if (ioctl(fd, TUNSETOFFLOAD, 0) < 0) {
		saved = errno;
		snprintf(error, error_size, "net: TUNSETOFFLOAD: %s", strerror(saved));
		goto err;
	}
	return fd;
err:
	close(fd);
	return -saved;
}

unsigned virtio_net__tap_offloads(uint64_t features)
{
	unsigned offloads = 0;

	/* 5.1.3.1: the TSO bits depend on GUEST_CSUM; a driver that sets them
	 * alone gets no segmentation offload from us. */
	if (!(features & (1ull << VIRTIO_NET_F_GUEST_CSUM)))
		return 0;
	offloads |= TUN_F_CSUM;
	if (features & (1ull << VIRTIO_NET_F_GUEST_TSO4))
		offloads |= TUN_F_TSO4;
	if (features & (1ull << VIRTIO_NET_F_GUEST_TSO6))
		offloads |= TUN_F_TSO6;
	return offloads;
}

/* The GSO types we offer (TCPv4, TCPv6; no UDP, no ECN), each only where
 * its offload is on. */
static bool net__gso_allowed(uint8_t gso_type, bool tcpv4, bool tcpv6)
{
	switch (gso_type) {
	case VIRTIO_NET_HDR_GSO_NONE:
		return true;
	case VIRTIO_NET_HDR_GSO_TCPV4:
		return tcpv4;
	case VIRTIO_NET_HDR_GSO_TCPV6:
		return tcpv6;
	default:
		return false;
	}
}

/* 5.1.6 struct virtio_net_hdr_v1: u8 flags, u8 gso_type, le16 hdr_len,
 * le16 gso_size, le16 csum_start, le16 csum_offset, le16 num_buffers. */
bool virtio_net__fix_rx_header(struct iovec *iov, unsigned count, uint64_t length,
			       unsigned offloads)
{
	static const uint8_t clean[10] = {0};
	static const uint8_t one[2] = {1, 0};
	uint8_t header[2];
	uint8_t gso_type;

	if (length < VIRTIO_NET_HDR_SIZE || !iov__read_front(iov, count, header, sizeof(header)))
		return false;
	gso_type = header[1];
	if (!(offloads & TUN_F_CSUM)) {
		/* Nothing negotiated: a partial checksum or a GSO frame (queued
		 * before the driver changed its features) cannot be delivered;
		 * DATA_VALID is only advice and is cleared (5.1.6.3.1). */
		if ((header[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM) ||
		    gso_type != VIRTIO_NET_HDR_GSO_NONE)
			return false;
		iov__write_at(iov, count, 0, clean, sizeof(clean));
	} else if (!net__gso_allowed(gso_type, offloads & TUN_F_TSO4, offloads & TUN_F_TSO6)) {
		return false;
	}
	/* 5.1.6.4: without MRG_RXBUF every frame fills exactly one chain. */
	iov__write_at(iov, count, 10, one, sizeof(one));
	return true;
}

bool virtio_net__tx_valid(const struct virtq_chain *chain, uint64_t features)
{
	uint8_t header[6];
	uint8_t flags, gso_type;
	uint16_t gso_size;

	if (chain->iov_count != chain->readable_count ||
	    chain->readable_bytes < VIRTIO_NET_HDR_SIZE + 14 ||
	    chain->readable_bytes > VIRTIO_NET_HDR_SIZE + VIRTIO_NET_MAX_FRAME ||
	    !iov__read_front(chain->iov, chain->iov_count, header, sizeof(header)))
		return false;
	flags = header[0];
	gso_type = header[1];
	gso_size = (uint16_t)(header[4] | header[5] << 8);
	/* A tiny segment size would have the host cut 64 KiB into tens of
	 * thousands of packets for one guest request. */
	if (gso_type != VIRTIO_NET_HDR_GSO_NONE && gso_size < VIRTIO_NET_MIN_GSO_SIZE)
		return false;
	/* 5.1.6.2.1: only NEEDS_CSUM, and only when CSUM was negotiated. */
	if (flags & ~VIRTIO_NET_HDR_F_NEEDS_CSUM)
		return false;
	if (flags && !(features & (1ull << VIRTIO_NET_F_CSUM)))
		return false;
	/* A segmented frame also needs the partial checksum (NEEDS_CSUM). */
	return net__gso_allowed(gso_type, flags && (features & (1ull << VIRTIO_NET_F_HOST_TSO4)),
				flags && (features & (1ull << VIRTIO_NET_F_HOST_TSO6)));
}

int virtio_net__parse_mac(const char *text, uint8_t mac[6])
{
	unsigned values[6];
	char tail;

	if (!text || sscanf(text, "%2x:%2x:%2x:%2x:%2x:%2x%c", &values[0], &values[1], &values[2],
			    &values[3], &values[4], &values[5], &tail) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)values[i];
	return 0;
}

static void net__rx(struct virtio_net *net);
static void net__tx(struct virtio_net *net);

/* After destroy: frees the device once no callback of ours is pending. */
static bool net__closing(struct virtio_net *net)
{
	if (!net->closing)
		return false;
	if (net->tap_poll < 0 && net->rx_timer < 0 && net->tx_timer < 0 && !net->rx_deferred &&
	    !net->tx_deferred) {
		virtio_mmio__uninit(&net->transport);
		free(net);
	}
	return true;
}

static bool on_rx_timer(void *opaque, int32_t result)
{
	struct virtio_net *net = opaque;

	(void)result;
	net->rx_timer = -1;
	if (!net__closing(net))
		net__rx(net); /* expired, or cancelled by a new limit */
	return false;
}

static bool on_tx_timer(void *opaque, int32_t result)
{
	struct virtio_net *net = opaque;

	(void)result;
	net->tx_timer = -1;
	if (!net__closing(net))
		net__tx(net); /* expired, or cancelled by a new limit */
	return false;
}

static void on_rx_deferred(void *opaque)
{
	struct virtio_net *net = opaque;

	net->rx_deferred = false;
	if (!net__closing(net))
		net__rx(net);
}

static void on_tx_deferred(void *opaque)
{
	struct virtio_net *net = opaque;

	net->tx_deferred = false;
	if (!net__closing(net))
		net__tx(net);
}

static bool on_tap_readable(void *opaque, int32_t result)
{
	struct virtio_net *net = opaque;

	net->tap_poll = -1;
	if (net__closing(net))
		return false;
	if (result < 0 && result != -ECANCELED)
		net->errors++;
	net__rx(net);
	return false;
}

/* Lock held: the tap hands us only the offloads the driver negotiated. */
static void net__apply_offloads(struct virtio_net *net)
{
	unsigned wanted = virtio_net__tap_offloads(net->transport.driver_features);

	if (!(net->transport.status & VIRTIO_STATUS_FEATURES_OK))
		wanted = 0;
	if (wanted == net->tap_offloads)
		return;
	if (ioctl(net->tap_fd, TUNSETOFFLOAD, wanted) < 0) {
		net->errors++;
		return; /* frames keep their old form; fix_rx_header drops what does not fit */
	}
	net->tap_offloads = wanted;
}

/* RX: on "tap readable" or "guest added buffers", moves frames from the
 * (non-blocking) tap into receive chains, one readv() straight into guest
 * memory per frame, until the tap is empty, the guest has no buffers, the
 * rate limiter says wait, or NET_BATCH frames went by (then the rest is
 * deferred so TX and the control socket get a turn). One interrupt check
 * per batch. */
static void net__rx(struct virtio_net *net)
{
	struct virtq_chain *chain = &net->rx_chain;
	uint64_t now = clock__monotonic_ns();
	unsigned delivered = 0, budget = NET_BATCH;
	struct virtq *q;
	ssize_t n;
	int ret;

	virtio_mmio__lock(&net->transport);
	q = virtio_mmio__queue(&net->transport, VIRTIO_NET_RX_QUEUE);
	if (!q || net->rx_timer >= 0 || net->tap_fd < 0)
		goto out;
	net__apply_offloads(net);
	while (budget) {
		ret = virtq__pop(q, chain);
		if (ret < 0) {
			virtio_mmio__needs_reset(&net->transport, q->error);
			break;
		}
		if (ret == 0) {
			/* No buffers: frames wait in the tap until the driver
			 * adds some and notifies. */
			if (virtq__set_notification(q, true))
				continue;
			break;
		}
		/* 5.1.6.3: receive buffers are device-writable and hold a header. */
		if (chain->readable_count != 0 || chain->writable_bytes < VIRTIO_NET_HDR_SIZE) {
			net->rx_dropped++;
			net->errors++;
			virtq__push(q, chain->head, 0);
			delivered++;
			continue;
		}
		if (!rate_limiter__consume(&net->rx_limiter, NET_RX_ESTIMATE, now)) {
			virtq__unpop(q);
			net->rx_rate_limited++;
			net->rx_timer = event_loop__timer(
			    net->loop,
			    rate_limiter__wait_ns(&net->rx_limiter, NET_RX_ESTIMATE, now),
			    on_rx_timer, net);
			break;
		}
		n = readv(net->tap_fd, chain->iov, (int)chain->iov_count);
		if (n < 0) {
			int saved = errno;

			virtq__unpop(q);
			rate_limiter__refund(&net->rx_limiter, NET_RX_ESTIMATE, true);
			if (saved == EAGAIN || saved == EINTR) {
				/* Empty, with buffers to fill: a one-shot poll says
				 * when more arrives. (Without buffers nothing is
				 * armed: the driver's notification restarts us.) */
				if (net->tap_poll < 0) {
					net->tap_poll = event_loop__poll_once(
					    net->loop, net->tap_fd, POLLIN, on_tap_readable, net);
					if (net->tap_poll < 0) {
						net->tap_poll = -1;
						net->errors++;
					}
				}
				break;
			}
			/* EFAULT/EINVAL: the frame did not fit this chain and is
			 * gone; the next one may fit. */
			net->rx_dropped++;
			net->errors++;
			budget--;
			continue;
		}
		budget--;
		if ((uint64_t)n < NET_RX_ESTIMATE)
			rate_limiter__refund(&net->rx_limiter, NET_RX_ESTIMATE - (uint64_t)n,
					     false);
		if (!virtio_net__fix_rx_header(chain->iov, chain->iov_count, (uint64_t)n,
					       net->tap_offloads)) {
			virtq__unpop(q);
			net->rx_dropped++;
			net->rx_offload_dropped++;
			continue;
		}
		net->rx_packets++;
		net->rx_bytes += (uint64_t)n - VIRTIO_NET_HDR_SIZE;
		virtq__add_used(q, chain->head, (uint32_t)n);
		if (++delivered % NET_PUBLISH_EVERY == 0)
			virtq__publish_used(q);
	}
	if (!budget && !net->rx_deferred && event_loop__defer(net->loop, on_rx_deferred, net) == 0)
		net->rx_deferred = true;
	virtq__publish_used(q);
out:
	if (delivered)
		virtio_mmio__signal_used(&net->transport, VIRTIO_NET_RX_QUEUE);
	virtio_mmio__unlock(&net->transport);
}

/* TX: every available chain becomes one writev() to the tap (tap writes
 * never block: the frame is queued to the host stack or dropped), up to
 * NET_BATCH per turn; one interrupt check per batch. */
static void net__tx(struct virtio_net *net)
{
	struct virtq_chain *chain = &net->tx_chain;
	uint64_t now = clock__monotonic_ns();
	unsigned completed = 0, budget = NET_BATCH;
	struct virtq *q;
	ssize_t n;
	int ret;

	virtio_mmio__lock(&net->transport);
	q = virtio_mmio__queue(&net->transport, VIRTIO_NET_TX_QUEUE);
	if (!q || net->tx_timer >= 0 || net->tap_fd < 0)
		goto out;
	virtq__set_notification(q, false);
	while (budget) {
		ret = virtq__pop(q, chain);
		if (ret < 0) {
			virtio_mmio__needs_reset(&net->transport, q->error);
			break;
		}
		if (ret == 0) {
			if (virtq__set_notification(q, true)) {
				virtq__set_notification(q, false);
				continue;
			}
			break;
		}
		if (!virtio_net__tx_valid(chain, net->transport.driver_features)) {
			net->tx_dropped++;
			net->errors++;
			/* Well formed but for features the driver did not take? */
			net->tx_header_rejected +=
			    virtio_net__tx_valid(chain, VIRTIO_NET_OFFLOAD_FEATURES);
			virtq__push(q, chain->head, 0);
			completed++;
			budget--;
			continue;
		}
		if (!rate_limiter__consume(&net->tx_limiter, chain->readable_bytes, now)) {
			virtq__unpop(q);
			net->tx_rate_limited++;
			net->tx_timer = event_loop__timer(
			    net->loop,
			    rate_limiter__wait_ns(&net->tx_limiter, chain->readable_bytes, now),
			    on_tx_timer, net);
			virtq__set_notification(q, true);
			break;
		}
		n = writev(net->tap_fd, chain->iov, (int)chain->iov_count);
		if (n < 0) {
			net->tx_dropped++; /* the host refused it (e.g. bad GSO header) */
		} else {
			net->tx_packets++;
			net->tx_bytes += (uint64_t)n > VIRTIO_NET_HDR_SIZE
					     ? (uint64_t)n - VIRTIO_NET_HDR_SIZE
					     : 0;
		}
		virtq__add_used(q, chain->head, 0);
		if (++completed % NET_PUBLISH_EVERY == 0)
			virtq__publish_used(q);
		budget--;
	}
	virtq__publish_used(q);
	if (!budget) {
		if (!net->tx_deferred && event_loop__defer(net->loop, on_tx_deferred, net) == 0)
			net->tx_deferred = true;
		else
			virtq__set_notification(q, true);
	}
out:
	if (completed)
		virtio_mmio__signal_used(&net->transport, VIRTIO_NET_TX_QUEUE);
	virtio_mmio__unlock(&net->transport);
}

static void net__notify(void *opaque)
{
	struct virtio_net *net = opaque;

	net__tx(net);
	net__rx(net);
}

static void net__reset(void *opaque)
{
	(void)opaque; /* lock held; nothing is in flight outside the loop thread */
}

struct virtio_net *virtio_net__create(const struct guest_memory *memory, struct event_loop *loop,
				      const struct virtio_net_options *options, int notify_fd,
				      int irq_fd, char *error, size_t error_size)
{
	struct virtio_mmio_device device;
	struct virtio_net *net;
	int ret;

	net = calloc(1, sizeof(*net));
	if (!net) {
		snprintf(error, error_size, "net: out of memory");
		if (options->tap_fd >= 0)
			close(options->tap_fd);
		return NULL;
	}
	net->loop = loop;
	net->rx_timer = -1;
	net->tx_timer = -1;
	net->tap_poll = -1;
	net->tap_fd = options->tap_fd >= 0 ? options->tap_fd
					   : virtio_net__open_tap(options->tap, error, error_size);
	if (net->tap_fd < 0)
		goto err;
	/* A caller's fd too: reads and writes happen on the loop thread and
	 * must never wait (see open_tap). */
	ret = fcntl(net->tap_fd, F_GETFL);
	if (ret < 0 || (!(ret & O_NONBLOCK) && fcntl(net->tap_fd, F_SETFL, ret | O_NONBLOCK) < 0)) {
		snprintf(error, error_size, "net: tap fd: %s", strerror(errno));
		goto err;
	}
	/* The tap starts with no offloads; the driver's features decide. */
	if (ioctl(net->tap_fd, TUNSETOFFLOAD, 0) < 0) {
		snprintf(error, error_size, "net: TUNSETOFFLOAD: %s", strerror(errno));
		goto err;
	}
	rate_limiter__init(&net->rx_limiter);
	rate_limiter__init(&net->tx_limiter);
	if ((options->rx_rate_limiter &&
	     rate_limiter__configure(&net->rx_limiter, options->rx_rate_limiter,
				     clock__monotonic_ns(), error, error_size) < 0) ||
	    (options->tx_rate_limiter &&
	     rate_limiter__configure(&net->tx_limiter, options->tx_rate_limiter,
				     clock__monotonic_ns(), error, error_size) < 0))
		goto err;
	/* 5.1.4: mac[6], le16 status, le16 max_virtqueue_pairs */
	memcpy(net->config, options->mac, 6);
	net->config[6] = VIRTIO_NET_S_LINK_UP;
	net->config[8] = 1;

	memset(&device, 0, sizeof(device));
	device.device_id = 1;
	device.features = (1ull << VIRTIO_NET_F_MAC) | (1ull << VIRTIO_NET_F_STATUS) |
			  VIRTIO_NET_OFFLOAD_FEATURES;
	device.queue_count = 2;
	device.queue_max_size = options->queue_size ? options->queue_size : NET_DEFAULT_QUEUE_SIZE;
	device.config = net->config;
	device.config_size = sizeof(net->config);
	device.opaque = net;
	device.notify = net__notify;
	device.reset = net__reset;
	/* TX only: RX buffers sit available until frames come (the tap's poll
	 * says when). */
	device.polled_queues = 1u << VIRTIO_NET_TX_QUEUE;
	ret = virtio_mmio__init(&net->transport, memory, loop, &device, notify_fd, irq_fd);
	if (ret < 0) {
		snprintf(error, error_size, "net: transport: %s", strerror(-ret));
		goto err;
	}
	return net;
err:
	if (net->tap_fd >= 0)
		close(net->tap_fd);
	free(net);
	return NULL;
}

void virtio_net__destroy(struct virtio_net *net)
{
	if (!net)
		return;
	/* The device stops now and is freed by the last of its callbacks
	 * (the tap poll's -ECANCELED, timers, deferred batches). */
	net->closing = true;
	if (net->rx_timer >= 0)
		event_loop__cancel(net->loop, net->rx_timer);
	if (net->tx_timer >= 0)
		event_loop__cancel(net->loop, net->tx_timer);
	if (net->tap_poll >= 0 && event_loop__cancel(net->loop, net->tap_poll) < 0)
		net->tap_poll = -1;
	virtio_mmio__stop(&net->transport);
	/* Our fd goes now (a poll holds its own reference until it ends),
	 * so the tap disappears as soon as it is gone. */
	close(net->tap_fd);
	net->tap_fd = -1;
	net__closing(net);
}

struct virtio_mmio *virtio_net__transport(struct virtio_net *net)
{
	return &net->transport;
}

int virtio_net__set_rate_limit(struct virtio_net *net, const json_t *config, char *error,
			       size_t error_size)
{
	struct rate_limiter rx = net->rx_limiter, tx = net->tx_limiter;
	const json_t *rx_config = json_object_get(config, "rx");
	const json_t *tx_config = json_object_get(config, "tx");
	uint64_t now = clock__monotonic_ns();

	if (!json_is_object(config)) {
		snprintf(error, error_size, "net rate limit must be {\"rx\": ..., \"tx\": ...}");
		return -EINVAL;
	}
	if ((rx_config && rate_limiter__configure(&rx, rx_config, now, error, error_size) < 0) ||
	    (tx_config && rate_limiter__configure(&tx, tx_config, now, error, error_size) < 0))
		return -EINVAL;
	net->rx_limiter = rx;
	net->tx_limiter = tx;
	/* A waiting direction resumes from its timer's -ECANCELED callback
	 * (the id stays set until then, so destroy waits for it). */
	if (net->rx_timer >= 0)
		event_loop__cancel(net->loop, net->rx_timer);
	if (net->tx_timer >= 0)
		event_loop__cancel(net->loop, net->tx_timer);
	net__notify(net);
	return 0;
}

json_t *virtio_net__metrics(struct virtio_net *net)
{
	json_t *metrics;

	virtio_mmio__lock(&net->transport);
	metrics = json_pack(
	    "{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o}", "type", "net",
	    "rx_packets", (json_int_t)net->rx_packets, "rx_bytes", (json_int_t)net->rx_bytes,
	    "tx_packets", (json_int_t)net->tx_packets, "tx_bytes", (json_int_t)net->tx_bytes,
	    "rx_dropped", (json_int_t)net->rx_dropped, "tx_dropped", (json_int_t)net->tx_dropped,
	    "errors", (json_int_t)net->errors, "rate_limited",
	    (json_int_t)(net->rx_rate_limited + net->tx_rate_limited), "rx_offload_dropped",
	    (json_int_t)net->rx_offload_dropped, "tx_header_rejected",
	    (json_int_t)net->tx_header_rejected, "tap_offloads", (json_int_t)net->tap_offloads,
	    "rx_rate_limiter", rate_limiter__to_json(&net->rx_limiter), "tx_rate_limiter",
	    rate_limiter__to_json(&net->tx_limiter));
	virtio_mmio__add_metrics(&net->transport, metrics);
	virtio_mmio__unlock(&net->transport);
	return metrics;
}

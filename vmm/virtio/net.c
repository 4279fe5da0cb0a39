/* net: virtio-net device over a tap (virtio 1.x 5.1). See net.h. */
#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "event_loop.h"
#include "event_loop_io.h"
#include "rate_limiter.h"
#include "warren/clock.h"

#define NET_DEFAULT_QUEUE_SIZE 256
#define NET_TX_IN_FLIGHT 64
#define NET_RX_READS 16 /* reads kept pending on the tap */
#define NET_RX_ESTIMATE 1514 /* bytes charged per frame before we know its size */

struct net_tx_slot {
	struct virtio_net *net;
	uint32_t generation;
	struct net_tx_slot *next_free;
	struct virtq_chain chain;
};

struct virtio_net {
	struct virtio_mmio transport;
	struct event_loop *loop;
	int tap_fd;
	uint8_t config[VIRTIO_NET_CONFIG_SIZE];

	/* RX: reads pending on the tap, one receive chain each. */
	struct net_rx_slot {
		struct virtio_net *net;
		uint32_t generation;
		bool in_use;
		struct virtq_chain chain;
	} rx_slots[NET_RX_READS];
	unsigned rx_pending;
	int64_t rx_timer;

	struct net_tx_slot tx_slots[NET_TX_IN_FLIGHT];
	struct net_tx_slot *tx_free;
	unsigned tx_in_flight;
	int64_t tx_timer;

	struct rate_limiter rx_limiter, tx_limiter;
	bool closing; /* destroyed: freed when the last callback ran */

	uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes;
	uint64_t rx_dropped, tx_dropped, errors, rx_rate_limited, tx_rate_limited;
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

/* Writes `bytes` at `offset` of an iovec array (the header may be split). */
static void iov_write_at(struct iovec *iov, unsigned count, uint64_t offset, const uint8_t *data,
			 size_t bytes)
{
	for (unsigned i = 0; i < count && bytes; i++) {
		if (offset >= iov[i].iov_len) {
			offset -= iov[i].iov_len;
			continue;
		}
		size_t n = iov[i].iov_len - offset;

		if (n > bytes)
			n = bytes;
		memcpy((uint8_t *)iov[i].iov_base + offset, data, n);
		data += n;
		bytes -= n;
		offset = 0;
	}
}

bool virtio_net__fix_rx_header(struct iovec *iov, unsigned count, uint64_t length)
{
	/* struct virtio_net_hdr_v1: u8 flags, u8 gso_type, le16 hdr_len,
	 * le16 gso_size, le16 csum_start, le16 csum_offset, le16 num_buffers */
	static const uint8_t clean[10] = {0};
	static const uint8_t one[2] = {1, 0};

	if (length < VIRTIO_NET_HDR_SIZE)
		return false;
	iov_write_at(iov, count, 0, clean, sizeof(clean));
	iov_write_at(iov, count, 10, one, sizeof(one));
	return true;
}

bool virtio_net__tx_valid(const struct virtq_chain *chain)
{
	return chain->iov_count == chain->readable_count &&
	       chain->readable_bytes >= VIRTIO_NET_HDR_SIZE + 14 &&
	       chain->readable_bytes <= VIRTIO_NET_HDR_SIZE + VIRTIO_NET_MAX_FRAME;
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
	if (net->rx_pending == 0 && net->tx_in_flight == 0 && net->rx_timer < 0 &&
	    net->tx_timer < 0) {
		virtio_mmio__uninit(&net->transport);
		free(net);
	}
	return true;
}

static bool on_rx_timer(void *opaque, int32_t result)
{
	struct virtio_net *net = opaque;

	net->rx_timer = -1;
	if (net__closing(net))
		return false;
	if (result != -ECANCELED)
		net__rx(net);
	return false;
}

static bool on_tx_timer(void *opaque, int32_t result)
{
	struct virtio_net *net = opaque;

	net->tx_timer = -1;
	if (net__closing(net))
		return false;
	if (result != -ECANCELED)
		net__tx(net);
	return false;
}

static bool on_rx_done(void *opaque, int32_t result)
{
	struct net_rx_slot *slot = opaque;
	struct virtio_net *net = slot->net;
	struct virtq_chain *chain = &slot->chain;
	struct virtq *q;
	bool again = true;

	virtio_mmio__lock(&net->transport);
	slot->in_use = false;
	net->rx_pending--;
	q = virtio_mmio__queue(&net->transport, VIRTIO_NET_RX_QUEUE);
	if (!q || slot->generation != virtio_mmio__generation(&net->transport)) {
		net->rx_dropped += result > 0; /* reset meanwhile: the ring is gone */
		goto out;
	}
	if (result < VIRTIO_NET_HDR_SIZE) {
		/* Cannot give the chain back out of order: return it empty. */
		net->errors++;
		if (result == -ECANCELED || result == -EBADF)
			again = false;
		if (virtq__push(q, chain->head, 0) == 0)
			virtio_mmio__signal_used(&net->transport, VIRTIO_NET_RX_QUEUE);
		goto out;
	}
	virtio_net__fix_rx_header(&chain->iov[chain->readable_count],
				  chain->iov_count - chain->readable_count, (uint64_t)result);
	net->rx_packets++;
	net->rx_bytes += (uint64_t)result - VIRTIO_NET_HDR_SIZE;
	if (virtq__push(q, chain->head, (uint32_t)result) == 0)
		virtio_mmio__signal_used(&net->transport, VIRTIO_NET_RX_QUEUE);
out:
	virtio_mmio__unlock(&net->transport);
	if (net__closing(net))
		return false;
	if (again)
		net__rx(net);
	return false;
}

/* Keeps up to NET_RX_READS reads pending on the (blocking) tap, each into
 * one receive chain; io_uring completes them as frames arrive, in arrival
 * order, straight into guest memory. */
static void net__rx(struct virtio_net *net)
{
	uint64_t now = clock__monotonic_ns();
	struct virtq *q;
	int ret;

	virtio_mmio__lock(&net->transport);
	q = virtio_mmio__queue(&net->transport, VIRTIO_NET_RX_QUEUE);
	if (!q || net->rx_timer >= 0)
		goto out;
	while (net->rx_pending < NET_RX_READS) {
		struct net_rx_slot *slot = NULL;
		struct virtq_chain *chain;

		for (unsigned i = 0; i < NET_RX_READS && !slot; i++)
			if (!net->rx_slots[i].in_use)
				slot = &net->rx_slots[i];
		if (!slot)
			break;
		chain = &slot->chain;
		ret = virtq__pop(q, chain);
		if (ret < 0) {
			virtio_mmio__needs_reset(&net->transport, q->error);
			break;
		}
		if (ret == 0) {
			/* No buffers: ask the driver to notify when it adds some.
			 * Frames wait in the tap's queue meanwhile. */
			if (virtq__set_notification(q, true))
				continue;
			break;
		}
		/* 5.1.6.3: receive buffers are device-writable and hold a header. */
		if (chain->readable_count != 0 || chain->writable_bytes < VIRTIO_NET_HDR_SIZE) {
			net->rx_dropped++;
			net->errors++;
			if (virtq__push(q, chain->head, 0) == 0)
				virtio_mmio__signal_used(&net->transport, VIRTIO_NET_RX_QUEUE);
			continue;
		}
		if (!rate_limiter__consume(&net->rx_limiter, NET_RX_ESTIMATE, now)) {
			virtq__unpop(q);
			net->rx_rate_limited++;
			net->rx_timer = event_loop__timer(
				net->loop, rate_limiter__wait_ns(&net->rx_limiter, NET_RX_ESTIMATE, now),
				on_rx_timer, net);
			break;
		}
		slot->net = net;
		slot->generation = virtio_mmio__generation(&net->transport);
		ret = event_loop__readv(net->loop, net->tap_fd, &chain->iov[chain->readable_count],
					(int)(chain->iov_count - chain->readable_count), -1,
					on_rx_done, slot);
		if (ret < 0) {
			virtq__unpop(q); /* loop full: retried on the next completion */
			if (net->rx_pending == 0)
				net->errors++;
			break;
		}
		slot->in_use = true;
		net->rx_pending++;
	}
out:
	virtio_mmio__unlock(&net->transport);
}

static bool on_tx_done(void *opaque, int32_t result)
{
	struct net_tx_slot *slot = opaque;
	struct virtio_net *net = slot->net;
	bool was_full;

	virtio_mmio__lock(&net->transport);
	was_full = net->tx_free == NULL;
	if (result < 0) {
		net->tx_dropped++;
	} else {
		net->tx_packets++;
		net->tx_bytes += (uint64_t)result > VIRTIO_NET_HDR_SIZE ?
					 (uint64_t)result - VIRTIO_NET_HDR_SIZE :
					 0;
	}
	if (slot->generation == virtio_mmio__generation(&net->transport) &&
	    virtio_mmio__queue(&net->transport, VIRTIO_NET_TX_QUEUE)) {
		if (virtq__push(&net->transport.queues[VIRTIO_NET_TX_QUEUE], slot->chain.head, 0) == 0)
			virtio_mmio__signal_used(&net->transport, VIRTIO_NET_TX_QUEUE);
	}
	slot->next_free = net->tx_free;
	net->tx_free = slot;
	net->tx_in_flight--;
	virtio_mmio__unlock(&net->transport);
	if (net__closing(net))
		return false;
	if (was_full)
		net__tx(net);
	return false;
}

/* Queues one writev per available TX chain (submitted together). */
static void net__tx(struct virtio_net *net)
{
	uint64_t now = clock__monotonic_ns();
	struct virtq *q;
	int ret;

	virtio_mmio__lock(&net->transport);
	for (;;) {
		struct net_tx_slot *slot = net->tx_free;

		q = virtio_mmio__queue(&net->transport, VIRTIO_NET_TX_QUEUE);
		if (!q || !slot || net->tx_timer >= 0)
			break;
		virtq__set_notification(q, false);
		ret = virtq__pop(q, &slot->chain);
		if (ret < 0) {
			virtio_mmio__needs_reset(&net->transport, q->error);
			break;
		}
		if (ret == 0) {
			if (virtq__set_notification(q, true))
				continue;
			break;
		}
		if (!virtio_net__tx_valid(&slot->chain)) {
			net->tx_dropped++;
			net->errors++;
			if (virtq__push(q, slot->chain.head, 0) == 0)
				virtio_mmio__signal_used(&net->transport, VIRTIO_NET_TX_QUEUE);
			continue;
		}
		if (!rate_limiter__consume(&net->tx_limiter, slot->chain.readable_bytes, now)) {
			virtq__unpop(q);
			net->tx_rate_limited++;
			net->tx_timer = event_loop__timer(
				net->loop,
				rate_limiter__wait_ns(&net->tx_limiter, slot->chain.readable_bytes, now),
				on_tx_timer, net);
			break;
		}
		slot->generation = virtio_mmio__generation(&net->transport);
		ret = event_loop__writev(net->loop, net->tap_fd, slot->chain.iov,
					 (int)slot->chain.iov_count, -1, on_tx_done, slot);
		if (ret < 0) {
			/* The loop's pool is full: drop the frame, as a full NIC would. */
			net->tx_dropped++;
			if (virtq__push(q, slot->chain.head, 0) == 0)
				virtio_mmio__signal_used(&net->transport, VIRTIO_NET_TX_QUEUE);
			continue;
		}
		net->tx_free = slot->next_free;
		net->tx_in_flight++;
	}
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
	(void)opaque; /* lock held; in-flight I/O is dropped by generation */
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
	net->tap_fd = options->tap_fd >= 0 ? options->tap_fd :
					     virtio_net__open_tap(options->tap, error, error_size);
	if (net->tap_fd < 0)
		goto err;
	/* A caller's fd too: pending reads must wait, not fail (see open_tap). */
	ret = fcntl(net->tap_fd, F_GETFL);
	if (ret >= 0 && (ret & O_NONBLOCK))
		fcntl(net->tap_fd, F_SETFL, ret & ~O_NONBLOCK);
	rate_limiter__init(&net->rx_limiter);
	rate_limiter__init(&net->tx_limiter);
	if ((options->rx_rate_limiter &&
	     rate_limiter__configure(&net->rx_limiter, options->rx_rate_limiter,
				     clock__monotonic_ns(), error, error_size) < 0) ||
	    (options->tx_rate_limiter &&
	     rate_limiter__configure(&net->tx_limiter, options->tx_rate_limiter,
				     clock__monotonic_ns(), error, error_size) < 0))
		goto err;
	for (unsigned i = NET_TX_IN_FLIGHT; i-- > 0;) {
		net->tx_slots[i].net = net;
		net->tx_slots[i].next_free = net->tx_free;
		net->tx_free = &net->tx_slots[i];
	}
	/* 5.1.4: mac[6], le16 status, le16 max_virtqueue_pairs */
	memcpy(net->config, options->mac, 6);
	net->config[6] = VIRTIO_NET_S_LINK_UP;
	net->config[8] = 1;

	memset(&device, 0, sizeof(device));
	device.device_id = 1;
	device.features = (1ull << VIRTIO_NET_F_MAC) | (1ull << VIRTIO_NET_F_STATUS);
	device.queue_count = 2;
	device.queue_max_size = options->queue_size ? options->queue_size : NET_DEFAULT_QUEUE_SIZE;
	device.config = net->config;
	device.config_size = sizeof(net->config);
	device.opaque = net;
	device.notify = net__notify;
	device.reset = net__reset;
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
	/* Reads parked on the tap would wait for traffic forever: cancel
	 * them. The device stops now and is freed by the last callback. */
	net->closing = true;
	if (net->rx_timer >= 0)
		event_loop__cancel(net->loop, net->rx_timer);
	if (net->tx_timer >= 0)
		event_loop__cancel(net->loop, net->tx_timer);
	for (unsigned i = 0; i < NET_RX_READS; i++)
		if (net->rx_slots[i].in_use)
			event_loop__cancel_io(net->loop, &net->rx_slots[i]);
	virtio_mmio__stop(&net->transport);
	/* Our fd goes now (pending requests hold their own reference), so the
	 * tap disappears as soon as they are gone. */
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
	if (net->rx_timer >= 0) {
		event_loop__cancel(net->loop, net->rx_timer);
		net->rx_timer = -1;
	}
	if (net->tx_timer >= 0) {
		event_loop__cancel(net->loop, net->tx_timer);
		net->tx_timer = -1;
	}
	net__notify(net);
	return 0;
}

json_t *virtio_net__metrics(struct virtio_net *net)
{
	json_t *metrics;

	virtio_mmio__lock(&net->transport);
	metrics = json_pack(
		"{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o}", "type",
		"net", "rx_packets", (json_int_t)net->rx_packets, "rx_bytes",
		(json_int_t)net->rx_bytes, "tx_packets", (json_int_t)net->tx_packets, "tx_bytes",
		(json_int_t)net->tx_bytes, "rx_dropped", (json_int_t)net->rx_dropped, "tx_dropped",
		(json_int_t)net->tx_dropped, "errors", (json_int_t)net->errors, "rate_limited",
		(json_int_t)(net->rx_rate_limited + net->tx_rate_limited), "needs_reset",
		(json_int_t)net->transport.needs_reset_count, "notifications",
		(json_int_t)net->transport.notifications, "interrupts",
		(json_int_t)net->transport.interrupts, "tx_in_flight", (json_int_t)net->tx_in_flight,
		"rx_rate_limiter", rate_limiter__to_json(&net->rx_limiter), "tx_rate_limiter",
		rate_limiter__to_json(&net->tx_limiter));
	virtio_mmio__unlock(&net->transport);
	return metrics;
}

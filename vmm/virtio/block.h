/* block: virtio-blk (virtio 1.x 5.2) over a raw image file, its I/O
 * driven by the event loop's io_uring: IN -> readv, OUT -> writev at
 * sector * 512, FLUSH -> fdatasync, DISCARD / WRITE_ZEROES -> fallocate
 * (punch hole / zero range), GET_ID answered at once. All requests popped
 * in one notification are queued before the loop submits, so they go to
 * the kernel in one io_uring_enter.
 *
 * Buffered images (no O_DIRECT): writes of up to 128 KiB are copied into
 * the page cache on the loop thread with pwritev() instead: most file
 * systems cannot take a buffered write non-blocking, so io_uring would
 * hand each one to a worker thread, a cross-thread hop per write. The
 * cost is that the loop thread itself may wait when the kernel throttles
 * dirty pages; that only slows this VM, the one writing. Larger writes and
 * every O_DIRECT write stay on io_uring.
 *
 * O_DIRECT images: guest RAM is registered with io_uring once (fixed
 * buffers, pages pinned at creation), and every request whose data is one
 * buffer goes out as READ_FIXED/WRITE_FIXED instead of readv/writev, which
 * would pin and unpin the pages on each I/O. Several buffers, or a failed
 * registration (logged), fall back to readv/writev. Metrics:
 * fixed_buffers, fixed_requests.
 *
 * Read-only images offer VIRTIO_BLK_F_RO and fail writes with IOERR. One
 * request queue.
 *
 * Copy-on-write (options.base): the disk is the base image as modified by
 * the overlay file at options.path (overlay.h); its requests are served
 * synchronously on the loop thread through the page cache (no O_DIRECT,
 * no fixed buffers). Metrics add overlay_clusters. */
#ifndef WARREN_VMM_VIRTIO_BLOCK_H
#define WARREN_VMM_VIRTIO_BLOCK_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "virtio_mmio.h"
#include "virtqueue.h"

/* 5.2.3 feature bits */
#define VIRTIO_BLK_F_SEG_MAX	  2
#define VIRTIO_BLK_F_RO		  5
#define VIRTIO_BLK_F_FLUSH	  9
#define VIRTIO_BLK_F_DISCARD	  13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* 5.2.6 request types and status */
#define VIRTIO_BLK_T_IN		  0
#define VIRTIO_BLK_T_OUT	  1
#define VIRTIO_BLK_T_FLUSH	  4
#define VIRTIO_BLK_T_GET_ID	  8
#define VIRTIO_BLK_T_DISCARD	  11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK		  0
#define VIRTIO_BLK_S_IOERR	  1
#define VIRTIO_BLK_S_UNSUPP	  2

#define VIRTIO_BLK_SECTOR_SIZE	    512
#define VIRTIO_BLK_ID_BYTES	    20
#define VIRTIO_BLK_CONFIG_SIZE	    60
#define VIRTIO_BLK_MAX_ZERO_SECTORS 0x400000u /* per DISCARD/WRITE_ZEROES segment */

/* One request as parsed from its chain (5.2.6). data[] points into the
 * chain's iovecs (trimmed in place: header and status byte removed). */
struct virtio_blk_request {
	uint32_t type;
	uint64_t sector;
	struct iovec *data;
	unsigned data_count;
	uint64_t data_bytes;
	uint8_t *status; /* NULL when the chain has no writable byte */
};

/* Splits chain into header, data and status byte. 0, or -EINVAL for a
 * malformed request (header shorter than 16 bytes, no status byte,
 * device-writable data for a write / readable data for a read). Modifies
 * chain->iov in place. Pure: no I/O (fuzz target). */
int virtio_blk__parse(struct virtq_chain *chain, struct virtio_blk_request *request);

/* Checks a parsed request against the disk: VIRTIO_BLK_S_OK to go on,
 * IOERR for out-of-range sectors, partial sectors, writes to a read-only
 * disk; UNSUPP for unknown types. */
uint8_t virtio_blk__check(const struct virtio_blk_request *request, uint64_t capacity_sectors,
			  bool read_only, uint64_t features);

struct virtio_blk_options {
	const char *path; /* the image; with base: the overlay (created if missing) */
	const char *base; /* read-only base image: copy-on-write (overlay.h); NULL: none */
	bool read_only;
	bool direct;		    /* O_DIRECT (guest buffers must be 512-aligned) */
	const char *id;		    /* GET_ID serial, <= 20 bytes (default: file name) */
	const json_t *rate_limiter; /* see rate_limiter.h; NULL: unlimited */
	uint16_t queue_size;	    /* QueueNumMax; 0: 128 */
};

struct virtio_blk;

/* Opens the image and sets up the device on loop (call before the loop
 * runs or on its thread). notify_fd/irq_fd: see virtio_mmio__init; the
 * device does not close them. NULL with a reason in error on failure. */
struct virtio_blk *virtio_blk__create(const struct guest_memory *memory, struct event_loop *loop,
				      const struct virtio_blk_options *options, int notify_fd,
				      int irq_fd, char *error, size_t error_size);
/* Loop thread, no I/O in flight (after the vCPUs stopped and the loop
 * drained, or before it ran). */
void virtio_blk__destroy(struct virtio_blk *blk);
/* The transport, for mmio_bus__register(..., &virtio_mmio_bus_ops, it). */
struct virtio_mmio *virtio_blk__transport(struct virtio_blk *blk);
/* Loop thread: replaces the rate limiter (JSON of rate_limiter.h). */
int virtio_blk__set_rate_limit(struct virtio_blk *blk, const json_t *config, char *error,
			       size_t error_size);
/* Loop thread: new object {requests, read_bytes, write_bytes, reads, writes,
 * flushes, errors, rate_limited, needs_reset, notifications, interrupts,
 * in_flight, capacity_sectors, read_only}. */
json_t *virtio_blk__metrics(struct virtio_blk *blk);

#endif

/* block: virtio-blk device (virtio 1.x 5.2). See block.h. */
#include "block.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "event_loop.h"
#include "iov.h"
#include "overlay.h"
#include "rate_limiter.h"
#include "warren/clock.h"
#include "warren/log.h"

#define BLOCK_DEFAULT_QUEUE_SIZE 128
#define BLOCK_INLINE_WRITE_MAX	 (128u * 1024u) /* larger writes go through io_uring */

struct blk_request_slot {
	struct virtio_blk *blk;
	struct virtio_blk_request request;
	uint32_t generation;
	struct blk_request_slot *next_free;
	struct virtq_chain chain; /* last: large */
};

struct virtio_blk {
	struct virtio_mmio transport;
	struct event_loop *loop;
	int fd;
	struct blk_overlay *overlay; /* copy-on-write over a base image, or NULL */
	bool read_only;
	bool inline_writes; /* buffered image: small writes straight into the page cache */
	bool fixed_buffers; /* O_DIRECT with guest RAM registered: one-segment I/O uses it */
	uint64_t capacity_sectors;
	uint8_t config[VIRTIO_BLK_CONFIG_SIZE];
	char id[VIRTIO_BLK_ID_BYTES];
	uint16_t queue_size;

	struct blk_request_slot *slots;
	struct blk_request_slot *free_slots;
	unsigned in_flight;

	struct rate_limiter limiter;
	int64_t throttle_timer; /* -1 when not waiting */
	bool loop_full;		/* the event loop refused an operation: retry */
	bool closing;		/* destroyed: freed when the last callback ran */
	bool retry_deferred;

	/* metrics (loop thread) */
	uint64_t requests, reads, writes, flushes, read_bytes, write_bytes, errors;
	uint64_t rate_limited, fixed_requests;
};

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* 5.2.6: struct virtio_blk_req { le32 type; le32 reserved; le64 sector;
 * u8 data[]; u8 status; } — header device-readable, status writable. */
int virtio_blk__parse(struct virtq_chain *chain, struct virtio_blk_request *request)
{
	uint8_t header[16];
	struct iovec *last = NULL;
	unsigned first;

	memset(request, 0, sizeof(*request));
	if (chain->writable_bytes >= 1) {
		last = &chain->iov[chain->iov_count - 1];
		while (last->iov_len == 0 && last > &chain->iov[chain->readable_count])
			last--;
		request->status = (uint8_t *)last->iov_base + last->iov_len - 1;
	}
	if (chain->readable_bytes < sizeof(header) || !request->status || !last)
		return -EINVAL;
	iov__read_front(chain->iov, chain->readable_count, header, sizeof(header));
	request->type = (uint32_t)get_le(header, 4);
	request->sector = get_le(header + 8, 8);

	switch (request->type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_GET_ID:
		/* Data: the writable buffers minus the status byte. */
		if (chain->readable_bytes != sizeof(header))
			return -EINVAL;
		last->iov_len--;
		request->data = &chain->iov[chain->readable_count];
		/* Up to the buffer holding the status byte; without it when
		 * that was all it held (the usual separate status descriptor). */
		request->data_count = (unsigned)(last - request->data) + (last->iov_len ? 1 : 0);
		request->data_bytes = chain->writable_bytes - 1;
		break;
	default:
		/* OUT, FLUSH, DISCARD, WRITE_ZEROES, unknown: data readable. */
		if (chain->writable_bytes != 1)
			return -EINVAL;
		first = iov__skip_front(chain->iov, chain->readable_count, sizeof(header));
		request->data = &chain->iov[first];
		request->data_count = chain->readable_count - first;
		request->data_bytes = chain->readable_bytes - sizeof(header);
		break;
	}
	return 0;
}

uint8_t virtio_blk__check(const struct virtio_blk_request *request, uint64_t capacity_sectors,
			  bool read_only, uint64_t features)
{
	uint64_t sectors, end;

	switch (request->type) {
	case VIRTIO_BLK_T_OUT:
		if (read_only)
			return VIRTIO_BLK_S_IOERR;
		/* fall through */
	case VIRTIO_BLK_T_IN:
		if (request->data_bytes % VIRTIO_BLK_SECTOR_SIZE)
			return VIRTIO_BLK_S_IOERR;
		sectors = request->data_bytes / VIRTIO_BLK_SECTOR_SIZE;
		if (__builtin_add_overflow(request->sector, sectors, &end) ||
		    end > capacity_sectors)
			return VIRTIO_BLK_S_IOERR;
		return VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_FLUSH:
		return (features & (1ull << VIRTIO_BLK_F_FLUSH)) ? VIRTIO_BLK_S_OK
								 : VIRTIO_BLK_S_UNSUPP;
	case VIRTIO_BLK_T_GET_ID:
		return VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES: {
		unsigned bit = request->type == VIRTIO_BLK_T_DISCARD ? VIRTIO_BLK_F_DISCARD
								     : VIRTIO_BLK_F_WRITE_ZEROES;

		if (!(features & (1ull << bit)))
			return VIRTIO_BLK_S_UNSUPP;
		if (read_only)
			return VIRTIO_BLK_S_IOERR;
		/* We offer one segment of 16 bytes (5.2.6.1 max_*_seg = 1). */
		if (request->data_bytes != 16)
			return VIRTIO_BLK_S_UNSUPP;
		return VIRTIO_BLK_S_OK;
	}
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
}

static void blk__process(struct virtio_blk *blk);
static void blk__retry(void *opaque);

static void blk__free(struct virtio_blk *blk)
{
	virtio_mmio__uninit(&blk->transport);
	blk_overlay__close(blk->overlay);
	if (blk->fd >= 0)
		close(blk->fd);
	free(blk->slots);
	free(blk);
}

/* After destroy: frees the device once no callback of ours is pending. */
static bool blk__closing(struct virtio_blk *blk)
{
	if (!blk->closing)
		return false;
	if (blk->in_flight == 0 && blk->throttle_timer < 0 && !blk->retry_deferred)
		blk__free(blk);
	return true;
}

static void slot__free(struct virtio_blk *blk, struct blk_request_slot *slot)
{
	slot->next_free = blk->free_slots;
	blk->free_slots = slot;
	blk->in_flight--;
}

/* Lock held. Posts the status byte and the used element (if the device
 * was not reset since the request was popped). */
static void blk__complete_locked(struct virtio_blk *blk, struct blk_request_slot *slot,
				 uint8_t status, uint32_t written)
{
	struct virtq *q;

	if (status != VIRTIO_BLK_S_OK)
		blk->errors++;
	if (slot->generation != virtio_mmio__generation(&blk->transport))
		return; /* reset meanwhile: the ring is gone */
	q = &blk->transport.queues[0];
	if (slot->request.status)
		*slot->request.status = status;
	if (virtq__push(q, slot->chain.head, written) == 0)
		virtio_mmio__signal_used(&blk->transport, 0);
}

static bool on_io_done(void *opaque, int32_t result)
{
	struct blk_request_slot *slot = opaque;
	struct virtio_blk *blk = slot->blk;
	uint8_t status = VIRTIO_BLK_S_OK;
	uint32_t written = 1;
	bool starved;

	switch (slot->request.type) {
	case VIRTIO_BLK_T_IN:
		if (result < 0 || (uint64_t)result != slot->request.data_bytes) {
			status = VIRTIO_BLK_S_IOERR;
		} else {
			blk->read_bytes += (uint64_t)result;
			written = (uint32_t)slot->request.data_bytes + 1;
		}
		break;
	case VIRTIO_BLK_T_OUT:
		if (result < 0 || (uint64_t)result != slot->request.data_bytes)
			status = VIRTIO_BLK_S_IOERR;
		else
			blk->write_bytes += (uint64_t)result;
		break;
	default:
		if (result < 0)
			status = VIRTIO_BLK_S_IOERR;
		break;
	}
	virtio_mmio__lock(&blk->transport);
	starved = blk->free_slots == NULL || blk->loop_full;
	blk->loop_full = false;
	blk__complete_locked(blk, slot, status, written);
	slot__free(blk, slot);
	virtio_mmio__unlock(&blk->transport);
	if (blk__closing(blk))
		return false;
	if (starved)
		blk__process(blk);
	return false;
}

/* 5.2.6.2 GET_ID: up to 20 bytes, NUL-padded when shorter. */
static uint32_t blk__get_id(struct virtio_blk *blk, struct virtio_blk_request *request)
{
	size_t n =
	    request->data_bytes < VIRTIO_BLK_ID_BYTES ? request->data_bytes : VIRTIO_BLK_ID_BYTES;

	iov__write_front(request->data, request->data_count, (const uint8_t *)blk->id, n);
	return (uint32_t)n + 1;
}

/* 5.2.6: DISCARD / WRITE_ZEROES segment { le64 sector; le32 num_sectors;
 * le32 flags }. Queues the fallocate (punch hole / zero range) on the
 * loop's io_uring. Returns 1 with *status when the request is answered at
 * once (a bad segment, an empty range), else the event loop's answer (0
 * queued, or -errno). */
static int blk__zero(struct virtio_blk *blk, struct blk_request_slot *slot, uint8_t *status)
{
	struct virtio_blk_request *request = &slot->request;
	uint8_t segment[16];
	uint64_t sector, sectors, end;
	uint32_t flags;
	int mode;

	iov__read_front(request->data, request->data_count, segment, sizeof(segment));
	sector = get_le(segment, 8);
	sectors = get_le(segment + 8, 4);
	flags = (uint32_t)get_le(segment + 12, 4);
	*status = VIRTIO_BLK_S_IOERR;
	if ((flags & ~1u) || sectors > VIRTIO_BLK_MAX_ZERO_SECTORS ||
	    __builtin_add_overflow(sector, sectors, &end) || end > blk->capacity_sectors)
		return 1;
	*status = VIRTIO_BLK_S_OK;
	if (!sectors)
		return 1;
	if (request->type == VIRTIO_BLK_T_DISCARD || (flags & 1))
		mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
	else
		mode = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
	return event_loop__fallocate(blk->loop, blk->fd, mode,
				     (int64_t)(sector * VIRTIO_BLK_SECTOR_SIZE),
				     (int64_t)(sectors * VIRTIO_BLK_SECTOR_SIZE), on_io_done, slot);
}

static bool on_throttle_timer(void *opaque, int32_t result)
{
	struct virtio_blk *blk = opaque;

	(void)result;
	blk->throttle_timer = -1;
	if (!blk__closing(blk))
		blk__process(blk); /* expired, or cancelled by a new limit */
	return false;
}

/* Queues the data of an IN (read) or OUT request at byte `offset`: one
 * READ/WRITE_FIXED when the data is a single buffer of registered guest
 * RAM (O_DIRECT images), else readv/writev. The event loop's answer. */
static int blk__queue_data(struct virtio_blk *blk, struct blk_request_slot *slot, bool write,
			   int64_t offset)
{
	struct virtio_blk_request *request = &slot->request;
	int index = -1, ret;

	if (blk->fixed_buffers && request->data_count == 1 && request->data_bytes <= UINT32_MAX)
		index = event_loop__fixed_index(blk->loop, request->data[0].iov_base,
						request->data_bytes);
	if (index < 0)
		return write
			   ? event_loop__writev(blk->loop, blk->fd, request->data,
						(int)request->data_count, offset, on_io_done, slot)
			   : event_loop__readv(blk->loop, blk->fd, request->data,
					       (int)request->data_count, offset, on_io_done, slot);
	ret = write ? event_loop__write_fixed(blk->loop, blk->fd, request->data[0].iov_base,
					      (uint32_t)request->data_bytes, offset, index,
					      on_io_done, slot)
		    : event_loop__read_fixed(blk->loop, blk->fd, request->data[0].iov_base,
					     (uint32_t)request->data_bytes, offset, index,
					     on_io_done, slot);
	if (ret == 0)
		blk->fixed_requests++;
	return ret;
}

/* A copy-on-write request, served at once (overlay.h). Status byte. */
static uint8_t blk__overlay_request(struct virtio_blk *blk, struct virtio_blk_request *request,
				    uint32_t *written)
{
	uint64_t offset = request->sector * VIRTIO_BLK_SECTOR_SIZE; /* range checked */
	uint8_t segment[16];
	uint64_t sector, sectors, end;
	int result = 0;

	*written = 1;
	switch (request->type) {
	case VIRTIO_BLK_T_IN:
		blk->reads++;
		result = blk_overlay__read(blk->overlay, request->data, request->data_count, offset,
					   request->data_bytes);
		if (result == 0) {
			blk->read_bytes += request->data_bytes;
			*written = (uint32_t)request->data_bytes + 1;
		}
		break;
	case VIRTIO_BLK_T_OUT:
		blk->writes++;
		result = blk_overlay__write(blk->overlay, request->data, request->data_count,
					    offset, request->data_bytes);
		if (result == 0)
			blk->write_bytes += request->data_bytes;
		break;
	case VIRTIO_BLK_T_FLUSH:
		blk->flushes++;
		result = blk_overlay__flush(blk->overlay);
		break;
	default: /* DISCARD, WRITE_ZEROES (checked): one segment, as blk__zero */
		iov__read_front(request->data, request->data_count, segment, sizeof(segment));
		sector = get_le(segment, 8);
		sectors = get_le(segment + 8, 4);
		if ((get_le(segment + 12, 4) & ~1u) || sectors > VIRTIO_BLK_MAX_ZERO_SECTORS ||
		    __builtin_add_overflow(sector, sectors, &end) || end > blk->capacity_sectors)
			return VIRTIO_BLK_S_IOERR;
		if (sectors)
			result = blk_overlay__zero(blk->overlay, sector * VIRTIO_BLK_SECTOR_SIZE,
						   sectors * VIRTIO_BLK_SECTOR_SIZE,
						   request->type == VIRTIO_BLK_T_DISCARD);
		break;
	}
	return result == 0 ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
}

enum blk_start {
	BLK_STARTED,   /* I/O queued: the slot belongs to it until on_io_done */
	BLK_DONE,      /* completed synchronously: free the slot */
	BLK_THROTTLED, /* the chain was given back: free the slot, stop popping */
};

/* Lock held. Starts one popped request. */
static enum blk_start blk__start(struct virtio_blk *blk, struct virtq *q,
				 struct blk_request_slot *slot)
{
	struct virtio_blk_request *request = &slot->request;
	uint64_t features = blk->transport.driver_features;
	uint64_t now = clock__monotonic_ns();
	int64_t offset;
	uint8_t status;
	int ret = 0;

	if (virtio_blk__parse(&slot->chain, request) < 0) {
		blk__complete_locked(blk, slot, VIRTIO_BLK_S_IOERR, request->status ? 1 : 0);
		return BLK_DONE;
	}
	status = virtio_blk__check(request, blk->capacity_sectors, blk->read_only, features);
	if (status != VIRTIO_BLK_S_OK) {
		blk__complete_locked(blk, slot, status, 1);
		return BLK_DONE;
	}
	if (!rate_limiter__consume(&blk->limiter, request->data_bytes, now)) {
		virtq__unpop(q);
		blk->rate_limited++;
		if (blk->throttle_timer < 0)
			blk->throttle_timer = event_loop__timer(
			    blk->loop,
			    rate_limiter__wait_ns(&blk->limiter, request->data_bytes, now),
			    on_throttle_timer, blk);
		return BLK_THROTTLED;
	}
	blk->requests++;
	if (blk->overlay && request->type != VIRTIO_BLK_T_GET_ID) {
		uint32_t written;

		status = blk__overlay_request(blk, request, &written);
		blk__complete_locked(blk, slot, status, written);
		return BLK_DONE;
	}
	offset = (int64_t)(request->sector * VIRTIO_BLK_SECTOR_SIZE); /* range checked above */
	switch (request->type) {
	case VIRTIO_BLK_T_IN:
		blk->reads++;
		ret = blk__queue_data(blk, slot, false, offset);
		break;
	case VIRTIO_BLK_T_OUT:
		blk->writes++;
		if (blk->inline_writes && request->data_bytes <= BLOCK_INLINE_WRITE_MAX) {
			/* A page-cache copy: cheaper here than a hop to an
			 * io_uring worker (buffered writes to most file systems
			 * cannot be issued non-blocking, so io_uring punts them). */
			ssize_t written = pwritev(blk->fd, request->data, (int)request->data_count,
						  (off_t)offset);

			if (written == (ssize_t)request->data_bytes) {
				blk->write_bytes += (uint64_t)written;
				blk__complete_locked(blk, slot, VIRTIO_BLK_S_OK, 1);
			} else {
				blk__complete_locked(blk, slot, VIRTIO_BLK_S_IOERR, 1);
			}
			return BLK_DONE;
		}
		ret = blk__queue_data(blk, slot, true, offset);
		break;
	case VIRTIO_BLK_T_FLUSH:
		blk->flushes++;
		ret = event_loop__fsync(blk->loop, blk->fd, true, on_io_done, slot);
		break;
	case VIRTIO_BLK_T_GET_ID:
		blk__complete_locked(blk, slot, VIRTIO_BLK_S_OK, blk__get_id(blk, request));
		return BLK_DONE;
	default: /* DISCARD, WRITE_ZEROES (checked above) */
		ret = blk__zero(blk, slot, &status);
		if (ret > 0) {
			blk__complete_locked(blk, slot, status, 1);
			return BLK_DONE;
		}
		break;
	}
	if (ret == -EBUSY) {
		/* The loop's operation pool is full: give the chain back and
		 * retry after the next completion (or soon, if none of ours is
		 * in flight). Not an error for the guest. */
		virtq__unpop(q);
		blk->requests--;
		blk->loop_full = true;
		return BLK_THROTTLED;
	}
	if (ret < 0) {
		blk__complete_locked(blk, slot, VIRTIO_BLK_S_IOERR, 1);
		return BLK_DONE;
	}
	return BLK_STARTED;
}

/* Pops and starts every available request (batched into one submission). */
static void blk__process(struct virtio_blk *blk)
{
	struct virtq *q;

	virtio_mmio__lock(&blk->transport);
	for (;;) {
		struct blk_request_slot *slot;
		enum blk_start result;
		int ret;

		q = virtio_mmio__queue(&blk->transport, 0);
		if (!q || blk->throttle_timer >= 0 || !blk->free_slots)
			break;
		virtq__set_notification(q, false);
		slot = blk->free_slots;
		ret = virtq__pop(q, &slot->chain);
		if (ret < 0) {
			virtio_mmio__needs_reset(&blk->transport, q->error);
			break;
		}
		if (ret == 0) {
			if (virtq__set_notification(q, true))
				continue;
			break;
		}
		blk->free_slots = slot->next_free;
		blk->in_flight++;
		slot->generation = virtio_mmio__generation(&blk->transport);
		result = blk__start(blk, q, slot);
		if (result != BLK_STARTED)
			slot__free(blk, slot);
		if (result == BLK_THROTTLED)
			break;
	}
	if (blk->loop_full && blk->in_flight == 0 && !blk->retry_deferred &&
	    event_loop__defer(blk->loop, blk__retry, blk) == 0)
		blk->retry_deferred = true;
	virtio_mmio__unlock(&blk->transport);
}

static void blk__retry(void *opaque)
{
	struct virtio_blk *blk = opaque;

	blk->retry_deferred = false;
	blk->loop_full = false;
	if (blk__closing(blk))
		return;
	blk__process(blk);
}

static void blk__notify(void *opaque)
{
	blk__process(opaque);
}

static void blk__reset(void *opaque)
{
	/* Lock held. In-flight requests finish against the old generation and
	 * are dropped; nothing else to undo. */
	(void)opaque;
}

static void blk__driver_ok(void *opaque)
{
	(void)opaque;
}

struct virtio_blk *virtio_blk__create(const struct guest_memory *memory, struct event_loop *loop,
				      const struct virtio_blk_options *options, int notify_fd,
				      int irq_fd, char *error, size_t error_size)
{
	struct virtio_blk *blk;
	struct virtio_mmio_device device;
	struct stat st;
	uint64_t bytes;
	const char *name;
	int flags, ret;

	if (!options->path || !*options->path) {
		snprintf(error, error_size, "block: path is required");
		return NULL;
	}
	blk = calloc(1, sizeof(*blk));
	if (!blk) {
		snprintf(error, error_size, "block: out of memory");
		return NULL;
	}
	blk->fd = -1;
	blk->throttle_timer = -1;
	blk->loop = loop;
	blk->read_only = options->read_only;
	blk->inline_writes = !options->direct;
	blk->queue_size = options->queue_size ? options->queue_size : BLOCK_DEFAULT_QUEUE_SIZE;
	if (blk->queue_size > VIRTQ_MAX_SIZE || (blk->queue_size & (blk->queue_size - 1))) {
		snprintf(error, error_size, "block: queue_size must be a power of two <= %d",
			 VIRTQ_MAX_SIZE);
		goto err;
	}
	if (options->base) {
		if (options->direct || options->read_only) {
			snprintf(error, error_size,
				 "block: a base image needs a writable buffered overlay");
			goto err;
		}
		blk->overlay =
		    blk_overlay__open(options->base, options->path, &bytes, error, error_size);
		if (!blk->overlay)
			goto err;
		blk->inline_writes = false;
		goto opened;
	}
	flags =
	    (options->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | (options->direct ? O_DIRECT : 0);
	blk->fd = open(options->path, flags);
	if (blk->fd < 0) {
		snprintf(error, error_size, "block: cannot open %s: %s", options->path,
			 strerror(errno));
		goto err;
	}
	if (fstat(blk->fd, &st) < 0) {
		snprintf(error, error_size, "block: stat %s: %s", options->path, strerror(errno));
		goto err;
	}
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(blk->fd, BLKGETSIZE64, &bytes) < 0) {
			snprintf(error, error_size, "block: size of %s: %s", options->path,
				 strerror(errno));
			goto err;
		}
	} else if (S_ISREG(st.st_mode)) {
		bytes = (uint64_t)st.st_size;
	} else {
		snprintf(error, error_size, "block: %s is not a file or block device",
			 options->path);
		goto err;
	}
opened:
	blk->capacity_sectors = bytes / VIRTIO_BLK_SECTOR_SIZE;
	name = options->id ? options->id : strrchr(options->path, '/');
	name = name ? (name[0] == '/' ? name + 1 : name) : options->path;
	/* NUL-padded, not terminated when 20 bytes long (5.2.6.2) */
	memcpy(blk->id, name, strnlen(name, sizeof(blk->id)));

	if (options->direct && loop && memory) {
		/* Pin guest RAM once instead of per request (O_DIRECT pins the
		 * pages it reads into or writes from on every I/O). */
		ret = event_loop__register_memory(loop, memory->host, memory->size);
		blk->fixed_buffers = ret == 0 || ret == -EEXIST;
		if (!blk->fixed_buffers)
			log_warn("block: cannot register guest memory for O_DIRECT (%s): "
				 "using readv/writev",
				 strerror(-ret));
	}
	rate_limiter__init(&blk->limiter);
	if (options->rate_limiter &&
	    rate_limiter__configure(&blk->limiter, options->rate_limiter, clock__monotonic_ns(),
				    error, error_size) < 0)
		goto err;

	blk->slots = calloc(blk->queue_size, sizeof(*blk->slots));
	if (!blk->slots) {
		snprintf(error, error_size, "block: out of memory");
		goto err;
	}
	for (unsigned i = blk->queue_size; i-- > 0;) {
		blk->slots[i].blk = blk;
		blk->slots[i].next_free = blk->free_slots;
		blk->free_slots = &blk->slots[i];
	}
	blk->in_flight = 0;

	/* 5.2.4 config layout */
	put_le64(blk->config + 0, blk->capacity_sectors);
	put_le32(blk->config + 12, VIRTQ_MAX_CHAIN - 2); /* seg_max: header and status */
	put_le32(blk->config + 20, VIRTIO_BLK_SECTOR_SIZE);
	put_le16(blk->config + 34, 1); /* num_queues */
	put_le32(blk->config + 36, VIRTIO_BLK_MAX_ZERO_SECTORS);
	put_le32(blk->config + 40, 1);
	put_le32(blk->config + 44, 1);
	put_le32(blk->config + 48, VIRTIO_BLK_MAX_ZERO_SECTORS);
	put_le32(blk->config + 52, 1);
	blk->config[56] = 1; /* write_zeroes_may_unmap */

	memset(&device, 0, sizeof(device));
	device.device_id = 2;
	device.features = (1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_BLK_F_FLUSH);
	if (options->read_only)
		device.features |= 1ull << VIRTIO_BLK_F_RO;
	else
		device.features |=
		    (1ull << VIRTIO_BLK_F_DISCARD) | (1ull << VIRTIO_BLK_F_WRITE_ZEROES);
	device.queue_count = 1;
	device.queue_max_size = blk->queue_size;
	device.config = blk->config;
	device.config_size = sizeof(blk->config);
	device.opaque = blk;
	device.notify = blk__notify;
	device.reset = blk__reset;
	device.driver_ok = blk__driver_ok;
	device.polled_queues = 1u << 0;
	ret = virtio_mmio__init(&blk->transport, memory, loop, &device, notify_fd, irq_fd);
	if (ret < 0) {
		snprintf(error, error_size, "block: transport: %s", strerror(-ret));
		goto err;
	}
	return blk;
err:
	if (blk->fd >= 0)
		close(blk->fd);
	blk_overlay__close(blk->overlay);
	free(blk->slots);
	free(blk);
	return NULL;
}

void virtio_blk__destroy(struct virtio_blk *blk)
{
	if (!blk)
		return;
	/* I/O still in flight completes into its callbacks later: the device
	 * stops now and is freed by the last of them. */
	blk->closing = true;
	if (blk->throttle_timer >= 0)
		event_loop__cancel(blk->loop, blk->throttle_timer);
	virtio_mmio__stop(&blk->transport);
	blk__closing(blk);
}

struct virtio_mmio *virtio_blk__transport(struct virtio_blk *blk)
{
	return &blk->transport;
}

int virtio_blk__set_rate_limit(struct virtio_blk *blk, const json_t *config, char *error,
			       size_t error_size)
{
	int ret = rate_limiter__configure(&blk->limiter, config, clock__monotonic_ns(), error,
					  error_size);

	if (ret < 0)
		return ret;
	/* A throttled queue resumes from its timer's -ECANCELED callback (the
	 * timer id stays set until then, so destroy waits for it). */
	if (blk->throttle_timer < 0 || event_loop__cancel(blk->loop, blk->throttle_timer) < 0)
		blk__process(blk);
	return 0;
}

json_t *virtio_blk__metrics(struct virtio_blk *blk)
{
	json_t *metrics;

	virtio_mmio__lock(&blk->transport);
	metrics = json_pack(
	    "{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:b, s:o}", "type",
	    "block", "requests", (json_int_t)blk->requests, "reads", (json_int_t)blk->reads,
	    "writes", (json_int_t)blk->writes, "flushes", (json_int_t)blk->flushes, "read_bytes",
	    (json_int_t)blk->read_bytes, "write_bytes", (json_int_t)blk->write_bytes, "errors",
	    (json_int_t)blk->errors, "rate_limited", (json_int_t)blk->rate_limited, "in_flight",
	    (json_int_t)blk->in_flight, "capacity_sectors", (json_int_t)blk->capacity_sectors,
	    "read_only", blk->read_only, "inline_writes", blk->inline_writes, "rate_limiter",
	    rate_limiter__to_json(&blk->limiter));
	json_object_set_new(metrics, "fixed_buffers", json_boolean(blk->fixed_buffers));
	json_object_set_new(metrics, "fixed_requests",
			    json_integer((json_int_t)blk->fixed_requests));
	if (blk->overlay)
		json_object_set_new(metrics, "overlay_clusters",
				    json_integer((json_int_t)blk_overlay__clusters(blk->overlay)));
	virtio_mmio__add_metrics(&blk->transport, metrics);
	virtio_mmio__unlock(&blk->transport);
	return metrics;
}

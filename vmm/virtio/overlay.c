/* overlay: copy-on-write disk over a read-only base. See overlay.h. */
#include "overlay.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define OVERLAY_MAGIC	  "WRRNOVL1"
#define OVERLAY_MAX_SLICE 1024 /* iovecs of one run: a chain's 256 + splits */

struct blk_overlay {
	int base_fd;
	int fd;
	uint64_t capacity;
	uint64_t clusters;
	uint64_t data_end; /* where the header starts */
	uint8_t *bitmap;   /* clusters bits */
	size_t bitmap_bytes;
	uint64_t held; /* bits set */
	bool dirty;    /* bitmap changed since written back */
};

static bool bit_get(const struct blk_overlay *o, uint64_t cluster)
{
	return o->bitmap[cluster / 8] & (1u << (cluster % 8));
}

static void bit_set(struct blk_overlay *o, uint64_t cluster)
{
	if (!bit_get(o, cluster)) {
		o->bitmap[cluster / 8] |= (uint8_t)(1u << (cluster % 8));
		o->held++;
		o->dirty = true;
	}
}

static int full_pwrite(int fd, const void *data, size_t bytes, uint64_t offset)
{
	const uint8_t *p = data;

	while (bytes > 0) {
		ssize_t n = pwrite(fd, p, bytes, (off_t)offset);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		bytes -= (size_t)n;
		offset += (uint64_t)n;
	}
	return 0;
}

static int full_pread(int fd, void *data, size_t bytes, uint64_t offset)
{
	uint8_t *p = data;

	while (bytes > 0) {
		ssize_t n = pread(fd, p, bytes, (off_t)offset);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0) { /* past the end of a file: zeros */
			memset(p, 0, bytes);
			return 0;
		}
		p += n;
		bytes -= (size_t)n;
		offset += (uint64_t)n;
	}
	return 0;
}

/* out[] = the part [skip, skip + length) of iov[0..count). Returns the
 * number of entries, or -EINVAL when out[] is too small or iov too short. */
static int iov_slice(const struct iovec *iov, unsigned count, uint64_t skip, uint64_t length,
		     struct iovec *out, unsigned out_max)
{
	unsigned n = 0;

	for (unsigned i = 0; i < count && length > 0; i++) {
		uint64_t len = iov[i].iov_len;

		if (skip >= len) {
			skip -= len;
			continue;
		}
		if (n == out_max)
			return -EINVAL;
		out[n].iov_base = (uint8_t *)iov[i].iov_base + skip;
		out[n].iov_len = (size_t)(len - skip < length ? len - skip : length);
		length -= out[n].iov_len;
		skip = 0;
		n++;
	}
	return length == 0 ? (int)n : -EINVAL;
}

/* preadv/pwritev of a whole slice, short transfers continued. */
static int transfer(int fd, bool write, const struct iovec *iov, unsigned count, uint64_t skip,
		    uint64_t length, uint64_t offset)
{
	struct iovec slice[OVERLAY_MAX_SLICE];

	while (length > 0) {
		int n = iov_slice(iov, count, skip, length, slice, OVERLAY_MAX_SLICE);
		ssize_t done;

		if (n < 0)
			return n;
		done = write ? pwritev(fd, slice, n, (off_t)offset)
			     : preadv(fd, slice, n, (off_t)offset);
		if (done < 0 && errno == EINTR)
			continue;
		if (done < 0)
			return -errno;
		if (done == 0) {
			if (write)
				return -EIO;
			/* past the end (a base shorter than a cluster multiple): zeros */
			for (int i = 0; i < n; i++)
				memset(slice[i].iov_base, 0, slice[i].iov_len);
			return 0;
		}
		skip += (uint64_t)done;
		length -= (uint64_t)done;
		offset += (uint64_t)done;
	}
	return 0;
}

static int overlay__write_bitmap(struct blk_overlay *o)
{
	int result;

	if (!o->dirty)
		return 0;
	result = full_pwrite(o->fd, o->bitmap, o->bitmap_bytes, o->data_end + OVERLAY_HEADER_SIZE);
	if (result == 0)
		o->dirty = false;
	return result;
}

/* A fresh overlay gets its header; an existing one must match. */
static int overlay__load(struct blk_overlay *o, char *error, size_t error_size)
{
	uint8_t header[20];
	struct stat st;
	uint64_t capacity = 0;
	uint32_t cluster = 0;
	int result;

	if (fstat(o->fd, &st) != 0)
		return -errno;
	if (st.st_size == 0) {
		memset(header, 0, sizeof(header));
		memcpy(header, OVERLAY_MAGIC, 8);
		memcpy(header + 8, &o->capacity, 8); /* x86: little endian */
		cluster = OVERLAY_CLUSTER;
		memcpy(header + 16, &cluster, 4);
		if ((result = full_pwrite(o->fd, header, sizeof(header), o->data_end)) ||
		    ftruncate(o->fd, (off_t)(o->data_end + OVERLAY_HEADER_SIZE + o->bitmap_bytes)))
			return result ? result : -errno;
		return 0;
	}
	if ((result = full_pread(o->fd, header, sizeof(header), o->data_end)))
		return result;
	memcpy(&capacity, header + 8, 8);
	memcpy(&cluster, header + 16, 4);
	if (memcmp(header, OVERLAY_MAGIC, 8) || capacity != o->capacity ||
	    cluster != OVERLAY_CLUSTER) {
		snprintf(error, error_size, "block: overlay does not belong to this base");
		return -EINVAL;
	}
	if ((result =
		 full_pread(o->fd, o->bitmap, o->bitmap_bytes, o->data_end + OVERLAY_HEADER_SIZE)))
		return result;
	for (uint64_t i = 0; i < o->clusters; i++)
		o->held += bit_get(o, i);
	if (o->clusters % 8) /* bits past the last cluster stay clear */
		o->bitmap[o->bitmap_bytes - 1] &= (uint8_t)((1u << (o->clusters % 8)) - 1);
	return 0;
}

struct blk_overlay *blk_overlay__open(const char *base, const char *path, uint64_t *capacity_bytes,
				      char *error, size_t error_size)
{
	struct blk_overlay *o = calloc(1, sizeof(*o));
	struct stat st;
	int result;

	if (o == NULL) {
		snprintf(error, error_size, "block: out of memory");
		return NULL;
	}
	o->fd = -1;
	o->base_fd = open(base, O_RDONLY | O_CLOEXEC);
	if (o->base_fd < 0 || fstat(o->base_fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(error, error_size, "block: base %s: %s", base,
			 o->base_fd < 0 || errno ? strerror(errno) : "not a file");
		goto err;
	}
	o->capacity = (uint64_t)st.st_size;
	o->clusters = (o->capacity + OVERLAY_CLUSTER - 1) / OVERLAY_CLUSTER;
	o->data_end = o->clusters * OVERLAY_CLUSTER;
	o->bitmap_bytes = (size_t)((o->clusters + 7) / 8);
	o->bitmap = calloc(1, o->bitmap_bytes ? o->bitmap_bytes : 1);
	o->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (o->bitmap == NULL || o->fd < 0) {
		snprintf(error, error_size, "block: overlay %s: %s", path, strerror(errno));
		goto err;
	}
	error[0] = 0;
	result = overlay__load(o, error, error_size);
	if (result) {
		if (!error[0])
			snprintf(error, error_size, "block: overlay %s: %s", path,
				 strerror(-result));
		goto err;
	}
	*capacity_bytes = o->capacity;
	return o;
err:
	if (o->base_fd >= 0)
		close(o->base_fd);
	if (o->fd >= 0)
		close(o->fd);
	free(o->bitmap);
	free(o);
	return NULL;
}

void blk_overlay__close(struct blk_overlay *overlay)
{
	if (overlay == NULL)
		return;
	overlay__write_bitmap(overlay);
	close(overlay->base_fd);
	close(overlay->fd);
	free(overlay->bitmap);
	free(overlay);
}

int blk_overlay__read(struct blk_overlay *o, const struct iovec *iov, unsigned count,
		      uint64_t offset, uint64_t bytes)
{
	uint64_t done = 0;

	/* Runs of clusters with the same home, one preadv each. */
	while (done < bytes) {
		uint64_t at = offset + done, cluster = at / OVERLAY_CLUSTER;
		bool in_overlay = bit_get(o, cluster);
		uint64_t end = (cluster + 1) * OVERLAY_CLUSTER;
		int result;

		while (end < offset + bytes && bit_get(o, end / OVERLAY_CLUSTER) == in_overlay)
			end += OVERLAY_CLUSTER;
		if (end > offset + bytes)
			end = offset + bytes;
		result = transfer(in_overlay ? o->fd : o->base_fd, false, iov, count, done,
				  end - at, at);
		if (result)
			return result;
		done = end - offset;
	}
	return 0;
}

/* Zeros at [offset, offset + length) of fd. */
static int write_zeros(int fd, uint64_t offset, uint64_t length)
{
	static const uint8_t zeros[OVERLAY_CLUSTER];
	int result = 0;

	while (length > 0 && result == 0) {
		size_t n = length < sizeof(zeros) ? (size_t)length : sizeof(zeros);

		result = full_pwrite(fd, zeros, n, offset);
		offset += n;
		length -= n;
	}
	return result;
}

/* Copies `cluster` up from the base, with the guest's bytes for disk
 * offsets [from, to) inside it taken from iov at iov_skip (zeros when iov
 * is NULL). */
static int overlay__copy_up(struct blk_overlay *o, uint64_t cluster, uint64_t from, uint64_t to,
			    const struct iovec *iov, unsigned count, uint64_t iov_skip)
{
	uint8_t buffer[OVERLAY_CLUSTER];
	uint64_t start = cluster * OVERLAY_CLUSTER;
	uint8_t *p = buffer + (from - start);
	int result;

	if ((result = full_pread(o->base_fd, buffer, OVERLAY_CLUSTER, start)))
		return result;
	if (iov == NULL) {
		memset(p, 0, (size_t)(to - from));
	} else {
		struct iovec slice[OVERLAY_MAX_SLICE];
		int n = iov_slice(iov, count, iov_skip, to - from, slice, OVERLAY_MAX_SLICE);

		if (n < 0)
			return n;
		for (int i = 0; i < n; i++) {
			memcpy(p, slice[i].iov_base, slice[i].iov_len);
			p += slice[i].iov_len;
		}
	}
	if ((result = full_pwrite(o->fd, buffer, OVERLAY_CLUSTER, start)))
		return result;
	bit_set(o, cluster);
	return 0;
}

/* Writes iov (or zeros when iov is NULL) at [offset, offset + bytes):
 * partial clusters not yet in the overlay are copied up, the rest goes
 * straight in, contiguous whole clusters in one pwritev. */
static int overlay__write(struct blk_overlay *o, const struct iovec *iov, unsigned count,
			  uint64_t offset, uint64_t bytes)
{
	uint64_t done = 0;

	while (done < bytes) {
		uint64_t at = offset + done, cluster = at / OVERLAY_CLUSTER;
		uint64_t cluster_end = (cluster + 1) * OVERLAY_CLUSTER;
		uint64_t end = cluster_end < offset + bytes ? cluster_end : offset + bytes;
		int result;

		if (!bit_get(o, cluster) && (at % OVERLAY_CLUSTER || end != cluster_end)) {
			result = overlay__copy_up(o, cluster, at, end, iov, count, done);
		} else {
			if (end == cluster_end) /* whole clusters follow: take them all */
				while (end + OVERLAY_CLUSTER <= offset + bytes)
					end += OVERLAY_CLUSTER;
			result = iov ? transfer(o->fd, true, iov, count, done, end - at, at)
				     : write_zeros(o->fd, at, end - at);
			for (uint64_t c = cluster; result == 0 && c * OVERLAY_CLUSTER < end; c++)
				bit_set(o, c);
		}
		if (result)
			return result;
		done = end - offset;
	}
	return 0;
}

int blk_overlay__write(struct blk_overlay *o, const struct iovec *iov, unsigned count,
		       uint64_t offset, uint64_t bytes)
{
	return overlay__write(o, iov, count, offset, bytes);
}

int blk_overlay__zero(struct blk_overlay *o, uint64_t offset, uint64_t bytes, bool discard)
{
	uint64_t first = (offset + OVERLAY_CLUSTER - 1) / OVERLAY_CLUSTER;
	uint64_t last = (offset + bytes) / OVERLAY_CLUSTER; /* exclusive */
	int result;

	if (first < last) {
		/* Whole clusters: out of the overlay file, marked: they read
		 * as zeros (the base's data is gone for the guest). */
		if (fallocate(o->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)(first * OVERLAY_CLUSTER),
			      (off_t)((last - first) * OVERLAY_CLUSTER)) != 0)
			return -errno;
		for (uint64_t c = first; c < last; c++)
			bit_set(o, c);
	}
	if (discard)
		return 0; /* partial clusters keep their data: allowed for DISCARD */
	if (first >= last)
		return overlay__write(o, NULL, 0, offset, bytes);
	if (offset < first * OVERLAY_CLUSTER &&
	    (result = overlay__write(o, NULL, 0, offset, first * OVERLAY_CLUSTER - offset)))
		return result;
	if (last * OVERLAY_CLUSTER < offset + bytes)
		return overlay__write(o, NULL, 0, last * OVERLAY_CLUSTER,
				      offset + bytes - last * OVERLAY_CLUSTER);
	return 0;
}

int blk_overlay__flush(struct blk_overlay *o)
{
	int result = overlay__write_bitmap(o);

	if (result == 0 && fdatasync(o->fd) != 0)
		result = -errno;
	return result;
}

uint64_t blk_overlay__clusters(const struct blk_overlay *o)
{
	return o->held;
}

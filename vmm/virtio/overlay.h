/* overlay: a copy-on-write disk for virtio-blk: reads of clusters the
 * guest never wrote come from a read-only base image (the template, shared
 * by every sandbox), writes go to a per-sandbox overlay file.
 *
 * Overlay file layout (sparse; only written clusters take space):
 *   [0, data_end)          cluster i at byte i * OVERLAY_CLUSTER, as in the
 *                          base (data_end = capacity rounded up to a cluster)
 *   [data_end, +4096)      header: "WRRNOVL1", le64 capacity, le32 cluster
 *   [data_end + 4096, ...) bitmap, one bit per cluster: 1 = in the overlay
 * An empty file is initialised on open; an existing one must match the
 * base's size. The bitmap lives in memory and is written back on flush
 * and close (the guest's FLUSH makes data and bitmap durable together).
 *
 * Writes that cover a cluster partly copy it up first (the rest of the
 * cluster from the base). WRITE_ZEROES of whole clusters punches them out
 * of the overlay and marks them (they read as zeros); DISCARD does the
 * same for whole clusters and ignores partial ones. All synchronous (the
 * caller is the device's loop thread, page cache I/O). Not thread-safe. */
#ifndef WARREN_VMM_VIRTIO_OVERLAY_H
#define WARREN_VMM_VIRTIO_OVERLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define OVERLAY_CLUSTER	    4096u
#define OVERLAY_HEADER_SIZE 4096u

struct blk_overlay;

/* Opens base read-only and path read-write (created if missing). The
 * disk's size is the base's (*capacity_bytes). NULL with a reason in
 * error. */
struct blk_overlay *blk_overlay__open(const char *base, const char *path, uint64_t *capacity_bytes,
				      char *error, size_t error_size);
/* Writes the bitmap back, closes both files, frees. */
void blk_overlay__close(struct blk_overlay *overlay);

/* Reads/writes `bytes` at byte `offset` of the disk from/into iov[0..count)
 * (which holds at least `bytes`). The range must be inside the disk (the
 * caller checks). 0 or -errno. */
int blk_overlay__read(struct blk_overlay *overlay, const struct iovec *iov, unsigned count,
		      uint64_t offset, uint64_t bytes);
int blk_overlay__write(struct blk_overlay *overlay, const struct iovec *iov, unsigned count,
		       uint64_t offset, uint64_t bytes);
/* Zeroes (discard false) or discards [offset, offset + bytes). 0 or -errno. */
int blk_overlay__zero(struct blk_overlay *overlay, uint64_t offset, uint64_t bytes, bool discard);
/* Bitmap written back, then fdatasync of the overlay. 0 or -errno. */
int blk_overlay__flush(struct blk_overlay *overlay);

/* Clusters held by the overlay (metrics). */
uint64_t blk_overlay__clusters(const struct blk_overlay *overlay);

#endif

/* jail_disk: the quota of a jail's writable layer. The overlay's upper and
 * work dirs live on a per-sandbox ext4 image (sparse: it takes host disk
 * only as the sandbox writes) mounted by the host on <state dir>/disk, so
 * filling it ends with ENOSPC inside and never reaches the host's free
 * space. Works on every supported kernel (loop + ext4 + overlayfs with
 * userxattr, 6.1 on); workers/jail/README.md, "Writable-layer quota". */
#ifndef WARREN_JAIL_DISK_H
#define WARREN_JAIL_DISK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Makes dir/disk.img of size bytes, a sparse copy of a formatted ext4
 * image cached per size in cache_dir (made on first use: ~4 MiB of
 * metadata for 10 GiB, no journal), attaches it to a free loop device
 * (detached by the kernel once unmounted) and mounts it nosuid,nodev on
 * dir/disk, its root and upper/ and work/ in it owned by owner. 0, or
 * -errno with err filled; nothing left mounted on failure (the image file
 * lies in the caller's state dir). */
int jail_disk__create(const char *dir, const char *cache_dir, uint64_t size, uid_t owner,
		      char *err, size_t err_len);

/* Unmounts dir/disk if something is mounted there (idempotent; the loop
 * device goes with the last user of the mount). 0 or -errno. */
int jail_disk__remove(const char *dir);

#endif

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
int jail_disk__create(const char *dir, const char *cache_dir, uint64_t size, uid_t owner, char *err,
		      size_t err_len);

/* Unmounts dir/disk and the volumes' dir/vol<N> if something is mounted
 * there (idempotent; the loop device goes with the last user of the
 * mount). 0 or -errno. */
int jail_disk__remove(const char *dir);

/* ---- volumes (docs/volumes.md) ---- */

/* Makes image (absent) a sparse ext4 image of size bytes with a journal,
 * its root directory 0777 and owned by 0:0 (the sandbox's root once
 * idmapped), no lost+found. Made under a private name and renamed, so a
 * crash never leaves half an image. 0 (also when it exists) or -errno. */
int jail_disk__volume_make(const char *image, uint64_t size, char *err, size_t err_len);

/* Mounts image read-write (nosuid, nodev, noatime) on mount_point (made
 * if absent) through an autocleared loop device, with an exclusive flock
 * on the image held by the loop device for as long as the filesystem is
 * mounted anywhere: a second mount of the same image on this host waits
 * up to wait_ms for the first to go, then fails with -EBUSY. 0 or -errno
 * with err filled; nothing left mounted on failure. */
int jail_disk__volume_mount(const char *image, const char *mount_point, int wait_ms, char *err,
			    size_t err_len);

#endif

/* jail_userns: the user namespace of a jail. Every sandbox gets its own
 * range of 65536 host uids/gids (uid 0..65535 inside), reserved on the
 * host while the sandbox lives so no two live sandboxes share one, and an
 * idmapped mount of the template rootfs so the shared template files show
 * up owned by the sandbox's ids without being copied.
 * workers/jail/README.md, "User namespace". */
#ifndef WARREN_JAIL_USERNS_H
#define WARREN_JAIL_USERNS_H

#include <stdint.h>
#include <sys/types.h>

#define JAIL_USERNS_SIZE 65536u

/* Reserves a free range for owner (a unique string: the sandbox's state
 * dir path) as a symlink <jail_uid_dir>/<index> -> owner, made atomically.
 * *host_base gets the first host uid of the range. 0 or -errno (-ENOSPC:
 * every range is in use). */
int jail_userns__reserve(const char *owner, uint32_t *index, uint32_t *host_base);

/* Gives back index when owner still holds it. */
void jail_userns__release(uint32_t index, const char *owner);

/* Gives back every range owner holds (reconciliation without a handle). */
void jail_userns__release_owner(const char *owner);

/* Writes /proc/<pid>/{uid_map,gid_map} = "0 host_base 65536" (setgroups
 * stays allowed: the agent switches users inside). 0 or -errno. */
int jail_userns__write_maps(pid_t pid, uint32_t host_base);

/* A detached, read-only, nosuid, nodev clone of the tree at rootfs,
 * idmapped with the user namespace of pid (open_tree + mount_setattr).
 * Returns the mount fd (O_CLOEXEC), or -errno (-ENOSYS / -EINVAL when the
 * kernel or the filesystem has no idmapped mounts). */
int jail_userns__idmapped_tree(const char *rootfs, pid_t pid);
/* The same for a volume mounted at path: a detached, idmapped clone of it,
 * read-write (nosuid, nodev). Its fd or -errno. */
int jail_userns__idmapped_volume(const char *path, pid_t pid);

#endif

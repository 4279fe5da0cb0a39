/* jail_userns: uid ranges, id maps and the idmapped template. jail_userns.h. */
#include "jail_userns.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "warren/jail.h"
#include "warren/dirs.h"

#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#define ATTR_RDONLY 0x00000001
#define ATTR_NOSUID 0x00000002
#define ATTR_NODEV  0x00000004
#define ATTR_IDMAP  0x00100000

/* struct mount_attr of linux/mount.h (not included: it clashes with
 * sys/mount.h on some libcs). */
struct idmap_attr {
	uint64_t attr_set;
	uint64_t attr_clr;
	uint64_t propagation;
	uint64_t userns_fd;
};

/* Host uid 2^30 + index * 65536, index < 16384: far above the ranges
 * distributions hand out in /etc/subuid (from 100000) and below 2^31. */
#define DEFAULT_FIRST_UID 1073741824LL
#define RANGES		  16384u

static const char *reservation_dir(void)
{
	return jail__host_settings()->uid_dir;
}

static uint32_t first_uid(void)
{
	long long first = jail__host_settings()->first_uid;

	if (first < 65536 || first + (long long)RANGES * JAIL_USERNS_SIZE > 4294967294LL)
		first = DEFAULT_FIRST_UID;
	return (uint32_t)first;
}

/* FNV-1a: where the search for a free range starts, so that concurrent
 * starts rarely race for the same entry (the symlink decides anyway). */
static uint32_t start_index(const char *owner)
{
	uint32_t hash = 2166136261u;

	for (const char *p = owner; *p; p++)
		hash = (hash ^ (unsigned char)*p) * 16777619u;
	return hash % RANGES;
}

int jail_userns__reserve(const char *owner, uint32_t *index, uint32_t *host_base)
{
	const char *dir = reservation_dir();
	char path[PATH_MAX];
	uint32_t first = start_index(owner);
	int ret = dirs__make(dir, 0700);

	if (ret)
		return ret;
	for (uint32_t i = 0; i < RANGES; i++) {
		uint32_t candidate = (first + i) % RANGES;

		snprintf(path, sizeof(path), "%s/%u", dir, candidate);
		if (symlink(owner, path) == 0) {
			*index = candidate;
			*host_base = first_uid() + candidate * JAIL_USERNS_SIZE;
			return 0;
		}
		if (errno != EEXIST)
			return -errno;
	}
	return -ENOSPC;
}

static void release_path(const char *path, const char *owner)
{
	char target[PATH_MAX];
	ssize_t n = readlink(path, target, sizeof(target) - 1);

	if (n <= 0)
		return;
	target[n] = 0;
	if (!strcmp(target, owner))
		unlink(path);
}

void jail_userns__release(uint32_t index, const char *owner)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%u", reservation_dir(), index);
	release_path(path, owner);
}

void jail_userns__release_owner(const char *owner)
{
	const char *dir = reservation_dir();
	char path[PATH_MAX];
	struct dirent *entry;
	DIR *d = opendir(dir);

	if (!d)
		return;
	while ((entry = readdir(d))) {
		if (entry->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, entry->d_name);
		release_path(path, owner);
	}
	closedir(d);
}

static int write_proc_file(pid_t pid, const char *file, const char *value)
{
	char path[64];
	size_t len = strlen(value);
	int fd, ret = 0;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, value, len) != (ssize_t)len)
		ret = -errno;
	close(fd);
	return ret;
}

int jail_userns__write_maps(pid_t pid, uint32_t host_base)
{
	char map[64];
	int ret;

	snprintf(map, sizeof(map), "0 %u %u\n", host_base, JAIL_USERNS_SIZE);
	ret = write_proc_file(pid, "uid_map", map);
	if (!ret)
		ret = write_proc_file(pid, "gid_map", map);
	return ret;
}

static int jail_userns__idmapped(const char *rootfs, pid_t pid, uint64_t flags);

int jail_userns__idmapped_tree(const char *rootfs, pid_t pid)
{
	return jail_userns__idmapped(rootfs, pid, ATTR_RDONLY);
}

int jail_userns__idmapped_volume(const char *path, pid_t pid)
{
	return jail_userns__idmapped(path, pid, 0);
}

/* A detached recursive clone of rootfs, idmapped through pid's user
 * namespace, nosuid, nodev and flags. Its fd or -errno. */
static int jail_userns__idmapped(const char *rootfs, pid_t pid, uint64_t flags)
{
	struct idmap_attr attr = {.attr_set = ATTR_IDMAP | ATTR_NOSUID | ATTR_NODEV | flags};
	char path[64];
	int userns_fd, tree_fd, ret;

	snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
	userns_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (userns_fd < 0)
		return -errno;
	tree_fd = (int)syscall(SYS_open_tree, AT_FDCWD, rootfs,
			       OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
	if (tree_fd < 0) {
		ret = -errno;
		goto out;
	}
	attr.userns_fd = (uint64_t)userns_fd;
	if (syscall(SYS_mount_setattr, tree_fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr,
		    sizeof(attr))) {
		ret = -errno;
		close(tree_fd);
		goto out;
	}
	ret = tree_fd;
out:
	close(userns_fd);
	return ret;
}

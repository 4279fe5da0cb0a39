/* jail: the VMM's own jail (see jail.h). */
#include "jail.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <linux/capability.h>

#include "net.h"
#include "warren/json_util.h"

#define JAIL_KVM_MAJOR 10
#define JAIL_KVM_MINOR 232

int jail__parse_id(const char *text, unsigned *out)
{
	char *end;
	unsigned long long value;

	errno = 0;
	value = strtoull(text, &end, 10);
	if (errno || end == text || *end || text[0] == '-' || value == 0 || value >= 0xffffffffull)
		return -EINVAL;
	*out = (unsigned)value;
	return 0;
}

/* Threads of this process (from /proc/self/status), or -1. */
static int jail__threads(void)
{
	char status[4096], *line;
	FILE *file = fopen("/proc/self/status", "re");
	size_t length;

	if (file == NULL)
		return -1;
	length = fread(status, 1, sizeof(status) - 1, file);
	fclose(file);
	status[length] = 0;
	line = strstr(status, "\nThreads:\t");
	return line ? atoi(line + 10) : -1;
}

/* `path` inside root: *inner = the path as seen from the jail. Both are
 * taken literally (no "..", no symlink resolution: the worker names them). */
static bool jail__inside(const char *root, const char *path, const char **inner)
{
	size_t length = strlen(root);

	if (strstr(path, "/../") || strstr(path, "/./") || strncmp(path, root, length) != 0 ||
	    path[length] != '/' || path[length + 1] == 0)
		return false;
	*inner = path + length;
	return true;
}

bool jail__path_inside(const char *root, const char *path, const char **inner)
{
	return jail__inside(root, path, inner);
}

/* Rewrites *path (owned, malloc'ed) to its place inside the jail. */
static int jail__rewrite(const char *root, char **path, const char *what, char *error,
			 size_t error_size)
{
	const char *inner;
	char *copy;

	if (*path == NULL || strcmp(*path, "-") == 0)
		return 0;
	if (!jail__inside(root, *path, &inner)) {
		snprintf(error, error_size, "jail: the %s %s is not inside %s", what, *path, root);
		return -EINVAL;
	}
	copy = strdup(inner);
	if (copy == NULL)
		return -ENOMEM;
	free(*path);
	*path = copy;
	return 0;
}

/* Bind-mounts host file `source` read-only at root/name (an empty file is
 * created as the mount point). The jail's user must be able to read it:
 * said now rather than as an EACCES when the VM starts. */
static int jail__bind_file(const struct jail_options *options, const char *source, const char *name,
			   char *error, size_t error_size)
{
	const char *root = options->root;
	char target[4096];
	int fd, flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
	struct stat st;

	if (stat(source, &st) != 0) {
		snprintf(error, error_size, "jail: %s: %s", source, strerror(errno));
		return -errno;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(error, error_size, "jail: %s is not a regular file", source);
		return -EINVAL;
	}
	if (!((st.st_uid == options->uid && (st.st_mode & S_IRUSR)) ||
	      (st.st_gid == options->gid && (st.st_mode & S_IRGRP)) || (st.st_mode & S_IROTH))) {
		snprintf(error, error_size, "jail: %s (mode %04o) is not readable by uid %u",
			 source, (unsigned)(st.st_mode & 07777), (unsigned)options->uid);
		return -EACCES;
	}

	if ((size_t)snprintf(target, sizeof(target), "%s/%s", root, name) >= sizeof(target))
		return -ENAMETOOLONG;
	fd = open(target, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0400);
	if (fd < 0 || close(fd) != 0 || mount(source, target, NULL, MS_BIND, NULL) != 0 ||
	    mount(NULL, target, NULL, flags, NULL) != 0) {
		int saved = errno;

		snprintf(error, error_size, "jail: bind %s at %s: %s", source, target,
			 strerror(saved));
		return -saved;
	}
	return 0;
}

/* A copy-on-write disk's read-only base: bound read-only at /base<N>
 * unless it is inside the jail already. */
static int jail__base(const struct jail_options *options, json_t *device, size_t index, char *error,
		      size_t error_size)
{
	const char *base = json_util__string(device, "base", NULL), *inner;
	char name[32];
	int result;

	if (jail__inside(options->root, base, &inner)) {
		json_object_set_new(device, "base", json_string(inner));
		return 0;
	}
	snprintf(name, sizeof(name), "base%zu", index);
	if ((result = jail__bind_file(options, base, name, error, error_size)))
		return result;
	snprintf(name, sizeof(name), "/base%zu", index);
	json_object_set_new(device, "base", json_string(name));
	return 0;
}

/* Block and net devices: disks inside the jail (writable ones handed to
 * the jail's user) or bound read-only; taps opened now. */
static int jail__devices(const struct jail_options *options, json_t *devices, char *error,
			 size_t error_size)
{
	size_t index;
	json_t *device;

	json_array_foreach(devices, index, device)
	{
		const char *type = json_util__string(device, "type", "");
		const char *path = json_util__string(device, "path", NULL);
		const char *inner;
		char name[32];
		int result;

		if (strcmp(type, "net") == 0 && json_util__string(device, "tap", NULL)) {
			int fd = virtio_net__open_tap(json_util__string(device, "tap", NULL), error,
						      error_size);

			if (fd < 0)
				return fd;
			json_object_del(device, "tap");
			json_object_set_new(device, "tap_fd", json_integer(fd));
		}
		if (strcmp(type, "block") != 0 || path == NULL)
			continue;
		if (json_util__string(device, "base", NULL) &&
		    (result = jail__base(options, device, index, error, error_size)))
			return result;
		if (jail__inside(options->root, path, &inner)) {
			if (!json_util__bool(device, "read_only", false) &&
			    chown(path, options->uid, options->gid) != 0) {
				snprintf(error, error_size, "jail: chown %s: %s", path,
					 strerror(errno));
				return -errno;
			}
			json_object_set_new(device, "path", json_string(inner));
			continue;
		}
		if (!json_util__bool(device, "read_only", false)) {
			snprintf(error, error_size, "jail: writable disk %s must be inside %s",
				 path, options->root);
			return -EINVAL;
		}
		snprintf(name, sizeof(name), "disk%zu", index);
		if ((result = jail__bind_file(options, path, name, error, error_size)))
			return result;
		snprintf(name, sizeof(name), "/disk%zu", index);
		json_object_set_new(device, "path", json_string(name));
	}
	return 0;
}

/* root/dev/kvm: a node of our own, for the jail's user only. */
static int jail__kvm_node(const struct jail_options *options, char *error, size_t error_size)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/dev", options->root);
	if (mkdir(path, 0711) != 0 && errno != EEXIST)
		goto fail;
	snprintf(path, sizeof(path), "%s/dev/kvm", options->root);
	unlink(path);
	if (mknod(path, S_IFCHR | 0600, makedev(JAIL_KVM_MAJOR, JAIL_KVM_MINOR)) != 0 ||
	    chown(path, options->uid, options->gid) != 0)
		goto fail;
	return 0;
fail:
	snprintf(error, error_size, "jail: %s: %s", path, strerror(errno));
	return -errno;
}

/* Our own mount namespace, every mount private, root bound onto itself. */
static int jail__pivot(const char *root, char *error, size_t error_size)
{
	const char *step = "unshare(CLONE_NEWNS)";

	if (unshare(CLONE_NEWNS) != 0)
		goto fail;
	step = "making mounts private";
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		goto fail;
	step = "binding the root";
	if (mount(root, root, NULL, MS_BIND | MS_REC, NULL) != 0 ||
	    mount(NULL, root, NULL, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NOEXEC, NULL) != 0)
		goto fail;
	return 0;
fail:
	snprintf(error, error_size, "jail: %s: %s", step, strerror(errno));
	return -errno;
}

static int jail__switch_root(const char *root, char *error, size_t error_size)
{
	const char *step = "chdir";

	if (chdir(root) != 0)
		goto fail;
	step = "pivot_root";
	/* The old root stacks under the new one at "."; detach it. */
	if (syscall(SYS_pivot_root, ".", ".") != 0)
		goto fail;
	step = "detaching the old root";
	if (umount2(".", MNT_DETACH) != 0 || chdir("/") != 0)
		goto fail;
	return 0;
fail:
	snprintf(error, error_size, "jail: %s %s: %s", step, root, strerror(errno));
	return -errno;
}

/* To uid:gid with no groups; checks that no capability is left. */
static int jail__drop_user(const struct jail_options *options, char *error, size_t error_size)
{
	struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
	uid_t ruid, euid, suid;

	if (setgroups(0, NULL) != 0 || setresgid(options->gid, options->gid, options->gid) != 0 ||
	    setresuid(options->uid, options->uid, options->uid) != 0) {
		snprintf(error, error_size, "jail: to uid %u gid %u: %s", (unsigned)options->uid,
			 (unsigned)options->gid, strerror(errno));
		return -errno;
	}
	memset(data, 0, sizeof(data));
	if (getresuid(&ruid, &euid, &suid) != 0 || ruid != options->uid || euid != options->uid ||
	    suid != options->uid || syscall(SYS_capget, &header, data) != 0 || data[0].effective ||
	    data[0].permitted || data[1].effective || data[1].permitted) {
		snprintf(error, error_size, "jail: still privileged after the uid change");
		return -EPERM;
	}
	/* Not dumpable: no core dump of guest memory, no ptrace or /proc
	 * access by other processes of the same uid. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
		snprintf(error, error_size, "jail: PR_SET_DUMPABLE: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

int jail__enter(const struct jail_options *options, struct vm_config *config,
		const char **api_socket, char *error, size_t error_size)
{
	const char *root = options->root;
	static char socket_inside[4096];
	struct stat st;
	int result;

	if (root == NULL || root[0] != '/' || strlen(root) < 2 || root[strlen(root) - 1] == '/' ||
	    stat(root, &st) != 0 || !S_ISDIR(st.st_mode) || options->uid == 0 ||
	    options->gid == 0) {
		snprintf(error, error_size,
			 "jail: needs an absolute directory and a uid/gid other than 0");
		return -EINVAL;
	}
	if (jail__threads() != 1) {
		snprintf(error, error_size, "jail: must be entered while single-threaded");
		return -EINVAL;
	}
	if (*api_socket) {
		const char *inner;

		if (!jail__inside(root, *api_socket, &inner)) {
			snprintf(error, error_size, "jail: the control socket must be inside %s",
				 root);
			return -EINVAL;
		}
		snprintf(socket_inside, sizeof(socket_inside), "%s", inner);
	}
	if ((result = jail__rewrite(root, &config->console, "console", error, error_size)))
		return result;
	/* From here every mount is in our own namespace. */
	if ((result = jail__pivot(root, error, error_size)))
		return result;
	if (config->devices &&
	    (result = jail__devices(options, config->devices, error, error_size)))
		return result;
	if (config->kernel &&
	    (result = jail__bind_file(options, config->kernel, "kernel", error, error_size)))
		return result;
	if (config->initrd &&
	    (result = jail__bind_file(options, config->initrd, "initrd", error, error_size)))
		return result;
	if ((result = jail__kvm_node(options, error, error_size)))
		return result;
	if (chown(root, options->uid, options->gid) != 0 || chmod(root, 0700) != 0) {
		snprintf(error, error_size, "jail: chown %s: %s", root, strerror(errno));
		return -errno;
	}
	if ((result = jail__switch_root(root, error, error_size)))
		return result;
	if (config->kernel) {
		free(config->kernel);
		config->kernel = strdup("/kernel");
	}
	if (config->initrd) {
		free(config->initrd);
		config->initrd = strdup("/initrd");
	}
	if (*api_socket)
		*api_socket = socket_inside;
	return jail__drop_user(options, error, error_size);
}

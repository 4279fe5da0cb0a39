/* jail: the jail runtime (warren/jail.h). The host side: state dir,
 * cgroups, the clone into new namespaces and the exec of
 * warren-jail-init, which finishes the jail from the inside (init.c).
 * workers/jail/README.md, "Start sequence". */
#include "warren/jail.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <linux/magic.h>
#include <linux/sched.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <semaphore.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include "warren/jail_cgroup.h"
#include "jail_disk.h"
#include "jail_policy.h"
#include "jail_userns.h"
#include "warren/binary_path.h"
#include "warren/clock.h"
#include "warren/fds.h"
#include "warren/log.h"

#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif

#define START_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS	 5000

extern char **environ;

struct jail {
	char id[JAIL_ID_MAX + 1];
	char dir[PATH_MAX]; /* state_dir/<id> */
	struct jail_cgroup cgroup;
	pid_t pid; /* host pid of warren-jail-init */
	int pidfd;
	bool exited;
	int wait_status;
	bool stopped;
	bool uid_reserved;
	uint32_t uid_index; /* the reserved host uid range (jail_userns.h) */
	uint32_t host_base; /* host uid/gid of root inside */
};

static bool id_valid(const char *id)
{
	size_t len = id ? strlen(id) : 0;

	if (len == 0 || len > JAIL_ID_MAX || id[0] == '-')
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = id[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return false;
	}
	return true;
}

/* Overlay options are comma-separated and ':' separates lower layers. */
static bool path_valid(const char *path)
{
	return path && path[0] == '/' && strlen(path) < PATH_MAX - 128 && !strpbrk(path, ",:\\\n");
}

/* A volume's path inside the sandbox: absolute, segments of [A-Za-z0-9._-]
 * that are never "." or "..", not "/", at most 255 characters. */
static bool volume_path_valid(const char *path)
{
	size_t len = path ? strlen(path) : 0;

	if (len < 2 || len > 255 || path[0] != '/' || path[len - 1] == '/')
		return false;
	for (const char *seg = path + 1; *seg;) {
		size_t n = strspn(seg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				       "0123456789._-");

		if (n == 0 || (seg[n] != '/' && seg[n] != '\0') || !strncmp(seg, ".", n) ||
		    !strncmp(seg, "..", n))
			return false;
		seg += n;
		if (*seg == '/')
			seg++;
	}
	return true;
}

static size_t vector_length(const char *const *vector, size_t limit)
{
	size_t n = 0;

	while (vector[n] && n < limit)
		n++;
	return n;
}

int jail__volume_make(const char *image, uint64_t size, char *err, size_t err_len)
{
	if (!path_valid(image) || size < 16ULL << 20) {
		snprintf(err, err_len, "bad volume image path or size");
		return -EINVAL;
	}
	return jail_disk__volume_make(image, size, err, err_len);
}

int jail__config_validate(const struct jail_config *config, char *err, size_t err_len)
{
	if (!config) {
		snprintf(err, err_len, "no configuration");
		return -EINVAL;
	}
	if (!id_valid(config->id)) {
		snprintf(err, err_len, "id must be 1..%d of [a-zA-Z0-9_-]", JAIL_ID_MAX);
		return -EINVAL;
	}
	if (!path_valid(config->rootfs)) {
		snprintf(err, err_len, "rootfs must be an absolute path without , : or \\");
		return -EINVAL;
	}
	if (!config->netns_path || config->netns_path[0] != '/') {
		snprintf(err, err_len, "netns_path must be an absolute path");
		return -EINVAL;
	}
	if (config->state_dir && !path_valid(config->state_dir)) {
		snprintf(err, err_len, "state_dir must be an absolute path without , : or \\");
		return -EINVAL;
	}
	if (config->cgroup_parent && !id_valid(config->cgroup_parent)) {
		snprintf(err, err_len, "cgroup_parent must be one path component");
		return -EINVAL;
	}
	if (config->memory_max_bytes < 4ULL << 20) {
		snprintf(err, err_len, "memory_max_bytes must be at least 4 MiB");
		return -EINVAL;
	}
	if (config->disk_max_bytes && config->disk_max_bytes < 1ULL << 20) {
		snprintf(err, err_len, "disk_max_bytes must be 0 or at least 1 MiB");
		return -EINVAL;
	}
	if (config->pids_max == 0) {
		snprintf(err, err_len, "pids_max must be > 0");
		return -EINVAL;
	}
	if (config->volume_count > JAIL_VOLUMES_MAX || (config->volume_count && !config->volumes)) {
		snprintf(err, err_len, "at most %d volumes", JAIL_VOLUMES_MAX);
		return -EINVAL;
	}
	for (size_t i = 0; i < config->volume_count; i++)
		if (!path_valid(config->volumes[i].image) ||
		    !volume_path_valid(config->volumes[i].path)) {
			snprintf(err, err_len, "volume %zu: bad image path or mount path", i);
			return -EINVAL;
		}
	if (config->cpu_millicores > 1024 * 1000) {
		snprintf(err, err_len, "cpu_millicores out of range");
		return -EINVAL;
	}
	if (!config->argv || !config->argv[0] || config->argv[0][0] != '/' ||
	    vector_length(config->argv, JAIL_ARGV_MAX) >= JAIL_ARGV_MAX) {
		snprintf(err, err_len, "argv must start with an absolute path, < %d entries",
			 JAIL_ARGV_MAX);
		return -EINVAL;
	}
	if (config->envp && vector_length(config->envp, JAIL_ENV_MAX) >= JAIL_ENV_MAX) {
		snprintf(err, err_len, "envp must have < %d entries", JAIL_ENV_MAX);
		return -EINVAL;
	}
	return 0;
}

void jail__agent_argv(const char *token_hash, const char *out[6])
{
	size_t n = 0;

	out[n++] = "/usr/local/bin/warren-agent";
	out[n++] = "--listen";
	out[n++] = "0.0.0.0:49983";
	if (token_hash) {
		out[n++] = "--token-hash";
		out[n++] = token_hash;
	}
	out[n] = NULL;
}

static struct jail_host_settings jail_host = {
    .state_dir = "/var/lib/warren/sandboxes",
    .cgroup_parent = "warren",
    .disk_cache_dir = "/var/cache/warren/jail-disks",
    .uid_dir = "/run/warren/jail-uids",
    .first_uid = 1LL << 30,
};

void jail__configure_host(const struct jail_host_settings *settings)
{
	if (settings->state_dir)
		jail_host.state_dir = settings->state_dir;
	if (settings->cgroup_parent)
		jail_host.cgroup_parent = settings->cgroup_parent;
	if (settings->disk_cache_dir)
		jail_host.disk_cache_dir = settings->disk_cache_dir;
	jail_host.init_path = settings->init_path;
	if (settings->uid_dir)
		jail_host.uid_dir = settings->uid_dir;
	if (settings->first_uid)
		jail_host.first_uid = settings->first_uid;
}

const struct jail_host_settings *jail__host_settings(void)
{
	return &jail_host;
}

/* warren-jail-init: the configured path, next to the running binary, in ../bin of
 * it (tests run from build/tests), then the install locations. */
static int try_init(char *out, size_t out_len, const char *dir, const char *name)
{
	if ((size_t)snprintf(out, out_len, "%s/%s", dir, name) >= out_len)
		return -ENAMETOOLONG;
	return access(out, X_OK) == 0 ? 0 : -ENOENT;
}

static int find_init(const char *configured, char *out, size_t out_len)
{
	if (!configured)
		configured = jail_host.init_path;
	if (configured) {
		if ((size_t)snprintf(out, out_len, "%s", configured) >= out_len)
			return -ENAMETOOLONG;
		return access(out, X_OK) == 0 ? 0 : -ENOENT;
	}
	if (binary__find_sibling("warren-jail-init", out, out_len) == 0)
		return 0;
	if (try_init(out, out_len, "/usr/libexec/warren", "warren-jail-init") == 0)
		return 0;
	return try_init(out, out_len, "/usr/local/libexec/warren", "warren-jail-init");
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_DP)
		return rmdir(path) && errno != ENOENT ? -1 : 0;
	return unlink(path) && errno != ENOENT ? -1 : 0;
}

/* rm -rf without following symlinks or crossing into other mounts. */
static int remove_tree(const char *dir)
{
	struct stat st;

	if (lstat(dir, &st) && errno == ENOENT)
		return 0;
	/* The overlay work dir has a mode-000 "work" inside; root reads it. */
	if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT))
		return errno ? -errno : -EIO;
	return 0;
}

/* Field 22 of /proc/<pid>/stat: the start time, to tell a reused pid;
 * 0 when the process is gone or a zombie (dead, waiting for its reaper). */
static unsigned long long process_start_time(pid_t pid)
{
	char path[64], buffer[1024];
	unsigned long long start = 0;
	ssize_t n;
	char *p;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buffer, sizeof(buffer) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buffer[n] = 0;
	p = strrchr(buffer, ')'); /* the comm may contain spaces */
	if (!p || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X')
		return 0;
	/* ") S ppid ...": field 3 is the state; the start time is field 22. */
	for (int field = 2; field < 22 && p; field++)
		p = strchr(p + 1, ' ');
	if (p)
		start = strtoull(p + 1, NULL, 10);
	return start;
}

static int write_pid_file(const char *dir, pid_t pid)
{
	char path[PATH_MAX + 16], line[64];
	int fd, len, ret = 0;

	snprintf(path, sizeof(path), "%s/init.pid", dir);
	len = snprintf(line, sizeof(line), "%d %llu\n", (int)pid, process_start_time(pid));
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (write(fd, line, (size_t)len) != len)
		ret = -errno;
	close(fd);
	return ret;
}

static pid_t read_pid_file(const char *dir, unsigned long long *start_time)
{
	char path[PATH_MAX + 16];
	long pid = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/init.pid", dir);
	f = fopen(path, "re");
	if (!f)
		return 0;
	if (fscanf(f, "%ld %llu", &pid, start_time) != 2 || pid <= 1 || pid > INT32_MAX)
		pid = 0;
	fclose(f);
	return (pid_t)pid;
}

/* Reads the init's one status line; 0 on "ok", else -1 with err set. */
static int read_status(int fd, char *err, size_t err_len)
{
	char line[600];
	size_t used = 0;
	uint64_t deadline = clock__monotonic_ms() + START_TIMEOUT_MS;

	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int64_t left = (int64_t)(deadline - clock__monotonic_ms());
		ssize_t n;

		if (left <= 0) {
			snprintf(err, err_len, "jail init did not report within %d ms",
				 START_TIMEOUT_MS);
			return -1;
		}
		if (poll(&p, 1, (int)left) < 0 && errno != EINTR) {
			snprintf(err, err_len, "poll: %s", strerror(errno));
			return -1;
		}
		n = read(fd, line + used, sizeof(line) - 1 - used);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			break;
		used += (size_t)n;
		if (memchr(line, '\n', used) || used == sizeof(line) - 1)
			break;
	}
	line[used] = 0;
	line[strcspn(line, "\n")] = 0;
	if (!strcmp(line, "ok"))
		return 0;
	snprintf(err, err_len, "jail init: %s", used ? line : "exited without a status");
	return -1;
}

/* The state dir <state_dir>/<id> (mkdir fails on an id in use) with the
 * lower and merged mount points and either the disk's mount point or the
 * overlay's upper and work; the console log and init.pid come later. The
 * dir and the overlay parts belong to the sandbox's root (host_base) so
 * its init, which has no power over host ids, can use them; the dir stays
 * 0700 so no other host user can. 0, -EEXIST when the dir exists (not
 * ours to remove), else -1. */
static int make_state_dir(struct jail *jail, const char *state_dir, bool with_disk, char *err,
			  size_t err_len)
{
	/* With a disk the overlay's upper and work dirs are on it
	 * (jail_disk.c), so they are not made here (each directory is an
	 * inode the state dir's file system must find, a cost of every
	 * create); without one there is no disk mount point. */
	static const char *const parts_plain[] = {"upper", "work", "merged", "lower"};
	static const char *const parts_disk[] = {"merged", "lower", "disk"};
	const char *const *parts = with_disk ? parts_disk : parts_plain;
	size_t part_count = with_disk ? sizeof(parts_disk) / sizeof(parts_disk[0])
				      : sizeof(parts_plain) / sizeof(parts_plain[0]);
	char path[PATH_MAX + 16];
	uid_t root = (uid_t)jail->host_base;
	int ret;

	if (mkdir(state_dir, 0700) && errno != EEXIST) {
		snprintf(err, err_len, "mkdir %s: %s", state_dir, strerror(errno));
		return -1;
	}
	if (mkdir(jail->dir, 0700)) {
		ret = errno == EEXIST ? -EEXIST : -1;
		snprintf(err, err_len, "mkdir %s: %s", jail->dir, strerror(errno));
		return ret;
	}
	for (size_t i = 0; i < part_count; i++) {
		snprintf(path, sizeof(path), "%s/%s", jail->dir, parts[i]);
		/* chmod too: the overlay's root takes the upper dir's mode, and
		 * the caller's umask must not make / unreadable inside. */
		if (mkdir(path, 0755) || chmod(path, strcmp(parts[i], "work") ? 0755 : 0700) ||
		    chown(path, root, root)) {
			snprintf(err, err_len, "mkdir %s: %s", path, strerror(errno));
			return -1;
		}
	}
	if (chown(jail->dir, root, root)) {
		snprintf(err, err_len, "chown %s: %s", jail->dir, strerror(errno));
		return -1;
	}
	return 0;
}

/* What the child needs before it execs the init. */
struct spawn {
	int go_socket; /* receives "g" + the idmapped template; that fd then
			  takes the socket's number (--lower-fd) */
	int status_fd, console_fd, null_fd, init_fd;
	int exec_watch_fd;  /* close-on-exec: its end of spawn_call.exec_watch */
	int seccomp_fd;	    /* the compiled filter (--seccomp-fd), or -1 */
	int volume_count;   /* volume mounts that follow the template in the go */
	int volume_fd_base; /* volume i takes this number + i (--volume) */
	const char *dir;    /* the state dir, the init's working directory */
	const char *const *argv;
	const char *const *envp;
	uint64_t signal_mask; /* the kernel's sigset to exec the init with */
};

/* The child shares the worker's memory until it execs (CLONE_VM, see
 * spawn_thread): it runs on a stack of its own and makes raw system calls
 * only, through syscall(2) (no allocation, no lock, no libc state, no
 * sanitizer interceptor: nothing another thread of the worker could hold
 * or be changing). */
#define CHILD_CODE	   __attribute__((no_sanitize_address, noinline))
#define CHILD_STACK_BYTES  (64 * 1024)
#define CHILD_GUARD_BYTES  4096
#define KERNEL_SIGSET_SIZE 8 /* rt_sigaction(2), rt_sigprocmask(2): 64 signals */

/* The kernel's struct sigaction for rt_sigaction(2) on x86-64 (the layout
 * of arch/x86/include/uapi/asm/signal.h; glibc's differs). */
struct kernel_sigaction {
	void *handler;
	unsigned long flags;
	void *restorer;
	uint64_t mask;
};

static CHILD_CODE __attribute__((noreturn)) void child_fail(int status_fd, const char *message,
							    size_t length)
{
	syscall(SYS_write, status_fd, message, length);
	syscall(SYS_exit_group, 127);
	__builtin_unreachable();
}
#define CHILD_FAIL(status_fd, text) child_fail(status_fd, text, sizeof(text) - 1)

#define GO_FDS_MAX (1 + JAIL_VOLUMES_MAX) /* the template, then the volumes */

/* One byte "g" with count descriptors (the template's first); 0, or -1. */
static CHILD_CODE int receive_go(int socket_fd, int fds[GO_FDS_MAX], int count)
{
	char byte = 0;
	union {
		char bytes[CMSG_SPACE(sizeof(int) * GO_FDS_MAX)];
		struct cmsghdr align;
	} control;
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = control.bytes,
			     .msg_controllen = sizeof(control.bytes)};
	struct cmsghdr *cmsg;
	const volatile int *received;
	long n;

	do
		n = syscall(SYS_recvmsg, socket_fd, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	cmsg = n == 1 && byte == 'g' ? CMSG_FIRSTHDR(&msg) : NULL;
	if (!cmsg || cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS ||
	    cmsg->cmsg_len != CMSG_LEN(sizeof(int) * (size_t)count))
		return -1;
	received = (const volatile int *)(void *)CMSG_DATA(cmsg); /* no memcpy call */
	for (int i = 0; i < count; i++)
		fds[i] = received[i];
	return 0;
}

static int send_go(int socket_fd, const int *fds, int count)
{
	char byte = 'g', control[CMSG_SPACE(sizeof(int) * GO_FDS_MAX)];
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = control,
			     .msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)count)};
	struct cmsghdr *cmsg;

	memset(control, 0, sizeof(control));
	cmsg = CMSG_FIRSTHDR(&msg);
	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)count);
	memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * (size_t)count);
	return sendmsg(socket_fd, &msg, MSG_NOSIGNAL) == 1 ? 0 : -errno;
}

/* Every signal the worker handles goes back to its default in this child
 * (its own copy of the handlers: no CLONE_SIGHAND), as posix_spawn does,
 * so a signal that reaches it before the exec runs no worker code on the
 * shared memory; then the mask the spawning thread had comes back (it
 * blocked everything across the clone). */
static CHILD_CODE void child_reset_signals(const struct spawn *spawn)
{
	struct kernel_sigaction fallback = {.handler = SIG_DFL};

	for (int signal_number = 1; signal_number <= 64; signal_number++) {
		struct kernel_sigaction old;

		if (signal_number == SIGKILL || signal_number == SIGSTOP ||
		    syscall(SYS_rt_sigaction, signal_number, NULL, &old, KERNEL_SIGSET_SIZE))
			continue;
		if (old.handler != SIG_DFL && old.handler != SIG_IGN)
			syscall(SYS_rt_sigaction, signal_number, &fallback, NULL,
				KERNEL_SIGSET_SIZE);
	}
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &spawn->signal_mask, NULL, KERNEL_SIGSET_SIZE);
}

/* Closes every descriptor but 0-2 and the spawn's own, now rather than at
 * exec: the worker's listening sockets and the parent ends of other
 * sandboxes' go sockets (made by other threads) must not outlive a worker
 * that dies before the go, and with the parent end of our own go socket
 * closed here, that death is an EOF that ends this child. */
static CHILD_CODE void child_close_others(const struct spawn *spawn)
{
	int keep[] = {spawn->go_socket, spawn->status_fd,     spawn->console_fd, spawn->null_fd,
		      spawn->init_fd,	spawn->exec_watch_fd, spawn->seccomp_fd};
	size_t count = sizeof(keep) / sizeof(keep[0]);
	unsigned int from = 3;

	for (size_t i = 1; i < count; i++) /* insertion sort: seven numbers */
		for (size_t j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
			int swap = keep[j];
			keep[j] = keep[j - 1];
			keep[j - 1] = swap;
		}
	for (size_t i = 0; i < count; i++) {
		if (keep[i] < (int)from)
			continue;
		if ((unsigned int)keep[i] > from)
			syscall(SYS_close_range, from, (unsigned int)keep[i] - 1, 0);
		from = (unsigned int)keep[i] + 1;
	}
	syscall(SYS_close_range, from, ~0U, 0);
}

/* The child (clone's fn): waits until the parent placed it in its cgroups
 * and wrote its id maps, becomes root of its user namespace (no host groups
 * kept), and execs the init; its working dir is the state dir
 * (spawn_thread). */
static CHILD_CODE int child_run(void *opaque)
{
	const struct spawn *spawn = opaque;
	int fds[GO_FDS_MAX], lower_fd, status_fd = spawn->status_fd;

	child_reset_signals(spawn);
	child_close_others(spawn);
	if (receive_go(spawn->go_socket, fds, 1 + spawn->volume_count))
		CHILD_FAIL(status_fd, "error: parent gave up before the start\n");
	lower_fd = fds[0];
	if (syscall(SYS_dup3, lower_fd, spawn->go_socket, 0) < 0 || syscall(SYS_close, lower_fd))
		CHILD_FAIL(status_fd, "error: dup of the template mount\n");
	/* volume_fd_base lies above every number the received fds can have */
	for (int i = 0; i < spawn->volume_count; i++)
		if (syscall(SYS_dup3, fds[1 + i], spawn->volume_fd_base + i, 0) < 0 ||
		    syscall(SYS_close, fds[1 + i]))
			CHILD_FAIL(status_fd, "error: dup of a volume mount\n");
	if (syscall(SYS_setgroups, 0, NULL) || syscall(SYS_setresgid, 0, 0, 0) ||
	    syscall(SYS_setresuid, 0, 0, 0))
		CHILD_FAIL(status_fd, "error: become root of the user namespace\n");
	if (syscall(SYS_fcntl, status_fd, F_SETFD, 0) ||
	    (spawn->seccomp_fd >= 0 && syscall(SYS_fcntl, spawn->seccomp_fd, F_SETFD, 0)) ||
	    syscall(SYS_dup2, spawn->null_fd, 0) || syscall(SYS_dup2, spawn->console_fd, 1) != 1 ||
	    syscall(SYS_dup2, spawn->console_fd, 2) != 2)
		CHILD_FAIL(status_fd, "error: set up the init's descriptors\n");
	syscall(SYS_execveat, spawn->init_fd, "", spawn->argv, spawn->envp, AT_EMPTY_PATH);
	CHILD_FAIL(status_fd, "error: exec warren-jail-init\n");
}

/* The spawning thread's work: what it gets, gives back and keeps alive
 * while the child runs on the worker's memory. */
struct spawn_call {
	struct spawn *spawn;
	int netns_fd;
	uint32_t host_base;
	int pidfd;
	long pid;
	char step[48];
	int error;
	bool creator_is_root; /* the fallback of spawn_thread was taken */
	int exec_watch[2];    /* the child holds [1], close-on-exec: [0] reads EOF
				 once it has exec'ed or died */
	void *stack;	      /* the child's: CHILD_GUARD_BYTES + CHILD_STACK_BYTES */
	sem_t cloned;	      /* posted once pid is set (or the clone failed) */
	pthread_t thread;
	bool thread_started;
};

/* A thread makes the child, so that nothing it changes about itself
 * reaches the worker's other threads: its own fs (working dir = the state
 * dir, which the child's new mount namespace inherits, reached as host
 * root), the slot's network namespace (which the child inherits: from the
 * new user namespace it could not join one the host owns), and the
 * effective uid host_base while it clones (raw syscalls: this thread only),
 * so the user namespace's creator is the sandbox's own host uid and the
 * kernel's per-user counts (inotify instances, user namespaces, ...) of
 * everything inside are charged to it, not to host root.
 *
 * The clone shares the worker's memory (CLONE_VM, as posix_spawn does):
 * a copy of the worker's address space per sandbox (page tables copied,
 * every page write-protected, then a copy-on-write fault for each page
 * the worker's threads touch until the exec) cost more than the rest of a
 * jail's start once creates run side by side. Until the exec the child
 * uses this thread's thread-local storage (errno): the thread stays until
 * exec_watch reads EOF, and then frees the child's stack. */
static void *spawn_thread(void *opaque)
{
	struct spawn_call *call = opaque;
	int flags = CLONE_VM | CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS |
		    CLONE_NEWIPC | CLONE_PIDFD | SIGCHLD;
	char *stack_top = (char *)call->stack + CHILD_GUARD_BYTES + CHILD_STACK_BYTES;
	sigset_t all, old;
	char byte;

	call->pid = -1;
	if (unshare(CLONE_FS) || chdir(call->spawn->dir)) {
		snprintf(call->step, sizeof(call->step), "own fs, chdir");
		goto fail;
	}
	if (setns(call->netns_fd, CLONE_NEWNET)) {
		snprintf(call->step, sizeof(call->step), "enter the network namespace");
		goto fail;
	}
	if (syscall(SYS_setresuid, -1, call->host_base, -1)) {
		snprintf(call->step, sizeof(call->step), "seteuid");
		goto fail;
	}
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	memcpy(&call->spawn->signal_mask, &old, sizeof(call->spawn->signal_mask));
	call->pid = clone(child_run, stack_top, flags, call->spawn, &call->pidfd);
	if (call->pid < 0 && (errno == EPERM || errno == EACCES) &&
	    syscall(SYS_setresuid, -1, 0, -1) == 0) {
		/* Hosts that let only privileged creators make user namespaces
		 * (kernel.unprivileged_userns_clone=0, AppArmor's restriction):
		 * host root creates it; only the per-user accounting differs. */
		call->creator_is_root = true;
		call->pid = clone(child_run, stack_top, flags, call->spawn, &call->pidfd);
	}
	call->error = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (call->pid < 0) {
		snprintf(call->step, sizeof(call->step), "clone");
		sem_post(&call->cloned);
		return NULL;
	}
	close(call->exec_watch[1]);
	call->exec_watch[1] = -1;
	sem_post(&call->cloned);
	/* read(2)'s result alone: the child may write errno meanwhile */
	while (read(call->exec_watch[0], &byte, 1) != 0)
		;
	return NULL;
fail:
	call->error = errno;
	sem_post(&call->cloned);
	return NULL;
}

/* Starts spawn_thread for the child in its namespaces and waits for the
 * clone. The pid, or -1 with err set; call->pidfd gets the child's pidfd.
 * spawn_call__finish() must follow either way. */
static long spawn_call__start(struct spawn_call *call, struct spawn *spawn, int netns_fd,
			      uint32_t host_base, char *err, size_t err_len)
{
	size_t stack_bytes = CHILD_GUARD_BYTES + CHILD_STACK_BYTES;
	pthread_attr_t attr;
	int ret;

	*call = (struct spawn_call){.spawn = spawn,
				    .netns_fd = netns_fd,
				    .host_base = host_base,
				    .pidfd = -1,
				    .pid = -1,
				    .exec_watch = {-1, -1}};
	call->stack = mmap(NULL, stack_bytes, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (call->stack == MAP_FAILED) {
		call->stack = NULL;
		snprintf(err, err_len, "child stack: %s", strerror(errno));
		return -1;
	}
	/* below the stack: a fault, not the worker's memory, if it overflows */
	if (mprotect(call->stack, CHILD_GUARD_BYTES, PROT_NONE) ||
	    pipe2(call->exec_watch, O_CLOEXEC) || sem_init(&call->cloned, 0, 0)) {
		snprintf(err, err_len, "child stack guard, pipe: %s", strerror(errno));
		return -1;
	}
	spawn->exec_watch_fd = call->exec_watch[1];
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	ret = pthread_create(&call->thread, &attr, spawn_thread, call);
	pthread_attr_destroy(&attr);
	if (ret) {
		sem_destroy(&call->cloned);
		snprintf(err, err_len, "spawn thread: %s", strerror(ret));
		return -1;
	}
	call->thread_started = true;
	while (sem_wait(&call->cloned) && errno == EINTR)
		;
	if (call->creator_is_root)
		log_warn("jail: this host lets only root create user namespaces; the "
			 "sandbox's per-user kernel counts are charged to host root");
	if (call->pid < 0) {
		snprintf(err, err_len, "%s: %s", call->step, strerror(call->error));
		return -1;
	}
	return call->pid;
}

/* Waits for the spawning thread (the child has exec'ed or died: the
 * caller closed its end of the go socket or sent the go before this) and
 * frees what spawn_call__start made. */
static void spawn_call__finish(struct spawn_call *call)
{
	if (call->thread_started) {
		pthread_join(call->thread, NULL);
		sem_destroy(&call->cloned);
		call->thread_started = false;
	}
	for (int i = 0; i < 2; i++)
		if (call->exec_watch[i] >= 0)
			close(call->exec_watch[i]);
	call->exec_watch[0] = call->exec_watch[1] = -1;
	if (call->stack)
		munmap(call->stack, CHILD_GUARD_BYTES + CHILD_STACK_BYTES);
	call->stack = NULL;
}

/* Parent side once the child runs: init.pid, cgroups, id maps, the
 * idmapped template, then "go". 0, or -1 with err set. */
static int release_child(struct jail *jail, const struct jail_config *config, int go_socket,
			 char *err, size_t err_len)
{
	int ret, fds[GO_FDS_MAX], count = 0;
	bool sending = false;
	char mount_point[PATH_MAX + 16];

	if ((ret = write_pid_file(jail->dir, jail->pid))) {
		snprintf(err, err_len, "init.pid: %s", strerror(-ret));
		return -1;
	}
	if (jail_cgroup__attach(&jail->cgroup, jail->pid, err, err_len))
		return -1;
	if ((ret = jail_userns__write_maps(jail->pid, jail->host_base))) {
		snprintf(err, err_len, "uid_map/gid_map: %s", strerror(-ret));
		return -1;
	}
	fds[count] = jail_userns__idmapped_tree(config->rootfs, jail->pid);
	if (fds[count] < 0) {
		snprintf(err, err_len,
			 "idmapped mount of %s: %s (the jail needs idmapped mounts: "
			 "Linux >= 5.12 and a filesystem that has them, e.g. ext4, xfs, btrfs)",
			 config->rootfs, strerror(-fds[count]));
		return -1;
	}
	for (count = 1; count <= (int)config->volume_count; count++) {
		snprintf(mount_point, sizeof(mount_point), "%s/vol%d", jail->dir, count - 1);
		fds[count] = jail_userns__idmapped_volume(mount_point, jail->pid);
		if (fds[count] < 0) {
			snprintf(err, err_len, "idmapped mount of volume %s: %s",
				 config->volumes[count - 1].image, strerror(-fds[count]));
			ret = fds[count];
			goto out;
		}
	}
	sending = true;
	ret = send_go(go_socket, fds, count);
out:
	for (int i = 0; i < count; i++)
		close(fds[i]);
	if (ret && sending)
		snprintf(err, err_len, "jail init gone before start: %s", strerror(-ret));
	return ret ? -1 : 0;
}

/* Opens what the child inherits: the netns (checked to be one), the
 * console log, /dev/null, the state dir and the init binary. */
static int open_child_files(struct jail *jail, const struct jail_config *config,
			    const char *init_path, struct spawn *spawn, int *netns_fd, char *err,
			    size_t err_len)
{
	char console[PATH_MAX + 16];
	struct statfs fs;

	*netns_fd = open(config->netns_path, O_RDONLY | O_CLOEXEC);
	if (*netns_fd < 0 || fstatfs(*netns_fd, &fs) || fs.f_type != NSFS_MAGIC) {
		snprintf(err, err_len, "%s is not a network namespace: %s", config->netns_path,
			 *netns_fd < 0 ? strerror(errno) : "not nsfs");
		return -1;
	}
	snprintf(console, sizeof(console), "%s/console.log", jail->dir);
	spawn->console_fd = open(console, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	spawn->null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	spawn->dir = jail->dir;
	spawn->init_fd = open(init_path, O_PATH | O_CLOEXEC);
	if (spawn->console_fd < 0 || spawn->null_fd < 0 || spawn->init_fd < 0) {
		snprintf(err, err_len, "open console/null/state dir/init: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* The jail's seccomp filter compiled once for the worker's life
 * (jail_policy__seccomp_program_fd): each warren-jail-init installs that
 * program instead of building it (~1 ms of CPU per start). -1 when it
 * could not be made (logged once): each init then builds its own. */
static int seccomp_program_fd = -1;
static pthread_once_t seccomp_program_once = PTHREAD_ONCE_INIT;

static void jail__seccomp_program_make(void)
{
	char err[256];
	int fd = jail_policy__seccomp_program_fd(err, sizeof(err));

	if (fd < 0)
		log_warn("jail: the seccomp filter could not be compiled once (%s); each jail's "
			 "init builds its own",
			 err);
	seccomp_program_fd = fds__keep_high(fd);
}

static int jail__seccomp_program(void)
{
	pthread_once(&seccomp_program_once, jail__seccomp_program_make);
	return seccomp_program_fd;
}

/* warren-jail-init's argv (init.c, header comment) and the strings in it. */
struct init_args {
	char fd_lower[16], fd_status[16], fd_seccomp[16], tmp_size[32], disk_size[32],
	    console_max[32];
	char volume[JAIL_VOLUMES_MAX][16 + 256]; /* "FD:PATH" */
	const char *argv[JAIL_ARGV_MAX + 32 + 2 * JAIL_VOLUMES_MAX];
};

static void init_argv(const struct jail_config *config, int lower_fd, int status_fd,
		      int volume_fd_base, int seccomp_fd, struct init_args *args)
{
	size_t argc = 0;

	snprintf(args->fd_lower, sizeof(args->fd_lower), "%d", lower_fd);
	snprintf(args->fd_status, sizeof(args->fd_status), "%d", status_fd);
	snprintf(args->tmp_size, sizeof(args->tmp_size), "%llu",
		 (unsigned long long)(config->tmp_size_bytes ? config->tmp_size_bytes
							     : config->memory_max_bytes / 2));
	snprintf(args->console_max, sizeof(args->console_max), "%llu",
		 (unsigned long long)(config->console_max_bytes ? config->console_max_bytes
								: JAIL_CONSOLE_MAX_DEFAULT));
	args->argv[argc++] = "warren-jail-init";
	args->argv[argc++] = "--status-fd";
	args->argv[argc++] = args->fd_status;
	args->argv[argc++] = "--lower-fd";
	args->argv[argc++] = args->fd_lower;
	args->argv[argc++] = "--hostname";
	args->argv[argc++] = config->id;
	args->argv[argc++] = "--tmp-size";
	args->argv[argc++] = args->tmp_size;
	args->argv[argc++] = "--console-max";
	args->argv[argc++] = args->console_max;
	if (config->disk_max_bytes) {
		snprintf(args->disk_size, sizeof(args->disk_size), "%llu",
			 (unsigned long long)config->disk_max_bytes);
		args->argv[argc++] = "--disk-size";
		args->argv[argc++] = args->disk_size;
	}
	for (size_t i = 0; i < config->volume_count; i++) {
		snprintf(args->volume[i], sizeof(args->volume[i]), "%d:%s", volume_fd_base + (int)i,
			 config->volumes[i].path);
		args->argv[argc++] = "--volume";
		args->argv[argc++] = args->volume[i];
	}
	if (seccomp_fd >= 0) {
		snprintf(args->fd_seccomp, sizeof(args->fd_seccomp), "%d", seccomp_fd);
		args->argv[argc++] = "--seccomp-fd";
		args->argv[argc++] = args->fd_seccomp;
	}
	args->argv[argc++] = "--";
	for (size_t i = 0; config->argv[i]; i++)
		args->argv[argc++] = config->argv[i];
	args->argv[argc] = NULL;
}

/* jail__start's context: the settings it resolved and what its steps made,
 * so that jail_start__undo() takes back exactly that. Every step returns 0,
 * or -1 with a reason in err. */
struct jail_start {
	const struct jail_config *config;
	char *err;
	size_t err_len;
	const char *state_dir, *cgroup_parent, *disk_cache_dir;
	char init_path[PATH_MAX];
	struct init_args args;
	int go[2], status_pipe[2], netns_fd;
	struct spawn spawn;
	struct spawn_call spawn_call;
	struct jail *jail;
	bool dir_made, cgroup_made;
};

/* Step 1: the config checked, the settings' defaults, warren-jail-init. */
static int jail_start__settings(struct jail_start *start)
{
	const struct jail_config *config = start->config;

	if (jail__config_validate(config, start->err, start->err_len))
		return -1;
	start->state_dir = config->state_dir ? config->state_dir : jail_host.state_dir;
	start->cgroup_parent =
	    config->cgroup_parent ? config->cgroup_parent : jail_host.cgroup_parent;
	start->disk_cache_dir =
	    config->disk_cache_dir ? config->disk_cache_dir : jail_host.disk_cache_dir;
	if (!path_valid(start->state_dir) || !path_valid(start->disk_cache_dir) ||
	    !id_valid(start->cgroup_parent)) {
		snprintf(start->err, start->err_len,
			 "bad setting state_dir, jail_disk_cache_dir or jail_cgroup_parent");
		return -1;
	}
	if (find_init(config->init_path, start->init_path, sizeof(start->init_path))) {
		snprintf(start->err, start->err_len,
			 "warren-jail-init not found (setting jail_init_path)");
		return -1;
	}
	return 0;
}

/* Step 2: the jail, its host uid range, its state dir and its disk. */
static int jail_start__state(struct jail_start *start)
{
	const struct jail_config *config = start->config;
	struct jail *jail = calloc(1, sizeof(*jail));
	int ret;

	if (!jail) {
		snprintf(start->err, start->err_len, "out of memory");
		return -1;
	}
	start->jail = jail;
	jail->pidfd = -1;
	snprintf(jail->id, sizeof(jail->id), "%s", config->id);
	snprintf(jail->dir, sizeof(jail->dir), "%s/%s", start->state_dir, config->id);
	if ((ret = jail_userns__reserve(jail->dir, &jail->uid_index, &jail->host_base))) {
		snprintf(start->err, start->err_len, "reserve a host uid range: %s",
			 strerror(-ret));
		return -1;
	}
	jail->uid_reserved = true;
	ret = make_state_dir(jail, start->state_dir, config->disk_max_bytes != 0, start->err,
			     start->err_len);
	start->dir_made = ret != -EEXIST; /* never remove another sandbox's dir */
	if (ret)
		return -1;
	if (config->disk_max_bytes &&
	    jail_disk__create(jail->dir, start->disk_cache_dir, config->disk_max_bytes,
			      (uid_t)jail->host_base, start->err, start->err_len))
		return -1;
	for (size_t i = 0; i < config->volume_count; i++) {
		char mount_point[PATH_MAX + 32];

		snprintf(mount_point, sizeof(mount_point), "%s/vol%zu", jail->dir, i);
		if (jail_disk__volume_mount(config->volumes[i].image, mount_point,
					    config->volume_wait_ms, start->err, start->err_len))
			return -1;
	}
	return 0;
}

/* Step 3: what the child inherits (open_child_files). */
static int jail_start__files(struct jail_start *start)
{
	return open_child_files(start->jail, start->config, start->init_path, &start->spawn,
				&start->netns_fd, start->err, start->err_len);
}

/* Step 4: the cgroups with the limits, before anything runs. */
static int jail_start__cgroup(struct jail_start *start)
{
	const struct jail_config *config = start->config;
	struct jail_cgroup_limits limits = {
	    .memory_max_bytes = config->memory_max_bytes,
	    .cpu_millicores = config->cpu_millicores,
	    .pids_max = config->pids_max,
	};
	int ret;

	if ((ret = jail_cgroup__paths(&start->jail->cgroup, start->cgroup_parent, config->id))) {
		snprintf(start->err, start->err_len, "no usable cgroup hierarchy: %s",
			 strerror(-ret));
		return -1;
	}
	if (jail_cgroup__create(&start->jail->cgroup, &limits, start->err, start->err_len))
		return -1;
	start->cgroup_made = true;
	return 0;
}

/* Step 5: the init's channels (go socket, status pipe), its argv and
 * environment, and the child itself in its namespaces. */
static int jail_start__spawn(struct jail_start *start)
{
	static const char *const default_env[] = {
	    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	    "HOME=/root",
	    NULL,
	};
	const struct jail_config *config = start->config;
	struct jail *jail = start->jail;
	long pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, start->go) ||
	    pipe2(start->status_pipe, O_CLOEXEC)) {
		snprintf(start->err, start->err_len, "socketpair/pipe: %s", strerror(errno));
		return -1;
	}
	/* Above every descriptor the child keeps, plus room for the received
	 * ones (they take the lowest free numbers): see child_run. */
	start->spawn.volume_count = (int)config->volume_count;
	start->spawn.volume_fd_base = start->go[0];
	if (start->status_pipe[1] > start->spawn.volume_fd_base)
		start->spawn.volume_fd_base = start->status_pipe[1];
	if (start->spawn.console_fd > start->spawn.volume_fd_base)
		start->spawn.volume_fd_base = start->spawn.console_fd;
	if (start->spawn.null_fd > start->spawn.volume_fd_base)
		start->spawn.volume_fd_base = start->spawn.null_fd;
	if (start->spawn.init_fd > start->spawn.volume_fd_base)
		start->spawn.volume_fd_base = start->spawn.init_fd;
	start->spawn.volume_fd_base += 2 + GO_FDS_MAX;
	/* The compiled filter is kept high; should it fall where the volumes
	 * go, the init builds the filter itself instead. */
	start->spawn.seccomp_fd = jail__seccomp_program();
	if (start->spawn.seccomp_fd >= start->spawn.volume_fd_base &&
	    start->spawn.seccomp_fd < start->spawn.volume_fd_base + GO_FDS_MAX)
		start->spawn.seccomp_fd = -1;
	init_argv(config, start->go[0], start->status_pipe[1], start->spawn.volume_fd_base,
		  start->spawn.seccomp_fd, &start->args);
	start->spawn.go_socket = start->go[0];
	start->spawn.status_fd = start->status_pipe[1];
	start->spawn.argv = start->args.argv;
	start->spawn.envp = config->envp ? config->envp : default_env;
	pid = spawn_call__start(&start->spawn_call, &start->spawn, start->netns_fd, jail->host_base,
				start->err, start->err_len);
	if (pid < 0)
		return -1;
	jail->pid = (pid_t)pid;
	/* kept for the jail's life */
	jail->pidfd = fds__keep_high(start->spawn_call.pidfd);
	close_fd(&start->go[0]);
	close_fd(&start->status_pipe[1]);
	return 0;
}

/* Step 6: lets the child go (release_child) and waits for the init's
 * report that the sandbox is up (read_status). */
static int jail_start__run(struct jail_start *start)
{
	if (release_child(start->jail, start->config, start->go[1], start->err, start->err_len))
		return -1;
	close_fd(&start->go[1]);
	return read_status(start->status_pipe[0], start->err, start->err_len);
}

/* Closes what the steps opened for the child (always): the go socket
 * first, so a child still waiting for its go ends, then the spawning
 * thread, which waits for the child's exec or death. */
static void jail_start__close(struct jail_start *start)
{
	for (int i = 0; i < 2; i++) {
		close_fd(&start->go[i]);
		close_fd(&start->status_pipe[i]);
	}
	spawn_call__finish(&start->spawn_call);
	close_fd(&start->netns_fd);
	close_fd(&start->spawn.console_fd);
	close_fd(&start->spawn.null_fd);
	close_fd(&start->spawn.init_fd);
}

/* After a failed step: stops a child that runs, else takes back the
 * cgroups, state dir, disk and uid range the steps made; frees the jail. */
static void jail_start__undo(struct jail_start *start)
{
	struct jail *jail = start->jail;

	if (!jail)
		return;
	if (jail->pid > 0) {
		jail__stop(jail);
	} else {
		if (start->cgroup_made)
			jail_cgroup__destroy(&jail->cgroup, STOP_TIMEOUT_MS);
		if (start->dir_made && jail_disk__remove(jail->dir) == 0)
			remove_tree(jail->dir);
		if (jail->uid_reserved)
			jail_userns__release(jail->uid_index, jail->dir);
	}
	if (jail->pidfd >= 0)
		close(jail->pidfd);
	free(jail);
	start->jail = NULL;
}

struct jail *jail__start(const struct jail_config *config, char *err, size_t err_len)
{
	static int (*const steps[])(struct jail_start *) = {
	    jail_start__settings, jail_start__state, jail_start__files,
	    jail_start__cgroup,	  jail_start__spawn, jail_start__run,
	};
	struct jail_start start = {
	    .config = config,
	    .err = err,
	    .err_len = err_len,
	    .go = {-1, -1},
	    .status_pipe = {-1, -1},
	    .netns_fd = -1,
	    .spawn = {.console_fd = -1,
		      .null_fd = -1,
		      .init_fd = -1,
		      .exec_watch_fd = -1,
		      .seccomp_fd = -1},
	    .spawn_call = {.pidfd = -1, .pid = -1, .exec_watch = {-1, -1}},
	};
	int ret = 0;

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]) && ret == 0; i++)
		ret = steps[i](&start);
	jail_start__close(&start);
	if (ret) {
		jail_start__undo(&start);
		return NULL;
	}
	log_info("jail %s: started, init pid %d, host uid %u", start.jail->id, (int)start.jail->pid,
		 start.jail->host_base);
	return start.jail;
}

pid_t jail__pid(const struct jail *jail)
{
	return jail->pid;
}

int jail__pidfd(const struct jail *jail)
{
	return jail->pidfd;
}

uint32_t jail__host_uid(const struct jail *jail)
{
	return jail->host_base;
}

static void reap(struct jail *jail, int options)
{
	int status;

	if (jail->exited || jail->pid <= 0)
		return;
	for (;;) {
		pid_t got = waitpid(jail->pid, &status, options);

		if (got < 0 && errno == EINTR)
			continue;
		if (got == jail->pid) {
			jail->exited = true;
			jail->wait_status = status;
		} else if (got < 0 && errno == ECHILD) {
			/* Reaped elsewhere (a SIGCHLD handler): gone all the same. */
			jail->exited = true;
		}
		return;
	}
}

enum jail_state jail__state(struct jail *jail, int *wait_status)
{
	reap(jail, WNOHANG);
	if (jail->exited && wait_status)
		*wait_status = jail->wait_status;
	return jail->exited ? JAIL_EXITED : JAIL_RUNNING;
}

int jail__wait(struct jail *jail, int timeout_ms)
{
	struct pollfd p = {.fd = jail->pidfd, .events = POLLIN};

	if (jail->exited)
		return 0;
	for (;;) {
		int n = poll(&p, 1, timeout_ms);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -ETIMEDOUT;
		reap(jail, 0);
		return 0;
	}
}

int jail__stop(struct jail *jail)
{
	int ret = 0, step;

	if (!jail || jail->stopped)
		return 0;
	/* SIGKILL to the pid namespace's init kills everything in it; the
	 * cgroup kill also gets anything that left the namespace's view. */
	if (!jail->exited && jail->pidfd >= 0)
		syscall(SYS_pidfd_send_signal, jail->pidfd, SIGKILL, NULL, 0);
	step = jail_cgroup__destroy(&jail->cgroup, STOP_TIMEOUT_MS);
	if (step && !ret)
		ret = step;
	if (jail__wait(jail, STOP_TIMEOUT_MS) && !ret)
		ret = -ETIMEDOUT;
	/* The mounts lived in the jail's own mount namespace: gone with it.
	 * The upper dir is the sandbox's to shape (symlinks swapped under a
	 * running rm -rf): it is removed only once nothing there runs. */
	if (!ret) {
		step = jail_disk__remove(jail->dir);
		if (!step)
			step = remove_tree(jail->dir);
		if (step)
			ret = step;
	}
	if (ret) {
		log_warn("jail %s: stop incomplete: %s", jail->id, strerror(-ret));
	} else {
		jail->stopped = true;
		/* Nothing runs with the range any more: another sandbox may. */
		if (jail->uid_reserved)
			jail_userns__release(jail->uid_index, jail->dir);
		jail->uid_reserved = false;
	}
	return ret;
}

void jail__destroy(struct jail *jail)
{
	if (!jail)
		return;
	jail__stop(jail);
	if (jail->pidfd >= 0)
		close(jail->pidfd);
	free(jail);
}

int jail__usage(const struct jail *jail, struct jail_usage *out)
{
	char disk[PATH_MAX + 8];
	struct stat dir_stat, disk_stat;
	struct statfs fs;
	int ret;

	memset(out, 0, sizeof(*out));
	if (jail->stopped)
		return -ESRCH;
	ret = jail_cgroup__usage(&jail->cgroup, &out->cpu_usec, &out->mem_used_bytes,
				 &out->mem_cache_bytes);
	if (ret)
		return ret;
	ret = jail_cgroup__memory_limit(&jail->cgroup, &out->mem_limit_bytes);
	if (ret)
		return ret;
	/* The image is mounted on <dir>/disk: a different device than <dir>. */
	snprintf(disk, sizeof(disk), "%s/disk", jail->dir);
	if (stat(jail->dir, &dir_stat) || stat(disk, &disk_stat) ||
	    dir_stat.st_dev == disk_stat.st_dev || statfs(disk, &fs))
		return 0;
	out->disk_total_bytes = (uint64_t)fs.f_blocks * (uint64_t)fs.f_bsize;
	out->disk_used_bytes = (uint64_t)(fs.f_blocks - fs.f_bfree) * (uint64_t)fs.f_bsize;
	return 0;
}

int jail__console_path(const struct jail *jail, char *out, size_t out_len)
{
	int n = snprintf(out, out_len, "%s/console.log", jail->dir);

	return n < 0 || (size_t)n >= out_len ? -ENAMETOOLONG : 0;
}

int jail__upper_dir(const struct jail *jail, char *out, size_t out_len)
{
	char disk_upper[PATH_MAX + 16];
	struct stat st;
	int n;

	snprintf(disk_upper, sizeof(disk_upper), "%s/disk/upper", jail->dir);
	if (!lstat(disk_upper, &st) && S_ISDIR(st.st_mode))
		n = snprintf(out, out_len, "%s", disk_upper);
	else
		n = snprintf(out, out_len, "%s/upper", jail->dir);
	return n < 0 || (size_t)n >= out_len ? -ENAMETOOLONG : 0;
}

int jail__memory_limit(const struct jail *jail, uint64_t *bytes)
{
	return jail_cgroup__memory_limit(&jail->cgroup, bytes);
}

int jail__freeze(struct jail *jail, bool frozen, int timeout_ms)
{
	if (jail->stopped)
		return -ESRCH;
	return jail_cgroup__freeze(&jail->cgroup, frozen, timeout_ms);
}

int jail__frozen(const struct jail *jail, bool *frozen)
{
	return jail_cgroup__frozen(&jail->cgroup, frozen);
}

static int add_id(char ***ids, size_t *count, size_t *capacity, const char *id)
{
	for (size_t i = 0; i < *count; i++)
		if (!strcmp((*ids)[i], id))
			return 0;
	if (*count == *capacity) {
		size_t next = *capacity ? *capacity * 2 : 8;
		char **grown = realloc(*ids, next * sizeof(char *));

		if (!grown)
			return -ENOMEM;
		*ids = grown;
		*capacity = next;
	}
	(*ids)[*count] = strdup(id);
	if (!(*ids)[*count])
		return -ENOMEM;
	(*count)++;
	return 0;
}

static int add_dir_entries(const char *dir, char ***ids, size_t *count, size_t *capacity)
{
	DIR *d = opendir(dir);
	struct dirent *entry;
	int ret = 0;

	if (!d)
		return 0;
	while (!ret && (entry = readdir(d)))
		if (entry->d_type == DT_DIR && id_valid(entry->d_name))
			ret = add_id(ids, count, capacity, entry->d_name);
	closedir(d);
	return ret;
}

void jail__free_ids(char **ids, size_t count)
{
	for (size_t i = 0; i < count; i++)
		free(ids[i]);
	free(ids);
}

int jail__list_on_host(const char *state_dir, const char *cgroup_parent, char ***ids, size_t *count)
{
	struct jail_cgroup probe;
	size_t capacity = 0;
	char parent_dir[PATH_MAX];
	int ret;

	*ids = NULL;
	*count = 0;
	if (!state_dir)
		state_dir = jail_host.state_dir;
	if (!cgroup_parent)
		cgroup_parent = jail_host.cgroup_parent;
	ret = add_dir_entries(state_dir, ids, count, &capacity);
	/* Every cgroup directory under the parent, in each hierarchy. */
	if (!ret && jail_cgroup__paths(&probe, cgroup_parent, "x") == 0) {
		for (int i = 0; !ret && i < JAIL_CGROUP_DIRS; i++) {
			char *slash;

			if (!probe.dirs[i][0])
				continue;
			snprintf(parent_dir, sizeof(parent_dir), "%s", probe.dirs[i]);
			slash = strrchr(parent_dir, '/');
			*slash = 0;
			ret = add_dir_entries(parent_dir, ids, count, &capacity);
		}
	}
	if (ret) {
		jail__free_ids(*ids, *count);
		*ids = NULL;
		*count = 0;
	}
	return ret;
}

int jail__kill_by_id(const char *state_dir, const char *cgroup_parent, const char *id)
{
	struct jail jail;
	unsigned long long start_time = 0;
	pid_t pid;
	int ret = 0, step;

	if (!id_valid(id))
		return -EINVAL;
	if (!state_dir)
		state_dir = jail_host.state_dir;
	if (!cgroup_parent)
		cgroup_parent = jail_host.cgroup_parent;
	memset(&jail, 0, sizeof(jail));
	snprintf(jail.dir, sizeof(jail.dir), "%s/%s", state_dir, id);
	/* The init, when the recorded pid is still the same process. */
	pid = read_pid_file(jail.dir, &start_time);
	if (pid > 0 && start_time && process_start_time(pid) == start_time)
		kill(pid, SIGKILL);
	if (jail_cgroup__paths(&jail.cgroup, cgroup_parent, id) == 0) {
		step = jail_cgroup__destroy(&jail.cgroup, STOP_TIMEOUT_MS);
		if (step)
			ret = step;
	}
	/* Not our child: wait until it is gone (or a zombie for its reaper). */
	for (int i = 0; pid > 0 && i < STOP_TIMEOUT_MS / 5; i++) {
		if (process_start_time(pid) != start_time)
			break;
		struct timespec ts = {0, 5000000};

		nanosleep(&ts, NULL);
	}
	if (pid > 0 && start_time && process_start_time(pid) == start_time && !ret)
		ret = -EBUSY;
	if (!ret) /* as in jail__stop: only once nothing of it runs */
		ret = jail_disk__remove(jail.dir);
	if (!ret)
		ret = remove_tree(jail.dir);
	if (!ret)
		jail_userns__release_owner(jail.dir);
	return ret;
}

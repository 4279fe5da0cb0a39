/* jail: the jail runtime (warren/jail.h). The host side: state dir,
 * cgroups, the clone3 into new namespaces and the exec of
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
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include "jail_cgroup.h"
#include "warren/clock.h"
#include "warren/config.h"
#include "warren/log.h"

#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif

#define START_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS 5000

extern char **environ;

struct jail {
	char id[JAIL_ID_MAX + 1];
	char dir[PATH_MAX];     /* state_dir/<id> */
	struct jail_cgroup cgroup;
	pid_t pid;              /* host pid of warren-jail-init */
	int pidfd;
	bool exited;
	int wait_status;
	bool stopped;
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

static size_t vector_length(const char *const *vector, size_t limit)
{
	size_t n = 0;

	while (vector[n] && n < limit)
		n++;
	return n;
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
	if (config->pids_max == 0) {
		snprintf(err, err_len, "pids_max must be > 0");
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

static const char *default_state_dir(void)
{
	return config__get("state_dir", "/var/lib/warren/sandboxes");
}

static const char *default_cgroup_parent(void)
{
	return config__get("jail_cgroup_parent", "warren");
}

/* warren-jail-init: the setting, next to the running binary, in ../bin of
 * it (tests run from build/tests), then the install locations. */
static int try_init(char *out, size_t out_len, const char *dir, const char *name)
{
	if ((size_t)snprintf(out, out_len, "%s/%s", dir, name) >= out_len)
		return -ENAMETOOLONG;
	return access(out, X_OK) == 0 ? 0 : -ENOENT;
}

static int find_init(const char *configured, char *out, size_t out_len)
{
	char self[PATH_MAX];
	ssize_t n;
	char *slash;

	if (!configured)
		configured = config__get("jail_init_path", NULL);
	if (configured) {
		if ((size_t)snprintf(out, out_len, "%s", configured) >= out_len)
			return -ENAMETOOLONG;
		return access(out, X_OK) == 0 ? 0 : -ENOENT;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = 0;
		slash = strrchr(self, '/');
		if (slash) {
			*slash = 0;
			if (try_init(out, out_len, self, "warren-jail-init") == 0 ||
			    try_init(out, out_len, self, "../bin/warren-jail-init") == 0)
				return 0;
		}
	}
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

static int make_dir_0700(const char *path)
{
	return mkdir(path, 0700) ? -errno : 0;
}

/* Reads the init's one status line; 0 on "ok", else -1 with err set. */
static int read_status(int fd, char *err, size_t err_len)
{
	char line[600];
	size_t used = 0;
	uint64_t deadline = clock__monotonic_ms() + START_TIMEOUT_MS;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
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

struct jail *jail__start(const struct jail_config *config, char *err, size_t err_len)
{
	const char *state_dir, *cgroup_parent;
	char init_path[PATH_MAX], upper[PATH_MAX + 16], work[PATH_MAX + 16],
		merged[PATH_MAX + 16], console[PATH_MAX + 16];
	char fd_go[16], fd_status[16], fd_netns[16], tmp_size[32];
	const char *argv[JAIL_ARGV_MAX + 32];
	const char *default_env[] = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
				      "HOME=/root", NULL };
	int go_pipe[2] = { -1, -1 }, status_pipe[2] = { -1, -1 };
	int netns_fd = -1, console_fd = -1, null_fd = -1, pidfd = -1;
	struct jail_cgroup_limits limits;
	struct clone_args args;
	struct jail *jail = NULL;
	struct statfs fs;
	bool dir_made = false, cgroup_made = false;
	size_t argc = 0;
	long pid = -1;
	int ret;

	if (jail__config_validate(config, err, err_len))
		return NULL;
	state_dir = config->state_dir ? config->state_dir : default_state_dir();
	cgroup_parent = config->cgroup_parent ? config->cgroup_parent : default_cgroup_parent();
	if (!path_valid(state_dir) || !id_valid(cgroup_parent)) {
		snprintf(err, err_len, "bad setting state_dir or jail_cgroup_parent");
		return NULL;
	}
	if (find_init(config->init_path, init_path, sizeof(init_path))) {
		snprintf(err, err_len, "warren-jail-init not found (setting jail_init_path)");
		return NULL;
	}
	jail = calloc(1, sizeof(*jail));
	if (!jail) {
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	jail->pidfd = -1;
	snprintf(jail->id, sizeof(jail->id), "%s", config->id);
	snprintf(jail->dir, sizeof(jail->dir), "%s/%s", state_dir, config->id);

	/* The state dir: upper and work of the overlay, its mount point, the
	 * console log and init.pid. mkdir fails on an id already in use. */
	if (mkdir(state_dir, 0700) && errno != EEXIST) {
		snprintf(err, err_len, "mkdir %s: %s", state_dir, strerror(errno));
		goto err;
	}
	if ((ret = make_dir_0700(jail->dir))) {
		snprintf(err, err_len, "mkdir %s: %s", jail->dir, strerror(-ret));
		goto err;
	}
	dir_made = true;
	snprintf(upper, sizeof(upper), "%s/upper", jail->dir);
	snprintf(work, sizeof(work), "%s/work", jail->dir);
	snprintf(merged, sizeof(merged), "%s/merged", jail->dir);
	snprintf(console, sizeof(console), "%s/console.log", jail->dir);
	/* chmod too: the overlay's root takes the upper dir's mode, and the
	 * caller's umask must not make / unreadable to the sandbox's user. */
	if (mkdir(upper, 0755) || mkdir(work, 0700) || mkdir(merged, 0755) ||
	    chmod(upper, 0755) || chmod(merged, 0755)) {
		snprintf(err, err_len, "mkdir in %s: %s", jail->dir, strerror(errno));
		goto err;
	}
	netns_fd = open(config->netns_path, O_RDONLY | O_CLOEXEC);
	if (netns_fd < 0 || fstatfs(netns_fd, &fs) || fs.f_type != NSFS_MAGIC) {
		snprintf(err, err_len, "%s is not a network namespace: %s", config->netns_path,
			 netns_fd < 0 ? strerror(errno) : "not nsfs");
		goto err;
	}
	console_fd = open(console, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (console_fd < 0 || null_fd < 0) {
		snprintf(err, err_len, "open console/null: %s", strerror(errno));
		goto err;
	}

	/* Cgroups with the limits, before anything runs. */
	if ((ret = jail_cgroup__paths(&jail->cgroup, cgroup_parent, config->id))) {
		snprintf(err, err_len, "no usable cgroup hierarchy: %s", strerror(-ret));
		goto err;
	}
	limits.memory_max_bytes = config->memory_max_bytes;
	limits.cpu_millicores = config->cpu_millicores;
	limits.pids_max = config->pids_max;
	if (jail_cgroup__create(&jail->cgroup, &limits, err, err_len))
		goto err;
	cgroup_made = true;

	if (pipe2(go_pipe, O_CLOEXEC) || pipe2(status_pipe, O_CLOEXEC)) {
		snprintf(err, err_len, "pipe: %s", strerror(errno));
		goto err;
	}
	snprintf(fd_go, sizeof(fd_go), "%d", go_pipe[0]);
	snprintf(fd_status, sizeof(fd_status), "%d", status_pipe[1]);
	snprintf(fd_netns, sizeof(fd_netns), "%d", netns_fd);
	snprintf(tmp_size, sizeof(tmp_size), "%llu",
		 (unsigned long long)(config->tmp_size_bytes ? config->tmp_size_bytes
							     : config->memory_max_bytes / 2));
	argv[argc++] = init_path;
	argv[argc++] = "--go-fd";
	argv[argc++] = fd_go;
	argv[argc++] = "--status-fd";
	argv[argc++] = fd_status;
	argv[argc++] = "--netns-fd";
	argv[argc++] = fd_netns;
	argv[argc++] = "--hostname";
	argv[argc++] = config->id;
	argv[argc++] = "--lower";
	argv[argc++] = config->rootfs;
	argv[argc++] = "--upper";
	argv[argc++] = upper;
	argv[argc++] = "--work";
	argv[argc++] = work;
	argv[argc++] = "--merged";
	argv[argc++] = merged;
	argv[argc++] = "--tmp-size";
	argv[argc++] = tmp_size;
	argv[argc++] = "--";
	for (size_t i = 0; config->argv[i]; i++)
		argv[argc++] = config->argv[i];
	argv[argc] = NULL;

	/* New mount, pid, uts and ipc namespaces (the cgroup namespace is made
	 * by the init once it sits in its cgroups; the network one is joined).
	 * The child runs only async-signal-safe syscalls before exec: the
	 * worker is multi-threaded. */
	memset(&args, 0, sizeof(args));
	args.flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_PIDFD;
	args.pidfd = (uint64_t)(uintptr_t)&pidfd;
	args.exit_signal = SIGCHLD;
	pid = syscall(SYS_clone3, &args, sizeof(args));
	if (pid == 0) {
		if (fcntl(go_pipe[0], F_SETFD, 0) || fcntl(status_pipe[1], F_SETFD, 0) ||
		    fcntl(netns_fd, F_SETFD, 0) || dup2(null_fd, 0) < 0 || dup2(console_fd, 1) < 0 ||
		    dup2(console_fd, 2) < 0)
			_exit(126);
		execve(init_path, (char *const *)argv,
		       (char *const *)(config->envp ? config->envp : default_env));
		if (write(status_pipe[1], "error: exec warren-jail-init\n", 29) < 0)
			_exit(127);
		_exit(127);
	}
	if (pid < 0) {
		snprintf(err, err_len, "clone3: %s", strerror(errno));
		goto err;
	}
	jail->pid = (pid_t)pid;
	jail->pidfd = pidfd;
	close(go_pipe[0]);
	go_pipe[0] = -1;
	close(status_pipe[1]);
	status_pipe[1] = -1;
	if ((ret = write_pid_file(jail->dir, jail->pid))) {
		snprintf(err, err_len, "init.pid: %s", strerror(-ret));
		goto err;
	}
	if (jail_cgroup__attach(&jail->cgroup, jail->pid, err, err_len))
		goto err;
	if (write(go_pipe[1], "g", 1) != 1) {
		snprintf(err, err_len, "jail init gone before start: %s", strerror(errno));
		goto err;
	}
	close(go_pipe[1]);
	go_pipe[1] = -1;
	if (read_status(status_pipe[0], err, err_len))
		goto err;
	close(status_pipe[0]);
	close(netns_fd);
	close(console_fd);
	close(null_fd);
	log_info("jail %s: started, init pid %d", jail->id, (int)jail->pid);
	return jail;
err:
	for (int i = 0; i < 2; i++) {
		if (go_pipe[i] >= 0)
			close(go_pipe[i]);
		if (status_pipe[i] >= 0)
			close(status_pipe[i]);
	}
	if (netns_fd >= 0)
		close(netns_fd);
	if (console_fd >= 0)
		close(console_fd);
	if (null_fd >= 0)
		close(null_fd);
	if (jail->pid > 0) {
		/* Print what the init said on the console before it goes. */
		jail__stop(jail);
	} else {
		if (cgroup_made)
			jail_cgroup__destroy(&jail->cgroup, STOP_TIMEOUT_MS);
		if (dir_made)
			remove_tree(jail->dir);
	}
	if (jail->pidfd >= 0)
		close(jail->pidfd);
	free(jail);
	return NULL;
}

pid_t jail__pid(const struct jail *jail)
{
	return jail->pid;
}

int jail__pidfd(const struct jail *jail)
{
	return jail->pidfd;
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
	struct pollfd p = { .fd = jail->pidfd, .events = POLLIN };

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
		step = remove_tree(jail->dir);
		if (step)
			ret = step;
	}
	if (ret)
		log_warn("jail %s: stop incomplete: %s", jail->id, strerror(-ret));
	else
		jail->stopped = true;
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

int jail__memory_limit(const struct jail *jail, uint64_t *bytes)
{
	return jail_cgroup__memory_limit(&jail->cgroup, bytes);
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

int jail__list_on_host(const char *state_dir, const char *cgroup_parent, char ***ids,
		       size_t *count)
{
	struct jail_cgroup probe;
	size_t capacity = 0;
	char parent_dir[PATH_MAX];
	int ret;

	*ids = NULL;
	*count = 0;
	if (!state_dir)
		state_dir = default_state_dir();
	if (!cgroup_parent)
		cgroup_parent = default_cgroup_parent();
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
		state_dir = default_state_dir();
	if (!cgroup_parent)
		cgroup_parent = default_cgroup_parent();
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
		struct timespec ts = { 0, 5000000 };

		nanosleep(&ts, NULL);
	}
	if (pid > 0 && start_time && process_start_time(pid) == start_time && !ret)
		ret = -EBUSY;
	if (!ret) /* as in jail__stop: only once nothing of it runs */
		ret = remove_tree(jail.dir);
	return ret;
}

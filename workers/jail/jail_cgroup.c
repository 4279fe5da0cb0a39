/* jail_cgroup: cgroup v2 or hybrid v1 limits for a jail. jail_cgroup.h. */
#include "warren/jail_cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "warren/log.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

#define CGROUP_ROOT   "/sys/fs/cgroup"
#define CPU_PERIOD_US 100000

static const char *const v1_controllers[] = {"memory", "cpu", "pids"};

static bool is_cgroup2(const char *path)
{
	struct statfs fs;

	return statfs(path, &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC;
}

int jail_cgroup__detect(enum jail_cgroup_layout *layout)
{
	if (is_cgroup2(CGROUP_ROOT)) {
		*layout = JAIL_CGROUP_V2;
		return 0;
	}
	if (access(CGROUP_ROOT "/memory/cgroup.procs", F_OK) == 0 &&
	    access(CGROUP_ROOT "/cpu/cgroup.procs", F_OK) == 0 &&
	    access(CGROUP_ROOT "/pids/cgroup.procs", F_OK) == 0) {
		*layout = JAIL_CGROUP_HYBRID;
		return 0;
	}
	return -ENOTSUP;
}

int jail_cgroup__paths(struct jail_cgroup *cgroup, const char *parent, const char *id)
{
	int ret = jail_cgroup__detect(&cgroup->layout);

	memset(cgroup->dirs, 0, sizeof(cgroup->dirs));
	if (ret)
		return ret;
	if (cgroup->layout == JAIL_CGROUP_V2) {
		snprintf(cgroup->dirs[0], PATH_MAX, CGROUP_ROOT "/%s/%s", parent, id);
		return 0;
	}
	if (is_cgroup2(CGROUP_ROOT "/unified"))
		snprintf(cgroup->dirs[0], PATH_MAX, CGROUP_ROOT "/unified/%s/%s", parent, id);
	for (int i = 0; i < 3; i++)
		snprintf(cgroup->dirs[i + 1], PATH_MAX, CGROUP_ROOT "/%s/%s/%s", v1_controllers[i],
			 parent, id);
	return 0;
}

static int write_file(const char *dir, const char *file, const char *value)
{
	char path[PATH_MAX + 64];
	int fd, ret = 0;
	size_t len = strlen(value);

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, value, len) != (ssize_t)len)
		ret = -errno;
	close(fd);
	return ret;
}

static int read_file(const char *dir, const char *file, char *out, size_t out_len)
{
	char path[PATH_MAX + 64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, out, out_len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	out[n] = 0;
	return 0;
}

/* Makes dir's parent directory (one level; already there is fine) and
 * leaves its path in parent. */
static int make_parent(const char *dir, char *parent, size_t parent_len)
{
	char *slash;

	snprintf(parent, parent_len, "%s", dir);
	slash = strrchr(parent, '/');
	if (!slash)
		return -EINVAL;
	*slash = 0;
	if (mkdir(parent, 0755) && errno != EEXIST)
		return -errno;
	return 0;
}

/* mkdir -p of dir's parent (one level: <hierarchy>/<parent>), then dir. */
static int make_dir(const char *dir)
{
	char parent[PATH_MAX];
	int ret = make_parent(dir, parent, sizeof(parent));

	if (ret)
		return ret;
	if (mkdir(dir, 0755))
		return -errno;
	return 0;
}

/* v2: a controller works in a cgroup only when every ancestor enables it
 * in cgroup.subtree_control: the root, then <parent> (made here if new;
 * it must hold no process, the v2 "no internal processes" rule). */
static int enable_v2_controllers(const char *dir, bool need_cpu)
{
	static const char *const controllers[] = {"+memory", "+pids", "+cpu"};
	char parent[PATH_MAX];
	int ret = make_parent(dir, parent, sizeof(parent));

	if (ret)
		return ret;
	for (size_t i = 0; i < sizeof(controllers) / sizeof(controllers[0]); i++) {
		if (!need_cpu && !strcmp(controllers[i], "+cpu"))
			continue;
		ret = write_file(CGROUP_ROOT, "cgroup.subtree_control", controllers[i]);
		if (!ret)
			ret = write_file(parent, "cgroup.subtree_control", controllers[i]);
		if (ret)
			return ret;
	}
	return 0;
}

int jail_cgroup__create(struct jail_cgroup *cgroup, const struct jail_cgroup_limits *limits,
			char *err, size_t err_len)
{
	char value[64];
	const char *step = "";
	const char *dir = "";
	int ret = 0;

	for (int i = 0; i < JAIL_CGROUP_DIRS; i++) {
		if (!cgroup->dirs[i][0])
			continue;
		if (i == 0 && cgroup->layout == JAIL_CGROUP_V2) {
			ret = enable_v2_controllers(cgroup->dirs[0], limits->cpu_millicores != 0);
			if (ret) {
				dir = cgroup->dirs[0];
				step = "enable controllers";
				goto err;
			}
		}
		ret = make_dir(cgroup->dirs[i]);
		if (ret) {
			/* Only what this call made is removed on the way out. */
			for (int j = 0; j < i; j++)
				if (cgroup->dirs[j][0])
					rmdir(cgroup->dirs[j]);
			snprintf(err, err_len, "mkdir %s: %s", cgroup->dirs[i], strerror(-ret));
			return ret;
		}
	}
	if (cgroup->layout == JAIL_CGROUP_V2) {
		dir = cgroup->dirs[0];
		snprintf(value, sizeof(value), "%" PRIu64, limits->memory_max_bytes);
		step = "memory.max";
		if ((ret = write_file(dir, "memory.max", value)))
			goto err;
		write_file(dir, "memory.swap.max", "0"); /* absent without swap accounting */
		if (limits->cpu_millicores) {
			snprintf(value, sizeof(value), "%u %u",
				 limits->cpu_millicores * (CPU_PERIOD_US / 1000), CPU_PERIOD_US);
			step = "cpu.max";
			if ((ret = write_file(dir, "cpu.max", value)))
				goto err;
		}
		snprintf(value, sizeof(value), "%u", limits->pids_max);
		step = "pids.max";
		if ((ret = write_file(dir, "pids.max", value)))
			goto err;
		return 0;
	}
	dir = cgroup->dirs[1];
	snprintf(value, sizeof(value), "%" PRIu64, limits->memory_max_bytes);
	step = "memory.limit_in_bytes";
	if ((ret = write_file(dir, "memory.limit_in_bytes", value)))
		goto err;
	/* memory+swap at the same value: no swapping past the limit. */
	write_file(dir, "memory.memsw.limit_in_bytes", value);
	dir = cgroup->dirs[2];
	if (limits->cpu_millicores) {
		snprintf(value, sizeof(value), "%u", CPU_PERIOD_US);
		step = "cpu.cfs_period_us";
		if ((ret = write_file(dir, "cpu.cfs_period_us", value)))
			goto err;
		snprintf(value, sizeof(value), "%u",
			 limits->cpu_millicores * (CPU_PERIOD_US / 1000));
		step = "cpu.cfs_quota_us";
		if ((ret = write_file(dir, "cpu.cfs_quota_us", value)))
			goto err;
	}
	dir = cgroup->dirs[3];
	snprintf(value, sizeof(value), "%u", limits->pids_max);
	step = "pids.max";
	if ((ret = write_file(dir, "pids.max", value)))
		goto err;
	return 0;
err:
	snprintf(err, err_len, "cgroup %s/%s: %s", dir, step, strerror(-ret));
	jail_cgroup__destroy(cgroup, 1000);
	return ret;
}

int jail_cgroup__attach(const struct jail_cgroup *cgroup, pid_t pid, char *err, size_t err_len)
{
	char value[32];
	int ret;

	snprintf(value, sizeof(value), "%d", (int)pid);
	for (int i = 0; i < JAIL_CGROUP_DIRS; i++) {
		if (!cgroup->dirs[i][0])
			continue;
		ret = write_file(cgroup->dirs[i], "cgroup.procs", value);
		if (ret) {
			snprintf(err, err_len, "attach %d to %s: %s", (int)pid, cgroup->dirs[i],
				 strerror(-ret));
			return ret;
		}
	}
	return 0;
}

/* Calls fn for each pid in dir/cgroup.procs; returns how many there were
 * (0 when the directory is gone). */
static int for_each_pid(const char *dir, void (*fn)(pid_t))
{
	char path[PATH_MAX + 32], line[32];
	FILE *procs;
	int count = 0;

	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	procs = fopen(path, "re");
	if (!procs)
		return 0;
	while (fgets(line, sizeof(line), procs)) {
		long pid = strtol(line, NULL, 10);

		if (pid > 0) {
			count++;
			if (fn)
				fn((pid_t)pid);
		}
	}
	fclose(procs);
	return count;
}

static void kill_pid(pid_t pid)
{
	kill(pid, SIGKILL);
}

bool jail_cgroup__empty(const struct jail_cgroup *cgroup)
{
	for (int i = 0; i < JAIL_CGROUP_DIRS; i++)
		if (cgroup->dirs[i][0] && for_each_pid(cgroup->dirs[i], NULL) > 0)
			return false;
	return true;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

int jail_cgroup__destroy(const struct jail_cgroup *cgroup, int timeout_ms)
{
	bool have_kill;
	int waited = 0, ret = 0;

	/* A paused (frozen) sandbox is thawed first, so the fallback's
	 * SIGKILLs are acted on whatever the kernel's freezer semantics. */
	if (cgroup->dirs[0][0])
		write_file(cgroup->dirs[0], "cgroup.freeze", "0");
	have_kill = cgroup->dirs[0][0] && write_file(cgroup->dirs[0], "cgroup.kill", "1") == 0;

	/* Without cgroup.kill: SIGKILL what is listed, again until empty (a
	 * fork racing the loop lands in the cgroup and is seen next round). */
	while (!jail_cgroup__empty(cgroup)) {
		if (!have_kill)
			for (int i = 0; i < JAIL_CGROUP_DIRS; i++)
				if (cgroup->dirs[i][0])
					for_each_pid(cgroup->dirs[i], kill_pid);
		if (waited >= timeout_ms) {
			log_warn("cgroup %s: processes left after %d ms",
				 cgroup->dirs[0][0] ? cgroup->dirs[0] : cgroup->dirs[1],
				 timeout_ms);
			ret = -EBUSY;
			break;
		}
		sleep_ms(5);
		waited += 5;
	}
	for (int i = 0; i < JAIL_CGROUP_DIRS; i++) {
		if (!cgroup->dirs[i][0])
			continue;
		/* rmdir can see EBUSY briefly after the last exit. */
		for (int tries = 0; rmdir(cgroup->dirs[i]) && errno != ENOENT; tries++) {
			if (errno != EBUSY || tries >= 200) {
				if (!ret)
					ret = -errno;
				break;
			}
			sleep_ms(5);
		}
	}
	return ret;
}

int jail_cgroup__memory_limit(const struct jail_cgroup *cgroup, uint64_t *bytes)
{
	char value[64];
	int ret;

	if (cgroup->layout == JAIL_CGROUP_V2)
		ret = read_file(cgroup->dirs[0], "memory.max", value, sizeof(value));
	else
		ret = read_file(cgroup->dirs[1], "memory.limit_in_bytes", value, sizeof(value));
	if (ret)
		return ret;
	if (!strncmp(value, "max", 3)) {
		*bytes = UINT64_MAX;
		return 0;
	}
	*bytes = strtoull(value, NULL, 10);
	return 0;
}

/* "frozen 1" in cgroup.events: every process of the cgroup is frozen. */
static int jail_cgroup__events_frozen(const char *dir, bool *frozen)
{
	char events[512];
	const char *line;
	int ret = read_file(dir, "cgroup.events", events, sizeof(events));

	if (ret)
		return ret;
	line = strstr(events, "frozen ");
	if (!line)
		return -ENOTSUP; /* a kernel without the v2 freezer */
	*frozen = line[7] == '1';
	return 0;
}

int jail_cgroup__freeze(const struct jail_cgroup *cgroup, bool frozen, int timeout_ms)
{
	bool now = !frozen;
	int ret, waited = 0;

	if (!cgroup->dirs[0][0])
		return -ENOTSUP;
	ret = write_file(cgroup->dirs[0], "cgroup.freeze", frozen ? "1" : "0");
	if (ret)
		return ret == -ENOENT ? -ENOTSUP : ret;
	for (;;) {
		ret = jail_cgroup__events_frozen(cgroup->dirs[0], &now);
		if (ret || now == frozen)
			return ret;
		if (waited >= timeout_ms)
			return -ETIMEDOUT;
		sleep_ms(1);
		waited += 1;
	}
}

int jail_cgroup__frozen(const struct jail_cgroup *cgroup, bool *frozen)
{
	if (!cgroup->dirs[0][0])
		return -ENOTSUP;
	return jail_cgroup__events_frozen(cgroup->dirs[0], frozen);
}

/* The value of key in a flat-keyed cgroup file ("key value" lines). */
static int cgroup__stat_value(const char *dir, const char *file, const char *key, uint64_t *out)
{
	char text[4096], *line, *save = NULL;
	size_t key_len = strlen(key);
	int ret = read_file(dir, file, text, sizeof(text));

	if (ret)
		return ret;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (!strncmp(line, key, key_len) && line[key_len] == ' ') {
			*out = strtoull(line + key_len + 1, NULL, 10);
			return 0;
		}
	}
	return -ENOENT;
}

static int cgroup__number(const char *dir, const char *file, uint64_t *out)
{
	char value[64];
	int ret = read_file(dir, file, value, sizeof(value));

	if (ret)
		return ret;
	*out = strtoull(value, NULL, 10);
	return 0;
}

int jail_cgroup__usage(const struct jail_cgroup *cgroup, uint64_t *cpu_usec, uint64_t *mem_used,
		       uint64_t *mem_cache)
{
	uint64_t charged = 0, cache = 0, nanoseconds = 0;
	int ret = -ENOENT;

	if (cgroup->dirs[0][0])
		ret = cgroup__stat_value(cgroup->dirs[0], "cpu.stat", "usage_usec", cpu_usec);
	if (ret && cgroup->layout == JAIL_CGROUP_HYBRID && cgroup->dirs[2][0] &&
	    cgroup__number(cgroup->dirs[2], "cpuacct.usage", &nanoseconds) == 0) {
		*cpu_usec = nanoseconds / 1000;
		ret = 0;
	}
	if (ret)
		return ret;
	if (cgroup->layout == JAIL_CGROUP_V2) {
		ret = cgroup__number(cgroup->dirs[0], "memory.current", &charged);
		if (!ret)
			ret = cgroup__stat_value(cgroup->dirs[0], "memory.stat", "file", &cache);
	} else {
		ret = cgroup__number(cgroup->dirs[1], "memory.usage_in_bytes", &charged);
		if (!ret)
			ret = cgroup__stat_value(cgroup->dirs[1], "memory.stat", "cache", &cache);
	}
	if (ret)
		return ret;
	*mem_cache = cache < charged ? cache : charged;
	*mem_used = charged - *mem_cache;
	return 0;
}

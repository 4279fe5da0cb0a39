/* jail_cgroup: the cgroups of one jail. Two layouts (workers/jail/README.md,
 * "Cgroups"): pure cgroup v2 at /sys/fs/cgroup (limits and kill in one
 * directory), or the hybrid layout of this build machine: v1 memory, cpu
 * and pids hierarchies for the limits plus the v2 tree at
 * /sys/fs/cgroup/unified (no controllers) for cgroup.kill. */
#ifndef WARREN_JAIL_CGROUP_H
#define WARREN_JAIL_CGROUP_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum jail_cgroup_layout { JAIL_CGROUP_V2 = 0, JAIL_CGROUP_HYBRID };

#define JAIL_CGROUP_DIRS 4

struct jail_cgroup {
	enum jail_cgroup_layout layout;
	/* dirs[0]: the v2 directory (limits on V2; kill/track on HYBRID, empty
	 * when this host has no unified tree); dirs[1..3]: v1 memory, cpu,
	 * pids on HYBRID, empty on V2. */
	char dirs[JAIL_CGROUP_DIRS][PATH_MAX];
};

struct jail_cgroup_limits {
	uint64_t memory_max_bytes;
	uint32_t cpu_millicores; /* 0: none */
	uint32_t pids_max;
};

/* Which layout this host has. 0, or -ENOTSUP (no usable cgroups). */
int jail_cgroup__detect(enum jail_cgroup_layout *layout);
/* Fills the paths of parent/id without touching anything. */
int jail_cgroup__paths(struct jail_cgroup *cgroup, const char *parent, const char *id);
/* Creates the directories and writes the limits. On failure, what was
 * created is removed. 0 or -errno (err says which file). */
int jail_cgroup__create(struct jail_cgroup *cgroup, const struct jail_cgroup_limits *limits,
			char *err, size_t err_len);
/* Moves pid into every directory. 0 or -errno. */
int jail_cgroup__attach(const struct jail_cgroup *cgroup, pid_t pid, char *err, size_t err_len);
/* Kills every process in the cgroups (cgroup.kill, else SIGKILL to each
 * pid in cgroup.procs), waits up to timeout_ms until all are empty, then
 * removes the directories. 0 when none is left, else -errno. */
int jail_cgroup__destroy(const struct jail_cgroup *cgroup, int timeout_ms);
/* True when the cgroup has no process left (a missing dir is empty). */
bool jail_cgroup__empty(const struct jail_cgroup *cgroup);
/* Freezes (frozen=true) or thaws every process of the cgroup with the v2
 * freezer (cgroup.freeze of dirs[0]: the v2 directory, or the unified
 * tree's on HYBRID) and waits up to timeout_ms until cgroup.events agrees.
 * 0, -ENOTSUP (no v2 directory: no freezer we use), -ETIMEDOUT or -errno. */
int jail_cgroup__freeze(const struct jail_cgroup *cgroup, bool frozen, int timeout_ms);
/* Whether every process of the cgroup is frozen now. 0 or -errno. */
int jail_cgroup__frozen(const struct jail_cgroup *cgroup, bool *frozen);
/* The enforced memory limit. 0 or -errno. */
int jail_cgroup__memory_limit(const struct jail_cgroup *cgroup, uint64_t *bytes);

/* What the sandbox's processes use now: CPU time since the cgroup was made
 * (cpu.stat usage_usec of the v2 directory, which the kernel keeps with or
 * without the cpu controller; v1 cpuacct.usage otherwise), memory charged
 * minus page cache, and page cache (memory.current/memory.stat "file" on
 * V2, memory.usage_in_bytes/memory.stat "cache" on HYBRID). 0 or -errno
 * (-ENOENT: no source for CPU time). */
int jail_cgroup__usage(const struct jail_cgroup *cgroup, uint64_t *cpu_usec, uint64_t *mem_used,
		       uint64_t *mem_cache);

#endif

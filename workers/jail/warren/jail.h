/* jail: the `jail` runtime. A sandbox is the agent running as a host
 * process inside the slot's network namespace, with its own mount, pid,
 * uts, ipc and cgroup namespaces and its own user namespace (root inside
 * is an unprivileged host uid range), the template's rootfs idmapped as a
 * read-only overlay lower with a per-sandbox upper, procfs with the
 * kernel's knobs read-only, a cgroup with memory/cpu/pids limits, a
 * reduced capability set, no_new_privs and a seccomp filter.
 * workers/jail/README.md; ARCHITECTURE.md, "Runtimes";
 * workers/jail/README.md (what this host supports, the exact cap and
 * syscall sets). Needs root on the host. */
#ifndef WARREN_JAIL_H
#define WARREN_JAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define JAIL_ID_MAX	 63
#define JAIL_ARGV_MAX	 32
#define JAIL_ENV_MAX	 64
#define JAIL_VOLUMES_MAX 8

/* A volume (docs/volumes.md): an ext4 image file the host loop-mounts on
 * <state dir>/vol<N> and the jail sees read-write at path, idmapped like
 * the template (on-disk uid 0 is the sandbox's root). */
struct jail_volume {
	const char *image; /* absolute host path of the image */
	const char *path;  /* absolute path inside the sandbox: segments of
			      [A-Za-z0-9._-], no "." or "..", not "/" */
};
#define JAIL_AGENT_PORT		 49983
#define JAIL_CONSOLE_MAX_DEFAULT (16ULL << 20)

/* The host-wide settings of the jail runtime (docs/configuration.md names
 * the settings that fill them). The binary that runs jails reads them once
 * and hands them over with jail__configure_host; a NULL or 0 field keeps
 * the default given beside it. This library never reads the configuration
 * itself. */
struct jail_host_settings {
	const char *state_dir;	    /* /var/lib/warren/sandboxes */
	const char *cgroup_parent;  /* "warren" */
	const char *disk_cache_dir; /* /var/cache/warren/jail-disks */
	const char *init_path;	    /* NULL: searched next to the running binary,
				       ../bin of it, then /usr/libexec/warren */
	const char *uid_dir;	    /* /run/warren/jail-uids: host uid range
				       reservations */
	int64_t first_uid;	    /* 2^30: the first host uid handed out */
};

/* Makes settings the host's from now on (the strings are not copied: they
 * must live until exit). Call before the first jail starts; not
 * thread-safe against concurrent starts. */
void jail__configure_host(const struct jail_host_settings *settings);

/* The settings in force (defaults filled in). */
const struct jail_host_settings *jail__host_settings(void);

struct jail_config {
	const char *id;			   /* sandbox id: hostname, cgroup and state dir name;
					      1..63 of [a-zA-Z0-9_-] */
	const char *rootfs;		   /* template rootfs dir (overlay lower, read-only) */
	const char *netns_path;		   /* network namespace to join (/run/netns/<name>) */
	const char *state_dir;		   /* NULL: the host settings' state_dir */
	const char *cgroup_parent;	   /* NULL: the host settings' cgroup_parent */
	const char *init_path;		   /* host path of warren-jail-init; NULL: the host
					      settings' init_path, else searched */
	uint64_t memory_max_bytes;	   /* > 0 */
	uint32_t cpu_millicores;	   /* 1000 = one CPU; 0: no CPU limit */
	uint32_t pids_max;		   /* > 0 */
	uint64_t tmp_size_bytes;	   /* /tmp tmpfs size; 0: memory_max_bytes / 2 */
	uint64_t disk_max_bytes;	   /* writable layer (the overlay's upper) limit: a
					      sparse ext4 image of this size, loop-mounted by
					      the host; 0: the upper dir on the state dir's
					      filesystem, no limit */
	const char *disk_cache_dir;	   /* where the formatted empty images are kept,
					     one per size; NULL: the host settings'
					     disk_cache_dir */
	uint64_t console_max_bytes;	   /* console.log (the program's stdout and stderr,
					     relayed by the jail's init) keeps this much, then
					     one line saying so; 0: JAIL_CONSOLE_MAX_DEFAULT */
	const char *const *argv;	   /* what to run: argv[0] an absolute path inside the
					      rootfs; NULL-terminated, < JAIL_ARGV_MAX */
	const char *const *envp;	   /* its environment, NULL-terminated, < JAIL_ENV_MAX;
					      NULL: PATH, HOME=/root only */
	const struct jail_volume *volumes; /* mounted read-write; NULL when none */
	size_t volume_count;		   /* <= JAIL_VOLUMES_MAX */
	int volume_wait_ms;		   /* how long a volume another sandbox of this
					      host still holds is waited for */
};

enum jail_state { JAIL_RUNNING = 0, JAIL_EXITED };

struct jail;

/* Makes image (absent) a volume's sparse ext4 image of size bytes, its
 * root directory 0777 and owned by the sandbox's root (docs/volumes.md).
 * 0 (also when it exists) or -errno with err filled. */
int jail__volume_make(const char *image, uint64_t size, char *err, size_t err_len);

/* Checks a configuration without touching the system: 0, or -EINVAL with
 * the first problem written to err. */
int jail__config_validate(const struct jail_config *config, char *err, size_t err_len);

/* The agent's argv for a jail (static strings plus token_hash, which must
 * outlive the jail__start call): /usr/local/bin/warren-agent --listen
 * 0.0.0.0:49983 [--token-hash TOKEN_HASH]. out needs 6 slots. */
void jail__agent_argv(const char *token_hash, const char *out[6]);

/* Starts a sandbox as described in the header comment and returns once its
 * init has exec'ed (the agent may not listen yet: poll /health). NULL with
 * the reason in err on failure, and then nothing is left behind. */
struct jail *jail__start(const struct jail_config *config, char *err, size_t err_len);

/* The host pid of the sandbox's init (pid 1 inside), and a pidfd of it that
 * becomes readable when it exits (for an event loop). */
pid_t jail__pid(const struct jail *jail);
int jail__pidfd(const struct jail *jail);

/* The host uid (and gid) that is root inside the sandbox: the first of
 * its 65536 ids, reserved for it while it lives. */
uint32_t jail__host_uid(const struct jail *jail);

/* Running or exited; on JAIL_EXITED, *wait_status (if non-NULL) gets the
 * init's wait status. Never blocks. */
enum jail_state jail__state(struct jail *jail, int *wait_status);

/* Waits up to timeout_ms (< 0: forever) for the init to exit. 0 when it
 * exited, -ETIMEDOUT otherwise. */
int jail__wait(struct jail *jail, int timeout_ms);

/* Kills everything in the sandbox, waits until no process is left, removes
 * its cgroups and its state dir (upper layer included). Idempotent; 0 or
 * -errno of the first cleanup step that failed (the rest still ran). */
int jail__stop(struct jail *jail);

/* jail__stop, then frees the handle. */
void jail__destroy(struct jail *jail);

/* The memory limit the kernel enforces on the sandbox, read back from its
 * cgroup (memory.max on v2, memory.limit_in_bytes on v1). 0 or -errno. */
int jail__memory_limit(const struct jail *jail, uint64_t *bytes);

/* Pause (frozen=true) or resume: freezes or thaws every process of the
 * sandbox with the cgroup v2 freezer and waits up to timeout_ms until the
 * kernel reports it done. Processes, memory and files stay on the host.
 * Idempotent. 0, -ENOTSUP (no v2 cgroup directory), -ESRCH (stopped),
 * -ETIMEDOUT or -errno. */
int jail__freeze(struct jail *jail, bool frozen, int timeout_ms);
/* Whether the sandbox is frozen now (cgroup.events). 0 or -errno. */
int jail__frozen(const struct jail *jail, bool *frozen);
/* What a running sandbox uses (workers/jail/README.md, "Usage"). */
struct jail_usage {
	uint64_t cpu_usec;	   /* CPU time of all its processes since it started */
	uint64_t mem_used_bytes;   /* memory charged to its cgroup minus page cache */
	uint64_t mem_cache_bytes;  /* page cache charged to it */
	uint64_t mem_limit_bytes;  /* the enforced limit */
	uint64_t disk_used_bytes;  /* its writable layer's image: used and size; */
	uint64_t disk_total_bytes; /* both 0 without an image (disk_max_bytes 0) */
};

/* Reads the figures above from the sandbox's cgroup and the filesystem of
 * its disk image. 0 or -errno. */
int jail__usage(const struct jail *jail, struct jail_usage *out);

/* The host path of the sandbox's console.log (its program's stdout and
 * stderr, capped at console_max_bytes). 0 or -ENAMETOOLONG. */
int jail__console_path(const struct jail *jail, char *out, size_t out_len);

/* The host path of the sandbox's writable layer (the overlay's upper:
 * disk/upper on its disk image, else upper): files it wrote, whiteouts
 * for files it removed, owners in its host uid range. 0 or -ENAMETOOLONG. */
int jail__upper_dir(const struct jail *jail, char *out, size_t out_len);

/* Reconciliation after a worker restart: the ids of sandboxes with a state
 * dir under state_dir or a cgroup under cgroup_parent (NULL: defaults).
 * *ids is malloc'ed, each id too (jail__free_ids). 0 or -errno. */
int jail__list_on_host(const char *state_dir, const char *cgroup_parent, char ***ids,
		       size_t *count);
void jail__free_ids(char **ids, size_t count);

/* Kills and cleans up what is left of sandbox id (processes, cgroups,
 * state dir) without a handle. 0 when nothing is left (also when nothing
 * was there), else -errno. */
int jail__kill_by_id(const char *state_dir, const char *cgroup_parent, const char *id);

#endif

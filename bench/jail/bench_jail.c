/* bench_jail: the jail runtime's start figures, and its peer.
 *
 *   bench_jail [RUNS]        (root; WARREN_TEMPLATES_DIR with `minimal`)
 *
 * Prints, over RUNS starts each (default 20), the median and min/max of
 *   1. jail__start -> the agent answering /health (the sandbox start the
 *      worker waits for);
 *   2. jail__start -> first command output (`busybox echo ready` as the
 *      program: start, run, output, exit);
 *   3. the same command under Debian's bubblewrap: `bwrap --unshare-all
 *      --unshare-user` (a user namespace, root inside), the template
 *      rootfs read-only, a tmpfs /tmp, fresh /proc and /dev, and the
 *      jail's own seccomp filter (--seccomp), from exec to output + exit;
 * and the ratio 2 / 3. The jail does more per start: state dir, cgroups
 * with limits, uid range, idmapped template, overlay with a writable
 * layer, masked procfs, the slot's network namespace. Alternates the two
 * peers run by run so load on the machine hits both alike. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jail_policy.h"
#include "jail_test_util.h"
#include "warren/clock.h"
#include "warren/jail.h"
#include "warren/templates.h"

#define MAX_RUNS      200
#define CGROUP_PARENT "warren-bench"

static char base_dir[64], state_dir[128], netns_name[64], netns_path[128];
static struct template_info template;
static int seccomp_fd = -1;

static int compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void print_figure(const char *what, uint64_t *us, int runs)
{
	qsort(us, (size_t)runs, sizeof(us[0]), compare_u64);
	printf("%-52s median %7.1f ms  (min %.1f, max %.1f, %d runs)\n", what,
	       us[runs / 2] / 1000.0, us[0] / 1000.0, us[runs - 1] / 1000.0, runs);
}

static struct jail *start(const char *id, const char *const *argv, char *err, size_t err_len)
{
	struct jail_config config = {
	    .id = id,
	    .rootfs = template.rootfs,
	    .netns_path = netns_path,
	    .state_dir = state_dir,
	    .cgroup_parent = CGROUP_PARENT,
	    .memory_max_bytes = 512ULL << 20,
	    .cpu_millicores = 1000,
	    .pids_max = 256,
	    .argv = argv,
	};
	const char *disk_mb = getenv("BENCH_JAIL_DISK_MB"); /* the writable layer's quota */

	if (disk_mb)
		config.disk_max_bytes = strtoull(disk_mb, NULL, 10) << 20;

	return jail__start(&config, err, err_len);
}

/* jail__start -> the program's output is in console.log and it exited. */
static int jail_first_output(int run, uint64_t *us)
{
	const char *argv[] = {"/bin/busybox", "echo", "ready", NULL};
	char id[32], err[512], path[PATH_MAX], text[64] = "";
	uint64_t t0 = clock__monotonic_ns();
	struct jail *jail;
	FILE *f;

	snprintf(id, sizeof(id), "bench-cmd-%d", run);
	jail = start(id, argv, err, sizeof(err));
	if (!jail) {
		fprintf(stderr, "jail__start: %s\n", err);
		return -1;
	}
	jail__wait(jail, 20000);
	*us = (clock__monotonic_ns() - t0) / 1000;
	snprintf(path, sizeof(path), "%s/%s/console.log", state_dir, id);
	f = fopen(path, "r");
	if (f) {
		if (!fgets(text, sizeof(text), f))
			text[0] = 0;
		fclose(f);
	}
	jail__destroy(jail);
	if (strcmp(text, "ready\n")) {
		fprintf(stderr, "jail: unexpected output \"%s\"\n", text);
		return -1;
	}
	return 0;
}

/* jail__start -> GET /health answered by the agent (any status). */
static int jail_health(int run, uint64_t *us)
{
	const char *argv[6];
	char id[32], err[512];
	uint64_t t0 = clock__monotonic_ns();
	struct jail *jail;
	int status;

	jail__agent_argv(NULL, argv);
	snprintf(id, sizeof(id), "bench-agent-%d", run);
	jail = start(id, argv, err, sizeof(err));
	if (!jail) {
		fprintf(stderr, "jail__start: %s\n", err);
		return -1;
	}
	status = jt__http_get_in_netns(netns_path, JAIL_AGENT_PORT, "/health", 20000);
	*us = (clock__monotonic_ns() - t0) / 1000;
	jail__destroy(jail);
	if (status <= 0) {
		fprintf(stderr, "agent did not answer /health\n");
		return -1;
	}
	return 0;
}

/* bwrap with the same command; the clock runs from fork to output + exit. */
static int bwrap_first_output(uint64_t *us)
{
	char seccomp_arg[16], text[64] = "";
	int out[2], status = 0;
	size_t used = 0;
	uint64_t t0;
	pid_t pid;

	if (pipe2(out, O_CLOEXEC))
		return -1;
	snprintf(seccomp_arg, sizeof(seccomp_arg), "%d", seccomp_fd);
	lseek(seccomp_fd, 0, SEEK_SET);
	t0 = clock__monotonic_ns();
	pid = fork();
	if (pid == 0) {
		dup2(out[1], 1);
		execlp("bwrap", "bwrap", "--unshare-all", "--unshare-user", "--uid", "0", "--gid",
		       "0", "--ro-bind", template.rootfs, "/", "--tmpfs", "/tmp", "--proc", "/proc",
		       "--dev", "/dev", "--die-with-parent", "--seccomp", seccomp_arg,
		       "/bin/busybox", "echo", "ready", (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	for (;;) {
		ssize_t n = read(out[0], text + used, sizeof(text) - 1 - used);

		if (n <= 0)
			break;
		used += (size_t)n;
	}
	text[used] = 0;
	close(out[0]);
	waitpid(pid, &status, 0);
	*us = (clock__monotonic_ns() - t0) / 1000;
	if (strcmp(text, "ready\n") || !WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "bwrap: output \"%s\", status %d\n", text, status);
		return -1;
	}
	return 0;
}

/* The jail's seccomp filter as BPF in a memfd, for bwrap --seccomp. */
static int export_filter(void)
{
	char err[256];
	size_t rules;
	scmp_filter_ctx ctx = jail_policy__seccomp_build(&rules, err, sizeof(err));
	int fd = memfd_create("jail-seccomp", 0);

	if (!ctx || fd < 0 || seccomp_export_bpf(ctx, fd)) {
		fprintf(stderr, "seccomp filter: %s\n", ctx ? strerror(errno) : err);
		return -1;
	}
	seccomp_release(ctx);
	seccomp_fd = fd;
	return 0;
}

static int setup(void)
{
	const char *templates_dir = getenv("WARREN_TEMPLATES_DIR");
	char err[256];

	if (!templates_dir ||
	    templates__read(templates_dir, "minimal", &template, err, sizeof(err))) {
		fprintf(stderr, "bench_jail: the minimal template in WARREN_TEMPLATES_DIR: %s\n",
			templates_dir ? err : "not set");
		return -1;
	}
	snprintf(base_dir, sizeof(base_dir), "/tmp/warren-jail-bench-XXXXXX");
	if (!mkdtemp(base_dir))
		return -1;
	snprintf(state_dir, sizeof(state_dir), "%s/sandboxes", base_dir);
	snprintf(netns_name, sizeof(netns_name), "warren-jail-bench-%d", (int)getpid());
	snprintf(netns_path, sizeof(netns_path), "/run/netns/%s", netns_name);
	if (jt__run("ip netns add %s && ip -n %s link set lo up", netns_name, netns_name))
		return -1;
	return export_filter();
}

int main(int argc, char **argv)
{
	static uint64_t health[MAX_RUNS], ours[MAX_RUNS], bwrap[MAX_RUNS];
	int runs = argc > 1 ? atoi(argv[1]) : 20, ret = 1;

	if (runs < 1 || runs > MAX_RUNS || geteuid() != 0) {
		fprintf(stderr, "usage (root): bench_jail [RUNS <= %d]\n", MAX_RUNS);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (setup())
		goto out;
	if (jt__run("command -v bwrap >/dev/null")) {
		fprintf(stderr, "bench_jail: bwrap not installed (apt-get install bubblewrap)\n");
		goto out;
	}
	for (int i = 0; i < runs; i++)
		if (jail_health(i, &health[i]) || (i % 2 == 0 && bwrap_first_output(&bwrap[i])) ||
		    jail_first_output(i, &ours[i]) || (i % 2 == 1 && bwrap_first_output(&bwrap[i])))
			goto out;
	print_figure("jail: jail__start -> agent /health", health, runs);
	print_figure("jail: jail__start -> first command output", ours, runs);
	print_figure("bwrap --unshare-all (userns, ro root, tmpfs, seccomp)", bwrap, runs);
	printf("ratio jail / bwrap (first command output, medians): %.2f\n",
	       (double)ours[runs / 2] / (double)bwrap[runs / 2]);
	ret = 0;
out:
	if (netns_name[0])
		jt__run("ip netns delete %s 2>/dev/null", netns_name);
	jt__run("rmdir /sys/fs/cgroup/" CGROUP_PARENT " /sys/fs/cgroup/*/" CGROUP_PARENT
		" 2>/dev/null");
	if (base_dir[0])
		jt__run("rm -rf '%s'", base_dir);
	return ret;
}

/* The jail escape suite: a hostile program (escape_probe.c, built static
 * by the tests) runs as root inside a real jail sandbox made by
 * jail__start from the `minimal` template (WARREN_TEMPLATES_DIR) and tries
 * one attack per test; each test asserts that the attack failed inside and
 * that the host did not change. docs/security.md, "Jail runtime", maps each
 * attack to its test. Needs root, overlayfs, idmapped mounts, cgroups and
 * `ip`; says why and skips otherwise. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "jail_test_util.h"
#include "warren/jail.h"
#include "warren/templates.h"

#define CGROUP_PARENT  "warren-sec-test"
#define MEMORY_MAX     (64ULL << 20)
#define PIDS_MAX       48
#define DISK_MAX       (24ULL << 20) /* the writable layer's ext4 image */
#define BYSTANDER_PORT 8081
#define CONSOLE_MAX    (1ULL << 20)
#define CPU_MILLICORES 500

static char base_dir[64];
static char state_dir[128];
static char rootfs[128];
static char netns_name[64];
static char netns_path[128];

/* Jails a test started, stopped by the next test's setup if it failed. */
static struct jail *running[2];

static void stop_running(void)
{
	for (size_t i = 0; i < 2; i++) {
		jail__destroy(running[i]);
		running[i] = NULL;
	}
}

static int test_setup(void **state)
{
	(void)state;
	stop_running();
	return 0;
}

static int group_setup(void **state)
{
	const char *templates_dir = getenv("WARREN_TEMPLATES_DIR");
	const char *build_dir = getenv("WARREN_BUILD_DIR");
	struct template_info template;
	char err[256];
	(void)state;

	if (templates__read(templates_dir, "minimal", &template, err, sizeof(err))) {
		printf("FAIL: the minimal template in WARREN_TEMPLATES_DIR: %s\n", err);
		return -1;
	}
	snprintf(base_dir, sizeof(base_dir), "/tmp/warren-sec-test-XXXXXX");
	if (!mkdtemp(base_dir))
		return -1;
	snprintf(state_dir, sizeof(state_dir), "%s/sandboxes", base_dir);
	snprintf(rootfs, sizeof(rootfs), "%s/rootfs", base_dir);
	/* The minimal template plus the probe (a copy: templates stay as built). */
	if (jt__run("cp -a '%s' '%s' && install -m 0755 '%s/tests/escape-probe' '%s/escape-probe'",
		    template.rootfs, rootfs, build_dir, rootfs) != 0) {
		printf("FAIL: copying the template and the probe\n");
		return -1;
	}
	snprintf(netns_name, sizeof(netns_name), "warren-jail-sec-%d", (int)getpid());
	snprintf(netns_path, sizeof(netns_path), "/run/netns/%s", netns_name);
	if (jt__run("ip netns add %s && ip -n %s link set lo up", netns_name, netns_name) != 0) {
		printf("FAIL: cannot create network namespace %s\n", netns_name);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	stop_running();
	if (netns_name[0])
		jt__run("ip netns delete %s 2>/dev/null", netns_name);
	jt__run("rmdir /sys/fs/cgroup/" CGROUP_PARENT " /sys/fs/cgroup/*/" CGROUP_PARENT
		" 2>/dev/null");
	if (base_dir[0])
		jt__run("rm -rf '%s'", base_dir);
	return 0;
}

static struct jail *start(const char *id, const char *const *argv, size_t slot)
{
	struct jail_config config = {
	    .id = id,
	    .rootfs = rootfs,
	    .netns_path = netns_path,
	    .state_dir = state_dir,
	    .cgroup_parent = CGROUP_PARENT,
	    .memory_max_bytes = MEMORY_MAX,
	    .cpu_millicores = CPU_MILLICORES,
	    .pids_max = PIDS_MAX,
	    .disk_max_bytes = DISK_MAX,
	    .disk_cache_dir = base_dir,
	    .console_max_bytes = CONSOLE_MAX,
	    .argv = argv,
	};
	char err[512];
	struct jail *jail = jail__start(&config, err, sizeof(err));

	if (!jail)
		fail_msg("jail__start %s: %s", id, err);
	running[slot] = jail;
	return jail;
}

/* The first out_len - 1 bytes of the sandbox's console.log. */
static void read_console(const char *id, char *out, size_t out_len)
{
	char path[PATH_MAX];
	size_t n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s/console.log", state_dir, id);
	out[0] = 0;
	f = fopen(path, "r");
	if (!f)
		return;
	n = fread(out, 1, out_len - 1, f);
	out[n] = 0;
	fclose(f);
}

/* Runs the probe with one attack in a fresh jail until it exits; returns
 * its wait status (the init passes the probe's exit on; 128 + signal when
 * a signal killed it), its output in out. */
static int run_attack(const char *attack, char *out, size_t out_len)
{
	const char *argv[] = {"/escape-probe", attack, NULL};
	char id[64];
	int status = -1;
	struct jail *jail;

	snprintf(id, sizeof(id), "sec-%s", attack);
	for (char *p = id; *p; p++)
		if (*p == '_')
			*p = '-';
	jail = start(id, argv, 0);
	if (jail__wait(jail, 60000))
		fail_msg("%s: the probe did not finish within 60 s", attack);
	assert_int_equal(jail__state(jail, &status), JAIL_EXITED);
	read_console(id, out, out_len);
	printf("%s", out);
	assert_int_equal(jail__stop(jail), 0);
	jail__destroy(jail);
	running[0] = NULL;
	return status;
}

/* The attack was stopped: the probe exited 0. */
static void assert_stopped(const char *attack)
{
	char out[4096];
	int status = run_attack(attack, out, sizeof(out));

	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) != 0)
		fail_msg("%s: the probe exited %d (1 = escaped, 2 = broken)", attack,
			 WEXITSTATUS(status));
}

static void read_host(const char *path, char *out, size_t out_len)
{
	FILE *f = fopen(path, "r");
	size_t n = 0;

	out[0] = 0;
	if (f) {
		n = fread(out, 1, out_len - 1, f);
		fclose(f);
	}
	out[n] = 0;
}

/* The attack was stopped and the host file at path is unchanged. */
static void assert_knob_kept(const char *attack, const char *path)
{
	char before[512], after[512];

	read_host(path, before, sizeof(before));
	assert_stopped(attack);
	read_host(path, after, sizeof(after));
	assert_string_equal(before, after);
}

static void test_escape_core_pattern(void **state)
{
	(void)state;
	assert_knob_kept("core_pattern", "/proc/sys/kernel/core_pattern");
}

static void test_escape_modprobe(void **state)
{
	(void)state;
	assert_knob_kept("modprobe", "/proc/sys/kernel/modprobe");
}

static void test_escape_sysrq_trigger(void **state)
{
	(void)state;
	assert_knob_kept("sysrq", "/proc/sys/kernel/sysrq");
}

static void test_escape_drop_caches(void **state)
{
	(void)state;
	assert_stopped("drop_caches");
}

static void test_escape_proc_sys_read_only(void **state)
{
	(void)state;
	assert_stopped("proc_sys_write");
}

static void test_escape_proc_masked_files(void **state)
{
	(void)state;
	assert_stopped("proc_masked");
}

static void test_escape_mount_proc(void **state)
{
	(void)state;
	assert_stopped("mount_proc");
}

static void test_escape_mount_sysfs(void **state)
{
	(void)state;
	assert_stopped("mount_sysfs");
}

static void test_escape_mount_tmpfs(void **state)
{
	(void)state;
	assert_stopped("mount_tmpfs");
}

static void test_escape_mknod_block_device(void **state)
{
	(void)state;
	assert_stopped("mknod_block");
}

static void test_escape_keyctl(void **state)
{
	(void)state;
	assert_stopped("keyctl");
}

static void test_escape_bpf(void **state)
{
	(void)state;
	assert_stopped("bpf");
}

static void test_escape_perf_event_open(void **state)
{
	(void)state;
	assert_stopped("perf_event_open");
}

static void test_escape_userfaultfd(void **state)
{
	(void)state;
	assert_stopped("userfaultfd");
}

static void test_escape_kexec_load(void **state)
{
	(void)state;
	assert_stopped("kexec_load");
}

static void test_escape_init_module(void **state)
{
	(void)state;
	assert_stopped("init_module");
}

static void test_escape_open_by_handle_at(void **state)
{
	(void)state;
	assert_stopped("open_by_handle_at");
}

static void test_escape_ptrace_init(void **state)
{
	(void)state;
	assert_stopped("ptrace_init");
}

static void test_escape_ptrace_agent(void **state)
{
	(void)state;
	assert_stopped("ptrace_agent");
}

static void test_escape_userns_then_mount(void **state)
{
	(void)state;
	assert_stopped("userns_mount");
}

/* The sandbox's processes run as its own unprivileged host uid: a process
 * that got out of every namespace would still be nobody on the host. */
static void test_escape_host_uid_unprivileged(void **state)
{
	const char *argv[] = {"/bin/sh", "-c", "sleep 30", NULL};
	struct jail *jail;
	char value[128], expect[128];
	(void)state;

	jail = start("sec-uid", argv, 0);
	assert_true(jail__host_uid(jail) >= 65536);
	snprintf(expect, sizeof(expect), "%u", jail__host_uid(jail));
	assert_int_equal(jt__status_field(jail__pid(jail), "Uid", value, sizeof(value)), 0);
	assert_int_equal(strncmp(value, expect, strlen(expect)), 0);
	assert_int_equal(jt__status_field(jail__pid(jail), "Groups", value, sizeof(value)), 0);
	assert_string_equal(value, ""); /* no host group kept */
}

/* pids_max stops a fork bomb inside; the host can still fork. */
static void test_escape_fork_bomb(void **state)
{
	char out[4096];
	int status, made = -1;
	pid_t child;
	(void)state;

	status = run_attack("fork_bomb", out, sizeof(out));
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(sscanf(strstr(out, "stopped after") ? strstr(out, "stopped after") : "",
				"stopped after %d", &made),
			 1);
	assert_true(made > 0 && made < PIDS_MAX);
	child = fork();
	assert_true(child >= 0);
	if (child == 0)
		_exit(0);
	assert_int_equal(waitpid(child, NULL, 0), child);
}

/* A memory bomb is killed inside its limit; the test process and another
 * sandbox running beside it are fine. */
static void test_escape_memory_bomb(void **state)
{
	char port[16], out[4096];
	const char *bystander_argv[] = {"/bin/busybox", "httpd", "-f", "-p", port, "-h", "/", NULL};
	int status;
	(void)state;

	snprintf(port, sizeof(port), "0.0.0.0:%d", BYSTANDER_PORT);
	start("sec-bystander", bystander_argv, 1);
	assert_true(jt__http_get_in_netns(netns_path, BYSTANDER_PORT, "/", 20000) > 0);
	status = run_attack("memory_bomb", out, sizeof(out));
	/* The init reports a signal death of its program as 128 + signal. */
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 128 + SIGKILL);
	assert_null(strstr(out, "ESCAPED"));
	assert_true(jt__http_get_in_netns(netns_path, BYSTANDER_PORT, "/", 20000) > 0);
	assert_int_equal(jail__state(running[1], NULL), JAIL_RUNNING);
}

/* Filling the writable layer ends with ENOSPC/EDQUOT at about
 * disk_max_bytes; the host's free space is as before. */
static void test_escape_fill_disk(void **state)
{
	struct statvfs before, after;
	char out[4096];
	long written = -1;
	int status;
	(void)state;

	assert_int_equal(statvfs(base_dir, &before), 0);
	status = run_attack("fill_disk", out, sizeof(out));
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_non_null(strstr(out, "fill disk: "));
	assert_int_equal(sscanf(strstr(out, "fill disk: "), "fill disk: %ld MiB", &written), 1);
	assert_true(written <= (long)(DISK_MAX >> 20));
	assert_int_equal(statvfs(base_dir, &after), 0);
	/* The sandbox is gone: within 16 MiB of what was free (others write too). */
	assert_true((double)after.f_bavail * after.f_frsize + (16 << 20) >=
		    (double)before.f_bavail * before.f_frsize);
	/* Its image was unmounted from the host with it. */
	assert_int_equal(jt__run("grep -q ' %s/' /proc/self/mountinfo", base_dir), 1);
}

/* 256 MiB printed by the sandbox leave CONSOLE_MAX (and a line saying
 * so) in the host's console.log. */
static void test_escape_console_flood(void **state)
{
	const char *argv[] = {"/escape-probe", "console_flood", NULL};
	char path[PATH_MAX], tail[256] = "";
	struct stat st;
	struct jail *jail;
	FILE *f;
	int status = -1;
	(void)state;

	jail = start("sec-console-flood", argv, 0);
	assert_int_equal(jail__wait(jail, 120000), 0);
	assert_int_equal(jail__state(jail, &status), JAIL_EXITED);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	snprintf(path, sizeof(path), "%s/sec-console-flood/console.log", state_dir);
	assert_int_equal(stat(path, &st), 0);
	printf("console.log after 256 MiB of output: %lld bytes\n", (long long)st.st_size);
	assert_true((uint64_t)st.st_size >= CONSOLE_MAX);
	assert_true((uint64_t)st.st_size <= CONSOLE_MAX + 200);
	f = fopen(path, "r");
	assert_non_null(f);
	fseek(f, -100, SEEK_END);
	tail[fread(tail, 1, sizeof(tail) - 1, f)] = 0;
	fclose(f);
	assert_non_null(strstr(tail, "console log capped"));
}

/* Three spinning processes for 2 s get at most the quota (0.5 CPU), with
 * slack for the period boundaries: never more than 1.6 CPU seconds. */
static void test_escape_cpu_quota(void **state)
{
	char out[4096];
	double seconds = -1;
	int status;
	(void)state;

	status = run_attack("cpu_hog", out, sizeof(out));
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_non_null(strstr(out, "cpu hog: "));
	assert_int_equal(sscanf(strstr(out, "cpu hog: "), "cpu hog: %lf", &seconds), 1);
	assert_true(seconds > 0);
	assert_true(seconds <= 2.0 * CPU_MILLICORES / 1000 + 0.6);
}

/* One sandbox takes every inotify instance it may; another one, and the
 * host, still get theirs. */
static void test_escape_inotify_exhaustion(void **state)
{
	const char *hog_argv[] = {"/escape-probe", "inotify_exhaust", NULL};
	char out[4096];
	int fd;
	(void)state;

	start("sec-inotify-hog", hog_argv, 1);
	for (int i = 0; i < 2000; i++) {
		read_console("sec-inotify-hog", out, sizeof(out));
		if (strstr(out, "HOLDING") || jail__state(running[1], NULL) == JAIL_EXITED)
			break;
		usleep(10000);
	}
	printf("%s", out);
	assert_non_null(strstr(out, "HOLDING"));
	assert_stopped("inotify_some");
	fd = inotify_init1(IN_CLOEXEC);
	assert_true(fd >= 0);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_escape_core_pattern, test_setup),
	    cmocka_unit_test_setup(test_escape_modprobe, test_setup),
	    cmocka_unit_test_setup(test_escape_sysrq_trigger, test_setup),
	    cmocka_unit_test_setup(test_escape_drop_caches, test_setup),
	    cmocka_unit_test_setup(test_escape_proc_sys_read_only, test_setup),
	    cmocka_unit_test_setup(test_escape_proc_masked_files, test_setup),
	    cmocka_unit_test_setup(test_escape_mount_proc, test_setup),
	    cmocka_unit_test_setup(test_escape_mount_sysfs, test_setup),
	    cmocka_unit_test_setup(test_escape_mount_tmpfs, test_setup),
	    cmocka_unit_test_setup(test_escape_mknod_block_device, test_setup),
	    cmocka_unit_test_setup(test_escape_keyctl, test_setup),
	    cmocka_unit_test_setup(test_escape_bpf, test_setup),
	    cmocka_unit_test_setup(test_escape_perf_event_open, test_setup),
	    cmocka_unit_test_setup(test_escape_userfaultfd, test_setup),
	    cmocka_unit_test_setup(test_escape_kexec_load, test_setup),
	    cmocka_unit_test_setup(test_escape_init_module, test_setup),
	    cmocka_unit_test_setup(test_escape_open_by_handle_at, test_setup),
	    cmocka_unit_test_setup(test_escape_ptrace_init, test_setup),
	    cmocka_unit_test_setup(test_escape_ptrace_agent, test_setup),
	    cmocka_unit_test_setup(test_escape_userns_then_mount, test_setup),
	    cmocka_unit_test_setup(test_escape_host_uid_unprivileged, test_setup),
	    cmocka_unit_test_setup(test_escape_fork_bomb, test_setup),
	    cmocka_unit_test_setup(test_escape_memory_bomb, test_setup),
	    cmocka_unit_test_setup(test_escape_fill_disk, test_setup),
	    cmocka_unit_test_setup(test_escape_inotify_exhaustion, test_setup),
	    cmocka_unit_test_setup(test_escape_console_flood, test_setup),
	    cmocka_unit_test_setup(test_escape_cpu_quota, test_setup),
	};
	const char *skip = NULL;

	signal(SIGPIPE, SIG_IGN);
	if (geteuid() != 0)
		skip = "the escape suite needs root (namespaces, overlayfs, cgroups)";
	else if (!getenv("WARREN_BUILD_DIR") || !getenv("WARREN_SOURCE_DIR"))
		skip = "WARREN_BUILD_DIR / WARREN_SOURCE_DIR not set (run through ctest)";
	else if (!getenv("WARREN_TEMPLATES_DIR"))
		skip =
		    "WARREN_TEMPLATES_DIR not set (scripts/test builds the minimal template there)";
	else if (jt__run("grep -qw overlay /proc/filesystems") != 0)
		skip = "no overlayfs in this kernel";
	else if (jt__run("command -v ip >/dev/null") != 0)
		skip = "no `ip` command (iproute2)";
	if (skip) {
		printf("SKIP: %s\n", skip);
		return 77;
	}
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

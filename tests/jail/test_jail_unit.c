/* Unit tests of the pure parts of the jail runtime: configuration checks,
 * the seccomp table and filter (loaded in a forked child), the capability
 * set, the agent argv and the runtime probe over fake inputs. */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "warren/jail_cgroup.h"
#include "jail_policy.h"
#include "jail_userns.h"
#include "warren/jail.h"
#include "warren/runtime_probe.h"

static const char *const good_argv[] = {"/bin/sh", "-c", "true", NULL};

static struct jail_config good_config(void)
{
	struct jail_config config = {
	    .id = "i0123456789abcdefghij",
	    .rootfs = "/var/lib/warren/templates/minimal/rootfs",
	    .netns_path = "/run/netns/slot0",
	    .memory_max_bytes = 512ULL << 20,
	    .cpu_millicores = 1000,
	    .pids_max = 256,
	    .argv = good_argv,
	};
	return config;
}

static void expect_invalid(const struct jail_config *config)
{
	char err[256] = "";

	assert_int_equal(jail__config_validate(config, err, sizeof(err)), -EINVAL);
	assert_true(err[0] != 0);
}

static void test_config_validate(void **state)
{
	static const char *const relative_argv[] = {"sh", NULL};
	static const char *const empty_argv[] = {NULL};
	const char *long_argv[JAIL_ARGV_MAX + 1];
	struct jail_config config = good_config();
	char err[256];
	(void)state;

	assert_int_equal(jail__config_validate(&config, err, sizeof(err)), 0);
	expect_invalid(NULL);
	config = good_config();
	config.id = NULL;
	expect_invalid(&config);
	config = good_config();
	config.id = "";
	expect_invalid(&config);
	config = good_config();
	config.id = "../etc";
	expect_invalid(&config);
	config = good_config();
	config.id = "a/b";
	expect_invalid(&config);
	config = good_config();
	config.id = "-rf";
	expect_invalid(&config);
	config = good_config();
	config.id = "a1234567890123456789012345678901234567890123456789012345678901234";
	expect_invalid(&config);
	/* Overlay option separators in paths would inject mount options. */
	config = good_config();
	config.rootfs = "/a,upperdir=/etc";
	expect_invalid(&config);
	config = good_config();
	config.rootfs = "/a:/b";
	expect_invalid(&config);
	config = good_config();
	config.rootfs = "relative";
	expect_invalid(&config);
	config = good_config();
	config.state_dir = "/x,y";
	expect_invalid(&config);
	config = good_config();
	config.netns_path = NULL;
	expect_invalid(&config);
	config = good_config();
	config.cgroup_parent = "a/b";
	expect_invalid(&config);
	config = good_config();
	config.memory_max_bytes = 0;
	expect_invalid(&config);
	config = good_config();
	config.pids_max = 0;
	expect_invalid(&config);
	config = good_config();
	config.cpu_millicores = 2000000;
	expect_invalid(&config);
	config = good_config();
	config.argv = NULL;
	expect_invalid(&config);
	config = good_config();
	config.argv = relative_argv;
	expect_invalid(&config);
	config = good_config();
	config.argv = empty_argv;
	expect_invalid(&config);
	for (int i = 0; i < JAIL_ARGV_MAX; i++)
		long_argv[i] = "/bin/true";
	long_argv[JAIL_ARGV_MAX] = NULL;
	config = good_config();
	config.argv = long_argv;
	expect_invalid(&config);
}

static void test_agent_argv(void **state)
{
	const char *argv[6];
	(void)state;

	jail__agent_argv("sha256:abc", argv);
	assert_string_equal(argv[0], "/usr/local/bin/warren-agent");
	assert_string_equal(argv[1], "--listen");
	assert_string_equal(argv[2], "0.0.0.0:49983");
	assert_string_equal(argv[3], "--token-hash");
	assert_string_equal(argv[4], "sha256:abc");
	assert_null(argv[5]);
	jail__agent_argv(NULL, argv);
	assert_null(argv[3]);
}

static void test_policy_tables(void **state)
{
	size_t count, caps_count, rules = 0;
	const struct jail_syscall_rule *table = jail_policy__syscall_rules(&count);
	const int *caps = jail_policy__kept_capabilities(&caps_count);
	scmp_filter_ctx ctx;
	char err[256];
	bool has_mount = false, has_setns = false;
	(void)state;

	assert_true(count > 30);
	for (size_t i = 0; i < count; i++) {
		for (size_t j = i + 1; j < count; j++)
			assert_string_not_equal(table[i].name, table[j].name);
		has_mount |= !strcmp(table[i].name, "mount");
		has_setns |= !strcmp(table[i].name, "setns");
		assert_true(table[i].errno_value == EPERM || table[i].errno_value == ENOSYS);
		assert_true(table[i].flags_arg < 0 || table[i].flags_mask != 0);
	}
	assert_true(has_mount && has_setns);
	/* Every kept capability is one the agent needs; nothing like SYS_ADMIN. */
	assert_int_equal(caps_count, 7);
	for (size_t i = 0; i < caps_count; i++) {
		assert_int_not_equal(caps[i], CAP_SYS_ADMIN);
		assert_int_not_equal(caps[i], CAP_NET_ADMIN);
		assert_int_not_equal(caps[i], CAP_SYS_PTRACE);
	}
	ctx = jail_policy__seccomp_build(&rules, err, sizeof(err));
	assert_non_null(ctx);
	/* One rule per unconditional entry, one per flag bit otherwise. */
	assert_true(rules >= count);
	seccomp_release(ctx);
}

/* Loads the filter in a child and checks what it denies and allows. */
/* Installs the filter as warren-jail-init does: built here (compiled
 * false) or from the worker's compiled program (jail_policy__seccomp_program_fd,
 * sealed). 0 when installed. */
static int install_filter(bool compiled)
{
	static struct sock_filter program[BPF_MAXINSNS];
	struct sock_fprog filter = {.filter = program};
	size_t rules;
	char err[256];
	long count;
	int fd;

	if (!compiled) {
		scmp_filter_ctx ctx = jail_policy__seccomp_build(&rules, err, sizeof(err));

		return !ctx || seccomp_load(ctx) ? -1 : 0;
	}
	fd = jail_policy__seccomp_program_fd(err, sizeof(err));
	if (fd < 0 || (fcntl(fd, F_GET_SEALS) & F_SEAL_WRITE) == 0 || write(fd, "x", 1) != -1 ||
	    !(fcntl(fd, F_GETFD) & FD_CLOEXEC))
		return -1; /* sealed, close-on-exec */
	count = jail_policy__seccomp_read(fd, program, BPF_MAXINSNS);
	close(fd);
	if (count <= 0 || jail_policy__seccomp_read(-1, program, BPF_MAXINSNS) != -1)
		return -1;
	filter.len = (unsigned short)count;
	return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
		       syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &filter)
		   ? -1
		   : 0;
}

static void check_seccomp_filter_behaviour(bool compiled)
{
	pid_t pid;
	int status;

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (install_filter(compiled))
			_exit(10);
		if (unshare(CLONE_NEWUSER) == 0 || errno != EPERM)
			_exit(11);
		if (unshare(CLONE_NEWNET) == 0 || errno != EPERM)
			_exit(12);
		if (syscall(SYS_clone3, NULL, 0) == 0 || errno != ENOSYS)
			_exit(13);
		if (syscall(SYS_setns, -1, 0) == 0 || errno != EPERM)
			_exit(14);
		if (syscall(SYS_mount, "x", "/tmp", "tmpfs", 0, NULL) == 0 || errno != EPERM)
			_exit(15);
		if (syscall(SYS_bpf, 0, NULL, 0) == 0 || errno != EPERM)
			_exit(16);
		/* Not on the allow-list: ENOSYS (a future syscall too). */
		if (syscall(SYS_chroot, "/") == 0 || errno != ENOSYS)
			_exit(20);
		if (syscall(999) == 0 || errno != ENOSYS)
			_exit(21);
		if (syscall(SYS_keyctl, 0, 0, 0, 0, 0) == 0 || errno != EPERM)
			_exit(22);
		if (syscall(SYS_clone, (unsigned long)CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL,
			    0) >= 0 ||
		    errno != EPERM)
			_exit(23);
		/* Allowed: unshare without namespace flags, fork, getpid. */
		if (unshare(CLONE_FILES) != 0)
			_exit(17);
		pid_t child = fork();
		if (child == 0)
			_exit(0);
		if (child < 0 || waitpid(child, NULL, 0) != child)
			_exit(18);
		_exit(getpid() > 0 ? 0 : 19);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* The filter built in place and the worker's compiled program behave
 * alike. */
static void test_seccomp_filter_behaviour(void **state)
{
	(void)state;
	check_seccomp_filter_behaviour(false);
	check_seccomp_filter_behaviour(true);
}

/* Host uid ranges: one per live owner, never overlapping, given back on
 * release (by index or by owner), reused afterwards. */
static void test_uid_ranges(void **state)
{
	char dir[] = "/tmp/warren-uids-XXXXXX", owner[64], command[96];
	uint32_t index[64], base[64], again_index, again_base;
	(void)state;

	assert_non_null(mkdtemp(dir));
	jail__configure_host(&(struct jail_host_settings){.uid_dir = dir});
	for (int i = 0; i < 64; i++) {
		snprintf(owner, sizeof(owner), "/state/sandbox-%d", i);
		assert_int_equal(jail_userns__reserve(owner, &index[i], &base[i]), 0);
		assert_true(base[i] >= (1u << 30));
		assert_int_equal((base[i] - (1u << 30)) % JAIL_USERNS_SIZE, 0);
		for (int j = 0; j < i; j++) {
			assert_int_not_equal(index[i], index[j]);
			/* Disjoint: 65536 apart at least. */
			assert_true(base[i] >= base[j] + JAIL_USERNS_SIZE ||
				    base[j] >= base[i] + JAIL_USERNS_SIZE);
		}
	}
	/* The same owner asking again gets a second, different range. */
	assert_int_equal(jail_userns__reserve("/state/sandbox-0", &again_index, &again_base), 0);
	assert_int_not_equal(again_index, index[0]);
	jail_userns__release(again_index, "/state/sandbox-0");
	/* Release by index checks the owner; release by owner finds it. */
	jail_userns__release(index[1], "/state/someone-else");
	assert_int_equal(jail_userns__reserve("/state/sandbox-1", &again_index, &again_base), 0);
	assert_int_not_equal(again_index, index[1]);
	jail_userns__release_owner("/state/sandbox-1");
	jail_userns__release(index[0], "/state/sandbox-0");
	assert_int_equal(jail_userns__reserve("/state/sandbox-0", &again_index, &again_base), 0);
	assert_int_equal(again_index, index[0]); /* free again: the first candidate */
	assert_int_equal(again_base, base[0]);
	assert_int_equal(jail_userns__reserve("/state/sandbox-1", &again_index, &again_base), 0);
	assert_int_equal(again_index, index[1]);
	jail__configure_host(&(struct jail_host_settings){.uid_dir = "/run/warren/jail-uids"});
	snprintf(command, sizeof(command), "rm -rf '%s'", dir);
	assert_int_equal(system(command), 0);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_runtime_probe(void **state)
{
	char dir[] = "/tmp/warren-probe-XXXXXX";
	char kvm[64], cpuinfo_virt[64], cpuinfo_plain[64], pvm[64], absent[64], command[96];
	struct runtime_probe_result result;
	struct runtime_probe_paths paths;
	(void)state;

	assert_non_null(mkdtemp(dir));
	snprintf(kvm, sizeof(kvm), "%s/kvm", dir);
	snprintf(cpuinfo_virt, sizeof(cpuinfo_virt), "%s/cpuinfo-virt", dir);
	snprintf(cpuinfo_plain, sizeof(cpuinfo_plain), "%s/cpuinfo-plain", dir);
	snprintf(pvm, sizeof(pvm), "%s/kvm_pvm", dir);
	snprintf(absent, sizeof(absent), "%s/absent", dir);
	write_file(kvm, "");
	write_file(cpuinfo_virt, "processor\t: 0\nflags\t\t: fpu vme sse2 vmx ept\n");
	/* "vmxnet" is not "vmx": whole words only. */
	write_file(cpuinfo_plain, "processor\t: 0\nflags\t\t: fpu vme sse2 vmxnet\n");
	write_file(pvm, "");

	paths = (struct runtime_probe_paths){
	    .dev_kvm = kvm, .cpuinfo = cpuinfo_virt, .kvm_pvm_module = absent};
	runtime__probe(&paths, &result);
	assert_int_equal(result.choice, RUNTIME_PROBE_VM);
	assert_true(result.have_dev_kvm && result.have_vmx_or_svm && !result.kvm_is_pvm);

	paths = (struct runtime_probe_paths){
	    .dev_kvm = kvm, .cpuinfo = cpuinfo_virt, .kvm_pvm_module = pvm};
	runtime__probe(&paths, &result);
	assert_int_equal(result.choice, RUNTIME_PROBE_JAIL);
	assert_non_null(strstr(result.reason, "kvm_pvm"));

	paths = (struct runtime_probe_paths){
	    .dev_kvm = kvm, .cpuinfo = cpuinfo_plain, .kvm_pvm_module = absent};
	runtime__probe(&paths, &result);
	assert_int_equal(result.choice, RUNTIME_PROBE_JAIL);
	assert_non_null(strstr(result.reason, "vmx/svm"));

	paths = (struct runtime_probe_paths){
	    .dev_kvm = absent, .cpuinfo = cpuinfo_virt, .kvm_pvm_module = absent};
	runtime__probe(&paths, &result);
	assert_int_equal(result.choice, RUNTIME_PROBE_JAIL);
	assert_false(result.have_dev_kvm);

	/* Forced by the operator, whatever the probe says. */
	paths.forced = "vm";
	runtime__probe(&paths, &result);
	assert_int_equal(result.choice, RUNTIME_PROBE_VM);
	assert_non_null(strstr(result.reason, "forced"));
	assert_string_equal(runtime__probe_choice_name(RUNTIME_PROBE_JAIL), "jail");

	/* This host, for the record. */
	runtime__probe(NULL, &result);
	printf("this host: %s\n", result.reason);

	snprintf(command, sizeof(command), "rm -rf '%s'", dir);
	assert_int_equal(system(command), 0);
}

/* Writes text to dir/file (the test's fake cgroup files). */
static void write_fake(const char *dir, const char *file, const char *text)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* The freezer over a fake cgroup directory: what is written to
 * cgroup.freeze, how cgroup.events is read, and the refusals (no v2
 * directory, a kernel without the freezer, a freeze that never lands). */
static void test_cgroup_freeze_files(void **state)
{
	char dir[] = "/tmp/warren-freeze-XXXXXX", path[PATH_MAX], value[8] = "";
	struct jail_cgroup cgroup = {.layout = JAIL_CGROUP_HYBRID};
	bool frozen = false;
	FILE *f;
	(void)state;

	assert_non_null(mkdtemp(dir));
	/* No v2 directory (a v1-only host): no freezer. */
	assert_int_equal(jail_cgroup__freeze(&cgroup, true, 10), -ENOTSUP);
	assert_int_equal(jail_cgroup__frozen(&cgroup, &frozen), -ENOTSUP);
	snprintf(cgroup.dirs[0], sizeof(cgroup.dirs[0]), "%s", dir);
	/* No cgroup.freeze file: -ENOTSUP too. */
	assert_int_equal(jail_cgroup__freeze(&cgroup, true, 10), -ENOTSUP);

	write_fake(dir, "cgroup.freeze", "0\n");
	write_fake(dir, "cgroup.events", "populated 1\nfrozen 1\n");
	assert_int_equal(jail_cgroup__freeze(&cgroup, true, 10), 0);
	snprintf(path, sizeof(path), "%s/cgroup.freeze", dir);
	f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(value, sizeof(value), f));
	fclose(f);
	assert_int_equal(value[0], '1'); /* written in place, not truncated */
	assert_int_equal(jail_cgroup__frozen(&cgroup, &frozen), 0);
	assert_true(frozen);
	/* The kernel never reports it thawed: bounded by the timeout. */
	assert_int_equal(jail_cgroup__freeze(&cgroup, false, 20), -ETIMEDOUT);
	write_fake(dir, "cgroup.events", "populated 1\nfrozen 0\n");
	assert_int_equal(jail_cgroup__freeze(&cgroup, false, 20), 0);
	/* cgroup.events without a frozen line: a kernel without the freezer. */
	write_fake(dir, "cgroup.events", "populated 1\n");
	assert_int_equal(jail_cgroup__freeze(&cgroup, true, 20), -ENOTSUP);

	snprintf(path, sizeof(path), "%s/cgroup.freeze", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/cgroup.events", dir);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_config_validate),
	    cmocka_unit_test(test_agent_argv),
	    cmocka_unit_test(test_policy_tables),
	    cmocka_unit_test(test_seccomp_filter_behaviour),
	    cmocka_unit_test(test_runtime_probe),
	    cmocka_unit_test(test_uid_ranges),
	    cmocka_unit_test(test_cgroup_freeze_files),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

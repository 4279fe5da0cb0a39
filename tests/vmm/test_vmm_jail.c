/* warren-vmm --jail without KVM (labels integration vmm security; needs
 * root, skipped otherwise): `--jail-check` enters the jail, locks down and
 * waits, so the test can look at the process from outside: its uid/gid
 * and groups, seccomp mode 2, no_new_privs, no capabilities, / = the jail
 * dir holding only dev/kvm (its own node, for its uid), kernel (read-only
 * bind), the sandbox's disk (given to its uid), its copy-on-write base and
 * a read-only disk (both bound read-only), the tap opened before the drop (in a network namespace
 * of the test's own), and the host's mount table untouched. Refusals: a writable disk or a console
 * outside the jail, uid 0. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm_test_util.h"

#define JAIL_UID "2000001"
/* Sanitizer builds of warren-vmm run without the filter (their runtimes
 * need more system calls). */
#ifdef WARREN_VMM_NO_SECCOMP
#define VMM_SECCOMP_MODE 0
#else
#define VMM_SECCOMP_MODE 2
#endif
#define TAP "wvmmjail0"

extern char **environ;

static char base[] = "/tmp/warren-vmm-jail-XXXXXX";
static char root[128], kernel[160], disk[160], template[160];
static bool have_tap;

static int shell(const char *command)
{
	int status = system(command);

	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static long field(const char *text, const char *key)
{
	const char *line = strstr(text, key);

	return line ? strtol(line + strlen(key), NULL, 10) : -1;
}

static void read_proc(pid_t pid, const char *name, char *out, size_t size)
{
	char path[128];
	FILE *file;
	size_t length = 0;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
	file = fopen(path, "r");
	if (file) {
		length = fread(out, 1, size - 1, file);
		fclose(file);
	}
	out[length] = 0;
}

/* True when a mount of this (the host's) namespace involves path; other
 * tests on the machine may mount meanwhile, so no counting. */
static bool host_mounts_mention(const char *path)
{
	static char text[1 << 20];
	FILE *file = fopen("/proc/self/mountinfo", "r");
	size_t length = 0;

	if (file) {
		length = fread(text, 1, sizeof(text) - 1, file);
		fclose(file);
	}
	text[length] = 0;
	return strstr(text, path) != NULL;
}

/* Spawns warren-vmm with stdin/stdout pipes; returns its pid. */
static pid_t spawn(const char *const *argv, int *stdin_fd, int *stdout_fd)
{
	posix_spawn_file_actions_t actions;
	int in[2], out[2];
	pid_t pid;

	assert_int_equal(pipe(in), 0);
	assert_int_equal(pipe(out), 0);
	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_adddup2(&actions, in[0], 0);
	posix_spawn_file_actions_adddup2(&actions, out[1], 1);
	posix_spawn_file_actions_addclose(&actions, in[1]);
	posix_spawn_file_actions_addclose(&actions, out[0]);
	assert_int_equal(posix_spawn(&pid, argv[0], &actions, NULL, (char *const *)argv, environ),
			 0);
	posix_spawn_file_actions_destroy(&actions);
	close(in[0]);
	close(out[1]);
	*stdin_fd = in[1];
	*stdout_fd = out[0];
	return pid;
}

static bool fd_is_our_tap(pid_t pid)
{
	char path[128], text[1024];
	struct dirent *entry;
	bool found = false;
	DIR *fds;

	snprintf(path, sizeof(path), "/proc/%d/fdinfo", (int)pid);
	fds = opendir(path);
	while (fds && !found && (entry = readdir(fds))) {
		char name[300];

		if (entry->d_name[0] == '.')
			continue;
		snprintf(name, sizeof(name), "fdinfo/%s", entry->d_name);
		read_proc(pid, name, text, sizeof(text));
		found = strstr(text, "iff:\t" TAP) != NULL;
	}
	if (fds)
		closedir(fds);
	return found;
}

/* path with `content`, then `size` bytes long when not 0; mode 0644. */
static int write_file(const char *path, const char *content, off_t size)
{
	FILE *file = fopen(path, "w");

	if (file == NULL || fputs(content, file) < 0 || fclose(file) != 0)
		return -1;
	if (size && truncate(path, size) != 0)
		return -1;
	return chmod(path, 0644);
}

static void test_jail_check(void **unused)
{
	char console[200], socket_path[200], block[400], ro_block[300], net[128], text[8192];
	char path[300], line[16] = "";
	const char *argv[] = {vmm_test__binary(),
			      "--jail",
			      root,
			      "--jail-uid",
			      JAIL_UID,
			      "--jail-gid",
			      JAIL_UID,
			      "--jail-check",
			      "--kernel",
			      kernel,
			      "--console",
			      console,
			      "--api-socket",
			      socket_path,
			      "--rng",
			      "--device",
			      block,
			      "--device",
			      ro_block,
			      have_tap ? "--device" : NULL,
			      net,
			      NULL};
	struct dirent *entry;
	struct stat st;
	int stdin_fd, stdout_fd, status, fd;
	unsigned entries = 0;
	DIR *listing;
	pid_t pid;

	(void)unused;
	snprintf(console, sizeof(console), "%s/console.log", root);
	snprintf(socket_path, sizeof(socket_path), "%s/vmm.sock", root);
	snprintf(block, sizeof(block), "{\"type\":\"block\",\"path\":\"%s\",\"base\":\"%s\"}", disk,
		 template);
	snprintf(ro_block, sizeof(ro_block),
		 "{\"type\":\"block\",\"path\":\"%s\",\"read_only\":true}", template);
	snprintf(net, sizeof(net),
		 "{\"type\":\"net\",\"tap\":\"%s\",\"mac\":\"02:00:00:00:00:07\"}", TAP);
	pid = spawn(argv, &stdin_fd, &stdout_fd);
	assert_true(read(stdout_fd, line, sizeof(line) - 1) > 0);
	assert_string_equal(line, "jailed\n");

	read_proc(pid, "status", text, sizeof(text));
	assert_int_equal(field(text, "\nUid:\t"), atol(JAIL_UID));
	assert_int_equal(field(text, "\nGid:\t"), atol(JAIL_UID));
	assert_non_null(strstr(text, "\nGroups:\t\n") ? "" : strstr(text, "\nGroups:\t \n"));
	assert_int_equal(field(text, "\nSeccomp:\t"), VMM_SECCOMP_MODE);
	assert_int_equal(field(text, "\nNoNewPrivs:\t"), 1);
	assert_non_null(strstr(text, "\nCapEff:\t0000000000000000"));
	assert_non_null(strstr(text, "\nCapPrm:\t0000000000000000"));
	/* Not dumpable: its /proc files belong to root, not to its uid. */
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_uid, 0);

	/* / is the jail: exactly dev, kernel, rootfs.ext4, disk2. */
	snprintf(path, sizeof(path), "/proc/%d/root", (int)pid);
	listing = opendir(path);
	assert_non_null(listing);
	while ((entry = readdir(listing))) {
		if (entry->d_name[0] == '.')
			continue;
		entries++;
		assert_true(!strcmp(entry->d_name, "dev") || !strcmp(entry->d_name, "kernel") ||
			    !strcmp(entry->d_name, "rootfs.ext4") ||
			    !strcmp(entry->d_name, "disk2") || !strcmp(entry->d_name, "base1"));
	}
	closedir(listing);
	assert_int_equal(entries, 5);
	snprintf(path, sizeof(path), "/proc/%d/root/dev/kvm", (int)pid);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISCHR(st.st_mode) && major(st.st_rdev) == 10 && minor(st.st_rdev) == 232);
	assert_int_equal(st.st_uid, (uid_t)atol(JAIL_UID));
	assert_int_equal(st.st_mode & 07777, 0600);
	snprintf(path, sizeof(path), "/proc/%d/root/rootfs.ext4", (int)pid);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_uid, (uid_t)atol(JAIL_UID));
	/* The bound template is read-only even for root. */
	snprintf(path, sizeof(path), "/proc/%d/root/disk2", (int)pid);
	fd = open(path, O_RDWR);
	assert_int_equal(fd, -1);
	assert_int_equal(errno, EROFS);
	snprintf(path, sizeof(path), "/proc/%d/root/base1", (int)pid); /* copy-on-write base */
	assert_int_equal(open(path, O_RDWR), -1);
	assert_int_equal(errno, EROFS);
	snprintf(path, sizeof(path), "/proc/%d/root/kernel", (int)pid);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	memset(line, 0, sizeof(line));
	assert_int_equal(read(fd, line, sizeof(line) - 1), 7);
	assert_string_equal(line, "vmlinux");
	close(fd);
	if (have_tap)
		assert_true(fd_is_our_tap(pid));
	else
		printf("tap not tested: no network namespace of our own\n");
	/* Its mounts were made in its own namespace. */
	assert_false(host_mounts_mention(base));

	close(stdin_fd);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	close(stdout_fd);
}

static int run_status(const char *const *argv)
{
	int status;
	pid_t pid;

	assert_int_equal(posix_spawn(&pid, argv[0], NULL, NULL, (char *const *)argv, environ), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_jail_refusals(void **unused)
{
	char outside[300], console[200];
	const char *writable_outside[] = {
	    vmm_test__binary(), "--jail",   root,   "--jail-uid", JAIL_UID, "--jail-gid", JAIL_UID,
	    "--jail-check",	"--kernel", kernel, "--device",	  outside,  NULL};
	const char *console_outside[] = {
	    vmm_test__binary(), "--jail",   root,   "--jail-uid", JAIL_UID, "--jail-gid", JAIL_UID,
	    "--jail-check",	"--kernel", kernel, "--console",  console,  NULL};
	const char *uid_zero[] = {
	    vmm_test__binary(), "--jail",	root,	    "--jail-uid", "0", "--jail-gid",
	    JAIL_UID,		"--jail-check", "--kernel", kernel,	  NULL};

	(void)unused;
	snprintf(outside, sizeof(outside), "{\"type\":\"block\",\"path\":\"%s\"}", template);
	snprintf(console, sizeof(console), "%s/console.log", base);
	assert_int_equal(run_status(writable_outside), 125);
	assert_int_equal(run_status(console_outside), 125);
	assert_int_equal(run_status(uid_zero), 2);
	/* A kernel the jail's user could not read: refused up front. */
	assert_int_equal(chmod(kernel, 0600), 0);
	{
		const char *unreadable[] = {
		    vmm_test__binary(), "--jail",     root,	"--jail-uid",
		    JAIL_UID,		"--jail-gid", JAIL_UID, "--jail-check",
		    "--kernel",		kernel,	      NULL};

		assert_int_equal(run_status(unreadable), 125);
	}
	assert_int_equal(chmod(kernel, 0644), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_jail_check),
	    cmocka_unit_test(test_jail_refusals),
	};
	int result;

	if (geteuid() != 0) {
		printf("SKIP: the jail needs root (mount namespace, pivot_root, setuid)\n");
		return 77;
	}
	if (mkdtemp(base) == NULL)
		return 1;
	{
		/* LeakSanitizer (sanitizer builds) needs /proc at exit, which the
		 * jail does not have: leak checks off for the jailed VMMs. */
		static char options[1024];
		const char *current = getenv("ASAN_OPTIONS");

		snprintf(options, sizeof(options), "%s%sdetect_leaks=0", current ? current : "",
			 current && *current ? ":" : "");
		setenv("ASAN_OPTIONS", options, 1);
	}
	snprintf(root, sizeof(root), "%s/root", base);
	snprintf(kernel, sizeof(kernel), "%s/vmlinux", base);
	snprintf(disk, sizeof(disk), "%s/rootfs.ext4", root);
	snprintf(template, sizeof(template), "%s/template.ext4", base);
	if (mkdir(root, 0700) != 0 || write_file(kernel, "vmlinux", 0) ||
	    write_file(disk, "", 1 << 20) || write_file(template, "", 1 << 20))
		return 1;
	/* A tap in a network namespace of our own: no route out, gone with us. */
	have_tap = unshare(CLONE_NEWNET) == 0 &&
		   shell("ip tuntap add dev " TAP " mode tap vnet_hdr 2>/dev/null") == 0;
	result = cmocka_run_group_tests(tests, NULL, NULL);
	{
		char command[256];

		snprintf(command, sizeof(command), "rm -rf %s", base);
		shell(command);
	}
	return result;
}

/* warren-vmm's lock-down fails closed (labels unit vmm security).
 * Without KVM: hardening__lock_down() in a forked child installs
 * no_new_privs, drops capabilities and the seccomp allow-list (read back
 * from /proc/self/status; a call outside the list ends the process with
 * 126); it fails, and says why, when seccomp cannot be installed or when a
 * thread still holds capabilities (as root). With KVM (skipped here, run
 * in the nested test host): warren-vmm under a parent filter that refuses
 * seccomp() exits 125 before its guest prints anything, and a running VMM
 * has every thread in seccomp mode 2 with no capabilities. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <seccomp.h>

#include "hardening.h"
#include "vmm_test_util.h"

extern char **environ;

/* Sanitizer builds of warren-vmm run without the filter. */
#ifdef WARREN_VMM_NO_SECCOMP
#define VMM_SECCOMP_MODE 0
#else
#define VMM_SECCOMP_MODE 2
#endif

/* The value of `key` ("Seccomp:") in a status text, or -1. */
static long status_field(const char *status, const char *key, int base)
{
	const char *line = strstr(status, key);

	return line ? strtol(line + strlen(key), NULL, base) : -1;
}

static int child_status(pid_t pid)
{
	int status = 0;

	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1000 + WTERMSIG(status);
}

/* A filter that refuses to install another one, as a host's container
 * runtime or an old kernel would. */
static int refuse_seccomp(void)
{
	scmp_filter_ctx filter = seccomp_init(SCMP_ACT_ALLOW);
	int result;

	if (filter == NULL)
		return -1;
	result = seccomp_rule_add(filter, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(seccomp), 0);
	if (result == 0)
		result = seccomp_rule_add(filter, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(prctl), 1,
					  SCMP_A0(SCMP_CMP_EQ, PR_SET_SECCOMP));
	if (result == 0)
		result = prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	if (result == 0)
		result = seccomp_load(filter);
	seccomp_release(filter);
	return result;
}

static void test_lock_down(void **unused)
{
	pid_t pid;

	(void)unused;
	pid = fork();
	if (pid == 0) {
		char error[256] = "", status[4096];
		int fd =
		    open("/proc/self/status", O_RDONLY | O_CLOEXEC); /* open is blocked later */
		ssize_t length;

		if (fd < 0 || hardening__lock_down(true, error, sizeof(error)) != 0)
			_exit(2);
		length = pread(fd, status, sizeof(status) - 1, 0);
		if (length <= 0)
			_exit(3);
		status[length] = 0;
		if (status_field(status, "Seccomp:\t", 10) != 2 ||
		    status_field(status, "NoNewPrivs:\t", 10) != 1 ||
		    status_field(status, "CapEff:\t", 16) != 0 ||
		    status_field(status, "CapPrm:\t", 16) != 0)
			_exit(4);
		/* Outside the allow-list: the SIGSYS handler exits 126. */
		if (socket(AF_INET, SOCK_STREAM, 0) >= 0)
			_exit(5);
		_exit(6);
	}
	assert_int_equal(child_status(pid), 126);
}

static void test_fails_without_seccomp(void **unused)
{
	pid_t pid;

	(void)unused;
	pid = fork();
	if (pid == 0) {
		char error[256] = "";

		if (refuse_seccomp() != 0)
			_exit(2);
		if (hardening__lock_down(true, error, sizeof(error)) == 0)
			_exit(3); /* would have run the guest unfiltered */
		if (strstr(error, "seccomp") == NULL)
			_exit(4);
		/* Opting out (--no-seccomp) still locks down the rest. */
		error[0] = 0;
		_exit(hardening__lock_down(false, error, sizeof(error)) == 0 ? 0 : 5);
	}
	assert_int_equal(child_status(pid), 0);
}

static void *sleeper(void *opaque)
{
	(void)opaque;
	pause();
	return NULL;
}

static void test_fails_while_a_thread_holds_capabilities(void **unused)
{
	pid_t pid;

	(void)unused;
	if (geteuid() != 0) {
		printf("SKIP: needs root (a thread with capabilities to leave behind)\n");
		skip();
	}
	pid = fork();
	if (pid == 0) {
		char error[256] = "";
		pthread_t thread;

		if (pthread_create(&thread, NULL, sleeper, NULL) != 0)
			_exit(2);
		/* Only the calling thread's capabilities drop: the sleeper keeps
		 * root's, and the check must refuse to go on. */
		if (hardening__lock_down(true, error, sizeof(error)) != -EPERM)
			_exit(3);
		_exit(strstr(error, "thread") ? 0 : 4);
	}
	assert_int_equal(child_status(pid), 0);
}

/* --- with KVM: the binary ----------------------------------------------- */

static void test_vmm_fails_closed(void **unused)
{
	pid_t pid;

	(void)unused;
	if (!vmm_test__have_kvm())
		skip();
	if (VMM_SECCOMP_MODE == 0) {
		printf("SKIP: this warren-vmm is built without seccomp (sanitizers)\n");
		skip();
	}
	pid = fork();
	if (pid == 0) {
		static struct vmm_run run;
		const char *args[] = {"--kernel", vmm_test__guest("hello"), "--timeout-ms", "10000",
				      NULL};

		if (refuse_seccomp() != 0 || vmm_test__run(args, &run) != 0)
			_exit(2);
		printf("refused seccomp: status %d, stderr: %s\n", run.status, run.stderr_text);
		if (run.status != 125)
			_exit(3);
		if (strstr(run.stderr_text, "hardening failed") == NULL)
			_exit(4);
		_exit(strstr(run.console, "hello from warren guest") ? 5
								     : 0); /* no guest code ran */
	}
	assert_int_equal(child_status(pid), 0);
}

/* Every thread of the VMM process: seccomp 2, no_new_privs, no caps.
 * Returns how many were checked, or -1. */
static int check_tasks(pid_t pid)
{
	char path[300], status[4096];
	struct dirent *entry;
	int checked = 0;
	DIR *tasks;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	tasks = opendir(path);
	if (tasks == NULL)
		return -1;
	while (checked >= 0 && (entry = readdir(tasks)) != NULL) {
		FILE *file;
		size_t length;

		if (entry->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/status", (int)pid, entry->d_name);
		file = fopen(path, "r");
		if (file == NULL)
			continue;
		length = fread(status, 1, sizeof(status) - 1, file);
		fclose(file);
		status[length] = 0;
		if (strncmp(status, "Name:\tiou-", 10) == 0)
			continue;
		if (status_field(status, "Seccomp:\t", 10) != VMM_SECCOMP_MODE ||
		    status_field(status, "NoNewPrivs:\t", 10) != 1 ||
		    status_field(status, "CapEff:\t", 16) != 0)
			checked = -1;
		else
			checked++;
	}
	closedir(tasks);
	return checked;
}

static void test_running_vmm_is_locked_down(void **unused)
{
	char console[] = "/tmp/warren-vmm-harden-console-XXXXXX";
	const char *argv[] = {
	    vmm_test__binary(), "--kernel", vmm_test__guest("spin"), "--vcpus", "2",
	    "--console",	console,    "--timeout-ms",	     "20000",	NULL};
	char text[4096];
	int fd, threads = 0;
	pid_t pid;

	(void)unused;
	if (!vmm_test__have_kvm())
		skip();
	fd = mkstemp(console);
	assert_true(fd >= 0);
	assert_int_equal(posix_spawn(&pid, argv[0], NULL, NULL, (char *const *)argv, environ), 0);
	/* The guest prints once it runs, i.e. after the lock-down. */
	for (int i = 0; i < 1000; i++) {
		ssize_t got = pread(fd, text, sizeof(text) - 1, 0);

		text[got > 0 ? got : 0] = 0;
		if (strstr(text, "spinning"))
			break;
		usleep(10000);
	}
	close(fd);
	if (strstr(text, "spinning"))
		threads = check_tasks(pid);
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	unlink(console);
	assert_non_null(strstr(text, "spinning"));
	assert_true(threads >= 3); /* main + 2 vCPUs */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lock_down),
	    cmocka_unit_test(test_fails_without_seccomp),
	    cmocka_unit_test(test_fails_while_a_thread_holds_capabilities),
	    cmocka_unit_test(test_vmm_fails_closed),
	    cmocka_unit_test(test_running_vmm_is_locked_down),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

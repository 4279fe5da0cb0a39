#include "vmm_test_util.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

bool vmm_test__have_kvm(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		printf("SKIP: /dev/kvm cannot be opened (%s): no KVM on this machine\n",
		       strerror(errno));
		return false;
	}
	close(fd);
	return true;
}

static const char *build_dir(void)
{
	const char *dir = getenv("WARREN_BUILD_DIR");

	return dir ? dir : ".";
}

const char *vmm_test__binary(void)
{
	static char path[4096];

	snprintf(path, sizeof(path), "%s/bin/warren-vmm", build_dir());
	return path;
}

const char *vmm_test__guest(const char *name)
{
	static char path[8][4096];
	static int next;
	char *out = path[next++ % 8];

	snprintf(out, 4096, "%s/guests/%s.elf", build_dir(), name);
	return out;
}

static void read_file(const char *path, char *out, size_t size)
{
	FILE *file = fopen(path, "r");
	size_t got = 0;

	out[0] = 0;
	if (file == NULL)
		return;
	got = fread(out, 1, size - 1, file);
	out[got] = 0;
	fclose(file);
}

int vmm_test__run(const char *const *args, struct vmm_run *run)
{
	char console_path[] = "/tmp/warren-vmm-test-console-XXXXXX";
	char stderr_path[] = "/tmp/warren-vmm-test-stderr-XXXXXX";
	const char *argv[64];
	posix_spawn_file_actions_t actions;
	struct timespec start, end;
	int console_fd = mkstemp(console_path), stderr_fd = mkstemp(stderr_path);
	int argc = 0, wait_status = 0, result = -1;
	pid_t pid;

	memset(run, 0, sizeof(*run));
	if (console_fd < 0 || stderr_fd < 0)
		goto out;
	argv[argc++] = vmm_test__binary();
	for (int i = 0; args[i] && argc < 60; i++)
		argv[argc++] = args[i];
	argv[argc++] = "--console";
	argv[argc++] = console_path;
	argv[argc] = NULL;
	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_adddup2(&actions, stderr_fd, STDERR_FILENO);
	clock_gettime(CLOCK_MONOTONIC, &start);
	if (posix_spawn(&pid, argv[0], &actions, NULL, (char *const *)argv, environ) != 0) {
		posix_spawn_file_actions_destroy(&actions);
		goto out;
	}
	posix_spawn_file_actions_destroy(&actions);
	while (waitpid(pid, &wait_status, 0) < 0 && errno == EINTR)
		;
	clock_gettime(CLOCK_MONOTONIC, &end);
	run->seconds = (double)(end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9;
	run->status = WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1;
	read_file(console_path, run->console, sizeof(run->console));
	read_file(stderr_path, run->stderr_text, sizeof(run->stderr_text));
	result = 0;
out:
	if (console_fd >= 0) {
		close(console_fd);
		unlink(console_path);
	}
	if (stderr_fd >= 0) {
		close(stderr_fd);
		unlink(stderr_path);
	}
	return result;
}

/* escape-probe: a hostile program for the jail escape suite
 * (test_escape_jail.c). Run as root inside a jail sandbox with one attack
 * name; tries it the way a tenant would and says what happened on stdout.
 * Exit 0: the attack was stopped; 1: it got through; 2: the probe could
 * not run the attack at all. Static, so it runs in any template.
 *
 *   escape-probe ATTACK     (ATTACK: see the table at the end) */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#define STOPPED 0
#define ESCAPED 1
#define BROKEN	2

/* A syscall's result: stopped when it failed. */
static int expect_failure(const char *what, long result)
{
	if (result < 0) {
		printf("%s: stopped (%s)\n", what, strerror(errno));
		return STOPPED;
	}
	printf("%s: ESCAPED (returned %ld)\n", what, result);
	return ESCAPED;
}

/* Opens a kernel knob for writing; if that works, writes back what it
 * holds (or a harmless value), so an escape changes nothing. */
static int write_knob(const char *path, const char *harmless)
{
	char value[512] = "";
	ssize_t n = -1;
	int fd = open(path, O_RDONLY);

	if (fd >= 0) {
		n = read(fd, value, sizeof(value) - 1);
		close(fd);
	}
	if (n > 0)
		value[n] = 0;
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return expect_failure(path, -1);
	if (harmless)
		n = write(fd, harmless, strlen(harmless));
	else if (value[0])
		n = write(fd, value, strlen(value));
	else
		n = -1;
	close(fd);
	printf("%s: opened for writing; write %s\n", path, n < 0 ? strerror(errno) : "ESCAPED");
	return n < 0 ? STOPPED : ESCAPED;
}

static int attack_core_pattern(void)
{
	return write_knob("/proc/sys/kernel/core_pattern", NULL);
}

static int attack_modprobe(void)
{
	return write_knob("/proc/sys/kernel/modprobe", NULL);
}

static int attack_sysrq(void)
{
	int fd = open("/proc/sysrq-trigger", O_WRONLY);

	if (fd >= 0) {
		close(fd); /* never write: "opened" is already the escape */
		printf("/proc/sysrq-trigger: ESCAPED (opened for writing)\n");
		return ESCAPED;
	}
	return expect_failure("/proc/sysrq-trigger", -1);
}

static int attack_drop_caches(void)
{
	return write_knob("/proc/sys/vm/drop_caches", "1");
}

/* A knob of the sandbox's own ipc namespace, which its root could write
 * (harmless): the test that /proc/sys is mounted read-only at all. */
static int attack_proc_sys_write(void)
{
	return write_knob("/proc/sys/kernel/shmmni", NULL);
}

/* Files that show host state to anyone who reads them must read empty. */
static int attack_proc_masked(void)
{
	static const char *const files[] = {"/proc/timer_list", "/proc/keys", "/proc/sched_debug",
					    "/proc/kcore"};
	int result = STOPPED;

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char buffer[256];
		int fd = open(files[i], O_RDONLY);
		ssize_t n = fd >= 0 ? read(fd, buffer, sizeof(buffer)) : -1;

		if (fd >= 0)
			close(fd);
		if (n > 0) {
			printf("%s: ESCAPED (%zd bytes read)\n", files[i], n);
			result = ESCAPED;
		} else {
			printf("%s: stopped (%s)\n", files[i], n == 0 ? "empty" : strerror(errno));
		}
	}
	return result;
}

static int attack_mount(const char *type)
{
	char what[64];
	int fd;

	mkdir("/tmp/m", 0755);
	snprintf(what, sizeof(what), "mount -t %s", type);
	if (expect_failure(what, mount(type, "/tmp/m", type, 0, NULL)) != STOPPED)
		return ESCAPED;
	snprintf(what, sizeof(what), "fsopen(%s)", type);
	fd = (int)syscall(SYS_fsopen, type, 0);
	if (fd >= 0)
		close(fd);
	return expect_failure(what, fd);
}

/* mknod of the host's first disk, and reading it if that worked. */
static int attack_mknod_block(void)
{
	char buffer[512];
	int fd;

	if (mknod("/tmp/disk", S_IFBLK | 0600, makedev(8, 0)) < 0 &&
	    mknod("/tmp/disk", S_IFBLK | 0600, makedev(259, 0)) < 0)
		return expect_failure("mknod block device", -1);
	printf("mknod block device: made\n");
	fd = open("/tmp/disk", O_RDONLY);
	if (fd < 0)
		return expect_failure("open the block device", -1);
	return expect_failure("read the block device",
			      read(fd, buffer, sizeof(buffer)) > 0 ? 1 : -1);
}

static int attack_keyctl(void)
{
	if (expect_failure("keyctl(JOIN_SESSION_KEYRING)", syscall(SYS_keyctl, 1, NULL)) != STOPPED)
		return ESCAPED;
	if (expect_failure("add_key", syscall(SYS_add_key, "user", "x", "y", 1, -3)) != STOPPED)
		return ESCAPED;
	return expect_failure("request_key", syscall(SYS_request_key, "user", "x", NULL, -3));
}

static int attack_bpf(void)
{
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.map_type = BPF_MAP_TYPE_ARRAY;
	attr.key_size = 4;
	attr.value_size = 4;
	attr.max_entries = 1;
	return expect_failure("bpf(MAP_CREATE)",
			      syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof(attr)));
}

static int attack_perf_event_open(void)
{
	struct perf_event_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.size = sizeof(attr);
	attr.type = PERF_TYPE_SOFTWARE;
	attr.config = PERF_COUNT_SW_CPU_CLOCK;
	return expect_failure("perf_event_open", syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0));
}

static int attack_userfaultfd(void)
{
	return expect_failure("userfaultfd", syscall(SYS_userfaultfd, O_CLOEXEC));
}

static int attack_kexec_load(void)
{
	if (expect_failure("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0)) != STOPPED)
		return ESCAPED;
	return expect_failure("kexec_file_load", syscall(SYS_kexec_file_load, -1, -1, 0, "", 2));
}

static int attack_init_module(void)
{
	static const char image[64] = {0x7f, 'E', 'L', 'F'};
	int fd = open("/bin/busybox", O_RDONLY | O_CLOEXEC);

	if (expect_failure("init_module", syscall(SYS_init_module, image, sizeof(image), "")) !=
	    STOPPED)
		return ESCAPED;
	if (expect_failure("finit_module", syscall(SYS_finit_module, fd, "", 0)) != STOPPED)
		return ESCAPED;
	return expect_failure("delete_module", syscall(SYS_delete_module, "loop", O_NONBLOCK));
}

/* The "shocker" attack: a file handle for inode 2 of the filesystem under
 * /, opened by handle (bypassing the mount tree). */
static int attack_open_by_handle_at(void)
{
	struct {
		unsigned int handle_bytes;
		int handle_type;
		unsigned char f_handle[8];
	} handle = {8, 1, {2, 0, 0, 0, 0, 0, 0, 0}};
	int root = open("/", O_RDONLY | O_DIRECTORY);
	struct {
		unsigned int handle_bytes;
		int handle_type;
		unsigned char f_handle[128];
	} named = {128, 0, {0}};
	int mount_id;

	if (expect_failure("name_to_handle_at", syscall(SYS_name_to_handle_at, AT_FDCWD, "/",
							&named, &mount_id, 0)) != STOPPED)
		return ESCAPED;
	return expect_failure("open_by_handle_at",
			      syscall(SYS_open_by_handle_at, root, &handle, O_RDONLY));
}

static int attack_ptrace_init(void)
{
	if (expect_failure("ptrace(ATTACH, 1)", ptrace(PTRACE_ATTACH, 1, NULL, NULL)) != STOPPED)
		return ESCAPED;
	return expect_failure("ptrace(SEIZE, 1)", ptrace(PTRACE_SEIZE, 1, NULL, NULL));
}

/* A root process standing in for the agent, attacked by a process of the
 * sandbox's user (uid 1000), as a user command would. */
static int attack_ptrace_agent(void)
{
	pid_t agent = fork(), attacker;
	int status = 0;

	if (agent == 0) {
		pause();
		_exit(0);
	}
	attacker = fork();
	if (attacker == 0) {
		if (setgroups(0, NULL) || setgid(1000) || setuid(1000))
			_exit(BROKEN);
		_exit(expect_failure("ptrace(ATTACH, agent) as uid 1000",
				     ptrace(PTRACE_ATTACH, agent, NULL, NULL)));
	}
	waitpid(attacker, &status, 0);
	kill(agent, SIGKILL);
	waitpid(agent, NULL, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : BROKEN;
}

static int attack_userns_mount(void)
{
	if (unshare(CLONE_NEWUSER | CLONE_NEWNS) == 0) {
		printf("unshare(NEWUSER|NEWNS): ESCAPED (made)\n");
		expect_failure("mount tmpfs in it", mount("x", "/tmp", "tmpfs", 0, NULL));
		return ESCAPED;
	}
	if (expect_failure("unshare(NEWUSER|NEWNS)", -1) != STOPPED)
		return ESCAPED;
	return expect_failure("clone(NEWUSER)",
			      syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, 0));
}

/* Forks until the kernel says no; every child waits. Stopped when fork
 * failed with EAGAIN before 100,000 processes. */
static int attack_fork_bomb(void)
{
	int made = 0;

	for (; made < 100000; made++) {
		pid_t pid = fork();

		if (pid == 0) {
			pause();
			_exit(0);
		}
		if (pid < 0)
			break;
	}
	if (made >= 100000) {
		printf("fork bomb: ESCAPED (%d processes)\n", made);
		return ESCAPED;
	}
	printf("fork bomb: stopped after %d processes (%s)\n", made, strerror(errno));
	fflush(stdout);
	return errno == EAGAIN ? STOPPED : BROKEN;
}

/* Touches memory 16 MiB at a time, up to 8 GiB. The jail's memory limit
 * must kill it (the test expects SIGKILL) long before. */
static int attack_memory_bomb(void)
{
	size_t total = 0;

	while (total < (8ULL << 30)) {
		char *chunk = malloc(16 << 20);

		if (!chunk)
			break;
		memset(chunk, 0xa5, 16 << 20);
		total += 16 << 20;
	}
	printf("memory bomb: ESCAPED (%zu MiB touched, %s)\n", total >> 20,
	       total < (8ULL << 30) ? "malloc failed" : "all of it");
	return ESCAPED;
}

/* Writes 1 MiB blocks to / until the writable layer is full. Stopped when
 * the write fails with ENOSPC or EDQUOT; the test checks the size. */
static int attack_fill_disk(void)
{
	static char block[1 << 20];
	long written = 0;
	int fd = open("/fill", O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0) {
		printf("open /fill: %s\n", strerror(errno));
		return BROKEN;
	}
	memset(block, 0x5a, sizeof(block));
	for (; written < 1L << 20; written++)
		if (write(fd, block, sizeof(block)) != (ssize_t)sizeof(block))
			break;
	if (fsync(fd) < 0 && written < 1L << 20)
		written = -written;
	printf("fill disk: %ld MiB written, then %s\n", labs(written), strerror(errno));
	close(fd);
	return errno == ENOSPC || errno == EDQUOT ? STOPPED : ESCAPED;
}

/* Writes 256 MiB to stdout (the host's console.log through the init). */
static int attack_console_flood(void)
{
	static char block[1 << 16];

	memset(block, 'x', sizeof(block));
	block[sizeof(block) - 1] = '\n';
	for (int i = 0; i < 4096; i++)
		if (write(1, block, sizeof(block)) != (ssize_t)sizeof(block))
			return BROKEN;
	return STOPPED; /* the test measures the file */
}

/* Three processes spin for 2 s of wall time; prints the CPU seconds they
 * got together (the test compares it with the sandbox's CPU quota). */
static int attack_cpu_hog(void)
{
	struct timespec start, now, cpu;
	struct rusage children;
	pid_t pids[2];

	for (int i = 0; i < 2; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			clock_gettime(CLOCK_MONOTONIC, &start);
			do
				clock_gettime(CLOCK_MONOTONIC, &now);
			while (now.tv_sec - start.tv_sec < 2);
			_exit(0);
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &start);
	do
		clock_gettime(CLOCK_MONOTONIC, &now);
	while (now.tv_sec - start.tv_sec < 2);
	for (int i = 0; i < 2; i++)
		waitpid(pids[i], NULL, 0);
	getrusage(RUSAGE_CHILDREN, &children);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
	printf("cpu hog: %.2f CPU seconds in %ld s\n",
	       cpu.tv_sec + cpu.tv_nsec / 1e9 + children.ru_utime.tv_sec +
		   children.ru_utime.tv_usec / 1e6 + children.ru_stime.tv_sec +
		   children.ru_stime.tv_usec / 1e6,
	       (long)(now.tv_sec - start.tv_sec));
	return STOPPED;
}

/* Takes inotify instances until the kernel refuses, says so, and keeps
 * them until killed. */
static int attack_inotify_exhaust(void)
{
	int count = 0;

	while (count < 100000 && inotify_init1(IN_CLOEXEC) >= 0)
		count++;
	printf("inotify exhaust: %d instances, then %s\nHOLDING\n", count, strerror(errno));
	fflush(stdout);
	if (count >= 100000)
		return ESCAPED;
	for (;;)
		pause();
}

/* The bystander: a few inotify instances must still be there for it. */
static int attack_inotify_some(void)
{
	for (int i = 0; i < 8; i++)
		if (inotify_init1(IN_CLOEXEC) < 0) {
			printf("inotify in another sandbox: FAILED (%s)\n", strerror(errno));
			return ESCAPED;
		}
	printf("inotify in another sandbox: 8 instances\n");
	return STOPPED;
}

static const struct {
	const char *name;
	int (*run)(void);
} attacks[] = {
    {"core_pattern", attack_core_pattern},
    {"modprobe", attack_modprobe},
    {"sysrq", attack_sysrq},
    {"drop_caches", attack_drop_caches},
    {"proc_sys_write", attack_proc_sys_write},
    {"proc_masked", attack_proc_masked},
    {"mknod_block", attack_mknod_block},
    {"keyctl", attack_keyctl},
    {"bpf", attack_bpf},
    {"perf_event_open", attack_perf_event_open},
    {"userfaultfd", attack_userfaultfd},
    {"kexec_load", attack_kexec_load},
    {"init_module", attack_init_module},
    {"open_by_handle_at", attack_open_by_handle_at},
    {"ptrace_init", attack_ptrace_init},
    {"ptrace_agent", attack_ptrace_agent},
    {"userns_mount", attack_userns_mount},
    {"fork_bomb", attack_fork_bomb},
    {"memory_bomb", attack_memory_bomb},
    {"fill_disk", attack_fill_disk},
    {"inotify_exhaust", attack_inotify_exhaust},
    {"inotify_some", attack_inotify_some},
    {"console_flood", attack_console_flood},
    {"cpu_hog", attack_cpu_hog},
};

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc != 2)
		return BROKEN;
	if (!strcmp(argv[1], "mount_proc"))
		return attack_mount("proc");
	if (!strcmp(argv[1], "mount_sysfs"))
		return attack_mount("sysfs");
	if (!strcmp(argv[1], "mount_tmpfs"))
		return attack_mount("tmpfs");
	for (size_t i = 0; i < sizeof(attacks) / sizeof(attacks[0]); i++)
		if (!strcmp(argv[1], attacks[i].name))
			return attacks[i].run();
	fprintf(stderr, "escape-probe: unknown attack %s\n", argv[1]);
	return BROKEN;
}

/* warren-jail-init: PID 1 of a jail. Started by jail__start() in fresh
 * mount/pid/uts/ipc namespaces; finishes the jail from the inside (it is
 * single-threaded and freshly exec'ed, so libseccomp and libcap-ng are
 * safe to use here, unlike in a child of a threaded worker), then runs the
 * agent and reaps every orphan until the agent exits. Issue 5, "Jail
 * runtime"; workers/jail/README.md, "Start sequence".
 *
 *   warren-jail-init --go-fd N --status-fd N --netns-fd N --hostname H
 *                    --lower DIR --upper DIR --work DIR --merged DIR
 *                    --tmp-size BYTES -- PROGRAM [ARGS...]
 *
 * Status protocol on --status-fd: one line, "ok\n" once PROGRAM was
 * exec'ed, or "error: <step>: <reason>\n" before exiting 127. */
#include <cap-ng.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jail_policy.h"

struct init_args {
	int go_fd, status_fd, netns_fd;
	const char *hostname, *lower, *upper, *work, *merged;
	unsigned long long tmp_size;
	char **program;
};

static int status_fd = -1;
static volatile pid_t agent_pid;

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int len;

	va_start(ap, fmt);
	len = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (len < 0)
		return;
	if ((size_t)len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	line[len++] = '\n';
	if (status_fd >= 0 && write(status_fd, line, (size_t)len) < 0)
		return;
}

static void fail(const char *step, int err) __attribute__((noreturn));
static void fail(const char *step, int err)
{
	report("error: %s: %s", step, strerror(err));
	_exit(127);
}

static int parse_fd(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	return (*end || v < 0 || v > INT_MAX) ? -1 : (int)v;
}

static int parse_args(int argc, char **argv, struct init_args *args)
{
	memset(args, 0, sizeof(*args));
	args->go_fd = args->status_fd = args->netns_fd = -1;
	for (int i = 1; i < argc; i++) {
		const char *flag = argv[i];

		if (!strcmp(flag, "--")) {
			if (i + 1 >= argc)
				return -1;
			args->program = &argv[i + 1];
			break;
		}
		if (i + 1 >= argc)
			return -1;
		const char *value = argv[++i];

		if (!strcmp(flag, "--go-fd"))
			args->go_fd = parse_fd(value);
		else if (!strcmp(flag, "--status-fd"))
			args->status_fd = parse_fd(value);
		else if (!strcmp(flag, "--netns-fd"))
			args->netns_fd = parse_fd(value);
		else if (!strcmp(flag, "--hostname"))
			args->hostname = value;
		else if (!strcmp(flag, "--lower"))
			args->lower = value;
		else if (!strcmp(flag, "--upper"))
			args->upper = value;
		else if (!strcmp(flag, "--work"))
			args->work = value;
		else if (!strcmp(flag, "--merged"))
			args->merged = value;
		else if (!strcmp(flag, "--tmp-size"))
			args->tmp_size = strtoull(value, NULL, 10);
		else
			return -1;
	}
	if (args->go_fd < 0 || args->status_fd < 0 || args->netns_fd < 0 || !args->hostname ||
	    !args->lower || !args->upper || !args->work || !args->merged || !args->program ||
	    !args->tmp_size || args->program[0][0] != '/')
		return -1;
	return 0;
}

static int compare_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* Closes every descriptor >= 3 but the three given. */
static void close_all_except(int a, int b, int c)
{
	int keep[3] = { a, b, c };
	unsigned int from = 3;

	qsort(keep, 3, sizeof(int), compare_int);
	for (int i = 0; i < 3; i++) {
		if ((unsigned int)keep[i] > from)
			syscall(SYS_close_range, from, (unsigned int)keep[i] - 1, 0);
		if ((unsigned int)keep[i] + 1 > from)
			from = (unsigned int)keep[i] + 1;
	}
	syscall(SYS_close_range, from, ~0U, 0);
}

static void mount_or_fail(const char *source, const char *target, const char *type,
			  unsigned long flags, const char *data, const char *step)
{
	if (mount(source, target, type, flags, data))
		fail(step, errno);
}

static void make_node(const char *path, unsigned int major_number, unsigned int minor_number)
{
	if (mknod(path, S_IFCHR | 0666, makedev(major_number, minor_number)) ||
	    chmod(path, 0666)) /* mknod honours the umask */
		fail(path, errno);
}

/* The root: overlay of the template (lower) and the sandbox's upper,
 * fresh /proc, a minimal /dev, /tmp, then pivot_root into it. */
static void build_root(const struct init_args *args)
{
	char options[3 * PATH_MAX + 64];

	/* Nothing mounted here may propagate back to the host. */
	mount_or_fail(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL, "make / private");
	if ((size_t)snprintf(options, sizeof(options), "lowerdir=%s,upperdir=%s,workdir=%s",
			     args->lower, args->upper, args->work) >= sizeof(options))
		fail("overlay options", ENAMETOOLONG);
	mount_or_fail("overlay", args->merged, "overlay", MS_NOSUID, options, "mount overlay");
	if (chdir(args->merged))
		fail("chdir merged", errno);
	/* Mount points the template may lack (paths relative to merged/). */
	mkdir("proc", 0555);
	mkdir("dev", 0755);
	mkdir("tmp", 01777);
	mount_or_fail("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, "mount /proc");
	mount_or_fail("dev", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=1m",
		      "mount /dev");
	make_node("dev/null", 1, 3);
	make_node("dev/zero", 1, 5);
	make_node("dev/full", 1, 7);
	make_node("dev/random", 1, 8);
	make_node("dev/urandom", 1, 9);
	make_node("dev/tty", 5, 0);
	if (mkdir("dev/pts", 0755) || mkdir("dev/shm", 01777) || chmod("dev/shm", 01777))
		fail("mkdir /dev/pts /dev/shm", errno);
	mount_or_fail("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
		      "newinstance,ptmxmode=0666,mode=0620", "mount /dev/pts");
	mount_or_fail("shm", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64m",
		      "mount /dev/shm");
	if (symlink("pts/ptmx", "dev/ptmx") || symlink("/proc/self/fd", "dev/fd") ||
	    symlink("/proc/self/fd/0", "dev/stdin") || symlink("/proc/self/fd/1", "dev/stdout") ||
	    symlink("/proc/self/fd/2", "dev/stderr"))
		fail("/dev links", errno);
	snprintf(options, sizeof(options), "mode=1777,size=%llu", args->tmp_size);
	mount_or_fail("tmp", "tmp", "tmpfs", MS_NOSUID | MS_NODEV, options, "mount /tmp");

	/* pivot_root(".", "."): the old root ends up stacked under the new
	 * one and is detached right away (pivot_root(2), NOTES). */
	if (syscall(SYS_pivot_root, ".", "."))
		fail("pivot_root", errno);
	if (umount2(".", MNT_DETACH))
		fail("detach old root", errno);
	if (chdir("/"))
		fail("chdir /", errno);
}

static void drop_privileges(void)
{
	size_t count, rules;
	const int *kept = jail_policy__kept_capabilities(&count);
	char err[256];
	scmp_filter_ctx filter;
	int ret;

	capng_clear(CAPNG_SELECT_BOTH);
	for (size_t i = 0; i < count; i++)
		if (capng_update(CAPNG_ADD,
				 CAPNG_EFFECTIVE | CAPNG_PERMITTED | CAPNG_BOUNDING_SET,
				 (unsigned int)kept[i]))
			fail("capng_update", EINVAL);
	if (capng_apply(CAPNG_SELECT_BOTH))
		fail("capng_apply", errno ? errno : EPERM);
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) && errno != EINVAL)
		fail("clear ambient caps", errno);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		fail("no_new_privs", errno);
	filter = jail_policy__seccomp_build(&rules, err, sizeof(err));
	if (!filter) {
		report("error: seccomp: %s", err);
		_exit(127);
	}
	ret = seccomp_load(filter);
	seccomp_release(filter);
	if (ret)
		fail("seccomp_load", -ret);
}

static void forward_signal(int signal_number)
{
	if (agent_pid > 0)
		kill(agent_pid, signal_number);
}

/* Starts the program; returns once it exec'ed (exec failures are fatal). */
static pid_t start_program(char **program)
{
	int exec_pipe[2];
	int child_errno = 0;
	ssize_t n;
	pid_t pid;

	if (pipe2(exec_pipe, O_CLOEXEC))
		fail("pipe", errno);
	pid = fork();
	if (pid < 0)
		fail("fork", errno);
	if (pid == 0) {
		sigset_t none;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		setsid();
		execv(program[0], program);
		child_errno = errno;
		if (write(exec_pipe[1], &child_errno, sizeof(child_errno)) < 0)
			_exit(127);
		_exit(127);
	}
	close(exec_pipe[1]);
	do
		n = read(exec_pipe[0], &child_errno, sizeof(child_errno));
	while (n < 0 && errno == EINTR);
	close(exec_pipe[0]);
	if (n == (ssize_t)sizeof(child_errno)) {
		report("error: exec %s: %s", program[0], strerror(child_errno));
		_exit(127);
	}
	return pid;
}

int main(int argc, char **argv)
{
	struct init_args args;
	struct sigaction action;
	char go;
	int status;

	if (parse_args(argc, argv, &args)) {
		fprintf(stderr, "warren-jail-init: bad arguments (started by jail__start only)\n");
		return 127;
	}
	status_fd = args.status_fd;
	/* No descriptor of the worker beyond stdio and ours stays open here
	 * or reaches the program, even one it forgot to mark close-on-exec. */
	close_all_except(args.go_fd, args.status_fd, args.netns_fd);
	fcntl(status_fd, F_SETFD, FD_CLOEXEC);
	fcntl(args.go_fd, F_SETFD, FD_CLOEXEC);
	fcntl(args.netns_fd, F_SETFD, FD_CLOEXEC);
	if (getpid() != 1)
		fail("not pid 1 of a new pid namespace", EINVAL);
	/* Wait until the parent has put us into the sandbox's cgroups. */
	if (read(args.go_fd, &go, 1) != 1)
		fail("wait for cgroup placement", errno ? errno : EPIPE);
	close(args.go_fd);
	if (unshare(CLONE_NEWCGROUP))
		fail("unshare cgroup namespace", errno);
	if (setns(args.netns_fd, CLONE_NEWNET))
		fail("join network namespace", errno);
	close(args.netns_fd);
	build_root(&args);
	if (sethostname(args.hostname, strlen(args.hostname)))
		fail("sethostname", errno);
	umask(022);
	drop_privileges();
	/* Nothing inside may read or trace PID 1. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

	memset(&action, 0, sizeof(action));
	action.sa_handler = forward_signal;
	sigemptyset(&action.sa_mask);
	sigaction(SIGTERM, &action, NULL);
	sigaction(SIGINT, &action, NULL);
	sigaction(SIGHUP, &action, NULL);
	agent_pid = start_program(args.program);
	report("ok");
	close(status_fd);
	status_fd = -1;

	/* Reap everything; leave when the program exits (the kernel then kills
	 * what is left in the pid namespace). */
	for (;;) {
		pid_t pid = waitpid(-1, &status, 0);

		if (pid < 0 && errno == EINTR)
			continue;
		if (pid < 0)
			return 127;
		if (pid == agent_pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	}
}

/* warren-jail-init: PID 1 of a jail. Started by jail__start() as root of
 * the sandbox's own user namespace (uid 0 inside = an unprivileged host
 * uid range), in fresh mount/pid/uts/ipc namespaces and the slot's network
 * namespace, with the sandbox's state dir as its working directory and the
 * idmapped template rootfs as a detached mount (--lower-fd). Finishes the
 * jail from the inside (it is single-threaded and freshly exec'ed, so
 * libseccomp and libcap-ng are safe to use here, unlike in a child of a
 * threaded worker), then runs the program and reaps every orphan until the
 * program exits. workers/jail/README.md, "Start sequence".
 *
 *   warren-jail-init --status-fd N --lower-fd N --hostname H
 *                    --tmp-size BYTES --console-max BYTES [--disk-size BYTES]
 *                    [--volume FD:PATH]... [--seccomp-fd N] -- PROGRAM [ARGS...]
 *
 * --seccomp-fd: the worker's compiled seccomp program (a sealed memfd,
 * jail_policy__seccomp_program_fd), installed instead of building the
 * filter here; without it the filter is built here.
 *
 * The working directory holds upper/, work/ (the overlay's), lower/,
 * merged/ and disk/ (mount points). With --disk-size the overlay's upper
 * and work are disk/upper and disk/work, on the size-limited image the
 * host mounted on disk/ (jail_disk.h: the quota of the writable layer).
 * Each --volume is a detached, idmapped read-write mount of a volume on
 * descriptor FD, attached at PATH of the new root (directories made as
 * needed, symlinks refused; docs/volumes.md). Status protocol on --status-fd: one line, "ok\n"
 * once PROGRAM was exec'ed, or "error: <step>: <reason>\n" before exiting
 * 127. */
#include <cap-ng.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <poll.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jail_policy.h"

struct init_args {
	int status_fd, lower_fd;
	int seccomp_fd; /* the worker's compiled filter, or -1: build it here */
	const char *hostname;
	unsigned long long tmp_size;
	unsigned long long disk_size;	/* 0: upper/ and work/ on the state dir's fs */
	unsigned long long console_max; /* bytes of program output kept */
	char **program;
	int volume_count;
	int volume_fd[8];
	const char *volume_path[8]; /* absolute, checked by jail__config_validate */
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
	args->status_fd = args->lower_fd = args->seccomp_fd = -1;
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

		if (!strcmp(flag, "--status-fd"))
			args->status_fd = parse_fd(value);
		else if (!strcmp(flag, "--lower-fd"))
			args->lower_fd = parse_fd(value);
		else if (!strcmp(flag, "--seccomp-fd"))
			args->seccomp_fd = parse_fd(value);
		else if (!strcmp(flag, "--hostname"))
			args->hostname = value;
		else if (!strcmp(flag, "--console-max"))
			args->console_max = strtoull(value, NULL, 10);
		else if (!strcmp(flag, "--disk-size"))
			args->disk_size = strtoull(value, NULL, 10);
		else if (!strcmp(flag, "--tmp-size"))
			args->tmp_size = strtoull(value, NULL, 10);
		else if (!strcmp(flag, "--volume") && args->volume_count < 8 &&
			 strchr(value, ':') && strchr(value, ':')[1] == '/') {
			char *end;
			long fd = strtol(value, &end, 10);

			if (end == value || *end != ':' || fd < 3 || fd > INT_MAX)
				return -1;
			args->volume_fd[args->volume_count] = (int)fd;
			args->volume_path[args->volume_count++] = end + 1;
		} else
			return -1;
	}
	if (args->status_fd < 0 || args->lower_fd < 0 || !args->hostname || !args->program ||
	    !args->tmp_size || !args->console_max || args->program[0][0] != '/')
		return -1;
	return 0;
}

static int compare_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* Closes every descriptor >= 3 but the count in keep (sorted here). */
static void close_all_except(int *keep, int count)
{
	unsigned int from = 3;

	qsort(keep, (size_t)count, sizeof(int), compare_int);
	for (int i = 0; i < count; i++) {
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

/* An empty file or dir at path (paths relative to the new root's
 * directory) to bind something over. */
static void make_mount_point(const char *path, bool dir)
{
	int fd;

	if (dir) {
		if (mkdir(path, 0755) && errno != EEXIST)
			fail(path, errno);
		return;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
	if (fd < 0)
		fail(path, errno);
	close(fd);
}

/* /dev: a tmpfs with the host's harmless device nodes bound in (mknod is
 * not allowed in a user namespace, and a node made here could not be
 * opened: mounts made in one are nodev), a private devpts and /dev/shm. */
static void mount_dev(void)
{
	static const char *const nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
	char host[32], inside[32];

	mount_or_fail("dev", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k",
		      "mount /dev");
	for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
		snprintf(host, sizeof(host), "/dev/%s", nodes[i]);
		snprintf(inside, sizeof(inside), "dev/%s", nodes[i]);
		make_mount_point(inside, false);
		mount_or_fail(host, inside, NULL, MS_BIND, NULL, inside);
	}
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
	/* Nothing more is added to /dev. */
	mount_or_fail(NULL, "dev", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC,
		      "mode=0755,size=64k", "remount /dev read-only");
}

/* A fresh procfs, with what a container runtime hides: the kernel's
 * global knobs read-only, and files and dirs that leak host state or
 * reach kernel internals covered. A path this kernel lacks is skipped. */
static void mount_proc(void)
{
	static const char *const read_only[] = {"proc/sys", "proc/sysrq-trigger", "proc/irq",
						"proc/bus", "proc/fs"};
	static const char *const masked_files[] = {"proc/kcore",	 "proc/keys",
						   "proc/timer_list",	 "proc/sched_debug",
						   "proc/latency_stats", "proc/timer_stats"};
	static const char *const masked_dirs[] = {"proc/acpi", "proc/scsi"};
	const unsigned long locked = MS_NOSUID | MS_NODEV | MS_NOEXEC;
	struct stat st;

	mount_or_fail("proc", "proc", "proc", locked, NULL, "mount /proc");
	for (size_t i = 0; i < sizeof(read_only) / sizeof(read_only[0]); i++) {
		if (lstat(read_only[i], &st))
			continue;
		mount_or_fail(read_only[i], read_only[i], NULL, MS_BIND | MS_REC, NULL,
			      read_only[i]);
		mount_or_fail(NULL, read_only[i], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | locked,
			      NULL, read_only[i]);
	}
	for (size_t i = 0; i < sizeof(masked_files) / sizeof(masked_files[0]); i++)
		if (lstat(masked_files[i], &st) == 0)
			mount_or_fail("/dev/null", masked_files[i], NULL, MS_BIND, NULL,
				      masked_files[i]);
	for (size_t i = 0; i < sizeof(masked_dirs) / sizeof(masked_dirs[0]); i++)
		if (lstat(masked_dirs[i], &st) == 0)
			mount_or_fail("masked", masked_dirs[i], "tmpfs", MS_RDONLY | locked,
				      "mode=0555,size=4k", masked_dirs[i]);
}

/* Attaches the detached volume mount fd at path (absolute, relative to the
 * new root = the working directory), making missing directories (0755,
 * root's) one component at a time without following a symlink. */
static void attach_volume(int fd, const char *path)
{
	char component[256];
	int dir = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC), next;

	if (dir < 0)
		fail("open the new root", errno);
	for (const char *seg = path + 1; *seg;) {
		size_t n = strcspn(seg, "/");

		if (n == 0 || n >= sizeof(component))
			fail("volume path", EINVAL);
		memcpy(component, seg, n);
		component[n] = '\0';
		if (mkdirat(dir, component, 0755) && errno != EEXIST)
			fail("make a volume's mount point", errno);
		next = openat(dir, component, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0)
			fail("open a volume's mount point (no symlinks)", errno);
		close(dir);
		dir = next;
		seg += n;
		if (*seg == '/')
			seg++;
	}
	if (syscall(SYS_move_mount, fd, "", dir, "",
		    MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH))
		fail("attach a volume", errno);
	close(fd);
	close(dir);
}

/* The root, from the working directory (the sandbox's state dir): the
 * idmapped template attached at lower/, overlay of it and upper/ on
 * merged/, /dev, /proc, /tmp, then pivot_root into it. */
static void build_root(const struct init_args *args)
{
	char options[128];

	/* Nothing mounted here may propagate back to the host. */
	mount_or_fail(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL, "make / private");
	if (syscall(SYS_move_mount, args->lower_fd, "", AT_FDCWD, "lower", MOVE_MOUNT_F_EMPTY_PATH))
		fail("attach the idmapped template", errno);
	close(args->lower_fd);
	/* userxattr: overlay's own xattrs in user.*, the trusted.* ones being
	 * out of reach in a user namespace. */
	mount_or_fail("overlay", "merged", "overlay", MS_NOSUID | MS_NODEV,
		      args->disk_size
			  ? "lowerdir=lower,upperdir=disk/upper,workdir=disk/work,userxattr"
			  : "lowerdir=lower,upperdir=upper,workdir=work,userxattr",
		      "mount overlay");
	if (chdir("merged"))
		fail("chdir merged", errno);
	/* Mount points the template may lack (paths relative to merged/). */
	mkdir("proc", 0555);
	mkdir("dev", 0755);
	mkdir("tmp", 01777);
	mount_dev();
	mount_proc();
	snprintf(options, sizeof(options), "mode=1777,size=%llu", args->tmp_size);
	mount_or_fail("tmp", "tmp", "tmpfs", MS_NOSUID | MS_NODEV, options, "mount /tmp");
	for (int i = 0; i < args->volume_count; i++)
		attach_volume(args->volume_fd[i], args->volume_path[i]);

	/* pivot_root(".", "."): the old root ends up stacked under the new
	 * one and is detached right away (pivot_root(2), NOTES). */
	if (syscall(SYS_pivot_root, ".", "."))
		fail("pivot_root", errno);
	if (umount2(".", MNT_DETACH))
		fail("detach old root", errno);
	if (chdir("/"))
		fail("chdir /", errno);
}

/* Installs the worker's compiled filter (jail_policy__seccomp_program_fd),
 * the same program seccomp_load would make from jail_policy__seccomp_build
 * here, ~1 ms of CPU sooner; closes its descriptor. */
static void load_compiled_filter(int fd)
{
	static struct sock_filter program[BPF_MAXINSNS];
	long count = jail_policy__seccomp_read(fd, program, BPF_MAXINSNS);
	struct sock_fprog filter = {.len = (unsigned short)count, .filter = program};

	close(fd);
	if (count <= 0)
		fail("read the seccomp program", EINVAL);
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &filter))
		fail("seccomp", errno);
}

static void drop_privileges(int seccomp_fd)
{
	size_t count, rules;
	const int *kept = jail_policy__kept_capabilities(&count);
	char err[256];
	scmp_filter_ctx filter;
	int ret;

	capng_clear(CAPNG_SELECT_BOTH);
	for (size_t i = 0; i < count; i++)
		if (capng_update(CAPNG_ADD, CAPNG_EFFECTIVE | CAPNG_PERMITTED | CAPNG_BOUNDING_SET,
				 (unsigned int)kept[i]))
			fail("capng_update", EINVAL);
	if (capng_apply(CAPNG_SELECT_BOTH))
		fail("capng_apply", errno ? errno : EPERM);
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) && errno != EINVAL)
		fail("clear ambient caps", errno);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		fail("no_new_privs", errno);
	if (seccomp_fd >= 0) {
		load_compiled_filter(seccomp_fd);
		return;
	}
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

/* Starts the program with its stdout and stderr on output_fd; returns
 * once it exec'ed (exec failures are fatal). */
static pid_t start_program(char **program, int output_fd)
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
		if (dup2(output_fd, 1) < 0 || dup2(output_fd, 2) < 0)
			_exit(127);
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

/* Copies what the sandbox printed to the console log (our stdout, a
 * host file) until console_max bytes were written, then one line saying
 * so, then nothing: a sandbox cannot fill the host's disk through it.
 * 1 after a read, 0 at end of file, -1 when nothing was there. */
static int relay_output(int output_fd, unsigned long long console_max, unsigned long long *written)
{
	static const char capped[] =
	    "\n[warren-jail-init: console log capped; later output dropped]\n";
	char buffer[16384];
	ssize_t n = read(output_fd, buffer, sizeof(buffer));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return -1;
	if (n <= 0)
		return 0;
	if (*written < console_max) {
		size_t room = console_max - *written;
		size_t length = (size_t)n < room ? (size_t)n : room;

		if (write(1, buffer, length) < 0)
			return 1;
		*written += length;
		if (*written >= console_max && write(1, capped, sizeof(capped) - 1) < 0)
			return 1;
	}
	return 1;
}

/* Relays output and reaps every process until the program exits (the
 * kernel then kills what is left in the pid namespace); returns the exit
 * code for the host: the program's, or 128 + the signal that killed it. */
static int supervise(int output_fd, int signal_fd, unsigned long long console_max)
{
	unsigned long long written = 0;
	bool output_open = true;

	for (;;) {
		struct pollfd fds[2] = {{.fd = signal_fd, .events = POLLIN},
					{.fd = output_open ? output_fd : -1, .events = POLLIN}};
		struct signalfd_siginfo info;
		int status;
		pid_t pid;

		if (poll(fds, 2, -1) < 0 && errno != EINTR)
			return 127;
		if (fds[1].revents)
			output_open = relay_output(output_fd, console_max, &written) != 0;
		if (!(fds[0].revents & POLLIN) || read(signal_fd, &info, sizeof(info)) <= 0)
			continue;
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			if (pid != agent_pid)
				continue;
			/* What is still in the pipe, without waiting for writers
			 * the program may have left behind. */
			fcntl(output_fd, F_SETFL, O_NONBLOCK);
			while (output_open && relay_output(output_fd, console_max, &written) > 0)
				;
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		}
	}
}

int main(int argc, char **argv)
{
	struct init_args args;
	struct sigaction action;
	int output[2], signal_fd;
	sigset_t child_signal;

	if (parse_args(argc, argv, &args)) {
		fprintf(stderr, "warren-jail-init: bad arguments (started by jail__start only)\n");
		return 127;
	}
	status_fd = args.status_fd;
	/* Exec'ed from a descriptor: the name would be its number. */
	prctl(PR_SET_NAME, "warren-jail-init", 0, 0, 0);
	/* No descriptor of the worker beyond stdio and ours stays open here
	 * or reaches the program, even one it forgot to mark close-on-exec. */
	int keep[3 + 8] = {args.status_fd, args.lower_fd}, kept = 2;

	for (int i = 0; i < args.volume_count; i++) {
		keep[kept++] = args.volume_fd[i];
		fcntl(args.volume_fd[i], F_SETFD, FD_CLOEXEC);
	}
	if (args.seccomp_fd >= 0) {
		keep[kept++] = args.seccomp_fd;
		fcntl(args.seccomp_fd, F_SETFD, FD_CLOEXEC);
	}
	close_all_except(keep, kept);
	fcntl(status_fd, F_SETFD, FD_CLOEXEC);
	fcntl(args.lower_fd, F_SETFD, FD_CLOEXEC);
	if (getpid() != 1)
		fail("not pid 1 of a new pid namespace", EINVAL);
	/* The parent placed us in the sandbox's cgroups before we ran. */
	if (unshare(CLONE_NEWCGROUP))
		fail("unshare cgroup namespace", errno);
	build_root(&args);
	if (sethostname(args.hostname, strlen(args.hostname)))
		fail("sethostname", errno);
	umask(022);
	drop_privileges(args.seccomp_fd);
	/* Nothing inside may read or trace PID 1. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

	memset(&action, 0, sizeof(action));
	action.sa_handler = forward_signal;
	sigemptyset(&action.sa_mask);
	sigaction(SIGTERM, &action, NULL);
	sigaction(SIGINT, &action, NULL);
	sigaction(SIGHUP, &action, NULL);
	sigemptyset(&child_signal);
	sigaddset(&child_signal, SIGCHLD);
	sigprocmask(SIG_BLOCK, &child_signal, NULL);
	signal_fd = signalfd(-1, &child_signal, SFD_CLOEXEC);
	if (signal_fd < 0 || pipe2(output, O_CLOEXEC))
		fail("signalfd/pipe", errno);
	agent_pid = start_program(args.program, output[1]);
	close(output[1]);
	report("ok");
	close(status_fd);
	status_fd = -1;
	return supervise(output[0], signal_fd, args.console_max);
}

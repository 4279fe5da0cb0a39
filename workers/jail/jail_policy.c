/* jail_policy: seccomp allow-list (with the named denials that answer
 * EPERM) and kept capabilities of a jail. workers/jail/README.md,
 * "Seccomp" and "Capabilities". */
#include "jail_policy.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

/* Namespace flags of clone(2)/unshare(2): a jailed process may not make
 * namespaces (a user namespace would hand it back CAP_SYS_ADMIN over new
 * mount trees, the largest kernel attack surface). CLONE_NEWTIME shares
 * its bit with CSIGNAL in clone(2), so it is only checked for unshare. */
#define NAMESPACE_FLAGS                                                                            \
	((uint64_t)(CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |  \
		    CLONE_NEWPID | CLONE_NEWNET))

static const struct jail_syscall_rule syscall_rules[] = {
    /* Replacing or changing the kernel. */
    {"kexec_load", EPERM, -1, 0},
    {"kexec_file_load", EPERM, -1, 0},
    {"init_module", EPERM, -1, 0},
    {"finit_module", EPERM, -1, 0},
    {"delete_module", EPERM, -1, 0},
    {"reboot", EPERM, -1, 0},
    {"swapon", EPERM, -1, 0},
    {"swapoff", EPERM, -1, 0},
    {"acct", EPERM, -1, 0},
    {"quotactl", EPERM, -1, 0},
    {"quotactl_fd", EPERM, -1, 0},
    {"iopl", EPERM, -1, 0},
    {"ioperm", EPERM, -1, 0},
    {"syslog", EPERM, -1, 0},
    {"vhangup", EPERM, -1, 0},
    {"uselib", EPERM, -1, 0},
    {"nfsservctl", EPERM, -1, 0},
    {"_sysctl", EPERM, -1, 0},
    {"lookup_dcookie", EPERM, -1, 0},
    /* The mount tree is final once the jail is set up. */
    {"mount", EPERM, -1, 0},
    {"umount2", EPERM, -1, 0},
    {"pivot_root", EPERM, -1, 0},
    {"fsopen", EPERM, -1, 0},
    {"fsconfig", EPERM, -1, 0},
    {"fsmount", EPERM, -1, 0},
    {"fspick", EPERM, -1, 0},
    {"move_mount", EPERM, -1, 0},
    {"open_tree", EPERM, -1, 0},
    {"mount_setattr", EPERM, -1, 0},
    /* Namespaces: none joined, none made. */
    {"setns", EPERM, -1, 0},
    {"unshare", EPERM, 0, NAMESPACE_FLAGS | CLONE_NEWTIME},
    {"clone", EPERM, 0, NAMESPACE_FLAGS},
    /* clone3 passes its flags in memory seccomp cannot read: ENOSYS makes
     * glibc fall back to clone(2), which is checked above. */
    {"clone3", ENOSYS, -1, 0},
    /* Large kernel attack surface a sandbox does not need. */
    {"bpf", EPERM, -1, 0},
    {"perf_event_open", EPERM, -1, 0},
    {"userfaultfd", EPERM, -1, 0},
    {"add_key", EPERM, -1, 0},
    {"request_key", EPERM, -1, 0},
    {"keyctl", EPERM, -1, 0},
    {"io_uring_setup", EPERM, -1, 0},
    {"io_uring_enter", EPERM, -1, 0},
    {"io_uring_register", EPERM, -1, 0},
    /* File handles bypass the mount tree (the "shocker" escape). */
    {"open_by_handle_at", EPERM, -1, 0},
    {"name_to_handle_at", EPERM, -1, 0},
    /* The host's clock is shared. */
    {"clock_settime", EPERM, -1, 0},
    {"clock_adjtime", EPERM, -1, 0},
    {"settimeofday", EPERM, -1, 0},
};

/* What a sandbox may call: the shape of the default profile container
 * runtimes ship, written for a sandbox that runs shells, interpreters,
 * compilers, servers and the agent (threads, epoll, inotify, user
 * switching). Anything not here and not denied above gets ENOSYS, so a
 * syscall added by a future kernel is refused until it is reviewed, and
 * libcs fall back as they do on an older kernel. clone and unshare are
 * allowed only without namespace flags (jail_policy__seccomp_build). */
static const char *const allowed_syscalls[] = {
    "accept",
    "accept4",
    "access",
    "alarm",
    "arch_prctl",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "clock_getres",
    "clock_gettime",
    "clock_nanosleep",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fallocate",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchownat",
    "fcntl",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstatfs",
    "fsync",
    "ftruncate",
    "futex",
    "futex_requeue",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "get_mempolicy",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "geteuid",
    "getgid",
    "getgroups",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresuid",
    "getrlimit",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "gettid",
    "gettimeofday",
    "getuid",
    "getxattr",
    "getxattrat",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_setup",
    "io_submit",
    "ioctl",
    "ioprio_get",
    "ioprio_set",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "listxattrat",
    "llistxattr",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "madvise",
    "map_shadow_stack",
    "mbind",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedsend",
    "mq_unlink",
    "mremap",
    "mseal",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "nanosleep",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pause",
    "personality",
    "pidfd_getfd",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_madvise",
    "process_mrelease",
    "process_vm_readv",
    "process_vm_writev",
    "pselect6",
    "ptrace",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recvfrom",
    "recvmmsg",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "removexattrat",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_tgsigqueueinfo",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "sendfile",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "set_mempolicy",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setfsgid",
    "setfsuid",
    "setgid",
    "setgroups",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setresgid",
    "setresuid",
    "setreuid",
    "setrlimit",
    "setsid",
    "setsockopt",
    "setuid",
    "setxattr",
    "setxattrat",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "socket",
    "socketpair",
    "splice",
    "stat",
    "statfs",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_settime",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_settime",
    "times",
    "tkill",
    "truncate",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimes",
    "vfork",
    "wait4",
    "waitid",
    "write",
    "writev",
};

/* What the agent needs to run commands as `user` and manage their files
 * and processes; everything else (CAP_SYS_ADMIN, CAP_NET_ADMIN,
 * CAP_SYS_PTRACE, CAP_MKNOD, CAP_SYS_MODULE, ...) is gone, also from the
 * bounding set, so no exec can get it back. */
static const int kept_capabilities[] = {
    CAP_CHOWN,		  /* chown files to `user` (uploads) */
    CAP_DAC_OVERRIDE,	  /* read/write files of any user (the /files API) */
    CAP_FOWNER,		  /* chmod/utime files it does not own */
    CAP_KILL,		  /* signal processes of `user` */
    CAP_SETGID,		  /* switch to the requested user's groups */
    CAP_SETUID,		  /* switch to the requested user */
    CAP_NET_BIND_SERVICE, /* ports < 1024 for user servers started as root */
};

const struct jail_syscall_rule *jail_policy__syscall_rules(size_t *count)
{
	*count = sizeof(syscall_rules) / sizeof(syscall_rules[0]);
	return syscall_rules;
}

const char *const *jail_policy__allowed_syscalls(size_t *count)
{
	*count = sizeof(allowed_syscalls) / sizeof(allowed_syscalls[0]);
	return allowed_syscalls;
}

const int *jail_policy__kept_capabilities(size_t *count)
{
	*count = sizeof(kept_capabilities) / sizeof(kept_capabilities[0]);
	return kept_capabilities;
}

/* The allow-list; clone and unshare only when no namespace flag is set
 * (the denials per flag bit answer EPERM otherwise). 0 or -errno. */
static int add_allowed(scmp_filter_ctx ctx, size_t *added)
{
	int ret;

	for (size_t i = 0; i < sizeof(allowed_syscalls) / sizeof(allowed_syscalls[0]); i++) {
		int nr = seccomp_syscall_resolve_name(allowed_syscalls[i]);

		if (nr == __NR_SCMP_ERROR)
			continue; /* not in this libseccomp: stays refused */
		ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
		if (ret)
			return ret;
		(*added)++;
	}
	ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
			       SCMP_A0(SCMP_CMP_MASKED_EQ, NAMESPACE_FLAGS, 0));
	if (!ret)
		ret = seccomp_rule_add(
		    ctx, SCMP_ACT_ALLOW, SCMP_SYS(unshare), 1,
		    SCMP_A0(SCMP_CMP_MASKED_EQ, NAMESPACE_FLAGS | CLONE_NEWTIME, 0));
	if (!ret)
		*added += 2;
	return ret;
}

scmp_filter_ctx jail_policy__seccomp_build(size_t *rules_added, char *err, size_t err_len)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(ENOSYS));
	size_t added = 0;
	int ret;

	*rules_added = 0;
	if (!ctx) {
		snprintf(err, err_len, "seccomp_init failed");
		return NULL;
	}
	/* Syscalls of another ABI (i386 int 0x80, x32) kill the process. */
	ret = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
	if (!ret)
		ret = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 1);
	if (ret) {
		snprintf(err, err_len, "seccomp_attr_set: %s", strerror(-ret));
		goto err;
	}
	for (size_t i = 0; i < sizeof(syscall_rules) / sizeof(syscall_rules[0]); i++) {
		const struct jail_syscall_rule *rule = &syscall_rules[i];
		int nr = seccomp_syscall_resolve_name(rule->name);

		if (nr == __NR_SCMP_ERROR)
			continue; /* not known to this libseccomp: nothing to deny */
		if (rule->flags_arg < 0 && rule->errno_value == ENOSYS) {
			added++; /* the default action already answers that */
			continue;
		}
		if (rule->flags_arg < 0) {
			ret = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(rule->errno_value), nr, 0);
			if (ret)
				goto rule_failed;
			added++;
			continue;
		}
		/* One rule per flag bit: (arg & bit) == bit. */
		for (int bit = 0; bit < 64; bit++) {
			uint64_t flag = 1ULL << bit;

			if (!(rule->flags_mask & flag))
				continue;
			ret = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(rule->errno_value), nr, 1,
					       SCMP_CMP((unsigned int)rule->flags_arg,
							SCMP_CMP_MASKED_EQ, flag, flag));
			if (ret)
				goto rule_failed;
			added++;
		}
		continue;
	rule_failed:
		snprintf(err, err_len, "seccomp rule for %s: %s", rule->name, strerror(-ret));
		goto err;
	}
	ret = add_allowed(ctx, &added);
	if (ret) {
		snprintf(err, err_len, "seccomp allow rules: %s", strerror(-ret));
		goto err;
	}
	*rules_added = added;
	return ctx;
err:
	seccomp_release(ctx);
	return NULL;
}

int jail_policy__seccomp_program_fd(char *err, size_t err_len)
{
	size_t rules;
	scmp_filter_ctx filter = jail_policy__seccomp_build(&rules, err, err_len);
	int fd = -1, ret;

	if (!filter)
		return -1;
	fd = memfd_create("warren-seccomp", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0) {
		snprintf(err, err_len, "memfd_create: %s", strerror(errno));
		goto out;
	}
	ret = seccomp_export_bpf(filter, fd);
	if (ret) {
		snprintf(err, err_len, "seccomp_export_bpf: %s", strerror(-ret));
		goto fail;
	}
	/* Nothing may change it from now on, not even the worker. */
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) ||
	    lseek(fd, 0, SEEK_SET) != 0) {
		snprintf(err, err_len, "seal the seccomp program: %s", strerror(errno));
		goto fail;
	}
	goto out;
fail:
	close(fd);
	fd = -1;
out:
	seccomp_release(filter);
	return fd;
}

long jail_policy__seccomp_read(int fd, void *filter, size_t max)
{
	struct stat st;
	ssize_t n;

	if (fstat(fd, &st) || st.st_size <= 0 || st.st_size % 8 || (size_t)st.st_size / 8 > max)
		return -1;
	n = pread(fd, filter, (size_t)st.st_size, 0);
	return n == st.st_size ? (long)(n / 8) : -1;
}

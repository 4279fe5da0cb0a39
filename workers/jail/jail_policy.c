/* jail_policy: seccomp deny-list and kept capabilities of a jail.
 * workers/jail/README.md, "Seccomp" and "Capabilities". */
#include "jail_policy.h"

#include <errno.h>
#include <linux/capability.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

/* Namespace flags of clone(2)/unshare(2): a jailed process may not make
 * namespaces (a user namespace would hand it back CAP_SYS_ADMIN over new
 * mount trees, the largest kernel attack surface). CLONE_NEWTIME shares
 * its bit with CSIGNAL in clone(2), so it is only checked for unshare. */
#define NAMESPACE_FLAGS                                                                  \
	((uint64_t)(CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |         \
		    CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET))

static const struct jail_syscall_rule syscall_rules[] = {
	/* Replacing or changing the kernel. */
	{ "kexec_load", EPERM, -1, 0 },
	{ "kexec_file_load", EPERM, -1, 0 },
	{ "init_module", EPERM, -1, 0 },
	{ "finit_module", EPERM, -1, 0 },
	{ "delete_module", EPERM, -1, 0 },
	{ "reboot", EPERM, -1, 0 },
	{ "swapon", EPERM, -1, 0 },
	{ "swapoff", EPERM, -1, 0 },
	{ "acct", EPERM, -1, 0 },
	{ "quotactl", EPERM, -1, 0 },
	{ "quotactl_fd", EPERM, -1, 0 },
	{ "iopl", EPERM, -1, 0 },
	{ "ioperm", EPERM, -1, 0 },
	{ "syslog", EPERM, -1, 0 },
	{ "vhangup", EPERM, -1, 0 },
	{ "uselib", EPERM, -1, 0 },
	{ "nfsservctl", EPERM, -1, 0 },
	{ "_sysctl", EPERM, -1, 0 },
	{ "lookup_dcookie", EPERM, -1, 0 },
	/* The mount tree is final once the jail is set up. */
	{ "mount", EPERM, -1, 0 },
	{ "umount2", EPERM, -1, 0 },
	{ "pivot_root", EPERM, -1, 0 },
	{ "fsopen", EPERM, -1, 0 },
	{ "fsconfig", EPERM, -1, 0 },
	{ "fsmount", EPERM, -1, 0 },
	{ "fspick", EPERM, -1, 0 },
	{ "move_mount", EPERM, -1, 0 },
	{ "open_tree", EPERM, -1, 0 },
	{ "mount_setattr", EPERM, -1, 0 },
	/* Namespaces: none joined, none made. */
	{ "setns", EPERM, -1, 0 },
	{ "unshare", EPERM, 0, NAMESPACE_FLAGS | CLONE_NEWTIME },
	{ "clone", EPERM, 0, NAMESPACE_FLAGS },
	/* clone3 passes its flags in memory seccomp cannot read: ENOSYS makes
	 * glibc fall back to clone(2), which is checked above. */
	{ "clone3", ENOSYS, -1, 0 },
	/* Large kernel attack surface a sandbox does not need. */
	{ "bpf", EPERM, -1, 0 },
	{ "perf_event_open", EPERM, -1, 0 },
	{ "userfaultfd", EPERM, -1, 0 },
	{ "add_key", EPERM, -1, 0 },
	{ "request_key", EPERM, -1, 0 },
	{ "keyctl", EPERM, -1, 0 },
	{ "io_uring_setup", EPERM, -1, 0 },
	{ "io_uring_enter", EPERM, -1, 0 },
	{ "io_uring_register", EPERM, -1, 0 },
	/* File handles bypass the mount tree (the "shocker" escape). */
	{ "open_by_handle_at", EPERM, -1, 0 },
	{ "name_to_handle_at", EPERM, -1, 0 },
	/* The host's clock is shared. */
	{ "clock_settime", EPERM, -1, 0 },
	{ "clock_adjtime", EPERM, -1, 0 },
	{ "settimeofday", EPERM, -1, 0 },
};

/* What the agent needs to run commands as `user` and manage their files
 * and processes; everything else (CAP_SYS_ADMIN, CAP_NET_ADMIN,
 * CAP_SYS_PTRACE, CAP_MKNOD, CAP_SYS_MODULE, ...) is gone, also from the
 * bounding set, so no exec can get it back. */
static const int kept_capabilities[] = {
	CAP_CHOWN,	  /* chown files to `user` (uploads) */
	CAP_DAC_OVERRIDE, /* read/write files of any user (the /files API) */
	CAP_FOWNER,	  /* chmod/utime files it does not own */
	CAP_KILL,	  /* signal processes of `user` */
	CAP_SETGID,	  /* switch to the requested user's groups */
	CAP_SETUID,	  /* switch to the requested user */
	CAP_NET_BIND_SERVICE, /* ports < 1024 for user servers started as root */
};

const struct jail_syscall_rule *jail_policy__syscall_rules(size_t *count)
{
	*count = sizeof(syscall_rules) / sizeof(syscall_rules[0]);
	return syscall_rules;
}

const int *jail_policy__kept_capabilities(size_t *count)
{
	*count = sizeof(kept_capabilities) / sizeof(kept_capabilities[0]);
	return kept_capabilities;
}

scmp_filter_ctx jail_policy__seccomp_build(size_t *rules_added, char *err, size_t err_len)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
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
	*rules_added = added;
	return ctx;
err:
	seccomp_release(ctx);
	return NULL;
}

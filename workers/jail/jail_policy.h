/* jail_policy: what a jailed sandbox may do. The seccomp allow-list, the
 * named denials and
 * the capability set the agent keeps, as tables, shared by the library
 * (for tests) and warren-jail-init (which applies them).
 * workers/jail/README.md documents both sets and why. */
#ifndef WARREN_JAIL_POLICY_H
#define WARREN_JAIL_POLICY_H

#include <seccomp.h>
#include <stddef.h>
#include <stdint.h>

struct jail_syscall_rule {
	const char *name; /* libseccomp name; unknown ones are skipped */
	int errno_value;  /* what the caller gets (EPERM, or ENOSYS for clone3) */
	int flags_arg;	  /* -1: denied whatever the arguments; else the argument
			     holding flags, denied when any bit of flags_mask is set */
	uint64_t flags_mask;
};

/* The named denials (EPERM, or ENOSYS for clone3). *count gets its length. */
const struct jail_syscall_rule *jail_policy__syscall_rules(size_t *count);

/* The allow-list (libseccomp names; unknown ones stay refused). */
const char *const *jail_policy__allowed_syscalls(size_t *count);

/* The capabilities kept (effective, permitted, bounding); *count its length. */
const int *jail_policy__kept_capabilities(size_t *count);

/* Builds the seccomp filter (default ENOSYS, the allow-list, the named
 * denials, other architectures killed, no_new_privs set on load). NULL with a reason in
 * err on failure; *rules_added gets the number of libseccomp rules. */
scmp_filter_ctx jail_policy__seccomp_build(size_t *rules_added, char *err, size_t err_len);

/* The same filter compiled once into its BPF program (seccomp_export_bpf)
 * in a sealed memfd, close-on-exec, offset 0: the worker makes it once and
 * hands it to every warren-jail-init (--seccomp-fd), which installs it
 * instead of building it again (jail_policy__seccomp_read). -1 with err. */
int jail_policy__seccomp_program_fd(char *err, size_t err_len);

/* Reads a program made by jail_policy__seccomp_program_fd from fd into
 * filter (at most max instructions of 8 bytes); the instruction count, or
 * -1 when the file is not a whole, non-empty program that fits. */
long jail_policy__seccomp_read(int fd, void *filter, size_t max);

#endif

/* hardening: how warren-vmm locks itself down before the guest runs (after
 * setup nothing opens files, creates sockets, threads or KVM objects), and
 * fails closed: a step that cannot be done stops the start.
 *
 * The seccomp allow-list: a call outside it raises SIGSYS, the handler
 * writes the syscall number to stderr and the process exits with status
 * 126. */
#ifndef WARREN_VMM_HARDENING_H
#define WARREN_VMM_HARDENING_H

#include <stdbool.h>
#include <stddef.h>

/* Installs the filter for every thread of the process (TSYNC). Returns 0,
 * or -errno. */
int hardening__install_seccomp(void);

/* 0 when no thread of this process (io_uring's kernel workers aside)
 * holds an effective or permitted capability; else -EPERM with the
 * thread named in error. Reads /proc/self/task (before seccomp). */
int hardening__check_no_capabilities(char *error, size_t error_size);

/* The whole lock-down, in order: PR_SET_NO_NEW_PRIVS, every capability of
 * the calling thread dropped (the bounding set too where allowed), no
 * thread left with one, then the seccomp allow-list when `seccomp`.
 * Returns 0, or -errno with the failed step in error: the caller must not
 * run the guest then. */
int hardening__lock_down(bool seccomp, char *error, size_t error_size);

#endif

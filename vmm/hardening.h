/* hardening: the seccomp allow-list warren-vmm runs under once its VM started (after
 * setup nothing opens files, creates sockets, threads or KVM objects). A
 * call outside the list raises SIGSYS: the handler writes the syscall
 * number to stderr and the process exits with status 126. */
#ifndef WARREN_VMM_HARDENING_H
#define WARREN_VMM_HARDENING_H

/* Installs the filter for every thread of the process (TSYNC). Returns 0,
 * or -errno (the caller logs and goes on without it). */
int hardening__install_seccomp(void);

#endif

/* jail: warren-vmm confines itself before it creates the VM, the way
 * Firecracker's jailer confines firecracker, but in-process (the binary
 * and its libraries are mapped already, so the new root needs none of
 * them): `--jail DIR --jail-uid U --jail-gid G`.
 *
 * Started as root (by the worker, already in the sandbox's network
 * namespace and cgroup), jail__enter():
 *   1. refuses unless the process is single-threaded, DIR is an absolute
 *      directory and U, G are not 0;
 *   2. opens the taps of the net devices now (TUNSETIFF needs
 *      CAP_NET_ADMIN) and hands each device its fd ("tap_fd");
 *   3. unshares its mount namespace (all mounts private), bind-mounts DIR
 *      onto itself (nosuid, noexec) and lays it out: /kernel and /initrd
 *      bind-mounted read-only, read-only disks outside DIR bind-mounted
 *      read-only at /disk<N>, copy-on-write bases at /base<N>, writable
 *      disks (and overlays) must already be inside DIR (given to U:G), /dev/kvm a fresh node owned
 * by U:G (mode 0600); console and control socket paths must be inside DIR;
 *   4. pivot_root()s into DIR and detaches the old root;
 *   5. drops to U:G with no supplementary groups (every capability goes
 *      with uid 0), marks itself not dumpable, and checks it holds none.
 * Paths in config are rewritten to their place inside the jail. The
 * lock-down (no_new_privs, seccomp) follows as usual before the guest
 * runs. */
#ifndef WARREN_VMM_JAIL_H
#define WARREN_VMM_JAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "vm.h"

struct jail_options {
	const char *root; /* absolute directory: the VMM's new / */
	uid_t uid;
	gid_t gid;
};

/* See above. *api_socket (may point to NULL) is rewritten like the config
 * paths. 0, or -errno with the reason in error (the process must exit
 * then: it may be half-way in). */
int jail__enter(const struct jail_options *options, struct vm_config *config,
		const char **api_socket, char *error, size_t error_size);

/* True when `path` names something inside the jail `root` (taken
 * literally: no "..", no symlinks); *inner is then the path as the jailed
 * process sees it (a pointer into path). */
bool jail__path_inside(const char *root, const char *path, const char **inner);

/* Parses a uid/gid argument: 1 .. 2^32-2. 0 or -EINVAL. */
int jail__parse_id(const char *text, unsigned *out);

#endif

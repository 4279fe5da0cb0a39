/* exec_status: how a forked child tells its parent whether its execve
 * worked. The parent opens a close-on-exec pipe before fork; a child whose
 * exec succeeds never writes (the pipe closes with the exec), a child that
 * fails writes its errno and exits. Used by the agent's process launch and
 * the vm runtime's VMM spawn. (The jail's init reports a text line
 * instead: it fails inside namespaces, with reasons no errno carries.) */
#ifndef WARREN_EXEC_STATUS_H
#define WARREN_EXEC_STATUS_H

/* Opens the pipe (both ends close-on-exec). 0, or -errno. */
int exec_status__open(int fds[2]);

/* In the child, after fork, when a step before or the exec itself failed:
 * writes child_errno to the write end and _exit(exit_status).
 * Async-signal-safe. */
_Noreturn void exec_status__fail(int write_fd, int child_errno, int exit_status);

/* In the parent, after closing its copy of the write end: waits until the
 * child exec'd or failed. 0 when it exec'd (or died without saying why:
 * the caller reaps it), else the child's errno (> 0). */
int exec_status__wait(int read_fd);

#endif

/* exec_status: see warren/exec_status.h. */
#include "warren/exec_status.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

int exec_status__open(int fds[2])
{
	return pipe2(fds, O_CLOEXEC) ? -errno : 0;
}

_Noreturn void exec_status__fail(int write_fd, int child_errno, int exit_status)
{
	ssize_t written;

	do
		written = write(write_fd, &child_errno, sizeof(child_errno));
	while (written < 0 && errno == EINTR);
	_exit(exit_status);
}

int exec_status__wait(int read_fd)
{
	int child_errno = 0;
	ssize_t n;

	do
		n = read(read_fd, &child_errno, sizeof(child_errno));
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(child_errno) || child_errno <= 0)
		return 0;
	return child_errno;
}

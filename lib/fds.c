/* fds: see warren/fds.h. */
#include "warren/fds.h"

#include <fcntl.h>
#include <sys/select.h>
#include <unistd.h>

int fds__keep_high(int fd)
{
	int high;

	if (fd < 0 || fd >= FD_SETSIZE)
		return fd;
	high = fcntl(fd, F_DUPFD_CLOEXEC, FD_SETSIZE);
	if (high < 0)
		return fd; /* RLIMIT_NOFILE at or below FD_SETSIZE: keep it low */
	close(fd);
	return high;
}

/* service: see warren/service.h. */
#include "warren/service.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int service__notify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un address = {.sun_family = AF_UNIX};
	size_t path_len;
	socklen_t address_len;
	ssize_t sent;
	int fd, ret = 0;

	if (!path || !*path)
		return 0;
	path_len = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || path_len >= sizeof(address.sun_path))
		return -EINVAL;
	memcpy(address.sun_path, path, path_len);
	if (path[0] == '@')
		address.sun_path[0] = '\0'; /* abstract namespace */
	address_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_len);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	sent = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&address,
		      address_len);
	if (sent < 0)
		ret = -errno;
	close(fd);
	return ret;
}

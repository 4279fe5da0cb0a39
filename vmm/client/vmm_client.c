/* vmm_client: see warren/vmm_client.h. */
#include "warren/vmm_client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static void vmm_client__sleep_ms(int ms)
{
	struct timespec pause = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&pause, NULL);
}

int vmm_client__connect(struct vmm_client *client, const char *socket_path, int attempts,
			int retry_ms, int timeout_ms)
{
	struct sockaddr_un address = {.sun_family = AF_UNIX};
	struct timeval timeout = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	int ret = -ENOENT;

	client->fd = -1;
	client->length = 0;
	if (strlen(socket_path) >= sizeof(address.sun_path))
		return -ENAMETOOLONG;
	memcpy(address.sun_path, socket_path, strlen(socket_path) + 1);
	for (int i = 0; i < (attempts > 0 ? attempts : 1); i++) {
		int fd;

		if (i)
			vmm_client__sleep_ms(retry_ms);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		if (timeout_ms > 0) {
			setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
			setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
		}
		if (connect(fd, (struct sockaddr *)&address, sizeof(address)) == 0) {
			client->fd = fd;
			return 0;
		}
		ret = -errno;
		close(fd);
	}
	return ret;
}

/* Sends all of len bytes. 0, or -errno. */
static int vmm_client__send_all(int fd, const char *data, size_t len)
{
	while (len) {
		ssize_t n = send(fd, data, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EWOULDBLOCK ? -EAGAIN : -EIO;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

int vmm_client__exchange(struct vmm_client *client, const char *request, char *response,
			 size_t response_size)
{
	char *newline;
	size_t line;
	int ret;

	if (client->fd < 0)
		return -EIO;
	if ((ret = vmm_client__send_all(client->fd, request, strlen(request))) ||
	    (ret = vmm_client__send_all(client->fd, "\n", 1)))
		return ret;
	while (!(newline = memchr(client->buffer, '\n', client->length))) {
		ssize_t n;

		if (client->length == sizeof(client->buffer))
			return -EMSGSIZE;
		n = recv(client->fd, client->buffer + client->length,
			 sizeof(client->buffer) - client->length, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EWOULDBLOCK ? -EAGAIN : -EIO;
		if (n == 0)
			return -EIO;
		client->length += (size_t)n;
	}
	line = (size_t)(newline - client->buffer);
	if (line + 1 > response_size)
		ret = -EMSGSIZE;
	else {
		memcpy(response, client->buffer, line);
		response[line] = 0;
	}
	client->length -= line + 1;
	memmove(client->buffer, newline + 1, client->length);
	return ret;
}

void vmm_client__close(struct vmm_client *client)
{
	if (client->fd >= 0)
		close(client->fd);
	client->fd = -1;
	client->length = 0;
}

int vmm_client__request(const char *socket_path, const char *request, char *response,
			size_t response_size, int timeout_ms)
{
	struct vmm_client *client = malloc(sizeof(*client));
	int ret;

	if (!client)
		return -ENOMEM;
	ret = vmm_client__connect(client, socket_path, 1, 0, timeout_ms);
	if (!ret)
		ret = vmm_client__exchange(client, request, response, response_size);
	vmm_client__close(client);
	free(client);
	return ret;
}

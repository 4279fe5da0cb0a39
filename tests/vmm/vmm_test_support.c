#include "vmm_test_support.h"

#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vmm_test_util.h"

extern char **environ;

void vmm_test__sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

int vmm_test__session_connect(struct vmm_session *session, const char *path, int attempts)
{
	struct sockaddr_un address = {.sun_family = AF_UNIX};

	if (path != session->path)
		snprintf(session->path, sizeof(session->path), "%s", path);
	snprintf(address.sun_path, sizeof(address.sun_path), "%s", session->path);
	session->length = 0;
	for (int i = 0; i < attempts; i++) {
		if (i)
			vmm_test__sleep_ms(10);
		session->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (connect(session->fd, (struct sockaddr *)&address, sizeof(address)) == 0)
			return 0;
		close(session->fd);
	}
	session->fd = -1;
	return -1;
}

int vmm_test__session_open(struct vmm_session *session, const char *name)
{
	const char *argv[] = {vmm_test__binary(), "--api-socket", session->path, NULL};

	snprintf(session->path, sizeof(session->path), "/tmp/warren-%s-%d.sock", name, getpid());
	if (posix_spawn(&session->pid, argv[0], NULL, NULL, (char *const *)argv, environ) != 0)
		return -1;
	return vmm_test__session_connect(session, session->path, 300);
}

json_t *vmm_test__request(struct vmm_session *session, const char *line)
{
	char *newline;
	json_t *response;

	if (send(session->fd, line, strlen(line), MSG_NOSIGNAL) < 0 ||
	    send(session->fd, "\n", 1, MSG_NOSIGNAL) < 0)
		return NULL;
	while ((newline = memchr(session->buffer, '\n', session->length)) == NULL) {
		ssize_t got = recv(session->fd, session->buffer + session->length,
				   sizeof(session->buffer) - session->length, 0);

		if (got <= 0)
			return NULL;
		session->length += (size_t)got;
	}
	response = json_loadb(session->buffer, (size_t)(newline - session->buffer), 0, NULL);
	session->length -= (size_t)(newline - session->buffer) + 1;
	memmove(session->buffer, newline + 1, session->length);
	return response;
}

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
	if (path != session->path)
		snprintf(session->path, sizeof(session->path), "%s", path);
	return vmm_client__connect(&session->client, session->path, attempts, 10, 0) ? -1 : 0;
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
	static char response[VMM_CLIENT_BUFFER_SIZE];

	if (vmm_client__exchange(&session->client, line, response, sizeof(response)))
		return NULL;
	return json_loads(response, 0, NULL);
}

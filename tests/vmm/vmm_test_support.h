/* Control-socket session helpers shared by the warren-vmm integration tests
 * that drive the VMM over --api-socket (tests/vmm/test_vmm_control.c,
 * tests/vmm/test_vmm_linux.c, tests/virtio/test_virtio_guest.c) and of
 * bench/virtio/bench_compare.c. */
#ifndef WARREN_TEST_VMM_SUPPORT_H
#define WARREN_TEST_VMM_SUPPORT_H

#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

#include "warren/vmm_client.h"

/* A spawned (or found) VMM and a kept connection to its control socket
 * (vmm/client). client.fd is -1 while not connected. */
struct vmm_session {
	pid_t pid;
	char path[108];
	struct vmm_client client;
};

void vmm_test__sleep_ms(long ms);
/* Connects session to the control socket at path, trying `attempts` times
 * 10 ms apart (a VMM that was just spawned creates it a little later).
 * Returns 0, or -1 (session->fd is then -1). */
int vmm_test__session_connect(struct vmm_session *session, const char *path, int attempts);
/* Spawns warren-vmm --api-socket /tmp/warren-<name>-<pid>.sock and connects
 * to it (up to 3 s). Returns 0, or -1 when it could not spawn or connect. */
int vmm_test__session_open(struct vmm_session *session, const char *name);
/* Sends one request line, returns the parsed response line (caller
 * decrefs), NULL on a closed socket or invalid JSON. */
json_t *vmm_test__request(struct vmm_session *session, const char *line);

#endif

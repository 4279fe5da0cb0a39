/* vmm_client: the one client of warren-vmm's control socket
 * (docs/vmm-api.md: one JSON request line, one JSON response line, in
 * order, on a Unix stream socket). Used by the worker's vm runtime and by
 * the tests; it knows the framing, not the operations. */
#ifndef WARREN_VMM_CLIENT_H
#define WARREN_VMM_CLIENT_H

#include <stddef.h>

#define VMM_CLIENT_BUFFER_SIZE 262144

/* A connection kept open for several requests (responses of earlier
 * requests that were not read yet stay buffered in order). */
struct vmm_client {
	int fd;
	size_t length;			     /* bytes buffered, not yet returned */
	char buffer[VMM_CLIENT_BUFFER_SIZE]; /* the unread part of the stream */
};

/* Connects client to socket_path, trying attempts times retry_ms apart
 * (a VMM that was just spawned may not listen yet); send and receive
 * time out after timeout_ms (0: never). 0, or -errno. */
int vmm_client__connect(struct vmm_client *client, const char *socket_path, int attempts,
			int retry_ms, int timeout_ms);

/* Sends request (one line, without its newline) and copies the next
 * response line, without its newline, NUL-terminated, to response. 0,
 * -EMSGSIZE when the line does not fit response or the buffer, -EIO when
 * the connection ended or failed first, -EAGAIN on a timeout. */
int vmm_client__exchange(struct vmm_client *client, const char *request, char *response,
			 size_t response_size);

/* Closes the connection (idempotent). */
void vmm_client__close(struct vmm_client *client);

/* One request on a connection of its own, connect to answer bounded by
 * timeout_ms each way. 0 with the response line in response, or -errno
 * as above (-ENOENT / -ECONNREFUSED: no VMM listens there). */
int vmm_client__request(const char *socket_path, const char *request, char *response,
			size_t response_size, int timeout_ms);

#endif

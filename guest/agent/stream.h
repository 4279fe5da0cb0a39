/* stream: Connect server streams (application/connect+json) between the
 * agent's logic and the HTTP library. A source (a process's output, a
 * WatchDir) produces messages with a bounded wait and knows nothing of
 * HTTP; the adapter, stream__respond() (stream.c, the only file of a
 * stream that knows libmicrohttpd), frames them (envelope.h), sends the
 * source's keepalive when it stays idle, notices a client that went away
 * and ends the stream with the end-stream frame. */
#ifndef WARREN_AGENT_STREAM_H
#define WARREN_AGENT_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Framed bytes waiting to be sent. */
struct stream_buffer {
	uint8_t *data;
	size_t length, offset, capacity;
};

/* Appends one message (a JSON text of `length` bytes) as a frame with
 * `flags` (envelope.h). False when out of memory (nothing appended). */
bool stream_buffer__append(struct stream_buffer *buffer, uint8_t flags, const char *json,
			   size_t length);
void stream_buffer__free(struct stream_buffer *buffer);

enum stream_step {
	STREAM_CONTINUE, /* call next() again (having appended nothing is fine) */
	STREAM_END,	 /* no more messages: what was appended, then end-stream */
	STREAM_FAILED,	 /* end the response with an error, nothing more sent */
};

/* One server stream's producer. next() appends zero or more messages to
 * out, waiting at most wait_ms when none is ready; it runs on the
 * connection's own thread. free() releases opaque (once, when the response
 * is done or could not be created). */
struct stream_source {
	void *opaque;
	enum stream_step (*next)(void *opaque, int wait_ms, struct stream_buffer *out);
	void (*free)(void *opaque);
	const char *keepalive; /* the message sent after keepalive_seconds idle */
	char name[64];	       /* "process 42": for the log when the client goes away */
};

struct MHD_Connection;

/* Answers connection with 200 and the stream of source (Connect
 * "Streaming-Response", JSON codec); keepalive_seconds > 0 adds keepalives.
 * Takes source (freed on failure too). Returns libmicrohttpd's MHD_YES /
 * MHD_NO as an int. */
int stream__respond(struct MHD_Connection *connection, const struct stream_source *source,
		    int keepalive_seconds);

#endif

/* stream: the HTTP side of the agent's server streams (contract in
 * stream.h): libmicrohttpd's content-reader callback over a stream_source. */
#include "stream.h"

#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "envelope.h"
#include "server.h"
#include "warren/clock.h"
#include "warren/log.h"

#define STREAM_BLOCK_SIZE (64 * 1024)
#define STREAM_POLL_MS	  250 /* how often an idle stream checks its client */

struct stream {
	struct stream_source source;
	struct MHD_Connection *connection;
	int keepalive_seconds;
	uint64_t last_write_ns;
	bool ending; /* the source ended: the end-stream frame goes next */
	bool done;   /* the end-stream frame is queued */
	struct stream_buffer buffer;
};

/* Fills the (empty) buffer with the next frames; false when the response
 * ends with an error (the source failed or the client went away). */
static bool stream__refill(struct stream *stream)
{
	struct stream_buffer *buffer = &stream->buffer;

	buffer->offset = buffer->length = 0;
	if (stream->ending) {
		stream->done = true;
		return stream_buffer__append(buffer, ENVELOPE_FLAG_END_STREAM, "{}", 2);
	}
	switch (stream->source.next(stream->source.opaque, STREAM_POLL_MS, buffer)) {
	case STREAM_FAILED:
		return false;
	case STREAM_END:
		stream->ending = true;
		return true;
	case STREAM_CONTINUE:
		break;
	}
	if (buffer->length > 0)
		return true;
	if (agent__peer_closed(stream->connection)) {
		log_info("stream client of %s went away", stream->source.name);
		return false;
	}
	if (stream->keepalive_seconds > 0 && stream->source.keepalive &&
	    clock__monotonic_ns() - stream->last_write_ns >=
		(uint64_t)stream->keepalive_seconds * 1000000000ull)
		return stream_buffer__append(buffer, 0, stream->source.keepalive,
					     strlen(stream->source.keepalive));
	return true;
}

static ssize_t stream__read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct stream *stream = cls;
	struct stream_buffer *buffer = &stream->buffer;
	size_t n;

	(void)pos;
	while (buffer->offset >= buffer->length) {
		if (stream->done)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (!stream__refill(stream))
			return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	n = buffer->length - buffer->offset;
	if (n > max)
		n = max;
	memcpy(buf, buffer->data + buffer->offset, n);
	buffer->offset += n;
	stream->last_write_ns = clock__monotonic_ns();
	return (ssize_t)n;
}

static void stream__free(void *cls)
{
	struct stream *stream = cls;

	stream->source.free(stream->source.opaque);
	stream_buffer__free(&stream->buffer);
	free(stream);
}

int stream__respond(struct MHD_Connection *connection, const struct stream_source *source,
		    int keepalive_seconds)
{
	struct stream *stream = calloc(1, sizeof(*stream));
	struct MHD_Response *response;
	enum MHD_Result ret;

	if (!stream) {
		source->free(source->opaque);
		return MHD_NO;
	}
	stream->source = *source;
	stream->connection = connection;
	stream->keepalive_seconds = keepalive_seconds;
	stream->last_write_ns = clock__monotonic_ns();
	agent__stream_begins(connection);
	response = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK_SIZE,
						     stream__read, stream, stream__free);
	if (!response) {
		stream__free(stream);
		return MHD_NO;
	}
	MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/connect+json");
	ret = MHD_queue_response(connection, MHD_HTTP_OK, response);
	MHD_destroy_response(response);
	return ret;
}

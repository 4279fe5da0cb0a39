/* stream_buffer: the framed bytes of a server stream (stream.h), pure: no
 * I/O, no HTTP (part of warren-agent-wire, so tests link it alone). */
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "stream.h"

bool stream_buffer__append(struct stream_buffer *buffer, uint8_t flags, const char *json,
			   size_t length)
{
	size_t need = buffer->length + ENVELOPE_HEADER_LEN + length;

	if (length > UINT32_MAX)
		return false;
	if (need > buffer->capacity) {
		size_t capacity = buffer->capacity ? buffer->capacity : 4096;
		uint8_t *grown;

		while (capacity < need)
			capacity *= 2;
		grown = realloc(buffer->data, capacity);
		if (!grown)
			return false;
		buffer->data = grown;
		buffer->capacity = capacity;
	}
	envelope__write_header(buffer->data + buffer->length, flags, (uint32_t)length);
	memcpy(buffer->data + buffer->length + ENVELOPE_HEADER_LEN, json, length);
	buffer->length = need;
	return true;
}

void stream_buffer__free(struct stream_buffer *buffer)
{
	free(buffer->data);
	memset(buffer, 0, sizeof(*buffer));
}

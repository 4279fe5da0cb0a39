/* envelope: Connect streaming frames, see envelope.h. */
#include "envelope.h"

enum envelope_result envelope__parse_single(const uint8_t *buf, size_t len, size_t max_message,
					    const uint8_t **message, size_t *message_len)
{
	uint32_t length;
	uint8_t flags;

	if (len < ENVELOPE_HEADER_LEN)
		return ENVELOPE_TRUNCATED;
	flags = buf[0];
	length = (uint32_t)buf[1] << 24 | (uint32_t)buf[2] << 16 | (uint32_t)buf[3] << 8 |
		 (uint32_t)buf[4];
	if (flags & ~ENVELOPE_FLAG_COMPRESSED)
		return ENVELOPE_BAD_FLAGS;
	if (length > max_message)
		return ENVELOPE_TOO_LARGE;
	if (len - ENVELOPE_HEADER_LEN < length)
		return ENVELOPE_TRUNCATED;
	if (len - ENVELOPE_HEADER_LEN > length)
		return ENVELOPE_TRAILING;
	*message = buf + ENVELOPE_HEADER_LEN;
	*message_len = length;
	return flags & ENVELOPE_FLAG_COMPRESSED ? ENVELOPE_COMPRESSED : ENVELOPE_OK;
}

void envelope__write_header(uint8_t out[ENVELOPE_HEADER_LEN], uint8_t flags, uint32_t len)
{
	out[0] = flags;
	out[1] = (uint8_t)(len >> 24);
	out[2] = (uint8_t)(len >> 16);
	out[3] = (uint8_t)(len >> 8);
	out[4] = (uint8_t)len;
}

const char *envelope__strerror(enum envelope_result result)
{
	switch (result) {
	case ENVELOPE_OK:
		return "ok";
	case ENVELOPE_TRUNCATED:
		return "truncated envelope";
	case ENVELOPE_TOO_LARGE:
		return "message larger than the limit";
	case ENVELOPE_COMPRESSED:
		return "compressed message";
	case ENVELOPE_TRAILING:
		return "more than one message in a unary-input stream";
	case ENVELOPE_BAD_FLAGS:
		return "unknown envelope flags";
	}
	return "unknown envelope error";
}

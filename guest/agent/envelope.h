/* envelope: Connect protocol streaming frames ("Streaming-Request" and
 * "Streaming-Response" in connectrpc.com/docs/protocol): 1 flag byte,
 * 4-byte big-endian length, then the message. Pure, no I/O. */
#ifndef WARREN_AGENT_ENVELOPE_H
#define WARREN_AGENT_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#define ENVELOPE_HEADER_LEN	 5
#define ENVELOPE_FLAG_COMPRESSED 0x01
#define ENVELOPE_FLAG_END_STREAM 0x02

enum envelope_result {
	ENVELOPE_OK = 0,
	ENVELOPE_TRUNCATED,  /* fewer bytes than the header or the length say */
	ENVELOPE_TOO_LARGE,  /* length above the caller's limit */
	ENVELOPE_COMPRESSED, /* a valid frame with the compressed flag: *message is
			      * set, compressed with the request's Connect-Content-Encoding */
	ENVELOPE_TRAILING,   /* bytes after the single message */
	ENVELOPE_BAD_FLAGS,  /* unknown flag bits or an end-stream frame as request */
};

/* Parses exactly one request message from buf/len into *message
 * (pointing into buf) and *message_len: ENVELOPE_OK, or ENVELOPE_COMPRESSED
 * for a compressed one (the caller decodes it); anything else is an error. */
enum envelope_result envelope__parse_single(const uint8_t *buf, size_t len, size_t max_message,
					    const uint8_t **message, size_t *message_len);
/* Writes the 5-byte header for a message of len bytes with flags to out. */
void envelope__write_header(uint8_t out[ENVELOPE_HEADER_LEN], uint8_t flags, uint32_t len);
/* A short English description of a result, for error messages. */
const char *envelope__strerror(enum envelope_result result);

#endif

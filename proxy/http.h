/* http: a strict HTTP/1.1 message-head parser and a chunked-body tracker
 * (RFC 9112). Every byte comes from a client or a sandbox: both are
 * hostile. Anything ambiguous is rejected rather than guessed, which is
 * the request-smuggling defence (RFC 9112 section 6.3, 11.2): a
 * Content-Length together with Transfer-Encoding, two Content-Length
 * headers, a Transfer-Encoding other than "chunked", obs-fold (section
 * 5.2), bare CR or LF, whitespace before a colon, bad chunk sizes. Pure:
 * no I/O, no allocation; headers point into the caller's buffer. */
#ifndef WARREN_PROXY_HTTP_H
#define WARREN_PROXY_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HTTP_MAX_HEADERS	100
#define HTTP_MAX_CONTENT_LENGTH (1ull << 53)

enum http_parse_status {
	HTTP_PARSE_OK = 0,     /* a complete head; head->head_len bytes */
	HTTP_PARSE_INCOMPLETE, /* need more bytes */
	HTTP_PARSE_ERROR,      /* malformed or ambiguous: 400 (or 502 for a response) */
	HTTP_PARSE_TOO_LARGE,  /* no end of head within max_head bytes: 431 */
};

enum http_body_kind {
	HTTP_BODY_NONE = 0,
	HTTP_BODY_LENGTH,      /* head->content_length bytes */
	HTTP_BODY_CHUNKED,     /* tracked by struct http_chunked */
	HTTP_BODY_UNTIL_CLOSE, /* responses only: ends when the server closes */
};

struct http_header {
	const char *name;
	size_t name_len;
	const char *value; /* OWS trimmed */
	size_t value_len;
};

struct http_head {
	/* request line */
	const char *method;
	size_t method_len;
	const char *target;
	size_t target_len;
	/* status line */
	int status;
	const char *reason;
	size_t reason_len;

	int version_minor; /* HTTP/1.<minor>, 0 or 1 */
	struct http_header headers[HTTP_MAX_HEADERS];
	size_t header_count;
	size_t head_len; /* bytes of the head, leading empty lines and final CRLF included */

	enum http_body_kind body;
	uint64_t content_length;
	bool keep_alive;   /* the peer allows another message on this connection */
	bool upgrade;	   /* Connection: upgrade with an Upgrade header */
	int host_index;	   /* index of the Host header, -1 when absent */
	const char *error; /* why, on HTTP_PARSE_ERROR / TOO_LARGE */
};

/* Parses a request head at the start of buf[0..len). Leading empty lines
 * (CRLF) are skipped (RFC 9112 section 2.2). Accepts HTTP/1.0 and 1.1
 * only; requires exactly one Host for 1.1; rejects CL+TE, several CLs or
 * TEs, a TE other than "chunked", TE in 1.0, obs-fold, bare CR/LF. */
enum http_parse_status http__parse_request(const char *buf, size_t len, size_t max_head,
					   struct http_head *head);
/* Parses a response head. request_was_head: the request's method was
 * HEAD (no body whatever the headers say). 1xx, 204 and 304 have no body;
 * no Content-Length nor TE means the body ends at close. */
enum http_parse_status http__parse_response(const char *buf, size_t len, size_t max_head,
					    bool request_was_head, struct http_head *head);

/* The first header named name (case-insensitive), or NULL. */
const struct http_header *http__find_header(const struct http_head *head, const char *name);
/* True when a header's name equals name, ignoring case. */
bool http__header_is(const struct http_header *header, const char *name);
/* True when the comma-separated list value contains token (ignoring case). */
bool http__list_has_token(const char *value, size_t len, const char *token);

/* A chunked body in transit (RFC 9112 section 7.1): bytes are forwarded
 * unchanged, this only finds where the body ends and rejects bad framing. */
struct http_chunked {
	int state;
	uint64_t remaining; /* data bytes left in the current chunk */
	unsigned digits;
	size_t line_len;    /* length of the current extension / trailer line */
	size_t trailer_len; /* all trailer bytes so far */
};

void http__chunked_init(struct http_chunked *chunked);
/* Consumes bytes of buf[0..len) that belong to the body. Returns how many
 * (< len only when the body ended: *done is then true), or -1 on a framing
 * error (a bad chunk size, missing CRLF, a too long line). */
ssize_t http__chunked_feed(struct http_chunked *chunked, const char *buf, size_t len, bool *done);

#endif

/* route: which sandbox and port a request is for (docs/e2b-compatibility.md, "Public
 * URLs and proxy"), the Host mask, and the error responses in E2B's
 * JSON form (HTML for browser navigations). Pure. */
#ifndef WARREN_PROXY_ROUTE_H
#define WARREN_PROXY_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"

#define ROUTE_SANDBOX_ID_MAX 64
#define ROUTE_AGENT_PORT     49983

enum route_status {
	ROUTE_OK = 0,
	ROUTE_NOT_UNDER_DOMAIN, /* localhost, an IP, another name: route by headers */
	ROUTE_BAD_HOST,		/* under the domain but malformed: 400 */
};

struct route_target {
	char sandbox_id[ROUTE_SANDBOX_ID_MAX + 1]; /* lower case [a-z0-9] */
	uint32_t port;				   /* 1..65535 */
};

/* Parses a Host value "<port>-<sandboxID>.<domain>[:listen-port]"
 * (case-insensitive; a trailing dot allowed). The label must be exactly
 * one DNS label: port 1..65535 without leading zeros, id [a-z0-9]{1,64}. */
enum route_status route__parse_host(const char *host, size_t len, const char *domain,
				    struct route_target *out);
/* Routes by the E2b-Sandbox-Id and E2b-Sandbox-Port headers. false (with
 * *error set) when either is missing or malformed. */
bool route__from_headers(const struct http_head *head, struct route_target *out,
			 const char **error);
/* The routing decision for a request head: the Host label under domain,
 * else the headers. false with *error for a 400. */
bool route__request(const struct http_head *head, const char *domain, struct route_target *out,
		    const char **error);

/* Writes mask with every "${PORT}" replaced by port into out (NUL-ended).
 * false when it does not fit or the result is not a valid Host value. */
bool route__mask_host(const char *mask, uint32_t port, char *out, size_t size);

/* True when the Accept header prefers text/html (a browser navigation). */
bool route__wants_html(const struct http_head *head);

enum route_error_kind {
	ROUTE_ERR_BAD_REQUEST = 0, /* 400, message given */
	ROUTE_ERR_HEAD_TOO_LARGE,  /* 431 */
	ROUTE_ERR_TOKEN_MISSING,   /* 403 */
	ROUTE_ERR_TOKEN_INVALID,   /* 403 */
	ROUTE_ERR_NOT_FOUND,	   /* 502 sandbox not found */
	ROUTE_ERR_PORT_CLOSED,	   /* 502 port not open */
	ROUTE_ERR_BAD_GATEWAY,	   /* 502 the sandbox answered garbage */
	ROUTE_ERR_TOO_MANY,	   /* 503 too many connections to the sandbox */
	ROUTE_ERR_UNAVAILABLE,	   /* 503 the database is unreachable */
	ROUTE_ERR_TIMEOUT,	   /* 504 connect timed out */
	ROUTE_ERR_RATE_LIMITED,	   /* 429 */
};

struct route_error {
	enum route_error_kind kind;
	const char *sandbox_id; /* may be NULL */
	uint32_t port;
	const char *message; /* BAD_REQUEST only; NULL: "Invalid request" */
	/* RATE_LIMITED */
	int64_t limit, remaining, reset_s, retry_after_s;
};

/* The message E2B sends for kind (the exact strings of docs/e2b-compatibility.md). */
const char *route__error_message(const struct route_error *error);
/* The HTTP status of kind. */
int route__error_status(enum route_error_kind kind);
/* Writes a whole HTTP/1.1 response (head and body) for error into out;
 * JSON, or HTML when html. keep_alive picks the Connection header.
 * Returns its length, 0 when it does not fit. */
size_t route__render_error(const struct route_error *error, bool html, bool keep_alive, char *out,
			   size_t size);

#endif

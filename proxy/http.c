/* http: strict HTTP/1.1 head parser and chunked tracker (see http.h). */
#include <string.h>
#include <strings.h>

#include "http.h"

/* tchar, RFC 9110 section 5.6.2 */
static bool http__is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-vchar / SP / HTAB / obs-text, RFC 9110 section 5.5 */
static bool http__is_value_char(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

bool http__header_is(const struct http_header *header, const char *name)
{
	size_t n = strlen(name);

	return header->name_len == n && strncasecmp(header->name, name, n) == 0;
}

const struct http_header *http__find_header(const struct http_head *head, const char *name)
{
	for (size_t i = 0; i < head->header_count; i++)
		if (http__header_is(&head->headers[i], name))
			return &head->headers[i];
	return NULL;
}

bool http__list_has_token(const char *value, size_t len, const char *token)
{
	size_t token_len = strlen(token);
	size_t i = 0;

	while (i < len) {
		size_t start, end;

		while (i < len && (value[i] == ' ' || value[i] == '\t' || value[i] == ','))
			i++;
		start = i;
		while (i < len && value[i] != ',')
			i++;
		end = i;
		while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t'))
			end--;
		if (end - start == token_len && strncasecmp(value + start, token, token_len) == 0)
			return true;
	}
	return false;
}

/* Finds the end of the head: the offset just past CRLFCRLF, 0 if absent. */
static size_t http__head_end(const char *buf, size_t len)
{
	const char *end = memmem(buf, len, "\r\n\r\n", 4);

	return end ? (size_t)(end - buf) + 4 : 0;
}

/* Parses header lines from p (just after the start line's CRLF) to the
 * empty line at head_end - 2. RFC 9112 section 5. */
static enum http_parse_status http__parse_fields(const char *p, const char *end,
						 struct http_head *head)
{
	while (p < end) {
		const char *line_end = memchr(p, '\r', (size_t)(end - p));
		const char *colon, *value, *value_end;
		struct http_header *header;

		if (!line_end || line_end + 1 >= end || line_end[1] != '\n') {
			head->error = "bare CR in header";
			return HTTP_PARSE_ERROR;
		}
		if (line_end == p)
			break; /* the empty line */
		if (*p == ' ' || *p == '\t') {
			head->error = "obs-fold (line folding) is not allowed";
			return HTTP_PARSE_ERROR;
		}
		colon = p;
		while (colon < line_end && http__is_tchar((unsigned char)*colon))
			colon++;
		if (colon == p || colon == line_end || *colon != ':') {
			head->error = "malformed header name";
			return HTTP_PARSE_ERROR;
		}
		value = colon + 1;
		for (const char *c = value; c < line_end; c++) {
			if (!http__is_value_char((unsigned char)*c)) {
				head->error = *c == '\n' ? "bare LF in header"
							 : "control character in header";
				return HTTP_PARSE_ERROR;
			}
		}
		while (value < line_end && (*value == ' ' || *value == '\t'))
			value++;
		value_end = line_end;
		while (value_end > value && (value_end[-1] == ' ' || value_end[-1] == '\t'))
			value_end--;
		if (head->header_count == HTTP_MAX_HEADERS) {
			head->error = "too many headers";
			return HTTP_PARSE_TOO_LARGE;
		}
		header = &head->headers[head->header_count++];
		header->name = p;
		header->name_len = (size_t)(colon - p);
		header->value = value;
		header->value_len = (size_t)(value_end - value);
		p = line_end + 2;
	}
	return HTTP_PARSE_OK;
}

static bool http__parse_length(const char *value, size_t len, uint64_t *out)
{
	uint64_t n = 0;

	if (len == 0 || len > 16)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (value[i] < '0' || value[i] > '9')
			return false;
		n = n * 10 + (uint64_t)(value[i] - '0');
	}
	if (n > HTTP_MAX_CONTENT_LENGTH)
		return false;
	*out = n;
	return true;
}

/* Message framing from the headers, RFC 9112 section 6. */
static enum http_parse_status http__framing(struct http_head *head, bool is_request)
{
	const struct http_header *content_length = NULL, *transfer_encoding = NULL;
	bool connection_close = false, connection_keep_alive = false, connection_upgrade = false;
	bool has_upgrade = false;
	int hosts = 0;

	head->host_index = -1;
	for (size_t i = 0; i < head->header_count; i++) {
		const struct http_header *h = &head->headers[i];

		if (http__header_is(h, "content-length")) {
			if (content_length) {
				head->error = "more than one Content-Length";
				return HTTP_PARSE_ERROR;
			}
			content_length = h;
		} else if (http__header_is(h, "transfer-encoding")) {
			if (transfer_encoding) {
				head->error = "more than one Transfer-Encoding";
				return HTTP_PARSE_ERROR;
			}
			transfer_encoding = h;
		} else if (http__header_is(h, "host")) {
			hosts++;
			head->host_index = (int)i;
		} else if (http__header_is(h, "connection")) {
			connection_close |= http__list_has_token(h->value, h->value_len, "close");
			connection_keep_alive |=
			    http__list_has_token(h->value, h->value_len, "keep-alive");
			connection_upgrade |=
			    http__list_has_token(h->value, h->value_len, "upgrade");
		} else if (http__header_is(h, "upgrade")) {
			has_upgrade = true;
		}
	}
	if (is_request && (hosts > 1 || (hosts == 0 && head->version_minor == 1))) {
		head->error = hosts ? "more than one Host" : "missing Host";
		return HTTP_PARSE_ERROR;
	}
	if (content_length && transfer_encoding) {
		head->error = "Content-Length with Transfer-Encoding";
		return HTTP_PARSE_ERROR;
	}
	head->keep_alive = head->version_minor == 1 ? !connection_close : connection_keep_alive;
	head->upgrade = connection_upgrade && has_upgrade;
	head->body = HTTP_BODY_NONE;
	head->content_length = 0;
	if (transfer_encoding) {
		if (head->version_minor == 0) {
			head->error = "Transfer-Encoding in HTTP/1.0";
			return HTTP_PARSE_ERROR;
		}
		if (transfer_encoding->value_len != 7 ||
		    strncasecmp(transfer_encoding->value, "chunked", 7) != 0) {
			const char *last;
			size_t last_len;

			if (is_request) {
				head->error = "unsupported Transfer-Encoding";
				return HTTP_PARSE_ERROR;
			}
			/* a response: chunked only when it is the last coding */
			last = memrchr(transfer_encoding->value, ',', transfer_encoding->value_len);
			last = last ? last + 1 : transfer_encoding->value;
			while (last < transfer_encoding->value + transfer_encoding->value_len &&
			       (*last == ' ' || *last == '\t'))
				last++;
			last_len = (size_t)(transfer_encoding->value +
					    transfer_encoding->value_len - last);
			head->body = last_len == 7 && strncasecmp(last, "chunked", 7) == 0
					 ? HTTP_BODY_CHUNKED
					 : HTTP_BODY_UNTIL_CLOSE;
			return HTTP_PARSE_OK;
		}
		head->body = HTTP_BODY_CHUNKED;
	} else if (content_length) {
		if (!http__parse_length(content_length->value, content_length->value_len,
					&head->content_length)) {
			head->error = "invalid Content-Length";
			return HTTP_PARSE_ERROR;
		}
		head->body = head->content_length ? HTTP_BODY_LENGTH : HTTP_BODY_NONE;
	} else if (!is_request) {
		head->body = HTTP_BODY_UNTIL_CLOSE;
	}
	return HTTP_PARSE_OK;
}

static bool http__parse_version(const char *p, int *minor)
{
	if (memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1'))
		return false;
	*minor = p[7] - '0';
	return true;
}

/* The head region after skipping leading CRLFs; common to both kinds. */
static enum http_parse_status http__find_head(const char *buf, size_t len, size_t max_head,
					      struct http_head *head, size_t *start)
{
	size_t skip = 0, end;

	memset(head, 0, offsetof(struct http_head, headers));
	head->header_count = 0;
	head->host_index = -1;
	head->error = NULL;
	while (skip + 1 < len && buf[skip] == '\r' && buf[skip + 1] == '\n' && skip < 8)
		skip += 2;
	end = http__head_end(buf + skip, len - skip < max_head ? len - skip : max_head);
	if (!end) {
		if (len - skip >= max_head) {
			head->error = "request head too large";
			return HTTP_PARSE_TOO_LARGE;
		}
		return HTTP_PARSE_INCOMPLETE;
	}
	*start = skip;
	head->head_len = skip + end;
	return HTTP_PARSE_OK;
}

enum http_parse_status http__parse_request(const char *buf, size_t len, size_t max_head,
					   struct http_head *head)
{
	enum http_parse_status status;
	const char *p, *end, *line_end, *sp;
	size_t start;

	status = http__find_head(buf, len, max_head, head, &start);
	if (status != HTTP_PARSE_OK)
		return status;
	p = buf + start;
	end = buf + head->head_len - 2;
	line_end = memchr(p, '\r', (size_t)(end - p));
	if (!line_end || line_end[1] != '\n')
		goto bad_line;
	/* request-line = method SP request-target SP HTTP-version, section 3 */
	sp = p;
	while (sp < line_end && http__is_tchar((unsigned char)*sp))
		sp++;
	if (sp == p || sp >= line_end || *sp != ' ')
		goto bad_line;
	head->method = p;
	head->method_len = (size_t)(sp - p);
	p = sp + 1;
	sp = p;
	while (sp < line_end && (unsigned char)*sp > 0x20 && (unsigned char)*sp < 0x7f)
		sp++;
	if (sp == p || sp >= line_end || *sp != ' ')
		goto bad_line;
	head->target = p;
	head->target_len = (size_t)(sp - p);
	p = sp + 1;
	if (line_end - p != 8 || !http__parse_version(p, &head->version_minor))
		goto bad_line;
	status = http__parse_fields(line_end + 2, end + 2, head);
	if (status != HTTP_PARSE_OK)
		return status;
	return http__framing(head, true);
bad_line:
	head->error = "malformed request line";
	return HTTP_PARSE_ERROR;
}

enum http_parse_status http__parse_response(const char *buf, size_t len, size_t max_head,
					    bool request_was_head, struct http_head *head)
{
	enum http_parse_status status;
	const char *p, *end, *line_end;
	size_t start;

	status = http__find_head(buf, len, max_head, head, &start);
	if (status != HTTP_PARSE_OK)
		return status;
	p = buf + start;
	end = buf + head->head_len - 2;
	line_end = memchr(p, '\r', (size_t)(end - p));
	/* status-line = HTTP-version SP status-code SP [ reason-phrase ], section 4 */
	if (!line_end || line_end[1] != '\n' || line_end - p < 12 ||
	    !http__parse_version(p, &head->version_minor) || p[8] != ' ' || p[12] != ' ' ||
	    p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9') {
		/* allow "HTTP/1.1 200" without the SP and reason */
		if (!(line_end && line_end - p == 12 &&
		      http__parse_version(p, &head->version_minor) && p[8] == ' ' && p[9] >= '1' &&
		      p[9] <= '5' && p[10] >= '0' && p[10] <= '9' && p[11] >= '0' &&
		      p[11] <= '9')) {
			head->error = "malformed status line";
			return HTTP_PARSE_ERROR;
		}
	}
	head->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	head->reason = line_end - p > 12 ? p + 13 : line_end;
	head->reason_len = (size_t)(line_end - head->reason);
	for (size_t i = 0; i < head->reason_len; i++) {
		if (!http__is_value_char((unsigned char)head->reason[i])) {
			head->error = "control character in reason";
			return HTTP_PARSE_ERROR;
		}
	}
	status = http__parse_fields(line_end + 2, end + 2, head);
	if (status != HTTP_PARSE_OK)
		return status;
	status = http__framing(head, false);
	if (status != HTTP_PARSE_OK)
		return status;
	if (request_was_head || head->status < 200 || head->status == 204 || head->status == 304) {
		head->body = HTTP_BODY_NONE;
		head->content_length = 0;
	}
	return HTTP_PARSE_OK;
}

/* ---- chunked, RFC 9112 section 7.1 ---- */

enum {
	CHUNK_SIZE = 0, /* hex digits */
	CHUNK_EXT,	/* ";..." up to CR */
	CHUNK_SIZE_LF,
	CHUNK_DATA,
	CHUNK_DATA_CR,
	CHUNK_DATA_LF,
	CHUNK_TRAILER_START, /* CR (end) or a trailer field */
	CHUNK_TRAILER_LINE,
	CHUNK_TRAILER_LF,
	CHUNK_END_LF,
	CHUNK_DONE,
};

#define CHUNK_MAX_DIGITS   15
#define CHUNK_MAX_LINE	   4096
#define CHUNK_MAX_TRAILERS 16384

void http__chunked_init(struct http_chunked *chunked)
{
	memset(chunked, 0, sizeof(*chunked));
}

static int http__hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

ssize_t http__chunked_feed(struct http_chunked *c, const char *buf, size_t len, bool *done)
{
	size_t i = 0;

	*done = c->state == CHUNK_DONE;
	while (i < len && c->state != CHUNK_DONE) {
		char ch = buf[i];

		switch (c->state) {
		case CHUNK_SIZE: {
			int v = http__hex_value(ch);

			if (v >= 0) {
				if (++c->digits > CHUNK_MAX_DIGITS)
					return -1;
				c->remaining = c->remaining * 16 + (uint64_t)v;
			} else if (c->digits == 0) {
				return -1;
			} else if (ch == ';') {
				c->state = CHUNK_EXT;
				c->line_len = 0;
			} else if (ch == '\r') {
				c->state = CHUNK_SIZE_LF;
			} else {
				return -1;
			}
			i++;
			break;
		}
		case CHUNK_EXT:
			if (ch == '\r') {
				c->state = CHUNK_SIZE_LF;
			} else if (!http__is_value_char((unsigned char)ch) ||
				   ++c->line_len > CHUNK_MAX_LINE) {
				return -1;
			}
			i++;
			break;
		case CHUNK_SIZE_LF:
			if (ch != '\n')
				return -1;
			i++;
			c->digits = 0;
			c->state = c->remaining ? CHUNK_DATA : CHUNK_TRAILER_START;
			break;
		case CHUNK_DATA: {
			size_t n = len - i;

			if (n > c->remaining)
				n = (size_t)c->remaining;
			c->remaining -= n;
			i += n;
			if (!c->remaining)
				c->state = CHUNK_DATA_CR;
			break;
		}
		case CHUNK_DATA_CR:
			if (ch != '\r')
				return -1;
			c->state = CHUNK_DATA_LF;
			i++;
			break;
		case CHUNK_DATA_LF:
			if (ch != '\n')
				return -1;
			c->state = CHUNK_SIZE;
			i++;
			break;
		case CHUNK_TRAILER_START:
			if (ch == '\r') {
				c->state = CHUNK_END_LF;
			} else if (ch == ' ' || ch == '\t' || !http__is_tchar((unsigned char)ch)) {
				return -1;
			} else {
				c->state = CHUNK_TRAILER_LINE;
				c->line_len = 1;
			}
			if (++c->trailer_len > CHUNK_MAX_TRAILERS)
				return -1;
			i++;
			break;
		case CHUNK_TRAILER_LINE:
			if (ch == '\r')
				c->state = CHUNK_TRAILER_LF;
			else if (!http__is_value_char((unsigned char)ch) ||
				 ++c->line_len > CHUNK_MAX_LINE)
				return -1;
			if (++c->trailer_len > CHUNK_MAX_TRAILERS)
				return -1;
			i++;
			break;
		case CHUNK_TRAILER_LF:
			if (ch != '\n')
				return -1;
			c->state = CHUNK_TRAILER_START;
			i++;
			break;
		case CHUNK_END_LF:
			if (ch != '\n')
				return -1;
			c->state = CHUNK_DONE;
			i++;
			break;
		default:
			return -1;
		}
	}
	*done = c->state == CHUNK_DONE;
	return (ssize_t)i;
}

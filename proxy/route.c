/* route: Host parsing, header routing, Host masks and error bodies
 * (see route.h; docs/e2b-compatibility.md, "Public URLs and proxy"). */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "route.h"

#define ROUTE_HOST_MAX 255

static bool route__parse_port(const char *s, size_t len, uint32_t *port)
{
	uint32_t value = 0;

	if (len == 0 || len > 5 || s[0] == '0')
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		value = value * 10 + (uint32_t)(s[i] - '0');
	}
	if (value == 0 || value > 65535)
		return false;
	*port = value;
	return true;
}

/* A sandbox id as routing sees it: [a-z0-9]{1,64} after lower-casing. */
static bool route__copy_id(const char *s, size_t len, char out[ROUTE_SANDBOX_ID_MAX + 1])
{
	if (len == 0 || len > ROUTE_SANDBOX_ID_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
			return false;
		out[i] = c;
	}
	out[len] = '\0';
	return true;
}

static bool route__is_ipv4(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || s[i] == '.'))
			return false;
	return true;
}

enum route_status route__parse_host(const char *host, size_t len, const char *domain,
				    struct route_target *out)
{
	size_t domain_len = strlen(domain), label_len;
	const char *colon, *dash;

	if (len == 0 || host[0] == '[')
		return ROUTE_NOT_UNDER_DOMAIN; /* none, or an IPv6 literal */
	if (len > ROUTE_HOST_MAX)
		return ROUTE_BAD_HOST;
	colon = memrchr(host, ':', len);
	if (colon) {
		uint32_t listen_port;

		if (!route__parse_port(colon + 1, (size_t)(host + len - colon - 1), &listen_port))
			return ROUTE_BAD_HOST;
		len = (size_t)(colon - host);
	}
	if (len && host[len - 1] == '.')
		len--;
	if (len == 0)
		return ROUTE_BAD_HOST;
	if ((len == 9 && strncasecmp(host, "localhost", 9) == 0) || route__is_ipv4(host, len))
		return ROUTE_NOT_UNDER_DOMAIN;
	if (domain_len == 0 || len <= domain_len + 1 || host[len - domain_len - 1] != '.' ||
	    strncasecmp(host + len - domain_len, domain, domain_len) != 0)
		return ROUTE_NOT_UNDER_DOMAIN;
	label_len = len - domain_len - 1;
	if (memchr(host, '.', label_len))
		return ROUTE_BAD_HOST;
	dash = memchr(host, '-', label_len);
	if (!dash)
		return ROUTE_BAD_HOST;
	if (!route__parse_port(host, (size_t)(dash - host), &out->port))
		return ROUTE_BAD_HOST;
	if (!route__copy_id(dash + 1, (size_t)(host + label_len - dash - 1), out->sandbox_id))
		return ROUTE_BAD_HOST;
	return ROUTE_OK;
}

bool route__from_headers(const struct http_head *head, struct route_target *out, const char **error)
{
	const struct http_header *id = http__find_header(head, "e2b-sandbox-id");
	const struct http_header *port = http__find_header(head, "e2b-sandbox-port");

	if (!id || !port) {
		*error = "Invalid host: use <port>-<sandboxID>.<domain> or the E2b-Sandbox-Id and "
			 "E2b-Sandbox-Port headers";
		return false;
	}
	if (!route__copy_id(id->value, id->value_len, out->sandbox_id)) {
		*error = "Invalid E2b-Sandbox-Id header";
		return false;
	}
	if (!route__parse_port(port->value, port->value_len, &out->port)) {
		*error = "Invalid E2b-Sandbox-Port header: a port is 1..65535";
		return false;
	}
	return true;
}

bool route__request(const struct http_head *head, const char *domain, struct route_target *out,
		    const char **error)
{
	if (head->host_index >= 0) {
		const struct http_header *host = &head->headers[head->host_index];

		switch (route__parse_host(host->value, host->value_len, domain, out)) {
		case ROUTE_OK:
			return true;
		case ROUTE_BAD_HOST:
			*error = "Invalid host: expected <port>-<sandboxID>.<domain> with a port "
				 "1..65535";
			return false;
		case ROUTE_NOT_UNDER_DOMAIN:
			break;
		}
	}
	return route__from_headers(head, out, error);
}

bool route__mask_host(const char *mask, uint32_t port, char *out, size_t size)
{
	size_t used = 0;
	char digits[8];
	int digits_len = snprintf(digits, sizeof(digits), "%u", port);

	for (const char *p = mask; *p;) {
		if (strncmp(p, "${PORT}", 7) == 0) {
			if (used + (size_t)digits_len >= size)
				return false;
			memcpy(out + used, digits, (size_t)digits_len);
			used += (size_t)digits_len;
			p += 7;
			continue;
		}
		/* a Host value: visible ASCII, no spaces or controls */
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || used + 1 >= size)
			return false;
		out[used++] = *p++;
	}
	if (used == 0)
		return false;
	out[used] = '\0';
	return true;
}

bool route__wants_html(const struct http_head *head)
{
	const struct http_header *accept = http__find_header(head, "accept");

	return accept && memmem(accept->value, accept->value_len, "text/html", 9) != NULL;
}

int route__error_status(enum route_error_kind kind)
{
	switch (kind) {
	case ROUTE_ERR_BAD_REQUEST:
		return 400;
	case ROUTE_ERR_HEAD_TOO_LARGE:
		return 431;
	case ROUTE_ERR_TOKEN_MISSING:
	case ROUTE_ERR_TOKEN_INVALID:
		return 403;
	case ROUTE_ERR_NOT_FOUND:
	case ROUTE_ERR_PORT_CLOSED:
	case ROUTE_ERR_BAD_GATEWAY:
		return 502;
	case ROUTE_ERR_TOO_MANY:
	case ROUTE_ERR_UNAVAILABLE:
		return 503;
	case ROUTE_ERR_TIMEOUT:
		return 504;
	case ROUTE_ERR_RATE_LIMITED:
		return 429;
	}
	return 500;
}

static const char *route__reason(int status)
{
	switch (status) {
	case 400:
		return "Bad Request";
	case 403:
		return "Forbidden";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	}
	return "Error";
}

const char *route__error_message(const struct route_error *error)
{
	switch (error->kind) {
	case ROUTE_ERR_BAD_REQUEST:
		return error->message ? error->message : "Invalid request";
	case ROUTE_ERR_HEAD_TOO_LARGE:
		return "Request header fields too large";
	case ROUTE_ERR_TOKEN_MISSING:
		return "Sandbox is secured with traffic access token. Token header "
		       "'e2b-traffic-access-token' is missing";
	case ROUTE_ERR_TOKEN_INVALID:
		return "Sandbox is secured with traffic access token. Provided token in header "
		       "'e2b-traffic-access-token' is invalid";
	case ROUTE_ERR_NOT_FOUND:
		return "The sandbox was not found";
	case ROUTE_ERR_PORT_CLOSED:
		return "The sandbox is running but port is not open";
	case ROUTE_ERR_BAD_GATEWAY:
		return "The sandbox sent an invalid HTTP response";
	case ROUTE_ERR_TOO_MANY:
		return "Too many connections to the sandbox";
	case ROUTE_ERR_UNAVAILABLE:
		return "The sandbox lookup is unavailable, retry later";
	case ROUTE_ERR_TIMEOUT:
		return "The sandbox did not accept the connection in time";
	case ROUTE_ERR_RATE_LIMITED:
		return "Rate limit exceeded: too many sandbox operations from this IP, retry later";
	}
	return "Error";
}

/* Appends s escaped for JSON (json) or HTML (!json). */
static size_t route__escape(char *out, size_t used, size_t size, const char *s, bool json)
{
	for (; *s; s++) {
		const char *rep = NULL;
		char one[8];

		if (json && (*s == '"' || *s == '\\')) {
			one[0] = '\\', one[1] = *s, one[2] = '\0';
			rep = one;
		} else if (json && (unsigned char)*s < 0x20) {
			snprintf(one, sizeof(one), "\\u%04x", (unsigned char)*s);
			rep = one;
		} else if (!json && *s == '<') {
			rep = "&lt;";
		} else if (!json && *s == '>') {
			rep = "&gt;";
		} else if (!json && *s == '&') {
			rep = "&amp;";
		} else if (!json && (*s == '"' || *s == '\'')) {
			rep = *s == '"' ? "&quot;" : "&#39;";
		} else {
			one[0] = *s, one[1] = '\0';
			rep = one;
		}
		for (; *rep; rep++) {
			if (used + 1 < size)
				out[used] = *rep;
			used++;
		}
	}
	if (size)
		out[used < size ? used : size - 1] = '\0';
	return used;
}

#define ROUTE_APPEND(...)                                                                          \
	do {                                                                                       \
		used += (size_t)snprintf(                                                          \
		    body + used, used < sizeof(body) ? sizeof(body) - used : 0, __VA_ARGS__);      \
	} while (0)

size_t route__render_error(const struct route_error *error, bool html, bool keep_alive, char *out,
			   size_t size)
{
	int status = route__error_status(error->kind);
	const char *message = route__error_message(error);
	char body[1536], extra[256] = "";
	size_t used = 0;
	int n;

	if (html) {
		ROUTE_APPEND(
		    "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>%d %s</title>"
		    "</head><body><h1>%d %s</h1><p>",
		    status, route__reason(status), status, route__reason(status));
		used = route__escape(body, used, sizeof(body), message, false);
		ROUTE_APPEND("</p>");
		if (error->sandbox_id) {
			ROUTE_APPEND("<p>Sandbox: ");
			used = route__escape(body, used, sizeof(body), error->sandbox_id, false);
			if (error->kind == ROUTE_ERR_PORT_CLOSED)
				ROUTE_APPEND(", port %u", error->port);
			ROUTE_APPEND("</p>");
		}
		ROUTE_APPEND("</body></html>\n");
	} else {
		ROUTE_APPEND("{");
		if (error->sandbox_id && error->kind != ROUTE_ERR_PORT_CLOSED) {
			ROUTE_APPEND("\"sandboxId\":\"");
			used = route__escape(body, used, sizeof(body), error->sandbox_id, true);
			ROUTE_APPEND("\",");
		}
		ROUTE_APPEND("\"message\":\"");
		used = route__escape(body, used, sizeof(body), message, true);
		ROUTE_APPEND("\",");
		if (error->sandbox_id && error->kind == ROUTE_ERR_PORT_CLOSED) {
			ROUTE_APPEND("\"sandboxId\":\"");
			used = route__escape(body, used, sizeof(body), error->sandbox_id, true);
			ROUTE_APPEND("\",\"port\":%u,", error->port);
		}
		ROUTE_APPEND("\"code\":%d}", status);
	}
	if (used >= sizeof(body))
		return 0;
	if (error->kind == ROUTE_ERR_RATE_LIMITED)
		snprintf(extra, sizeof(extra),
			 "RateLimit-Limit: %lld\r\nRateLimit-Remaining: %lld\r\n"
			 "RateLimit-Reset: %lld\r\nRetry-After: %lld\r\n",
			 (long long)error->limit, (long long)error->remaining,
			 (long long)error->reset_s, (long long)error->retry_after_s);
	n = snprintf(out, size,
		     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		     "Cache-Control: no-store\r\nConnection: %s\r\n%s\r\n%s",
		     status, route__reason(status),
		     html ? "text/html; charset=utf-8" : "application/json", used,
		     keep_alive ? "keep-alive" : "close", extra, body);
	if (n < 0 || (size_t)n >= size)
		return 0;
	return (size_t)n;
}

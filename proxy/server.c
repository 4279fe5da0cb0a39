/* server: the event loops of warren-proxy (see server.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "warren/prom.h"
#include "http.h"
#include "route.h"
#include "server.h"
#include "tls.h"
#include "warren/check.h"
#include "warren/clock.h"
#include "warren/config.h"
#include "warren/log.h"
#include "warren/net_address.h"
#include "warren/tokens.h"

#define PROXY_BODY_BUFFER  (32 * 1024)
#define PROXY_EVENTS	   256
#define PROXY_ACCEPT_BATCH 64
#define PROXY_TOKEN_MAX	   256
#define PROXY_LINGER_MS	   5000	       /* a closing connection drops the client's ... */
#define PROXY_LINGER_BYTES (64u << 20) /* ... last bytes this long, this many at most */

/* epoll_data.u64 = pointer | tag */
enum { TAG_LISTENER = 0, TAG_CLIENT = 1, TAG_UPSTREAM = 2, TAG_TLS_LISTENER = 3 };

struct buffer {
	char *data;
	size_t start, end, cap;
};

enum conn_state {
	CONN_READ_HEAD = 0, /* waiting for (the rest of) a request head */
	CONN_CONNECTING,    /* upstream connect in progress */
	CONN_PROXYING,	    /* request and response in flight */
	CONN_TUNNEL,	    /* after 101: bytes both ways */
	CONN_ERROR_WRITE,   /* writing a proxy-made response */
	CONN_LINGER,	    /* answered and shut: dropping what the client still sends */
};

struct worker;

struct conn {
	uint64_t request_ns; /* the current request's head was parsed (metrics) */
	struct conn *prev, *next;
	struct worker *worker;
	int client_fd, upstream_fd;
	SSL *tls; /* the client's TLS session (NULL: plain HTTP) */
	bool upstream_registered;
	bool dead;
	enum conn_state state;
	char client_ip[INET6_ADDRSTRLEN];
	uint64_t deadline_ms;
	bool head_started; /* READ_HEAD: bytes of a head arrived (header timeout runs) */

	struct buffer in;	 /* from the client: heads, pipelined bytes */
	struct buffer to_up;	 /* to the upstream */
	struct buffer up_in;	 /* from the upstream until the response head is parsed */
	struct buffer to_client; /* to the client */

	/* the exchange in flight */
	char sandbox_id[ROUTE_SANDBOX_ID_MAX + 1];
	uint32_t port;
	bool acquired; /* counted in lookup__acquire */
	bool req_keep_alive, req_is_head, req_upgrade, req_html, req_http10;
	bool req_body_done;
	enum http_body_kind req_body;
	uint64_t req_remaining;
	struct http_chunked req_chunked;
	bool resp_head_done, resp_body_done, resp_started;
	enum http_body_kind resp_body;
	uint64_t resp_remaining;
	struct http_chunked resp_chunked;
	bool close_after; /* close the client once to_client is flushed */
	bool client_eof, upstream_eof;
	/* edge-triggered readiness: set by events, cleared by EAGAIN */
	bool client_in_ready, client_out_ready, upstream_in_ready, upstream_out_ready;
	bool queued;	    /* in the worker's ready list (its pump stopped early) */
	bool pending_head;  /* READ_HEAD with pipelined bytes to parse */
	bool client_hup;    /* the client's side signalled a hang-up, not yet checked */
	size_t linger_left; /* LINGER: bytes it may still drop */
	struct conn *ready_next;
};

struct proxy_server;

struct worker {
	struct proxy_server *server;
	pthread_t thread;
	int epoll_fd, listen_fd, tls_listen_fd;
	struct conn *conns; /* every live connection, for the timer sweep */
	int connection_count;
	struct conn *dead;     /* freed after the current batch of events */
	struct conn *ready;    /* to pump again before the next wait */
	struct http_head head; /* scratch, too big for the stack of every call */
};

struct proxy_server {
	struct proxy_settings settings;
	struct lookup *lookup;
	struct limiter *limiter;
	struct proxy_tls *tls; /* NULL: no TLS listener */
	struct worker *workers;
	volatile sig_atomic_t stop;
	volatile sig_atomic_t tls_reload; /* reload the certificate (worker 0 does) */
};

/* ---- settings ---- */

/* proxy_tls_listen with its certificate and key: all three, or none. */
static int proxy__tls_settings_from_config(struct proxy_settings *s, char *err, size_t err_len)
{
	const char *listen = config__get("proxy_tls_listen", NULL);

	s->tls_cert_file = config__get("proxy_tls_cert_file", NULL);
	s->tls_key_file = config__get("proxy_tls_key_file", NULL);
	if (!listen && !s->tls_cert_file && !s->tls_key_file)
		return 0;
	if (!listen || !s->tls_cert_file || !s->tls_key_file) {
		snprintf(err, err_len,
			 "proxy_tls_listen, proxy_tls_cert_file and proxy_tls_key_file go together "
			 "(HTTPS for public URLs): set all three or none");
		return -EINVAL;
	}
	if (address__parse_host_port(listen, s->tls_listen_host, sizeof(s->tls_listen_host),
				     &s->tls_listen_port)) {
		snprintf(err, err_len,
			 "proxy_tls_listen must be HOST:PORT (port 0..65535), got \"%s\"", listen);
		return -EINVAL;
	}
	s->tls = true;
	return 0;
}

int proxy__settings_from_config(struct proxy_settings *s, char *err, size_t err_len)
{
	const char *listen = config__get("proxy_listen", "127.0.0.1:3002");

	memset(s, 0, sizeof(*s));
	if (address__parse_host_port(listen, s->listen_host, sizeof(s->listen_host),
				     &s->listen_port)) {
		snprintf(err, err_len, "proxy_listen must be HOST:PORT (port 0..65535), got \"%s\"",
			 listen);
		return -EINVAL;
	}
	if (proxy__tls_settings_from_config(s, err, err_len))
		return -EINVAL;
	s->domain = config__get("domain", "warren.test");
	s->forwarded_proto = config__get("proxy_forwarded_proto", "http");
	s->threads = (int)config__get_int("proxy_threads", 2);
	s->max_head = (size_t)config__get_int("proxy_max_head_bytes", 16384);
	s->header_timeout_ms = (uint64_t)config__get_int("proxy_header_timeout_s", 10) * 1000;
	s->idle_timeout_ms = (uint64_t)config__get_int("proxy_idle_timeout_s", 60) * 1000;
	s->io_timeout_ms = (uint64_t)config__get_int("proxy_io_timeout_s", 300) * 1000;
	s->connect_timeout_ms = (uint64_t)config__get_int("proxy_connect_timeout_ms", 5000);
	s->max_connections = (int)config__get_int("proxy_max_connections", 10000);
	if (s->threads < 1 || s->threads > 256 || s->max_head < 1024 || s->max_head > 65536 ||
	    s->max_connections < 1 || !s->header_timeout_ms || !s->idle_timeout_ms ||
	    !s->io_timeout_ms || !s->connect_timeout_ms) {
		snprintf(err, err_len,
			 "invalid proxy settings (proxy_threads 1..256, proxy_max_head_bytes "
			 "1024..65536, timeouts and proxy_max_connections > 0)");
		return -EINVAL;
	}
	return 0;
}

/* ---- buffers ---- */

static size_t buffer__len(const struct buffer *b)
{
	CHECK(b->start <= b->end && b->end <= b->cap);
	return b->end - b->start;
}

/* Moves the bytes to the front; returns the free space at the end. */
static size_t buffer__space(struct buffer *b)
{
	if (b->start == b->end) {
		b->start = b->end = 0;
	} else if (b->start > 0 && b->end == b->cap) {
		memmove(b->data, b->data + b->start, b->end - b->start);
		b->end -= b->start;
		b->start = 0;
	}
	return b->cap - b->end;
}

static bool buffer__append(struct buffer *b, const void *data, size_t len)
{
	CHECK(b->start <= b->end && b->end <= b->cap);
	if (b->cap - b->end < len) {
		memmove(b->data, b->data + b->start, b->end - b->start);
		b->end -= b->start;
		b->start = 0;
		if (b->cap - b->end < len)
			return false;
	}
	memcpy(b->data + b->end, data, len);
	b->end += len;
	return true;
}

static bool buffer__append_str(struct buffer *b, const char *s)
{
	return buffer__append(b, s, strlen(s));
}

/* ---- connection lifetime ---- */

static void conn__watch(struct conn *c);
static void proxy_metrics__answered(int status, uint64_t request_ns);

static void conn__close_upstream(struct conn *c)
{
	if (c->upstream_fd >= 0) {
		close(c->upstream_fd); /* also leaves the epoll set */
		c->upstream_fd = -1;
	}
	c->upstream_registered = false;
	if (c->acquired) {
		lookup__release(c->worker->server->lookup, c->sandbox_id);
		c->acquired = false;
	}
}

static void conn__close(struct conn *c)
{
	struct worker *w = c->worker;

	if (c->dead)
		return;
	conn__close_upstream(c);
	proxy_tls__end(c->tls);
	c->tls = NULL;
	close(c->client_fd);
	c->dead = true;
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->next = w->dead;
	c->prev = NULL;
	w->dead = c;
	w->connection_count--;
}

static void conn__free(struct conn *c)
{
	free(c->in.data);
	free(c);
}

static struct conn *conn__new(struct worker *w, int fd, const struct sockaddr_storage *peer)
{
	size_t in_cap = w->server->settings.max_head;
	size_t total = in_cap + in_cap + 2 * PROXY_BODY_BUFFER;
	struct conn *c = calloc(1, sizeof(*c));
	char *block = malloc(total);

	if (!c || !block) {
		free(c);
		free(block);
		return NULL;
	}
	c->worker = w;
	c->client_fd = fd;
	c->upstream_fd = -1;
	c->in = (struct buffer){block, 0, 0, in_cap};
	c->up_in = (struct buffer){block + in_cap, 0, 0, in_cap};
	c->to_up = (struct buffer){block + 2 * in_cap, 0, 0, PROXY_BODY_BUFFER};
	c->to_client =
	    (struct buffer){block + 2 * in_cap + PROXY_BODY_BUFFER, 0, 0, PROXY_BODY_BUFFER};
	if (peer->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)peer)->sin6_addr, c->client_ip,
			  sizeof(c->client_ip));
	else
		inet_ntop(AF_INET, &((const struct sockaddr_in *)peer)->sin_addr, c->client_ip,
			  sizeof(c->client_ip));
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	w->connection_count++;
	return c;
}

/* Interest is fixed (edge-triggered, both directions) so nothing is
 * re-registered per request: a new upstream socket is added once. */
static void conn__watch(struct conn *c)
{
	struct epoll_event ev;

	if (c->dead || c->upstream_fd < 0 || c->upstream_registered)
		return;
	ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
	ev.data.u64 = (uint64_t)(uintptr_t)c | TAG_UPSTREAM;
	c->upstream_in_ready = c->upstream_out_ready = false;
	if (epoll_ctl(c->worker->epoll_fd, EPOLL_CTL_ADD, c->upstream_fd, &ev) == 0)
		c->upstream_registered = true;
}

static bool conn__client_wants_read(const struct conn *c)
{
	bool body_open =
	    (c->state == CONN_CONNECTING || c->state == CONN_PROXYING) && !c->req_body_done;

	return c->state == CONN_LINGER ||
	       (c->state == CONN_READ_HEAD && buffer__len(&c->in) < c->in.cap) ||
	       (body_open && buffer__len(&c->to_up) < c->to_up.cap) ||
	       (c->state == CONN_TUNNEL && !c->client_eof && buffer__len(&c->to_up) < c->to_up.cap);
}

static bool conn__upstream_wants_read(const struct conn *c)
{
	return (c->state == CONN_PROXYING && !c->resp_body_done &&
		(c->resp_head_done ? buffer__len(&c->to_client) < c->to_client.cap
				   : buffer__len(&c->up_in) < c->up_in.cap)) ||
	       (c->state == CONN_TUNNEL && !c->upstream_eof &&
		buffer__len(&c->to_client) < c->to_client.cap);
}

/* Writes what fd accepts (through tls when it is not NULL: the client's
 * session), clearing *ready on EAGAIN; -1 on a broken connection. */
static int conn__flush(int fd, SSL *tls, struct buffer *b, bool *ready)
{
	while (buffer__len(b)) {
		ssize_t n = tls ? proxy_tls__send(tls, b->data + b->start, buffer__len(b))
				: send(fd, b->data + b->start, buffer__len(b), MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				*ready = false;
				return 0;
			}
			return -1;
		}
		b->start += (size_t)n;
	}
	b->start = b->end = 0;
	return 0;
}

static void conn__touch(struct conn *c)
{
	c->deadline_ms = clock__monotonic_ms() + c->worker->server->settings.io_timeout_ms;
}

static void conn__process_head(struct conn *c);
static void conn__client_writable(struct conn *c);

/* Puts c on its worker's ready list: pumped before the next epoll_wait. */
static void conn__queue(struct conn *c)
{
	if (!c->queued && !c->dead) {
		c->queued = true;
		c->ready_next = c->worker->ready;
		c->worker->ready = c;
	}
}

/* Queues a proxy-made response; the exchange ends when it is written. */
static void conn__send_error(struct conn *c, const struct route_error *error, bool html,
			     bool keep_alive)
{
	char response[2560];
	size_t len;

	conn__close_upstream(c);
	proxy_metrics__answered(route__error_status(error->kind), c->request_ns);
	len = route__render_error(error, html, keep_alive, response, sizeof(response));
	c->close_after = !keep_alive;
	c->state = CONN_ERROR_WRITE;
	c->to_client.start = c->to_client.end = 0;
	if (!len || !buffer__append(&c->to_client, response, len)) {
		conn__close(c);
		return;
	}
	conn__touch(c);
	conn__client_writable(c);
}

/* Ends c without resetting it under its last answer: the proxy's side is
 * shut (TLS: close_notify, then the FIN) and what the client still sends,
 * a body the answer made moot, is read and dropped until its end of file
 * (at most PROXY_LINGER_MS and PROXY_LINGER_BYTES), then the close. A
 * close with unread bytes would send a reset, and a client that sends its
 * whole body before it reads (Python's http.client, under requests and
 * urllib) would see that instead of the answer. */
static void conn__linger(struct conn *c)
{
	conn__close_upstream(c);
	proxy_tls__end(c->tls);
	c->tls = NULL;
	shutdown(c->client_fd, SHUT_WR);
	c->state = CONN_LINGER;
	c->linger_left = PROXY_LINGER_BYTES;
	c->deadline_ms = clock__monotonic_ms() + PROXY_LINGER_MS;
	c->in.start = c->in.end = 0;
	conn__queue(c); /* bytes already signalled raise no new edge */
}

/* LINGER: one read of what the client sends, dropped; the close at its
 * end of file, an error or the byte budget. */
static void conn__linger_read(struct conn *c)
{
	ssize_t n = recv(c->client_fd, c->in.data, c->in.cap, 0);

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		c->client_in_ready = false;
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0 || (size_t)n >= c->linger_left) {
		conn__close(c);
		return;
	}
	c->linger_left -= (size_t)n;
}

/* A request is over: back to reading heads, or close (after a linger
 * where the client may still be sending: a proxy-made answer, or an
 * upstream's that came before the request's body ended). */
static void conn__finish(struct conn *c)
{
	const struct proxy_settings *s = &c->worker->server->settings;

	conn__close_upstream(c);
	c->request_ns = 0; /* the next answer's latency counts from its own head */
	if (c->close_after || !c->req_keep_alive || !c->req_body_done) {
		if (c->state == CONN_ERROR_WRITE || !c->req_body_done)
			conn__linger(c);
		else
			conn__close(c);
		return;
	}
	c->state = CONN_READ_HEAD;
	c->head_started = buffer__len(&c->in) > 0;
	c->deadline_ms =
	    clock__monotonic_ms() + (c->head_started ? s->header_timeout_ms : s->idle_timeout_ms);
	if (c->head_started) {
		/* parsed by the pump, not here: no recursion per pipelined request */
		c->pending_head = true;
		conn__queue(c);
	}
}

/* Feeds request body bytes at data[0..len) to the tracker: how many belong
 * to the body, or -1 on bad chunked framing. */
static ssize_t conn__request_body(struct conn *c, const char *data, size_t len)
{
	if (c->req_body_done)
		return 0;
	if (c->req_body == HTTP_BODY_LENGTH) {
		size_t n = len < c->req_remaining ? len : (size_t)c->req_remaining;

		c->req_remaining -= n;
		c->req_body_done = c->req_remaining == 0;
		return (ssize_t)n;
	}
	if (c->req_body == HTTP_BODY_CHUNKED) {
		bool done;
		ssize_t n = http__chunked_feed(&c->req_chunked, data, len, &done);

		c->req_body_done = done;
		return n;
	}
	c->req_body_done = true;
	return 0;
}

/* The same for the response; UNTIL_CLOSE takes everything. */
static ssize_t conn__response_body(struct conn *c, const char *data, size_t len)
{
	if (c->resp_body_done)
		return 0;
	switch (c->resp_body) {
	case HTTP_BODY_LENGTH: {
		size_t n = len < c->resp_remaining ? len : (size_t)c->resp_remaining;

		c->resp_remaining -= n;
		c->resp_body_done = c->resp_remaining == 0;
		return (ssize_t)n;
	}
	case HTTP_BODY_CHUNKED: {
		bool done;
		ssize_t n = http__chunked_feed(&c->resp_chunked, data, len, &done);

		c->resp_body_done = done;
		return n;
	}
	case HTTP_BODY_UNTIL_CLOSE:
		return (ssize_t)len;
	case HTTP_BODY_NONE:
		break;
	}
	c->resp_body_done = true;
	return 0;
}

/* True when header h is named in a Connection header (hop-by-hop). */
static bool conn__nominated(const struct http_head *head, const struct http_header *h)
{
	char name[64];

	if (h->name_len >= sizeof(name))
		return false;
	memcpy(name, h->name, h->name_len);
	name[h->name_len] = '\0';
	for (size_t i = 0; i < head->header_count; i++)
		if (http__header_is(&head->headers[i], "connection") &&
		    http__list_has_token(head->headers[i].value, head->headers[i].value_len, name))
			return true;
	return false;
}

static bool conn__hop_by_hop(const struct http_header *h)
{
	static const char *const names[] = {
	    "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", NULL};

	for (int i = 0; names[i]; i++)
		if (http__header_is(h, names[i]))
			return true;
	return false;
}

static bool conn__append_header(struct buffer *b, const char *name, const char *value,
				size_t value_len)
{
	return buffer__append_str(b, name) && buffer__append(b, ": ", 2) &&
	       buffer__append(b, value, value_len) && buffer__append(b, "\r\n", 2);
}

/* The request head as the sandbox gets it (into to_up). */
static bool conn__upstream_head(struct conn *c, const struct http_head *head,
				const struct lookup_route *route)
{
	const struct proxy_settings *s = &c->worker->server->settings;
	const struct http_header *host =
	    head->host_index >= 0 ? &head->headers[head->host_index] : NULL;
	const struct http_header *upgrade = http__find_header(head, "upgrade");
	struct buffer *b = &c->to_up;
	char masked[300];
	const char *proto;
	bool ok;

	ok = buffer__append(b, head->method, head->method_len) && buffer__append(b, " ", 1) &&
	     buffer__append(b, head->target, head->target_len) &&
	     buffer__append_str(b, head->version_minor ? " HTTP/1.1\r\n" : " HTTP/1.0\r\n");
	for (size_t i = 0; ok && i < head->header_count; i++) {
		const struct http_header *h = &head->headers[i];

		if (conn__hop_by_hop(h) || http__header_is(h, "host") ||
		    http__header_is(h, "x-forwarded-for") ||
		    http__header_is(h, "x-forwarded-host") ||
		    http__header_is(h, "x-forwarded-proto") || conn__nominated(head, h))
			continue;
		ok = buffer__append(b, h->name, h->name_len) && buffer__append(b, ": ", 2) &&
		     buffer__append(b, h->value, h->value_len) && buffer__append(b, "\r\n", 2);
	}
	/* maskRequestHost: ${PORT} substituted, the result becomes Host */
	if (route->mask_request_host[0] &&
	    route__mask_host(route->mask_request_host, c->port, masked, sizeof(masked)))
		ok = ok && conn__append_header(b, "Host", masked, strlen(masked));
	else if (host)
		ok = ok && conn__append_header(b, "Host", host->value, host->value_len);
	if (host)
		ok = ok && conn__append_header(b, "X-Forwarded-Host", host->value, host->value_len);
	ok = ok && conn__append_header(b, "X-Forwarded-For", c->client_ip, strlen(c->client_ip));
	proto = c->tls ? "https" : s->forwarded_proto;
	ok = ok && conn__append_header(b, "X-Forwarded-Proto", proto, strlen(proto));
	if (c->req_upgrade && upgrade)
		ok = ok && buffer__append_str(b, "Connection: Upgrade\r\n") &&
		     conn__append_header(b, "Upgrade", upgrade->value, upgrade->value_len);
	else
		ok = ok && buffer__append_str(b, "Connection: close\r\n");
	return ok && buffer__append(b, "\r\n", 2);
}

/* Starts the upstream connection; false when it failed at once (an error
 * response is then queued). */
static bool conn__connect(struct conn *c, const struct lookup_route *route)
{
	struct sockaddr_storage address = route->address;
	int fd, one = 1;

	if (address.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&address)->sin6_port = htons((uint16_t)c->port);
	else
		((struct sockaddr_in *)&address)->sin_port = htons((uint16_t)c->port);
	fd = socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto refused;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->upstream_fd = fd;
	c->upstream_registered = false;
	if (connect(fd, (struct sockaddr *)&address, route->address_len) == 0) {
		c->state = CONN_PROXYING;
		return true;
	}
	if (errno == EINPROGRESS) {
		c->state = CONN_CONNECTING;
		c->deadline_ms =
		    clock__monotonic_ms() + c->worker->server->settings.connect_timeout_ms;
		return true;
	}
refused : {
	struct route_error error = {
	    .kind = ROUTE_ERR_PORT_CLOSED, .sandbox_id = c->sandbox_id, .port = c->port};

	conn__send_error(c, &error, c->req_html, c->req_body_done && c->req_keep_alive);
	return false;
}
}

/* A request head on its way to an exchange. Each step below either passes
 * (true) or fills error and returns false: the request is then refused
 * with that error (conn__refuse). */
struct head_ctx {
	struct conn *c;
	struct proxy_server *server;
	const struct http_head *head;
	struct route_target target;
	struct lookup_route route;
	struct route_error error;
	bool html;
	bool no_body; /* a refusal may keep the connection: no body to skip */
};

/* Step 1: Host and target name a sandbox and a port. */
static bool head__route(struct head_ctx *ctx)
{
	struct conn *c = ctx->c;
	const char *route_error = NULL;

	if (!route__request(ctx->head, ctx->server->settings.domain, &ctx->target, &route_error)) {
		ctx->error.kind = ROUTE_ERR_BAD_REQUEST;
		ctx->error.message = route_error;
		return false;
	}
	snprintf(c->sandbox_id, sizeof(c->sandbox_id), "%s", ctx->target.sandbox_id);
	c->port = ctx->target.port;
	ctx->error.sandbox_id = c->sandbox_id;
	ctx->error.port = ctx->target.port;
	return true;
}

/* Step 2: the client IP's rate limit (never waits, docs/ratelimit.md). */
static bool head__check_rate(struct head_ctx *ctx)
{
	struct ratelimit_decision decision;

	if (!ctx->server->limiter)
		return true;
	limiter__check(ctx->server->limiter, ctx->c->client_ip, &decision);
	if (decision.allowed)
		return true;
	prom__counter_add("warren_proxy_rate_limit_rejections_total",
			  "Requests refused with 429 by the per-client-IP limit", NULL, 1);
	ctx->error.kind = ROUTE_ERR_RATE_LIMITED;
	ctx->error.limit = decision.limit;
	ctx->error.remaining = decision.remaining;
	ctx->error.reset_s = decision.reset_s;
	ctx->error.retry_after_s = decision.retry_after_s;
	ctx->error.sandbox_id = NULL;
	return false;
}

/* Step 3: the sandbox's route (cached lookup). */
static bool head__lookup(struct head_ctx *ctx)
{
	switch (lookup__get(ctx->server->lookup, ctx->c->sandbox_id, &ctx->route)) {
	case LOOKUP_OK:
		return true;
	case LOOKUP_NOT_FOUND:
		ctx->error.kind = ROUTE_ERR_NOT_FOUND;
		return false;
	case LOOKUP_UNAVAILABLE:
	default:
		ctx->error.kind = ROUTE_ERR_UNAVAILABLE;
		return false;
	}
}

/* Step 4: allowPublicTraffic=false: every port but the agent's needs the
 * traffic access token (compared in constant time). */
static bool head__check_token(struct head_ctx *ctx)
{
	const struct http_header *token;
	char provided[PROXY_TOKEN_MAX + 1];

	if (ctx->route.allow_public_traffic || ctx->target.port == ROUTE_AGENT_PORT)
		return true;
	token = http__find_header(ctx->head, "e2b-traffic-access-token");
	if (!token) {
		ctx->error.kind = ROUTE_ERR_TOKEN_MISSING;
		return false;
	}
	if (token->value_len > PROXY_TOKEN_MAX) {
		ctx->error.kind = ROUTE_ERR_TOKEN_INVALID;
		return false;
	}
	memcpy(provided, token->value, token->value_len);
	provided[token->value_len] = '\0';
	if (!tokens__equal(provided, ctx->route.traffic_token)) {
		ctx->error.kind = ROUTE_ERR_TOKEN_INVALID;
		return false;
	}
	return true;
}

/* Step 5: a connection slot of the sandbox (released by the exchange's end). */
static bool head__acquire(struct head_ctx *ctx)
{
	if (!lookup__acquire(ctx->server->lookup, ctx->c->sandbox_id)) {
		ctx->error.kind = ROUTE_ERR_TOO_MANY;
		return false;
	}
	ctx->c->acquired = true;
	return true;
}

/* Step 6: the exchange's state, and to_up filled with the upstream head,
 * the body bytes that came with the head and (after an upgrade request)
 * the new protocol's first bytes. */
static bool head__start_exchange(struct head_ctx *ctx)
{
	struct conn *c = ctx->c;
	const struct http_head *head = ctx->head;
	ssize_t used;

	c->req_keep_alive = head->keep_alive;
	c->req_is_head = head->method_len == 4 && memcmp(head->method, "HEAD", 4) == 0;
	c->req_upgrade = head->upgrade;
	c->req_html = ctx->html;
	c->req_http10 = head->version_minor == 0;
	c->req_body = head->body;
	c->req_remaining = head->content_length;
	c->req_body_done = head->body == HTTP_BODY_NONE;
	http__chunked_init(&c->req_chunked);
	c->resp_head_done = c->resp_body_done = c->resp_started = false;
	c->close_after = c->client_eof = c->upstream_eof = false;
	c->to_up.start = c->to_up.end = 0;
	c->up_in.start = c->up_in.end = 0;
	c->to_client.start = c->to_client.end = 0;
	if (!conn__upstream_head(c, head, &ctx->route)) {
		ctx->error.kind = ROUTE_ERR_HEAD_TOO_LARGE;
		return false;
	}
	c->in.start += head->head_len;
	used = conn__request_body(c, c->in.data + c->in.start, buffer__len(&c->in));
	if (used < 0 || !buffer__append(&c->to_up, c->in.data + c->in.start, (size_t)used)) {
		ctx->error.kind = ROUTE_ERR_BAD_REQUEST;
		ctx->error.message = "malformed chunked body";
		ctx->no_body = false;
		return false;
	}
	c->in.start += (size_t)used;
	if (c->req_upgrade && buffer__len(&c->in)) {
		if (!buffer__append(&c->to_up, c->in.data + c->in.start, buffer__len(&c->in))) {
			ctx->error.kind = ROUTE_ERR_BAD_REQUEST;
			ctx->error.message = "request too large";
			ctx->no_body = false;
			return false;
		}
		c->in.start = c->in.end = 0;
	}
	return true;
}

/* Answers ctx->error. A refused request with a body closes the connection:
 * its body is unread. */
static void conn__refuse(struct head_ctx *ctx)
{
	struct conn *c = ctx->c;

	if (c->acquired) {
		lookup__release(ctx->server->lookup, c->sandbox_id);
		c->acquired = false;
	}
	if (ctx->no_body)
		c->in.start += ctx->head->head_len;
	else
		c->in.start = c->in.end = 0;
	c->req_keep_alive = ctx->head->keep_alive;
	c->req_body_done = true;
	conn__send_error(c, &ctx->error, ctx->html, ctx->no_body && ctx->head->keep_alive);
}

/* A head that is not whole or not valid: wait for more (header timeout
 * from its first byte) or answer 400/431. False when there is no head to
 * route. */
static bool conn__parse_head(struct conn *c, struct http_head *head)
{
	const struct proxy_settings *s = &c->worker->server->settings;
	struct route_error error = {0};
	enum http_parse_status status;

	status =
	    http__parse_request(c->in.data + c->in.start, buffer__len(&c->in), s->max_head, head);
	if (status == HTTP_PARSE_OK)
		return true;
	if (status == HTTP_PARSE_INCOMPLETE) {
		if (!c->head_started) {
			c->head_started = true;
			c->deadline_ms = clock__monotonic_ms() + s->header_timeout_ms;
		}
		conn__watch(c);
		return false;
	}
	error.kind =
	    status == HTTP_PARSE_TOO_LARGE ? ROUTE_ERR_HEAD_TOO_LARGE : ROUTE_ERR_BAD_REQUEST;
	error.message = head->error;
	c->in.start = c->in.end = 0;
	conn__send_error(c, &error, false, false);
	return false;
}

/* READ_HEAD: parse what arrived; start the exchange when a head is whole. */
static void conn__process_head(struct conn *c)
{
	struct http_head *head = &c->worker->head;
	struct head_ctx ctx = {.c = c, .server = c->worker->server, .head = head};

	if (!conn__parse_head(c, head))
		return;
	c->request_ns = clock__monotonic_ns();
	ctx.html = route__wants_html(head);
	ctx.no_body = head->body == HTTP_BODY_NONE;
	if (!head__route(&ctx) || !head__check_rate(&ctx) || !head__lookup(&ctx) ||
	    !head__check_token(&ctx) || !head__acquire(&ctx) || !head__start_exchange(&ctx)) {
		conn__refuse(&ctx);
		return;
	}
	if (!conn__connect(c, &ctx.route))
		return;
	if (c->state == CONN_PROXYING) {
		conn__touch(c);
		if (conn__flush(c->upstream_fd, NULL, &c->to_up, &c->upstream_out_ready) < 0) {
			ctx.error.kind = ROUTE_ERR_PORT_CLOSED;
			conn__send_error(c, &ctx.error, ctx.html, false);
			return;
		}
	}
	conn__watch(c);
}

/* Counts one answer (the proxy's own or the sandbox's response head) and
 * the time from the request head to it. */
static void proxy_metrics__answered(int status, uint64_t request_ns)
{
	char labels[32];

	snprintf(labels, sizeof(labels), "code=\"%d\"", status);
	prom__counter_add(
	    "warren_proxy_requests_total",
	    "Requests answered, by status (the proxy's errors and the sandboxes' responses)",
	    labels, 1);
	if (request_ns)
		prom__histogram_observe("warren_proxy_response_seconds",
					"Time from a request's head to its response head", NULL,
					(double)(clock__monotonic_ns() - request_ns) / 1e9);
}

/* ---- events ---- */

static void conn__client_writable(struct conn *c)
{
	if (conn__flush(c->client_fd, c->tls, &c->to_client, &c->client_out_ready) < 0) {
		conn__close(c);
		return;
	}
	if (buffer__len(&c->to_client) == 0) {
		if (c->state == CONN_ERROR_WRITE) {
			conn__finish(c);
			return;
		}
		if (c->state == CONN_PROXYING && c->resp_body_done) {
			conn__finish(c);
			return;
		}
		if (c->state == CONN_TUNNEL && c->upstream_eof) {
			conn__close(c);
			return;
		}
	}
	conn__watch(c);
}

static void conn__client_readable(struct conn *c)
{
	struct buffer *b;
	ssize_t n;
	size_t want;

	if (c->state == CONN_LINGER) {
		conn__linger_read(c);
		return;
	}
	if (c->state == CONN_READ_HEAD)
		b = &c->in;
	else if (c->state == CONN_TUNNEL ||
		 ((c->state == CONN_PROXYING || c->state == CONN_CONNECTING) && !c->req_body_done))
		b = &c->to_up;
	else {
		conn__watch(c);
		return;
	}
	if (!buffer__space(b)) {
		conn__watch(c);
		return;
	}
	want = b->cap - b->end;
	if (b == &c->to_up && c->state != CONN_TUNNEL) {
		/* a body read never takes more than the body (Content-Length) or
		 * than what `in` can keep of the next request (chunked) */
		if (c->req_body == HTTP_BODY_LENGTH && want > c->req_remaining)
			want = (size_t)c->req_remaining;
		else if (c->req_body == HTTP_BODY_CHUNKED && want > c->in.cap)
			want = c->in.cap;
	}
	n = c->tls ? proxy_tls__recv(c->tls, b->data + b->end, want)
		   : recv(c->client_fd, b->data + b->end, want, 0);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			c->client_in_ready = false;
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		conn__close(c);
		return;
	}
	if (n == 0) {
		if (c->state == CONN_TUNNEL && buffer__len(&c->to_up) == 0 && c->upstream_fd >= 0) {
			shutdown(c->upstream_fd, SHUT_WR);
			c->client_eof = true;
			if (c->upstream_eof)
				conn__close(c);
			else
				conn__watch(c);
			return;
		}
		conn__close(c); /* a client gone mid-request or between requests */
		return;
	}
	if (c->state == CONN_READ_HEAD) {
		b->end += (size_t)n;
		conn__process_head(c);
		return;
	}
	conn__touch(c);
	if (c->state != CONN_TUNNEL) {
		ssize_t used = conn__request_body(c, b->data + b->end, (size_t)n);

		if (used < 0) {
			conn__close(c); /* bad chunked framing mid-stream: nothing to resync */
			return;
		}
		if ((size_t)used < (size_t)n &&
		    !buffer__append(&c->in, b->data + b->end + used, (size_t)n - (size_t)used)) {
			/* pipelined bytes after the body are kept for the next head */
			conn__close(c);
			return;
		}
		b->end += (size_t)used;
	} else {
		b->end += (size_t)n;
	}
	if (c->state != CONN_CONNECTING &&
	    conn__flush(c->upstream_fd, NULL, b, &c->upstream_out_ready) < 0) {
		conn__close(c);
		return;
	}
	conn__watch(c);
}

/* Builds the response head for the client from the parsed upstream head. */
static bool conn__client_head(struct conn *c, const struct http_head *head)
{
	struct buffer *b = &c->to_client;
	char line[32];
	bool ok;

	snprintf(line, sizeof(line), "HTTP/1.1 %03d ", head->status);
	ok = buffer__append_str(b, line) && buffer__append(b, head->reason, head->reason_len) &&
	     buffer__append(b, "\r\n", 2);
	for (size_t i = 0; ok && i < head->header_count; i++) {
		const struct http_header *h = &head->headers[i];

		if (http__header_is(h, "upgrade") && head->status == 101) {
			/* kept: the protocol switched to */
		} else if (conn__hop_by_hop(h) || conn__nominated(head, h)) {
			continue;
		}
		ok = buffer__append(b, h->name, h->name_len) && buffer__append(b, ": ", 2) &&
		     buffer__append(b, h->value, h->value_len) && buffer__append(b, "\r\n", 2);
	}
	if (head->status == 101)
		ok = ok && buffer__append_str(b, "Connection: Upgrade\r\n");
	else if (head->status >= 200 && c->close_after)
		ok = ok && buffer__append_str(b, "Connection: close\r\n");
	else if (head->status >= 200)
		ok = ok && buffer__append_str(b, "Connection: keep-alive\r\n");
	return ok && buffer__append(b, "\r\n", 2);
}

/* Parses response heads in up_in (1xx ones are forwarded as they come). */
static void conn__process_response_head(struct conn *c)
{
	struct http_head *head = &c->worker->head;
	struct route_error error = {.kind = ROUTE_ERR_BAD_GATEWAY, .sandbox_id = c->sandbox_id};

	for (;;) {
		enum http_parse_status status =
		    http__parse_response(c->up_in.data + c->up_in.start, buffer__len(&c->up_in),
					 c->up_in.cap, c->req_is_head, head);
		ssize_t used;

		if (status == HTTP_PARSE_INCOMPLETE && c->upstream_eof)
			status = HTTP_PARSE_ERROR;
		if (status == HTTP_PARSE_INCOMPLETE)
			return;
		if (status != HTTP_PARSE_OK) {
			log_info("sandbox %s port %u: bad response: %s", c->sandbox_id, c->port,
				 head->error ? head->error : "truncated");
			if (c->resp_started) {
				conn__close(c);
				return;
			}
			conn__send_error(c, &error, c->req_html, false);
			return;
		}
		if (head->status == 101 && !c->req_upgrade) {
			conn__send_error(c, &error, c->req_html, false);
			return;
		}
		if (head->status >= 200 || head->status == 101) {
			c->close_after =
			    head->status != 101 && (!c->req_keep_alive || !c->req_body_done ||
						    head->body == HTTP_BODY_UNTIL_CLOSE);
		}
		if (head->status < 200 && head->status != 101 && c->req_http10) {
			/* no interim responses for an HTTP/1.0 client (RFC 9110 15.2) */
			c->up_in.start += head->head_len;
			continue;
		}
		if (head->status >= 200 || head->status == 101)
			proxy_metrics__answered(head->status, c->request_ns);
		c->resp_started = true;
		if (!conn__client_head(c, head)) {
			conn__send_error(c, &error, c->req_html, false);
			return;
		}
		c->up_in.start += head->head_len;
		if (head->status == 101) {
			c->state = CONN_TUNNEL;
			c->resp_head_done = true;
			if (!buffer__append(&c->to_client, c->up_in.data + c->up_in.start,
					    buffer__len(&c->up_in))) {
				conn__close(c);
				return;
			}
			c->up_in.start = c->up_in.end = 0;
			return;
		}
		if (head->status < 200)
			continue; /* 100 Continue, 103 Early Hints: the final head follows */
		c->resp_head_done = true;
		c->resp_body = head->body;
		c->resp_remaining = head->content_length;
		c->resp_body_done = head->body == HTTP_BODY_NONE;
		http__chunked_init(&c->resp_chunked);
		used =
		    conn__response_body(c, c->up_in.data + c->up_in.start, buffer__len(&c->up_in));
		if (used < 0 ||
		    !buffer__append(&c->to_client, c->up_in.data + c->up_in.start, (size_t)used)) {
			conn__close(c);
			return;
		}
		c->up_in.start = c->up_in.end = 0; /* bytes past the response are dropped */
		if (c->upstream_eof && !c->resp_body_done) {
			if (c->resp_body == HTTP_BODY_UNTIL_CLOSE)
				c->resp_body_done = true;
			c->close_after = true;
			c->resp_body_done = true;
		}
		return;
	}
}

static void conn__upstream_readable(struct conn *c)
{
	struct buffer *b;
	ssize_t n;

	if (c->state == CONN_PROXYING && !c->resp_head_done)
		b = &c->up_in;
	else if ((c->state == CONN_PROXYING && !c->resp_body_done) || c->state == CONN_TUNNEL)
		b = &c->to_client;
	else {
		conn__watch(c);
		return;
	}
	if (!buffer__space(b)) {
		conn__watch(c);
		return;
	}
	n = recv(c->upstream_fd, b->data + b->end, b->cap - b->end, 0);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			c->upstream_in_ready = false;
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		n = 0; /* a reset: as an end */
	}
	conn__touch(c);
	if (n == 0) {
		c->upstream_eof = true;
		if (c->state == CONN_TUNNEL) {
			if (buffer__len(&c->to_client) == 0) {
				conn__close(c);
				return;
			}
			conn__client_writable(c);
			return;
		}
		if (!c->resp_head_done) {
			conn__process_response_head(c);
		} else if (!c->resp_body_done) {
			/* the end of an until-close body, or a truncated one */
			c->close_after = true;
			c->resp_body_done = true;
		}
		if (!c->dead)
			conn__client_writable(c);
		return;
	}
	if (b == &c->up_in) {
		b->end += (size_t)n;
		conn__process_response_head(c);
	} else if (c->state == CONN_TUNNEL) {
		b->end += (size_t)n;
	} else {
		ssize_t used = conn__response_body(c, b->data + b->end, (size_t)n);

		if (used < 0) {
			conn__close(c);
			return;
		}
		b->end += (size_t)used;
	}
	if (!c->dead)
		conn__client_writable(c);
}

static void conn__upstream_writable(struct conn *c)
{
	if (c->state == CONN_CONNECTING) {
		int so_error = 0;
		socklen_t len = sizeof(so_error);

		getsockopt(c->upstream_fd, SOL_SOCKET, SO_ERROR, &so_error, &len);
		if (so_error) {
			struct route_error error = {.kind = ROUTE_ERR_PORT_CLOSED,
						    .sandbox_id = c->sandbox_id,
						    .port = c->port};

			conn__send_error(c, &error, c->req_html,
					 c->req_body_done && c->req_keep_alive);
			return;
		}
		c->state = CONN_PROXYING;
	}
	conn__touch(c);
	if (conn__flush(c->upstream_fd, NULL, &c->to_up, &c->upstream_out_ready) < 0) {
		if (!c->resp_started) {
			struct route_error error = {.kind = ROUTE_ERR_BAD_GATEWAY,
						    .sandbox_id = c->sandbox_id};

			conn__send_error(c, &error, c->req_html, false);
		} else {
			conn__close(c);
		}
		return;
	}
	conn__watch(c);
}

/* A client that hung up while its answer is relayed (a streamed answer it
 * gave up on, a timeout abort) gets its upstream connection closed now,
 * so the sandbox's server sees the abort too, instead of when a later
 * write to the client fails (never, for a silent stream). Bytes still
 * queued before the hang-up (a pipelined request) mean it is still there.
 * True when c was closed. */
static bool conn__client_gone(struct conn *c)
{
	char byte;
	ssize_t n;

	if (!c->client_hup || !c->req_body_done ||
	    (c->state != CONN_PROXYING && c->state != CONN_CONNECTING))
		return false;
	c->client_hup = false;
	n = recv(c->client_fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)))
		return false;
	conn__close(c);
	return true;
}

/* Does every I/O the readiness flags and the state allow, a bounded
 * number of rounds (fairness); a connection with more to do is queued to
 * be pumped again before the next epoll_wait, as an edge never repeats. */
static void conn__pump(struct conn *c)
{
	for (int round = 0; round < 32; round++) {
		bool did = false;

		if (conn__client_gone(c))
			return;
		if (c->pending_head && c->state == CONN_READ_HEAD) {
			c->pending_head = false;
			conn__process_head(c);
			did = true;
		}
		if (c->dead)
			return;
		if (c->upstream_fd >= 0 && c->upstream_out_ready &&
		    (c->state == CONN_CONNECTING || buffer__len(&c->to_up))) {
			conn__upstream_writable(c);
			did = true;
		}
		if (!c->dead && c->upstream_fd >= 0 && c->upstream_in_ready &&
		    conn__upstream_wants_read(c)) {
			conn__upstream_readable(c);
			did = true;
		}
		if (!c->dead && c->client_in_ready && conn__client_wants_read(c)) {
			conn__client_readable(c);
			did = true;
		}
		if (!c->dead && c->client_out_ready && buffer__len(&c->to_client)) {
			conn__client_writable(c);
			did = true;
		}
		if (c->dead || !did)
			return;
	}
	conn__queue(c);
}

/* ---- timers ---- */

static void worker__sweep(struct worker *w, uint64_t now_ms)
{
	struct conn *c = w->conns, *next;

	for (; c; c = next) {
		next = c->next;
		if (c->dead || c->deadline_ms > now_ms)
			continue;
		if ((c->state == CONN_CONNECTING || c->state == CONN_PROXYING) &&
		    !c->resp_started) {
			struct route_error error = {.kind = ROUTE_ERR_TIMEOUT,
						    .sandbox_id = c->sandbox_id,
						    .port = c->port};

			conn__send_error(c, &error, c->req_html, false);
			/* a client that does not read gets closed next sweep */
			c->deadline_ms = now_ms + 1000;
			continue;
		}
		conn__close(c);
	}
}

/* ---- the loop ---- */

/* A non-blocking SO_REUSEPORT listening socket on host:port (every
 * worker has its own); the fd, or -1 with a message in err. */
static int worker__listen(const char *host, uint16_t port, char *err, size_t err_len)
{
	struct sockaddr_storage address;
	socklen_t address_len;
	int fd, one = 1;

	memset(&address, 0, sizeof(address));
	if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&address)->sin_addr) == 1) {
		((struct sockaddr_in *)&address)->sin_family = AF_INET;
		((struct sockaddr_in *)&address)->sin_port = htons(port);
		address_len = sizeof(struct sockaddr_in);
	} else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)&address)->sin6_addr) == 1) {
		((struct sockaddr_in6 *)&address)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *)&address)->sin6_port = htons(port);
		address_len = sizeof(struct sockaddr_in6);
	} else {
		snprintf(err, err_len, "listen host '%s' is not an IP address", host);
		return -1;
	}
	fd = socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&address, address_len) < 0 || listen(fd, 4096) < 0)
		goto fail;
	return fd;
fail:
	snprintf(err, err_len, "cannot listen on %s:%u: %s", host, port, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

/* Accepts what listen_fd has (a batch); tls: each client gets a TLS
 * session, whose handshake the first reads and writes run. */
static void worker__accept(struct worker *w, int listen_fd, bool tls)
{
	const struct proxy_settings *s = &w->server->settings;

	for (int i = 0; i < PROXY_ACCEPT_BATCH; i++) {
		struct sockaddr_storage peer;
		socklen_t peer_len = sizeof(peer);
		struct epoll_event ev;
		struct conn *c;
		int one = 1;
		int fd = accept4(listen_fd, (struct sockaddr *)&peer, &peer_len,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;
		if (w->connection_count >= s->max_connections) {
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = conn__new(w, fd, &peer);
		if (!c) {
			close(fd);
			continue;
		}
		if (tls && !(c->tls = proxy_tls__accept(w->server->tls, fd))) {
			conn__close(c);
			continue;
		}
		c->deadline_ms = clock__monotonic_ms() + s->header_timeout_ms;
		ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
		ev.data.u64 = (uint64_t)(uintptr_t)c | TAG_CLIENT;
		if (epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
			conn__close(c);
	}
}

/* Loads the TLS certificate and key again (after proxy__reload_tls);
 * a failure keeps the current ones and is logged. */
static void proxy__reload_tls_now(struct proxy_server *server)
{
	const struct proxy_settings *s = &server->settings;
	char err[512];

	server->tls_reload = 0;
	if (!server->tls)
		return;
	if (proxy_tls__reload(server->tls, s->tls_cert_file, s->tls_key_file, err, sizeof(err)))
		log_error("TLS certificate not reloaded, the current one stays: %s", err);
	else
		log_info("TLS certificate reloaded from %s", s->tls_cert_file);
}

static void *worker__main(void *arg)
{
	struct worker *w = arg;
	struct epoll_event events[PROXY_EVENTS];
	uint64_t last_sweep = clock__monotonic_ms();

	while (!w->server->stop) {
		int n = epoll_wait(w->epoll_fd, events, PROXY_EVENTS, w->ready ? 0 : 1000);
		uint64_t now;

		for (int i = 0; i < n; i++) {
			uint64_t data = events[i].data.u64;
			int tag = (int)(data & 3);
			struct conn *c = (struct conn *)(uintptr_t)(data & ~(uint64_t)3);
			uint32_t e = events[i].events;

			if (tag == TAG_LISTENER || tag == TAG_TLS_LISTENER) {
				worker__accept(
				    w, tag == TAG_LISTENER ? w->listen_fd : w->tls_listen_fd,
				    tag == TAG_TLS_LISTENER);
				continue;
			}
			if (c->dead)
				continue;
			if (tag == TAG_CLIENT) {
				if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
					c->client_hup = true;
				if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
					c->client_in_ready = true;
				if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR))
					c->client_out_ready = true;
				/* A TLS read may wait for the socket to take a
				 * write (a handshake message), and a write for a
				 * read: any edge retries both. */
				if (c->tls)
					c->client_in_ready = c->client_out_ready = true;
			} else {
				if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
					c->upstream_in_ready = true;
				if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR))
					c->upstream_out_ready = true;
			}
			conn__pump(c);
		}
		/* connections whose pump stopped early, once more each */
		struct conn *list = w->ready;

		w->ready = NULL; /* pumped ones may queue themselves again */
		for (struct conn *c; (c = list);) {
			list = c->ready_next;
			c->queued = false;
			if (!c->dead)
				conn__pump(c);
		}
		while (w->dead) {
			struct conn *c = w->dead;

			w->dead = c->next;
			conn__free(c);
		}
		now = clock__monotonic_ms();
		if (now - last_sweep >= 1000) {
			worker__sweep(w, now);
			last_sweep = now;
		}
		if (w == &w->server->workers[0] && w->server->tls_reload)
			proxy__reload_tls_now(w->server);
	}
	while (w->conns)
		conn__close(w->conns);
	while (w->dead) {
		struct conn *c = w->dead;

		w->dead = c->next;
		conn__free(c);
	}
	return NULL;
}

struct proxy_server *proxy__create(const struct proxy_settings *settings, struct lookup *lookup,
				   struct limiter *limiter, char *err, size_t err_len)
{
	struct proxy_server *server = calloc(1, sizeof(*server));

	if (!server) {
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	server->settings = *settings;
	server->lookup = lookup;
	server->limiter = limiter;
	server->workers = calloc((size_t)settings->threads, sizeof(*server->workers));
	if (!server->workers) {
		free(server);
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	for (int i = 0; i < settings->threads; i++)
		server->workers[i].listen_fd = server->workers[i].tls_listen_fd = -1;
	if (settings->tls && !(server->tls = proxy_tls__open(settings->tls_cert_file,
							     settings->tls_key_file, err, err_len)))
		goto fail;
	for (int i = 0; i < settings->threads; i++) {
		struct worker *w = &server->workers[i];
		struct epoll_event ev = {.events = EPOLLIN};
		struct epoll_event tls_ev = {.events = EPOLLIN};

		w->server = server;
		w->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
		if (w->epoll_fd < 0 ||
		    (w->listen_fd = worker__listen(settings->listen_host, settings->listen_port,
						   err, err_len)) < 0)
			goto fail;
		if (settings->tls &&
		    (w->tls_listen_fd = worker__listen(
			 settings->tls_listen_host, settings->tls_listen_port, err, err_len)) < 0)
			goto fail;
		ev.data.u64 = (uint64_t)(uintptr_t)w | TAG_LISTENER;
		tls_ev.data.u64 = (uint64_t)(uintptr_t)w | TAG_TLS_LISTENER;
		if (epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, w->listen_fd, &ev) < 0 ||
		    (settings->tls &&
		     epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, w->tls_listen_fd, &tls_ev) < 0)) {
			snprintf(err, err_len, "epoll_ctl: %s", strerror(errno));
			goto fail;
		}
	}
	return server;
fail:
	proxy__destroy(server);
	return NULL;
}

int proxy__run(struct proxy_server *server)
{
	int started = 0, rc = 0;

	for (int i = 0; i < server->settings.threads; i++) {
		rc = pthread_create(&server->workers[i].thread, NULL, worker__main,
				    &server->workers[i]);
		if (rc) {
			log_error("cannot start worker thread %d: %s", i, strerror(rc));
			server->stop = 1;
			break;
		}
		started++;
	}
	for (int i = 0; i < started; i++)
		pthread_join(server->workers[i].thread, NULL);
	return -rc;
}

void proxy__stop(struct proxy_server *server)
{
	server->stop = 1;
}

void proxy__reload_tls(struct proxy_server *server)
{
	server->tls_reload = 1;
}

void proxy__destroy(struct proxy_server *server)
{
	if (!server)
		return;
	for (int i = 0; server->workers && i < server->settings.threads; i++) {
		if (server->workers[i].listen_fd >= 0)
			close(server->workers[i].listen_fd);
		if (server->workers[i].tls_listen_fd >= 0)
			close(server->workers[i].tls_listen_fd);
		if (server->workers[i].epoll_fd > 0)
			close(server->workers[i].epoll_fd);
	}
	free(server->workers);
	proxy_tls__close(server->tls);
	free(server);
}

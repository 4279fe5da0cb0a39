/* egress: the domain-filtering egress proxy (ARCHITECTURE.md "Sandbox
 * network"; design in docs/network.md "Egress proxy").
 *
 * Event-loop threads of the worker, in the host namespace. A slot whose
 * policy has domain entries DNATs its TCP 80 to <host side of its
 * veth>:http_port and 443 to :tls_port. The source address of an accepted connection is the
 * slot address (jail: the process's own; vm: SNAT'ed), which names the slot
 * and so its policy. The proxy reads the HTTP Host header or the TLS SNI
 * without terminating TLS, matches it, resolves the name itself with the
 * configured resolver, refuses internal answers, dials the resolved
 * address (never the one the sandbox asked for) and relays both ways,
 * checking every request of a keep-alive HTTP connection. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net_internal.h"
#include "warren/clock.h"
#include "warren/ids.h"
#include "warren/log.h"

#define HEAD_MAX	(32 * 1024) /* a (fragmented) ClientHello, or an HTTP request head */
#define HEAD_TIMEOUT_MS 10000
#define DIAL_TIMEOUT_MS 5000
#define DNS_TIMEOUT_MS	2000

static const char forbidden_response[] = "HTTP/1.1 403 Forbidden\r\n"
					 "Content-Type: text/plain\r\n"
					 "Content-Length: 54\r\n"
					 "Connection: close\r\n"
					 "\r\n"
					 "Egress to this host is blocked by the network policy.\n";
static const char bad_gateway_response[] = "HTTP/1.1 502 Bad Gateway\r\n"
					   "Content-Type: text/plain\r\n"
					   "Content-Length: 32\r\n"
					   "Connection: close\r\n"
					   "\r\n"
					   "The upstream could not be dialed";

/* A small cache of the proxy's own resolutions: name (lower case) -> the
 * public address it dials, for min(TTL, 60 s); TTL 0 is never cached. */
#define DNS_CACHE_SIZE	     256
#define DNS_CACHE_MAX_TTL_MS 60000

struct egress_dns_entry {
	char name[NET_DOMAIN_MAX + 1];
	struct in_addr address;
	int64_t expires_ms;
};

static size_t dns_slot(const char *name)
{
	uint32_t hash = 2166136261u; /* FNV-1a */

	for (const char *p = name; *p; p++)
		hash = (hash ^ (uint8_t)*p) * 16777619u;
	return hash % DNS_CACHE_SIZE;
}

static bool dns_cache_get(struct net_pool *pool, const char *name, struct in_addr *address)
{
	struct egress_dns_entry *entry;
	bool hit = false;

	if (!pool->dns_cache)
		return false;
	pthread_mutex_lock(&pool->dns_lock);
	entry = &pool->dns_cache[dns_slot(name)];
	if (entry->expires_ms > (int64_t)clock__monotonic_ms() && strcmp(entry->name, name) == 0) {
		*address = entry->address;
		hit = true;
	}
	pthread_mutex_unlock(&pool->dns_lock);
	return hit;
}

static void dns_cache_put(struct net_pool *pool, const char *name, struct in_addr address,
			  uint32_t ttl_s)
{
	struct egress_dns_entry *entry;
	int64_t ttl_ms = (int64_t)ttl_s * 1000;

	if (!pool->dns_cache || ttl_s == 0 || strlen(name) > NET_DOMAIN_MAX)
		return;
	pthread_mutex_lock(&pool->dns_lock);
	entry = &pool->dns_cache[dns_slot(name)];
	snprintf(entry->name, sizeof(entry->name), "%s", name);
	entry->address = address;
	entry->expires_ms = (int64_t)clock__monotonic_ms() +
			    (ttl_ms < DNS_CACHE_MAX_TTL_MS ? ttl_ms : DNS_CACHE_MAX_TTL_MS);
	pthread_mutex_unlock(&pool->dns_lock);
}

/* The client -> upstream direction of a proxied HTTP connection, framed
 * request by request so that every request on a keep-alive connection is
 * checked: each head must name the host the connection was allowed for
 * (the first request's); bodies are skipped by Content-Length or chunk
 * sizes. Anything else stops the direction: nothing more reaches the
 * upstream, which finishes its answers and closes. */
enum framer_state {
	FRAME_HEAD,
	FRAME_BODY,
	FRAME_CHUNK_LINE,
	FRAME_CHUNK_DATA,
	FRAME_CHUNK_END,
	FRAME_TRAILER,
	FRAME_STOPPED
};

struct framer {
	enum framer_state state;
	uint64_t remaining;
	char host[NET_DOMAIN_MAX + 2]; /* lower case, no trailing dot */
	size_t host_len;
	unsigned requests;
	bool refused; /* a request was refused (not merely the last one) */
};

static bool same_host(const struct framer *f, const char *name, size_t len)
{
	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len != f->host_len)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = (name[i] >= 'A' && name[i] <= 'Z') ? (char)(name[i] - 'A' + 'a') : name[i];

		if (c != f->host[i])
			return false;
	}
	return true;
}

/* Frames what it can of data[0..len) and returns how many bytes, from
 * the start, may go upstream; the state is FRAME_STOPPED after a refused
 * request (the bytes of and after it never go). full: data fills the
 * buffer, so an incomplete head or line is refused, not waited for. */
static size_t framer__feed(struct framer *f, const uint8_t *data, size_t len, bool full)
{
	size_t used = 0;

	while (used < len && f->state != FRAME_STOPPED) {
		const uint8_t *p = data + used;
		size_t left = len - used, step = 0;
		struct net_http_request request;
		enum net_parse_result rc;
		uint64_t size;

		switch (f->state) {
		case FRAME_HEAD:
			rc = net_parse__http_request(p, left, &request);
			if (rc == NET_PARSE_NEED_MORE && !full)
				goto out;
			if (rc != NET_PARSE_OK || !same_host(f, request.host, request.host_len)) {
				log_info("egress: request %u on a connection for %s refused (%s)",
					 f->requests + 1, f->host,
					 rc == NET_PARSE_OK ? "another host" : "malformed");
				f->state = FRAME_STOPPED;
				f->refused = true;
				goto out;
			}
			f->requests++;
			step = request.head_len;
			f->remaining = request.content_length;
			f->state = request.last		    ? FRAME_STOPPED
				   : request.chunked	    ? FRAME_CHUNK_LINE
				   : request.content_length ? FRAME_BODY
							    : FRAME_HEAD;
			if (request.last) {
				used += step; /* this request goes; nothing after it */
				goto out;
			}
			break;
		case FRAME_BODY:
		case FRAME_CHUNK_DATA:
			step = left < f->remaining ? left : (size_t)f->remaining;
			f->remaining -= step;
			if (f->remaining == 0)
				f->state = f->state == FRAME_BODY ? FRAME_HEAD : FRAME_CHUNK_END;
			break;
		case FRAME_CHUNK_LINE:
			rc = net_parse__http_chunk_line(p, left, &size, &step);
			if (rc == NET_PARSE_NEED_MORE && !full)
				goto out;
			if (rc != NET_PARSE_OK) {
				f->state = FRAME_STOPPED;
				goto out;
			}
			f->remaining = size;
			f->state = size ? FRAME_CHUNK_DATA : FRAME_TRAILER;
			break;
		case FRAME_CHUNK_END:
			if (left < 2)
				goto out;
			if (p[0] != '\r' || p[1] != '\n') {
				f->state = FRAME_STOPPED;
				goto out;
			}
			step = 2;
			f->state = FRAME_CHUNK_LINE;
			break;
		case FRAME_TRAILER: {
			const uint8_t *eol = memchr(p, '\n', left);

			if (!eol) {
				if (full)
					f->state = FRAME_STOPPED;
				goto out;
			}
			step = (size_t)(eol - p) + 1;
			if (step < 2 || eol[-1] != '\r') {
				f->state = FRAME_STOPPED;
				goto out;
			}
			if (step == 2)
				f->state = FRAME_HEAD;
			break;
		}
		case FRAME_STOPPED:
			break;
		}
		used += step;
	}
out:
	return used;
}

/* Which slot a connection belongs to: its source is a slot address. */
static int slot_of(const struct net_pool *pool, struct in_addr source)
{
	uint32_t offset = ntohl(source.s_addr) - pool->base;

	if (ntohl(source.s_addr) < pool->base || offset % 4 != 2 || offset / 4 >= pool->capacity)
		return -1;
	return (int)(offset / 4);
}

static void count(struct net_pool *pool, int slot, bool allowed)
{
	pthread_mutex_lock(&pool->lock);
	if (pool->slots[slot].in_use) {
		if (allowed)
			pool->slots[slot].proxy.proxy_allowed++;
		else
			pool->slots[slot].proxy.proxy_denied++;
	}
	pthread_mutex_unlock(&pool->lock);
}

void egress__cut_slot(struct net_pool *pool, int slot)
{
	for (struct egress_connection *c = pool->connections; c; c = c->next) {
		if (c->slot != slot)
			continue;
		shutdown(c->client, SHUT_RDWR);
		if (c->upstream >= 0)
			shutdown(c->upstream, SHUT_RDWR);
	}
}

static void connection_register(struct net_pool *pool, struct egress_connection *entry)
{
	pthread_mutex_lock(&pool->lock);
	entry->prev = NULL;
	entry->next = pool->connections;
	if (pool->connections)
		pool->connections->prev = entry;
	pool->connections = entry;
	pthread_mutex_unlock(&pool->lock);
}

static void connection_unregister(struct net_pool *pool, struct egress_connection *entry)
{
	pthread_mutex_lock(&pool->lock);
	if (entry->prev)
		entry->prev->next = entry->next;
	else
		pool->connections = entry->next;
	if (entry->next)
		entry->next->prev = entry->prev;
	pthread_mutex_unlock(&pool->lock);
}

/* Counts a new connection of slot against the per-slot and the global
 * cap; false (counted as a proxy refusal) when either is reached or the
 * source is no slot. */
static bool egress_admit(struct net_pool *pool, int slot)
{
	bool admitted = false;
	static _Atomic int64_t last_warning_ms;

	if (slot < 0)
		return false;
	pthread_mutex_lock(&pool->lock);
	if (pool->slots[slot].proxy_connections < pool->egress_slot_max &&
	    (unsigned)atomic_load(&pool->proxy_active) < pool->egress_max) {
		pool->slots[slot].proxy_connections++;
		admitted = true;
	} else if (pool->slots[slot].in_use) {
		pool->slots[slot].proxy.proxy_denied++;
		pool->slots[slot].proxy.limit_hits++;
	}
	pthread_mutex_unlock(&pool->lock);
	if (!admitted && (int64_t)clock__monotonic_ms() - atomic_load(&last_warning_ms) > 10000) {
		atomic_store(&last_warning_ms, (int64_t)clock__monotonic_ms());
		log_warn(
		    "egress: slot %d: connection cap reached (%u per slot, %u in all); refusing",
		    slot, pool->egress_slot_max, pool->egress_max);
	}
	return admitted;
}

static int egress_idle_ms(struct net_pool *pool)
{
	unsigned idle_s;

	pthread_mutex_lock(&pool->lock);
	idle_s = pool->egress_idle_s;
	pthread_mutex_unlock(&pool->lock);
	return idle_s > 2000000 ? 2000000000 : (int)idle_s * 1000;
}

void net_pool__set_egress_limits(struct net_pool *pool, unsigned max_connections,
				 unsigned slot_max_connections, unsigned idle_timeout_s)
{
	pthread_mutex_lock(&pool->lock);
	if (max_connections)
		pool->egress_max = max_connections;
	if (slot_max_connections)
		pool->egress_slot_max = slot_max_connections;
	if (idle_timeout_s)
		pool->egress_idle_s = idle_timeout_s;
	pthread_mutex_unlock(&pool->lock);
}

static void egress_release(struct net_pool *pool, int slot)
{
	pthread_mutex_lock(&pool->lock);
	pool->slots[slot].proxy_connections--;
	pthread_mutex_unlock(&pool->lock);
}

/* ---- event loops --------------------------------------------------------
 * EGRESS_LOOP_THREADS threads, each with its own epoll set holding both
 * listeners (level-triggered, EPOLLEXCLUSIVE: one loop wakes per new
 * connection) and the stop eventfd. A connection lives in the loop that
 * accepted it, as a state machine: HEAD (read until the Host / SNI parser
 * decides) -> RESOLVE (the proxy's own DNS query, non-blocking) -> DIAL
 * (non-blocking connect) -> RELAY (buffer copy both ways; HTTP through
 * the framer). Its two TCP sockets are registered once, edge-triggered
 * (epoll(7), "Level-triggered and edge-triggered"): an event records what
 * a socket can do now, and a call that comes back short or with EAGAIN
 * clears that, so the loop makes no call it knows will find nothing. The
 * DNS socket is level-triggered. Every state has a deadline, checked by a
 * scan of the loop's list every SCAN_MS. */
#define DOWN_BUFFER   (64 * 1024) /* upstream -> sandbox */
#define SCAN_MS	      200
#define SOCKET_EVENTS (EPOLLIN | EPOLLRDHUP | EPOLLET)
#define RELAY_PASSES  8		   /* per turn: a busy connection lets the others go */
#define SPLICE_PIPE   (256 * 1024) /* pipe size asked for a download's splice */
#define LINGER_MS     5000	   /* a refused connection drains the sandbox's bytes for ... */
#define LINGER_BYTES  (64u << 20)  /* ... at most this long and this many */

enum conn_state { CONN_HEAD, CONN_RESOLVE, CONN_DIAL, CONN_RELAY, CONN_LINGER };
enum { EP_CLIENT, EP_UPSTREAM, EP_DNS, EP_COUNT };

struct conn;
struct endpoint {
	struct conn *conn;
	int which;
};

/* What an edge-triggered TCP socket is known to allow now. */
struct readiness {
	bool readable, writable;
	bool peer_closed; /* its FIN came: once drained, it is at end of file */
};

struct egress_loop {
	struct net_pool *pool;
	int epoll_fd;
	pthread_t thread;
	struct conn *conns;
	struct conn *dead;  /* closed during this batch of events, freed after it */
	struct conn *queue; /* work left that no edge announces: relays at
			     * RELAY_PASSES, lingering refusals */
};

struct conn {
	struct net_pool *pool;
	struct egress_loop *loop;
	struct conn *prev, *next;	/* the loop's list */
	struct egress_connection entry; /* the pool's list (egress__cut_slot) */
	struct endpoint ep[EP_COUNT];
	uint32_t watched[EP_COUNT];	/* epoll events registered (0: none) */
	struct readiness ready[EP_DNS]; /* EP_CLIENT, EP_UPSTREAM */
	int dns_fd;
	enum conn_state state;
	bool tls, closed;
	bool queued; /* on the loop's queue (queue_next) */
	struct conn *queue_next;
	int slot, idle_ms, dns_tries;
	size_t linger_left; /* bytes a refused connection may still drop */
	uint64_t generation;
	int64_t deadline_ms;
	uint16_t dns_id;
	char host[NET_DOMAIN_MAX + 2];
	/* sandbox -> upstream: [0, up_ready) may go, [up_ready, up_used) is
	 * not framed yet (HTTP). */
	uint8_t up[HEAD_MAX];
	size_t up_used, up_ready;
	bool up_eof, up_stopped, up_done;
	uint8_t *down;
	size_t down_used;
	bool down_eof, down_done;
	/* A download (a read filled the down buffer) goes on by splice(2)
	 * through this pipe, once the buffer is empty: its pages move from
	 * one socket to the other without a copy. */
	int pipe_fds[2];
	size_t pipe_used, pipe_size;
	bool pipe_tried;
	struct framer framer;
};

static struct endpoint http_listener_mark, tls_listener_mark, stop_mark;

static int conn_fd(const struct conn *c, int which)
{
	return which == EP_CLIENT     ? c->entry.client
	       : which == EP_UPSTREAM ? c->entry.upstream
				      : c->dns_fd;
}

/* Sets the epoll events watched on one of c's descriptors. */
static void conn_watch(struct conn *c, int which, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = &c->ep[which]};
	int fd = conn_fd(c, which), op;

	if (fd < 0 || events == c->watched[which])
		return;
	op = !c->watched[which] ? EPOLL_CTL_ADD : !events ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
	if (epoll_ctl(c->loop->epoll_fd, op, fd, &ev) == 0)
		c->watched[which] = events;
}

/* Reads at most size bytes from a TCP socket of c that is known to be
 * readable. Returns the count (0: nothing now, or end of file, which sets
 * *eof), -1 on an error. A short read means the socket is drained: the
 * next data raises an edge, and after the peer's FIN none can come. */
static ssize_t conn_recv(struct conn *c, int which, uint8_t *buffer, size_t size, bool *eof)
{
	struct readiness *ready = &c->ready[which];
	ssize_t n;

	if (!ready->readable || size == 0)
		return 0;
	n = recv(conn_fd(c, which), buffer, size, 0);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			return -1;
		ready->readable = errno == EINTR;
		return 0;
	}
	if ((size_t)n < size) {
		ready->readable = false;
		*eof = n == 0 || ready->peer_closed;
	}
	return n;
}

/* A TCP socket of c found its send buffer full: EPOLLOUT is watched from
 * then on, and its edge says when there is room again. */
static void conn_wait_writable(struct conn *c, int which)
{
	c->ready[which].writable = false;
	conn_watch(c, which, SOCKET_EVENTS | EPOLLOUT);
}

/* Writes at most len bytes to a TCP socket of c that is known to be
 * writable. Returns the count, -1 on an error. A short write means the
 * send buffer is full. last: these are the direction's last bytes and a
 * shutdown, or a close of a socket with nothing left unread (else the
 * close resets and drops them), follows: they wait for it (MSG_MORE),
 * and the FIN goes out in their segment (send(2); a packet and a wakeup
 * of the peer less per connection). */
static ssize_t conn_send(struct conn *c, int which, const uint8_t *data, size_t len, bool last)
{
	ssize_t n;

	if (!c->ready[which].writable || len == 0)
		return 0;
	n = send(conn_fd(c, which), data, len, MSG_NOSIGNAL | MSG_DONTWAIT | (last ? MSG_MORE : 0));
	if (n < 0 && errno != EAGAIN && errno != EINTR)
		return -1;
	if (n < 0 || (size_t)n < len)
		conn_wait_writable(c, which);
	return n < 0 ? 0 : n;
}

/* Whether what the relay has for the sandbox now is the last of it, to go
 * with the FIN: the upstream is at end of file, and what follows is a
 * shutdown, or a close after the sandbox's own end of file. After a
 * refused request the sandbox's further bytes stay unread, and that
 * close resets instead. */
static bool conn_down_last(const struct conn *c)
{
	return c->down_eof && (c->up_eof || !c->up_stopped);
}

/* Drops the first n bytes of a buffer holding *used. */
static void buffer_consume(uint8_t *buffer, size_t *used, size_t n)
{
	memmove(buffer, buffer + n, *used - n);
	*used -= n;
}

static void conn_close(struct conn *c)
{
	struct net_pool *pool = c->pool;

	connection_unregister(pool, &c->entry);
	/* Deregistered before the close: a jail forked meanwhile may hold
	 * the descriptors until its exec, and epoll would keep them. */
	for (int i = 0; i < EP_COUNT; i++)
		conn_watch(c, i, 0);
	if (c->dns_fd >= 0)
		close(c->dns_fd);
	for (int i = 0; i < 2; i++)
		if (c->pipe_fds[i] >= 0)
			close(c->pipe_fds[i]);
	if (c->entry.upstream >= 0)
		close(c->entry.upstream);
	close(c->entry.client);
	if (c->prev)
		c->prev->next = c->next;
	else
		c->loop->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	egress_release(pool, c->slot);
	free(c->down);
	c->down = NULL;
	c->closed = true;
	c->next = c->loop->dead;
	c->loop->dead = c;
	atomic_fetch_sub(&pool->proxy_active, 1);
}

/* Puts c on its loop's queue: its turn comes again after the other
 * connections' events (for work left that no edge will announce). */
static void conn_queue(struct conn *c)
{
	if (c->queued)
		return;
	c->queued = true;
	c->queue_next = c->loop->queue;
	c->loop->queue = c;
}

/* LINGER: reads and drops what the sandbox still sends after its refusal,
 * a few reads a turn, until its end of file (then closes), or until
 * LINGER_BYTES went (then closes anyway; the deadline does the same
 * after LINGER_MS). */
static void conn_linger(struct conn *c)
{
	for (int pass = 0; pass < RELAY_PASSES; pass++) {
		bool eof = false;
		ssize_t n = conn_recv(c, EP_CLIENT, c->up, sizeof(c->up), &eof);

		if (n < 0 || eof || (size_t)n >= c->linger_left) {
			conn_close(c);
			return;
		}
		c->linger_left -= (size_t)n;
		if (n == 0)
			return; /* drained: the next bytes raise an edge */
	}
	conn_queue(c);
}

/* Closes what c holds towards the upstream (its DNS socket, its upstream
 * socket), keeping the sandbox's side. */
static void conn_drop_upstream(struct conn *c)
{
	int fd;

	if (c->dns_fd >= 0) {
		conn_watch(c, EP_DNS, 0);
		close(c->dns_fd);
		c->dns_fd = -1;
	}
	conn_watch(c, EP_UPSTREAM, 0);
	pthread_mutex_lock(&c->pool->lock);
	fd = c->entry.upstream; /* egress__cut_slot reads it under the lock */
	c->entry.upstream = -1;
	pthread_mutex_unlock(&c->pool->lock);
	if (fd >= 0)
		close(fd);
}

/* Refuses c. HTTP gets response (best effort: the socket buffer is empty
 * at this point), its FIN, and then lingers (conn_linger): a body still
 * on its way is read and dropped, so that the close does not reset the
 * connection under the answer. A reset would reach a client that sends
 * its whole body before it reads (Python's http.client, for one) as a
 * connection error instead of the 403. TLS is closed at once. */
static void conn_refuse(struct conn *c, const char *response, size_t len)
{
	if (!c->tls && response)
		send(c->entry.client, response, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (c->tls || !response || c->up_eof) { /* nothing more can come, or matter */
		conn_close(c);
		return;
	}
	shutdown(c->entry.client, SHUT_WR);
	conn_drop_upstream(c);
	c->state = CONN_LINGER;
	c->linger_left = LINGER_BYTES;
	c->deadline_ms = (int64_t)clock__monotonic_ms() + LINGER_MS;
	conn_linger(c);
}

static bool conn_pump(struct conn *c);

static void conn_start_relay(struct conn *c)
{
	bool current;

	pthread_mutex_lock(&c->pool->lock);
	current = c->pool->slots[c->slot].generation == c->generation;
	pthread_mutex_unlock(&c->pool->lock);
	c->down = current ? malloc(DOWN_BUFFER) : NULL;
	if (!c->down) { /* released meanwhile: the sandbox is gone */
		conn_close(c);
		return;
	}
	count(c->pool, c->slot, true);
	c->state = CONN_RELAY;
	c->deadline_ms = (int64_t)clock__monotonic_ms() + c->idle_ms;
	if (c->tls) {
		c->up_ready = c->up_used;
	} else {
		memcpy(c->framer.host, c->host, sizeof(c->framer.host));
		c->framer.host_len = strlen(c->host);
		c->framer.state = FRAME_HEAD;
	}
	conn_pump(c); /* the bytes read so far go first */
}

/* Dials the upstream; its socket is watched from the moment connect
 * returns (watched before, an unconnected socket reports a hang-up). */
static void conn_dial(struct conn *c, struct in_addr address)
{
	struct sockaddr_in to = {
	    .sin_family = AF_INET, .sin_port = htons(c->tls ? 443 : 80), .sin_addr = address};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), one = 1;

	if (fd < 0) {
		conn_refuse(c, bad_gateway_response, sizeof(bad_gateway_response) - 1);
		return;
	}
	/* On a connecting socket TCP_DEFER_ACCEPT holds the handshake's last
	 * ACK back (Linux, net/ipv4/tcp_input.c, tcp_rcv_synsent_state_process)
	 * so that it rides with the request, which is here already and goes
	 * as soon as the connect completes (bench_network: the proxy sends 3
	 * packets per upstream connection instead of 5). */
	setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &one, sizeof(one));
	pthread_mutex_lock(&c->pool->lock);
	c->entry.upstream = fd; /* egress__cut_slot may shut it down from now on */
	pthread_mutex_unlock(&c->pool->lock);
	c->state = CONN_DIAL;
	c->deadline_ms = (int64_t)clock__monotonic_ms() + DIAL_TIMEOUT_MS;
	if (connect(fd, (struct sockaddr *)&to, sizeof(to)) == 0) {
		c->ready[EP_UPSTREAM].writable = true;
		conn_watch(c, EP_UPSTREAM, SOCKET_EVENTS | EPOLLOUT);
		conn_start_relay(c);
	} else if (errno == EINPROGRESS) {
		conn_watch(c, EP_UPSTREAM, SOCKET_EVENTS | EPOLLOUT); /* its edge: connected */
	} else {
		conn_refuse(c, bad_gateway_response, sizeof(bad_gateway_response) - 1);
	}
}

static void conn_dns_send(struct conn *c)
{
	uint8_t query[512];
	int len;

	ids__random_bytes(&c->dns_id, sizeof(c->dns_id));
	len = net_parse__dns_query(query, sizeof(query), c->dns_id, c->host);
	c->dns_tries++;
	c->deadline_ms = (int64_t)clock__monotonic_ms() + DNS_TIMEOUT_MS;
	if (len > 0)
		send(c->dns_fd, query, (size_t)len, MSG_DONTWAIT);
}

static void conn_resolve(struct conn *c)
{
	struct sockaddr_in to = {.sin_family = AF_INET,
				 .sin_port = htons(c->pool->resolver_port),
				 .sin_addr = c->pool->resolver};
	struct in_addr cached;

	if (dns_cache_get(c->pool, c->host, &cached)) {
		conn_dial(c, cached);
		return;
	}
	c->dns_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->dns_fd < 0 || connect(c->dns_fd, (struct sockaddr *)&to, sizeof(to)) != 0) {
		conn_refuse(c, bad_gateway_response, sizeof(bad_gateway_response) - 1);
		return;
	}
	c->state = CONN_RESOLVE;
	conn_dns_send(c);
	conn_watch(c, EP_DNS, EPOLLIN);
}

/* Reads answers until one to our query arrives (stray or forged ones are
 * skipped); dials its first public address, or refuses. */
static void conn_on_dns(struct conn *c)
{
	uint8_t answer[1500];
	struct in_addr answers[16];
	uint32_t ttl = 0;
	ssize_t n;
	int found = -1;

	while (found < 0 && (n = recv(c->dns_fd, answer, sizeof(answer), 0)) > 0)
		found = net_parse__dns_answer(answer, (size_t)n, c->dns_id, answers, 16, &ttl);
	if (found < 0)
		return; /* nothing of ours yet */
	conn_watch(c, EP_DNS, 0);
	close(c->dns_fd);
	c->dns_fd = -1;
	for (int i = 0; i < found; i++) {
		if (!net_policy__is_internal_v4(answers[i]) &&
		    !net_policy__never_allowed(c->pool->never, c->pool->never_count, AF_INET,
					       &answers[i])) {
			dns_cache_put(c->pool, c->host, answers[i], ttl);
			conn_dial(c, answers[i]);
			return;
		}
	}
	log_info("egress: slot %d: %s resolves to no public address; refused", c->slot, c->host);
	count(c->pool, c->slot, false);
	conn_refuse(c, forbidden_response, sizeof(forbidden_response) - 1);
}

/* HEAD: reads until the parser decides, then matches the policy. */
static void conn_on_head(struct conn *c)
{
	enum net_parse_result result;
	const char *name = NULL;
	char sni[NET_SNI_MAX + 1];
	size_t name_len = 0;
	bool allowed = false;
	ssize_t n = conn_recv(c, EP_CLIENT, c->up + c->up_used, HEAD_MAX - c->up_used, &c->up_eof);

	if (n < 0 || (n == 0 && c->up_eof)) {
		conn_close(c);
		return;
	}
	if (n == 0)
		return;
	c->up_used += (size_t)n;
	if (c->tls) {
		result = net_parse__tls_sni(c->up, c->up_used, sni, &name_len);
		name = sni;
	} else {
		result = net_parse__http_host(c->up, c->up_used, &name, &name_len);
	}
	if (result == NET_PARSE_NEED_MORE && c->up_used < HEAD_MAX) {
		if (c->up_eof) /* the sandbox ended its head unfinished */
			conn_close(c);
		return;
	}
	if (result == NET_PARSE_OK) {
		pthread_mutex_lock(&c->pool->lock);
		allowed =
		    c->pool->slots[c->slot].in_use &&
		    c->pool->slots[c->slot].generation == c->generation &&
		    net_policy__has_domains(c->pool->slots[c->slot].policy) &&
		    net_policy__domain_allowed(c->pool->slots[c->slot].policy, name, name_len);
		pthread_mutex_unlock(&c->pool->lock);
	}
	if (!allowed) {
		count(c->pool, c->slot, false);
		conn_refuse(c, forbidden_response, sizeof(forbidden_response) - 1);
		return;
	}
	if (name_len > 0 && name[name_len - 1] == '.')
		name_len--;
	for (size_t i = 0; i < name_len; i++)
		c->host[i] =
		    (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] - 'A' + 'a' : name[i]);
	c->host[name_len] = 0;
	conn_resolve(c);
}

/* Opens the pipe that a download goes on through (tried once; without
 * it, the copy goes on). */
static void conn_open_pipe(struct conn *c)
{
	int size;

	c->pipe_tried = true;
	if (pipe2(c->pipe_fds, O_NONBLOCK | O_CLOEXEC) != 0) {
		c->pipe_fds[0] = c->pipe_fds[1] = -1;
		return;
	}
	size = fcntl(c->pipe_fds[1], F_SETPIPE_SZ, SPLICE_PIPE);
	if (size <= 0)
		size = fcntl(c->pipe_fds[1], F_GETPIPE_SZ);
	c->pipe_size = size > 0 ? (size_t)size : 4096;
}

/* upstream -> pipe -> sandbox by splice(2). Returns -1 on an error, else
 * whether anything moved. A splice from the socket that finds nothing
 * (EAGAIN) is the drained socket only while the pipe is empty (it is also
 * the answer of a full pipe); a short splice into the client is retried
 * once, and its EAGAIN, not the short count, waits for EPOLLOUT. */
static int conn_splice_down(struct conn *c)
{
	bool moved = false;
	ssize_t n;

	if (!c->down_eof && c->ready[EP_UPSTREAM].readable && c->pipe_used < c->pipe_size) {
		n = splice(c->entry.upstream, NULL, c->pipe_fds[1], NULL,
			   c->pipe_size - c->pipe_used, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n > 0) {
			c->pipe_used += (size_t)n;
			moved = true;
		} else if (n == 0) {
			c->down_eof = true;
			c->ready[EP_UPSTREAM].readable = false;
		} else if (errno == EAGAIN) {
			if (c->pipe_used == 0)
				c->ready[EP_UPSTREAM].readable = false;
		} else if (errno != EINTR) {
			return -1;
		}
	}
	if (c->pipe_used > 0 && c->ready[EP_CLIENT].writable) {
		n = splice(c->pipe_fds[0], NULL, c->entry.client, NULL, c->pipe_used,
			   SPLICE_F_MOVE | SPLICE_F_NONBLOCK |
			       (conn_down_last(c) ? SPLICE_F_MORE : 0));
		if (n > 0) {
			c->pipe_used -= (size_t)n;
			moved = true;
		} else if (n < 0 && errno == EAGAIN) {
			conn_wait_writable(c, EP_CLIENT);
		} else if (n < 0 && errno != EINTR) {
			return -1;
		}
	}
	return moved;
}

/* Moves the bytes of one pass of the relay: sandbox -> buffer -> framer
 * -> upstream, upstream -> buffer -> sandbox. Returns -1 on a socket
 * error, else whether anything moved. */
static int conn_relay_once(struct conn *c)
{
	bool moved = false;
	ssize_t n;

	/* sandbox -> proxy */
	if (!c->up_eof && !c->up_stopped) {
		n = conn_recv(c, EP_CLIENT, c->up + c->up_used, HEAD_MAX - c->up_used, &c->up_eof);
		if (n < 0)
			return -1;
		c->up_used += (size_t)n;
		moved |= n > 0;
	}
	if (c->tls) {
		c->up_ready = c->up_used;
	} else if (!c->up_stopped && c->up_ready < c->up_used) {
		c->up_ready +=
		    framer__feed(&c->framer, c->up + c->up_ready, c->up_used - c->up_ready,
				 c->up_used == HEAD_MAX && c->up_ready == 0);
		if (c->framer.state == FRAME_STOPPED) {
			c->up_stopped = true;
			c->up_used = c->up_ready; /* the refused bytes never go */
			if (c->framer.refused)
				count(c->pool, c->slot, false);
		}
	}
	/* proxy -> upstream */
	n = conn_send(c, EP_UPSTREAM, c->up, c->up_ready, c->up_eof || c->up_stopped);
	if (n < 0)
		return -1;
	if (n > 0) {
		buffer_consume(c->up, &c->up_used, (size_t)n);
		c->up_ready -= (size_t)n;
		moved = true;
	}
	if (c->pipe_fds[0] >= 0 && c->down_used == 0) {
		int spliced = conn_splice_down(c);

		return spliced < 0 ? -1 : moved || spliced > 0;
	}
	/* upstream -> proxy */
	if (!c->down_eof) {
		n = conn_recv(c, EP_UPSTREAM, c->down + c->down_used, DOWN_BUFFER - c->down_used,
			      &c->down_eof);
		if (n < 0)
			return -1;
		c->down_used += (size_t)n;
		moved |= n > 0;
		if (c->down_used == DOWN_BUFFER && !c->pipe_tried)
			conn_open_pipe(c);
	}
	/* proxy -> sandbox */
	n = conn_send(c, EP_CLIENT, c->down, c->down_used, conn_down_last(c));
	if (n < 0)
		return -1;
	if (n > 0) {
		buffer_consume(c->down, &c->down_used, (size_t)n);
		moved = true;
	}
	return moved;
}

/* RELAY: moves what it can both ways until nothing more moves, then
 * passes each finished direction's end of file on. Returns false when c
 * was closed. */
static bool conn_pump(struct conn *c)
{
	bool moved = false, up_finished, down_finished;
	int rc = 0, passes = 0;

	while (passes < RELAY_PASSES && (rc = conn_relay_once(c)) > 0) {
		moved = true;
		passes++;
	}
	if (rc < 0)
		goto close;
	if (passes == RELAY_PASSES)
		conn_queue(c); /* more may be there, and no edge will say so */
	up_finished = c->up_ready == 0 && (c->up_eof || c->up_stopped);
	down_finished = c->down_eof && c->down_used == 0 && c->pipe_used == 0;
	if (up_finished && down_finished)
		goto close; /* both ways done: the closes send the last FINs */
	if (up_finished && !c->up_done) {
		shutdown(c->entry.upstream, SHUT_WR);
		c->up_done = true;
	}
	if (down_finished && !c->down_done) {
		shutdown(c->entry.client, SHUT_WR);
		c->down_done = true;
	}
	if (moved)
		c->deadline_ms = (int64_t)clock__monotonic_ms() + c->idle_ms;
	return true;
close:
	conn_close(c);
	return false;
}

/* One epoll event of c's descriptor which: records what the socket can
 * do, then advances c's state machine. */
static void conn_event(struct conn *c, int which, uint32_t events)
{
	if (c->closed)
		return; /* closed by an earlier event of the same batch */
	if (which != EP_DNS) {
		struct readiness *ready = &c->ready[which];

		ready->readable |= (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) != 0;
		ready->writable |= (events & EPOLLOUT) != 0;
		ready->peer_closed |= (events & EPOLLRDHUP) != 0;
	}
	if (events & EPOLLERR) {
		if (c->state == CONN_DIAL && which == EP_UPSTREAM)
			conn_refuse(c, bad_gateway_response, sizeof(bad_gateway_response) - 1);
		else
			conn_close(c);
		return;
	}
	/* A sandbox that hung up entirely can take nothing more. */
	if ((events & EPOLLHUP) && which == EP_CLIENT && c->state != CONN_HEAD) {
		conn_close(c);
		return;
	}
	switch (c->state) {
	case CONN_HEAD:
		if (which == EP_CLIENT)
			conn_on_head(c);
		return;
	case CONN_RESOLVE:
		if (which == EP_DNS)
			conn_on_dns(c);
		return;
	case CONN_DIAL:
		/* Without an error, writable means connected. */
		if (which == EP_UPSTREAM && (events & EPOLLHUP))
			conn_refuse(c, bad_gateway_response, sizeof(bad_gateway_response) - 1);
		else if (which == EP_UPSTREAM && c->ready[EP_UPSTREAM].writable)
			conn_start_relay(c);
		return;
	case CONN_RELAY:
		conn_pump(c);
		return;
	case CONN_LINGER:
		if (which == EP_CLIENT)
			conn_linger(c);
		return;
	}
}

/* Takes one connection from listen_fd (level-triggered: a loop that
 * leaves more queued is woken again) and reads its head if it came with
 * the handshake, as it usually does. */
static void loop_accept(struct egress_loop *loop, int listen_fd, bool tls)
{
	struct net_pool *pool = loop->pool;
	struct sockaddr_in peer;
	socklen_t len = sizeof(peer);
	int fd = accept4(listen_fd, (struct sockaddr *)&peer, &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
	int slot, idle_ms;
	struct conn *c;

	if (fd < 0)
		return; /* EAGAIN: another loop took it */
	slot = slot_of(pool, peer.sin_addr);
	/* Caps: per slot, below a global one. Past either, a new connection
	 * is closed at once, so no sandbox can hold the proxy for the
	 * others. */
	if (!egress_admit(pool, slot)) {
		close(fd);
		return;
	}
	c = malloc(sizeof(*c)); /* the assignment below clears it */
	if (!c) {
		egress_release(pool, slot);
		close(fd);
		return;
	}
	idle_ms = egress_idle_ms(pool);
	atomic_fetch_add(&pool->proxy_active, 1);
	*c = (struct conn){.pool = pool,
			   .loop = loop,
			   .dns_fd = -1,
			   .pipe_fds = {-1, -1},
			   .tls = tls,
			   .slot = slot,
			   .idle_ms = idle_ms,
			   .state = CONN_HEAD,
			   .entry = {.client = fd, .upstream = -1, .slot = slot},
			   .ready[EP_CLIENT] = {.readable = true, .writable = true},
			   .deadline_ms = (int64_t)clock__monotonic_ms() +
					  (idle_ms < HEAD_TIMEOUT_MS ? idle_ms : HEAD_TIMEOUT_MS)};
	for (int e = 0; e < EP_COUNT; e++)
		c->ep[e] = (struct endpoint){.conn = c, .which = e};
	pthread_mutex_lock(&pool->lock);
	c->generation = pool->slots[slot].generation;
	pthread_mutex_unlock(&pool->lock);
	connection_register(pool, &c->entry);
	c->next = loop->conns;
	if (loop->conns)
		loop->conns->prev = c;
	loop->conns = c;
	conn_on_head(c);
	/* Registered after the first read (unless a relay that started at
	 * once did it): adding an edge-triggered socket reports whatever it
	 * has pending now, so nothing is missed. */
	if (!c->closed && !c->watched[EP_CLIENT])
		conn_watch(c, EP_CLIENT, SOCKET_EVENTS);
}

/* Closes what is past its deadline (a DNS query gets a second try). */
static void loop_scan(struct egress_loop *loop)
{
	int64_t now = (int64_t)clock__monotonic_ms();

	for (struct conn *c = loop->conns, *next; c; c = next) {
		next = c->next;
		if (now < c->deadline_ms)
			continue;
		if (c->state == CONN_RESOLVE && c->dns_tries < 2) {
			conn_dns_send(c);
		} else if (c->state == CONN_RESOLVE) {
			log_info("egress: slot %d: %s: no DNS answer; refused", c->slot, c->host);
			count(c->pool, c->slot, false);
			conn_refuse(c, forbidden_response, sizeof(forbidden_response) - 1);
		} else if (c->state == CONN_DIAL) {
			conn_refuse(c, bad_gateway_response, sizeof(bad_gateway_response) - 1);
		} else {
			conn_close(c); /* head too slow, or idle */
		}
	}
}

/* Gives each queued relay its next turn (one that is still busy
 * queues itself again, behind this batch). */
static void loop_run_queue(struct egress_loop *loop)
{
	struct conn *queue = loop->queue;

	loop->queue = NULL;
	while (queue) {
		struct conn *c = queue;

		queue = c->queue_next;
		c->queued = false;
		if (!c->closed && c->state == CONN_LINGER)
			conn_linger(c);
		else if (!c->closed)
			conn_pump(c);
	}
}

/* Frees the connections closed since the last call. */
static void loop_bury(struct egress_loop *loop)
{
	while (loop->dead) {
		struct conn *c = loop->dead;

		loop->dead = c->next;
		free(c);
	}
}

static void *loop_thread(void *arg)
{
	struct egress_loop *loop = arg;
	struct net_pool *pool = loop->pool;
	struct epoll_event events[64];
	int64_t last_scan = (int64_t)clock__monotonic_ms();
	sigset_t pipe_signal;

	/* Every send has MSG_NOSIGNAL; SIGPIPE stays blocked all the same. */
	sigemptyset(&pipe_signal);
	sigaddset(&pipe_signal, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_signal, NULL);
	/* Dialing and resolving happen from the host namespace. */
	if (setns(pool->host_fd, CLONE_NEWNET) != 0)
		log_error("egress: cannot enter the host namespace: %s", strerror(errno));
	for (;;) {
		int n = epoll_wait(loop->epoll_fd, events, 64, loop->queue ? 0 : SCAN_MS);
		bool stop = false;

		if (n < 0 && errno != EINTR)
			break;
		for (int i = 0; i < n; i++) {
			struct endpoint *ep = events[i].data.ptr;

			if (ep == &stop_mark)
				stop = true;
			else if (ep == &http_listener_mark)
				loop_accept(loop, pool->proxy_http_fd, false);
			else if (ep == &tls_listener_mark)
				loop_accept(loop, pool->proxy_tls_fd, true);
		}
		if (stop)
			break;
		for (int i = 0; i < n; i++) {
			struct endpoint *ep = events[i].data.ptr;

			if (ep != &stop_mark && ep != &http_listener_mark &&
			    ep != &tls_listener_mark)
				conn_event(ep->conn, ep->which, events[i].events);
		}
		if ((int64_t)clock__monotonic_ms() - last_scan >= SCAN_MS) {
			loop_scan(loop);
			last_scan = (int64_t)clock__monotonic_ms();
		}
		/* After the scan and before the burial: a queued connection
		 * closed by either is skipped here, never freed while queued. */
		loop_run_queue(loop);
		loop_bury(loop);
	}
	while (loop->conns)
		conn_close(loop->conns);
	loop_bury(loop);
	return NULL;
}

static int listen_on(uint16_t port)
{
	struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port)};
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&address, sizeof(address)) != 0 || listen(fd, 1024) != 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

static int open_listeners(void *arg)
{
	struct net_pool *pool = arg;

	pool->proxy_http_fd = listen_on(pool->proxy_http_port);
	pool->proxy_tls_fd = listen_on(pool->proxy_tls_port);
	return pool->proxy_http_fd < 0 || pool->proxy_tls_fd < 0 ? -1 : 0;
}

int egress__start(struct net_pool *pool)
{
	char name[16];

	pthread_mutex_init(&pool->dns_lock, NULL);
	pool->dns_cache = calloc(DNS_CACHE_SIZE, sizeof(*pool->dns_cache));
	pool->proxy_loops = calloc(EGRESS_LOOP_THREADS, sizeof(*pool->proxy_loops));
	if (!pool->dns_cache || !pool->proxy_loops)
		goto err;
	pool->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (pool->stop_fd < 0)
		goto err;
	if (netns__run(pool->host_fd, open_listeners, pool) != 0) {
		log_error("egress: cannot listen on ports %u/%u: %s / %s", pool->proxy_http_port,
			  pool->proxy_tls_port,
			  pool->proxy_http_fd < 0 ? strerror(-pool->proxy_http_fd) : "ok",
			  pool->proxy_tls_fd < 0 ? strerror(-pool->proxy_tls_fd) : "ok");
		goto err;
	}
	/* One loop per thread; each holds both listeners (EPOLLEXCLUSIVE
	 * wakes one loop per new connection; the loser of a race sees
	 * EAGAIN) and the stop eventfd. */
	for (int i = 0; i < EGRESS_LOOP_THREADS; i++) {
		struct egress_loop *loop = &pool->proxy_loops[i];
		struct epoll_event http = {.events = EPOLLIN | EPOLLEXCLUSIVE,
					   .data.ptr = &http_listener_mark};
		struct epoll_event tls = {.events = EPOLLIN | EPOLLEXCLUSIVE,
					  .data.ptr = &tls_listener_mark};
		struct epoll_event stop = {.events = EPOLLIN, .data.ptr = &stop_mark};

		loop->pool = pool;
		loop->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
		if (loop->epoll_fd < 0 ||
		    epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, pool->proxy_http_fd, &http) != 0 ||
		    epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, pool->proxy_tls_fd, &tls) != 0 ||
		    epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, pool->stop_fd, &stop) != 0 ||
		    pthread_create(&loop->thread, NULL, loop_thread, loop) != 0) {
			if (loop->epoll_fd >= 0)
				close(loop->epoll_fd);
			goto err;
		}
		pool->proxy_thread_count++;
		snprintf(name, sizeof(name), "egress-%d", i);
		pthread_setname_np(loop->thread, name); /* as ps and perf show it */
	}
	return 0;
err:
	egress__stop(pool);
	return -1;
}

bool egress__stop(struct net_pool *pool)
{
	uint64_t one = 1;
	bool stopped;

	if (pool->stop_fd >= 0 && write(pool->stop_fd, &one, sizeof(one)) < 0)
		log_warn("egress: stop signal failed: %s", strerror(errno));
	/* Each loop closes its connections before it returns. */
	for (int i = 0; i < pool->proxy_thread_count; i++) {
		pthread_join(pool->proxy_loops[i].thread, NULL);
		close(pool->proxy_loops[i].epoll_fd);
	}
	pool->proxy_thread_count = 0;
	stopped = atomic_load(&pool->proxy_active) == 0;
	if (!stopped)
		log_error("egress: %d connections did not stop", atomic_load(&pool->proxy_active));
	if (pool->proxy_http_fd >= 0)
		close(pool->proxy_http_fd);
	if (pool->proxy_tls_fd >= 0)
		close(pool->proxy_tls_fd);
	if (pool->stop_fd >= 0)
		close(pool->stop_fd);
	pool->proxy_http_fd = pool->proxy_tls_fd = pool->stop_fd = -1;
	free(pool->proxy_loops);
	pool->proxy_loops = NULL;
	if (stopped && pool->dns_cache) {
		free(pool->dns_cache);
		pool->dns_cache = NULL;
		pthread_mutex_destroy(&pool->dns_lock);
	}
	return stopped;
}

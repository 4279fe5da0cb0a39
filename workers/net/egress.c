/* egress: the domain-filtering egress proxy (ARCHITECTURE.md "Sandbox
 * network"; design in docs/network.md "Egress proxy").
 *
 * A thread of the worker, in the host namespace. A slot whose policy has
 * domain entries DNATs its TCP 80 to <host side of its veth>:http_port and
 * 443 to :tls_port. The source address of an accepted connection is the
 * slot address (jail: the process's own; vm: SNAT'ed), which names the slot
 * and so its policy. The proxy reads the HTTP Host header or the TLS SNI
 * without terminating TLS, matches it, resolves the name itself with the
 * configured resolver, refuses internal answers, dials the resolved
 * address (never the one the sandbox asked for) and splices both ways. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net_internal.h"
#include "warren/ids.h"
#include "warren/log.h"

#define HEAD_MAX (32 * 1024) /* a (fragmented) ClientHello, or an HTTP request head */
#define HEAD_TIMEOUT_MS 10000
#define DIAL_TIMEOUT_MS 5000
#define DNS_TIMEOUT_MS 2000
#define SPLICE_CHUNK (64 * 1024)

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

struct connection {
	struct net_pool *pool;
	int fd;
	bool tls;
	struct sockaddr_in peer;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		p += n;
		len -= (size_t)n;
	}
}

/* Waits for fd to be ready for events; false on timeout or stop. */
static bool wait_ready(struct net_pool *pool, int fd, short events, int timeout_ms)
{
	struct pollfd fds[2] = { { .fd = fd, .events = events }, { .fd = pool->stop_fd, .events = POLLIN } };
	int n;

	do
		n = poll(fds, 2, timeout_ms);
	while (n < 0 && errno == EINTR);
	return n > 0 && !fds[1].revents && fds[0].revents;
}

int egress__resolve(struct in_addr server, uint16_t port, const char *name, struct in_addr *out, int max,
		    uint32_t *min_ttl)
{
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr = server };
	uint8_t query[512], answer[1500];
	int fd, query_len, count = -1;

	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&to, sizeof(to)) != 0)
		goto out;
	for (int attempt = 0; attempt < 2 && count < 0; attempt++) {
		uint16_t id;
		int64_t deadline = now_ms() + DNS_TIMEOUT_MS;

		ids__random_bytes(&id, sizeof(id));
		query_len = net_parse__dns_query(query, sizeof(query), id, name);
		if (query_len < 0)
			goto out;
		if (send(fd, query, (size_t)query_len, 0) != query_len)
			continue;
		/* Stray or forged datagrams are skipped until the deadline. */
		while (count < 0) {
			struct pollfd p = { .fd = fd, .events = POLLIN };
			int64_t left = deadline - now_ms();
			ssize_t n;

			if (left <= 0 || poll(&p, 1, (int)left) <= 0)
				break;
			n = recv(fd, answer, sizeof(answer), 0);
			if (n <= 0)
				continue;
			count = net_parse__dns_answer(answer, (size_t)n, id, out, max, min_ttl);
		}
	}
out:
	close(fd);
	return count;
}

/* A small cache of the proxy's own resolutions: name (lower case) -> the
 * public address it dials, for min(TTL, 60 s); TTL 0 is never cached. */
#define DNS_CACHE_SIZE 256
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
	if (entry->expires_ms > now_ms() && strcmp(entry->name, name) == 0) {
		*address = entry->address;
		hit = true;
	}
	pthread_mutex_unlock(&pool->dns_lock);
	return hit;
}

static void dns_cache_put(struct net_pool *pool, const char *name, struct in_addr address, uint32_t ttl_s)
{
	struct egress_dns_entry *entry;
	int64_t ttl_ms = (int64_t)ttl_s * 1000;

	if (!pool->dns_cache || ttl_s == 0 || strlen(name) > NET_DOMAIN_MAX)
		return;
	pthread_mutex_lock(&pool->dns_lock);
	entry = &pool->dns_cache[dns_slot(name)];
	snprintf(entry->name, sizeof(entry->name), "%s", name);
	entry->address = address;
	entry->expires_ms = now_ms() + (ttl_ms < DNS_CACHE_MAX_TTL_MS ? ttl_ms : DNS_CACHE_MAX_TTL_MS);
	pthread_mutex_unlock(&pool->dns_lock);
}

/* Non-blocking connect with a deadline; the socket is blocking again on
 * return. -1 on failure. */
static int dial(struct net_pool *pool, struct in_addr address, uint16_t port)
{
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr = address };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int error = 0;
	socklen_t len = sizeof(error);

	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&to, sizeof(to)) != 0) {
		if (errno != EINPROGRESS || !wait_ready(pool, fd, POLLOUT, DIAL_TIMEOUT_MS) ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0 || error != 0) {
			close(fd);
			return -1;
		}
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}

/* One direction of a relay: socket -> pipe -> socket with splice(2). */
struct half {
	int from, to;
	int pipe[2];
	size_t in_pipe;
	bool eof;
};

/* Moves what is ready; false when this direction is finished or broken. */
static bool half_pump(struct half *h)
{
	if (!h->eof) {
		ssize_t n = splice(h->from, NULL, h->pipe[1], NULL, SPLICE_CHUNK,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

		if (n > 0)
			h->in_pipe += (size_t)n;
		else if (n == 0)
			h->eof = true;
		else if (errno != EAGAIN && errno != EINTR)
			return false;
	}
	while (h->in_pipe > 0) {
		ssize_t n = splice(h->pipe[0], NULL, h->to, NULL, h->in_pipe, SPLICE_F_MOVE);

		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			return false;
		}
		h->in_pipe -= (size_t)n;
	}
	if (h->eof) {
		shutdown(h->to, SHUT_WR);
		return false;
	}
	return true;
}

/* The client -> upstream direction of a proxied HTTP connection, framed
 * request by request so that every request on a keep-alive connection is
 * checked: each head must name the host the connection was allowed for
 * (the first request's); bodies are skipped by Content-Length or chunk
 * sizes. Anything else stops the direction: nothing more reaches the
 * upstream, which finishes its answers and closes. */
enum framer_state { FRAME_HEAD, FRAME_BODY, FRAME_CHUNK_LINE, FRAME_CHUNK_DATA, FRAME_CHUNK_END,
		    FRAME_TRAILER, FRAME_STOPPED };

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
				log_info("egress: request %u on a connection for %s refused (%s)", f->requests + 1,
					 f->host, rc == NET_PARSE_OK ? "another host" : "malformed");
				f->state = FRAME_STOPPED;
				f->refused = true;
				goto out;
			}
			f->requests++;
			step = request.head_len;
			f->remaining = request.content_length;
			f->state = request.last ? FRAME_STOPPED
				   : request.chunked ? FRAME_CHUNK_LINE
				   : request.content_length ? FRAME_BODY : FRAME_HEAD;
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

/* Relays client <-> upstream until both directions end, an error, the
 * proxy stops or idle_ms pass without a byte either way. With a framer
 * (HTTP), client bytes go through it (buf holds the used bytes already
 * read, HEAD_MAX in all); without one (TLS) both ways are spliced. */
static void relay(struct net_pool *pool, int client, int upstream, struct framer *framer, uint8_t *buf,
		  size_t used, int idle_ms)
{
	struct half up = { .from = client, .to = upstream, .pipe = { -1, -1 } };
	struct half down = { .from = upstream, .to = client, .pipe = { -1, -1 } };
	bool up_open = true, down_open = true;
	int64_t last = now_ms();

	if ((!framer && pipe2(up.pipe, O_CLOEXEC) != 0) || pipe2(down.pipe, O_CLOEXEC) != 0)
		goto out;
	if (framer) {
		size_t go = framer__feed(framer, buf, used, used == HEAD_MAX);

		write_all(upstream, buf, go);
		memmove(buf, buf + go, used - go);
		used -= go;
		if (framer->state == FRAME_STOPPED) {
			up_open = false;
			shutdown(upstream, SHUT_WR);
		}
	}
	while (up_open || down_open) {
		struct pollfd fds[3] = {
			{ .fd = up_open ? client : -1, .events = POLLIN },
			{ .fd = down_open ? upstream : -1, .events = POLLIN },
			{ .fd = pool->stop_fd, .events = POLLIN },
		};
		int64_t left = last + idle_ms - now_ms();
		int n = left > 0 ? poll(fds, 3, (int)left) : 0;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || fds[2].revents)
			break; /* error, idle for too long, or stopping */
		last = now_ms();
		if (fds[0].revents && framer) {
			ssize_t got = recv(client, buf + used, HEAD_MAX - used, 0);
			size_t go;

			if (got < 0 && errno == EINTR)
				continue;
			if (got <= 0) {
				if (got < 0)
					break;
				shutdown(upstream, SHUT_WR);
				up_open = false;
			} else {
				used += (size_t)got;
				go = framer__feed(framer, buf, used, used == HEAD_MAX);
				write_all(upstream, buf, go);
				memmove(buf, buf + go, used - go);
				used -= go;
				if (framer->state == FRAME_STOPPED) {
					shutdown(upstream, SHUT_WR);
					up_open = false;
				}
			}
		} else if (fds[0].revents && !half_pump(&up)) {
			if (!up.eof)
				break; /* error: tear both down */
			up_open = false;
		}
		if (fds[1].revents && !half_pump(&down)) {
			if (!down.eof)
				break;
			down_open = false;
		}
	}
out:
	for (int i = 0; i < 2; i++) {
		if (up.pipe[i] >= 0)
			close(up.pipe[i]);
		if (down.pipe[i] >= 0)
			close(down.pipe[i]);
	}
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
	if (!admitted && now_ms() - atomic_load(&last_warning_ms) > 10000) {
		atomic_store(&last_warning_ms, now_ms());
		log_warn("egress: slot %d: connection cap reached (%u per slot, %u in all); refusing", slot,
			 pool->egress_slot_max, pool->egress_max);
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

static void *connection_thread(void *arg)
{
	struct connection *c = arg;
	struct net_pool *pool = c->pool;
	uint8_t *head = malloc(HEAD_MAX);
	size_t used = 0;
	enum net_parse_result result = NET_PARSE_NEED_MORE;
	const char *name = NULL;
	size_t name_len = 0;
	char host[NET_DOMAIN_MAX + 2], sni[NET_SNI_MAX + 1];
	struct in_addr answers[16], target = { 0 };
	int slot = slot_of(pool, c->peer.sin_addr), upstream = -1, found;
	int idle_ms = egress_idle_ms(pool);
	int64_t deadline = now_ms() + (idle_ms < HEAD_TIMEOUT_MS ? idle_ms : HEAD_TIMEOUT_MS);
	struct framer framer = { .state = FRAME_HEAD };
	bool allowed = false, registered = false;
	struct egress_connection entry = { .client = c->fd, .upstream = -1, .slot = slot };
	uint64_t generation = 0;

	if (!head || slot < 0)
		goto out;
	pthread_mutex_lock(&pool->lock);
	generation = pool->slots[slot].generation;
	pthread_mutex_unlock(&pool->lock);
	connection_register(pool, &entry);
	registered = true;
	/* Read until the parser can decide (hostile input: bounded). */
	while (result == NET_PARSE_NEED_MORE && used < HEAD_MAX) {
		int64_t left = deadline - now_ms();
		ssize_t n;

		if (left <= 0 || !wait_ready(pool, c->fd, POLLIN, (int)left))
			goto out;
		n = recv(c->fd, head + used, HEAD_MAX - used, 0);
		if (n <= 0)
			goto out;
		used += (size_t)n;
		if (c->tls) {
			result = net_parse__tls_sni(head, used, sni, &name_len);
			name = sni;
		} else {
			result = net_parse__http_host(head, used, &name, &name_len);
		}
	}
	if (result == NET_PARSE_OK) {
		pthread_mutex_lock(&pool->lock);
		allowed = pool->slots[slot].in_use && net_policy__has_domains(pool->slots[slot].policy) &&
			  net_policy__domain_allowed(pool->slots[slot].policy, name, name_len);
		pthread_mutex_unlock(&pool->lock);
	}
	if (allowed) {
		if (name_len > 0 && name[name_len - 1] == '.')
			name_len--;
		for (size_t i = 0; i < name_len; i++)
			host[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] - 'A' + 'a' : name[i]);
		host[name_len] = 0;
		allowed = dns_cache_get(pool, host, &target);
		if (!allowed) {
			uint32_t ttl = 0;

			found = egress__resolve(pool->resolver, pool->resolver_port, host, answers, 16, &ttl);
			for (int i = 0; i < found; i++) {
				if (!net_policy__is_internal_v4(answers[i]) &&
				    !net_policy__never_allowed(pool->never, pool->never_count, AF_INET, &answers[i])) {
					target = answers[i];
					allowed = true;
					dns_cache_put(pool, host, target, ttl);
					break;
				}
			}
		}
		if (!allowed)
			log_info("egress: slot %d: %s resolves to no public address; refused", slot, host);
	}
	count(pool, slot, allowed);
	if (!allowed) {
		if (!c->tls)
			write_all(c->fd, forbidden_response, sizeof(forbidden_response) - 1);
		goto out;
	}
	upstream = dial(pool, target, c->tls ? 443 : 80);
	if (upstream < 0) {
		if (!c->tls)
			write_all(c->fd, bad_gateway_response, sizeof(bad_gateway_response) - 1);
		goto out;
	}
	/* Released while dialing: the sandbox is gone. */
	pthread_mutex_lock(&pool->lock);
	entry.upstream = upstream;
	allowed = pool->slots[slot].generation == generation;
	pthread_mutex_unlock(&pool->lock);
	if (!allowed)
		goto out;
	if (c->tls) {
		write_all(upstream, head, used); /* the ClientHello read so far goes first */
		relay(pool, c->fd, upstream, NULL, NULL, 0, idle_ms);
	} else {
		/* The first request is framed like the next ones. */
		memcpy(framer.host, host, name_len + 1);
		framer.host_len = name_len;
		relay(pool, c->fd, upstream, &framer, head, used, idle_ms);
		if (framer.refused)
			count(pool, slot, false);
	}
out:
	if (registered)
		connection_unregister(pool, &entry);
	if (slot >= 0)
		egress_release(pool, slot);
	if (upstream >= 0)
		close(upstream);
	close(c->fd);
	free(head);
	free(c);
	atomic_fetch_sub(&pool->proxy_active, 1);
	return NULL;
}

static void *accept_thread(void *arg)
{
	struct net_pool *pool = arg;
	pthread_attr_t attr;

	sigset_t pipe_signal;

	/* splice(2) to a closed peer raises SIGPIPE and has no MSG_NOSIGNAL:
	 * block it here (connection threads inherit the mask) so a sandbox
	 * closing early can never kill the worker. */
	sigemptyset(&pipe_signal);
	sigaddset(&pipe_signal, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_signal, NULL);
	/* Dialing and resolving happen from the host namespace. */
	if (setns(pool->host_fd, CLONE_NEWNET) != 0)
		log_error("egress: cannot enter the host namespace: %s", strerror(errno));
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (;;) {
		struct pollfd fds[3] = {
			{ .fd = pool->proxy_http_fd, .events = POLLIN },
			{ .fd = pool->proxy_tls_fd, .events = POLLIN },
			{ .fd = pool->stop_fd, .events = POLLIN },
		};

		if (poll(fds, 3, -1) < 0 && errno != EINTR)
			break;
		if (fds[2].revents)
			break;
		for (int i = 0; i < 2; i++) {
			struct connection *c;
			socklen_t len = sizeof(struct sockaddr_in);
			pthread_t thread;
			int fd;

			if (!fds[i].revents)
				continue;
			c = calloc(1, sizeof(*c));
			if (!c)
				continue;
			fd = accept4(fds[i].fd, (struct sockaddr *)&c->peer, &len, SOCK_CLOEXEC);
			if (fd < 0) {
				free(c);
				continue;
			}
			/* Caps: per slot, below a global one. Past either, a
			 * new connection is closed at once, so no sandbox can
			 * hold the proxy for the others. */
			if (!egress_admit(pool, slot_of(pool, c->peer.sin_addr))) {
				close(fd);
				free(c);
				continue;
			}
			c->pool = pool;
			c->fd = fd;
			c->tls = i == 1;
			atomic_fetch_add(&pool->proxy_active, 1);
			if (pthread_create(&thread, &attr, connection_thread, c) != 0) {
				atomic_fetch_sub(&pool->proxy_active, 1);
				egress_release(pool, slot_of(pool, c->peer.sin_addr));
				close(fd);
				free(c);
			}
		}
	}
	pthread_attr_destroy(&attr);
	return NULL;
}

static int listen_on(uint16_t port)
{
	struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons(port) };
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
	pthread_mutex_init(&pool->dns_lock, NULL);
	pool->dns_cache = calloc(DNS_CACHE_SIZE, sizeof(*pool->dns_cache));
	if (!pool->dns_cache)
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
	/* Several acceptors: one would serialise every connection behind its
	 * scheduling latency on a busy host. The listeners are non-blocking;
	 * the losers of a wake-up see EAGAIN. */
	for (int i = 0; i < EGRESS_ACCEPT_THREADS; i++) {
		if (pthread_create(&pool->proxy_threads[i], NULL, accept_thread, pool) != 0)
			goto err;
		pool->proxy_thread_count++;
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
	for (int i = 0; i < pool->proxy_thread_count; i++)
		pthread_join(pool->proxy_threads[i], NULL);
	pool->proxy_thread_count = 0;
	/* Connection threads see stop_fd readable and leave; those blocked
	 * writing to a peer are woken by shutting their sockets down. */
	pthread_mutex_lock(&pool->lock);
	for (struct egress_connection *c = pool->connections; c; c = c->next) {
		shutdown(c->client, SHUT_RDWR);
		if (c->upstream >= 0)
			shutdown(c->upstream, SHUT_RDWR);
	}
	pthread_mutex_unlock(&pool->lock);
	for (int i = 0; i < 6000 && atomic_load(&pool->proxy_active) > 0; i++)
		usleep(1000);
	stopped = atomic_load(&pool->proxy_active) == 0;
	if (!stopped)
		log_error("egress: %d connection threads did not stop", atomic_load(&pool->proxy_active));
	if (pool->proxy_http_fd >= 0)
		close(pool->proxy_http_fd);
	if (pool->proxy_tls_fd >= 0)
		close(pool->proxy_tls_fd);
	if (pool->stop_fd >= 0)
		close(pool->stop_fd);
	pool->proxy_http_fd = pool->proxy_tls_fd = pool->stop_fd = -1;
	if (stopped && pool->dns_cache) {
		free(pool->dns_cache);
		pool->dns_cache = NULL;
		pthread_mutex_destroy(&pool->dns_lock);
	}
	return stopped;
}

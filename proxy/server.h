/* server: warren-proxy's HTTP/1.1 reverse proxy. N worker threads, each
 * with its own epoll loop and its own SO_REUSEPORT listening socket (the
 * kernel spreads connections); non-blocking sockets, edge-triggered
 * epoll, fixed per-connection buffers (a body of any size streams through
 * them, never buffered whole). Per request: strict head parse (http.h),
 * route (route.h), per-IP limit (limiter.h), sandbox lookup and
 * per-sandbox connection bound (lookup.h), traffic-token check, a fresh
 * upstream connection ("Connection: close" upstream, as nginx's default),
 * response head rewrite, body forwarded as framed; 101 switches to a
 * byte tunnel both ways. */
#ifndef WARREN_PROXY_SERVER_H
#define WARREN_PROXY_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limiter.h"
#include "lookup.h"

struct proxy_settings {
	char listen_host[64];
	uint16_t listen_port;
	const char *domain;
	const char *forwarded_proto; /* X-Forwarded-Proto */
	int threads;
	size_t max_head;	     /* request/response head bytes */
	uint64_t header_timeout_ms;  /* a request head must arrive within */
	uint64_t idle_timeout_ms;    /* keep-alive idle */
	uint64_t io_timeout_ms;	     /* no progress while proxying / tunnelling */
	uint64_t connect_timeout_ms; /* upstream connect */
	int max_connections;	     /* client connections per thread */
	/* HTTPS for public URLs (docs/transport-security.md): a second
	 * listener whose clients speak TLS with this certificate chain. */
	bool tls;
	char tls_listen_host[64];
	uint16_t tls_listen_port;
	const char *tls_cert_file, *tls_key_file;
};

/* Fills settings from config (proxy_listen, domain, proxy_threads,
 * proxy_*_timeout_*, proxy_max_connections, proxy_max_head_bytes,
 * proxy_forwarded_proto; proxy_tls_listen, proxy_tls_cert_file and
 * proxy_tls_key_file together). 0, or -EINVAL with a message in err. */
int proxy__settings_from_config(struct proxy_settings *settings, char *err, size_t err_len);

struct proxy_server;

/* Binds every worker's listening sockets now (so a busy port fails here)
 * and loads the TLS certificate when settings ask for TLS (a bad one
 * fails here). lookup and limiter are borrowed. NULL with a message in
 * err. */
struct proxy_server *proxy__create(const struct proxy_settings *settings, struct lookup *lookup,
				   struct limiter *limiter, char *err, size_t err_len);
/* Runs the worker threads until proxy__stop; 0, or -errno when a thread
 * could not start (the started ones are stopped and joined). */
int proxy__run(struct proxy_server *server);
/* Asks every worker to stop (async-signal-safe). */
void proxy__stop(struct proxy_server *server);
/* Asks for the TLS certificate and key to be loaded again from their
 * files (renewal); new connections use them, live ones keep theirs
 * (async-signal-safe; done by a worker within a second). */
void proxy__reload_tls(struct proxy_server *server);
void proxy__destroy(struct proxy_server *server);

#endif

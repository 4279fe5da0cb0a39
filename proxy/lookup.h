/* lookup: sandbox id -> where its ports are, from PostgreSQL
 * (storage__sandbox_get_internal) behind a short TTL cache, and the count
 * of open upstream connections per sandbox (the per-sandbox bound).
 * Thread-safe. A miss queries the database on the caller's thread; an
 * expired running entry is served (up to stale_ms) while a refresher
 * thread of its own reloads it (refresh-ahead). */
#ifndef WARREN_PROXY_LOOKUP_H
#define WARREN_PROXY_LOOKUP_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "route.h"
#include "warren/tokens.h"

struct storage_pool;
struct lookup;

enum lookup_status {
	LOOKUP_OK = 0,	    /* a running sandbox */
	LOOKUP_NOT_FOUND,   /* unknown, or not running (killed, paused, starting...) */
	LOOKUP_UNAVAILABLE, /* the database did not answer */
};

struct lookup_route {
	bool allow_public_traffic;
	char mask_request_host[256]; /* "" when none */
	char traffic_token[TOKENS_SHA256_HEX_LEN + 1];
	struct sockaddr_storage address; /* slot address, port 0 */
	socklen_t address_len;
};

struct lookup_config {
	uint64_t ttl_ms;	  /* how long a running sandbox is cached */
	uint64_t negative_ttl_ms; /* how long "not found" is cached */
	uint64_t stale_ms;	  /* a running entry this far past its TTL is still
				     served while a background thread reloads it */
	int max_connections;	  /* per sandbox, >= 1 */
	const char *token_seed;	  /* for tokens__traffic_token */
	uint64_t wake_timeout_ms; /* how long a request waits for an autoResume */
};

/* Sends the worker on host_id a resume command for sandbox_id (E2B's
 * autoResume: traffic wakes a paused sandbox). 0 when it was queued. */
typedef int (*lookup_wake_fn)(void *opaque, const char *sandbox_id, const char *team_id,
			      const char *host_id);

/* NULL on no memory. pool is borrowed. */
struct lookup *lookup__create(struct storage_pool *pool, const struct lookup_config *config);
void lookup__destroy(struct lookup *lookup);
/* The route of sandbox_id ([a-z0-9]{1,64}), from the cache when fresh.
 * An id not of warren's shape (ids__is_sandbox_id) is NOT_FOUND at once. */
enum lookup_status lookup__get(struct lookup *lookup, const char *sandbox_id,
			       struct lookup_route *out);
/* Counts one more upstream connection to sandbox_id; false (nothing
 * counted) when max_connections are open already. */
bool lookup__acquire(struct lookup *lookup, const char *sandbox_id);
/* Undoes one lookup__acquire. */
void lookup__release(struct lookup *lookup, const char *sandbox_id);
/* Installs the autoResume waker (NULL: none): a request for a paused
 * sandbox whose row has auto_resume calls it, then waits up to
 * wake_timeout_ms (on the request's thread) until the sandbox runs. */
void lookup__set_waker(struct lookup *lookup, lookup_wake_fn waker, void *opaque);
/* Forgets the cached row of sandbox_id (e.g. on a state-change event). */
void lookup__invalidate(struct lookup *lookup, const char *sandbox_id);

#endif

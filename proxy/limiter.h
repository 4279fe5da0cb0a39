/* limiter: the per-client-IP sandbox-operations limit of the proxy
 * (docs/e2b-compatibility.md, "Limits": 40,000 per 60 s per IP by default, burst = the
 * whole quota). A seam over lib/ratelimit, key "proxy-ip:<ip>":
 * - shared (pg_url set): the GCRA state lives in PostgreSQL, so every
 *   warren-proxy instance on that database together holds the bound, plus
 *   at most c = max(1, limit / 20) credit per instance and IP
 *   (docs/ratelimit.md, "Non-blocking decisions");
 * - in process (pg_url NULL): each instance counts alone.
 * limiter__check never waits for PostgreSQL (ratelimit__take_nowait: no
 * round trip, no connect timeout), so the epoll threads call it; while
 * PostgreSQL fails each instance enforces the limit alone. Thread-safe. */
#ifndef WARREN_PROXY_LIMITER_H
#define WARREN_PROXY_LIMITER_H

#include <stdint.h>

#include "warren/ratelimit.h"
#include "warren/storage_settings.h"

struct limiter;

struct limiter_config {
	int64_t limit;	    /* operations per window per IP, >= 1 */
	int64_t window_s;   /* >= 1 */
	const char *pg_url; /* shared limit over this PostgreSQL; NULL: in process */
	/* Password and TLS for pg_url (its url is not used); NULL: the url's. */
	const struct storage_settings *pg;
	/* Local monotonic clock in µs (tests); NULL -> CLOCK_MONOTONIC. */
	int64_t (*monotonic_us)(void *ctx);
	void *clock_ctx;
};

/* NULL when limit or window_s < 1, no memory, or the shared limiter cannot
 * be set up (a PostgreSQL that is down is no error: it is tried again by
 * the limiter's background thread). */
struct limiter *limiter__create(const struct limiter_config *config);
void limiter__destroy(struct limiter *limiter);
/* Counts one operation of client_ip (an IP literal) and fills out
 * (allowed, RateLimit-Limit/Remaining/Reset, Retry-After when refused).
 * Refused operations are not counted. */
void limiter__check(struct limiter *limiter, const char *client_ip, struct ratelimit_decision *out);
void limiter__stats(struct limiter *limiter, struct ratelimit_stats *out);

#endif

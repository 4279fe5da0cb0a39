/* limiter: the per-client-IP sandbox-operations limit of the proxy
 * (E2B-FACTS.md, "Limits": 40,000 per 60 s per IP by default). A GCRA
 * (generic cell rate algorithm) per key, in process, sharded by key hash:
 * each warren-proxy instance counts alone until a shared (PostgreSQL)
 * limiter backs it. Thread-safe. */
#ifndef WARREN_PROXY_LIMITER_H
#define WARREN_PROXY_LIMITER_H

#include <stdbool.h>
#include <stdint.h>

#define LIMITER_KEY_MAX 63

struct limiter;

struct limiter_decision {
	bool allowed;
	int64_t limit;		/* RateLimit-Limit */
	int64_t remaining;	/* RateLimit-Remaining after this request */
	int64_t reset_s;	/* RateLimit-Reset: seconds until the whole quota is back */
	int64_t retry_after_s;	/* Retry-After when denied (>= 1), else 0 */
};

/* A limiter of `limit` operations per window_s seconds per key, with a
 * burst of the whole quota. NULL when limit or window_s < 1 or no memory. */
struct limiter *limiter__create(int64_t limit, int64_t window_s);
void limiter__destroy(struct limiter *limiter);
/* Counts one operation of key (truncated to LIMITER_KEY_MAX) at now_us
 * (monotonic microseconds; tests drive it). Denied operations are not
 * counted. */
void limiter__check(struct limiter *limiter, const char *key, uint64_t now_us,
		    struct limiter_decision *out);

#endif

/* ratelimit: a GCRA rate limiter whose state lives in PostgreSQL and that
 * stays fast by leasing batches of tokens (docs/ratelimit.md has
 * the algorithm, the exact over/under-admission bounds and their proof).
 * Thread-safe: any number of threads may call ratelimit__take and
 * ratelimit__take_nowait on one limiter; any number of limiters (API and
 * proxy instances) may share one database.
 *
 * Two ways to decide:
 * - ratelimit__take (warren-api, producer/api_limits.c: per-team lifecycle and
 *   creation-rate limits) leases on the caller's thread when its local
 *   lease is spent: one PostgreSQL round trip then, exact GCRA bound.
 * - ratelimit__take_nowait (warren-proxy, per client IP) never waits for
 *   PostgreSQL: it decides from tokens already leased, a small credit per
 *   key, or a local GCRA while PostgreSQL fails; a background thread of
 *   the limiter does the leases. Bound: floor(D / T) + B + I * c over any
 *   interval D, I instances, credit c = max(1, floor(B / lease_divisor))
 *   per key and instance (docs/ratelimit.md, "Non-blocking decisions").
 * A key is meant to be decided by one of the two only. */
#ifndef WARREN_RATELIMIT_H
#define WARREN_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct ratelimit;

struct ratelimit_decision {
	bool allowed;
	int64_t limit;	       /* requests per window (RateLimit-Limit) */
	int64_t remaining;     /* estimate after this request (RateLimit-Remaining) */
	int64_t reset_s;       /* seconds until the burst is full again (RateLimit-Reset) */
	int64_t retry_after_s; /* denied: seconds until one request conforms (>= 1); else 0 */
};

/* What a backend's lease did; times are µs of the backend's (server's)
 * clock. Slot i of the lease is first_us + i * interval_us. */
struct ratelimit_grant {
	int64_t granted;
	int64_t first_us;
	int64_t tat_us;
	int64_t now_us;
};

/* Where the shared GCRA state lives: PostgreSQL (storage/'s backend,
 * storage_ratelimit__open_limiter in warren/storage_ratelimit.h) or memory
 * (ratelimit__memory_backend, for tests and single-process use).
 * Each returns 0 or -1 (the limiter then fails open, see take). */
struct ratelimit_backend {
	/* first = greatest(tat, now + lead_us); grants the slots first + i*T
	 * that are <= now + tau, at most want; tat = first + granted*T. */
	int (*lease)(void *ctx, const char *key, int64_t want, int64_t interval_us, int64_t tau_us,
		     int64_t lead_us, struct ratelimit_grant *out);
	int (*give_back)(void *ctx, const char *key, int64_t count, int64_t interval_us,
			 int64_t tat_us, bool *returned);
	int (*record_rejections)(void *ctx, const char *team_id, const char *limit_name,
				 int64_t count);
	void (*close)(void *ctx);
	void *ctx;
};

struct ratelimit_options {
	/* Largest lease, as a divisor of the burst: lease <= max(1, burst /
	 * lease_divisor). 0 -> 20. Bounds the under-admission (docs). */
	int64_t lease_divisor;
	/* true: no leases, one backend call per decision (the naive design;
	 * benchmark baseline). */
	bool naive;
	/* PostgreSQL connections (storage_ratelimit__open_limiter), 0 -> 2. */
	int connections;
	/* Local monotonic clock in µs (tests inject one); NULL -> CLOCK_MONOTONIC. */
	int64_t (*monotonic_us)(void *ctx);
	void *clock_ctx;
	/* take_nowait: refill requests waiting for the background thread;
	 * when full, a key keeps deciding on credit / the local GCRA and asks
	 * again at its next decision (stats.refills_dropped). 0 -> 4096. */
	int refill_queue;
	/* Keys held at most (take_nowait: one per client IP); a new key
	 * beyond it is let through uncounted (stats.keys_refused). 0 -> 1,000,000. */
	int64_t max_keys;
	/* storage_ratelimit__open_limiter: a PostgreSQL that cannot be
	 * reached at open is no error; leases fail (fail open / local GCRA)
	 * until it can. */
	bool connect_later;
};

struct ratelimit_stats {
	int64_t decisions, allowed, denied;
	int64_t backend_leases; /* lease statements (the PostgreSQL writes) */
	int64_t tokens_leased;
	int64_t tokens_expired; /* leased, never spent before their slot passed */
	int64_t tokens_given_back;
	int64_t backend_errors;
	/* take_nowait */
	int64_t decisions_on_credit; /* admitted before a lease paid for them (debt) */
	int64_t decisions_fallback;  /* decided by the local GCRA: PostgreSQL failing */
	int64_t refills_queued;	     /* leases handed to the background thread */
	int64_t refills_done;	     /* ... and finished by it (granted or failed) */
	int64_t refills_dropped;     /* not queued: the queue was full */
	int64_t debt_forgiven;	     /* credit never paid: key dropped while PostgreSQL failed */
	int64_t keys;		     /* keys held now */
	int64_t keys_evicted;	     /* dropped after a whole window idle */
	int64_t keys_refused;	     /* not stored: max_keys reached (let through) */
};

/* A limiter over a given backend (copied; its close is called by
 * ratelimit__close). options may be NULL. A NULL backend (or one without
 * lease) is a local limiter: every decision is the in-process GCRA of this
 * instance alone (warren-proxy without a shared limit). */
struct ratelimit *ratelimit__open_backend(const struct ratelimit_backend *backend,
					  const struct ratelimit_options *options);
/* ratelimit__open_backend(NULL, options): this instance's GCRA alone. */
struct ratelimit *ratelimit__open_local(const struct ratelimit_options *options);
/* Stops the background thread (queued refills are dropped), gives back
 * unspent leased tokens (when nobody leased after them), flushes rejection
 * counts, closes. NULL is a no-op. */
void ratelimit__close(struct ratelimit *limiter);
/* Closes WITHOUT giving anything back or flushing (a crash, for tests). */
void ratelimit__abandon(struct ratelimit *limiter);

/* Decides one request of key (1..200 bytes) under `count` requests per
 * window_ms (GCRA interval window_ms/count) with a burst of `burst` (>= 1)
 * requests. Fills out. Returns 0, or -1 when the backend failed and the
 * request was let through (fail open: the API must not stop on a
 * limiter outage; counted in stats.backend_errors). */
int ratelimit__take(struct ratelimit *limiter, const char *key, int64_t count, int64_t window_ms,
		    int64_t burst, struct ratelimit_decision *out);

/* Decides one request like ratelimit__take, but never calls the backend on
 * the caller's thread (no PostgreSQL round trip, no connect timeout): an
 * event loop may call it. In order:
 * 1. a leased token of key whose slot has not passed: admitted;
 * 2. the last lease came back short and the next whole lease does not
 *    conform yet: refused (Retry-After from the shared state);
 * 3. the backend failed its last lease: the local GCRA of this instance
 *    decides (at most the configured rate per instance; returns -1);
 * 4. credit: admitted while key owes fewer than c requests (debt), c =
 *    max(1, floor(burst / lease_divisor)); the next lease pays the debt
 *    first with its earliest slots;
 * 5. otherwise refused with Retry-After 1 (a lease is on its way).
 * When key's tokens run low (half a lease) or it owes, a lease of debt +
 * lease size is queued for the background thread (one per key in flight).
 * A limit change drops key's local tokens (no give-back: that would be a
 * backend call). Keys idle for max(window, burst * T) are dropped (the
 * background thread sweeps once a second; a debt is kept until paid unless
 * the backend is failing). Returns 0, or -1 when decided without the
 * shared state (3., bad key, max_keys). */
int ratelimit__take_nowait(struct ratelimit *limiter, const char *key, int64_t count,
			   int64_t window_ms, int64_t burst, struct ratelimit_decision *out);
/* Drops the idle take_nowait keys now (the background thread does it once
 * a second; tests call it with their injected clock). */
void ratelimit__sweep(struct ratelimit *limiter);

/* Counts one rejection of limit_name ([a-z_]{1,64}) for team_id (a uuid);
 * written to PostgreSQL in batches: one statement per team and limit, by
 * the first count or take at least a second after the last write, and at
 * flush/close. */
void ratelimit__count_rejection(struct ratelimit *limiter, const char *team_id,
				const char *limit_name);
/* Writes pending rejection counts and gives back unspent leases now. */
void ratelimit__flush(struct ratelimit *limiter);

void ratelimit__stats(struct ratelimit *limiter, struct ratelimit_stats *out);

/* An in-memory backend: one GCRA table on an injectable "server" clock
 * (server_clock NULL -> CLOCK_MONOTONIC). The same lease rules as the SQL
 * (docs/ratelimit.md). Free with the limiter (close) or
 * ratelimit__memory_backend_free when never handed to one. 0 or -ENOMEM. */
int ratelimit__memory_backend(int64_t (*server_clock_us)(void *ctx), void *clock_ctx,
			      struct ratelimit_backend *out);
void ratelimit__memory_backend_free(struct ratelimit_backend *backend);

#endif

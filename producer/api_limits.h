/* api_limits: the rate-limit seam of warren-api (docs/ratelimit.md; docs/e2b-compatibility.md,
 * "Limits"). Every lifecycle request asks limits__lifecycle, every create
 * also asks limits__create; a denial becomes 429 with RateLimit-Limit,
 * RateLimit-Remaining, RateLimit-Reset and Retry-After headers.
 *
 * Once limits__use_shared has opened the shared limiter (lib/ratelimit:
 * GCRA state in PostgreSQL, leased tokens; docs/ratelimit.md), both limits
 * hold across every API instance, with the bounds documented there. Before
 * that (or when it cannot open) they fall back to an in-process GCRA
 * whose state is PER INSTANCE (N instances admit up to N times the limit).
 * The concurrency limit is not here: it is the atomic admission in
 * PostgreSQL (storage__sandbox_admit). */
#ifndef WARREN_API_LIMITS_H
#define WARREN_API_LIMITS_H

#include <stdbool.h>
#include <stdint.h>

#include "warren/storage.h"

struct limits_decision {
	bool allowed;
	const char *limit_name; /* "lifecycle_requests" | "creation_rate" */
	int64_t limit;		/* RateLimit-Limit: requests per window */
	int64_t remaining;	/* RateLimit-Remaining after this request */
	int64_t reset_s;	/* RateLimit-Reset: seconds until the full quota is back */
	int64_t retry_after_s;	/* Retry-After when denied (>= 1), else 0 */
	char message[160];	/* the 429 message when denied */
};

/* GCRA state of one key: the theoretical arrival time (µs, monotonic). */
struct limits_gcra {
	int64_t tat_us;
};

/* One GCRA step at now_us for a flow of one request per interval_us with
 * a burst of `burst` requests (>= 1). Updates state only when allowed.
 * Pure: the unit tests drive the clock. */
void limits__gcra(struct limits_gcra *state, int64_t now_us, int64_t interval_us, int64_t burst,
		  struct limits_decision *out);

/* The lifecycle limit (limits->lifecycle_requests per lifecycle_window_s,
 * burst = the whole window's quota) of team_id at now. */
void limits__lifecycle(const char *team_id, const struct storage_team_limits *limits,
		       struct limits_decision *out);
/* The creation-rate limit (creation_rate_per_s, burst 2 x the rate). */
void limits__create(const char *team_id, const struct storage_team_limits *limits,
		    struct limits_decision *out);
/* Forgets every key of the in-process fallback (tests). */
void limits__reset(void);

/* Opens the shared PostgreSQL limiter as settings say (warren-api calls it once
 * its database is reachable). 0 when open (or already open), -1 when not:
 * logged, and the in-process fallback stays in use. Thread-safe. */
int limits__use_shared(const struct storage_settings *settings);
/* Counts one 429 of team_id under limit_name for the admin views: batched
 * through the shared limiter (one write per team and limit per second)
 * when it is open, else written at once. Returns true when it was queued
 * or written. */
bool limits__count_rejection(struct storage_pool *pool, const char *team_id,
			     const char *limit_name);
/* Gives back unspent leased tokens and closes the shared limiter (at
 * shutdown, with no request in flight). */
void limits__close_shared(void);

#endif

/* limits: GCRA (generic cell rate algorithm, ITU-T I.371): a flow of one
 * request per interval T may run ahead of schedule by at most tau = T *
 * (burst - 1). Shared across instances through lib/ratelimit once
 * limits__use_shared ran, else in-process; see limits.h. */
#include <pthread.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_limits.h"
#include "warren/clock.h"
#include "warren/log.h"
#include "warren/ratelimit.h"
#include "warren/storage_ratelimit.h"

/* The shared limiter, NULL until limits__use_shared opened it. */
static struct ratelimit *_Atomic limits_shared;
static pthread_mutex_t limits_shared_lock = PTHREAD_MUTEX_INITIALIZER;

int limits__use_shared(const struct storage_settings *settings)
{
	struct ratelimit *limiter;
	int rc = 0;

	pthread_mutex_lock(&limits_shared_lock);
	if (limits_shared)
		goto out;
	limiter = storage_ratelimit__open_limiter_settings(settings, NULL);
	if (!limiter) {
		log_warn("limits: shared rate limiter unavailable, limits are per instance");
		rc = -1;
		goto out;
	}
	limits_shared = limiter;
	log_info("limits: shared rate limiter open (PostgreSQL, leased GCRA)");
out:
	pthread_mutex_unlock(&limits_shared_lock);
	return rc;
}

void limits__close_shared(void)
{
	struct ratelimit *limiter;

	pthread_mutex_lock(&limits_shared_lock);
	limiter = limits_shared;
	limits_shared = NULL;
	pthread_mutex_unlock(&limits_shared_lock);
	ratelimit__close(limiter);
}

/* Asks the shared limiter; false when there is none (use the fallback). */
static bool limits__shared_step(const char *kind, const char *team_id, int64_t count,
				int64_t window_ms, int64_t burst, struct limits_decision *out)
{
	struct ratelimit *limiter = limits_shared;
	struct ratelimit_decision decision;
	char key[80];

	if (!limiter)
		return false;
	snprintf(key, sizeof(key), "%s:%s", kind, team_id);
	/* On a PostgreSQL outage take fails open (and counts it): the API
	 * keeps serving, the concurrency limit still holds in PostgreSQL. */
	ratelimit__take(limiter, key, count, window_ms, burst, &decision);
	out->allowed = decision.allowed;
	out->remaining = decision.remaining;
	out->reset_s = decision.reset_s;
	out->retry_after_s = decision.retry_after_s;
	return true;
}

static int64_t limits__ceil_s(int64_t us)
{
	return us <= 0 ? 0 : (us + 999999) / 1000000;
}

void limits__gcra(struct limits_gcra *state, int64_t now_us, int64_t interval_us, int64_t burst,
		  struct limits_decision *out)
{
	int64_t tau, tat, new_tat;

	if (interval_us < 1)
		interval_us = 1;
	if (burst < 1)
		burst = 1;
	tau = interval_us * (burst - 1);
	tat = state->tat_us > now_us ? state->tat_us : now_us;
	new_tat = tat + interval_us;
	if (tat - now_us > tau) {
		/* Too early: the next conforming time is tat - tau. */
		out->allowed = false;
		out->remaining = 0;
		out->retry_after_s = limits__ceil_s(tat - tau - now_us);
		if (out->retry_after_s < 1)
			out->retry_after_s = 1;
		out->reset_s = limits__ceil_s(tat - now_us);
		return;
	}
	state->tat_us = new_tat;
	out->allowed = true;
	out->retry_after_s = 0;
	out->remaining = (tau - (new_tat - now_us)) / interval_us + 1;
	if (out->remaining < 0)
		out->remaining = 0;
	out->reset_s = limits__ceil_s(new_tat - now_us);
}

/* Keys "<kind>:<team id>" -> state, in a tsearch tree under one mutex.
 * Teams are few and authenticated, so the tree stays small. */
struct limits_entry {
	char key[64];
	struct limits_gcra state;
};

static pthread_mutex_t limits_lock = PTHREAD_MUTEX_INITIALIZER;
static void *limits_root;

static int limits__compare(const void *a, const void *b)
{
	return strcmp(((const struct limits_entry *)a)->key, ((const struct limits_entry *)b)->key);
}

static void limits__step(const char *kind, const char *team_id, int64_t interval_us, int64_t burst,
			 struct limits_decision *out)
{
	struct limits_entry probe, *entry = NULL, **found;

	snprintf(probe.key, sizeof(probe.key), "%s:%s", kind, team_id);
	pthread_mutex_lock(&limits_lock);
	found = tfind(&probe, &limits_root, limits__compare);
	if (found) {
		entry = *found;
	} else {
		entry = calloc(1, sizeof(*entry));
		if (entry) {
			memcpy(entry->key, probe.key, sizeof(entry->key));
			if (!tsearch(entry, &limits_root, limits__compare)) {
				free(entry);
				entry = NULL;
			}
		}
	}
	if (entry) {
		limits__gcra(&entry->state, (int64_t)(clock__monotonic_ns() / 1000), interval_us,
			     burst, out);
	} else {
		/* Out of memory: fail open rather than refuse every request. */
		out->allowed = true;
		out->remaining = burst - 1;
		out->reset_s = 0;
		out->retry_after_s = 0;
	}
	pthread_mutex_unlock(&limits_lock);
}

void limits__lifecycle(const char *team_id, const struct storage_team_limits *limits,
		       struct limits_decision *out)
{
	int64_t count = limits->lifecycle_requests > 0 ? limits->lifecycle_requests : 1;
	int64_t window_us =
	    (int64_t)(limits->lifecycle_window_s > 0 ? limits->lifecycle_window_s : 1) * 1000000;

	memset(out, 0, sizeof(*out));
	out->limit_name = "lifecycle_requests";
	out->limit = count;
	if (!limits__shared_step("lifecycle", team_id, count, window_us / 1000, count, out))
		limits__step("lifecycle", team_id, window_us / count, count, out);
	if (!out->allowed)
		snprintf(out->message, sizeof(out->message),
			 "rate limit exceeded: at most %d lifecycle API requests per %d s",
			 limits->lifecycle_requests, limits->lifecycle_window_s);
}

void limits__create(const char *team_id, const struct storage_team_limits *limits,
		    struct limits_decision *out)
{
	int64_t rate = limits->creation_rate_per_s > 0 ? limits->creation_rate_per_s : 1;

	memset(out, 0, sizeof(*out));
	out->limit_name = "creation_rate";
	out->limit = rate;
	if (!limits__shared_step("create", team_id, rate, 1000, 2 * rate, out))
		limits__step("create", team_id, 1000000 / rate, 2 * rate, out);
	if (!out->allowed)
		snprintf(out->message, sizeof(out->message),
			 "rate limit exceeded: at most %d sandbox creations per second",
			 limits->creation_rate_per_s);
}

static void limits__free_entry(void *entry)
{
	free(entry);
}

void limits__reset(void)
{
	pthread_mutex_lock(&limits_lock);
	tdestroy(limits_root, limits__free_entry);
	limits_root = NULL;
	pthread_mutex_unlock(&limits_lock);
}

bool limits__count_rejection(struct storage_pool *pool, const char *team_id, const char *limit_name)
{
	struct ratelimit *shared = limits_shared;
	struct storage_error e;

	if (shared) {
		ratelimit__count_rejection(shared, team_id, limit_name);
		return true;
	}
	return pool && storage__rate_limit_record_rejection(pool, team_id, limit_name, &e) == 0;
}

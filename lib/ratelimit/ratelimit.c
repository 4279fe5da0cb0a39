/* ratelimit: GCRA (ITU-T I.371 virtual scheduling) with leased tokens.
 * docs/ratelimit.md, "Algorithm" and "Bounds": a lease reserves slots
 * first + i*T (i < granted) in the shared state; this instance may spend
 * slot i only while the server's clock is <= that slot (estimated from
 * above with a monotonic clock anchored when the lease was SENT), so the
 * spent requests always form a GCRA-conforming sequence: no over-admission
 * beyond the GCRA's own burst, across instances and crashes. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "warren/log.h"
#include "warren/ratelimit.h"

#define RATELIMIT_BUCKETS 256
#define RATELIMIT_KEY_MAX 200
#define RATELIMIT_REJECTION_SLOTS 64
#define RATELIMIT_FLUSH_US 1000000

struct ratelimit_key {
	struct ratelimit_key *next_in_bucket;
	pthread_mutex_t lock;
	char key[RATELIMIT_KEY_MAX + 1];
	int64_t interval_us, tau_us;
	/* the current lease: slots first_us + i*interval_us, i in [next, count) */
	int64_t lease_first_us, lease_count, lease_next, lease_tat_us;
	int64_t lease_expired;	 /* slots of this lease that passed unspent */
	bool lease_valid;
	int64_t lease_size;	 /* adaptive: 1, doubled while busy, capped */
	/* server time ~= anchor_server_us + (local - anchor_local_us), >= the truth */
	int64_t anchor_server_us, anchor_local_us;
	int64_t denied_until_local_us;
	bool denied_valid;
};

struct ratelimit_rejection {
	char team_id[37];
	char limit_name[65];
	int64_t count;
};

struct ratelimit {
	struct ratelimit_backend backend;
	struct ratelimit_options options;
	pthread_mutex_t table_lock;
	struct ratelimit_key *buckets[RATELIMIT_BUCKETS];
	pthread_mutex_t rejection_lock;
	struct ratelimit_rejection rejections[RATELIMIT_REJECTION_SLOTS];
	int64_t last_flush_local_us;	/* under rejection_lock */
	int pending_rejections;		/* __atomic: counts waiting to be written */
	struct ratelimit_stats stats;	/* updated with __atomic builtins */
	/* Writes pending rejection counts once a second even when no take or
	 * count call comes (an idle instance must not sit on them). */
	pthread_t flusher;
	bool flusher_started;
	bool flusher_stop;		/* under flusher_lock */
	pthread_mutex_t flusher_lock;
	pthread_cond_t flusher_wake;
};

static int64_t ratelimit__default_clock(void *ctx)
{
	struct timespec now;

	(void)ctx;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

static int64_t ratelimit__now(struct ratelimit *limiter)
{
	return limiter->options.monotonic_us(limiter->options.clock_ctx);
}

#define STAT_ADD(limiter, field, n) __atomic_add_fetch(&(limiter)->stats.field, (n), __ATOMIC_RELAXED)

static void ratelimit__flush_rejections(struct ratelimit *limiter);

/* The flusher thread: every second, the pending rejection counts. */
static void *ratelimit__flusher_main(void *opaque)
{
	struct ratelimit *limiter = opaque;

	pthread_mutex_lock(&limiter->flusher_lock);
	while (!limiter->flusher_stop) {
		struct timespec deadline;

		clock_gettime(CLOCK_REALTIME, &deadline);
		deadline.tv_sec += 1;
		pthread_cond_timedwait(&limiter->flusher_wake, &limiter->flusher_lock, &deadline);
		if (limiter->flusher_stop)
			break;
		pthread_mutex_unlock(&limiter->flusher_lock);
		if (__atomic_load_n(&limiter->pending_rejections, __ATOMIC_RELAXED))
			ratelimit__flush_rejections(limiter);
		pthread_mutex_lock(&limiter->flusher_lock);
	}
	pthread_mutex_unlock(&limiter->flusher_lock);
	return NULL;
}

struct ratelimit *ratelimit__open_backend(const struct ratelimit_backend *backend,
					  const struct ratelimit_options *options)
{
	struct ratelimit *limiter = calloc(1, sizeof(*limiter));

	if (!limiter)
		return NULL;
	limiter->backend = *backend;
	if (options)
		limiter->options = *options;
	if (limiter->options.lease_divisor < 1)
		limiter->options.lease_divisor = 20;
	if (!limiter->options.monotonic_us)
		limiter->options.monotonic_us = ratelimit__default_clock;
	pthread_mutex_init(&limiter->table_lock, NULL);
	pthread_mutex_init(&limiter->rejection_lock, NULL);
	pthread_mutex_init(&limiter->flusher_lock, NULL);
	pthread_cond_init(&limiter->flusher_wake, NULL);
	limiter->last_flush_local_us = ratelimit__now(limiter);
	limiter->flusher_started =
		pthread_create(&limiter->flusher, NULL, ratelimit__flusher_main, limiter) == 0;
	return limiter;
}

static uint32_t ratelimit__hash(const char *key)
{
	uint32_t hash = 2166136261u; /* FNV-1a */

	for (; *key; key++)
		hash = (hash ^ (uint8_t)*key) * 16777619u;
	return hash;
}

/* The entry of key, created on first use; NULL when out of memory. */
static struct ratelimit_key *ratelimit__entry(struct ratelimit *limiter, const char *key)
{
	uint32_t bucket = ratelimit__hash(key) % RATELIMIT_BUCKETS;
	struct ratelimit_key *entry;

	pthread_mutex_lock(&limiter->table_lock);
	for (entry = limiter->buckets[bucket]; entry; entry = entry->next_in_bucket)
		if (!strcmp(entry->key, key))
			goto out;
	entry = calloc(1, sizeof(*entry));
	if (!entry)
		goto out;
	pthread_mutex_init(&entry->lock, NULL);
	strcpy(entry->key, key);
	entry->lease_size = 1;
	entry->next_in_bucket = limiter->buckets[bucket];
	limiter->buckets[bucket] = entry;
out:
	pthread_mutex_unlock(&limiter->table_lock);
	return entry;
}


static int64_t ratelimit__ceil_s(int64_t us)
{
	return us <= 0 ? 0 : (us + 999999) / 1000000;
}

/* Gives back the unspent tail of entry's lease (locked by the caller). */
static void ratelimit__give_back_lease(struct ratelimit *limiter, struct ratelimit_key *entry)
{
	int64_t unspent;
	bool returned = false;

	if (!entry->lease_valid)
		return;
	unspent = entry->lease_count - entry->lease_next;
	entry->lease_valid = false;
	if (unspent < 1 || !limiter->backend.give_back)
		return;
	if (limiter->backend.give_back(limiter->backend.ctx, entry->key, unspent, entry->interval_us,
				       entry->lease_tat_us, &returned)) {
		STAT_ADD(limiter, backend_errors, 1);
		return;
	}
	if (returned)
		STAT_ADD(limiter, tokens_given_back, unspent);
}

/* Fills the estimates of out from entry at server time server_us. */
static void ratelimit__estimate(const struct ratelimit_key *entry, int64_t server_us, int64_t burst,
				struct ratelimit_decision *out)
{
	int64_t ahead = entry->lease_tat_us - server_us;
	int64_t free_slots = 0;

	if (ahead <= entry->tau_us)
		free_slots = (entry->tau_us - ahead) / entry->interval_us + 1;
	if (entry->lease_valid)
		free_slots += entry->lease_count - entry->lease_next;
	if (free_slots > burst)
		free_slots = burst;
	out->remaining = free_slots;
	out->reset_s = ratelimit__ceil_s(ahead);
}

int ratelimit__take(struct ratelimit *limiter, const char *key, int64_t count, int64_t window_ms,
		    int64_t burst, struct ratelimit_decision *out)
{
	struct ratelimit_key *entry;
	struct ratelimit_grant grant;
	int64_t interval_us, tau_us, cap, now_local, server_us, send_local, lead_us;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	if (count < 1)
		count = 1;
	if (window_ms < 1)
		window_ms = 1;
	if (burst < 1)
		burst = 1;
	out->limit = count;
	interval_us = window_ms * 1000 / count;
	if (interval_us < 1)
		interval_us = 1;
	tau_us = interval_us * (burst - 1);
	cap = burst / limiter->options.lease_divisor;
	if (cap < 1 || limiter->options.naive)
		cap = 1;
	STAT_ADD(limiter, decisions, 1);

	if (!key || !key[0] || strlen(key) > RATELIMIT_KEY_MAX || !(entry = ratelimit__entry(limiter, key))) {
		/* A bad key is a caller bug, memory is out: fail open. */
		STAT_ADD(limiter, backend_errors, 1);
		out->allowed = true;
		STAT_ADD(limiter, allowed, 1);
		return -1;
	}
	pthread_mutex_lock(&entry->lock);
	if (entry->interval_us != interval_us || entry->tau_us != tau_us) {
		/* The limit changed (an admin edit): start over with it. */
		ratelimit__give_back_lease(limiter, entry);
		entry->interval_us = interval_us;
		entry->tau_us = tau_us;
		entry->lease_size = 1;
		entry->denied_valid = false;
	}
	now_local = ratelimit__now(limiter);
	server_us = entry->anchor_server_us + (now_local - entry->anchor_local_us);

	/* 1. A slot of the current lease that has not passed yet. */
	if (entry->lease_valid) {
		while (entry->lease_next < entry->lease_count &&
		       entry->lease_first_us + entry->lease_next * interval_us < server_us) {
			entry->lease_next++;
			entry->lease_expired++;
			STAT_ADD(limiter, tokens_expired, 1);
		}
		if (entry->lease_next < entry->lease_count) {
			entry->lease_next++;
			out->allowed = true;
			goto decided;
		}
	}
	/* 2. Denied recently and the next conforming time has not come. */
	if (entry->denied_valid && now_local < entry->denied_until_local_us) {
		out->allowed = false;
		goto decided;
	}
	/* 3. A new lease, sized by how the previous one went. */
	if (entry->lease_valid) {
		if (entry->lease_expired == 0 && entry->lease_count >= entry->lease_size)
			entry->lease_size *= 2;
		else if (entry->lease_expired * 2 > entry->lease_count)
			entry->lease_size /= 2;
	}
	if (entry->lease_size > cap)
		entry->lease_size = cap;
	if (entry->lease_size < 1)
		entry->lease_size = 1;
	/* With leases (cap > 1) the first slot is placed up to cap*T ahead of
	 * now so slots stay spendable for a while (docs/ratelimit.md, "Lead");
	 * without (cap 1) it is an exact GCRA. */
	lead_us = 0;
	if (cap > 1) {
		lead_us = cap * interval_us;
		if (lead_us > tau_us - (entry->lease_size - 1) * interval_us)
			lead_us = tau_us - (entry->lease_size - 1) * interval_us;
		if (lead_us < 0)
			lead_us = 0;
	}
	send_local = ratelimit__now(limiter);
	STAT_ADD(limiter, backend_leases, 1);
	if (limiter->backend.lease(limiter->backend.ctx, key, entry->lease_size, interval_us, tau_us,
				   lead_us, &grant)) {
		STAT_ADD(limiter, backend_errors, 1);
		entry->lease_valid = false;
		out->allowed = true;
		rc = -1;
		out->remaining = 0;
		goto unlock;
	}
	STAT_ADD(limiter, tokens_leased, grant.granted);
	/* Anchored at the send time: the estimate is never below the truth. */
	entry->anchor_server_us = grant.now_us;
	entry->anchor_local_us = send_local;
	server_us = grant.now_us + (ratelimit__now(limiter) - send_local);
	entry->lease_first_us = grant.first_us;
	entry->lease_count = grant.granted;
	entry->lease_tat_us = grant.tat_us;
	entry->lease_expired = 0;
	entry->lease_valid = grant.granted > 0;
	/* Fewer tokens than asked: the state is saturated. Ask again only when
	 * a whole lease conforms (the slot after ours + (n-1)*T - tau): no
	 * slot is lost meanwhile, they all stay ahead of now (docs, "Lease
	 * sizing"); one lease per n tokens instead of one per token. */
	entry->denied_valid = grant.granted < entry->lease_size && !limiter->options.naive;
	entry->denied_until_local_us =
		send_local + (grant.tat_us + (entry->lease_size - 1) * interval_us - tau_us -
			      grant.now_us);
	if (grant.granted > 0) {
		/* Slot 0 (>= now, <= now + tau) is spent at the statement's time. */
		entry->lease_next = 1;
		out->allowed = true;
	} else {
		entry->lease_next = 0;
		out->allowed = false;
	}
decided:
	ratelimit__estimate(entry, server_us, burst, out);
	if (!out->allowed) {
		out->remaining = 0;
		out->retry_after_s = ratelimit__ceil_s(entry->denied_until_local_us - now_local);
		if (out->retry_after_s < 1)
			out->retry_after_s = 1;
	}
unlock:
	pthread_mutex_unlock(&entry->lock);
	if (out->allowed)
		STAT_ADD(limiter, allowed, 1);
	else
		STAT_ADD(limiter, denied, 1);
	/* Counted rejections do not wait for the next rejection to be written. */
	if (__atomic_load_n(&limiter->pending_rejections, __ATOMIC_RELAXED)) {
		bool due;

		pthread_mutex_lock(&limiter->rejection_lock);
		due = ratelimit__now(limiter) - limiter->last_flush_local_us >= RATELIMIT_FLUSH_US;
		pthread_mutex_unlock(&limiter->rejection_lock);
		if (due)
			ratelimit__flush_rejections(limiter);
	}
	return rc;
}

/* Writes every pending rejection count (one statement per team+limit). */
static void ratelimit__flush_rejections(struct ratelimit *limiter)
{
	struct ratelimit_rejection pending[RATELIMIT_REJECTION_SLOTS];
	int used = 0;

	pthread_mutex_lock(&limiter->rejection_lock);
	for (int i = 0; i < RATELIMIT_REJECTION_SLOTS; i++)
		if (limiter->rejections[i].count > 0) {
			pending[used++] = limiter->rejections[i];
			limiter->rejections[i].count = 0;
			limiter->rejections[i].team_id[0] = '\0';
		}
	limiter->last_flush_local_us = ratelimit__now(limiter);
	__atomic_store_n(&limiter->pending_rejections, 0, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&limiter->rejection_lock);
	for (int i = 0; i < used; i++)
		if (!limiter->backend.record_rejections ||
		    limiter->backend.record_rejections(limiter->backend.ctx, pending[i].team_id,
						       pending[i].limit_name, pending[i].count))
			STAT_ADD(limiter, backend_errors, 1);
}

void ratelimit__count_rejection(struct ratelimit *limiter, const char *team_id,
				const char *limit_name)
{
	bool flush, counted = false;

	if (!team_id || !limit_name || strlen(team_id) > 36 || strlen(limit_name) > 64)
		return;
	pthread_mutex_lock(&limiter->rejection_lock);
	for (int pass = 0; pass < 2 && !counted; pass++)
		for (int i = 0; i < RATELIMIT_REJECTION_SLOTS && !counted; i++) {
			struct ratelimit_rejection *slot = &limiter->rejections[i];

			if (pass == 0 && slot->count > 0 && !strcmp(slot->team_id, team_id) &&
			    !strcmp(slot->limit_name, limit_name)) {
				slot->count++;
				counted = true;
			} else if (pass == 1 && slot->count == 0) {
				strcpy(slot->team_id, team_id);
				strcpy(slot->limit_name, limit_name);
				slot->count = 1;
				counted = true;
			}
		}
	if (counted)
		__atomic_store_n(&limiter->pending_rejections, 1, __ATOMIC_RELAXED);
	flush = !counted || ratelimit__now(limiter) - limiter->last_flush_local_us >= RATELIMIT_FLUSH_US;
	pthread_mutex_unlock(&limiter->rejection_lock);
	if (flush)
		ratelimit__flush_rejections(limiter);
	if (!counted)
		ratelimit__count_rejection(limiter, team_id, limit_name);
}

void ratelimit__flush(struct ratelimit *limiter)
{
	ratelimit__flush_rejections(limiter);
	pthread_mutex_lock(&limiter->table_lock);
	for (int b = 0; b < RATELIMIT_BUCKETS; b++)
		for (struct ratelimit_key *entry = limiter->buckets[b]; entry;
		     entry = entry->next_in_bucket) {
			pthread_mutex_lock(&entry->lock);
			ratelimit__give_back_lease(limiter, entry);
			pthread_mutex_unlock(&entry->lock);
		}
	pthread_mutex_unlock(&limiter->table_lock);
}

void ratelimit__stats(struct ratelimit *limiter, struct ratelimit_stats *out)
{
	int64_t *source = (int64_t *)&limiter->stats, *target = (int64_t *)out;

	for (size_t i = 0; i < sizeof(*out) / sizeof(int64_t); i++)
		target[i] = __atomic_load_n(&source[i], __ATOMIC_RELAXED);
}

static void ratelimit__free(struct ratelimit *limiter)
{
	if (limiter->flusher_started) {
		pthread_mutex_lock(&limiter->flusher_lock);
		limiter->flusher_stop = true;
		pthread_cond_signal(&limiter->flusher_wake);
		pthread_mutex_unlock(&limiter->flusher_lock);
		pthread_join(limiter->flusher, NULL);
	}
	pthread_mutex_destroy(&limiter->flusher_lock);
	pthread_cond_destroy(&limiter->flusher_wake);
	for (int b = 0; b < RATELIMIT_BUCKETS; b++) {
		struct ratelimit_key *entry = limiter->buckets[b], *next;

		for (; entry; entry = next) {
			next = entry->next_in_bucket;
			pthread_mutex_destroy(&entry->lock);
			free(entry);
		}
	}
	if (limiter->backend.close)
		limiter->backend.close(limiter->backend.ctx);
	pthread_mutex_destroy(&limiter->table_lock);
	pthread_mutex_destroy(&limiter->rejection_lock);
	free(limiter);
}

void ratelimit__close(struct ratelimit *limiter)
{
	if (!limiter)
		return;
	ratelimit__flush(limiter);
	ratelimit__free(limiter);
}

void ratelimit__abandon(struct ratelimit *limiter)
{
	if (limiter)
		ratelimit__free(limiter);
}

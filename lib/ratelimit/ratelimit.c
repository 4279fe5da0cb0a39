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
#include "warren/check.h"
#include "warren/clock.h"

#define RATELIMIT_BUCKETS	  4096
#define RATELIMIT_KEY_MAX	  200
#define RATELIMIT_REJECTION_SLOTS 64
#define RATELIMIT_FLUSH_US	  1000000
#define RATELIMIT_TICK_US	  1000000 /* background: sweep and flush cadence */
#define RATELIMIT_RETRY_US	  1000000 /* take_nowait: a failed key leases again after */
#define RATELIMIT_SLOW_US	  100000  /* take_nowait: a lease out longer is taken as failing */
#define RATELIMIT_REFILL_QUEUE	  4096
#define RATELIMIT_MAX_KEYS	  1000000

/* Slots first_us + i * interval_us of one lease, i in [next, count). */
struct ratelimit_lease {
	int64_t first_us, count, next, tat_us;
};

struct ratelimit_key {
	struct ratelimit_key *next_in_bucket;
	pthread_mutex_t lock;
	int users; /* decisions between lookup and unlock (under table_lock / atomic) */
	int64_t interval_us, tau_us, idle_us;
	/* Leases in slot order, [0] spent first. take holds one; take_nowait
	 * may hold the next one while [0] runs out. */
	struct ratelimit_lease leases[2];
	int leases_held;
	int64_t last_granted;  /* tokens of the last lease (0: none or failed) */
	int64_t last_tat_us;   /* the shared tat after our last lease */
	int64_t lease_expired; /* slots that passed unspent since the last lease */
	int64_t lease_size;    /* adaptive: 1, doubled while busy, capped */
	bool anchored;
	/* server time ~= anchor_server_us + (local - anchor_local_us), >= the truth */
	int64_t anchor_server_us, anchor_local_us;
	int64_t denied_until_local_us;
	bool denied_valid;
	/* take_nowait */
	bool nowait;
	int64_t cap;		       /* largest lease and the credit (both c) */
	int64_t debt;		       /* admitted on credit, not yet paid with a slot */
	bool refill_queued;	       /* in the queue or being leased: not evicted */
	int64_t refill_since_local_us; /* ... since */
	bool backend_failed;	       /* the last lease of this key failed */
	int64_t retry_local_us;	       /* ... and is tried again from then */
	int64_t fallback_tat_us;       /* local GCRA (local clock), charged by every admission */
	int64_t last_used_local_us;
	char key[];
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
	int64_t last_flush_local_us;  /* under rejection_lock */
	int pending_rejections;	      /* __atomic: counts waiting to be written */
	struct ratelimit_stats stats; /* updated with __atomic builtins */
	/* The background thread: take_nowait's leases (the refill queue), and
	 * once a second the pending rejection counts (an idle instance must
	 * not sit on them) and the idle-key sweep. */
	pthread_t background;
	bool background_started;
	bool background_stop; /* under background_lock */
	pthread_mutex_t background_lock;
	pthread_cond_t background_wake;
	struct ratelimit_key **refills; /* ring under background_lock */
	int refill_head, refill_count;
	/* take_nowait: a lease failed; until then (local clock) keys without
	 * tokens use the local GCRA instead of credit (__atomic). */
	int64_t backend_failed_until_us;
};

static int64_t ratelimit__default_clock(void *ctx)
{
	(void)ctx;
	return (int64_t)(clock__monotonic_ns() / 1000u);
}

static int64_t ratelimit__now(struct ratelimit *limiter)
{
	return limiter->options.monotonic_us(limiter->options.clock_ctx);
}

#define STAT_ADD(limiter, field, n)                                                                \
	__atomic_add_fetch(&(limiter)->stats.field, (n), __ATOMIC_RELAXED)

static void ratelimit__flush_rejections(struct ratelimit *limiter);
static void ratelimit__refill(struct ratelimit *limiter, struct ratelimit_key *entry);

/* The background thread: refills as they are queued; every second the
 * pending rejection counts and the sweep. */
static void *ratelimit__background_main(void *opaque)
{
	struct ratelimit *limiter = opaque;
	int64_t last_tick = ratelimit__default_clock(NULL);

	pthread_mutex_lock(&limiter->background_lock);
	while (!limiter->background_stop) {
		int64_t now = ratelimit__default_clock(NULL);

		if (limiter->refill_count > 0) {
			struct ratelimit_key *entry = limiter->refills[limiter->refill_head];

			limiter->refill_head =
			    (limiter->refill_head + 1) % limiter->options.refill_queue;
			limiter->refill_count--;
			pthread_mutex_unlock(&limiter->background_lock);
			ratelimit__refill(limiter, entry);
			pthread_mutex_lock(&limiter->background_lock);
			if (now - last_tick < RATELIMIT_TICK_US)
				continue;
		}
		if (now - last_tick >= RATELIMIT_TICK_US) {
			last_tick = now;
			pthread_mutex_unlock(&limiter->background_lock);
			if (__atomic_load_n(&limiter->pending_rejections, __ATOMIC_RELAXED))
				ratelimit__flush_rejections(limiter);
			ratelimit__sweep(limiter);
			pthread_mutex_lock(&limiter->background_lock);
			continue;
		}
		{
			struct timespec deadline;
			int64_t wait_us = RATELIMIT_TICK_US - (now - last_tick);

			clock__timespec_after(CLOCK_REALTIME, (uint64_t)wait_us * 1000u, &deadline);
			if (!limiter->refill_count && !limiter->background_stop)
				pthread_cond_timedwait(&limiter->background_wake,
						       &limiter->background_lock, &deadline);
		}
	}
	pthread_mutex_unlock(&limiter->background_lock);
	return NULL;
}

struct ratelimit *ratelimit__open_backend(const struct ratelimit_backend *backend,
					  const struct ratelimit_options *options)
{
	struct ratelimit *limiter = calloc(1, sizeof(*limiter));

	if (!limiter)
		return NULL;
	if (backend)
		limiter->backend = *backend;
	if (options)
		limiter->options = *options;
	if (limiter->options.lease_divisor < 1)
		limiter->options.lease_divisor = 20;
	if (!limiter->options.monotonic_us)
		limiter->options.monotonic_us = ratelimit__default_clock;
	if (limiter->options.refill_queue < 1)
		limiter->options.refill_queue = RATELIMIT_REFILL_QUEUE;
	if (limiter->options.max_keys < 1)
		limiter->options.max_keys = RATELIMIT_MAX_KEYS;
	limiter->refills = calloc((size_t)limiter->options.refill_queue, sizeof(*limiter->refills));
	if (!limiter->refills) {
		free(limiter);
		return NULL;
	}
	pthread_mutex_init(&limiter->table_lock, NULL);
	pthread_mutex_init(&limiter->rejection_lock, NULL);
	pthread_mutex_init(&limiter->background_lock, NULL);
	pthread_cond_init(&limiter->background_wake, NULL);
	limiter->last_flush_local_us = ratelimit__now(limiter);
	limiter->background_started =
	    pthread_create(&limiter->background, NULL, ratelimit__background_main, limiter) == 0;
	return limiter;
}

struct ratelimit *ratelimit__open_local(const struct ratelimit_options *options)
{
	return ratelimit__open_backend(NULL, options);
}

static uint32_t ratelimit__hash(const char *key)
{
	uint32_t hash = 2166136261u; /* FNV-1a */

	for (; *key; key++)
		hash = (hash ^ (uint8_t)*key) * 16777619u;
	return hash;
}

/* The entry of key, created on first use, with one more user (the caller
 * drops it with ratelimit__release after unlocking the entry); NULL when
 * out of memory or max_keys is reached. */
static struct ratelimit_key *ratelimit__entry(struct ratelimit *limiter, const char *key)
{
	uint32_t bucket = ratelimit__hash(key) % RATELIMIT_BUCKETS;
	struct ratelimit_key *entry;
	size_t length = strlen(key);

	pthread_mutex_lock(&limiter->table_lock);
	for (entry = limiter->buckets[bucket]; entry; entry = entry->next_in_bucket)
		if (!strcmp(entry->key, key))
			goto found;
	if (__atomic_load_n(&limiter->stats.keys, __ATOMIC_RELAXED) >= limiter->options.max_keys) {
		STAT_ADD(limiter, keys_refused, 1);
		entry = NULL;
		goto out;
	}
	entry = calloc(1, sizeof(*entry) + length + 1);
	if (!entry)
		goto out;
	pthread_mutex_init(&entry->lock, NULL);
	memcpy(entry->key, key, length + 1);
	entry->lease_size = 1;
	entry->next_in_bucket = limiter->buckets[bucket];
	limiter->buckets[bucket] = entry;
	STAT_ADD(limiter, keys, 1);
found:
	__atomic_add_fetch(&entry->users, 1, __ATOMIC_RELAXED);
out:
	pthread_mutex_unlock(&limiter->table_lock);
	return entry;
}

static void ratelimit__release(struct ratelimit_key *entry)
{
	__atomic_sub_fetch(&entry->users, 1, __ATOMIC_RELEASE);
}

static int64_t ratelimit__ceil_s(int64_t us)
{
	return us <= 0 ? 0 : (us + 999999) / 1000000;
}

/* The GCRA parameters of (count per window_ms, burst), clamped to sane
 * values; cap = the largest lease (and take_nowait's credit). */
struct ratelimit_params {
	int64_t count, interval_us, tau_us, burst, cap, idle_us;
};

static void ratelimit__params(const struct ratelimit *limiter, int64_t count, int64_t window_ms,
			      int64_t burst, struct ratelimit_params *out)
{
	if (count < 1)
		count = 1;
	if (window_ms < 1)
		window_ms = 1;
	if (burst < 1)
		burst = 1;
	out->count = count;
	out->burst = burst;
	out->interval_us = window_ms * 1000 / count;
	if (out->interval_us < 1)
		out->interval_us = 1;
	out->tau_us = out->interval_us * (burst - 1);
	out->cap = burst / limiter->options.lease_divisor;
	if (out->cap < 1 || limiter->options.naive)
		out->cap = 1;
	/* Idle this long, the GCRA is full again and every leased slot passed. */
	out->idle_us = window_ms * 1000 > out->tau_us + out->interval_us
			   ? window_ms * 1000
			   : out->tau_us + out->interval_us;
}

/* One exact GCRA decision (virtual scheduling) on *tat_us at now_us:
 * conforming when max(tat, now) - now <= tau, then tat = max(tat, now) + T.
 * Fills allowed, remaining, reset_s, retry_after_s of out. */
static bool ratelimit__gcra(int64_t *tat_us, int64_t now_us, int64_t interval_us, int64_t tau_us,
			    struct ratelimit_decision *out)
{
	int64_t tat = *tat_us > now_us ? *tat_us : now_us;

	if (tat - now_us > tau_us) {
		out->allowed = false;
		out->remaining = 0;
		out->reset_s = ratelimit__ceil_s(tat - now_us);
		out->retry_after_s = ratelimit__ceil_s(tat - tau_us - now_us);
		if (out->retry_after_s < 1)
			out->retry_after_s = 1;
		return false;
	}
	*tat_us = tat + interval_us;
	out->allowed = true;
	out->remaining = (tau_us - (tat - now_us)) / interval_us;
	out->reset_s = ratelimit__ceil_s(*tat_us - now_us);
	out->retry_after_s = 0;
	return true;
}

/* Tokens of entry's leases not spent yet (passed ones included). */
static int64_t ratelimit__unspent(const struct ratelimit_key *entry)
{
	int64_t unspent = 0;

	for (int i = 0; i < entry->leases_held; i++)
		unspent += entry->leases[i].count - entry->leases[i].next;
	return unspent;
}

/* Spends the earliest leased slot that has not passed at server_us (an
 * estimate >= the server's time), dropping the passed ones and spent
 * leases; false when none is left. entry locked. */
static bool ratelimit__spend(struct ratelimit *limiter, struct ratelimit_key *entry,
			     int64_t server_us)
{
	while (entry->leases_held > 0) {
		struct ratelimit_lease *lease = &entry->leases[0];

		while (lease->next < lease->count &&
		       lease->first_us + lease->next * entry->interval_us < server_us) {
			lease->next++;
			entry->lease_expired++;
			STAT_ADD(limiter, tokens_expired, 1);
		}
		if (lease->next < lease->count) {
			lease->next++;
			return true;
		}
		entry->leases[0] = entry->leases[1];
		entry->leases_held--;
	}
	return false;
}

/* Gives back the unspent tails of entry's leases, the later one first
 * (each only when nobody leased after it). entry locked. */
static void ratelimit__give_back_leases(struct ratelimit *limiter, struct ratelimit_key *entry)
{
	for (int i = entry->leases_held - 1; i >= 0; i--) {
		struct ratelimit_lease *lease = &entry->leases[i];
		int64_t unspent = lease->count - lease->next;
		bool returned = false;

		if (unspent < 1 || !limiter->backend.give_back)
			continue;
		if (limiter->backend.give_back(limiter->backend.ctx, entry->key, unspent,
					       entry->interval_us, lease->tat_us, &returned)) {
			STAT_ADD(limiter, backend_errors, 1);
			continue;
		}
		if (returned)
			STAT_ADD(limiter, tokens_given_back, unspent);
	}
	entry->leases_held = 0;
	entry->last_granted = 0;
}

/* A new limit for entry: its local state starts over (the shared state
 * stays). give_back: return the unspent leases first (a backend call). */
static void ratelimit__apply_params(struct ratelimit *limiter, struct ratelimit_key *entry,
				    const struct ratelimit_params *params, bool give_back)
{
	if (entry->interval_us == params->interval_us && entry->tau_us == params->tau_us)
		return;
	if (give_back)
		ratelimit__give_back_leases(limiter, entry);
	entry->leases_held = 0;
	entry->last_granted = 0;
	entry->interval_us = params->interval_us;
	entry->tau_us = params->tau_us;
	entry->lease_size = 1;
	entry->denied_valid = false;
	entry->fallback_tat_us = 0;
}

/* Sizes entry's next lease of `extra` more tokens (docs/ratelimit.md,
 * "Lease sizing") and returns its lead: with leases (cap > 1) the first
 * slot is placed up to cap*T ahead of now so slots stay spendable for a
 * while ("Lead"); with cap 1 it is an exact GCRA. entry locked. */
static int64_t ratelimit__plan_lease(struct ratelimit_key *entry, int64_t cap, int64_t extra)
{
	int64_t lead_us = 0;

	if (entry->last_granted > 0) {
		if (entry->lease_expired == 0 && entry->last_granted >= entry->lease_size)
			entry->lease_size *= 2;
		else if (entry->lease_expired * 2 > entry->last_granted)
			entry->lease_size /= 2;
	}
	if (entry->lease_size > cap)
		entry->lease_size = cap;
	if (entry->lease_size < 1)
		entry->lease_size = 1;
	if (cap > 1) {
		lead_us = cap * entry->interval_us;
		if (lead_us > entry->tau_us - (entry->lease_size + extra - 1) * entry->interval_us)
			lead_us =
			    entry->tau_us - (entry->lease_size + extra - 1) * entry->interval_us;
		if (lead_us < 0)
			lead_us = 0;
	}
	return lead_us;
}

/* Takes a grant of a lease sent at send_local into entry: anchors the
 * server clock estimate at the send time (so it is never below the truth),
 * appends the slots, and sets the denial hint when fewer tokens than
 * lease_size came (the state is saturated: ask again only when a whole
 * lease conforms, the slot after ours + (n-1)*T - tau; no slot is lost
 * meanwhile, docs "Lease sizing"). entry locked. */
static void ratelimit__install(struct ratelimit *limiter, struct ratelimit_key *entry,
			       const struct ratelimit_grant *grant, int64_t send_local,
			       int64_t want)
{
	STAT_ADD(limiter, tokens_leased, grant->granted);
	entry->anchored = true;
	entry->anchor_server_us = grant->now_us;
	entry->anchor_local_us = send_local;
	entry->last_tat_us = grant->tat_us;
	entry->last_granted = grant->granted;
	entry->lease_expired = 0;
	if (grant->granted > 0) {
		if (entry->leases_held == 2) {
			/* Cannot happen (one lease in flight per key); keep the newer. */
			entry->leases[0] = entry->leases[1];
			entry->leases_held = 1;
		}
		entry->leases[entry->leases_held++] = (struct ratelimit_lease){
		    .first_us = grant->first_us, .count = grant->granted, .tat_us = grant->tat_us};
	}
	entry->denied_valid = grant->granted < want && !limiter->options.naive;
	entry->denied_until_local_us =
	    send_local + (grant->tat_us + (entry->lease_size - 1) * entry->interval_us -
			  entry->tau_us - grant->now_us);
}

/* Fills the estimates of out from entry at server time server_us. */
static void ratelimit__estimate(const struct ratelimit_key *entry, int64_t server_us, int64_t burst,
				struct ratelimit_decision *out)
{
	int64_t ahead = entry->last_tat_us - server_us;
	int64_t free_slots = 0;

	if (ahead <= entry->tau_us)
		free_slots = (entry->tau_us - ahead) / entry->interval_us + 1;
	free_slots += ratelimit__unspent(entry);
	if (free_slots > burst)
		free_slots = burst;
	out->remaining = free_slots;
	out->reset_s = ratelimit__ceil_s(ahead);
}

/* The answer to a refused request at now_local: Retry-After from the
 * denial hint (>= 1). */
static void ratelimit__refuse(const struct ratelimit_key *entry, int64_t now_local,
			      struct ratelimit_decision *out)
{
	out->allowed = false;
	out->remaining = 0;
	out->retry_after_s =
	    entry->denied_valid ? ratelimit__ceil_s(entry->denied_until_local_us - now_local) : 1;
	if (out->retry_after_s < 1)
		out->retry_after_s = 1;
}

/* Counts the decision; may_flush: writes counted rejections when a second
 * is due (a backend call on the caller's thread). */
static void ratelimit__count_decision(struct ratelimit *limiter, bool allowed, bool may_flush)
{
	if (allowed)
		STAT_ADD(limiter, allowed, 1);
	else
		STAT_ADD(limiter, denied, 1);
	/* Counted rejections do not wait for the next rejection to be written. */
	if (may_flush && __atomic_load_n(&limiter->pending_rejections, __ATOMIC_RELAXED)) {
		bool due;

		pthread_mutex_lock(&limiter->rejection_lock);
		due = ratelimit__now(limiter) - limiter->last_flush_local_us >= RATELIMIT_FLUSH_US;
		pthread_mutex_unlock(&limiter->rejection_lock);
		if (due)
			ratelimit__flush_rejections(limiter);
	}
}

/* A request that cannot be decided (bad key, no memory, max_keys): let
 * through, and say so. */
static int ratelimit__undecidable(struct ratelimit *limiter, struct ratelimit_decision *out)
{
	STAT_ADD(limiter, backend_errors, 1);
	out->allowed = true;
	STAT_ADD(limiter, allowed, 1);
	return -1;
}

static bool ratelimit__key_ok(const char *key)
{
	return key && key[0] && strlen(key) <= RATELIMIT_KEY_MAX;
}

/* The start of a decision: out cleared with its limit, the decision
 * counted, key's entry looked up, locked and set to this limit (give_back:
 * see apply_params). NULL when key cannot be decided: out then says let
 * through (ratelimit__undecidable). */
static struct ratelimit_key *ratelimit__begin(struct ratelimit *limiter, const char *key,
					      int64_t count, int64_t window_ms, int64_t burst,
					      bool give_back, struct ratelimit_params *params,
					      struct ratelimit_decision *out)
{
	struct ratelimit_key *entry;

	memset(out, 0, sizeof(*out));
	ratelimit__params(limiter, count, window_ms, burst, params);
	out->limit = params->count;
	STAT_ADD(limiter, decisions, 1);
	if (!ratelimit__key_ok(key) || !(entry = ratelimit__entry(limiter, key))) {
		ratelimit__undecidable(limiter, out);
		return NULL;
	}
	pthread_mutex_lock(&entry->lock);
	ratelimit__apply_params(limiter, entry, params, give_back);
	return entry;
}

int ratelimit__take(struct ratelimit *limiter, const char *key, int64_t count, int64_t window_ms,
		    int64_t burst, struct ratelimit_decision *out)
{
	struct ratelimit_params params;
	struct ratelimit_key *entry;
	struct ratelimit_grant grant;
	int64_t now_local, server_us, send_local, lead_us;
	int rc = 0;

	/* A local limiter has nothing to wait for. */
	if (!limiter->backend.lease)
		return ratelimit__take_nowait(limiter, key, count, window_ms, burst, out);
	/* A changed limit (an admin edit) starts over with it. */
	entry = ratelimit__begin(limiter, key, count, window_ms, burst, true, &params, out);
	if (!entry)
		return -1;
	now_local = ratelimit__now(limiter);
	server_us = entry->anchor_server_us + (now_local - entry->anchor_local_us);

	/* 1. A slot of the current lease that has not passed yet. */
	if (ratelimit__spend(limiter, entry, server_us)) {
		out->allowed = true;
		goto decided;
	}
	/* 2. Denied recently and the next conforming time has not come. */
	if (entry->denied_valid && now_local < entry->denied_until_local_us) {
		out->allowed = false;
		goto decided;
	}
	/* 3. A new lease, sized by how the previous one went. */
	lead_us = ratelimit__plan_lease(entry, params.cap, 0);
	send_local = ratelimit__now(limiter);
	STAT_ADD(limiter, backend_leases, 1);
	if (limiter->backend.lease(limiter->backend.ctx, key, entry->lease_size, params.interval_us,
				   params.tau_us, lead_us, &grant)) {
		STAT_ADD(limiter, backend_errors, 1);
		entry->last_granted = 0;
		out->allowed = true;
		rc = -1;
		out->remaining = 0;
		goto unlock;
	}
	ratelimit__install(limiter, entry, &grant, send_local, entry->lease_size);
	server_us = grant.now_us + (ratelimit__now(limiter) - send_local);
	if (grant.granted > 0) {
		/* Slot 0 (>= now, <= now + tau) is spent at the statement's time. */
		CHECK(entry->leases_held > 0);
		entry->leases[entry->leases_held - 1].next = 1;
		out->allowed = true;
	} else {
		out->allowed = false;
	}
decided:
	ratelimit__estimate(entry, server_us, params.burst, out);
	if (!out->allowed)
		ratelimit__refuse(entry, now_local, out);
unlock:
	pthread_mutex_unlock(&entry->lock);
	ratelimit__release(entry);
	ratelimit__count_decision(limiter, out->allowed, true);
	return rc;
}

/* Hands entry to the background thread for a lease (entry locked, not
 * queued). false when the queue is full. */
static bool ratelimit__queue_refill(struct ratelimit *limiter, struct ratelimit_key *entry)
{
	bool queued = false;

	pthread_mutex_lock(&limiter->background_lock);
	if (limiter->refill_count < limiter->options.refill_queue && limiter->background_started &&
	    !limiter->background_stop) {
		limiter->refills[(limiter->refill_head + limiter->refill_count) %
				 limiter->options.refill_queue] = entry;
		limiter->refill_count++;
		queued = true;
		pthread_cond_signal(&limiter->background_wake);
	}
	pthread_mutex_unlock(&limiter->background_lock);
	entry->refill_queued = queued;
	entry->refill_since_local_us = ratelimit__now(limiter);
	STAT_ADD(limiter, refills_queued, queued ? 1 : 0);
	STAT_ADD(limiter, refills_dropped, queued ? 0 : 1);
	return queued;
}

/* The background thread's lease for a queued entry: debt + lease size
 * tokens. The debt owed when the lease was sent is paid with its first
 * slots (each >= the statement's time >= those admissions); debt incurred
 * while it was out is paid with slots that have not passed, spent as a
 * request would spend them (docs "Non-blocking decisions"); the rest is
 * leased locally. When requests came meanwhile and the tokens already run
 * low, the next lease is queued at once. */
static void ratelimit__refill(struct ratelimit *limiter, struct ratelimit_key *entry)
{
	struct ratelimit_grant grant;
	int64_t interval_us, tau_us, lead_us, want, send_local, debt_at_send;
	int failed;

	pthread_mutex_lock(&entry->lock);
	interval_us = entry->interval_us;
	tau_us = entry->tau_us;
	debt_at_send = entry->debt;
	lead_us = ratelimit__plan_lease(entry, entry->cap, debt_at_send);
	want = debt_at_send + entry->lease_size;
	if (want > tau_us / interval_us + 1)
		want = tau_us / interval_us + 1;
	send_local = ratelimit__now(limiter);
	pthread_mutex_unlock(&entry->lock);

	STAT_ADD(limiter, backend_leases, 1);
	failed = limiter->backend.lease(limiter->backend.ctx, entry->key, want, interval_us, tau_us,
					lead_us, &grant);

	pthread_mutex_lock(&entry->lock);
	entry->refill_queued = false;
	if (failed) {
		STAT_ADD(limiter, backend_errors, 1);
		entry->backend_failed = true;
		entry->retry_local_us = ratelimit__now(limiter) + RATELIMIT_RETRY_US;
		entry->last_granted = 0;
		__atomic_store_n(&limiter->backend_failed_until_us, entry->retry_local_us,
				 __ATOMIC_RELAXED);
	} else if (entry->interval_us == interval_us && entry->tau_us == tau_us) {
		int64_t server_us,
		    paid = grant.granted < debt_at_send ? grant.granted : debt_at_send;

		entry->backend_failed = false;
		__atomic_store_n(&limiter->backend_failed_until_us, 0, __ATOMIC_RELAXED);
		ratelimit__install(limiter, entry, &grant, send_local, want);
		if (paid > 0) {
			/* paid <= granted: install kept this lease */
			CHECK(entry->leases_held > 0);
			entry->leases[entry->leases_held - 1].next = paid;
			entry->debt -= paid;
		}
		CHECK(entry->debt >= 0);
		server_us = grant.now_us + (ratelimit__now(limiter) - send_local);
		while (entry->debt > 0 && ratelimit__spend(limiter, entry, server_us))
			entry->debt--;
		if (!entry->denied_valid && entry->leases_held < 2 &&
		    entry->last_used_local_us >= send_local &&
		    (entry->debt > 0 || ratelimit__unspent(entry) <= entry->lease_size / 2))
			ratelimit__queue_refill(limiter, entry);
	} else {
		/* The limit changed while leasing: those slots stay unspent. */
		entry->backend_failed = false;
		STAT_ADD(limiter, tokens_leased, grant.granted);
		STAT_ADD(limiter, tokens_expired, grant.granted);
	}
	pthread_mutex_unlock(&entry->lock);
	STAT_ADD(limiter, refills_done, 1);
}

int ratelimit__take_nowait(struct ratelimit *limiter, const char *key, int64_t count,
			   int64_t window_ms, int64_t burst, struct ratelimit_decision *out)
{
	struct ratelimit_params params;
	struct ratelimit_key *entry;
	int64_t now_local, server_us, unspent;
	bool local = !limiter->backend.lease;
	int rc = 0;

	entry = ratelimit__begin(limiter, key, count, window_ms, burst, false, &params, out);
	if (!entry)
		return -1;
	entry->nowait = true;
	entry->cap = params.cap;
	entry->idle_us = params.idle_us;
	now_local = ratelimit__now(limiter);
	entry->last_used_local_us = now_local;
	server_us = entry->anchor_server_us + (now_local - entry->anchor_local_us);

	/* 1. A leased slot that has not passed. */
	if (!local && ratelimit__spend(limiter, entry, server_us)) {
		out->allowed = true;
		ratelimit__estimate(entry, server_us, params.burst, out);
		goto admitted;
	}
	/* 2. The shared state is saturated until a whole lease conforms. */
	if (!local && entry->denied_valid && now_local < entry->denied_until_local_us) {
		ratelimit__estimate(entry, server_us, params.burst, out);
		ratelimit__refuse(entry, now_local, out);
		goto unlock;
	}
	/* 3. No shared state (local limiter; the backend failed for this key
	 * or, within the last second, for any; or this key's lease is out for
	 * longer than 100 ms): this instance's own GCRA. */
	if (local || entry->backend_failed ||
	    now_local < __atomic_load_n(&limiter->backend_failed_until_us, __ATOMIC_RELAXED) ||
	    (entry->refill_queued &&
	     now_local - entry->refill_since_local_us > RATELIMIT_SLOW_US)) {
		if (!local)
			STAT_ADD(limiter, decisions_fallback, 1);
		ratelimit__gcra(&entry->fallback_tat_us, now_local, params.interval_us,
				params.tau_us, out);
		rc = -1;
		goto unlock;
	}
	/* 4. Credit, paid by the next lease. */
	if (entry->debt < params.cap) {
		entry->debt++;
		STAT_ADD(limiter, decisions_on_credit, 1);
		out->allowed = true;
		if (entry->anchored)
			ratelimit__estimate(entry, server_us, params.burst, out);
		else
			out->remaining = params.burst - 1 - entry->debt;
		if (out->remaining < 0)
			out->remaining = 0;
		goto admitted;
	}
	/* 5. Credit spent, a lease is on its way. */
	if (entry->anchored)
		ratelimit__estimate(entry, server_us, params.burst, out);
	ratelimit__refuse(entry, now_local, out);
	goto unlock;
admitted:
	/* The local GCRA counts every admission, so an outage starting now
	 * continues from this instance's recent traffic. */
	entry->fallback_tat_us =
	    (entry->fallback_tat_us > now_local ? entry->fallback_tat_us : now_local) +
	    params.interval_us;
unlock:
	if (!local && !entry->refill_queued && entry->leases_held < 2 &&
	    !(entry->denied_valid && now_local < entry->denied_until_local_us) &&
	    !(entry->backend_failed && now_local < entry->retry_local_us)) {
		unspent = ratelimit__unspent(entry);
		if (entry->debt > 0 || unspent <= entry->lease_size / 2)
			ratelimit__queue_refill(limiter, entry);
	}
	pthread_mutex_unlock(&entry->lock);
	ratelimit__release(entry);
	/* Pending rejection counts are the background thread's to write. */
	ratelimit__count_decision(limiter, out->allowed, false);
	return rc;
}

/* Whether the idle take_nowait entry may go (entry locked): idle for
 * max(window, burst * T), nothing in flight, and no debt unless the backend
 * is failing (a debt is then forgiven). */
static bool ratelimit__evictable(struct ratelimit *limiter, struct ratelimit_key *entry,
				 int64_t now_local)
{
	if (!entry->nowait || entry->refill_queued ||
	    __atomic_load_n(&entry->users, __ATOMIC_ACQUIRE) > 0 ||
	    now_local - entry->last_used_local_us <= entry->idle_us)
		return false;
	if (entry->debt > 0 && !entry->backend_failed && limiter->backend.lease) {
		/* Let a lease pay it first (the key is quiet: it will be granted). */
		ratelimit__queue_refill(limiter, entry);
		return false;
	}
	if (limiter->backend.lease)
		STAT_ADD(limiter, debt_forgiven, entry->debt);
	return true;
}

void ratelimit__sweep(struct ratelimit *limiter)
{
	int64_t now_local = ratelimit__now(limiter);

	/* One bucket at a time: the lock is held only briefly. */
	for (int b = 0; b < RATELIMIT_BUCKETS; b++) {
		struct ratelimit_key **link = &limiter->buckets[b];

		pthread_mutex_lock(&limiter->table_lock);
		while (*link) {
			struct ratelimit_key *entry = *link;
			bool evict = false;

			/* A busy entry (a take waiting on the backend) is left alone. */
			if (pthread_mutex_trylock(&entry->lock) == 0) {
				evict = ratelimit__evictable(limiter, entry, now_local);
				pthread_mutex_unlock(&entry->lock);
			}
			if (!evict) {
				link = &entry->next_in_bucket;
				continue;
			}
			*link = entry->next_in_bucket;
			pthread_mutex_destroy(&entry->lock);
			free(entry);
			STAT_ADD(limiter, keys, -1);
			STAT_ADD(limiter, keys_evicted, 1);
		}
		pthread_mutex_unlock(&limiter->table_lock);
	}
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
	flush = !counted ||
		ratelimit__now(limiter) - limiter->last_flush_local_us >= RATELIMIT_FLUSH_US;
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
			ratelimit__give_back_leases(limiter, entry);
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

/* Stops the background thread (after the refill it is doing, if any). */
static void ratelimit__stop_background(struct ratelimit *limiter)
{
	if (!limiter->background_started)
		return;
	pthread_mutex_lock(&limiter->background_lock);
	limiter->background_stop = true;
	pthread_cond_signal(&limiter->background_wake);
	pthread_mutex_unlock(&limiter->background_lock);
	pthread_join(limiter->background, NULL);
	limiter->background_started = false;
}

static void ratelimit__free(struct ratelimit *limiter)
{
	ratelimit__stop_background(limiter);
	pthread_mutex_destroy(&limiter->background_lock);
	pthread_cond_destroy(&limiter->background_wake);
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
	free(limiter->refills);
	free(limiter);
}

void ratelimit__close(struct ratelimit *limiter)
{
	if (!limiter)
		return;
	ratelimit__stop_background(limiter);
	ratelimit__flush(limiter);
	ratelimit__free(limiter);
}

void ratelimit__abandon(struct ratelimit *limiter)
{
	if (limiter)
		ratelimit__free(limiter);
}

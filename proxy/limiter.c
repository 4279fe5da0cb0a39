/* limiter: sharded in-process GCRA (see limiter.h). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "limiter.h"

#define LIMITER_SHARDS 64
#define LIMITER_BUCKETS 1024 /* per shard */
#define LIMITER_SWEEP_AT 8192 /* entries per shard before a sweep */

struct limiter_entry {
	struct limiter_entry *next;
	uint64_t tat_us; /* theoretical arrival time */
	char key[LIMITER_KEY_MAX + 1];
};

struct limiter_shard {
	pthread_mutex_t lock;
	size_t count;
	struct limiter_entry *buckets[LIMITER_BUCKETS];
};

struct limiter {
	int64_t limit;
	uint64_t window_us, interval_us;
	struct limiter_shard shards[LIMITER_SHARDS];
};

struct limiter *limiter__create(int64_t limit, int64_t window_s)
{
	struct limiter *limiter;

	if (limit < 1 || window_s < 1)
		return NULL;
	limiter = calloc(1, sizeof(*limiter));
	if (!limiter)
		return NULL;
	limiter->limit = limit;
	limiter->window_us = (uint64_t)window_s * 1000000u;
	limiter->interval_us = limiter->window_us / (uint64_t)limit;
	if (!limiter->interval_us)
		limiter->interval_us = 1;
	for (int i = 0; i < LIMITER_SHARDS; i++)
		pthread_mutex_init(&limiter->shards[i].lock, NULL);
	return limiter;
}

void limiter__destroy(struct limiter *limiter)
{
	if (!limiter)
		return;
	for (int i = 0; i < LIMITER_SHARDS; i++) {
		struct limiter_shard *shard = &limiter->shards[i];

		for (int b = 0; b < LIMITER_BUCKETS; b++) {
			struct limiter_entry *e = shard->buckets[b], *next;

			for (; e; e = next) {
				next = e->next;
				free(e);
			}
		}
		pthread_mutex_destroy(&shard->lock);
	}
	free(limiter);
}

/* FNV-1a */
static uint64_t limiter__hash(const char *key)
{
	uint64_t h = 1469598103934665603ull;

	for (; *key; key++)
		h = (h ^ (unsigned char)*key) * 1099511628211ull;
	return h;
}

/* Drops entries whose quota is whole again (tat in the past). */
static void limiter__sweep(struct limiter_shard *shard, uint64_t now_us)
{
	for (int b = 0; b < LIMITER_BUCKETS; b++) {
		struct limiter_entry **link = &shard->buckets[b];

		while (*link) {
			struct limiter_entry *e = *link;

			if (e->tat_us <= now_us) {
				*link = e->next;
				free(e);
				shard->count--;
			} else {
				link = &e->next;
			}
		}
	}
}

static uint64_t limiter__ceil_s(uint64_t us)
{
	return (us + 999999u) / 1000000u;
}

void limiter__check(struct limiter *limiter, const char *key_in, uint64_t now_us,
		    struct limiter_decision *out)
{
	char key[LIMITER_KEY_MAX + 1];
	uint64_t hash, tat, new_tat;
	struct limiter_shard *shard;
	struct limiter_entry *e;

	strncpy(key, key_in, LIMITER_KEY_MAX);
	key[LIMITER_KEY_MAX] = '\0';
	hash = limiter__hash(key);
	shard = &limiter->shards[hash % LIMITER_SHARDS];
	out->limit = limiter->limit;

	pthread_mutex_lock(&shard->lock);
	for (e = shard->buckets[(hash >> 8) % LIMITER_BUCKETS]; e; e = e->next)
		if (strcmp(e->key, key) == 0)
			break;
	tat = e && e->tat_us > now_us ? e->tat_us : now_us;
	new_tat = tat + limiter->interval_us;
	if (new_tat - now_us > limiter->window_us) {
		/* GCRA: the cell would arrive before its theoretical time minus tolerance */
		out->allowed = false;
		out->remaining = 0;
		out->retry_after_s = (int64_t)limiter__ceil_s(new_tat - now_us - limiter->window_us);
		if (out->retry_after_s < 1)
			out->retry_after_s = 1;
		out->reset_s = (int64_t)limiter__ceil_s(tat - now_us);
		goto out;
	}
	if (!e) {
		if (shard->count >= LIMITER_SWEEP_AT)
			limiter__sweep(shard, now_us);
		e = calloc(1, sizeof(*e));
		if (!e) {
			/* no memory: admit rather than lock every client out */
			out->allowed = true;
			out->remaining = 0;
			out->reset_s = 0;
			out->retry_after_s = 0;
			goto out;
		}
		memcpy(e->key, key, sizeof(key));
		e->next = shard->buckets[(hash >> 8) % LIMITER_BUCKETS];
		shard->buckets[(hash >> 8) % LIMITER_BUCKETS] = e;
		shard->count++;
	}
	e->tat_us = new_tat;
	out->allowed = true;
	out->remaining = (int64_t)((limiter->window_us - (new_tat - now_us)) / limiter->interval_us);
	out->reset_s = (int64_t)limiter__ceil_s(new_tat - now_us);
	out->retry_after_s = 0;
out:
	pthread_mutex_unlock(&shard->lock);
}

/* ratelimit backends: memory (the lease rule of the PostgreSQL backend on
 * an injectable clock, for unit tests and single-process users). The
 * PostgreSQL backend lives in storage/ (storage_ratelimit__open_limiter). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "warren/log.h"
#include "warren/ratelimit.h"

/* ---- memory ---- */

struct memory_key {
	struct memory_key *next;
	char *key;
	int64_t tat_us;
};

struct memory_store {
	pthread_mutex_t lock;
	struct memory_key *keys;
	int64_t (*clock_us)(void *ctx);
	void *clock_ctx;
};

static int64_t memory__monotonic(void *ctx)
{
	struct timespec now;

	(void)ctx;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

static struct memory_key *memory__find(struct memory_store *store, const char *key)
{
	struct memory_key *entry;

	for (entry = store->keys; entry; entry = entry->next)
		if (!strcmp(entry->key, key))
			return entry;
	entry = calloc(1, sizeof(*entry));
	if (!entry || !(entry->key = strdup(key))) {
		free(entry);
		return NULL;
	}
	entry->next = store->keys;
	store->keys = entry;
	return entry;
}

/* The lease rule of storage/ratelimit_queries.c (docs/ratelimit.md), in C. */
static int memory__lease(void *ctx, const char *key, int64_t want, int64_t interval_us,
			 int64_t tau_us, int64_t lead_us, struct ratelimit_grant *out)
{
	struct memory_store *store = ctx;
	struct memory_key *entry;
	int64_t now, first, granted;

	pthread_mutex_lock(&store->lock);
	entry = memory__find(store, key);
	if (!entry) {
		pthread_mutex_unlock(&store->lock);
		return -1;
	}
	now = store->clock_us(store->clock_ctx);
	first = entry->tat_us > now + lead_us ? entry->tat_us : now + lead_us;
	if (first - tau_us > now)
		granted = 0;
	else
		granted = (now + tau_us - first) / interval_us + 1;
	if (granted > want)
		granted = want;
	entry->tat_us = first + granted * interval_us;
	out->granted = granted;
	out->first_us = first;
	out->tat_us = entry->tat_us;
	out->now_us = now;
	pthread_mutex_unlock(&store->lock);
	return 0;
}

static int memory__give_back(void *ctx, const char *key, int64_t count, int64_t interval_us,
			     int64_t tat_us, bool *returned)
{
	struct memory_store *store = ctx;
	struct memory_key *entry;

	pthread_mutex_lock(&store->lock);
	entry = memory__find(store, key);
	*returned = entry && entry->tat_us == tat_us;
	if (*returned)
		entry->tat_us -= count * interval_us;
	pthread_mutex_unlock(&store->lock);
	return entry ? 0 : -1;
}

static int memory__record_rejections(void *ctx, const char *team_id, const char *limit_name,
				     int64_t count)
{
	(void)ctx;
	log_debug("ratelimit: %lld rejections of %s for team %s", (long long)count, limit_name,
		  team_id);
	return 0;
}

static void memory__close(void *ctx)
{
	struct memory_store *store = ctx;
	struct memory_key *entry, *next;

	if (!store)
		return;
	for (entry = store->keys; entry; entry = next) {
		next = entry->next;
		free(entry->key);
		free(entry);
	}
	pthread_mutex_destroy(&store->lock);
	free(store);
}

int ratelimit__memory_backend(int64_t (*server_clock_us)(void *ctx), void *clock_ctx,
			      struct ratelimit_backend *out)
{
	struct memory_store *store = calloc(1, sizeof(*store));

	if (!store)
		return -ENOMEM;
	pthread_mutex_init(&store->lock, NULL);
	store->clock_us = server_clock_us ? server_clock_us : memory__monotonic;
	store->clock_ctx = clock_ctx;
	*out = (struct ratelimit_backend){memory__lease, memory__give_back,
					  memory__record_rejections, memory__close, store};
	return 0;
}

void ratelimit__memory_backend_free(struct ratelimit_backend *backend)
{
	memory__close(backend->ctx);
	backend->ctx = NULL;
}

/* lookup: TTL cache over storage__sandbox_get_internal (see lookup.h). */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lookup.h"
#include "warren/check.h"
#include "warren/clock.h"
#include "warren/ids.h"
#include "warren/log.h"
#include "warren/storage.h"

#define LOOKUP_BUCKETS	     4096
#define LOOKUP_SWEEP_AT	     65536
#define LOOKUP_REFRESH_QUEUE 1024

struct lookup_entry {
	struct lookup_entry *next;
	char sandbox_id[ROUTE_SANDBOX_ID_MAX + 1];
	bool cached; /* status/route hold a fetched answer */
	enum lookup_status status;
	uint64_t expires_ms;
	struct lookup_route route;
	int connections; /* open upstream connections */
	bool refreshing; /* queued for the refresher thread */
};

struct lookup {
	struct storage_pool *pool;
	struct lookup_config config;
	char token_seed[256];
	pthread_mutex_t lock;
	size_t count;
	struct lookup_entry *buckets[LOOKUP_BUCKETS];
	/* refresh-ahead: stale running entries are served while this thread
	 * reloads them, so a worker thread never waits for the database for
	 * a sandbox it already knows */
	pthread_t refresher;
	bool refresher_started, stopping;
	pthread_cond_t wake;
	lookup_wake_fn waker; /* autoResume (lookup__set_waker), NULL: none */
	void *waker_opaque;
	char queue[LOOKUP_REFRESH_QUEUE][ROUTE_SANDBOX_ID_MAX + 1];
	size_t queue_head, queue_len;
};

static enum lookup_status lookup__fetch(struct lookup *lookup, const char *id,
					struct lookup_route *route, bool may_wake);
static struct lookup_entry *lookup__find(struct lookup *lookup, const char *id);

static void *lookup__refresher(void *arg)
{
	struct lookup *lookup = arg;
	char id[ROUTE_SANDBOX_ID_MAX + 1];

	pthread_mutex_lock(&lookup->lock);
	for (;;) {
		struct lookup_route route;
		enum lookup_status status;
		struct lookup_entry *e;

		while (!lookup->stopping && !lookup->queue_len)
			pthread_cond_wait(&lookup->wake, &lookup->lock);
		if (lookup->stopping)
			break;
		memcpy(id, lookup->queue[lookup->queue_head], sizeof(id));
		lookup->queue_head = (lookup->queue_head + 1) % LOOKUP_REFRESH_QUEUE;
		lookup->queue_len--;
		pthread_mutex_unlock(&lookup->lock);

		memset(&route, 0, sizeof(route));
		status = lookup__fetch(lookup, id, &route, false);

		pthread_mutex_lock(&lookup->lock);
		e = lookup__find(lookup, id);
		if (!e)
			continue;
		e->refreshing = false;
		if (status == LOOKUP_UNAVAILABLE)
			continue; /* stays stale; the next request asks again */
		e->cached = true;
		e->status = status;
		e->route = route;
		e->expires_ms =
		    clock__monotonic_ms() +
		    (status == LOOKUP_OK ? lookup->config.ttl_ms : lookup->config.negative_ttl_ms);
	}
	pthread_mutex_unlock(&lookup->lock);
	return NULL;
}

struct lookup *lookup__create(struct storage_pool *pool, const struct lookup_config *config)
{
	struct lookup *lookup = calloc(1, sizeof(*lookup));

	if (!lookup)
		return NULL;
	lookup->pool = pool;
	lookup->config = *config;
	if (lookup->config.max_connections < 1)
		lookup->config.max_connections = 1;
	strncpy(lookup->token_seed, config->token_seed ? config->token_seed : "",
		sizeof(lookup->token_seed) - 1);
	lookup->config.token_seed = lookup->token_seed;
	pthread_mutex_init(&lookup->lock, NULL);
	pthread_cond_init(&lookup->wake, NULL);
	if (pthread_create(&lookup->refresher, NULL, lookup__refresher, lookup) == 0)
		lookup->refresher_started = true;
	return lookup;
}

void lookup__destroy(struct lookup *lookup)
{
	if (!lookup)
		return;
	if (lookup->refresher_started) {
		pthread_mutex_lock(&lookup->lock);
		lookup->stopping = true;
		pthread_cond_signal(&lookup->wake);
		pthread_mutex_unlock(&lookup->lock);
		pthread_join(lookup->refresher, NULL);
	}
	pthread_cond_destroy(&lookup->wake);
	for (int b = 0; b < LOOKUP_BUCKETS; b++) {
		struct lookup_entry *e = lookup->buckets[b], *next;

		for (; e; e = next) {
			next = e->next;
			free(e);
		}
	}
	pthread_mutex_destroy(&lookup->lock);
	free(lookup);
}

static unsigned lookup__bucket(const char *id)
{
	uint32_t h = 2166136261u;

	for (; *id; id++)
		h = (h ^ (unsigned char)*id) * 16777619u;
	return h % LOOKUP_BUCKETS;
}

/* Caller holds the lock. */
static struct lookup_entry *lookup__find(struct lookup *lookup, const char *id)
{
	for (struct lookup_entry *e = lookup->buckets[lookup__bucket(id)]; e; e = e->next)
		if (strcmp(e->sandbox_id, id) == 0)
			return e;
	return NULL;
}

/* Caller holds the lock: drops expired entries nobody is connected to. */
static void lookup__sweep(struct lookup *lookup, uint64_t now_ms)
{
	for (int b = 0; b < LOOKUP_BUCKETS; b++) {
		struct lookup_entry **link = &lookup->buckets[b];

		while (*link) {
			struct lookup_entry *e = *link;

			if (e->connections == 0 && !e->refreshing &&
			    (!e->cached || e->expires_ms + lookup->config.stale_ms <= now_ms)) {
				*link = e->next;
				free(e);
				lookup->count--;
			} else {
				link = &e->next;
			}
		}
	}
}

/* Caller holds the lock. NULL on no memory. */
static struct lookup_entry *lookup__find_or_add(struct lookup *lookup, const char *id)
{
	struct lookup_entry *e = lookup__find(lookup, id);
	unsigned bucket;

	if (e)
		return e;
	if (lookup->count >= LOOKUP_SWEEP_AT)
		lookup__sweep(lookup, clock__monotonic_ms());
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	strncpy(e->sandbox_id, id, ROUTE_SANDBOX_ID_MAX);
	bucket = lookup__bucket(id);
	e->next = lookup->buckets[bucket];
	lookup->buckets[bucket] = e;
	lookup->count++;
	return e;
}

static bool lookup__parse_address(const char *text, struct lookup_route *route)
{
	struct sockaddr_in *v4 = (struct sockaddr_in *)&route->address;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&route->address;

	memset(&route->address, 0, sizeof(route->address));
	if (inet_pton(AF_INET, text, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		route->address_len = sizeof(*v4);
		return true;
	}
	if (inet_pton(AF_INET6, text, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		route->address_len = sizeof(*v6);
		return true;
	}
	return false;
}

/* E2B's autoResume: asks the paused sandbox's worker to resume it and
 * waits on this thread (as a cache miss waits for its query) until the
 * row says running, at most wake_timeout_ms. True with *row reloaded
 * when it runs. */
static bool lookup__wake(struct lookup *lookup, struct storage_sandbox *row)
{
	char id[STORAGE_SANDBOX_ID_LEN + 1];
	uint64_t deadline = clock__monotonic_ms() + lookup->config.wake_timeout_ms;
	struct storage_error err;
	lookup_wake_fn waker;
	void *opaque;

	pthread_mutex_lock(&lookup->lock);
	waker = lookup->waker;
	opaque = lookup->waker_opaque;
	pthread_mutex_unlock(&lookup->lock);
	if (!waker || !row->host_id[0] || waker(opaque, row->id, row->team_id, row->host_id))
		return false;
	snprintf(id, sizeof(id), "%s", row->id);
	while (clock__monotonic_ms() < deadline) {
		usleep(5000);
		storage__sandbox_clear(row);
		if (storage__sandbox_get_internal(lookup->pool, id, row, &err))
			return false;
		if (row->state == STORAGE_SANDBOX_RUNNING)
			return true;
		if (row->state != STORAGE_SANDBOX_PAUSED && row->state != STORAGE_SANDBOX_RESUMING)
			return false;
	}
	log_warn("sandbox %s: not resumed within %llu ms (autoResume)", id,
		 (unsigned long long)lookup->config.wake_timeout_ms);
	return false;
}

void lookup__set_waker(struct lookup *lookup, lookup_wake_fn waker, void *opaque)
{
	pthread_mutex_lock(&lookup->lock);
	lookup->waker = waker;
	lookup->waker_opaque = opaque;
	pthread_mutex_unlock(&lookup->lock);
}

/* Asks PostgreSQL; no lock held. may_wake: a request is waiting (not the
 * refresher), so a paused sandbox with autoResume is woken. */
static enum lookup_status lookup__fetch(struct lookup *lookup, const char *id,
					struct lookup_route *route, bool may_wake)
{
	struct storage_sandbox row;
	struct storage_error err;
	enum lookup_status status = LOOKUP_NOT_FOUND;
	int rc;

	memset(&row, 0, sizeof(row));
	rc = storage__sandbox_get_internal(lookup->pool, id, &row, &err);
	if (rc == STORAGE_ERR_NOT_FOUND || rc == STORAGE_ERR_INVALID)
		return LOOKUP_NOT_FOUND;
	if (rc != STORAGE_OK) {
		log_warn("sandbox %s lookup failed: %s", id, err.message);
		return LOOKUP_UNAVAILABLE;
	}
	if (may_wake && row.state == STORAGE_SANDBOX_PAUSED && row.auto_resume &&
	    !lookup__wake(lookup, &row))
		goto out;
	if (row.state != STORAGE_SANDBOX_RUNNING || !row.slot_address[0])
		goto out;
	if (!lookup__parse_address(row.slot_address, route)) {
		log_warn("sandbox %s has an unusable slot address '%s'", id, row.slot_address);
		goto out;
	}
	route->allow_public_traffic = row.allow_public_traffic;
	snprintf(route->mask_request_host, sizeof(route->mask_request_host), "%s",
		 row.mask_request_host);
	tokens__traffic_token(lookup->config.token_seed, id, route->traffic_token);
	status = LOOKUP_OK;
out:
	storage__sandbox_clear(&row);
	return status;
}

enum lookup_status lookup__get(struct lookup *lookup, const char *sandbox_id,
			       struct lookup_route *out)
{
	uint64_t now_ms = clock__monotonic_ms();
	struct lookup_entry *e;
	enum lookup_status status;
	struct lookup_route route;

	/* ids warren never makes cost no query and no cache entry */
	if (!ids__is_sandbox_id(sandbox_id))
		return LOOKUP_NOT_FOUND;
	pthread_mutex_lock(&lookup->lock);
	e = lookup__find(lookup, sandbox_id);
	if (e && e->cached && e->expires_ms > now_ms) {
		status = e->status;
		if (status == LOOKUP_OK)
			*out = e->route;
		pthread_mutex_unlock(&lookup->lock);
		return status;
	}
	/* a known running sandbox, a little stale: serve it, refresh behind */
	if (e && e->cached && e->status == LOOKUP_OK && lookup->refresher_started &&
	    e->expires_ms + lookup->config.stale_ms > now_ms) {
		if (!e->refreshing && lookup->queue_len < LOOKUP_REFRESH_QUEUE) {
			size_t tail =
			    (lookup->queue_head + lookup->queue_len) % LOOKUP_REFRESH_QUEUE;

			memcpy(lookup->queue[tail], e->sandbox_id, sizeof(lookup->queue[tail]));
			lookup->queue_len++;
			e->refreshing = true;
			pthread_cond_signal(&lookup->wake);
		}
		*out = e->route;
		pthread_mutex_unlock(&lookup->lock);
		return LOOKUP_OK;
	}
	pthread_mutex_unlock(&lookup->lock);

	memset(&route, 0, sizeof(route));
	status = lookup__fetch(lookup, sandbox_id, &route, true);
	if (status == LOOKUP_UNAVAILABLE)
		return status;
	pthread_mutex_lock(&lookup->lock);
	e = lookup__find_or_add(lookup, sandbox_id);
	if (e) {
		e->cached = true;
		e->status = status;
		e->route = route;
		e->expires_ms = now_ms + (status == LOOKUP_OK ? lookup->config.ttl_ms
							      : lookup->config.negative_ttl_ms);
	}
	pthread_mutex_unlock(&lookup->lock);
	if (status == LOOKUP_OK)
		*out = route;
	return status;
}

bool lookup__acquire(struct lookup *lookup, const char *sandbox_id)
{
	struct lookup_entry *e;
	bool ok = false;

	pthread_mutex_lock(&lookup->lock);
	e = lookup__find_or_add(lookup, sandbox_id);
	if (e && e->connections < lookup->config.max_connections) {
		e->connections++;
		ok = true;
	}
	pthread_mutex_unlock(&lookup->lock);
	return ok;
}

void lookup__release(struct lookup *lookup, const char *sandbox_id)
{
	struct lookup_entry *e;

	pthread_mutex_lock(&lookup->lock);
	e = lookup__find(lookup, sandbox_id);
	/* acquired: the entry is kept (the sweep skips connected ones) */
	CHECK(e && e->connections > 0);
	e->connections--;
	pthread_mutex_unlock(&lookup->lock);
}

void lookup__invalidate(struct lookup *lookup, const char *sandbox_id)
{
	struct lookup_entry *e;

	pthread_mutex_lock(&lookup->lock);
	e = lookup__find(lookup, sandbox_id);
	if (e)
		e->cached = false;
	pthread_mutex_unlock(&lookup->lock);
}

/* warm_pool: sandboxes started ahead of their creates (warm_pool.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent_client.h"
#include "create_pool.h"
#include "warm_pool.h"
#include "warren/clock.h"
#include "warren/ids.h"
#include "warren/log.h"
#include "warren/templates.h"
#include "worker.h"

#define WARM_TEMPLATES_MAX 16
#define WARM_COUNT_MAX	   1000
#define WARM_YIELD_NS	   (20ull * 1000 * 1000) /* creates in hand: look again */

struct warm_entry {
	struct warm_sandbox sandbox;
	char content_hash[65]; /* the template it was started from */
	struct warm_entry *next;
};

struct warm_target {
	char template_id[TEMPLATES_NAME_MAX + 1];
	size_t want;
	size_t ready;
	struct warm_entry *entries;
};

struct warm_pool {
	struct worker *worker;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct warm_target targets[WARM_TEMPLATES_MAX];
	size_t target_count;
	uint32_t connection_limit; /* of the default policy the warm slots get */
	bool stopping;
	bool joined;
	pthread_t thread;
};

/* Stops one warm sandbox and gives its slot back. */
static void warm__destroy(struct warm_pool *pool, struct warm_sandbox *sandbox)
{
	runtime__stop(sandbox->instance);
	if (pool->worker->net && sandbox->slot >= 0)
		net_pool__release(pool->worker->net, sandbox->slot);
}

/* Starts one sandbox of template_id up to a healthy agent; 0 with *out
 * filled, -1 (logged) otherwise. */
static int warm__start_one(struct warm_pool *pool, const char *template_id,
			   struct warm_sandbox *out)
{
	struct worker *worker = pool->worker;
	struct net_policy *policy = NULL;
	char reason[512] = "", address[INET_ADDRSTRLEN] = "127.0.0.1";
	int rc = -1;

	memset(out, 0, sizeof(*out));
	out->slot = -1;
	if (ids__sandbox_id(out->warm_id))
		return -1;
	if (worker->net) {
		policy = net_policy__default(0);
		out->slot =
		    policy ? net_pool__acquire(worker->net,
					       worker->runtime == RUNTIME_VM ? NET_RUNTIME_VM
									     : NET_RUNTIME_JAIL,
					       policy, &out->slot_info)
			   : -1;
		if (out->slot < 0) {
			snprintf(reason, sizeof(reason), "no network slot");
			goto out;
		}
		inet_ntop(AF_INET, &out->slot_info.slot_address, address, sizeof(address));
	}
	struct runtime_start start = {
	    .sandbox_id = out->warm_id,
	    .template_id = template_id,
	    .netns_path = worker->net ? out->slot_info.netns_path : NULL,
	    .token_hash = NULL, /* the claim's /init sets the token */
	};
	worker__resources(template_id, &start.vcpus, &start.memory_mib);
	out->instance = runtime__start(worker->runtime, &start, reason, sizeof(reason));
	if (!out->instance)
		goto out;
	if (agent_client__wait_healthy(
		worker->agent_address_override ? worker->agent_address_override : address,
		WORKER_AGENT_PORT, clock__monotonic_ms() + (uint64_t)worker->agent_timeout_ms)) {
		snprintf(reason, sizeof(reason), "the agent did not answer");
		goto out;
	}
	rc = 0;
out:
	net_policy__free(policy);
	if (rc) {
		log_warn("warm pool: a %s sandbox could not be started: %s", template_id, reason);
		warm__destroy(pool, out);
	}
	return rc;
}

/* The creates this worker has in hand (queued or running). */
static size_t warm__creates_in_hand(struct warm_pool *pool)
{
	return pool->worker->create_pool ? create_pool__pending(pool->worker->create_pool) : 0;
}

/* Room for one more warm sandbox: live + creates in hand + warm < capacity. */
static bool warm__has_room(struct warm_pool *pool, size_t warm_total)
{
	struct worker *worker = pool->worker;
	size_t in_hand = warm__creates_in_hand(pool);
	bool room;

	pthread_mutex_lock(&worker->lock);
	room = worker__occupied(worker, in_hand) + warm_total < (size_t)worker->capacity;
	pthread_mutex_unlock(&worker->lock);
	return room;
}

/* Takes out the entries whose template changed on disk (lock held);
 * returns them as a list to destroy outside the lock. */
static struct warm_entry *warm__take_stale(struct warm_pool *pool)
{
	struct warm_entry *stale = NULL;

	for (size_t t = 0; t < pool->target_count; t++) {
		struct warm_target *target = &pool->targets[t];
		struct template_info info;
		char err[256];
		bool gone = templates__read(templates__dir(), target->template_id, &info, err,
					    sizeof(err)) != 0;

		for (struct warm_entry **link = &target->entries; *link;) {
			struct warm_entry *entry = *link;
			if (gone || strcmp(entry->content_hash, info.content_hash)) {
				*link = entry->next;
				target->ready--;
				entry->next = stale;
				stale = entry;
				continue;
			}
			link = &entry->next;
		}
	}
	return stale;
}

/* The refill loop: one sandbox at a time, the most wanting template first. */
static void *warm__refill(void *opaque)
{
	struct warm_pool *pool = opaque;
	struct timespec until;

	pthread_mutex_lock(&pool->lock);
	while (!pool->stopping) {
		struct warm_entry *stale = warm__take_stale(pool);
		struct warm_target *neediest = NULL;
		size_t total = 0;

		for (size_t t = 0; t < pool->target_count; t++) {
			struct warm_target *target = &pool->targets[t];
			total += target->ready;
			if (target->ready < target->want &&
			    (!neediest ||
			     target->want - target->ready > neediest->want - neediest->ready))
				neediest = target;
		}
		pthread_mutex_unlock(&pool->lock);
		while (stale) {
			struct warm_entry *next = stale->next;
			log_info("warm pool: its template changed on disk; warm sandbox %s stopped",
				 stale->sandbox.warm_id);
			warm__destroy(pool, &stale->sandbox);
			free(stale);
			stale = next;
		}
		struct warm_entry *entry = NULL;
		char template_id[TEMPLATES_NAME_MAX + 1] = "";
		/* Claims come first: while creates are in hand the refill waits. A
		 * refill is a cold start, and during a burst of creates it took the
		 * CPU the claims needed (80 creates, 16 in flight, against a full
		 * pool of 80: p50 243 ms with the refill beside them); it fills the
		 * gaps between creates instead, one sandbox at a time. */
		if (neediest && warm__creates_in_hand(pool) > 0) {
			pthread_mutex_lock(&pool->lock);
			clock__timespec_after(CLOCK_REALTIME, WARM_YIELD_NS, &until);
			if (!pool->stopping)
				pthread_cond_timedwait(&pool->wake, &pool->lock, &until);
			continue;
		}
		if (neediest && warm__has_room(pool, total)) {
			struct template_info info;
			char err[256];
			snprintf(template_id, sizeof(template_id), "%s", neediest->template_id);
			entry = calloc(1, sizeof(*entry));
			if (entry &&
			    !templates__read(templates__dir(), template_id, &info, err,
					     sizeof(err)) &&
			    !warm__start_one(pool, template_id, &entry->sandbox)) {
				snprintf(entry->content_hash, sizeof(entry->content_hash), "%s",
					 info.content_hash);
			} else {
				free(entry);
				entry = NULL;
			}
		}
		pthread_mutex_lock(&pool->lock);
		if (entry) {
			for (size_t t = 0; t < pool->target_count; t++)
				if (!strcmp(pool->targets[t].template_id, template_id)) {
					entry->next = pool->targets[t].entries;
					pool->targets[t].entries = entry;
					pool->targets[t].ready++;
					log_info("warm pool: %s ready %zu/%zu (%s)", template_id,
						 pool->targets[t].ready, pool->targets[t].want,
						 entry->sandbox.warm_id);
					entry = NULL;
					break;
				}
			continue; /* at once: maybe more to start */
		}
		/* Full, failed or nothing to do: look again in a second (or when
		 * a claim or stop wakes us). */
		clock__timespec_after(CLOCK_REALTIME, 1000ull * 1000 * 1000, &until);
		pthread_cond_timedwait(&pool->wake, &pool->lock, &until);
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

/* "name:count" entries separated by commas; false on a bad one. */
static bool warm__parse(struct warm_pool *pool, const char *setting)
{
	char copy[1024], *save = NULL;

	if (snprintf(copy, sizeof(copy), "%s", setting) >= (int)sizeof(copy))
		return false;
	for (char *item = strtok_r(copy, ", ", &save); item; item = strtok_r(NULL, ", ", &save)) {
		char *colon = strchr(item, ':'), *end = NULL;
		long count;

		if (!colon || pool->target_count == WARM_TEMPLATES_MAX)
			return false;
		*colon = '\0';
		count = strtol(colon + 1, &end, 10);
		if (!templates__name_valid(item) || !end || *end || count < 0 ||
		    count > WARM_COUNT_MAX)
			return false;
		snprintf(pool->targets[pool->target_count].template_id,
			 sizeof(pool->targets[0].template_id), "%s", item);
		pool->targets[pool->target_count].want = (size_t)count;
		pool->target_count++;
	}
	return pool->target_count > 0;
}

struct warm_pool *warm_pool__start(struct worker *worker, const char *setting)
{
	struct warm_pool *pool;
	struct net_policy *policy;

	if (!setting || !*setting)
		return NULL;
	pool = calloc(1, sizeof(*pool));
	if (!pool)
		return NULL;
	pool->worker = worker;
	if (!warm__parse(pool, setting)) {
		log_error("warm_pool \"%.200s\": want template:count[,template:count...] "
			  "(count 0..%d, at most %d templates); no warm pool",
			  setting, WARM_COUNT_MAX, WARM_TEMPLATES_MAX);
		free(pool);
		return NULL;
	}
	policy = net_policy__default(0);
	pool->connection_limit = policy ? net_policy__connection_limit(policy) : 0;
	net_policy__free(policy);
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->wake, NULL);
	if (pthread_create(&pool->thread, NULL, warm__refill, pool)) {
		free(pool);
		return NULL;
	}
	log_info("warm pool: %s", setting);
	return pool;
}

bool warm_pool__claim(struct warm_pool *pool, const char *template_id, uint32_t connection_limit,
		      struct warm_sandbox *out)
{
	bool claimed = false;

	if (!pool || connection_limit != pool->connection_limit)
		return false; /* a team limit other than the default needs a fresh slot */
	pthread_mutex_lock(&pool->lock);
	for (size_t t = 0; t < pool->target_count && !claimed; t++) {
		struct warm_target *target = &pool->targets[t];
		struct warm_entry *entry = target->entries;
		if (strcmp(target->template_id, template_id) || !entry)
			continue;
		target->entries = entry->next;
		target->ready--;
		*out = entry->sandbox;
		free(entry);
		claimed = true;
	}
	if (claimed)
		pthread_cond_signal(&pool->wake);
	pthread_mutex_unlock(&pool->lock);
	return claimed;
}

size_t warm_pool__count(struct warm_pool *pool)
{
	size_t total = 0;

	if (!pool)
		return 0;
	pthread_mutex_lock(&pool->lock);
	for (size_t t = 0; t < pool->target_count; t++)
		total += pool->targets[t].ready;
	pthread_mutex_unlock(&pool->lock);
	return total;
}

void warm_pool__stop_refill(struct warm_pool *pool)
{
	if (!pool || pool->joined)
		return;
	pthread_mutex_lock(&pool->lock);
	pool->stopping = true;
	pthread_cond_broadcast(&pool->wake);
	pthread_mutex_unlock(&pool->lock);
	pthread_join(pool->thread, NULL);
	pool->joined = true;
}

void warm_pool__stop(struct warm_pool *pool)
{
	if (!pool)
		return;
	warm_pool__stop_refill(pool);
	for (size_t t = 0; t < pool->target_count; t++)
		while (pool->targets[t].entries) {
			struct warm_entry *entry = pool->targets[t].entries;
			pool->targets[t].entries = entry->next;
			warm__destroy(pool, &entry->sandbox);
			free(entry);
		}
	pthread_mutex_destroy(&pool->lock);
	pthread_cond_destroy(&pool->wake);
	free(pool);
}

/* warm_pool: sandboxes started ahead of their creates (workers/README.md,
 * "Warm pools"). Per template, the setting warm_pool ("minimal:4,base:1")
 * keeps that many sandboxes started, each in its slot with the default
 * egress policy, its agent healthy and no access token yet. A create of
 * that template claims one (never two creates the same one) and gives it
 * its token, name, env vars and egress policy; a background thread
 * refills. Warm sandboxes count against the host's capacity; they are
 * stopped when their template changes on disk and at shutdown. */
#ifndef WARREN_WORKER_WARM_POOL_H
#define WARREN_WORKER_WARM_POOL_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime.h"
#include "warren/net.h"

struct worker;
struct warm_pool;

/* A claimed warm sandbox: the caller owns the slot and the instance. */
struct warm_sandbox {
	int slot;
	struct net_slot_info slot_info;
	struct runtime_instance *instance;
	char warm_id[32]; /* the id it was started under (its state dir, cgroup) */
};

/* Parses "template:count,..." (counts 0..1000). NULL when the setting is
 * empty (no pool) or on a bad entry (logged); the refill thread starts. */
struct warm_pool *warm_pool__start(struct worker *worker, const char *setting);
/* Takes a warm sandbox of template_id whose slot's connection limit is
 * connection_limit; true with *out filled, false when none is ready. */
bool warm_pool__claim(struct warm_pool *pool, const char *template_id, uint32_t connection_limit,
		      struct warm_sandbox *out);
/* Warm sandboxes ready now (all templates). NULL pool: 0. */
size_t warm_pool__count(struct warm_pool *pool);
/* Stops the refill thread (warm sandboxes stay claimable). NULL ok. */
void warm_pool__stop_refill(struct warm_pool *pool);
/* Stops the refill thread and every warm sandbox, frees the pool. NULL ok. */
void warm_pool__stop(struct warm_pool *pool);

#endif

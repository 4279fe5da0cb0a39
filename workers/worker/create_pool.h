/* create_pool: many creates in flight per worker, offsets still committed
 * in order. The creates consumer's thread polls and hands each create to
 * one of `threads` threads; a message's offset is committed only once it
 * and every earlier message of its partition have a durable outcome, so
 * a crash redelivers exactly the unfinished ones (docs/events/README.md,
 * "Delivery guarantees"; workers/README.md, "Concurrent creates"). Two
 * creates of one sandbox id never run at once. */
#ifndef WARREN_WORKER_CREATE_POOL_H
#define WARREN_WORKER_CREATE_POOL_H

#include <stdbool.h>
#include <stddef.h>

#include "warren/kafka.h"
#include "warren/kafka_event.h"

struct worker;
struct create_pool;

/* Runs one command to its outcome: 0 (or any code but -EAGAIN) when the
 * outcome is durable and the offset may be committed; -EAGAIN when it was
 * given up (stopping) and must be delivered again. */
typedef int (*create_pool_handler_fn)(void *opaque, const struct kafka_event *command);

/* Starts threads (>= 1) that run handler(opaque, command). The consumer is
 * used only from the thread that calls create_pool__submit/__commit_ready/
 * __on_revoke/__drain. NULL when out of memory. */
struct create_pool *create_pool__new(struct kafka_consumer *consumer, size_t threads,
				     create_pool_handler_fn handler, void *opaque);
/* Takes over msg and ev (the caller must not release them). */
void create_pool__submit(struct create_pool *pool, struct kafka_message *msg,
			 struct kafka_event *ev);
/* Jobs queued or running (for back-pressure and capacity). */
size_t create_pool__pending(struct create_pool *pool);
/* Marks every finished job whose earlier partition-mates are finished
 * too, in offset order, commits them and frees them. */
void create_pool__commit_ready(struct create_pool *pool);
/* For the consumer's on_revoke hook: queued jobs of the revoked
 * partitions are dropped (their new owner gets them), running ones are
 * waited for, then what finished of those partitions is committed in
 * order. NULL pool is ok. */
void create_pool__on_revoke(struct create_pool *pool, const struct kafka_partition *partitions,
			    size_t count);
/* Shutdown: drops queued jobs, waits for running ones, commits in order,
 * joins the threads and frees the pool. NULL is ok. */
void create_pool__drain(struct create_pool *pool);

#endif

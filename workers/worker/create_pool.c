/* create_pool: concurrent creates with in-order commits (create_pool.h). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "create_pool.h"
#include "warren/log.h"

enum job_state { JOB_QUEUED = 0, JOB_RUNNING, JOB_DONE };

struct create_job {
	struct kafka_message msg;
	struct kafka_event ev;
	enum job_state state;
	bool durable;		 /* DONE with an outcome (not -EAGAIN): committable */
	struct create_job *next; /* arrival order = offset order per partition */
};

struct create_pool {
	struct kafka_consumer *consumer;
	create_pool_handler_fn handler;
	void *opaque;
	pthread_mutex_t lock;
	pthread_cond_t work;	 /* a job was queued, or stopping */
	pthread_cond_t finished; /* a job finished */
	struct create_job *head, *tail;
	size_t pending; /* QUEUED + RUNNING */
	bool stopping;
	size_t thread_count;
	pthread_t *threads;
};

/* Partitions seen with an unfinished (or uncommittable) job on a walk:
 * later jobs of those partitions wait. Small: a member holds few. */
struct blocked {
	struct {
		char topic[KAFKA_TOPIC_NAME_MAX + 1]; /* a copy: the job may be freed */
		int32_t partition;
	} items[32];
	size_t count;
	bool overflow; /* more than 32: block everything after */
};

static bool blocked__has(const struct blocked *b, const struct kafka_message *msg)
{
	if (b->overflow)
		return true;
	for (size_t i = 0; i < b->count; i++)
		if (b->items[i].partition == msg->partition &&
		    !strcmp(b->items[i].topic, msg->topic))
			return true;
	return false;
}

static void blocked__add(struct blocked *b, const struct kafka_message *msg)
{
	if (blocked__has(b, msg))
		return;
	if (b->count == sizeof(b->items) / sizeof(b->items[0])) {
		b->overflow = true;
		return;
	}
	snprintf(b->items[b->count].topic, sizeof(b->items[b->count].topic), "%s", msg->topic);
	b->items[b->count].partition = msg->partition;
	b->count++;
}

static void job__free(struct create_job *job)
{
	kafka_message__release(&job->msg);
	kafka_event__clear(&job->ev);
	free(job);
}

/* True when another job of the same sandbox is running (lock held). */
static bool pool__sandbox_busy(const struct create_pool *pool, const struct create_job *job)
{
	for (const struct create_job *j = pool->head; j; j = j->next)
		if (j != job && j->state == JOB_RUNNING &&
		    !strcmp(j->ev.sandbox_id, job->ev.sandbox_id))
			return true;
	return false;
}

/* The first queued job whose sandbox is not busy, or NULL (lock held). */
static struct create_job *pool__next_runnable(struct create_pool *pool)
{
	for (struct create_job *j = pool->head; j; j = j->next)
		if (j->state == JOB_QUEUED && !pool__sandbox_busy(pool, j))
			return j;
	return NULL;
}

static void *pool__thread(void *opaque)
{
	struct create_pool *pool = opaque;

	pthread_mutex_lock(&pool->lock);
	for (;;) {
		struct create_job *job = NULL;

		while (!pool->stopping && !(job = pool__next_runnable(pool)))
			pthread_cond_wait(&pool->work, &pool->lock);
		if (pool->stopping)
			break;
		job->state = JOB_RUNNING;
		pthread_mutex_unlock(&pool->lock);
		int rc = pool->handler(pool->opaque, &job->ev);
		pthread_mutex_lock(&pool->lock);
		job->state = JOB_DONE;
		job->durable = rc != -EAGAIN;
		pool->pending--;
		pthread_cond_broadcast(&pool->finished);
		/* a job of the same sandbox may be runnable now */
		pthread_cond_broadcast(&pool->work);
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

struct create_pool *create_pool__new(struct kafka_consumer *consumer, size_t threads,
				     create_pool_handler_fn handler, void *opaque)
{
	struct create_pool *pool = calloc(1, sizeof(*pool));

	if (!pool)
		return NULL;
	pool->threads = calloc(threads ? threads : 1, sizeof(*pool->threads));
	if (!pool->threads) {
		free(pool);
		return NULL;
	}
	pool->consumer = consumer;
	pool->handler = handler;
	pool->opaque = opaque;
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->work, NULL);
	pthread_cond_init(&pool->finished, NULL);
	for (size_t i = 0; i < (threads ? threads : 1); i++) {
		if (pthread_create(&pool->threads[i], NULL, pool__thread, pool))
			break;
		pool->thread_count++;
	}
	if (!pool->thread_count) {
		create_pool__drain(pool);
		return NULL;
	}
	return pool;
}

void create_pool__submit(struct create_pool *pool, struct kafka_message *msg,
			 struct kafka_event *ev)
{
	struct create_job *job = calloc(1, sizeof(*job));

	if (!job) {
		/* Not committed: the message comes again after a restart. */
		log_error("create pool: out of memory; request %s left for redelivery",
			  ev->request_id);
		kafka_message__release(msg);
		kafka_event__clear(ev);
		return;
	}
	job->msg = *msg;
	job->ev = *ev;
	memset(msg, 0, sizeof(*msg));
	memset(ev, 0, sizeof(*ev));
	pthread_mutex_lock(&pool->lock);
	if (pool->tail)
		pool->tail->next = job;
	else
		pool->head = job;
	pool->tail = job;
	pool->pending++;
	pthread_cond_signal(&pool->work);
	pthread_mutex_unlock(&pool->lock);
}

size_t create_pool__pending(struct create_pool *pool)
{
	size_t pending;

	pthread_mutex_lock(&pool->lock);
	pending = pool->pending;
	pthread_mutex_unlock(&pool->lock);
	return pending;
}

/* True when job belongs to one of partitions[0..count). */
static bool job__in(const struct create_job *job, const struct kafka_partition *partitions,
		    size_t count)
{
	for (size_t i = 0; i < count; i++)
		if (partitions[i].partition == job->msg.partition &&
		    !strcmp(partitions[i].topic, job->msg.topic))
			return true;
	return false;
}

/* One walk in arrival order (lock held). Jobs selected by `only` (NULL:
 * all) are looked at: a durable DONE job of an unblocked partition is
 * marked for commit and freed; anything else blocks its partition. With
 * `discard`, every selected job leaves the list (revoke, drain: the
 * unfinished ones are redelivered to whoever owns the partition next).
 * Returns how many offsets were marked. */
static size_t pool__walk(struct create_pool *pool, const struct kafka_partition *only,
			 size_t only_count, bool discard)
{
	struct blocked blocked = {.count = 0};
	struct create_job **link = &pool->head, *previous = NULL;
	size_t marked = 0;

	while (*link) {
		struct create_job *job = *link;
		bool selected = !only || job__in(job, only, only_count);
		bool leave = false;

		if (selected && job->state == JOB_DONE && job->durable &&
		    !blocked__has(&blocked, &job->msg)) {
			int rc = kafka_consumer__mark_done(pool->consumer, &job->msg);
			if (rc && rc != -ESTALE)
				log_warn("create pool: marking %s/%d@%lld failed (%d)",
					 job->msg.topic, job->msg.partition,
					 (long long)job->msg.offset, rc);
			marked++;
			leave = true;
		} else if (selected || !only) {
			blocked__add(&blocked, &job->msg);
			leave = selected && discard && job->state != JOB_RUNNING;
		}
		if (leave) {
			*link = job->next;
			if (pool->tail == job)
				pool->tail = previous;
			if (job->state == JOB_QUEUED)
				pool->pending--;
			job__free(job);
			continue;
		}
		previous = job;
		link = &job->next;
	}
	return marked;
}

void create_pool__commit_ready(struct create_pool *pool)
{
	size_t marked;

	pthread_mutex_lock(&pool->lock);
	marked = pool__walk(pool, NULL, 0, false);
	pthread_mutex_unlock(&pool->lock);
	if (marked)
		kafka_consumer__commit(pool->consumer);
}

/* True when a job of the selection (NULL: any) is running (lock held). */
static bool pool__running(const struct create_pool *pool, const struct kafka_partition *only,
			  size_t only_count)
{
	for (const struct create_job *j = pool->head; j; j = j->next)
		if (j->state == JOB_RUNNING && (!only || job__in(j, only, only_count)))
			return true;
	return false;
}

/* Drops the selection's queued jobs, waits for its running ones, then
 * commits what is committable of it in order and forgets the rest. */
static void pool__settle(struct create_pool *pool, const struct kafka_partition *only,
			 size_t only_count)
{
	size_t marked;

	pthread_mutex_lock(&pool->lock);
	for (struct create_job *j = pool->head; j; j = j->next)
		if (j->state == JOB_QUEUED && (!only || job__in(j, only, only_count))) {
			/* never started: it may not start now */
			j->state = JOB_DONE;
			j->durable = false;
			pool->pending--;
		}
	while (pool__running(pool, only, only_count))
		pthread_cond_wait(&pool->finished, &pool->lock);
	marked = pool__walk(pool, only, only_count, true);
	pthread_mutex_unlock(&pool->lock);
	if (marked)
		kafka_consumer__commit(pool->consumer);
}

void create_pool__on_revoke(struct create_pool *pool, const struct kafka_partition *partitions,
			    size_t count)
{
	if (!pool || !count)
		return;
	pool__settle(pool, partitions, count);
}

void create_pool__drain(struct create_pool *pool)
{
	if (!pool)
		return;
	if (pool->consumer)
		pool__settle(pool, NULL, 0);
	pthread_mutex_lock(&pool->lock);
	pool->stopping = true;
	pthread_cond_broadcast(&pool->work);
	pthread_mutex_unlock(&pool->lock);
	for (size_t i = 0; i < pool->thread_count; i++)
		pthread_join(pool->threads[i], NULL);
	while (pool->head) {
		struct create_job *job = pool->head;
		pool->head = job->next;
		job__free(job);
	}
	pthread_mutex_destroy(&pool->lock);
	pthread_cond_destroy(&pool->work);
	pthread_cond_destroy(&pool->finished);
	free(pool->threads);
	free(pool);
}

/* Unit tests of the worker's create pool (workers/worker/create_pool.c)
 * against librdkafka's in-process mock cluster: many creates at once,
 * each handled exactly once, never two of one sandbox at a time, and a
 * partition's offset committed only up to its first unfinished create. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "create_pool.h"
#include "warren/clock.h"
#include "warren/kafka.h"

#define MESSAGES  48
#define SANDBOXES 12 /* every sandbox id gets 4 creates: duplicates on purpose */
#define THREADS	  8

struct harness {
	rd_kafka_t *rk;
	rd_kafka_mock_cluster_t *cluster;
	const char *brokers;
	pthread_mutex_t lock;
	pthread_cond_t changed;
	char running[THREADS * 2][32]; /* sandbox ids being handled */
	int handled[MESSAGES];	       /* by the number in the request id */
	int concurrent, max_concurrent;
	bool overlap; /* two creates of one sandbox at once */
	int hold;     /* this message number waits for release */
	bool released;
};

static struct harness harness;

/* "00000000-0000-4000-8000-0000000000NN": the message number in the id. */
static int message_number(const struct kafka_event *ev)
{
	return atoi(ev->request_id + 24);
}

static int handler(void *opaque, const struct kafka_event *command)
{
	struct harness *h = opaque;
	int n = message_number(command), slot = -1;

	pthread_mutex_lock(&h->lock);
	for (int i = 0; i < THREADS * 2; i++) {
		if (!strcmp(h->running[i], command->sandbox_id))
			h->overlap = true;
		if (slot < 0 && !h->running[i][0])
			slot = i;
	}
	assert_true(slot >= 0);
	snprintf(h->running[slot], sizeof(h->running[slot]), "%s", command->sandbox_id);
	if (++h->concurrent > h->max_concurrent)
		h->max_concurrent = h->concurrent;
	while (n == h->hold && !h->released)
		pthread_cond_wait(&h->changed, &h->lock);
	pthread_mutex_unlock(&h->lock);

	struct timespec pause = {0, (long)((n * 7919) % 20) * 1000000L};
	nanosleep(&pause, NULL); /* finish out of arrival order */

	pthread_mutex_lock(&h->lock);
	h->running[slot][0] = '\0';
	h->concurrent--;
	h->handled[n]++;
	pthread_cond_broadcast(&h->changed);
	pthread_mutex_unlock(&h->lock);
	return 0;
}

static int setup(void **state)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char err[256];

	(void)state;
	memset(&harness, 0, sizeof(harness));
	harness.hold = -1;
	pthread_mutex_init(&harness.lock, NULL);
	pthread_cond_init(&harness.changed, NULL);
	rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
	harness.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	if (!harness.rk)
		return -1;
	harness.cluster = rd_kafka_mock_cluster_new(harness.rk, 1);
	if (!harness.cluster)
		return -1;
	harness.brokers = rd_kafka_mock_cluster_bootstraps(harness.cluster);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	rd_kafka_mock_cluster_destroy(harness.cluster);
	rd_kafka_destroy(harness.rk);
	return 0;
}

/* MESSAGES creates on topic (2 partitions), keyed by SANDBOXES ids. */
static void produce_creates(const char *topic)
{
	struct kafka_producer *producer;
	char err[256];

	rd_kafka_mock_topic_create(harness.cluster, topic, 2, 1);
	producer = kafka_producer__new(&(struct kafka_settings){.brokers = harness.brokers}, NULL,
				       err, sizeof(err));
	assert_non_null(producer);
	for (int n = 0; n < MESSAGES; n++) {
		struct kafka_event ev;
		char sandbox[32], reason[256];
		json_t *spec = json_pack("{s:s, s:i}", "template_id", "minimal", "timeout_s", 60);

		snprintf(sandbox, sizeof(sandbox), "isandbox%013d", n % SANDBOXES);
		assert_int_equal(kafka_event__init_command(&ev, KAFKA_EVENT_CREATE, "team", sandbox,
							   spec, reason, sizeof(reason)),
				 KAFKA_EVENT_OK);
		snprintf(ev.request_id, sizeof(ev.request_id), "00000000-0000-4000-8000-%012d", n);
		assert_int_equal(kafka_producer__produce_event(producer, topic, &ev, 10000, NULL),
				 0);
		kafka_event__clear(&ev);
	}
	kafka_producer__free(producer);
}

static struct kafka_consumer *consumer_for(const char *topic, const char *group)
{
	struct kafka_consumer_config config = {
	    .settings = &(struct kafka_settings){.brokers = harness.brokers},
	    .group_id = group,
	    .session_timeout_ms = 6000,
	};
	char err[256];
	struct kafka_consumer *consumer = kafka_consumer__new(&config, err, sizeof(err));

	assert_non_null(consumer);
	assert_int_equal(kafka_consumer__subscribe(consumer, &topic, 1), 0);
	return consumer;
}

static int total_handled(void)
{
	int total = 0;

	pthread_mutex_lock(&harness.lock);
	for (int n = 0; n < MESSAGES; n++)
		total += harness.handled[n];
	pthread_mutex_unlock(&harness.lock);
	return total;
}

/* Feeds the pool until want creates were handled (or 30 s pass);
 * partition_of[n] gets the partition message n arrived on. */
static void feed(struct kafka_consumer *consumer, struct create_pool *pool, int want,
		 int32_t partition_of[MESSAGES], int64_t count_of[2])
{
	uint64_t deadline = clock__monotonic_ms() + 30000;

	while (total_handled() < want || create_pool__pending(pool) > (size_t)(MESSAGES - want)) {
		struct kafka_message msg;
		struct kafka_event ev;
		char reason[256];

		assert_true(clock__monotonic_ms() < deadline);
		if (kafka_consumer__poll(consumer, 50, &msg) == 1) {
			assert_int_equal(
			    kafka_event__decode(msg.payload, msg.len, &ev, reason, sizeof(reason)),
			    KAFKA_EVENT_OK);
			int n = message_number(&ev);
			partition_of[n] = msg.partition;
			count_of[msg.partition]++;
			create_pool__submit(pool, &msg, &ev);
		}
		create_pool__commit_ready(pool);
	}
}

static int64_t committed(struct kafka_consumer *consumer, const char *topic, int32_t partition)
{
	int64_t offset = -1;

	assert_int_equal(kafka_consumer__committed(consumer, topic, partition, 5000, &offset), 0);
	return offset;
}

static void test_concurrent_creates_commit_in_order(void **state)
{
	const char *topic = "t.creates";
	int32_t partition_of[MESSAGES];
	int64_t count_of[2] = {0, 0};

	(void)state;
	produce_creates(topic);
	struct kafka_consumer *consumer = consumer_for(topic, "g.creates");
	struct create_pool *pool = create_pool__new(consumer, THREADS, handler, &harness);
	assert_non_null(pool);

	/* Message 0 is held: it and the three other creates of its sandbox
	 * (same key, same partition) wait; everything else finishes. Its
	 * partition commits nothing (offset 0 is unfinished), the other
	 * partition commits everything. */
	harness.hold = 0;
	feed(consumer, pool, MESSAGES - MESSAGES / SANDBOXES, partition_of, count_of);
	create_pool__commit_ready(pool);
	int32_t held = partition_of[0], other = 1 - held;
	assert_true(count_of[0] > 0 && count_of[1] > 0);
	assert_true(committed(consumer, topic, held) < 0); /* offset 0 unfinished: nothing */
	assert_int_equal(committed(consumer, topic, other), count_of[other]);

	pthread_mutex_lock(&harness.lock);
	harness.released = true;
	pthread_cond_broadcast(&harness.changed);
	pthread_mutex_unlock(&harness.lock);
	feed(consumer, pool, MESSAGES, partition_of, count_of);
	create_pool__commit_ready(pool);
	assert_int_equal(committed(consumer, topic, held), count_of[held]);
	assert_int_equal(committed(consumer, topic, other), count_of[other]);

	for (int n = 0; n < MESSAGES; n++)
		assert_int_equal(harness.handled[n], 1);
	assert_false(harness.overlap);		 /* one create of a sandbox at a time */
	assert_true(harness.max_concurrent > 1); /* and many sandboxes at once */
	assert_true(harness.max_concurrent <= THREADS);
	printf("creates handled: %d, at most %d at once, committed %lld + %lld\n", MESSAGES,
	       harness.max_concurrent, (long long)count_of[0], (long long)count_of[1]);
	create_pool__drain(pool);
	kafka_consumer__free(consumer);
}

static void test_drain_leaves_unfinished_for_redelivery(void **state)
{
	const char *topic = "t.drain";
	int32_t partition_of[MESSAGES];
	int64_t count_of[2] = {0, 0};

	(void)state;
	memset(harness.handled, 0, sizeof(harness.handled));
	harness.released = false;
	harness.hold = -1;
	produce_creates(topic);
	struct kafka_consumer *consumer = consumer_for(topic, "g.drain");
	struct create_pool *pool = create_pool__new(consumer, 1, handler, &harness);
	assert_non_null(pool);

	/* One thread, message feeding stops early: some creates are still
	 * queued at drain. They are not committed: a new member reads them. */
	feed(consumer, pool, 4, partition_of, count_of);
	create_pool__drain(pool);
	int handled = total_handled();
	int64_t first = committed(consumer, topic, 0), second = committed(consumer, topic, 1);
	int64_t committed_total = (first < 0 ? 0 : first) + (second < 0 ? 0 : second);
	assert_true(handled >= 4 && handled < MESSAGES);
	assert_true(committed_total <= handled); /* nothing committed that did not run */
	kafka_consumer__free(consumer);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_concurrent_creates_commit_in_order),
	    cmocka_unit_test(test_drain_leaves_unfinished_for_redelivery),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

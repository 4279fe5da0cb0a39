/* Unit tests of the Kafka wrapper against librdkafka's in-process mock
 * cluster (rd_kafka_mock_cluster_new): delivery reports, manual commits,
 * the dead-letter path and pause/resume. No external broker. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "warren/clock.h"
#include "warren/kafka.h"

struct mock {
	rd_kafka_t *rk;
	rd_kafka_mock_cluster_t *cluster;
	const char *brokers;
	struct kafka_settings settings; /* plaintext to brokers */
};

static int mock_setup(void **state)
{
	struct mock *mock = calloc(1, sizeof(*mock));
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char err[256];

	rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
	mock->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	if (!mock->rk)
		return -1;
	mock->cluster = rd_kafka_mock_cluster_new(mock->rk, 1);
	if (!mock->cluster)
		return -1;
	mock->brokers = rd_kafka_mock_cluster_bootstraps(mock->cluster);
	mock->settings = (struct kafka_settings){.brokers = mock->brokers};
	*state = mock;
	return 0;
}

static int mock_teardown(void **state)
{
	struct mock *mock = *state;

	rd_kafka_mock_cluster_destroy(mock->cluster);
	rd_kafka_destroy(mock->rk);
	free(mock);
	return 0;
}

static struct kafka_consumer *consumer_for(struct mock *mock, const char *group, const char *topic)
{
	struct kafka_consumer_config config = {
	    .settings = &mock->settings,
	    .group_id = group,
	    .session_timeout_ms = 6000,
	};
	char err[256];
	struct kafka_consumer *consumer = kafka_consumer__new(&config, err, sizeof(err));

	if (!consumer)
		fail_msg("consumer: %s", err);
	assert_int_equal(kafka_consumer__subscribe(consumer, &topic, 1), 0);
	return consumer;
}

/* Polls until the consumer owns at least one partition (or 20 s pass);
 * a message that arrives meanwhile is a test bug and fails. */
static void wait_assigned(struct kafka_consumer *consumer)
{
	uint64_t deadline = clock__monotonic_ms() + 20000;
	struct kafka_message msg;

	while (kafka_consumer__assignment_count(consumer) <= 0) {
		assert_true(clock__monotonic_ms() < deadline);
		assert_int_equal(kafka_consumer__poll(consumer, 100, &msg), 0);
	}
}

static int poll_one(struct kafka_consumer *consumer, int timeout_ms, struct kafka_message *msg)
{
	uint64_t deadline = clock__monotonic_ms() + (uint64_t)timeout_ms;
	int ret;

	do {
		ret = kafka_consumer__poll(consumer, 100, msg);
		if (ret != 0)
			return ret;
	} while (clock__monotonic_ms() < deadline);
	return 0;
}

static atomic_int async_reports, async_errors;

static void count_delivery(const struct kafka_delivery *delivery, void *opaque)
{
	atomic_fetch_add(&async_reports, 1);
	/* Runs on the delivery thread: count, never assert here. */
	if (delivery->error || opaque != &async_reports)
		atomic_fetch_add(&async_errors, 1);
}

static void test_produce_delivery_reports(void **state)
{
	struct mock *mock = *state;
	struct kafka_delivery delivery;
	const struct kafka_header header = {"trace", "abc", 3};
	struct kafka_producer *producer;
	char err[256];

	rd_kafka_mock_topic_create(mock->cluster, "t.produce", 1, 1);
	producer = kafka_producer__new(&mock->settings, "test-producer", err, sizeof(err));
	assert_non_null(producer);
	assert_int_equal(kafka_producer__produce_sync(producer, "t.produce", "k", 1, "one", 3,
						      &header, 1, 10000, &delivery),
			 0);
	assert_int_equal(delivery.error, 0);
	assert_int_equal(delivery.offset, 0);
	assert_int_equal(kafka_producer__produce_sync(producer, "t.produce", "k", 1, "two", 3, NULL,
						      0, 10000, &delivery),
			 0);
	assert_int_equal(delivery.offset, 1);
	for (int i = 0; i < 10; i++)
		assert_int_equal(kafka_producer__produce(producer, "t.produce", NULL, 0, "async", 5,
							 NULL, 0, count_delivery, &async_reports),
				 0);
	assert_int_equal(kafka_producer__flush(producer, 10000), 0);
	assert_int_equal(atomic_load(&async_reports), 10);
	assert_int_equal(atomic_load(&async_errors), 0);
	kafka_producer__free(producer);
}

static void test_consume_and_commit(void **state)
{
	struct mock *mock = *state;
	struct kafka_producer *producer;
	struct kafka_consumer *consumer;
	struct kafka_message msg;
	const void *value;
	size_t len;
	int64_t committed;
	const struct kafka_header header = {"trace", "abc", 3};
	char err[256];

	rd_kafka_mock_topic_create(mock->cluster, "t.commit", 1, 1);
	producer = kafka_producer__new(&mock->settings, NULL, err, sizeof(err));
	assert_non_null(producer);
	assert_int_equal(kafka_producer__produce_sync(producer, "t.commit", "key-1", 5, "first", 5,
						      &header, 1, 10000, NULL),
			 0);
	assert_int_equal(kafka_producer__produce_sync(producer, "t.commit", "key-1", 5, "second", 6,
						      NULL, 0, 10000, NULL),
			 0);
	consumer = consumer_for(mock, "g.commit", "t.commit");
	assert_int_equal(poll_one(consumer, 20000, &msg), 1);
	assert_int_equal(msg.offset, 0);
	assert_memory_equal(msg.payload, "first", 5);
	assert_memory_equal(msg.key, "key-1", 5);
	assert_int_equal(kafka_message__header(&msg, "trace", &value, &len), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(value, "abc", 3);
	assert_int_equal(kafka_message__header(&msg, "absent", &value, &len), -2);
	/* Nothing committed until the caller says the outcome is durable. */
	assert_int_equal(kafka_consumer__commit(consumer), 0);
	assert_int_equal(kafka_consumer__committed(consumer, "t.commit", 0, 5000, &committed), 0);
	assert_true(committed < 0);
	assert_int_equal(kafka_consumer__commit_message(consumer, &msg), 0);
	assert_int_equal(kafka_consumer__committed(consumer, "t.commit", 0, 5000, &committed), 0);
	assert_int_equal(committed, 1);
	kafka_message__release(&msg);
	/* The second message is read but not marked: a new member of the
	 * group gets it again. */
	assert_int_equal(poll_one(consumer, 10000, &msg), 1);
	assert_int_equal(msg.offset, 1);
	kafka_message__release(&msg);
	kafka_consumer__free(consumer);
	consumer = consumer_for(mock, "g.commit", "t.commit");
	assert_int_equal(poll_one(consumer, 20000, &msg), 1);
	assert_int_equal(msg.offset, 1);
	assert_memory_equal(msg.payload, "second", 6);
	kafka_message__release(&msg);
	kafka_consumer__free(consumer);
	kafka_producer__free(producer);
}

static void test_dead_letter_path(void **state)
{
	struct mock *mock = *state;
	struct kafka_producer *producer;
	struct kafka_consumer *consumer, *dlq_reader;
	struct kafka_message msg;
	struct kafka_event ev, good;
	const char *bad_version = "{\"version\":9,\"type\":\"kill\"}";
	const void *value;
	size_t len;
	int64_t committed;
	char err[256], *text;

	rd_kafka_mock_topic_create(mock->cluster, "t.events", 1, 1);
	rd_kafka_mock_topic_create(mock->cluster, "t.dlq", 1, 1);
	producer = kafka_producer__new(&mock->settings, NULL, err, sizeof(err));
	assert_non_null(producer);
	assert_int_equal(kafka_event__init_command(&good, KAFKA_EVENT_KILL, "team-1",
						   "iabcdefghij0123456789", NULL, err, sizeof(err)),
			 KAFKA_EVENT_OK);
	assert_int_equal(kafka_producer__produce_sync(producer, "t.events", "k", 1, "\x01\xffjunk",
						      6, NULL, 0, 10000, NULL),
			 0);
	assert_int_equal(kafka_producer__produce_sync(producer, "t.events", "k", 1, bad_version,
						      strlen(bad_version), NULL, 0, 10000, NULL),
			 0);
	assert_int_equal(kafka_producer__produce_event(producer, "t.events", &good, 10000, NULL),
			 0);

	consumer = consumer_for(mock, "g.events", "t.events");
	assert_int_equal(kafka_consumer__next_event(consumer, producer, "t.dlq", 20000, &msg, &ev),
			 1);
	assert_int_equal(msg.offset, 2);
	assert_int_equal(ev.type, KAFKA_EVENT_KILL);
	assert_string_equal(ev.request_id, good.request_id);
	/* The two bad ones are committed already (after their DLQ write). */
	assert_int_equal(kafka_consumer__committed(consumer, "t.events", 0, 5000, &committed), 0);
	assert_int_equal(committed, 2);
	assert_int_equal(kafka_consumer__commit_message(consumer, &msg), 0);
	assert_int_equal(kafka_consumer__committed(consumer, "t.events", 0, 5000, &committed), 0);
	assert_int_equal(committed, 3);
	kafka_message__release(&msg);
	kafka_event__clear(&ev);

	dlq_reader = consumer_for(mock, "g.dlq", "t.dlq");
	for (int i = 0; i < 2; i++) {
		json_error_t json_error;
		json_t *record;

		assert_int_equal(poll_one(dlq_reader, 20000, &msg), 1);
		record = json_loadb(msg.payload, msg.len, 0, &json_error);
		assert_non_null(record);
		assert_string_equal(json_string_value(json_object_get(record, "type")),
				    "dead_letter");
		assert_int_equal(json_integer_value(
				     json_object_get(json_object_get(record, "source"), "offset")),
				 i);
		assert_string_equal(
		    json_string_value(json_object_get(json_object_get(record, "source"), "topic")),
		    "t.events");
		assert_int_equal(
		    kafka_message__header(&msg, KAFKA_DLQ_HEADER_REASON_CODE, &value, &len), 0);
		if (i == 0) {
			/* not UTF-8: kept as base64 */
			assert_memory_equal(value, "not_json", len);
			assert_string_equal(
			    json_string_value(json_object_get(record, "payload_base64")),
			    "Af9qdW5r");
		} else {
			assert_memory_equal(value, "unknown_version", len);
			assert_string_equal(json_string_value(json_object_get(record, "payload")),
					    bad_version);
			assert_non_null(strstr(json_string_value(json_object_get(record, "reason")),
					       "version 9"));
		}
		assert_int_equal(
		    kafka_message__header(&msg, KAFKA_DLQ_HEADER_SOURCE_OFFSET, &value, &len), 0);
		text = strndup(value, len);
		assert_int_equal(atoi(text), i);
		free(text);
		assert_memory_equal(msg.key, "k", 1);
		json_decref(record);
		kafka_message__release(&msg);
	}
	kafka_consumer__free(dlq_reader);
	kafka_consumer__free(consumer);
	kafka_event__clear(&good);
	kafka_producer__free(producer);
}

static void test_pause_resume(void **state)
{
	struct mock *mock = *state;
	struct kafka_producer *producer;
	struct kafka_consumer *consumer;
	struct kafka_message msg;
	char err[256];

	rd_kafka_mock_topic_create(mock->cluster, "t.pause", 2, 1);
	producer = kafka_producer__new(&mock->settings, NULL, err, sizeof(err));
	assert_non_null(producer);
	consumer = consumer_for(mock, "g.pause", "t.pause");
	wait_assigned(consumer);
	assert_int_equal(kafka_consumer__assignment_count(consumer), 2);
	assert_int_equal(kafka_consumer__pause(consumer), 0);
	assert_true(kafka_consumer__is_paused(consumer));
	assert_int_equal(
	    kafka_producer__produce_sync(producer, "t.pause", "a", 1, "x", 1, NULL, 0, 10000, NULL),
	    0);
	/* Paused: polling keeps the membership but fetches nothing. */
	assert_int_equal(poll_one(consumer, 1500, &msg), 0);
	assert_int_equal(kafka_consumer__resume(consumer), 0);
	assert_false(kafka_consumer__is_paused(consumer));
	assert_int_equal(poll_one(consumer, 10000, &msg), 1);
	assert_memory_equal(msg.payload, "x", 1);
	kafka_message__release(&msg);
	kafka_consumer__free(consumer);
	kafka_producer__free(producer);
}

/* The deadline of a synchronous produce holds while the broker is down;
 * the late report must not touch freed memory (ASan build checks). */
static void test_produce_sync_deadline(void **state)
{
	struct mock *mock = *state;
	struct kafka_producer *producer;
	struct kafka_delivery delivery;
	uint64_t started;
	char err[256];

	rd_kafka_mock_topic_create(mock->cluster, "t.deadline", 1, 1);
	producer = kafka_producer__new(&mock->settings, NULL, err, sizeof(err));
	assert_non_null(producer);
	assert_int_equal(kafka_producer__produce_sync(producer, "t.deadline", "k", 1, "up", 2, NULL,
						      0, 10000, NULL),
			 0);
	rd_kafka_mock_broker_set_down(mock->cluster, 1);
	started = clock__monotonic_ms();
	assert_int_equal(kafka_producer__produce_sync(producer, "t.deadline", "k", 1, "down", 4,
						      NULL, 0, 300, &delivery),
			 -ETIMEDOUT);
	assert_true(clock__monotonic_ms() - started < 2000);
	assert_int_equal(delivery.offset, -1);
	rd_kafka_mock_broker_set_up(mock->cluster, 1);
	/* The abandoned message is still delivered once the broker is back. */
	assert_int_equal(kafka_producer__flush(producer, 30000), 0);
	kafka_producer__free(producer);
}

/* Polls kafka_producer__reachable until it equals want, up to timeout_ms. */
static bool reachable_becomes(struct kafka_producer *producer, bool want, int timeout_ms)
{
	uint64_t deadline = clock__monotonic_ms() + (uint64_t)timeout_ms;

	while (kafka_producer__reachable(producer) != want && clock__monotonic_ms() < deadline)
		usleep(50 * 1000);
	return kafka_producer__reachable(producer) == want;
}

/* With every broker down the producer says so (the API then refuses a
 * command at once), and says it is reachable again once a broker answers
 * its metadata probe, with nothing produced meanwhile. */
static void test_producer_reachable(void **state)
{
	struct mock *mock = *state;
	struct kafka_producer *producer;
	char err[256];

	rd_kafka_mock_topic_create(mock->cluster, "t.reach", 1, 1);
	producer = kafka_producer__new(&mock->settings, NULL, err, sizeof(err));
	assert_non_null(producer);
	assert_true(kafka_producer__reachable(producer));
	assert_int_equal(kafka_producer__produce_sync(producer, "t.reach", "k", 1, "up", 2, NULL, 0,
						      10000, NULL),
			 0);
	assert_true(kafka_producer__reachable(producer));
	rd_kafka_mock_broker_set_down(mock->cluster, 1);
	assert_true(reachable_becomes(producer, false, 20000));
	rd_kafka_mock_broker_set_up(mock->cluster, 1);
	assert_true(reachable_becomes(producer, true, 30000));
	assert_int_equal(kafka_producer__produce_sync(producer, "t.reach", "k", 1, "again", 5, NULL,
						      0, 10000, NULL),
			 0);
	kafka_producer__free(producer);
}

/* A dead-letter write that fails leaves the bad message uncommitted and
 * fetched again; the next attempt dead-letters it and moves on. */
static void test_dead_letter_write_failure(void **state)
{
	struct mock *mock = *state;
	struct kafka_producer *producer;
	struct kafka_consumer *consumer;
	struct kafka_message msg;
	struct kafka_event ev, good;
	int64_t committed;
	char err[256];

	rd_kafka_mock_topic_create(mock->cluster, "t.dlqfail", 1, 1);
	rd_kafka_mock_topic_create(mock->cluster, "t.dlqfail.dlq", 1, 1);
	producer = kafka_producer__new(&mock->settings, NULL, err, sizeof(err));
	assert_non_null(producer);
	assert_int_equal(kafka_event__init_command(&good, KAFKA_EVENT_PAUSE, "team-1",
						   "iabcdefghij0123456789", NULL, err, sizeof(err)),
			 KAFKA_EVENT_OK);
	assert_int_equal(kafka_producer__produce_sync(producer, "t.dlqfail", "k", 1, "nope", 4,
						      NULL, 0, 10000, NULL),
			 0);
	assert_int_equal(kafka_producer__produce_event(producer, "t.dlqfail", &good, 10000, NULL),
			 0);
	consumer = consumer_for(mock, "g.dlqfail", "t.dlqfail");
	wait_assigned(consumer);
	/* The next Produce request (ApiKey 0), the DLQ write, fails for good. */
	rd_kafka_mock_push_request_errors(mock->cluster, 0, 1,
					  RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
	assert_int_equal(
	    kafka_consumer__next_event(consumer, producer, "t.dlqfail.dlq", 20000, &msg, &ev),
	    -EIO);
	assert_int_equal(kafka_consumer__committed(consumer, "t.dlqfail", 0, 5000, &committed), 0);
	assert_true(committed < 0);
	assert_int_equal(
	    kafka_consumer__next_event(consumer, producer, "t.dlqfail.dlq", 20000, &msg, &ev), 1);
	assert_int_equal(msg.offset, 1);
	assert_string_equal(ev.request_id, good.request_id);
	assert_int_equal(kafka_consumer__committed(consumer, "t.dlqfail", 0, 5000, &committed), 0);
	assert_int_equal(committed, 1);
	kafka_message__release(&msg);
	kafka_event__clear(&ev);
	kafka_event__clear(&good);
	kafka_consumer__free(consumer);
	kafka_producer__free(producer);
}

/* Paused before the group assigned anything: the partitions that arrive
 * later are paused as well. */
static void test_pause_covers_later_assignment(void **state)
{
	struct mock *mock = *state;
	struct kafka_producer *producer;
	struct kafka_consumer *consumer;
	struct kafka_message msg;
	char err[256];

	rd_kafka_mock_topic_create(mock->cluster, "t.pause2", 1, 1);
	producer = kafka_producer__new(&mock->settings, NULL, err, sizeof(err));
	assert_non_null(producer);
	assert_int_equal(kafka_producer__produce_sync(producer, "t.pause2", "a", 1, "y", 1, NULL, 0,
						      10000, NULL),
			 0);
	consumer = consumer_for(mock, "g.pause2", "t.pause2");
	assert_int_equal(kafka_consumer__pause(consumer), 0);
	wait_assigned(consumer);
	assert_int_equal(poll_one(consumer, 1500, &msg), 0);
	assert_int_equal(kafka_consumer__resume(consumer), 0);
	assert_int_equal(poll_one(consumer, 10000, &msg), 1);
	assert_memory_equal(msg.payload, "y", 1);
	kafka_message__release(&msg);
	kafka_consumer__free(consumer);
	kafka_producer__free(producer);
}

/* A payload whose JSON escaping would exceed the broker's record limit
 * (256 KiB of control characters, valid UTF-8) is dead-lettered as base64
 * instead of blocking the partition. */
static void test_dead_letter_of_escaping_payload(void **state)
{
	struct mock *mock = *state;
	struct kafka_producer *producer;
	struct kafka_consumer *consumer, *reader;
	struct kafka_message msg;
	struct kafka_event ev, good;
	size_t len = KAFKA_EVENT_MAX_BYTES;
	char *payload = malloc(len), err[256];
	json_error_t json_error;
	json_t *record;

	assert_non_null(payload);
	memset(payload, 0x01, len);
	rd_kafka_mock_topic_create(mock->cluster, "t.escape", 1, 1);
	rd_kafka_mock_topic_create(mock->cluster, "t.escape.dlq", 1, 1);
	producer = kafka_producer__new(&mock->settings, NULL, err, sizeof(err));
	assert_non_null(producer);
	assert_int_equal(kafka_event__init_command(&good, KAFKA_EVENT_RESUME, "team-1",
						   "iabcdefghij0123456789", NULL, err, sizeof(err)),
			 KAFKA_EVENT_OK);
	assert_int_equal(kafka_producer__produce_sync(producer, "t.escape", "k", 1, payload, len,
						      NULL, 0, 10000, NULL),
			 0);
	assert_int_equal(kafka_producer__produce_event(producer, "t.escape", &good, 10000, NULL),
			 0);
	consumer = consumer_for(mock, "g.escape", "t.escape");
	assert_int_equal(
	    kafka_consumer__next_event(consumer, producer, "t.escape.dlq", 20000, &msg, &ev), 1);
	assert_string_equal(ev.request_id, good.request_id);
	kafka_message__release(&msg);
	kafka_event__clear(&ev);
	reader = consumer_for(mock, "g.escape.dlq", "t.escape.dlq");
	assert_int_equal(poll_one(reader, 20000, &msg), 1);
	record = json_loadb(msg.payload, msg.len, 0, &json_error);
	assert_non_null(record);
	assert_null(json_object_get(record, "payload"));
	assert_int_equal(json_string_length(json_object_get(record, "payload_base64")),
			 4 * ((len + 2) / 3));
	assert_int_equal(json_integer_value(json_object_get(record, "payload_bytes")), (int)len);
	json_decref(record);
	kafka_message__release(&msg);
	kafka_consumer__free(reader);
	kafka_consumer__free(consumer);
	kafka_event__clear(&good);
	kafka_producer__free(producer);
	free(payload);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_produce_delivery_reports),
	    cmocka_unit_test(test_consume_and_commit),
	    cmocka_unit_test(test_dead_letter_path),
	    cmocka_unit_test(test_pause_resume),
	    cmocka_unit_test(test_produce_sync_deadline),
	    cmocka_unit_test(test_producer_reachable),
	    cmocka_unit_test(test_dead_letter_write_failure),
	    cmocka_unit_test(test_pause_covers_later_assignment),
	    cmocka_unit_test(test_dead_letter_of_escaping_payload),
	};

	setenv("WARREN_LOG_LEVEL", "warn", 0);
	return cmocka_run_group_tests(tests, mock_setup, mock_teardown);
}

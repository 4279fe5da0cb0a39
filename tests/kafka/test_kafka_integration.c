/* Integration tests of the Kafka wrapper against the dev-stack broker
 * (WARREN_KAFKA_BROKERS) and PostgreSQL (WARREN_PG_URL):
 *  1. a produced event is consumed exactly once by a group of two;
 *  2. SIGKILL of one member mid-stream: at-least-once delivery plus an
 *     idempotent apply in PostgreSQL gives zero lost, zero double-applied;
 *  3. malformed and unknown-version events go to the dead-letter topic with
 *     their reason and the consumer keeps going;
 *  4. a revoke commits what was marked done;
 *  5. a prepared topic (its metadata asked for before its first message)
 *     takes messages; a missing one is reported, not made.
 * Every run uses its own topics, groups and database, removed at the end
 * (also when an assertion fails: see teardown). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "warren/clock.h"
#include "warren/ids.h"
#include "warren/kafka.h"
#include "warren/log.h"

#define SESSION_TIMEOUT_MS 6000 /* every member of every group the same */
#define STREAM_EVENTS	   2000
#define STREAM_PARTITIONS  4
#define MEMBERS		   2

static char run_id[16];
static const char *brokers, *pg_url;
static struct kafka_settings kafka; /* the kafka_* settings (WARREN_KAFKA_*) */
static char topics[8][KAFKA_TOPIC_NAME_MAX + 1];
static int topic_count;
static char database[64];
static char groups[8][64];
static int group_count;
static pid_t children[MEMBERS];

static const char *new_topic(const char *what, int partitions)
{
	char err[512];
	char *topic;

	assert_true(topic_count < 8);
	topic = topics[topic_count++];
	snprintf(topic, KAFKA_TOPIC_NAME_MAX + 1, "warren.test.kafka.%s.%s", run_id, what);
	if (kafka__create_topic(&kafka, topic, partitions, 1, 30000, err, sizeof(err)) != 0)
		fail_msg("create topic %s: %s", topic, err);
	return topic;
}

/* A run-unique consumer group name, deleted at teardown. */
static const char *new_group(const char *what)
{
	assert_true(group_count < 8);
	snprintf(groups[group_count], sizeof(groups[0]), "warren-test-%s-%s", run_id, what);
	return groups[group_count++];
}

static int teardown(void **state)
{
	char err[512];

	(void)state;
	for (int i = 0; i < MEMBERS; i++)
		if (children[i] > 0) {
			kill(children[i], SIGKILL);
			waitpid(children[i], NULL, 0);
			children[i] = 0;
		}
	for (int i = 0; i < topic_count; i++)
		if (kafka__delete_topic(&kafka, topics[i], 30000, err, sizeof(err)) != 0)
			fprintf(stderr, "cleanup: %s\n", err);
	topic_count = 0;
	for (int i = 0; i < group_count; i++)
		if (kafka__delete_group(&kafka, groups[i], 30000, err, sizeof(err)) != 0)
			fprintf(stderr, "cleanup: %s\n", err);
	group_count = 0;
	if (database[0]) {
		PGconn *pg = PQconnectdb(pg_url);
		char sql[128];
		PGresult *res;

		snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", database);
		res = PQexec(pg, sql);
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			fprintf(stderr, "cleanup: %s", PQerrorMessage(pg));
		PQclear(res);
		PQfinish(pg);
		database[0] = '\0';
	}
	return 0;
}

static struct kafka_consumer *member(const char *group, const char *topic,
				     kafka_rebalance_fn on_assign, void *opaque)
{
	struct kafka_consumer_config config = {
	    .settings = &kafka,
	    .group_id = group,
	    .session_timeout_ms = SESSION_TIMEOUT_MS,
	    .on_assign = on_assign,
	    .opaque = opaque,
	};
	char err[256];
	struct kafka_consumer *consumer = kafka_consumer__new(&config, err, sizeof(err));

	if (!consumer)
		return NULL;
	if (kafka_consumer__subscribe(consumer, &topic, 1) != 0) {
		kafka_consumer__free(consumer);
		return NULL;
	}
	return consumer;
}

static void make_create_event(struct kafka_event *ev)
{
	char sandbox_id[IDS_SANDBOX_ID_LEN + 1], reason[KAFKA_EVENT_REASON_MAX];

	assert_int_equal(ids__sandbox_id(sandbox_id), 0);
	if (kafka_event__init_command(
		ev, KAFKA_EVENT_CREATE, "team-test", sandbox_id,
		json_pack("{s:s, s:i}", "template_id", "base", "timeout_s", 60), reason,
		sizeof(reason)) != KAFKA_EVENT_OK)
		fail_msg("event: %s", reason);
}

/* ---- 1. consumed exactly once by a group of two ---- */

static void test_group_of_two_consumes_once(void **state)
{
	struct kafka_consumer *consumers[2], *late;
	struct kafka_producer *producer;
	struct kafka_message msg;
	struct kafka_event ev, got;
	char group[64], err[256], reason[KAFKA_EVENT_REASON_MAX];
	const char *topic = new_topic("once", 2);
	int received[2] = {0, 0};
	uint64_t deadline;

	(void)state;
	snprintf(group, sizeof(group), "%s", new_group("once"));
	for (int i = 0; i < 2; i++) {
		consumers[i] = member(group, topic, NULL, NULL);
		assert_non_null(consumers[i]);
	}
	/* Both members must own a partition before the event exists. */
	deadline = clock__monotonic_ms() + 60000;
	while (kafka_consumer__assignment_count(consumers[0]) != 1 ||
	       kafka_consumer__assignment_count(consumers[1]) != 1) {
		if (clock__monotonic_ms() > deadline)
			fail_msg("the group of two never split the 2 partitions");
		for (int i = 0; i < 2; i++)
			assert_int_equal(kafka_consumer__poll(consumers[i], 100, &msg), 0);
	}
	producer = kafka_producer__new(&kafka, NULL, err, sizeof(err));
	assert_non_null(producer);
	make_create_event(&ev);
	assert_int_equal(kafka_producer__produce_event(producer, topic, &ev, 15000, NULL), 0);
	/* Poll both for a while past the first arrival to catch duplicates. */
	deadline = clock__monotonic_ms() + 20000;
	while (clock__monotonic_ms() < deadline) {
		for (int i = 0; i < 2; i++) {
			int ret = kafka_consumer__poll(consumers[i], 100, &msg);
			assert_true(ret >= 0);
			if (ret == 0)
				continue;
			received[i]++;
			assert_int_equal(
			    kafka_event__decode(msg.payload, msg.len, &got, reason, sizeof(reason)),
			    KAFKA_EVENT_OK);
			assert_string_equal(got.request_id, ev.request_id);
			assert_memory_equal(msg.key, ev.sandbox_id, strlen(ev.sandbox_id));
			kafka_event__clear(&got);
			assert_int_equal(kafka_consumer__commit_message(consumers[i], &msg), 0);
			kafka_message__release(&msg);
			if (deadline > clock__monotonic_ms() + 3000)
				deadline = clock__monotonic_ms() + 3000;
		}
	}
	print_message("received by member 0: %d, member 1: %d\n", received[0], received[1]);
	assert_int_equal(received[0] + received[1], 1);
	for (int i = 0; i < 2; i++)
		kafka_consumer__free(consumers[i]);

	/* Committed: a new member of the group finds nothing left to do. */
	late = member(group, topic, NULL, NULL);
	assert_non_null(late);
	deadline = clock__monotonic_ms() + 30000;
	while (kafka_consumer__assignment_count(late) != 2) {
		assert_true(clock__monotonic_ms() < deadline);
		assert_int_equal(kafka_consumer__poll(late, 100, &msg), 0);
	}
	deadline = clock__monotonic_ms() + 2000;
	while (clock__monotonic_ms() < deadline)
		assert_int_equal(kafka_consumer__poll(late, 100, &msg), 0);
	kafka_consumer__free(late);
	kafka_event__clear(&ev);
	kafka_producer__free(producer);
}

/* ---- 2. SIGKILL of a member mid-stream ---- */

static PGconn *connect_database(const char *name)
{
	const char *keys[] = {"dbname", "dbname", NULL};
	const char *values[] = {pg_url, name, NULL};
	PGconn *pg = PQconnectdbParams(keys, values, 1);

	if (PQstatus(pg) != CONNECTION_OK) {
		fprintf(stderr, "connect %s: %s", name ? name : pg_url, PQerrorMessage(pg));
		PQfinish(pg);
		return NULL;
	}
	return pg;
}

static int exec_ok(PGconn *pg, const char *sql)
{
	PGresult *res = PQexec(pg, sql);
	int ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;

	if (!ok)
		fprintf(stderr, "%s: %s", sql, PQerrorMessage(pg));
	PQclear(res);
	return ok ? 0 : -1;
}

static long long query_number(PGconn *pg, const char *sql)
{
	PGresult *res = PQexec(pg, sql);
	long long value = -1;

	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
	    !PQgetisnull(res, 0, 0))
		value = atoll(PQgetvalue(res, 0, 0));
	else
		fprintf(stderr, "%s: %s", sql, PQerrorMessage(pg));
	PQclear(res);
	return value;
}

static int notify_fd = -1, member_index;

static void member_assigned(const struct kafka_partition *partitions, size_t count, void *opaque)
{
	char byte = (char)('0' + member_index);

	(void)partitions;
	(void)opaque;
	/* The parent stops reading after the first round (SIGPIPE ignored). */
	if (count > 0 && notify_fd >= 0 && write(notify_fd, &byte, 1) != 1) {
		close(notify_fd);
		notify_fd = -1;
	}
}

/* Applies one event idempotently: the row insert is the effect, the
 * deliveries row records every delivery (redeliveries included). */
static int apply_event(PGconn *pg, const struct kafka_event *ev, const struct kafka_message *msg)
{
	char member_text[8], partition_text[16];
	const char *params[3] = {ev->request_id, member_text, partition_text};
	const char *delivery_params[3];
	PGresult *res;
	int inserted;

	snprintf(member_text, sizeof(member_text), "%d", member_index);
	snprintf(partition_text, sizeof(partition_text), "%d", (int)msg->partition);
	if (exec_ok(pg, "BEGIN") != 0)
		return -1;
	res = PQexecParams(pg,
			   "INSERT INTO applied (event_id, member, partition) VALUES ($1, $2, $3) "
			   "ON CONFLICT (event_id) DO NOTHING",
			   3, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		fprintf(stderr, "insert: %s", PQerrorMessage(pg));
		PQclear(res);
		return -1;
	}
	inserted = atoi(PQcmdTuples(res));
	PQclear(res);
	if (inserted == 1 && exec_ok(pg, "UPDATE totals SET applications = applications + 1") != 0)
		return -1;
	delivery_params[0] = ev->request_id;
	delivery_params[1] = member_text;
	delivery_params[2] = inserted == 1 ? "true" : "false";
	res = PQexecParams(pg,
			   "INSERT INTO deliveries (event_id, member, applied) VALUES ($1, $2, $3)",
			   3, NULL, delivery_params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		fprintf(stderr, "delivery: %s", PQerrorMessage(pg));
		PQclear(res);
		return -1;
	}
	PQclear(res);
	return exec_ok(pg, "COMMIT");
}

/* The body of a forked group member; never returns. Exit codes: 0 done,
 * 2 deadline or fatal consumer error, 3 bad event, 4 setup, 6 apply failure. */
static void member_main(int index, const char *group, const char *topic, int fd)
{
	struct kafka_consumer *consumer;
	struct kafka_message msg;
	struct kafka_event ev;
	char reason[KAFKA_EVENT_REASON_MAX];
	uint64_t deadline = clock__monotonic_ms() + 120000;
	int since_commit = 0, code = 2;
	PGconn *pg;
	char component[16];

	member_index = index;
	notify_fd = fd;
	signal(SIGPIPE, SIG_IGN);
	snprintf(component, sizeof(component), "member-%d", index);
	log__set_component(component);
	pg = connect_database(database);
	consumer = member(group, topic, member_assigned, NULL);
	if (!pg || !consumer)
		_exit(4);
	while (clock__monotonic_ms() < deadline) {
		int ret = kafka_consumer__poll(consumer, 200, &msg);

		if (ret < 0)
			break;
		if (ret == 0) {
			kafka_consumer__commit(consumer);
			since_commit = 0;
			if (query_number(pg, "SELECT count(*) FROM applied") == STREAM_EVENTS) {
				code = 0;
				break;
			}
			continue;
		}
		if (kafka_event__decode(msg.payload, msg.len, &ev, reason, sizeof(reason)) !=
		    KAFKA_EVENT_OK) {
			fprintf(stderr, "member %d: bad event: %s\n", index, reason);
			code = 3;
			break;
		}
		if (apply_event(pg, &ev, &msg) != 0) {
			code = 6;
			break;
		}
		kafka_event__clear(&ev);
		/* Durable in PostgreSQL: only now may the offset move on. The
		 * commit itself is batched (every 25, when idle, on revoke),
		 * which leaves a window of applied-but-uncommitted events that
		 * a SIGKILL turns into redeliveries. */
		if (kafka_consumer__mark_done(consumer, &msg) == 0 && ++since_commit >= 25) {
			kafka_consumer__commit(consumer);
			since_commit = 0;
		}
		kafka_message__release(&msg);
		usleep(1000); /* a little work per event keeps the stream going */
	}
	kafka_message__release(&msg);
	kafka_consumer__free(consumer);
	PQfinish(pg);
	_exit(code);
}

static atomic_int stream_errors;

static void stream_delivered(const struct kafka_delivery *delivery, void *opaque)
{
	(void)opaque;
	if (delivery->error)
		atomic_fetch_add(&stream_errors, 1);
}

static void produce_events(struct kafka_producer *producer, PGconn *pg, const char *topic, int from,
			   int to)
{
	uint64_t started = clock__monotonic_ns();

	for (int i = from; i < to; i++) {
		struct kafka_event ev;
		const char *params[1];
		char *text;
		PGresult *res;
		int ret;

		make_create_event(&ev);
		params[0] = ev.request_id;
		res = PQexecParams(pg, "INSERT INTO expected (event_id) VALUES ($1)", 1, NULL,
				   params, NULL, NULL, 0);
		assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
		PQclear(res);
		text = kafka_event__encode(&ev, NULL, NULL, 0);
		assert_non_null(text);
		while ((ret = kafka_producer__produce(producer, topic, ev.sandbox_id,
						      strlen(ev.sandbox_id), text, strlen(text),
						      NULL, 0, stream_delivered, NULL)) == -ENOBUFS)
			usleep(1000);
		assert_int_equal(ret, 0);
		free(text);
		kafka_event__clear(&ev);
	}
	assert_int_equal(kafka_producer__flush(producer, 30000), 0);
	assert_int_equal(atomic_load(&stream_errors), 0);
	print_message("produced %d events (async, idempotent, acks=all; plus one PostgreSQL "
		      "insert each) in %.0f ms\n",
		      to - from, (double)(clock__monotonic_ns() - started) / 1e6);
}

/* The stream test's database: applied / deliveries / totals / expected. */
static void stream_create_database(void)
{
	char sql[256];
	PGconn *admin, *pg;

	snprintf(database, sizeof(database), "warren_kafka_test_%s", run_id);
	admin = connect_database(NULL);
	assert_non_null(admin);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", database);
	assert_int_equal(exec_ok(admin, sql), 0);
	PQfinish(admin);
	pg = connect_database(database);
	assert_non_null(pg);
	assert_int_equal(exec_ok(pg, "CREATE TABLE applied (event_id text PRIMARY KEY, "
				     "member int NOT NULL, partition int NOT NULL, "
				     "applied_at timestamptz NOT NULL DEFAULT clock_timestamp())"),
			 0);
	assert_int_equal(
	    exec_ok(pg, "CREATE TABLE deliveries (id bigserial PRIMARY KEY, "
			"event_id text NOT NULL, member int NOT NULL, applied bool NOT NULL)"),
	    0);
	assert_int_equal(exec_ok(pg, "CREATE TABLE totals (applications bigint NOT NULL)"), 0);
	assert_int_equal(exec_ok(pg, "INSERT INTO totals VALUES (0)"), 0);
	assert_int_equal(exec_ok(pg, "CREATE TABLE expected (event_id text PRIMARY KEY)"), 0);
	PQfinish(pg);
}

/* Forks the MEMBERS consumers (children[]) and waits until each has owned
 * partitions: the second one's first assignment is the rebalance that
 * includes both. */
static void stream_start_members(const char *group, const char *topic)
{
	bool assigned[MEMBERS] = {false, false};
	int pipe_fds[2];
	uint64_t deadline;

	/* Fork before this process holds any librdkafka handle or threads. */
	assert_int_equal(rd_kafka_wait_destroyed(10000), 0);
	assert_int_equal(pipe(pipe_fds), 0);
	for (int i = 0; i < MEMBERS; i++) {
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(pipe_fds[0]);
			member_main(i, group, topic, pipe_fds[1]);
		}
		children[i] = pid;
	}
	close(pipe_fds[1]);
	deadline = clock__monotonic_ms() + 60000;
	while (!assigned[0] || !assigned[1]) {
		struct pollfd readable = {.fd = pipe_fds[0], .events = POLLIN};
		char byte;

		if (clock__monotonic_ms() > deadline)
			fail_msg("the two members were not both assigned within 60 s");
		if (poll(&readable, 1, 500) != 1)
			continue;
		if (read(pipe_fds[0], &byte, 1) != 1)
			fail_msg("a member exited before its first assignment");
		if (byte >= '0' && byte < '0' + MEMBERS)
			assigned[byte - '0'] = true;
	}
	close(pipe_fds[0]);
}

/* SIGKILLs member victim once it applied 40 events (busy with the first
 * half). Returns what it had applied; *killed_at: when. */
static long long stream_kill_when_busy(PGconn *pg, int victim, uint64_t *killed_at)
{
	uint64_t deadline = clock__monotonic_ms() + 60000;
	long long victim_applied;
	char sql[256];
	int status;

	do {
		assert_true(clock__monotonic_ms() < deadline);
		usleep(10000);
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM applied WHERE member = %d",
			 victim);
		victim_applied = query_number(pg, sql);
	} while (victim_applied < 40);
	assert_int_equal(kill(children[victim], SIGKILL), 0);
	*killed_at = clock__monotonic_ms();
	assert_int_equal(waitpid(children[victim], &status, 0), children[victim]);
	children[victim] = 0;
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	return victim_applied;
}

/* Zero lost, zero double-applied, and the survivor took over every
 * partition. Returns the redeliveries (rejected by the idempotent insert). */
static long long stream_check_outcome(PGconn *pg, int survivor)
{
	long long redeliveries;
	char sql[256];

	/* Zero lost: every produced event id is applied. */
	assert_int_equal(query_number(pg, "SELECT count(*) FROM expected e "
					  "LEFT JOIN applied a USING (event_id) "
					  "WHERE a.event_id IS NULL"),
			 0);
	assert_int_equal(query_number(pg, "SELECT count(*) FROM applied"), STREAM_EVENTS);
	/* Zero double-applied: the effect counter moved once per event, and
	 * every redelivery was a rejected insert. */
	assert_int_equal(query_number(pg, "SELECT applications FROM totals"), STREAM_EVENTS);
	assert_int_equal(query_number(pg, "SELECT count(*) FROM deliveries WHERE applied"),
			 STREAM_EVENTS);
	redeliveries = query_number(pg, "SELECT count(*) FROM deliveries WHERE NOT applied");
	assert_true(redeliveries >= 0);
	/* The survivor took over: it applied events of every partition. */
	snprintf(sql, sizeof(sql),
		 "SELECT count(DISTINCT partition) FROM applied WHERE member = %d", survivor);
	assert_int_equal(query_number(pg, sql), STREAM_PARTITIONS);
	return redeliveries;
}

static void test_sigkill_member_mid_stream(void **state)
{
	const char *topic = new_topic("stream", STREAM_PARTITIONS);
	struct kafka_producer *producer;
	char group[64], err[256];
	int status, victim = 0, survivor = 1;
	long long applied, at_kill, victim_applied, redeliveries;
	uint64_t deadline, killed_at, finished_at;
	PGconn *pg;

	(void)state;
	snprintf(group, sizeof(group), "%s", new_group("stream"));
	stream_create_database();
	stream_start_members(group, topic);

	pg = connect_database(database);
	assert_non_null(pg);
	producer = kafka_producer__new(&kafka, NULL, err, sizeof(err));
	assert_non_null(producer);
	produce_events(producer, pg, topic, 0, STREAM_EVENTS / 2);
	victim_applied = stream_kill_when_busy(pg, victim, &killed_at);
	at_kill = query_number(pg, "SELECT count(*) FROM applied");

	/* The second half lands on every partition, the victim's included. */
	produce_events(producer, pg, topic, STREAM_EVENTS / 2, STREAM_EVENTS);
	kafka_producer__free(producer);

	deadline = clock__monotonic_ms() + 90000;
	while ((applied = query_number(pg, "SELECT count(*) FROM applied")) < STREAM_EVENTS) {
		if (clock__monotonic_ms() > deadline)
			fail_msg("only %lld of %d events applied 90 s after the kill", applied,
				 STREAM_EVENTS);
		usleep(50000);
	}
	finished_at = clock__monotonic_ms();
	assert_int_equal(waitpid(children[survivor], &status, 0), children[survivor]);
	children[survivor] = 0;
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	redeliveries = stream_check_outcome(pg, survivor);
	print_message("stream: %d events, %d partitions; victim applied %lld, %lld applied in "
		      "all at the kill; all applied %.1f s after the kill (session timeout "
		      "%d ms); redeliveries rejected by the idempotent insert: %lld; lost: 0; "
		      "double-applied: 0\n",
		      STREAM_EVENTS, STREAM_PARTITIONS, victim_applied, at_kill,
		      (double)(finished_at - killed_at) / 1000.0, SESSION_TIMEOUT_MS, redeliveries);
	PQfinish(pg);
}

#define REVOKE_EVENTS 200

static int revoked_calls;
static uint64_t latency_us[REVOKE_EVENTS];

static int compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void count_revoke(const struct kafka_partition *partitions, size_t count, void *opaque)
{
	(void)partitions;
	(void)opaque;
	revoked_calls += count > 0;
}

/* Marked-done offsets are committed on revoke without an explicit commit,
 * so what a member finished is not redone by the next owner. (librdkafka's
 * mock cluster refuses commits during a rebalance, a real broker accepts
 * them with the current generation: hence an integration test.) */
static void test_revoke_commits_marked(void **state)
{
	const char *topic = new_topic("revoke", 1);
	struct kafka_consumer_config config = {
	    .settings = &kafka,
	    .session_timeout_ms = SESSION_TIMEOUT_MS,
	    .on_revoke = count_revoke,
	};
	struct kafka_producer *producer;
	struct kafka_consumer *first, *second;
	struct kafka_message msg;
	uint64_t deadline;
	int64_t committed = -1;
	char group[64], err[256];

	(void)state;
	snprintf(group, sizeof(group), "%s", new_group("revoke"));
	config.group_id = group;
	producer = kafka_producer__new(&kafka, NULL, err, sizeof(err));
	assert_non_null(producer);
	/* Also a figure: the round trip of a synchronous, acks=all produce. */
	for (int i = 0; i < REVOKE_EVENTS; i++) {
		uint64_t started = clock__monotonic_ns();
		assert_int_equal(kafka_producer__produce_sync(producer, topic, "k", 1, "m", 1, NULL,
							      0, 15000, NULL),
				 0);
		latency_us[i] = (clock__monotonic_ns() - started) / 1000;
	}
	qsort(latency_us, REVOKE_EVENTS, sizeof(latency_us[0]), compare_u64);
	print_message("produce_sync round trip over %d messages: p50 %.2f ms, p99 %.2f ms\n",
		      REVOKE_EVENTS, latency_us[REVOKE_EVENTS / 2] / 1000.0,
		      latency_us[REVOKE_EVENTS * 99 / 100] / 1000.0);
	first = kafka_consumer__new(&config, err, sizeof(err));
	assert_non_null(first);
	assert_int_equal(kafka_consumer__subscribe(first, &topic, 1), 0);
	for (int i = 0; i < REVOKE_EVENTS; i++) {
		deadline = clock__monotonic_ms() + 30000;
		while (kafka_consumer__poll(first, 200, &msg) == 0)
			assert_true(clock__monotonic_ms() < deadline);
		assert_int_equal(msg.offset, i);
		assert_int_equal(kafka_consumer__mark_done(first, &msg), 0);
		kafka_message__release(&msg);
	}
	assert_int_equal(kafka_consumer__committed(first, topic, 0, 10000, &committed), 0);
	assert_true(committed < 0);
	/* A second member joins: the first is revoked and commits on the way. */
	second = member(group, topic, NULL, NULL);
	assert_non_null(second);
	deadline = clock__monotonic_ms() + 30000;
	while (revoked_calls == 0) {
		assert_true(clock__monotonic_ms() < deadline);
		assert_int_equal(kafka_consumer__poll(first, 100, &msg), 0);
		assert_int_equal(kafka_consumer__poll(second, 100, &msg), 0);
	}
	assert_int_equal(kafka_consumer__committed(second, topic, 0, 10000, &committed), 0);
	assert_int_equal(committed, REVOKE_EVENTS);
	kafka_consumer__free(second);
	kafka_consumer__free(first);
	kafka_producer__free(producer);
}

/* ---- 3. dead letters ---- */

static void test_bad_events_go_to_dead_letter(void **state)
{
	const char *topic = new_topic("bad", 1);
	const char *dlq_topic = new_topic("dlq", 1);
	const char *unknown_version =
	    "{\"version\":2,\"type\":\"kill\",\"request_id\":\"6f1c2b9e-3d4a-4c5b-9e8f-"
	    "0a1b2c3d4e5f\","
	    "\"team_id\":\"t\",\"sandbox_id\":\"iabcdefghij0123456789\",\"spec\":{},"
	    "\"sent_at\":\"2026-11-26T23:59:00Z\"}";
	const char *expected_codes[2] = {"not_json", "unknown_version"};
	struct kafka_producer *producer;
	struct kafka_consumer *consumer, *reader;
	struct kafka_message msg;
	struct kafka_event good, ev;
	char group[64], err[256];
	int64_t committed;

	(void)state;
	snprintf(group, sizeof(group), "%s", new_group("bad"));
	producer = kafka_producer__new(&kafka, NULL, err, sizeof(err));
	assert_non_null(producer);
	make_create_event(&good);
	assert_int_equal(kafka_producer__produce_sync(producer, topic, "k", 1, "{\"version\":1,",
						      13, NULL, 0, 15000, NULL),
			 0);
	assert_int_equal(kafka_producer__produce_sync(producer, topic, "k", 1, unknown_version,
						      strlen(unknown_version), NULL, 0, 15000,
						      NULL),
			 0);
	assert_int_equal(kafka_producer__produce_event(producer, topic, &good, 15000, NULL), 0);

	consumer = member(group, topic, NULL, NULL);
	assert_non_null(consumer);
	assert_int_equal(
	    kafka_consumer__next_event(consumer, producer, dlq_topic, 30000, &msg, &ev), 1);
	assert_int_equal(msg.offset, 2);
	assert_string_equal(ev.request_id, good.request_id);
	assert_int_equal(kafka_consumer__committed(consumer, topic, 0, 10000, &committed), 0);
	assert_int_equal(committed, 2); /* both bad ones, after their DLQ write */
	assert_int_equal(kafka_consumer__commit_message(consumer, &msg), 0);
	assert_int_equal(kafka_consumer__committed(consumer, topic, 0, 10000, &committed), 0);
	assert_int_equal(committed, 3);
	kafka_message__release(&msg);
	kafka_event__clear(&ev);
	kafka_consumer__free(consumer);

	snprintf(group, sizeof(group), "%s", new_group("dlq"));
	reader = member(group, dlq_topic, NULL, NULL);
	assert_non_null(reader);
	for (int i = 0; i < 2; i++) {
		uint64_t deadline = clock__monotonic_ms() + 30000;
		json_error_t json_error;
		const void *value;
		size_t len;
		json_t *record;
		int ret;

		while ((ret = kafka_consumer__poll(reader, 200, &msg)) == 0)
			assert_true(clock__monotonic_ms() < deadline);
		assert_int_equal(ret, 1);
		record = json_loadb(msg.payload, msg.len, 0, &json_error);
		assert_non_null(record);
		assert_string_equal(json_string_value(json_object_get(record, "reason_code")),
				    expected_codes[i]);
		assert_true(strlen(json_string_value(json_object_get(record, "reason"))) > 0);
		assert_string_equal(
		    json_string_value(json_object_get(json_object_get(record, "source"), "topic")),
		    topic);
		assert_int_equal(json_integer_value(
				     json_object_get(json_object_get(record, "source"), "offset")),
				 i);
		assert_string_equal(json_string_value(json_object_get(record, "payload")),
				    i == 0 ? "{\"version\":1," : unknown_version);
		assert_int_equal(
		    kafka_message__header(&msg, KAFKA_DLQ_HEADER_REASON_CODE, &value, &len), 0);
		assert_int_equal(len, strlen(expected_codes[i]));
		assert_memory_equal(value, expected_codes[i], len);
		print_message("dead letter %d: %s\n", i,
			      json_string_value(json_object_get(record, "reason")));
		json_decref(record);
		kafka_message__release(&msg);
	}
	kafka_consumer__free(reader);
	kafka_event__clear(&good);
	kafka_producer__free(producer);
}

/* ---- 5. topics prepared before their first message ---- */

static void test_prepare_topic(void **state)
{
	const char *topic = new_topic("prepared", 2);
	char missing[KAFKA_TOPIC_NAME_MAX + 1], err[256];
	struct kafka_producer *producer = kafka_producer__new(&kafka, NULL, err, sizeof(err));
	struct kafka_delivery delivery = {0};

	(void)state;
	assert_non_null(producer);
	assert_int_equal(kafka_producer__prepare(producer, topic, 10000), 0);
	assert_int_equal(kafka_producer__prepare(producer, topic, 10000), 0); /* known: no lookup */
	snprintf(missing, sizeof(missing), "warren.test.kafka.%s.missing", run_id);
	/* The broker creates no topic on a metadata request (dev-stack:
	 * auto.create.topics.enable=false), so it stays missing. */
	assert_int_not_equal(kafka_producer__prepare(producer, missing, 5000), 0);
	assert_int_equal(kafka_producer__produce_sync(producer, topic, "k", 1, "v", 1, NULL, 0,
						      10000, &delivery),
			 0);
	assert_int_equal(delivery.error, 0);
	assert_true(delivery.offset >= 0);
	kafka_producer__free(producer);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_group_of_two_consumes_once, teardown),
	    cmocka_unit_test_teardown(test_sigkill_member_mid_stream, teardown),
	    cmocka_unit_test_teardown(test_bad_events_go_to_dead_letter, teardown),
	    cmocka_unit_test_teardown(test_revoke_commits_marked, teardown),
	    cmocka_unit_test_teardown(test_prepare_topic, teardown),
	};
	unsigned char random[4];

	brokers = getenv("WARREN_KAFKA_BROKERS");
	pg_url = getenv("WARREN_PG_URL");
	if (!brokers || !*brokers || !pg_url || !*pg_url) {
		fprintf(stderr, "test_kafka_integration: WARREN_KAFKA_BROKERS and WARREN_PG_URL "
				"must be set (eval \"$(scripts/dev-stack env)\")\n");
		return 1;
	}
	kafka_settings__from_config(&kafka);
	if (ids__random_bytes(random, sizeof(random)) != 0)
		return 1;
	snprintf(run_id, sizeof(run_id), "%02x%02x%02x%02x", random[0], random[1], random[2],
		 random[3]);
	setenv("WARREN_LOG_LEVEL", "warn", 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}

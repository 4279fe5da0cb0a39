/* kafka_producer: idempotent producer (enable.idempotence=true, acks=all)
 * whose delivery reports are served by one thread of its own, so both the
 * async callback and the synchronous "produce and wait" work without the
 * caller polling. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "warren/clock.h"
#include "warren/kafka.h"
#include "warren/log.h"

#include "kafka_internal.h"

struct kafka_producer {
	rd_kafka_t *rk;
	pthread_t thread;
	bool thread_started;
	atomic_bool stop;
	/* Set when librdkafka reports every broker connection down; cleared
	 * by a delivered message or a metadata probe of the delivery thread
	 * (kafka_producer__reachable). */
	atomic_bool unreachable;
	/* Topics made ready by kafka_producer__prepare (their handles keep
	 * librdkafka's topic, with its partitions' leaders, alive). */
	rd_kafka_topic_t *prepared[KAFKA_PRODUCER_PREPARED_MAX];
	int prepared_count;
	pthread_mutex_t prepared_lock;
};

/* While no broker is reachable the delivery thread asks for metadata this
 * often (it makes librdkafka connect again; the answer clears the flag). */
#define PRODUCER_PROBE_INTERVAL_MS 1000

/* The per-message opaque handed to librdkafka. */
struct pending {
	kafka_delivery_fn done;
	void *opaque;
};

/* Shared between a synchronous producer and the delivery thread; freed by
 * whichever lets go last (the waiter may give up at its deadline). */
struct sync_wait {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int refs;
	bool done;
	int error;
	int32_t partition;
	int64_t offset;
};

static void sync_wait__put(struct sync_wait *wait)
{
	int refs;

	pthread_mutex_lock(&wait->lock);
	refs = --wait->refs;
	pthread_mutex_unlock(&wait->lock);
	if (refs == 0) {
		pthread_cond_destroy(&wait->cond);
		pthread_mutex_destroy(&wait->lock);
		free(wait);
	}
}

static void sync_wait__done(const struct kafka_delivery *delivery, void *opaque)
{
	struct sync_wait *wait = opaque;

	pthread_mutex_lock(&wait->lock);
	wait->done = true;
	wait->error = delivery->error;
	wait->partition = delivery->partition;
	wait->offset = delivery->offset;
	pthread_cond_broadcast(&wait->cond);
	pthread_mutex_unlock(&wait->lock);
	sync_wait__put(wait);
}

static void delivery_report(rd_kafka_t *rk, const rd_kafka_message_t *message, void *opaque)
{
	struct pending *pending = message->_private;
	struct kafka_delivery delivery = {
	    .error = message->err,
	    .topic = message->rkt ? rd_kafka_topic_name(message->rkt) : "",
	    .partition = message->partition,
	    .offset = message->offset,
	};

	if (message->err)
		log_debug("kafka: delivery to %s failed: %s", delivery.topic,
			  rd_kafka_err2str(message->err));
	else
		atomic_store(&((struct kafka_producer *)opaque)->unreachable, false);
	if (!pending)
		return;
	if (pending->done)
		pending->done(&delivery, pending->opaque);
	free(pending);
}

static void error_report(rd_kafka_t *rk, int error, const char *reason, void *opaque)
{
	char fatal[256];

	if (error == RD_KAFKA_RESP_ERR__FATAL) {
		rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
		log_error("kafka producer: fatal error: %s", fatal);
		return;
	}
	if (error == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
		atomic_store(&((struct kafka_producer *)opaque)->unreachable, true);
	log_warn("kafka producer: %s: %s", rd_kafka_err2name(error), reason);
}

/* Asks any broker for metadata; an answer means a broker is reachable. */
static void producer__probe(struct kafka_producer *producer)
{
	const struct rd_kafka_metadata *metadata = NULL;

	if (rd_kafka_metadata(producer->rk, 0, NULL, &metadata, PRODUCER_PROBE_INTERVAL_MS) !=
	    RD_KAFKA_RESP_ERR_NO_ERROR)
		return;
	rd_kafka_metadata_destroy(metadata);
	if (atomic_exchange(&producer->unreachable, false))
		log_info("kafka producer: a broker answers again");
}

static void *delivery_thread(void *arg)
{
	struct kafka_producer *producer = arg;
	uint64_t last_probe_ms = 0;

	while (!atomic_load(&producer->stop)) {
		rd_kafka_poll(producer->rk, 100);
		if (atomic_load(&producer->unreachable) &&
		    clock__monotonic_ms() - last_probe_ms >= PRODUCER_PROBE_INTERVAL_MS) {
			producer__probe(producer);
			last_probe_ms = clock__monotonic_ms();
		}
	}
	return NULL;
}

bool kafka_producer__reachable(const struct kafka_producer *producer)
{
	return producer && !atomic_load(&producer->unreachable);
}

struct kafka_producer *kafka_producer__new(const struct kafka_settings *settings,
					   const char *client_id, char *err, size_t err_len)
{
	struct kafka_producer *producer = calloc(1, sizeof(*producer));
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char local[256];

	if (!producer || !conf) {
		snprintf(err, err_len, "out of memory");
		goto err;
	}
	if (kafka_internal__client_conf(conf, settings, "producer", client_id, err, err_len) ||
	    kafka_internal__set(conf, "enable.idempotence", "true", err, err_len) ||
	    kafka_internal__set(conf, "acks", "all", err, err_len) ||
	    kafka_internal__set(conf, "linger.ms", "0", err, err_len) ||
	    kafka_internal__set(conf, "message.timeout.ms", "60000", err, err_len))
		goto err;
	rd_kafka_conf_set_dr_msg_cb(conf, delivery_report);
	rd_kafka_conf_set_error_cb(conf, error_report);
	rd_kafka_conf_set_log_cb(conf, kafka_internal__log_cb);
	rd_kafka_conf_set_opaque(conf, producer);
	producer->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, local, sizeof(local));
	if (!producer->rk) {
		snprintf(err, err_len, "rd_kafka_new: %s", local);
		goto err;
	}
	conf = NULL; /* owned by rk now */
	if (pthread_create(&producer->thread, NULL, delivery_thread, producer) != 0) {
		snprintf(err, err_len, "pthread_create failed");
		goto err;
	}
	producer->thread_started = true;
	pthread_mutex_init(&producer->prepared_lock, NULL);
	return producer;
err:
	if (conf)
		rd_kafka_conf_destroy(conf);
	if (producer && producer->rk)
		rd_kafka_destroy(producer->rk);
	free(producer);
	return NULL;
}

void kafka_producer__free(struct kafka_producer *producer)
{
	if (!producer)
		return;
	if (producer->thread_started) {
		atomic_store(&producer->stop, true);
		pthread_join(producer->thread, NULL);
	}
	if (rd_kafka_flush(producer->rk, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
		log_warn("kafka producer: %d messages undelivered at shutdown",
			 rd_kafka_outq_len(producer->rk));
	/* Remaining reports (with errors) are served by purge + poll. */
	rd_kafka_purge(producer->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	rd_kafka_poll(producer->rk, 0);
	for (int i = 0; i < producer->prepared_count; i++)
		rd_kafka_topic_destroy(producer->prepared[i]);
	pthread_mutex_destroy(&producer->prepared_lock);
	rd_kafka_destroy(producer->rk);
	free(producer);
}

/* Whether topic is prepared; the caller holds prepared_lock. */
static bool prepared__has_locked(const struct kafka_producer *producer, const char *topic)
{
	for (int i = 0; i < producer->prepared_count; i++)
		if (strcmp(rd_kafka_topic_name(producer->prepared[i]), topic) == 0)
			return true;
	return false;
}

static bool prepared__has(struct kafka_producer *producer, const char *topic)
{
	bool found;

	pthread_mutex_lock(&producer->prepared_lock);
	found = prepared__has_locked(producer, topic);
	pthread_mutex_unlock(&producer->prepared_lock);
	return found;
}

int kafka_producer__prepare(struct kafka_producer *producer, const char *topic, int timeout_ms)
{
	const struct rd_kafka_metadata *metadata = NULL;
	rd_kafka_resp_err_t error;
	rd_kafka_topic_t *handle;
	bool kept = false;

	if (!producer || !topic)
		return -EINVAL;
	if (prepared__has(producer, topic))
		return 0;
	handle = rd_kafka_topic_new(producer->rk, topic, NULL);
	if (!handle)
		return -ENOMEM;
	/* Not under the lock: other topics' produces go on meanwhile. */
	error = rd_kafka_metadata(producer->rk, 0, handle, &metadata, timeout_ms);
	if (error == RD_KAFKA_RESP_ERR_NO_ERROR && metadata->topic_cnt == 1 &&
	    metadata->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR)
		error = metadata->topics[0].err;
	if (metadata)
		rd_kafka_metadata_destroy(metadata);
	if (error != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_debug("kafka producer: metadata of %s: %s", topic, rd_kafka_err2str(error));
		rd_kafka_topic_destroy(handle);
		return error == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ? -ENOENT : -EIO;
	}
	pthread_mutex_lock(&producer->prepared_lock);
	kept = producer->prepared_count < KAFKA_PRODUCER_PREPARED_MAX &&
	       !prepared__has_locked(producer, topic);
	if (kept)
		producer->prepared[producer->prepared_count++] = handle;
	pthread_mutex_unlock(&producer->prepared_lock);
	if (!kept) /* full, or prepared meanwhile: librdkafka's cache has it */
		rd_kafka_topic_destroy(handle);
	return 0;
}

static int map_produce_error(rd_kafka_resp_err_t error)
{
	switch (error) {
	case RD_KAFKA_RESP_ERR_NO_ERROR:
		return 0;
	case RD_KAFKA_RESP_ERR__QUEUE_FULL:
		return -ENOBUFS;
	case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
		return -EMSGSIZE;
	case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
	case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
		return -ENOENT;
	default:
		return -EIO;
	}
}

int kafka_producer__produce(struct kafka_producer *producer, const char *topic, const void *key,
			    size_t key_len, const void *payload, size_t len,
			    const struct kafka_header *headers, size_t header_count,
			    kafka_delivery_fn done, void *opaque)
{
	rd_kafka_headers_t *rd_headers = NULL;
	struct pending *pending = NULL;
	rd_kafka_resp_err_t error;

	if (!producer || !topic || (!payload && len))
		return -EINVAL;
	if (done) {
		pending = calloc(1, sizeof(*pending));
		if (!pending)
			return -ENOMEM;
		pending->done = done;
		pending->opaque = opaque;
	}
	if (header_count) {
		rd_headers = rd_kafka_headers_new(header_count);
		for (size_t i = 0; i < header_count; i++)
			rd_kafka_header_add(rd_headers, headers[i].name, -1, headers[i].value,
					    (ssize_t)headers[i].len);
	}
	error = rd_kafka_producev(
	    producer->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key ? key_len : 0),
	    RD_KAFKA_V_VALUE((void *)payload, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
	    RD_KAFKA_V_HEADERS(rd_headers), RD_KAFKA_V_OPAQUE(pending), RD_KAFKA_V_END);
	if (error) {
		/* On failure the headers and the opaque stay ours. */
		if (rd_headers)
			rd_kafka_headers_destroy(rd_headers);
		free(pending);
		if (error != RD_KAFKA_RESP_ERR__QUEUE_FULL)
			log_warn("kafka producer: produce to %s: %s", topic,
				 rd_kafka_err2str(error));
		return map_produce_error(error);
	}
	return 0;
}

int kafka_producer__produce_sync(struct kafka_producer *producer, const char *topic,
				 const void *key, size_t key_len, const void *payload, size_t len,
				 const struct kafka_header *headers, size_t header_count,
				 int timeout_ms, struct kafka_delivery *out)
{
	uint64_t deadline_ns = clock__monotonic_ns() + (uint64_t)timeout_ms * 1000000ull;
	struct sync_wait *wait = calloc(1, sizeof(*wait));
	pthread_condattr_t attr;
	struct timespec until;
	int ret;

	if (!wait)
		return -ENOMEM;
	pthread_mutex_init(&wait->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&wait->cond, &attr);
	pthread_condattr_destroy(&attr);
	wait->refs = 2;
	/* A topic's first message waits for librdkafka's lookup of unknown
	 * topics (up to a second); one metadata request instead (none once
	 * the topic is prepared). */
	kafka_producer__prepare(producer, topic, timeout_ms < 2000 ? timeout_ms : 2000);
	for (;;) {
		ret = kafka_producer__produce(producer, topic, key, key_len, payload, len, headers,
					      header_count, sync_wait__done, wait);
		if (ret != -ENOBUFS || clock__monotonic_ns() >= deadline_ns)
			break;
		usleep(5000); /* local queue full: let the delivery thread drain it */
	}
	if (ret != 0) {
		wait->refs = 1; /* the callback will never run */
		sync_wait__put(wait);
		return ret == -ENOBUFS ? -ETIMEDOUT : ret;
	}
	until.tv_sec = (time_t)(deadline_ns / 1000000000ull);
	until.tv_nsec = (long)(deadline_ns % 1000000000ull);
	pthread_mutex_lock(&wait->lock);
	while (!wait->done)
		if (pthread_cond_timedwait(&wait->cond, &wait->lock, &until) == ETIMEDOUT)
			break;
	if (!wait->done)
		ret = -ETIMEDOUT;
	else if (wait->error)
		ret = -EIO;
	if (out) {
		out->error = wait->done ? wait->error : RD_KAFKA_RESP_ERR__TIMED_OUT;
		out->topic = topic;
		out->partition = wait->partition;
		out->offset = wait->done ? wait->offset : -1;
	}
	pthread_mutex_unlock(&wait->lock);
	sync_wait__put(wait);
	return ret;
}

int kafka_producer__produce_event(struct kafka_producer *producer, const char *topic,
				  const struct kafka_event *ev, int timeout_ms,
				  struct kafka_delivery *out)
{
	enum kafka_event_error error;
	char reason[KAFKA_EVENT_REASON_MAX];
	char *text = kafka_event__encode(ev, &error, reason, sizeof(reason));
	int ret;

	if (!text) {
		log_warn("kafka producer: refusing to produce an invalid %s event: %s",
			 kafka_event__type_name(ev->type), reason);
		return -EINVAL;
	}
	ret = kafka_producer__produce_sync(producer, topic, ev->sandbox_id, strlen(ev->sandbox_id),
					   text, strlen(text), NULL, 0, timeout_ms, out);
	free(text);
	return ret;
}

int kafka_producer__flush(struct kafka_producer *producer, int timeout_ms)
{
	rd_kafka_resp_err_t error = rd_kafka_flush(producer->rk, timeout_ms);

	return error == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : -ETIMEDOUT;
}

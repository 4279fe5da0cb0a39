/* kafka_consumer: consumer-group member with manual commits. Offsets are
 * stored only for messages the caller marked done (enable.auto.offset.
 * store=false) and committed synchronously when asked and on every revoke,
 * so a commit never covers a message whose outcome is not durable
 * (ARCHITECTURE.md, "Offsets are committed after the outcome is in
 * PostgreSQL"). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "warren/clock.h"
#include "warren/kafka.h"
#include "warren/log.h"

#include "kafka_internal.h"

struct kafka_consumer {
	rd_kafka_t *rk;
	struct kafka_consumer_config config;
	bool paused;
	bool closed;
};

static bool is_cooperative(rd_kafka_t *rk)
{
	const char *protocol = rd_kafka_rebalance_protocol(rk);

	return protocol && strcmp(protocol, "COOPERATIVE") == 0;
}

static void call_hook(kafka_rebalance_fn hook, const rd_kafka_topic_partition_list_t *list,
		      void *opaque)
{
	struct kafka_partition *partitions;

	if (!hook)
		return;
	partitions = calloc((size_t)list->cnt + 1, sizeof(*partitions));
	if (!partitions) {
		log_error("kafka consumer: out of memory in the rebalance hook");
		return;
	}
	for (int i = 0; i < list->cnt; i++) {
		partitions[i].topic = list->elems[i].topic;
		partitions[i].partition = list->elems[i].partition;
	}
	hook(partitions, (size_t)list->cnt, opaque);
	free(partitions);
}

/* Commits the offsets stored with kafka_consumer__mark_done. */
static int commit_stored(rd_kafka_t *rk)
{
	rd_kafka_resp_err_t error = rd_kafka_commit(rk, NULL, 0);

	if (error == RD_KAFKA_RESP_ERR_NO_ERROR || error == RD_KAFKA_RESP_ERR__NO_OFFSET)
		return 0;
	log_warn("kafka consumer %s: commit failed: %s", rd_kafka_name(rk),
		 rd_kafka_err2str(error));
	return -EIO;
}

/* Runs inside rd_kafka_consumer_poll. Revoke: commit what is done first,
 * so the next owner starts right after the last durable outcome. */
static void rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t error,
		      rd_kafka_topic_partition_list_t *partitions, void *opaque)
{
	struct kafka_consumer *consumer = opaque;
	rd_kafka_error_t *rd_error = NULL;
	bool cooperative = is_cooperative(rk);

	switch (error) {
	case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
		log_info("kafka consumer %s: assigned %d partition(s)", rd_kafka_name(rk),
			 partitions->cnt);
		if (cooperative)
			rd_error = rd_kafka_incremental_assign(rk, partitions);
		else
			rd_kafka_assign(rk, partitions);
		if (consumer->paused && partitions->cnt)
			rd_kafka_pause_partitions(rk, partitions);
		call_hook(consumer->config.on_assign, partitions, consumer->config.opaque);
		break;
	case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
		log_info("kafka consumer %s: revoking %d partition(s)", rd_kafka_name(rk),
			 partitions->cnt);
		if (!rd_kafka_assignment_lost(rk))
			commit_stored(rk);
		call_hook(consumer->config.on_revoke, partitions, consumer->config.opaque);
		if (cooperative)
			rd_error = rd_kafka_incremental_unassign(rk, partitions);
		else
			rd_kafka_assign(rk, NULL);
		break;
	default:
		log_error("kafka consumer %s: rebalance error: %s", rd_kafka_name(rk),
			  rd_kafka_err2str(error));
		rd_kafka_assign(rk, NULL);
		break;
	}
	if (rd_error) {
		log_error("kafka consumer %s: incremental rebalance: %s", rd_kafka_name(rk),
			  rd_kafka_error_string(rd_error));
		rd_kafka_error_destroy(rd_error);
	}
}

struct kafka_consumer *kafka_consumer__new(const struct kafka_consumer_config *config, char *err,
					   size_t err_len)
{
	struct kafka_consumer *consumer = NULL;
	rd_kafka_conf_t *conf = NULL;
	char number[32], local[256];
	int session = config && config->session_timeout_ms > 0 ? config->session_timeout_ms : 10000;
	int max_poll =
	    config && config->max_poll_interval_ms > 0 ? config->max_poll_interval_ms : 300000;

	if (!config || !config->group_id || !*config->group_id) {
		snprintf(err, err_len, "a group_id is required");
		return NULL;
	}
	consumer = calloc(1, sizeof(*consumer));
	conf = rd_kafka_conf_new();
	if (!consumer || !conf) {
		snprintf(err, err_len, "out of memory");
		goto err;
	}
	consumer->config = *config;
	/* Only used here: the caller's strings need not outlive this call. */
	consumer->config.settings = NULL;
	consumer->config.client_id = NULL;
	if (kafka_internal__client_conf(conf, config->settings, "consumer", config->client_id, err,
					err_len) ||
	    kafka_internal__set(conf, "group.id", config->group_id, err, err_len) ||
	    kafka_internal__set(conf, "enable.auto.commit", "false", err, err_len) ||
	    kafka_internal__set(conf, "enable.auto.offset.store", "false", err, err_len) ||
	    kafka_internal__set(conf, "enable.partition.eof", "false", err, err_len) ||
	    kafka_internal__set(conf, "auto.offset.reset",
				config->start_at_latest ? "latest" : "earliest", err, err_len))
		goto err;
	snprintf(number, sizeof(number), "%d", session);
	if (kafka_internal__set(conf, "session.timeout.ms", number, err, err_len))
		goto err;
	/* The broker expects heartbeats well inside the session timeout. */
	snprintf(number, sizeof(number), "%d", session / 3 > 3000 ? 3000 : session / 3);
	if (kafka_internal__set(conf, "heartbeat.interval.ms", number, err, err_len))
		goto err;
	snprintf(number, sizeof(number), "%d", max_poll);
	if (kafka_internal__set(conf, "max.poll.interval.ms", number, err, err_len))
		goto err;
	rd_kafka_conf_set_rebalance_cb(conf, rebalance);
	rd_kafka_conf_set_log_cb(conf, kafka_internal__log_cb);
	rd_kafka_conf_set_opaque(conf, consumer);
	consumer->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, local, sizeof(local));
	if (!consumer->rk) {
		snprintf(err, err_len, "rd_kafka_new: %s", local);
		goto err;
	}
	conf = NULL;
	rd_kafka_poll_set_consumer(consumer->rk);
	return consumer;
err:
	if (conf)
		rd_kafka_conf_destroy(conf);
	free(consumer);
	return NULL;
}

void kafka_consumer__free(struct kafka_consumer *consumer)
{
	rd_kafka_resp_err_t error;

	if (!consumer)
		return;
	if (!consumer->closed) {
		/* Close runs the final revoke (which commits what is done). */
		error = rd_kafka_consumer_close(consumer->rk);
		if (error)
			log_warn("kafka consumer %s: close: %s", rd_kafka_name(consumer->rk),
				 rd_kafka_err2str(error));
		consumer->closed = true;
	}
	rd_kafka_destroy(consumer->rk);
	free(consumer);
}

int kafka_consumer__subscribe(struct kafka_consumer *consumer, const char *const *topics,
			      size_t count)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)count);
	rd_kafka_resp_err_t error;

	for (size_t i = 0; i < count; i++)
		rd_kafka_topic_partition_list_add(list, topics[i], RD_KAFKA_PARTITION_UA);
	error = rd_kafka_subscribe(consumer->rk, list);
	rd_kafka_topic_partition_list_destroy(list);
	if (error) {
		log_error("kafka consumer: subscribe: %s", rd_kafka_err2str(error));
		return -EINVAL;
	}
	return 0;
}

int kafka_consumer__unsubscribe(struct kafka_consumer *consumer)
{
	rd_kafka_resp_err_t error = rd_kafka_unsubscribe(consumer->rk);

	if (error) {
		log_error("kafka consumer: unsubscribe: %s", rd_kafka_err2str(error));
		return -EINVAL;
	}
	return 0;
}

int kafka_consumer__poll(struct kafka_consumer *consumer, int timeout_ms, struct kafka_message *msg)
{
	rd_kafka_message_t *message;

	memset(msg, 0, sizeof(*msg));
	message = rd_kafka_consumer_poll(consumer->rk, timeout_ms);
	if (!message)
		return 0;
	if (message->err) {
		/* Consumer errors are informational unless fatal. */
		bool fatal = message->err == RD_KAFKA_RESP_ERR__FATAL;
		if (fatal)
			log_error("kafka consumer %s: fatal: %s", rd_kafka_name(consumer->rk),
				  rd_kafka_message_errstr(message));
		else if (message->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
			log_warn("kafka consumer %s: %s", rd_kafka_name(consumer->rk),
				 rd_kafka_message_errstr(message));
		rd_kafka_message_destroy(message);
		return fatal ? -EIO : 0;
	}
	msg->topic = rd_kafka_topic_name(message->rkt);
	msg->partition = message->partition;
	msg->offset = message->offset;
	msg->key = message->key;
	msg->key_len = message->key_len;
	msg->payload = message->payload;
	msg->len = message->len;
	msg->internal = message;
	return 1;
}

void kafka_message__release(struct kafka_message *msg)
{
	if (!msg)
		return;
	if (msg->internal)
		rd_kafka_message_destroy(msg->internal);
	memset(msg, 0, sizeof(*msg));
}

int kafka_message__header(const struct kafka_message *msg, const char *name, const void **value,
			  size_t *len)
{
	rd_kafka_headers_t *headers = NULL;

	if (!msg || !msg->internal)
		return -EINVAL;
	if (rd_kafka_message_headers(msg->internal, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return -ENOENT;
	if (rd_kafka_header_get_last(headers, name, value, len) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return -ENOENT;
	return 0;
}

int kafka_consumer__mark_done(struct kafka_consumer *consumer, const struct kafka_message *msg)
{
	rd_kafka_topic_partition_list_t *list;
	rd_kafka_resp_err_t error;

	if (!msg || !msg->topic)
		return -EINVAL;
	list = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(list, msg->topic, msg->partition)->offset =
	    msg->offset + 1;
	error = rd_kafka_offsets_store(consumer->rk, list);
	if (error == RD_KAFKA_RESP_ERR_NO_ERROR)
		error = list->elems[0].err;
	rd_kafka_topic_partition_list_destroy(list);
	if (error == RD_KAFKA_RESP_ERR__STATE)
		return -ESTALE;
	if (error) {
		log_warn("kafka consumer: store offset %s/%d@%lld: %s", msg->topic,
			 (int)msg->partition, (long long)msg->offset, rd_kafka_err2str(error));
		return -EIO;
	}
	return 0;
}

int kafka_consumer__commit(struct kafka_consumer *consumer)
{
	return commit_stored(consumer->rk);
}

int kafka_consumer__commit_message(struct kafka_consumer *consumer, const struct kafka_message *msg)
{
	int ret = kafka_consumer__mark_done(consumer, msg);

	if (ret)
		return ret;
	return kafka_consumer__commit(consumer);
}

static int set_paused(struct kafka_consumer *consumer, bool paused)
{
	rd_kafka_topic_partition_list_t *assignment = NULL;
	rd_kafka_resp_err_t error;

	consumer->paused = paused;
	error = rd_kafka_assignment(consumer->rk, &assignment);
	if (error)
		return -EIO;
	if (assignment->cnt)
		error = paused ? rd_kafka_pause_partitions(consumer->rk, assignment)
			       : rd_kafka_resume_partitions(consumer->rk, assignment);
	rd_kafka_topic_partition_list_destroy(assignment);
	return error ? -EIO : 0;
}

int kafka_consumer__pause(struct kafka_consumer *consumer)
{
	return set_paused(consumer, true);
}

int kafka_consumer__resume(struct kafka_consumer *consumer)
{
	return set_paused(consumer, false);
}

bool kafka_consumer__is_paused(const struct kafka_consumer *consumer)
{
	return consumer->paused;
}

int kafka_consumer__assignment_count(struct kafka_consumer *consumer)
{
	rd_kafka_topic_partition_list_t *assignment = NULL;
	int count;

	if (rd_kafka_assignment(consumer->rk, &assignment) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return -EIO;
	count = assignment->cnt;
	rd_kafka_topic_partition_list_destroy(assignment);
	return count;
}

int kafka_consumer__committed(struct kafka_consumer *consumer, const char *topic, int32_t partition,
			      int timeout_ms, int64_t *offset)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
	rd_kafka_resp_err_t error;

	rd_kafka_topic_partition_list_add(list, topic, partition);
	error = rd_kafka_committed(consumer->rk, list, timeout_ms);
	if (error == RD_KAFKA_RESP_ERR_NO_ERROR)
		error = list->elems[0].err;
	*offset = list->elems[0].offset;
	rd_kafka_topic_partition_list_destroy(list);
	return error ? -EIO : 0;
}

/* After a failed dead-letter write: fetch msg again instead of moving on. */
static void rewind_to(struct kafka_consumer *consumer, const struct kafka_message *msg)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
	rd_kafka_error_t *error;

	rd_kafka_topic_partition_list_add(list, msg->topic, msg->partition)->offset = msg->offset;
	error = rd_kafka_seek_partitions(consumer->rk, list, 5000);
	if (error) {
		log_error("kafka consumer: seek back to %s/%d@%lld: %s", msg->topic,
			  (int)msg->partition, (long long)msg->offset,
			  rd_kafka_error_string(error));
		rd_kafka_error_destroy(error);
	}
	rd_kafka_topic_partition_list_destroy(list);
}

int kafka_consumer__next_event(struct kafka_consumer *consumer, struct kafka_producer *dlq,
			       const char *dlq_topic, int timeout_ms, struct kafka_message *msg,
			       struct kafka_event *ev)
{
	uint64_t deadline = clock__monotonic_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
	char reason[KAFKA_EVENT_REASON_MAX];
	enum kafka_event_error error;
	int ret;

	memset(ev, 0, sizeof(*ev));
	for (;;) {
		uint64_t now = clock__monotonic_ms();
		int left = now >= deadline ? 0 : (int)(deadline - now);

		ret = kafka_consumer__poll(consumer, left, msg);
		if (ret <= 0)
			return ret;
		error = kafka_event__decode(msg->payload, msg->len, ev, reason, sizeof(reason));
		if (error == KAFKA_EVENT_OK)
			return 1;
		log_warn("kafka consumer: dead-lettering %s/%d@%lld (%s): %s", msg->topic,
			 (int)msg->partition, (long long)msg->offset,
			 kafka_event__error_name(error), reason);
		ret = dlq ? kafka__dead_letter(dlq, dlq_topic, msg, error, reason, 10000) : -EINVAL;
		if (ret != 0) {
			log_error(
			    "kafka consumer: dead-letter write failed (%d); will retry %s/%d@%lld",
			    ret, msg->topic, (int)msg->partition, (long long)msg->offset);
			rewind_to(consumer, msg);
			kafka_message__release(msg);
			return -EIO;
		}
		ret = kafka_consumer__commit_message(consumer, msg);
		if (ret != 0 && ret != -ESTALE)
			log_warn("kafka consumer: commit after dead-letter failed (%d)", ret);
		kafka_message__release(msg);
	}
}

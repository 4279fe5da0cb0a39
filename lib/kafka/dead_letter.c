/* kafka__dead_letter: the dead-letter path of the Kafka contract
 * (ARCHITECTURE.md: "Unknown versions are rejected to a dead-letter topic
 * with the reason, never dropped"). Record format: docs/events/README.md,
 * "Dead letters": a JSON envelope as the value, the same facts as headers,
 * and the original key as the key. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "warren/clock.h"
#include "warren/kafka.h"
#include "warren/log.h"

/* A record must stay far below the producer's message.max.bytes (1e6). */
#define DLQ_RECORD_MAX (512 * 1024)

/* The original payload, at most KAFKA_EVENT_MAX_BYTES of it: as text when
 * it is valid UTF-8 (as_text), else base64 (at most 4/3 of the bytes). */
static int add_payload(json_t *envelope, const void *payload, size_t len, bool as_text)
{
	size_t kept = len > KAFKA_EVENT_MAX_BYTES ? KAFKA_EVENT_MAX_BYTES : len;
	json_t *text = NULL;
	unsigned char *base64;

	json_object_del(envelope, "payload");
	json_object_del(envelope, "payload_base64");
	json_object_set_new(envelope, "payload_bytes", json_integer((json_int_t)len));
	json_object_set_new(envelope, "payload_truncated", json_boolean(kept < len));
	if (as_text)
		text = kept ? json_stringn(payload, kept) : json_string("");
	if (text)
		return json_object_set_new(envelope, "payload", text);
	base64 = malloc(4 * ((kept + 2) / 3) + 1);
	if (!base64)
		return -1;
	EVP_EncodeBlock(base64, payload, (int)kept);
	json_object_set_new(envelope, "payload_base64", json_string((char *)base64));
	free(base64);
	return 0;
}

int kafka__dead_letter(struct kafka_producer *dlq, const char *dlq_topic,
		       const struct kafka_message *msg, enum kafka_event_error error,
		       const char *reason, int timeout_ms)
{
	char partition[16], offset[24], when[32];
	struct kafka_delivery delivery = {0};
	json_t *envelope = NULL, *key = NULL;
	char *value = NULL;
	int ret = -ENOMEM;

	if (!dlq || !msg || !msg->topic)
		return -EINVAL;
	if (!dlq_topic)
		dlq_topic = KAFKA_TOPIC_DLQ;
	if (!reason)
		reason = "";
	clock__format_rfc3339(clock__realtime_ms(), when);
	if (msg->key)
		key = json_stringn(msg->key, msg->key_len);
	envelope = json_pack(
	    "{s:i, s:s, s:s, s:s, s:{s:s, s:i, s:I}, s:o, s:s}", "version", KAFKA_EVENT_VERSION,
	    "type", "dead_letter", "reason_code", kafka_event__error_name(error), "reason", reason,
	    "source", "topic", msg->topic, "partition", (int)msg->partition, "offset",
	    (json_int_t)msg->offset, "key", key ? key : json_null(), "dead_lettered_at", when);
	key = NULL; /* stolen by "o" */
	if (!envelope || add_payload(envelope, msg->payload, msg->len, true) != 0)
		goto out;
	value = json_dumps(envelope, JSON_COMPACT);
	if (value && strlen(value) > DLQ_RECORD_MAX) {
		/* Escaping can grow text 6-fold ("\u0001"); base64 cannot. */
		free(value);
		value = NULL;
		if (add_payload(envelope, msg->payload, msg->len, false) == 0)
			value = json_dumps(envelope, JSON_COMPACT);
	}
	if (!value)
		goto out;
	snprintf(partition, sizeof(partition), "%d", (int)msg->partition);
	snprintf(offset, sizeof(offset), "%lld", (long long)msg->offset);
	{
		const char *code = kafka_event__error_name(error);
		const struct kafka_header headers[] = {
		    {KAFKA_DLQ_HEADER_REASON_CODE, code, strlen(code)},
		    {KAFKA_DLQ_HEADER_REASON, reason, strlen(reason)},
		    {KAFKA_DLQ_HEADER_SOURCE_TOPIC, msg->topic, strlen(msg->topic)},
		    {KAFKA_DLQ_HEADER_SOURCE_PARTITION, partition, strlen(partition)},
		    {KAFKA_DLQ_HEADER_SOURCE_OFFSET, offset, strlen(offset)},
		};
		ret = kafka_producer__produce_sync(
		    dlq, dlq_topic, msg->key, msg->key_len, value, strlen(value), headers,
		    sizeof(headers) / sizeof(headers[0]), timeout_ms, &delivery);
	}
	if (ret == 0)
		log_info("kafka: dead-lettered %s/%d@%lld to %s/%d@%lld (%s)", msg->topic,
			 (int)msg->partition, (long long)msg->offset, dlq_topic,
			 (int)delivery.partition, (long long)delivery.offset,
			 kafka_event__error_name(error));
out:
	json_decref(key);
	json_decref(envelope);
	free(value);
	return ret;
}

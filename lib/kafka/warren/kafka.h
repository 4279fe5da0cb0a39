/* kafka: the one wrapper around librdkafka (ARCHITECTURE.md, "Kafka
 * contract"; docs/events/README.md). An idempotent producer with delivery
 * reports, a consumer-group consumer that commits only what the caller
 * marked done, the dead-letter path, topic names and an admin helper.
 * Every function returns 0 (or a count) on success and a negative errno
 * value on failure unless its comment says otherwise. */
#ifndef WARREN_KAFKA_H
#define WARREN_KAFKA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "warren/kafka_event.h"
#include "warren/kafka_settings.h"

/* Topics of the contract. Creates go to the shared commands topic (keyed
 * by sandbox id, load-balanced by the worker group); operations on a live
 * sandbox go to its host's topic (kafka__host_topic). */
#define KAFKA_TOPIC_SANDBOX_COMMANDS "warren.sandbox.commands"
#define KAFKA_TOPIC_SANDBOX_EVENTS   "warren.sandbox.events"
#define KAFKA_TOPIC_DLQ		     "warren.sandbox.dlq"
#define KAFKA_TOPIC_HOST_PREFIX	     "warren.host."
#define KAFKA_TOPIC_HOST_SUFFIX	     ".commands"
#define KAFKA_TOPIC_NAME_MAX	     249 /* Kafka's own limit */
#define KAFKA_DEFAULT_BROKERS	     "127.0.0.1:59092"

/* Dead-letter record headers (docs/events/README.md, "Dead letters"). */
#define KAFKA_DLQ_HEADER_REASON_CODE	  "warren-dlq-reason-code"
#define KAFKA_DLQ_HEADER_REASON		  "warren-dlq-reason"
#define KAFKA_DLQ_HEADER_SOURCE_TOPIC	  "warren-dlq-source-topic"
#define KAFKA_DLQ_HEADER_SOURCE_PARTITION "warren-dlq-source-partition"
#define KAFKA_DLQ_HEADER_SOURCE_OFFSET	  "warren-dlq-source-offset"

/* ---- configuration and names ---- */

/* Writes "<client_id_prefix or warren>-<role>-<hostname>" (the client.id
 * brokers log) into out. Returns 0 or -ENAMETOOLONG. */
int kafka__client_id(const struct kafka_settings *settings, const char *role, char *out,
		     size_t out_len);
/* Writes "warren.host.<host>.commands" into out. host must be 1..63 of
 * [A-Za-z0-9._-]. Returns 0, -EINVAL (bad host) or -ENAMETOOLONG. */
int kafka__host_topic(const char *host, char *out, size_t out_len);
/* Writes "warren.sandbox.commands.<runtime>" into out: the create topic
 * of the workers of one runtime ("vm" or "jail"; creates that ask for a
 * runtime go there, docs/events/README.md "Placement"). Returns 0,
 * -EINVAL (not a runtime name) or -ENAMETOOLONG. */
int kafka__runtime_topic(const char *runtime, char *out, size_t out_len);
/* The text of a librdkafka error code (delivery and commit errors). */
const char *kafka__error_string(int kafka_error);

/* ---- admin ----
 * Every client (admin, producer, consumer) connects as settings says
 * (brokers, client id prefix, security; struct kafka_settings). settings
 * must not be NULL; a zeroed struct with only brokers set is a plaintext
 * client. A sasl_ssl settings without user or password is refused
 * (-EINVAL, or NULL from a constructor, with the reason in err). The admin
 * calls below return -EACCES at once when the broker refuses the TLS
 * handshake or the SASL login (err: "Kafka refused the login: ..."). */

/* Creates topic with partitions partitions and replication_factor copies
 * unless its metadata already lists it (so a client allowed to describe
 * but not to create a topic the deployment made succeeds), then waits
 * until its metadata shows a leader for every partition.
 * replication_factor <= 0 means the deployment's: settings'
 * replication_factor and min_insync_replicas (the topic's
 * min.insync.replicas, at most the factor; 0 counts as 1). 0 when created
 * or already present (an existing topic keeps its partition count);
 * -ETIMEDOUT, -EIO otherwise (reason in err). */
int kafka__create_topic(const struct kafka_settings *settings, const char *topic, int partitions,
			int replication_factor, int timeout_ms, char *err, size_t err_len);
/* Deletes topic; 0 when deleted or absent. */
int kafka__delete_topic(const struct kafka_settings *settings, const char *topic, int timeout_ms,
			char *err, size_t err_len);

/* Deletes a consumer group (its committed offsets); the group must have
 * no live members. 0 when deleted or absent (tests clean up with it). */
int kafka__delete_group(const struct kafka_settings *settings, const char *group, int timeout_ms,
			char *err, size_t err_len);

/* ---- producer (enable.idempotence=true, acks=all) ---- */

struct kafka_producer;

struct kafka_header {
	const char *name;
	const void *value;
	size_t len;
};

/* The outcome of one produced message. error is 0 or a librdkafka error
 * code (kafka__error_string). topic lives only during the callback. */
struct kafka_delivery {
	int error;
	const char *topic;
	int32_t partition;
	int64_t offset;
};

/* Called once per message, on the producer's delivery thread: keep it
 * short and thread-safe. */
typedef void (*kafka_delivery_fn)(const struct kafka_delivery *delivery, void *opaque);

/* Connects lazily as settings says. client_id NULL uses
 * kafka__client_id(settings, "producer"). A delivery thread serves reports until
 * kafka_producer__free. NULL on error with the reason in err. */
struct kafka_producer *kafka_producer__new(const struct kafka_settings *settings,
					   const char *client_id, char *err, size_t err_len);
/* Waits up to 10 s for outstanding messages, then destroys the producer.
 * Async callbacks of undelivered messages run with an error. NULL is ok. */
void kafka_producer__free(struct kafka_producer *producer);
/* false while librdkafka reports every broker connection down (until a
 * broker answers a metadata probe, made every second meanwhile, or a
 * message is delivered): callers that must answer quickly refuse at once
 * instead of waiting for an acknowledgement that cannot come. */
bool kafka_producer__reachable(const struct kafka_producer *producer);
/* Makes a topic ready before its first message: asks for its metadata
 * (its partitions' leaders) within timeout_ms and keeps its handle (up to
 * KAFKA_PRODUCER_PREPARED_MAX topics). Without it librdkafka looks an
 * unknown topic up on its own schedule: a fresh worker's first results
 * waited ~0.7 s. kafka_producer__produce_sync prepares its topic itself;
 * call this at start-up for the topics a process will use. 0 when known;
 * -ENOENT or -EIO otherwise (producing still works then). */
#define KAFKA_PRODUCER_PREPARED_MAX 64
int kafka_producer__prepare(struct kafka_producer *producer, const char *topic, int timeout_ms);
/* Queues one message (key may be NULL, headers may be NULL/0; everything
 * is copied). done (may be NULL) reports the outcome later. Returns 0,
 * -ENOBUFS when the local queue is full, -EIO on a fatal producer error. */
int kafka_producer__produce(struct kafka_producer *producer, const char *topic, const void *key,
			    size_t key_len, const void *payload, size_t len,
			    const struct kafka_header *headers, size_t header_count,
			    kafka_delivery_fn done, void *opaque);
/* Produces and waits until the broker acknowledged (acks=all) or timeout_ms
 * passed. 0 when stored (out, if non-NULL, gets partition and offset);
 * -EIO when delivery failed (out->error says why); -ETIMEDOUT when the
 * deadline passed first: the outcome is then unknown, the message may
 * still be delivered later (receivers are idempotent on request_id). */
int kafka_producer__produce_sync(struct kafka_producer *producer, const char *topic,
				 const void *key, size_t key_len, const void *payload, size_t len,
				 const struct kafka_header *headers, size_t header_count,
				 int timeout_ms, struct kafka_delivery *out);
/* Encodes ev (kafka_event__encode) and produces it keyed by its sandbox
 * id, synchronously as kafka_producer__produce_sync. -EINVAL when ev does
 * not validate. */
int kafka_producer__produce_event(struct kafka_producer *producer, const char *topic,
				  const struct kafka_event *ev, int timeout_ms,
				  struct kafka_delivery *out);
/* Waits up to timeout_ms for every queued message to be reported. */
int kafka_producer__flush(struct kafka_producer *producer, int timeout_ms);

/* ---- consumer-group consumer (enable.auto.commit=false) ---- */

struct kafka_consumer;

struct kafka_partition {
	const char *topic;
	int32_t partition;
};

/* Rebalance hooks, called from inside kafka_consumer__poll. On revoke the
 * wrapper has already committed every offset marked done. */
typedef void (*kafka_rebalance_fn)(const struct kafka_partition *partitions, size_t count,
				   void *opaque);

struct kafka_consumer_config {
	const struct kafka_settings *settings; /* required: brokers, security */
	const char *group_id;		       /* required */
	const char *client_id;		       /* NULL: kafka__client_id(settings, "consumer") */
	int session_timeout_ms;		       /* 0: 10000; every member of a group the same */
	int max_poll_interval_ms;	       /* 0: 300000 */
	bool start_at_latest;		       /* no committed offset: latest instead of earliest */
	kafka_rebalance_fn on_assign;	       /* may be NULL */
	kafka_rebalance_fn on_revoke;	       /* may be NULL */
	void *opaque;
};

/* One consumed message; valid until kafka_message__release. */
struct kafka_message {
	const char *topic;
	int32_t partition;
	int64_t offset;
	const void *key;
	size_t key_len;
	const void *payload;
	size_t len;
	void *internal;
};

/* Creates a consumer in config->group_id. NULL on error (reason in err). */
struct kafka_consumer *kafka_consumer__new(const struct kafka_consumer_config *config, char *err,
					   size_t err_len);
/* Commits what was marked done, leaves the group and frees. NULL is ok. */
void kafka_consumer__free(struct kafka_consumer *consumer);
/* Subscribes to topics (replacing any earlier subscription). */
int kafka_consumer__subscribe(struct kafka_consumer *consumer, const char *const *topics,
			      size_t count);
/* Drops the subscription: the group's rebalance takes this member's
 * partitions away (the revoke callback runs from a later poll) and gives
 * them to the other members; the consumer stays open and may subscribe
 * again. 0, or -EINVAL (logged). */
int kafka_consumer__unsubscribe(struct kafka_consumer *consumer);
/* Waits up to timeout_ms for a message. 1: msg filled (release it); 0:
 * none (timeout, or a transient error that was logged); -EIO: fatal.
 * Rebalances and their commits happen inside this call, so keep calling
 * it (also while paused) at least every max_poll_interval_ms. */
int kafka_consumer__poll(struct kafka_consumer *consumer, int timeout_ms,
			 struct kafka_message *msg);
/* Frees the message's buffers; safe on a zeroed or released message. */
void kafka_message__release(struct kafka_message *msg);
/* Finds the last header called name. 0 with value/len set, or -ENOENT. */
int kafka_message__header(const struct kafka_message *msg, const char *name, const void **value,
			  size_t *len);
/* Marks msg processed: its offset + 1 becomes the partition's commit
 * point. Call in offset order per partition, once the outcome is durable.
 * -ESTALE when the partition is no longer assigned (it will be redelivered
 * to its new owner). */
int kafka_consumer__mark_done(struct kafka_consumer *consumer, const struct kafka_message *msg);
/* Synchronously commits every offset marked done. 0 also when there was
 * nothing new; -EIO with the error logged otherwise. */
int kafka_consumer__commit(struct kafka_consumer *consumer);
/* kafka_consumer__mark_done then kafka_consumer__commit. */
int kafka_consumer__commit_message(struct kafka_consumer *consumer,
				   const struct kafka_message *msg);
/* Stops fetching from every assigned partition, also from partitions
 * assigned later, until kafka_consumer__resume (back-pressure). */
int kafka_consumer__pause(struct kafka_consumer *consumer);
int kafka_consumer__resume(struct kafka_consumer *consumer);
bool kafka_consumer__is_paused(const struct kafka_consumer *consumer);
/* The number of partitions currently assigned to this member. */
int kafka_consumer__assignment_count(struct kafka_consumer *consumer);
/* The group's committed offset of topic/partition (-1001 when none). */
int kafka_consumer__committed(struct kafka_consumer *consumer, const char *topic, int32_t partition,
			      int timeout_ms, int64_t *offset);

/* ---- events and the dead-letter path ---- */

/* Produces msg to dlq_topic (NULL: KAFKA_TOPIC_DLQ) as a dead-letter
 * record (JSON envelope + headers, docs/events/README.md) and waits for
 * the broker's acknowledgement up to timeout_ms. 0 once stored. */
int kafka__dead_letter(struct kafka_producer *dlq, const char *dlq_topic,
		       const struct kafka_message *msg, enum kafka_event_error error,
		       const char *reason, int timeout_ms);
/* Polls until a valid event arrives or timeout_ms passes. Each malformed,
 * non-JSON, oversized or unknown-version message on the way is dead-
 * lettered through dlq (to dlq_topic, NULL: KAFKA_TOPIC_DLQ) and its
 * offset committed only after the DLQ write was acknowledged. 1: msg and
 * ev filled (the caller processes, then kafka_consumer__commit_message,
 * kafka_message__release and kafka_event__clear); 0: nothing; -EIO: fatal
 * or the DLQ write failed (the bad message is then fetched again). */
int kafka_consumer__next_event(struct kafka_consumer *consumer, struct kafka_producer *dlq,
			       const char *dlq_topic, int timeout_ms, struct kafka_message *msg,
			       struct kafka_event *ev);

#endif

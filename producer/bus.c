/* bus: warren-api's side of the Kafka contract (ARCHITECTURE.md, "Kafka
 * contract"): commands out through the idempotent producer, results in
 * through a consumer with this instance's own group, from the latest
 * offset, and through PostgreSQL's notifications of recorded outcomes
 * (bus__listen), handed to the waiter whose request_id matches. Results for
 * nobody here are ignored: the worker already persisted them. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "api_metrics.h"
#include "warren/clock.h"
#include "warren/log.h"

static struct kafka_producer *bus_producer;
static struct kafka_consumer *bus_consumer;
static pthread_t bus_thread;
static atomic_bool bus_stop;
static atomic_bool bus_assigned;
static int64_t bus_produce_timeout_ms = 5000;
static char bus_group[160];
static struct kafka_settings bus_kafka;	    /* a copy: its strings live until exit */
static struct storage_settings bus_storage; /* the same */
static pthread_t bus_listen_thread;
static bool bus_listen_started;

static void bus__on_assign(const struct kafka_partition *partitions, size_t count, void *opaque)
{
	if (count > 0)
		atomic_store(&bus_assigned, true);
	log_info("result consumer assigned %zu partitions of %s", count,
		 count ? partitions[0].topic : "-");
}

static void *bus__consume(void *arg)
{
	while (!atomic_load(&bus_stop)) {
		struct kafka_message msg = {0};
		struct kafka_event ev;
		char reason[256];
		int rc = kafka_consumer__poll(bus_consumer, 100, &msg);

		if (rc < 0) {
			log_error("result consumer failed; retrying in 1 s");
			sleep(1);
			continue;
		}
		if (rc == 0)
			continue;
		if (kafka_event__decode(msg.payload, msg.len, &ev, reason, sizeof(reason)) !=
		    KAFKA_EVENT_OK) {
			/* Every API instance reads this topic: dead-lettering here
			 * would write one copy per instance. The worker side owns
			 * the DLQ; we only log. */
			log_warn("ignoring a malformed event at %s[%d]@%lld: %s", msg.topic,
				 msg.partition, (long long)msg.offset, reason);
		} else if (!kafka_event__is_command(ev.type)) {
			if (waiters__deliver(&ev)) {
				api_metrics__result("event");
				log_debug("req=%s result %s for %s delivered", ev.request_id,
					  kafka_event__type_name(ev.type), ev.sandbox_id);
			}
		}
		kafka_event__clear(&ev);
		kafka_message__release(&msg);
	}
	return NULL;
}

static void bus__on_notification(const char *payload, void *opaque)
{
	struct kafka_event ev;
	char reason[128];

	(void)opaque;
	if (kafka_event__decode(payload, strlen(payload), &ev, reason, sizeof(reason)) !=
	    KAFKA_EVENT_OK) {
		log_warn("ignoring a malformed result notification: %s", reason);
		return;
	}
	if (!kafka_event__is_command(ev.type) && waiters__deliver(&ev)) {
		api_metrics__result("notification");
		log_debug("req=%s result %s for %s delivered (notification)", ev.request_id,
			  kafka_event__type_name(ev.type), ev.sandbox_id);
	}
	kafka_event__clear(&ev);
}

/* The results' second way in: PostgreSQL notifies the outcome a worker
 * records (storage__request_finish_notify) at its commit, a Kafka round
 * trip before the result event arrives; the first of the two answers the
 * waiter, the other finds it answered. While the connection is down the
 * result events alone serve (it is made again every second). */
static void *bus__listen(void *arg)
{
	struct storage_listener *listener = arg; /* bus__start's first, or NULL */
	int64_t last_log = 0;

	while (!atomic_load(&bus_stop)) {
		struct storage_error e;
		struct pollfd socket;

		if (!listener)
			listener =
			    storage__listener_open(&bus_storage, STORAGE_RESULTS_CHANNEL, &e);
		if (!listener) {
			if ((int64_t)clock__monotonic_ms() - last_log > 60000) {
				log_warn("result notifications unavailable (results come through "
					 "Kafka alone): %s",
					 e.message);
				last_log = (int64_t)clock__monotonic_ms();
			}
			for (int i = 0; i < 10 && !atomic_load(&bus_stop); i++)
				usleep(100 * 1000);
			continue;
		}
		socket = (struct pollfd){.fd = storage__listener_fd(listener), .events = POLLIN};
		if (poll(&socket, 1, 100) > 0 &&
		    storage__listener_drain(listener, bus__on_notification, NULL) < 0) {
			log_warn("result notifications: the connection was lost; making it again");
			storage__listener_close(listener);
			listener = NULL;
		}
	}
	storage__listener_close(listener);
	return NULL;
}

int bus__start(const struct api_config *config, int wait_ms, char *err, size_t err_len)
{
	char hostname[64] = "host", group[160], client[200];
	const char *topics[1] = {config->events_topic};
	struct kafka_consumer_config consumer = {0};
	struct storage_listener *listener;
	struct storage_error storage_error;
	int64_t deadline;

	bus_produce_timeout_ms = config->produce_timeout_ms;
	bus_producer = kafka_producer__new(&config->kafka, NULL, err, err_len);
	if (!bus_producer)
		return -EIO;
	/* The create topic's leaders looked up now, not at the first create. */
	if (kafka_producer__prepare(bus_producer, config->commands_topic, wait_ms))
		log_warn("Kafka: the metadata of %s is not known yet", config->commands_topic);
	gethostname(hostname, sizeof(hostname) - 1);
	snprintf(group, sizeof(group), "warren-api-%s-%d", hostname, (int)getpid());
	snprintf(bus_group, sizeof(bus_group), "%s", group);
	bus_kafka = config->kafka;
	snprintf(client, sizeof(client), "warren-api-%d", (int)getpid());
	consumer.settings = &config->kafka;
	consumer.group_id = group;
	consumer.client_id = client;
	consumer.session_timeout_ms = 6000;
	consumer.start_at_latest = true;
	consumer.on_assign = bus__on_assign;
	bus_consumer = kafka_consumer__new(&consumer, err, err_len);
	if (!bus_consumer)
		goto err;
	if (kafka_consumer__subscribe(bus_consumer, topics, 1)) {
		snprintf(err, err_len, "cannot subscribe to %s", config->events_topic);
		goto err;
	}
	/* Poll here until the group assigned us the topic: a result produced
	 * before that would be missed by a consumer starting at "latest". */
	deadline = (int64_t)clock__monotonic_ms() + wait_ms;
	while (!atomic_load(&bus_assigned) && (int64_t)clock__monotonic_ms() < deadline) {
		struct kafka_message msg = {0};
		struct kafka_event ev;
		char reason[64];

		if (kafka_consumer__poll(bus_consumer, 100, &msg) == 1) {
			if (kafka_event__decode(msg.payload, msg.len, &ev, reason,
						sizeof(reason)) == KAFKA_EVENT_OK) {
				waiters__deliver(&ev);
				kafka_event__clear(&ev);
			}
			kafka_message__release(&msg);
		}
	}
	if (!atomic_load(&bus_assigned)) {
		snprintf(err, err_len,
			 "no partition of %s assigned within %d ms (does the topic exist?)",
			 config->events_topic, wait_ms);
		goto err;
	}
	atomic_store(&bus_stop, false);
	if (pthread_create(&bus_thread, NULL, bus__consume, NULL)) {
		snprintf(err, err_len, "cannot start the consumer thread");
		goto err;
	}
	log_info("consuming results from %s as group %s", config->events_topic, group);
	/* Listening before the first request (PostgreSQL down: the thread
	 * tries again). */
	bus_storage = config->storage;
	listener = storage__listener_open(&bus_storage, STORAGE_RESULTS_CHANNEL, &storage_error);
	if (pthread_create(&bus_listen_thread, NULL, bus__listen, listener) == 0) {
		bus_listen_started = true;
	} else {
		log_warn("cannot start the result notification thread: results come through "
			 "Kafka alone");
		storage__listener_close(listener);
	}
	return 0;
err:
	kafka_consumer__free(bus_consumer);
	bus_consumer = NULL;
	kafka_producer__free(bus_producer);
	bus_producer = NULL;
	return -EIO;
}

void bus__stop(void)
{
	if (bus_consumer) {
		char err[256];

		atomic_store(&bus_stop, true);
		pthread_join(bus_thread, NULL);
		if (bus_listen_started)
			pthread_join(bus_listen_thread, NULL);
		bus_listen_started = false;
		kafka_consumer__free(bus_consumer);
		bus_consumer = NULL;
		/* The group is this process's alone: leave nothing behind. */
		if (kafka__delete_group(&bus_kafka, bus_group, 5000, err, sizeof(err)))
			log_warn("cannot delete consumer group %s: %s", bus_group, err);
	}
	kafka_producer__free(bus_producer);
	bus_producer = NULL;
	atomic_store(&bus_assigned, false);
}

int bus__produce(const char *topic, const struct kafka_event *ev)
{
	struct kafka_delivery delivery = {0};
	int rc;

	/* No broker reachable: refuse now (nothing is queued, so nothing is
	 * delivered later) rather than hold an HTTP thread for the wait. */
	if (!kafka_producer__reachable(bus_producer)) {
		log_warn("req=%s not producing %s to %s: no Kafka broker reachable", ev->request_id,
			 kafka_event__type_name(ev->type), topic);
		return -ENOTCONN;
	}
	rc = kafka_producer__produce_event(bus_producer, topic, ev, (int)bus_produce_timeout_ms,
					   &delivery);
	if (rc)
		log_warn("req=%s producing %s to %s failed: %s", ev->request_id,
			 kafka_event__type_name(ev->type), topic,
			 rc == -EIO ? kafka__error_string(delivery.error) : strerror(-rc));
	return rc;
}

int bus__produce_async(const char *topic, const struct kafka_event *ev)
{
	char reason[256], *payload;
	int rc;

	payload = kafka_event__encode(ev, NULL, reason, sizeof(reason));
	if (!payload) {
		log_warn("req=%s cannot encode %s: %s", ev->request_id,
			 kafka_event__type_name(ev->type), reason);
		return -EINVAL;
	}
	rc = kafka_producer__produce(bus_producer, topic, ev->sandbox_id, strlen(ev->sandbox_id),
				     payload, strlen(payload), NULL, 0, NULL, NULL);
	free(payload);
	if (rc)
		log_warn("req=%s queueing %s to %s failed: %s", ev->request_id,
			 kafka_event__type_name(ev->type), topic, strerror(-rc));
	return rc;
}

int bus__host_topic(const struct api_config *config, const char *host_id, char *out, size_t len)
{
	char topic[KAFKA_TOPIC_NAME_MAX + 1];
	int rc = kafka__host_topic(host_id, topic, sizeof(topic));

	if (rc)
		return rc;
	if (snprintf(out, len, "%s%s", config->topic_prefix, topic) >= (int)len)
		return -ENAMETOOLONG;
	return 0;
}

int bus__produce_raw(const char *topic, const char *key, const char *payload)
{
	struct kafka_delivery delivery = {0};
	int rc;

	if (!kafka_producer__reachable(bus_producer)) {
		log_warn("not producing to %s (key %s): no Kafka broker reachable", topic, key);
		return -ENOTCONN;
	}
	rc = kafka_producer__produce_sync(bus_producer, topic, key, strlen(key), payload,
					  strlen(payload), NULL, 0, (int)bus_produce_timeout_ms,
					  &delivery);

	if (rc)
		log_warn("producing to %s (key %s) failed: %s", topic, key,
			 rc == -EIO ? kafka__error_string(delivery.error) : strerror(-rc));
	return rc;
}

/* events: result-event consumer invalidating the sandbox cache (see events.h). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "events.h"
#include "warren/config.h"
#include "warren/ids.h"
#include "warren/kafka.h"
#include "warren/log.h"

struct proxy_events {
	struct lookup *lookup;
	struct kafka_consumer *consumer;
	struct kafka_producer *producer; /* autoResume's resume commands; NULL: none */
	struct kafka_settings kafka;	 /* read once from the configuration */
	pthread_t thread;
	volatile int stop;
	char group[128];
};

static void *proxy_events__main(void *arg)
{
	struct proxy_events *events = arg;

	while (!events->stop) {
		struct kafka_message msg = {0};
		struct kafka_event ev = {0};
		char reason[256];
		int rc = kafka_consumer__poll(events->consumer, 500, &msg);

		if (rc < 0) {
			log_warn("events: the consumer failed; the cache relies on its TTL now");
			break;
		}
		if (rc == 0)
			continue;
		/* the proxy owns nothing on this topic: a bad message is ignored here
		 * (its consumers of record dead-letter it) */
		if (kafka_event__decode(msg.payload, msg.len, &ev, reason, sizeof(reason)) ==
			KAFKA_EVENT_OK &&
		    !kafka_event__is_command(ev.type) && ev.sandbox_id[0]) {
			lookup__invalidate(events->lookup, ev.sandbox_id);
			log_debug("events: %s %s: cache entry dropped",
				  kafka_event__type_name(ev.type), ev.sandbox_id);
		}
		kafka_event__clear(&ev);
		kafka_message__release(&msg);
	}
	return NULL;
}

/* lookup_wake_fn: a `resume` command to the sandbox's host topic, with
 * end_at = now + proxy_auto_resume_timeout_s (default 300). */
static int proxy_events__wake(void *opaque, const char *sandbox_id, const char *team_id,
			      const char *host_id)
{
	struct proxy_events *events = opaque;
	struct kafka_event ev = {0};
	char host_topic[KAFKA_TOPIC_NAME_MAX + 1], topic[KAFKA_TOPIC_NAME_MAX + 1], reason[256];
	json_t *spec = json_pack("{s:i}", "timeout_s",
				 (int)config__get_int("proxy_auto_resume_timeout_s", 300));
	int rc;

	if (kafka__host_topic(host_id, host_topic, sizeof(host_topic)) ||
	    snprintf(topic, sizeof(topic), "%s%s", config__get("kafka_topic_prefix", ""),
		     host_topic) >= (int)sizeof(topic)) {
		json_decref(spec);
		return -EINVAL;
	}
	if (kafka_event__init_command(&ev, KAFKA_EVENT_RESUME, team_id, sandbox_id, spec, reason,
				      sizeof(reason)) != KAFKA_EVENT_OK) {
		log_warn("sandbox %s: cannot build a resume command: %s", sandbox_id, reason);
		return -EINVAL;
	}
	rc = kafka_producer__produce_event(events->producer, topic, &ev, 5000, NULL);
	kafka_event__clear(&ev);
	if (rc)
		log_warn("sandbox %s: the autoResume command was not queued (%d)", sandbox_id, rc);
	else
		log_info("sandbox %s: paused, autoResume: resume requested", sandbox_id);
	return rc;
}

struct proxy_events *proxy_events__start(struct lookup *lookup, char *err, size_t err_len)
{
	struct proxy_events *events = calloc(1, sizeof(*events));
	struct kafka_consumer_config config = {0};
	char topic[KAFKA_TOPIC_NAME_MAX + 1], suffix[9], host[64] = "host";
	const char *topics[1] = {topic};
	unsigned char random_bytes[4];

	if (!events) {
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	events->lookup = lookup;
	kafka_settings__from_config(&events->kafka);
	gethostname(host, sizeof(host) - 1);
	ids__random_bytes(random_bytes, sizeof(random_bytes));
	snprintf(suffix, sizeof(suffix), "%02x%02x%02x%02x", random_bytes[0], random_bytes[1],
		 random_bytes[2], random_bytes[3]);
	/* a group per instance: every proxy must see every event */
	snprintf(events->group, sizeof(events->group), "%swarren-proxy-%.40s-%d-%s",
		 config__get("kafka_topic_prefix", ""), host, (int)getpid(), suffix);
	snprintf(topic, sizeof(topic), "%s%s", config__get("kafka_topic_prefix", ""),
		 KAFKA_TOPIC_SANDBOX_EVENTS);
	config.settings = &events->kafka;
	config.group_id = events->group;
	config.start_at_latest = true;
	events->consumer = kafka_consumer__new(&config, err, err_len);
	if (!events->consumer)
		goto fail;
	if (kafka_consumer__subscribe(events->consumer, topics, 1) < 0) {
		snprintf(err, err_len, "cannot subscribe to %s", topic);
		goto fail;
	}
	if (pthread_create(&events->thread, NULL, proxy_events__main, events) != 0) {
		snprintf(err, err_len, "cannot start the events thread");
		goto fail;
	}
	log_info("events: invalidating the cache from %s (group %s)", topic, events->group);
	events->producer = kafka_producer__new(&events->kafka, NULL, err, err_len);
	if (events->producer)
		lookup__set_waker(lookup, proxy_events__wake, events);
	else
		log_warn("events: no Kafka producer (%s): autoResume does not wake sandboxes", err);
	return events;
fail:
	kafka_consumer__free(events->consumer);
	free(events);
	return NULL;
}

void proxy_events__stop(struct proxy_events *events)
{
	char err[256];

	if (!events)
		return;
	lookup__set_waker(events->lookup, NULL, NULL);
	events->stop = 1;
	pthread_join(events->thread, NULL);
	kafka_producer__free(events->producer);
	kafka_consumer__free(events->consumer);
	if (kafka__delete_group(&events->kafka, events->group, 5000, err, sizeof(err)) < 0)
		log_debug("events: group %s not deleted: %s", events->group, err);
	free(events);
}

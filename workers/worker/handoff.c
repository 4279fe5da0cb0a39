/* handoff: a full worker passes creates to a host with room (handoff.h). */
#include "handoff.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"
#include "warren/clock.h"
#include "warren/config.h"
#include "warren/kafka.h"
#include "warren/log.h"
#include "warren/storage.h"
#include "worker.h"

/* A host counts as ready for a handoff when it beat within this bound
 * (heartbeats come every second). */
#define HANDOFF_FRESH_MS	   5000
#define HANDOFF_CHECK_INTERVAL_MS  1000
#define HANDOFF_PRODUCE_TIMEOUT_MS 5000

bool handoff__should_forward(struct worker *worker)
{
	bool full;

	pthread_mutex_lock(&worker->lock);
	full = worker->live_count + worker->creates_running >= worker->capacity;
	pthread_mutex_unlock(&worker->lock);
	return full && handoff__room_elsewhere(worker);
}

void handoff__started(struct worker *worker)
{
	pthread_mutex_lock(&worker->lock);
	worker->creates_running++;
	pthread_mutex_unlock(&worker->lock);
}

void handoff__finished(struct worker *worker)
{
	pthread_mutex_lock(&worker->lock);
	worker->creates_running--;
	pthread_mutex_unlock(&worker->lock);
}

/* The ready host of this runtime, other than this one, with the most free
 * capacity: its id in out (true), or false when none has room. */
static bool handoff__pick(struct worker *worker, char *out, size_t out_len)
{
	struct storage_host *hosts = NULL;
	struct storage_error err;
	size_t count = 0;
	int64_t now_ms = clock__realtime_ms(), best_room = 0;
	bool found = false;

	if (storage__host_list(worker->storage, &hosts, &count, &err))
		return false;
	for (size_t i = 0; i < count; i++) {
		int64_t room = (int64_t)hosts[i].capacity - hosts[i].running;

		if (!strcmp(hosts[i].id, worker->host_id) || strcmp(hosts[i].state, "ready") ||
		    strcmp(hosts[i].runtime, runtime__name(worker->runtime)) ||
		    now_ms - hosts[i].heartbeat_at > HANDOFF_FRESH_MS || room <= best_room)
			continue;
		best_room = room;
		snprintf(out, out_len, "%s", hosts[i].id);
		found = true;
	}
	free(hosts);
	return found;
}

bool handoff__room_elsewhere(struct worker *worker)
{
	uint64_t now = clock__monotonic_ms();
	char host[sizeof(((struct storage_host *)0)->id)];

	pthread_mutex_lock(&worker->handoff_lock);
	if (now - worker->handoff_checked_ms >= HANDOFF_CHECK_INTERVAL_MS) {
		worker->handoff_room = handoff__pick(worker, host, sizeof(host));
		worker->handoff_checked_ms = now;
	}
	bool room = worker->handoff_room;
	pthread_mutex_unlock(&worker->handoff_lock);
	return room;
}

int handoff__forward(struct worker *worker, const struct kafka_event *command)
{
	char host[sizeof(((struct storage_host *)0)->id)], host_topic[KAFKA_TOPIC_NAME_MAX + 1];
	char topic[KAFKA_TOPIC_NAME_MAX + 1];
	int rc;

	if (!handoff__pick(worker, host, sizeof(host)) ||
	    kafka__host_topic(host, host_topic, sizeof(host_topic)))
		return -EAGAIN;
	snprintf(topic, sizeof(topic), "%s%s", config__get("kafka_topic_prefix", ""), host_topic);
	rc = kafka_producer__produce_event(worker->producer, topic, command,
					   HANDOFF_PRODUCE_TIMEOUT_MS, NULL);
	if (rc) {
		log_warn("sandbox %s: handing the create to host %s failed (%d); running it here",
			 command->sandbox_id, host, rc);
		return -EAGAIN;
	}
	log_info("sandbox %s: at capacity (%d); create handed to host %s", command->sandbox_id,
		 worker->capacity, host);
	return 0;
}

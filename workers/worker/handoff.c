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
#include "warren/json_util.h"
#include "warren/storage.h"
#include "warren/template_builds.h"
#include "warren/templates.h"
#include "warren/volumes.h"
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
	full = worker__occupied(
		   worker, (size_t)(worker->creates_running > 0 ? worker->creates_running : 0)) >=
	       (size_t)worker->capacity;
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

/* Whether a hosts row can take a create of this worker: ready, of its
 * runtime, speaking this worker's event version, beating within
 * HANDOFF_FRESH_MS, and not this host. */
static bool handoff__usable(const struct worker *worker, const struct storage_host *host,
			    int64_t now_ms)
{
	return strcmp(host->id, worker->host_id) && !strcmp(host->state, "ready") &&
	       !strcmp(host->runtime, runtime__name(worker->runtime)) &&
	       host->protocol_version >= KAFKA_EVENT_VERSION &&
	       now_ms - host->heartbeat_at <= HANDOFF_FRESH_MS;
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

		if (!handoff__usable(worker, &hosts[i], now_ms) || room <= best_room)
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

int handoff__forward_to(struct worker *worker, const struct kafka_event *command, const char *host)
{
	char host_topic[KAFKA_TOPIC_NAME_MAX + 1], topic[KAFKA_TOPIC_NAME_MAX + 1];
	int rc;

	if (kafka__host_topic(host, host_topic, sizeof(host_topic)))
		return -EAGAIN;
	snprintf(topic, sizeof(topic), "%s%s", config__get("kafka_topic_prefix", ""), host_topic);
	rc = kafka_producer__produce_event(worker->producer, topic, command,
					   HANDOFF_PRODUCE_TIMEOUT_MS, NULL);
	if (rc) {
		log_warn("sandbox %s: handing the create to host %s failed (%d); running it here",
			 command->sandbox_id, host, rc);
		return -EAGAIN;
	}
	return 0;
}

int handoff__forward(struct worker *worker, const struct kafka_event *command)
{
	char host[sizeof(((struct storage_host *)0)->id)];

	if (!handoff__pick(worker, host, sizeof(host)) ||
	    handoff__forward_to(worker, command, host))
		return -EAGAIN;
	log_info("sandbox %s: at capacity (%d); create handed to host %s", command->sandbox_id,
		 worker->capacity, host);
	return 0;
}

/* Whether host (another one) is usable (handoff__usable, hosts table). */
static bool handoff__host_ready(struct worker *worker, const char *host)
{
	struct storage_host *hosts = NULL;
	struct storage_error err;
	size_t count = 0;
	int64_t now_ms = clock__realtime_ms();
	bool ready = false;

	if (storage__host_list(worker->storage, &hosts, &count, &err))
		return false;
	for (size_t i = 0; i < count && !ready; i++)
		ready = !strcmp(hosts[i].id, host) && handoff__usable(worker, &hosts[i], now_ms);
	free(hosts);
	return ready;
}

bool handoff__home_host(struct worker *worker, const struct kafka_event *command, char *out,
			size_t out_len)
{
	const char *template_id = json_util__string(command->spec, "template_id", "");
	struct storage_volume *volumes = NULL;
	struct storage_error err;
	struct template_info info;
	char reason[256];
	size_t count = 0;
	bool by_volume;

	out[0] = '\0';
	if (json_integer_value(json_object_get(command->spec, "volume_mounts")) > 0 &&
	    storage__volume_list_by_sandbox_internal(worker->storage, command->sandbox_id, &volumes,
						     &count, &err) == STORAGE_OK) {
		for (size_t i = 0; i < count && !out[0]; i++)
			if (volumes[i].host_id[0] && strcmp(volumes[i].host_id, worker->host_id))
				snprintf(out, out_len, "%s", volumes[i].host_id);
		free(volumes);
	}
	by_volume = out[0] != '\0';
	if (!out[0] && *template_id &&
	    templates__read(templates__dir(), template_id, &info, reason, sizeof(reason)) &&
	    storage__template_build_host_internal(worker->storage, template_id, out, out_len,
						  &err) == STORAGE_OK &&
	    !strcmp(out, worker->host_id))
		out[0] = '\0';
	if (!out[0] || !handoff__host_ready(worker, out))
		return false;
	log_info("sandbox %s: its %s is on host %s; create handed there", command->sandbox_id,
		 by_volume ? "volume" : "template", out);
	return true;
}

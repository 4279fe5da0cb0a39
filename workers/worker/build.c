/* build: the template build consumer of warren-worker (build.h,
 * docs/templates.md). One build at a time per worker; the command's
 * offset is committed once the build's outcome is in PostgreSQL.
 * Idempotent per build id: a redelivered command of a finished build only
 * repeats its event; one that finds the build still "building" (its
 * worker died) claims it again, and past template_build_attempts claims
 * the build ends in error, so no build stays "building". */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build.h"
#include "warren/clock.h"
#include "warren/config.h"
#include "warren/ids.h"
#include "warren/json_util.h"
#include "warren/log.h"
#include "warren/templates.h"
#include "worker.h"

struct builds {
	struct worker *worker;
	struct kafka_consumer *consumer;
	char topic[KAFKA_TOPIC_NAME_MAX + 1];
	char events_topic[KAFKA_TOPIC_NAME_MAX + 1];
	pthread_t thread;
};

/* The outcome on warren.template.events, acknowledged before the command
 * is committed (not retried: the state is in PostgreSQL already). */
static void builds__publish(struct builds *b, const struct storage_template_build *row,
			    const char *status, const char *reason)
{
	char sent_at[32];
	json_t *ev;
	char *text;

	clock__format_rfc3339(clock__realtime_ms(), sent_at);
	ev = json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "version", 1, "type",
		       "template_build_finished", "build_id", row->id, "template_id",
		       row->template_id, "team_id", row->team_id, "host_id", b->worker->host_id,
		       "status", status, "sent_at", sent_at);
	if (ev && reason && reason[0])
		json_object_set_new(ev, "reason", json_string(reason));
	text = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
	if (text &&
	    kafka_producer__produce_sync(b->worker->producer, b->events_topic, row->id,
					 strlen(row->id), text, strlen(text), NULL, 0, 5000, NULL))
		log_warn("build %s: its outcome event was not acknowledged", row->id);
	free(text);
	json_decref(ev);
}

/* Ends a claimed build. -EAGAIN when PostgreSQL is away. */
static int builds__finish(struct builds *b, struct build_run *run, bool ok)
{
	struct storage_error e;
	int rc;

	if (!ok)
		build__log(run, "error", "build failed: %s", run->reason);
	rc = storage__template_build_finish(
	    b->worker->storage, run->row->id, ok ? TEMPLATE_BUILD_READY : TEMPLATE_BUILD_ERROR,
	    ok ? NULL : run->reason, ok ? NULL : (run->step[0] ? run->step : NULL), &e);
	if (rc == STORAGE_ERR_UNAVAILABLE)
		return -EAGAIN;
	if (rc)
		log_warn("build %s: finishing: %s", run->row->id, e.message);
	builds__publish(b, run->row, ok ? "ready" : "error", ok ? NULL : run->reason);
	return 0;
}

/* Handles one command payload. 0 when its outcome is durable (commit),
 * -EAGAIN to keep it (PostgreSQL away). */
static int builds__handle(struct builds *b, const char *payload, size_t len)
{
	struct worker *worker = b->worker;
	struct storage_template_build row = {0};
	struct build_run run = {.worker = worker, .row = &row};
	struct template_plan *plan = NULL;
	struct storage_error e;
	json_error_t jerr;
	json_t *cmd = json_loadb(payload, len, 0, &jerr);
	const char *build_id = json_util__string(cmd, "build_id", "");
	int64_t max_attempts = config__get_int("template_build_attempts", 2);
	int32_t attempts = 0;
	char err[512];
	int rc = 0;

	if (!cmd || json_util__int(cmd, "version", 0) != 1 || !ids__is_uuid(build_id)) {
		log_warn("template build command refused (bad payload)");
		goto out;
	}
	rc = storage__template_build_get(worker->storage, NULL, build_id, &row, &e);
	if (rc) {
		rc = rc == STORAGE_ERR_UNAVAILABLE ? -EAGAIN : 0; /* deleted: nothing to do */
		goto out;
	}
	if (row.status != TEMPLATE_BUILD_BUILDING) {
		if (row.status != TEMPLATE_BUILD_WAITING)
			builds__publish(b, &row, template_build__status_name(row.status),
					row.reason);
		goto out;
	}
	rc = storage__template_build_claim(worker->storage, build_id, worker->host_id, &attempts,
					   &e);
	if (rc) {
		rc = rc == STORAGE_ERR_UNAVAILABLE ? -EAGAIN : 0;
		goto out;
	}
	if (attempts > max_attempts) {
		char work[PATH_MAX];
		const char *rm[] = {"rm", "-rf", "--one-file-system", work, NULL};

		snprintf(work, sizeof(work), "%s/.build-%s", templates__cache_dir(), build_id);
		build__spawn_wait(rm); /* what the interrupted attempts left */
		snprintf(work, sizeof(work), "%s/oci/.pull-%s", templates__cache_dir(), build_id);
		build__spawn_wait(rm); /* with a registry authfile, maybe */
		snprintf(work, sizeof(work), "%s/oci/.unpack-%s", templates__cache_dir(), build_id);
		build__spawn_wait(rm);
		snprintf(run.reason, sizeof(run.reason),
			 "the build was interrupted %d times (its worker stopped); giving up",
			 attempts - 1);
		rc = builds__finish(b, &run, false);
		goto out;
	}
	if (attempts > 1)
		build__log(&run, "warn",
			   "retrying: attempt %d of %lld (an earlier one was interrupted)",
			   attempts, (long long)max_attempts);
	build__log(&run, "info", "building template %s on host %s", row.template_id,
		   worker->host_id);
	plan = calloc(1, sizeof(*plan));
	run.envs = json_object();
	if (!plan || !run.envs || template_plan__parse(row.spec, plan, err, sizeof(err))) {
		snprintf(run.reason, sizeof(run.reason), "invalid build: %s",
			 plan ? err : "no memory");
		rc = builds__finish(b, &run, false);
		goto out;
	}
	run.plan = plan;
	rc = build__execute(&run);
	if (rc && run.interrupted) {
		/* not committed: the group gives it to another worker (or to us
		 * after the restart), which claims it again */
		log_warn("build %s: interrupted by the worker's shutdown", build_id);
		rc = -EAGAIN;
		goto out;
	}
	rc = builds__finish(b, &run, rc == 0);
out:
	json_decref(run.envs);
	free(plan);
	storage__template_build_clear(&row);
	json_decref(cmd);
	return rc;
}

/* Removes from this host the built templates whose team template was
 * deleted (DELETE /templates/{id} only changes PostgreSQL): the
 * templates_dir link, the cache entry and a `templates` row a restart
 * registered again. Host-built templates (no build_id) are never touched.
 * Holds worker->templates_lock: a snapshot installs its tree first and
 * registers its row after (seconds later on a slow host), and a prune in
 * between took the tree for a deleted template's. */
static void builds__prune_deleted(struct builds *b)
{
	struct template_info *installed = NULL;
	size_t count = 0;
	json_t *ids = NULL;

	/* not while a snapshot's tree is installed but its row not yet there */
	pthread_mutex_lock(&b->worker->templates_lock);
	if (storage__team_template_ids(b->worker->storage, &ids, NULL) ||
	    templates__list(templates__dir(), &installed, &count))
		goto out;
	for (size_t i = 0; i < count; i++) {
		char path[PATH_MAX + 16], link[PATH_MAX];
		json_t *meta, *id;
		bool kept = false;
		size_t k;

		snprintf(path, sizeof(path), "%s/template.json", installed[i].dir);
		meta = json_load_file(path, 0, NULL);
		bool built = json_is_string(json_object_get(meta, "build_id"));
		json_decref(meta);
		if (!built)
			continue;
		json_array_foreach(ids, k, id) kept =
		    kept || !strcmp(json_string_value(id), installed[i].name);
		bool in_use = true;
		if (kept ||
		    storage__template_in_use(b->worker->storage, installed[i].name, &in_use,
					     NULL) ||
		    in_use)
			continue; /* its sandboxes keep their tree until they end */
		snprintf(link, sizeof(link), "%s/%s", templates__dir(), installed[i].name);
		unlink(link);
		const char *rm[] = {"rm", "-rf", "--one-file-system", installed[i].dir, NULL};
		build__spawn_wait(rm);
		storage__template_forget(b->worker->storage, installed[i].name, NULL);
		log_info("template %s: deleted by its team, removed from this host",
			 installed[i].name);
	}
out:
	pthread_mutex_unlock(&b->worker->templates_lock);
	free(installed);
	json_decref(ids);
}

static void *builds__loop(void *opaque)
{
	struct builds *b = opaque;
	uint64_t pruned_ms = 0;

	while (!atomic_load(&b->worker->stopping)) {
		struct kafka_message msg = {0};
		int rc;

		if (clock__monotonic_ms() - pruned_ms >
		    (uint64_t)config__get_int("template_prune_interval_ms", 60000)) {
			builds__prune_deleted(b);
			pruned_ms = clock__monotonic_ms();
		}
		rc = kafka_consumer__poll(b->consumer, 200, &msg);

		if (rc < 0) {
			sleep(1);
			continue;
		}
		if (rc == 0)
			continue;
		while ((rc = builds__handle(b, msg.payload, msg.len)) == -EAGAIN &&
		       !atomic_load(&b->worker->stopping))
			sleep(1);
		if (rc != -EAGAIN)
			kafka_consumer__commit_message(b->consumer, &msg);
		kafka_message__release(&msg);
	}
	return NULL;
}

struct builds *builds__start(struct worker *worker)
{
	const char *prefix = config__get("kafka_topic_prefix", "");
	struct builds *b = calloc(1, sizeof(*b));
	char err[256];

	if (!b)
		return NULL;
	b->worker = worker;
	snprintf(b->topic, sizeof(b->topic), "%s%s", prefix, BUILDS_TOPIC);
	snprintf(b->events_topic, sizeof(b->events_topic), "%s%s", prefix, BUILDS_EVENTS_TOPIC);
	if (kafka__create_topic(&worker->kafka, b->topic, 6, 0, 15000, err, sizeof(err)) ||
	    kafka__create_topic(&worker->kafka, b->events_topic, 6, 0, 15000, err, sizeof(err))) {
		log_error("template builds disabled: topic: %s", err);
		free(b);
		return NULL;
	}
	/* A build may take long: the group must not think we died. */
	struct kafka_consumer_config config = {
	    .settings = &worker->kafka,
	    .group_id = config__get("builder_group", "warren-builders"),
	    .session_timeout_ms = (int)config__get_int("kafka_session_timeout_ms", 10000),
	    .max_poll_interval_ms =
		(int)config__get_int("template_build_max_poll_ms", 6 * 3600 * 1000),
	};
	const char *topics[] = {b->topic};
	b->consumer = kafka_consumer__new(&config, err, sizeof(err));
	if (!b->consumer || kafka_consumer__subscribe(b->consumer, topics, 1) ||
	    pthread_create(&b->thread, NULL, builds__loop, b)) {
		log_error("template builds disabled: consumer: %s", err);
		kafka_consumer__free(b->consumer);
		free(b);
		return NULL;
	}
	log_info("template builds: consuming %s (one at a time)", b->topic);
	return b;
}

void builds__stop(struct builds *b)
{
	if (!b)
		return;
	pthread_join(b->thread, NULL);
	kafka_consumer__free(b->consumer);
	free(b);
}

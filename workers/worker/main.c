/* warren-worker: one per host. Consumes creates from the shared commands
 * topic (consumer group "warren-workers") and operations on its live
 * sandboxes from its host topic, starts sandboxes in slots with the chosen
 * runtime, persists every transition and publishes results. The offset of
 * a command is committed only after its outcome is durable.
 *
 * Shutdown (SIGTERM/SIGINT): stop consuming, finish the command in hand,
 * then stop every live sandbox and mark it killed ("worker shutdown"), so
 * nothing is left running unaccounted. Documented in workers/README.md. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "warren/clock.h"
#include "warren/prom.h"
#include "warren/config.h"
#include "warren/log.h"
#include "warren/service.h"
#include "warren/templates.h"
#include "build.h"
#include "create_pool.h"
#include "handoff.h"
#include "settings.h"
#include "warm_pool.h"
#include "worker.h"

static struct worker worker_instance;

static void worker__on_signal(int signo)
{
	(void)signo;
	atomic_store(&worker_instance.stopping, true);
}

struct consumer_thread {
	struct worker *worker;
	struct kafka_consumer *consumer;
	struct kafka_producer *dlq;
	const char *name;
	bool creates;	   /* the create topics: a pool of threads, paused at capacity */
	bool unsubscribed; /* creates: left the group while the host is drained */
	pthread_t thread;
};

/* Runs one command until its outcome is durable; while PostgreSQL or
 * Kafka is away (-EAGAIN) it holds the message and tries again each
 * second, until the worker stops (then -EAGAIN: not committed). */
static int worker__run_command(void *opaque, const struct kafka_event *command)
{
	struct worker *worker = opaque;
	int rc;

	for (;;) {
		uint64_t handled_ns = clock__monotonic_ns();

		rc = worker__handle_command(worker, command);
		worker__metrics_command(kafka_event__type_name(command->type), rc, handled_ns);
		if (rc != -EAGAIN || atomic_load(&worker->stopping))
			return rc;
		log_warn("request %s: dependencies unavailable; retrying", command->request_id);
		sleep(1);
	}
}

/* Back-pressure of the create topics: paused while the sandboxes plus the
 * creates in hand reach capacity and no other host has room (else the
 * creates taken go there, handoff.h), or while twice as many creates as
 * there are threads are in hand (no point fetching further ahead). */
static void worker__pace_creates(struct consumer_thread *ct)
{
	struct worker *worker = ct->worker;
	size_t pending = create_pool__pending(worker->create_pool);

	pthread_mutex_lock(&worker->lock);
	bool full = worker__occupied(worker, pending) >= (size_t)worker->capacity;
	pthread_mutex_unlock(&worker->lock);
	if (full && handoff__room_elsewhere(worker))
		full = false;
	bool hold = full || pending >= 2 * worker->create_threads;
	if (hold && !kafka_consumer__is_paused(ct->consumer)) {
		if (full)
			log_info("at capacity (%d sandboxes): pausing creates", worker->capacity);
		kafka_consumer__pause(ct->consumer);
	} else if (!hold && kafka_consumer__is_paused(ct->consumer)) {
		kafka_consumer__resume(ct->consumer);
	}
}

/* Polls one consumer: each valid command is handled and committed once
 * durable; malformed ones go to the DLQ (kafka_consumer__next_event).
 * Creates go to the create pool (many at once, committed in order);
 * operations run here, one at a time, in order. */
/* The create pool's handler: a create that finds this host full goes to a
 * host with room (handoff.h); otherwise it runs here, counted while it
 * runs. */
static int worker__run_create(void *opaque, const struct kafka_event *command)
{
	struct worker *worker = opaque;
	int rc;

	char home[sizeof(((struct storage_host *)0)->id)];

	if (command->type != KAFKA_EVENT_CREATE)
		return worker__run_command(opaque, command);
	if (handoff__home_host(worker, command, home, sizeof(home)) &&
	    handoff__forward_to(worker, command, home) == 0)
		return 0;
	if (handoff__should_forward(worker) && handoff__forward(worker, command) == 0)
		return 0;
	handoff__started(worker);
	rc = worker__run_command(opaque, command);
	handoff__finished(worker);
	return rc;
}

/* An operator's drain (hosts.drain_requested, docs/deploy.md): the
 * creates consumer leaves the shared topics' group, so their partitions go
 * to the other workers, and joins again when the drain is lifted. The
 * creates in hand finish; the consumer is this thread's, so it is done
 * here. */
static void worker__follow_drain(struct consumer_thread *ct)
{
	struct worker *worker = ct->worker;
	bool drain = atomic_load(&worker->draining);
	const char *topics[] = {worker->commands_topic, worker->runtime_topic};

	if (drain == ct->unsubscribed)
		return;
	if (drain ? kafka_consumer__unsubscribe(ct->consumer) == 0
		  : kafka_consumer__subscribe(ct->consumer, topics, 2) == 0)
		ct->unsubscribed = drain;
}

static void *worker__consume(void *opaque)
{
	struct consumer_thread *ct = opaque;
	struct worker *worker = ct->worker;

	while (!atomic_load(&worker->stopping)) {
		struct kafka_message msg = {0};
		struct kafka_event ev = {0};
		int rc;

		if (ct->creates) {
			worker__follow_drain(ct);
			worker__pace_creates(ct);
		}
		rc = kafka_consumer__next_event(ct->consumer, ct->dlq, worker->dlq_topic,
						ct->creates ? 50 : 200, &msg, &ev);
		if (ct->creates)
			create_pool__commit_ready(worker->create_pool);
		if (rc < 0) {
			log_error("%s consumer: fatal error; retrying in 1 s", ct->name);
			sleep(1);
			continue;
		}
		if (rc == 0)
			continue;
		if (ct->creates) {
			create_pool__submit(worker->create_pool, &msg, &ev);
			continue;
		}
		rc = worker__run_command(worker, &ev);
		if (rc != -EAGAIN)
			kafka_consumer__commit_message(ct->consumer, &msg);
		kafka_message__release(&msg);
		kafka_event__clear(&ev);
	}
	return NULL; /* main drains the create pool once this thread is joined */
}

static void worker__on_creates_revoked(const struct kafka_partition *partitions, size_t count,
				       void *opaque)
{
	struct worker *worker = opaque;

	create_pool__on_revoke(worker->create_pool, partitions, count);
}

/* The most sandboxes this host takes (live plus being created): the
 * setting worker_capacity when > 0, else derived from the host (workers/
 * README.md, "Capacity"): min(slot_max, memory MiB x
 * worker_memory_overcommit / sandbox_memory_mb, online CPUs x
 * worker_cpu_overcommit / sandbox_cpu_count), at least 1 (defaults 8
 * and 256: limits are ceilings, not reservations). */
static int worker__capacity(void)
{
	int64_t configured = config__get_int("worker_capacity", 0);
	int64_t memory_mb = 0, cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int64_t sandbox_memory = config__get_int("sandbox_memory_mb", 512);
	int64_t sandbox_cpus = config__get_int("sandbox_cpu_count", 2);
	int64_t by_slots = config__get_int("slot_max", 1024), by_memory, by_cpu, capacity;
	char line[256];
	FILE *meminfo;

	if (configured > 0)
		return configured > 100000 ? 100000 : (int)configured;
	meminfo = fopen("/proc/meminfo", "re");
	while (meminfo && fgets(line, sizeof(line), meminfo))
		if (sscanf(line, "MemTotal: %" SCNd64 " kB", &memory_mb) == 1) {
			memory_mb /= 1024;
			break;
		}
	if (meminfo)
		fclose(meminfo);
	by_memory = memory_mb * config__get_int("worker_memory_overcommit", 8) /
		    (sandbox_memory > 0 ? sandbox_memory : 512);
	by_cpu = (cpus > 0 ? cpus : 1) * config__get_int("worker_cpu_overcommit", 256) /
		 (sandbox_cpus > 0 ? sandbox_cpus : 1);
	capacity = by_slots;
	if (by_memory < capacity)
		capacity = by_memory;
	if (by_cpu < capacity)
		capacity = by_cpu;
	if (capacity < 1)
		capacity = 1;
	log_info("capacity %lld: slots %lld, memory %lld MiB -> %lld, %lld CPUs -> %lld",
		 (long long)capacity, (long long)by_slots, (long long)memory_mb,
		 (long long)by_memory, (long long)cpus, (long long)by_cpu);
	return (int)capacity;
}

/* True when the installed template at dir is a sandbox snapshot (its
 * template.json has "snapshot_bytes"): only the snapshot command registers
 * those, with their team; registered here, one whose command died before
 * registering it would be a template every team could start. */
static bool worker__is_snapshot(const char *dir)
{
	char path[PATH_MAX + 16];
	json_t *meta;
	bool snapshot;

	snprintf(path, sizeof(path), "%.4000s/template.json", dir);
	meta = json_load_file(path, 0, NULL);
	snapshot = json_object_get(meta, "snapshot_bytes") != NULL;
	json_decref(meta);
	return snapshot;
}

/* Registers this host's installed templates in PostgreSQL, so the API can
 * validate templateID and answer envdVersion. Snapshots are skipped (they
 * are registered when taken; an unregistered one is pruned as deleted). */
static void worker__register_templates(struct worker *worker)
{
	struct template_info *templates = NULL;
	size_t count = 0;

	if (templates__list(templates__dir(), &templates, &count)) {
		log_warn("no templates found in %s", templates__dir());
		return;
	}
	for (size_t i = 0; i < count; i++) {
		struct storage_template row = {0};
		struct storage_error err;

		if (worker__is_snapshot(templates[i].dir))
			continue;
		snprintf(row.id, sizeof(row.id), "%s", templates[i].name);
		snprintf(row.agent_version, sizeof(row.agent_version), "%s",
			 templates[i].agent_version);
		snprintf(row.image_path, sizeof(row.image_path), "%s", templates[i].dir);
		snprintf(row.content_hash, sizeof(row.content_hash), "%s",
			 templates[i].content_hash);
		if (storage__template_upsert(worker->storage, &row, &err))
			log_warn("template %s: registering failed: %s", row.id, err.message);
		else
			log_info("template %s (agent %s) registered", row.id, row.agent_version);
	}
	free(templates);
}

/* A consumer of group subscribed to topics[0..count), with on_revoke
 * (may be NULL) called with opaque. NULL on error (logged). */
static struct kafka_consumer *worker__consumer(const struct kafka_settings *kafka,
					       const char *group, const char *const *topics,
					       size_t count, kafka_rebalance_fn on_revoke,
					       void *opaque)
{
	char err[256];
	struct kafka_consumer_config config = {
	    .settings = kafka,
	    .group_id = group,
	    .session_timeout_ms = (int)config__get_int("kafka_session_timeout_ms", 10000),
	    .on_revoke = on_revoke,
	    .opaque = opaque,
	};
	struct kafka_consumer *consumer = kafka_consumer__new(&config, err, sizeof(err));

	if (!consumer) {
		log_error("consumer for %s: %s", topics[0], err);
		return NULL;
	}
	if (kafka_consumer__subscribe(consumer, topics, count)) {
		kafka_consumer__free(consumer);
		return NULL;
	}
	return consumer;
}

/* Settings read once at start: host id, token seed, capacity, create
 * concurrency, the topic names and the runtime. 0, or the exit status. */
static int worker__load_settings(struct worker *worker)
{
	char hostname[64] = "localhost", reason[512], host_topic[KAFKA_TOPIC_NAME_MAX + 1];
	char runtime_topic[KAFKA_TOPIC_NAME_MAX + 1];
	const char *prefix = config__get("kafka_topic_prefix", "");

	worker_settings__configure_libraries();
	gethostname(hostname, sizeof(hostname) - 1);
	snprintf(worker->host_id, sizeof(worker->host_id), "%s", config__get("host_id", hostname));
	worker->token_seed = config__get("token_seed", NULL);
	kafka_settings__from_config(&worker->kafka);
	worker->capacity = worker__capacity();
	/* Creates in flight at once (docs: workers/README.md). */
	int64_t create_threads = config__get_int("worker_create_concurrency", 16);
	worker->create_threads = create_threads < 1	? 1
				 : create_threads > 256 ? 256
							: (size_t)create_threads;
	worker->agent_timeout_ms = (int)config__get_int("agent_timeout_ms", 10000);
	worker->agent_address_override = config__get("agent_address", NULL);
	if (!worker->token_seed || strlen(worker->token_seed) < 16) {
		log_error("token_seed (WARREN_TOKEN_SEED) must be set, at least 16 characters");
		return 2;
	}
	/* Every sandbox needs its own network namespace: the jail runtime
	 * refuses to start without one, and sandboxes sharing the host network
	 * would all bind the agent port (a create could /init another
	 * sandbox's agent). So slots=false is refused instead of failing
	 * every create. */
	if (!config__get_bool("slots", true)) {
		log_error("slots=false (WARREN_SLOTS) is not supported: every sandbox runs in "
			  "its own network slot");
		return 2;
	}
	if (kafka__host_topic(worker->host_id, host_topic, sizeof(host_topic))) {
		log_error("host_id \"%s\" is not usable in a topic name", worker->host_id);
		return 2;
	}
	snprintf(worker->host_topic, sizeof(worker->host_topic), "%s%s", prefix, host_topic);
	snprintf(worker->commands_topic, sizeof(worker->commands_topic), "%s%s", prefix,
		 KAFKA_TOPIC_SANDBOX_COMMANDS);
	snprintf(worker->events_topic, sizeof(worker->events_topic), "%s%s", prefix,
		 KAFKA_TOPIC_SANDBOX_EVENTS);
	snprintf(worker->dlq_topic, sizeof(worker->dlq_topic), "%s%s", prefix, KAFKA_TOPIC_DLQ);

	worker->runtime = runtime__choose(reason, sizeof(reason));
	log_warn("RUNTIME: %s — %s", runtime__name(worker->runtime), reason);
	if (kafka__runtime_topic(runtime__name(worker->runtime), runtime_topic,
				 sizeof(runtime_topic)))
		return 1;
	snprintf(worker->runtime_topic, sizeof(worker->runtime_topic), "%s%s", prefix,
		 runtime_topic);
	return 0;
}

/* PostgreSQL, the Kafka producer and topics, the slot pool, the installed
 * templates, what a previous process left (reconcile) and /metrics.
 * 0 or -1 (logged). */
static int worker__open_services(struct worker *worker)
{
	struct storage_settings storage;
	struct storage_error serr;
	char err[256];

	storage_settings__from_config(&storage, NULL, 4);
	worker->storage = storage__pool_open_settings(&storage, &serr);
	if (!worker->storage) {
		log_error("PostgreSQL: %s", serr.message);
		return -1;
	}
	worker->producer = kafka_producer__new(&worker->kafka, NULL, err, sizeof(err));
	if (!worker->producer) {
		log_error("Kafka producer: %s", err);
		return -1;
	}
	/* The contract topics (created by the deployment; made here too when
	 * absent, so a fresh stack or a test prefix works) and our host topic. */
	const struct {
		const char *name;
		int partitions;
	} topics[] = {{worker->commands_topic, 12},
		      {worker->events_topic, 12},
		      {worker->dlq_topic, 3},
		      {worker->host_topic, 3},
		      {worker->runtime_topic, 12}};
	for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
		if (kafka__create_topic(&worker->kafka, topics[i].name, topics[i].partitions, 0,
					15000, err, sizeof(err))) {
			log_error("topic %s: %s", topics[i].name, err);
			return -1;
		}
	}
	/* Results go to the events topic: its leaders looked up now, not at
	 * the first result (a warn only: producing looks them up again). */
	if (kafka_producer__prepare(worker->producer, worker->events_topic, 5000))
		log_warn("Kafka: the metadata of %s is not known yet", worker->events_topic);
	struct net_pool_config net_config;
	worker_settings__net_pool(&net_config);
	worker->net = net_pool__new(&net_config);
	if (!worker->net) {
		log_error("the slot pool could not be created");
		return -1;
	}
	worker__register_templates(worker);
	return worker__reconcile(worker) || worker__metrics_serve(worker) ? -1 : 0;
}

/* The two consumers: creates for any host and for our runtime (one group:
 * a worker of the other runtime subscribes to the shared topic alone and
 * gets no share of ours; placement: docs/events/README.md), and this
 * host's own topic; then the create pool. 0 or -1. */
static int worker__open_consumers(struct worker *worker, struct consumer_thread *creates,
				  struct consumer_thread *operations)
{
	const char *create_topics[] = {worker->commands_topic, worker->runtime_topic};
	const char *host_topics[] = {worker->host_topic};
	char host_group[96];

	*creates = (struct consumer_thread){
	    .worker = worker, .dlq = worker->producer, .name = "creates", .creates = true};
	*operations = (struct consumer_thread){
	    .worker = worker, .dlq = worker->producer, .name = "operations"};
	creates->consumer =
	    worker__consumer(&worker->kafka, config__get("worker_group", "warren-workers"),
			     create_topics, 2, worker__on_creates_revoked, worker);
	snprintf(host_group, sizeof(host_group), "warren-worker-%.63s", worker->host_id);
	operations->consumer =
	    worker__consumer(&worker->kafka, host_group, host_topics, 1, NULL, NULL);
	if (!creates->consumer || !operations->consumer)
		return -1;
	worker->create_pool =
	    create_pool__new(creates->consumer, worker->create_threads, worker__run_create, worker);
	return worker->create_pool ? 0 : -1;
}

/* Graceful stop: the creates in hand finish (or are left for redelivery),
 * then builds, the warm pool and every live sandbox. */
static void worker__shutdown(struct worker *worker, struct consumer_thread *creates,
			     struct consumer_thread *operations, struct builds *builds)
{
	service__notify("STOPPING=1");
	log_info("shutting down: finishing the commands in hand");
	pthread_join(creates->thread, NULL);
	/* the warm pool's refill reads the create pool: it stops first; then
	 * the creates in hand finish (or are left for redelivery), then no
	 * create can claim a warm sandbox any more and those go */
	warm_pool__stop_refill(worker->warm_pool);
	create_pool__drain(worker->create_pool);
	worker->create_pool = NULL;
	pthread_join(operations->thread, NULL);
	builds__stop(builds);
	warm_pool__stop(worker->warm_pool);
	worker->warm_pool = NULL;
	worker__stop_all(worker, "worker shutdown");
	worker__housekeeping(worker);
}

int main(void)
{
	struct worker *worker = &worker_instance;
	struct consumer_thread creates = {0}, operations = {0};
	struct builds *builds = NULL;
	struct sigaction sa = {.sa_handler = worker__on_signal};
	int exit_code = 1, settings;

	log__set_component("worker");
	/* Sandboxes get their files' modes from us: never inherit a strict
	 * umask of whoever started the worker. */
	umask(022);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	pthread_mutex_init(&worker->lock, NULL);
	pthread_cond_init(&worker->released, NULL);
	pthread_mutex_init(&worker->handoff_lock, NULL);
	pthread_mutex_init(&worker->templates_lock, NULL);

	settings = worker__load_settings(worker);
	if (settings == 2)
		return 2;
	if (settings || worker__open_services(worker) ||
	    worker__open_consumers(worker, &creates, &operations))
		goto out;
	worker->warm_pool = warm_pool__start(worker, config__get("warm_pool", ""));
	worker__housekeeping(worker); /* the host row exists before any create lands */
	pthread_create(&creates.thread, NULL, worker__consume, &creates);
	pthread_create(&operations.thread, NULL, worker__consume, &operations);
	if (config__get_bool("template_builds", true))
		builds = builds__start(worker); /* template builds (build.h) */
	log_info("ready: host %s, runtime %s, capacity %d, %zu creates at once, topics %s, %s + %s",
		 worker->host_id, runtime__name(worker->runtime), worker->capacity,
		 worker->create_threads, worker->commands_topic, worker->runtime_topic,
		 worker->host_topic);
	service__notify("READY=1"); /* systemd Type=notify */

	while (!atomic_load(&worker->stopping)) {
		struct timespec pause = {0, 200 * 1000 * 1000};
		worker__housekeeping(worker);
		worker__sample_metrics(worker);
		nanosleep(&pause, NULL);
	}
	worker__shutdown(worker, &creates, &operations, builds);
	exit_code = 0;
out:
	prom__stop();				 /* its collector reads the pool freed below */
	create_pool__drain(worker->create_pool); /* set only when start failed after it */
	kafka_consumer__free(creates.consumer);
	kafka_consumer__free(operations.consumer);
	if (worker->net)
		net_pool__free(worker->net);
	kafka_producer__free(worker->producer);
	if (worker->storage)
		storage__pool_close(worker->storage);
	curl_global_cleanup();
	return exit_code;
}

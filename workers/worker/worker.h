/* worker: warren-worker's state. One per host: a Kafka consumer-group
 * member for creates (shared topic) and one for its host topic (ops on its
 * live sandboxes), the slot pool, the runtime, and the table of sandboxes
 * it runs. ARCHITECTURE.md, "Data flow" and "Kafka contract". */
#ifndef WARREN_WORKER_H
#define WARREN_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "runtime.h"
#include "warren/kafka.h"
#include "warren/net.h"
#include "warren/storage.h"

#define WORKER_AGENT_PORT 49983

struct live_sandbox {
	char id[IDS_SANDBOX_ID_LEN + 1];
	char team_id[KAFKA_EVENT_TEAM_ID_MAX + 1];
	int slot; /* -1: none */
	struct net_slot_info slot_info;
	struct runtime_instance *instance;
	uint64_t metrics_cpu_usec; /* CPU time at the last sample (metrics.c) */
	int64_t metrics_at_ms;	   /* realtime of it; 0: none yet */
	uint64_t log_offset;	   /* console bytes copied to PostgreSQL (metrics.c) */
	uint32_t log_lines;	   /* lines copied; capped at sandbox_log_max_lines */
	/* Threads using instance without the table lock (a vm snapshot's
	 * export: seconds): no one else uses it or takes it off the list
	 * until it is 0 again (worker->released). */
	unsigned holds;
	struct live_sandbox *next;
};

struct worker {
	char host_id[64];
	/* Topic names, with the setting kafka_topic_prefix (tests isolate
	 * themselves with it; empty in production). */
	char commands_topic[KAFKA_TOPIC_NAME_MAX + 1];
	char events_topic[KAFKA_TOPIC_NAME_MAX + 1];
	char dlq_topic[KAFKA_TOPIC_NAME_MAX + 1];
	char host_topic[KAFKA_TOPIC_NAME_MAX + 1];
	char runtime_topic[KAFKA_TOPIC_NAME_MAX + 1]; /* creates for this host's runtime only */
	const char *token_seed;
	const char *agent_address_override; /* tests without slots: "127.0.0.1" */
	enum runtime_kind runtime;
	int capacity;
	size_t create_threads;		 /* setting worker_create_concurrency */
	struct create_pool *create_pool; /* the creates in hand (create_pool.h) */
	struct warm_pool *warm_pool;	 /* setting warm_pool; NULL: none (warm_pool.h) */
	uint64_t last_lost_sweep_ms;	 /* housekeeping: other hosts declared lost */
	int agent_timeout_ms;
	struct storage_pool *storage;
	struct kafka_settings kafka; /* the kafka_* settings, read once at start */
	struct kafka_producer *producer;
	struct net_pool *net;	 /* NULL when slots are disabled */
	pthread_mutex_t lock;	 /* guards sandboxes, live_count, creates_running,
				    creates_live */
	pthread_cond_t released; /* a live sandbox's holds went back to 0 */
	struct live_sandbox *sandboxes;
	int live_count;
	int creates_running; /* creates of the create topics running here (handoff.h) */
	/* creates whose sandbox joined the live list while their handler
	 * still runs (records, publishes): counted in live_count and among
	 * the creates in hand alike, so worker__occupied counts them once */
	int creates_live;
	pthread_mutex_t handoff_lock; /* guards the two below (handoff.c) */
	/* held by a snapshot from the install of its template tree until its
	 * row is registered, and by the prune of deleted templates (build.c),
	 * which took a tree in between for a deleted one */
	pthread_mutex_t templates_lock;
	uint64_t handoff_checked_ms; /* when the hosts table was last asked */
	bool handoff_room;	     /* its answer: another host has room */
	atomic_bool stopping;
	/* an operator drains this host (hosts.drain_requested, read by each
	 * heartbeat): the creates thread leaves the shared topics' group */
	atomic_bool draining;
	uint64_t last_heartbeat_ms;    /* main thread only (housekeeping) */
	int64_t last_metrics_prune_ms; /* main thread only (metrics.c) */
	int64_t last_logs_ms;	       /* main thread only (metrics.c) */
	uint64_t last_volume_sweep_ms; /* main thread only (volumes.c) */
};

/* Handles one decoded command. Returns 0 when its outcome is durable (the
 * offset may be committed), -EAGAIN when it must be retried (PostgreSQL or
 * Kafka unavailable: the message is not committed). */
int worker__handle_command(struct worker *worker, const struct kafka_event *command);
/* A sandbox's vCPUs and memory MiB for template_id: its template.json's
 * cpu_count/memory_mb, else the settings sandbox_cpu_count/_memory_mb. */
void worker__resources(const char *template_id, uint32_t *vcpus, uint32_t *memory_mib);
/* Kills sandboxes whose end_at passed (timed_out events) and refreshes the
 * host's heartbeat (at most once a second). Called every ~200 ms by the
 * main thread. */
void worker__housekeeping(struct worker *worker);
/* At start: kills orphans of a previous process, marks lost sandboxes. */
int worker__reconcile(struct worker *worker);
/* Samples the usage of every live sandbox whose last sample is at least
 * the setting metrics_interval_ms old (default 5000; 0 turns sampling off)
 * and stores it in PostgreSQL; once a minute deletes samples older than
 * metrics_retention_s (default 86400). Main thread only (metrics.c). */
void worker__sample_metrics(struct worker *worker);
/* Registers the worker's Prometheus collector and, when the setting
 * metrics_listen is set, serves GET /metrics there. 0 or -1 (logged). */
int worker__metrics_serve(struct worker *worker);
/* Counts one handled command (type name, worker__handle_command's rc). */
void worker__metrics_command(const char *type, int rc, uint64_t started_ns);
/* Stops every live sandbox (on shutdown) and marks them killed. */
void worker__stop_all(struct worker *worker, const char *reason);
/* What capacity bounds: the live sandboxes plus creates_in_hand (queued or
 * running creates), a create whose sandbox is live already counted once.
 * Caller holds worker->lock. */
size_t worker__occupied(const struct worker *worker, size_t creates_in_hand);

#endif

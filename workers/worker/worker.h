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
	int slot;                        /* -1: none */
	struct net_slot_info slot_info;
	struct runtime_instance *instance;
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
	size_t create_threads;           /* setting worker_create_concurrency */
	struct create_pool *create_pool; /* the creates in hand (create_pool.h) */
	struct warm_pool *warm_pool;     /* setting warm_pool; NULL: none (warm_pool.h) */
	int agent_timeout_ms;
	struct storage_pool *storage;
	struct kafka_producer *producer;
	struct net_pool *net;               /* NULL when slots are disabled */
	pthread_mutex_t lock;               /* guards sandboxes and live_count */
	struct live_sandbox *sandboxes;
	int live_count;
	atomic_bool stopping;
	uint64_t last_heartbeat_ms;         /* main thread only (housekeeping) */
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
/* Stops every live sandbox (on shutdown) and marks them killed. */
void worker__stop_all(struct worker *worker, const char *reason);

#endif

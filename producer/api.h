/* warren-api internals shared by server.c (HTTP plumbing), handlers.c
 * (the endpoints), bus.c (Kafka) and main.c. Not a public API: other rooms
 * talk to warren-api over HTTP (docs/api.md). */
#ifndef WARREN_API_H
#define WARREN_API_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "render.h"
#include "route.h"
#include "validate.h"
#include "warren/kafka.h"
#include "warren/storage.h"

/* Settings (docs/api.md, "Configuration"); config__get names in brackets. */
struct api_config {
	char listen_host[64];		   /* [api_listen] host part, default 127.0.0.1 */
	int listen_port;		   /* [api_listen] port part, default 3000 (0: any) */
	struct storage_settings storage;   /* [pg_url, pg_password, pg_ssl_*, pg_pool_size 8] */
	struct kafka_settings kafka;	   /* [kafka_brokers], [kafka_security_protocol], ... */
	const char *topic_prefix;	   /* [kafka_topic_prefix] default "" */
	const char *token_seed;		   /* [token_seed] required unless dev_mode */
	bool dev_mode;			   /* [dev_mode] */
	const char *domain;		   /* [domain] default "" (JSON null) */
	int64_t create_deadline_ms;	   /* [create_deadline_ms] default 60000 */
	int64_t operation_deadline_ms;	   /* [operation_deadline_ms] default 15000 */
	int64_t snapshot_deadline_ms;	   /* [snapshot_deadline_ms] default 120000 */
	int64_t produce_timeout_ms;	   /* [kafka_produce_timeout_ms] default 5000 */
	int64_t pg_start_wait_ms;	   /* [pg_start_wait_ms] default 10000 */
	size_t max_body_bytes;		   /* [api_max_body_bytes] default 1 MiB */
	int http_threads;		   /* [api_threads] default 8 */
	char *tls_cert_pem, *tls_key_pem;  /* [api_tls_cert_file, api_tls_key_file]: HTTPS when
					      set (both or neither); read at load, kept */
	int cpu_count, memory_mb, disk_mb; /* [sandbox_cpu_count] 2, [sandbox_memory_mb] 512,
					      [sandbox_disk_mb] 1024 */
	int64_t volume_size_mb;		   /* [volume_size_mb] 1024: every new volume's size */
	int64_t volume_quota_count;	   /* [volume_quota_count] 20 volumes per team */
	int64_t volume_quota_mb;	   /* [volume_quota_mb] 20480 MiB per team */
	char commands_topic[KAFKA_TOPIC_NAME_MAX + 1]; /* prefix + warren.sandbox.commands */
	char events_topic[KAFKA_TOPIC_NAME_MAX + 1];   /* prefix + warren.sandbox.events */
};

/* Reads every setting. 0, or -EINVAL with a message in err when one is
 * invalid (e.g. no token_seed outside dev_mode). */
int api__config_load(struct api_config *config, char *err, size_t err_len);

/* ---- waiters: HTTP requests suspended until a result event ---- */

struct api_waiter {
	char request_id[IDS_UUID_LEN + 1];
	uint32_t want;	     /* bit (1u << kafka_event_type) of accepted results */
	int64_t deadline_ms; /* clock__monotonic_ms */
	void *connection;    /* struct MHD_Connection * to resume */
	bool suspended, done, timed_out;
	enum kafka_event_type result_type;
	char host_id[KAFKA_EVENT_HOST_ID_MAX + 1];
	json_t *result; /* owned */
	struct api_waiter *next;
};

/* Registers w (before its command is produced, so no result is missed). */
void waiters__add(struct api_waiter *w);
/* Unregisters w; afterwards no thread touches it. Safe if not added. */
void waiters__remove(struct api_waiter *w);
/* Suspends connection until w is done, unless it already is: true when
 * suspended (return from the handler), false when the result is there. */
bool waiters__suspend(struct api_waiter *w, void *connection);
/* Hands a result event to the waiter of its request_id (consumer thread).
 * False when nobody here waits for it. */
bool waiters__deliver(const struct kafka_event *ev);
/* Marks waiters past their deadline timed out and resumes them. */
void waiters__expire(int64_t now_ms);
/* Resumes every waiter as timed out (shutdown). */
void waiters__cancel_all(void);

/* ---- bus: Kafka producer and the result consumer (bus.c) ---- */

/* Starts the producer and the consumer thread of config->events_topic
 * (own group "warren-api-<hostname>-<pid>", from the latest offset) and
 * waits up to wait_ms for its partition assignment. 0, or -EIO with a
 * message in err. */
int bus__start(const struct api_config *config, int wait_ms, char *err, size_t err_len);
void bus__stop(void);
/* Produces ev to topic keyed by its sandbox id and waits for the broker's
 * acknowledgement (kafka_produce_timeout_ms). 0, or a negative errno:
 * -ENOTCONN at once, nothing queued, while no broker is reachable;
 * -ETIMEDOUT when unacknowledged (the command may still arrive later). */
int bus__produce(const char *topic, const struct kafka_event *ev);
/* Produces without waiting (best effort); 0 when queued. */
int bus__produce_async(const char *topic, const struct kafka_event *ev);
/* Produces a JSON payload that is not a sandbox event (template builds,
 * docs/templates.md) keyed by key, waiting for the acknowledgement. */
int bus__produce_raw(const char *topic, const char *key, const char *payload);
/* The host topic of host_id with the prefix; 0 or -EINVAL. */
int bus__host_topic(const struct api_config *config, const char *host_id, char *out, size_t len);

/* ---- the server (server.c) ---- */

struct api_server;
struct api_server *api__server_start(const struct api_config *config, char *err, size_t err_len);
/* The port actually bound (api_listen port 0 picks one). */
int api__server_port(const struct api_server *server);
void api__server_stop(struct api_server *server);

/* The storage pool, or NULL while PostgreSQL could not be reached yet
 * (requests then get 503; a background thread keeps trying). */
struct storage_pool *api__pool(void);

#endif

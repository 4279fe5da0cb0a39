/* storage: the only code in warren that speaks SQL (ARCHITECTURE.md,
 * "PostgreSQL (source of truth)"). Typed functions over libpq with
 * prepared statements, a thread-safe connection pool, reconnect after a
 * server restart, and SQLSTATEs mapped to storage_status codes.
 *
 * Conventions: every function returns STORAGE_OK (0) or an error code and,
 * when err is not NULL, fills it with the code and a message. Output
 * structs are written only on STORAGE_OK. Times are milliseconds since the
 * epoch (clock__realtime_ms), -1 when NULL in the database. Functions that
 * take a team_id only ever see that team's rows: another team's row is
 * STORAGE_ERR_NOT_FOUND. Functions named *_internal skip the team check
 * and must never run on behalf of a client. docs/schema.md has the
 * tables and the sandbox state machine. */
#ifndef WARREN_STORAGE_H
#define WARREN_STORAGE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "warren/storage_settings.h"

enum storage_status {
	STORAGE_OK = 0,
	STORAGE_ERR_NOT_FOUND,	   /* no such row (or another team's) */
	STORAGE_ERR_DUPLICATE,	   /* unique_violation (23505) */
	STORAGE_ERR_NOT_FOUND_REF, /* foreign_key_violation (23503): a referenced row is missing */
	STORAGE_ERR_INVALID,	   /* check/not-null violation, bad input (23514, 23502, 22xxx) */
	STORAGE_ERR_CONFLICT,	   /* compare-and-set lost: the row is not in the expected state */
	STORAGE_ERR_UNAVAILABLE,   /* connection failure, server shutting down (08xxx, 57P0x) */
	STORAGE_ERR_INTERNAL,	   /* anything else (a bug, a server error) */
};

struct storage_error {
	enum storage_status code;
	char sqlstate[6]; /* "" when no server error */
	char message[512];
};

/* The status a SQLSTATE (5 characters) maps to; NULL or "" -> UNAVAILABLE
 * (libpq reports a lost connection without a SQLSTATE). Pure. */
enum storage_status storage__status_from_sqlstate(const char *sqlstate);
/* "ok", "not_found", "duplicate", ... Never NULL. */
const char *storage__status_name(enum storage_status status);

/* ---- connection pool ---- */

struct storage_pool;

/* Opens a pool of settings->pool_size connections (url, password, TLS:
 * warren/storage_settings.h; the binary fills them from its config once).
 * Connects every connection now so a bad url, password or certificate
 * fails here. NULL on error. */
struct storage_pool *storage__pool_open_settings(const struct storage_settings *settings,
						 struct storage_error *err);
/* The same for a bare url (a libpq conninfo or URI) and `size` connections
 * (storage_settings__for_url's defaults): tests and tools. */
struct storage_pool *storage__pool_open(const char *url, int size, struct storage_error *err);
/* Closes every connection. Callers must have returned all of them. */
void storage__pool_close(struct storage_pool *pool);
/* One round trip (SELECT 1) on a pooled connection, reconnecting like any
 * statement: STORAGE_OK, or UNAVAILABLE while the server cannot be reached
 * (health checks). */
int storage__ping(struct storage_pool *pool, struct storage_error *err);

/* ---- migrations (storage/migrate.c) ---- */

/* The migrations folder when the caller names none: the source tree's
 * migrations/ if it exists, else /usr/share/warren/migrations. (The
 * setting migrations_dir is the binary's to read and pass.) */
const char *storage__default_migrations_dir(void);

struct storage_migration_status {
	int version;
	char name[128]; /* file name, e.g. "0001_initial.sql" */
	bool applied;
	bool modified;	    /* applied, but the file's sha256 differs */
	bool missing_file;  /* applied, but no file in the folder */
	int64_t applied_at; /* ms, -1 when pending */
};

/* Applies every pending migrations/NNNN_name.sql of dir in order, each in
 * its own transaction, under a PostgreSQL advisory lock (concurrent runs
 * wait, then find nothing to do). Refuses (STORAGE_ERR_CONFLICT, message
 * naming the file) when an applied file was modified or removed.
 * *applied_count (may be NULL) gets the number applied now. */
int storage__migrate(const char *url, const char *dir, int *applied_count,
		     struct storage_error *err);
/* Lists every migration (files and applied rows) in version order; the
 * caller frees *out. */
int storage__migrate_status(const char *url, const char *dir, struct storage_migration_status **out,
			    size_t *count, struct storage_error *err);
/* The same two as the role and TLS settings say (`warren migrate` runs as
 * the admin role: docs/transport-security.md). */
int storage__migrate_settings(const struct storage_settings *settings, const char *dir,
			      int *applied_count, struct storage_error *err);
int storage__migrate_status_settings(const struct storage_settings *settings, const char *dir,
				     struct storage_migration_status **out, size_t *count,
				     struct storage_error *err);

/* ---- teams ---- */

enum storage_tier { STORAGE_TIER_HOBBY = 0, STORAGE_TIER_PRO, STORAGE_TIER_ENTERPRISE };

/* The limits of the plan table (docs/e2b-compatibility.md, Limits), per team. */
struct storage_team_limits {
	int32_t lifecycle_requests; /* per lifecycle_window_s */
	int32_t lifecycle_window_s;
	int32_t sandbox_operations; /* per client IP, per sandbox_operations_window_s */
	int32_t sandbox_operations_window_s;
	int32_t concurrent_sandboxes; /* starting + running */
	int32_t creation_rate_per_s;
	int32_t egress_connections; /* per sandbox */
	int32_t max_timeout_s;	    /* longest sandbox timeout */
};

#define STORAGE_UUID_LEN      36
#define STORAGE_TEAM_NAME_MAX 63

struct storage_team {
	char id[STORAGE_UUID_LEN + 1];
	char name[STORAGE_TEAM_NAME_MAX + 1];
	enum storage_tier tier;
	struct storage_team_limits limits;
	int64_t created_at;
};

const char *storage__tier_name(enum storage_tier tier);
/* Parses "hobby" | "pro" | "enterprise"; false otherwise. Pure. */
bool storage__tier_parse(const char *name, enum storage_tier *tier);

/* Names accepted by storage__team_set_limit, in struct order, NULL-ended:
 * lifecycle_requests, lifecycle_window_s, sandbox_operations,
 * sandbox_operations_window_s, concurrent_sandboxes, creation_rate_per_s,
 * egress_connections, max_timeout_s. */
extern const char *const storage_limit_names[];
/* True when name is one of storage_limit_names. Pure. */
bool storage__limit_name_valid(const char *name);

/* Creates a team with its tier's default limits. DUPLICATE when the name
 * is taken, INVALID for a bad name (1-63 of [A-Za-z0-9._-]). */
int storage__team_create(struct storage_pool *pool, const char *name, enum storage_tier tier,
			 struct storage_team *out, struct storage_error *err);
int storage__team_get(struct storage_pool *pool, const char *team_id, struct storage_team *out,
		      struct storage_error *err);
int storage__team_get_by_name(struct storage_pool *pool, const char *name, struct storage_team *out,
			      struct storage_error *err);
/* Every team by name; the caller frees *out. */
int storage__team_list(struct storage_pool *pool, struct storage_team **out, size_t *count,
		       struct storage_error *err);
/* Changes the tier and resets every limit to that tier's defaults. */
int storage__team_set_tier(struct storage_pool *pool, const char *team_id, enum storage_tier tier,
			   struct storage_team *out, struct storage_error *err);
/* Sets one limit (a storage_limit_names entry) to value (> 0). */
int storage__team_set_limit(struct storage_pool *pool, const char *team_id, const char *limit_name,
			    int32_t value, struct storage_team *out, struct storage_error *err);

/* ---- API keys (only the SHA-256 is ever stored) ---- */

struct storage_api_key {
	char id[STORAGE_UUID_LEN + 1];
	char team_id[STORAGE_UUID_LEN + 1];
	char prefix[17];
	int64_t created_at, last_used_at, revoked_at;
};

/* Stores a key by its lower-case hex SHA-256 (tokens__sha256_hex) and a
 * short display prefix (e.g. "e2b_1a2b"). */
int storage__api_key_create(struct storage_pool *pool, const char *team_id, const char *key_hash,
			    const char *prefix, struct storage_api_key *out,
			    struct storage_error *err);
/* The team owning a non-revoked key with this hash (NOT_FOUND otherwise);
 * records last_used_at (at most once a minute per key). */
int storage__api_key_authenticate(struct storage_pool *pool, const char *key_hash,
				  struct storage_team *team, struct storage_error *err);
/* Revokes by key id; NOT_FOUND when unknown or already revoked. */
int storage__api_key_revoke(struct storage_pool *pool, const char *key_id,
			    struct storage_error *err);
/* Revokes by hash (for `warren admin key revoke e2b_...`). */
int storage__api_key_revoke_by_hash(struct storage_pool *pool, const char *key_hash,
				    struct storage_error *err);
/* A team's keys, newest first; the caller frees *out. */
int storage__api_key_list(struct storage_pool *pool, const char *team_id,
			  struct storage_api_key **out, size_t *count, struct storage_error *err);

/* ---- templates ---- */

struct storage_template {
	char id[129];
	char agent_version[65];
	char image_path[4097];
	char content_hash[65]; /* hex sha256 */
	int64_t created_at, updated_at;
};

/* Inserts or replaces a template by id. */
int storage__template_upsert(struct storage_pool *pool, const struct storage_template *template_in,
			     struct storage_error *err);
int storage__template_get(struct storage_pool *pool, const char *id, struct storage_template *out,
			  struct storage_error *err);
/* The template when team_id may use it (as storage__template_get, then
 * storage__team_template_visible), in one statement; NOT_FOUND otherwise. */
int storage__template_get_for_team(struct storage_pool *pool, const char *team_id, const char *id,
				   struct storage_template *out, struct storage_error *err);
/* Every template by id; the caller frees *out. */
int storage__template_list(struct storage_pool *pool, struct storage_template **out, size_t *count,
			   struct storage_error *err);

/* ---- hosts ---- */

struct storage_host {
	char id[65]; /* [A-Za-z0-9._-]{1,64} */
	char address[256];
	char runtime[8]; /* "vm" | "jail" */
	int32_t capacity;
	int32_t running;
	char state[16]; /* "ready" | "draining" | "down" */
	int64_t registered_at, heartbeat_at;
	/* 0007: the highest Kafka event version the host's worker understands
	 * (it understands 1 up to it); 0 is written as 1. */
	int32_t protocol_version;
	/* 0009: an operator asked to drain it (warren admin host drain). */
	bool drain_requested;
};

/* Registers a host or refreshes it (address, runtime, capacity, running,
 * state, protocol_version; heartbeat_at = now). */
int storage__host_heartbeat(struct storage_pool *pool, const struct storage_host *host,
			    struct storage_error *err);
/* The heartbeat (as storage__host_heartbeat) answering in previous the
 * row's state before it ("" for a new row): "down" means other hosts
 * declared this one lost meanwhile; and in drain_requested (may be NULL)
 * whether an operator drains the host (then the row says "draining"
 * whatever host->state is "ready"). */
int storage__host_heartbeat_was(struct storage_pool *pool, const struct storage_host *host,
				char *previous, size_t previous_len, bool *drain_requested,
				struct storage_error *err);
/* Sets or clears an operator's drain of host id (0009; docs/deploy.md
 * "Drain a worker host"): a `ready` host becomes `draining` at once and
 * its heartbeats keep it so; clearing makes a `draining` host `ready`
 * (its next heartbeat says `draining` again while its worker stops).
 * STORAGE_ERR_NOT_FOUND for an unknown host. */
int storage__host_set_drain(struct storage_pool *pool, const char *id, bool drain,
			    struct storage_error *err);
/* Marks `down` every host not down whose heartbeat is older than
 * after_s seconds; *ids (caller frees) gets their ids, *count how many.
 * Concurrent callers each get a host once at most (one UPDATE). */
int storage__hosts_declare_lost(struct storage_pool *pool, int64_t after_s, char (**ids)[65],
				size_t *count, struct storage_error *err);
/* Every host by id; the caller frees *out. */
int storage__host_list(struct storage_pool *pool, struct storage_host **out, size_t *count,
		       struct storage_error *err);

/* ---- sandboxes ---- */

enum storage_sandbox_state {
	STORAGE_SANDBOX_STARTING = 0,
	STORAGE_SANDBOX_RUNNING,
	STORAGE_SANDBOX_PAUSED,
	STORAGE_SANDBOX_KILLING,
	STORAGE_SANDBOX_KILLED,
	STORAGE_SANDBOX_TIMED_OUT,
	STORAGE_SANDBOX_FAILED,
	/* 0002: the worker is freezing / thawing it (pause, resume) */
	STORAGE_SANDBOX_PAUSING,
	STORAGE_SANDBOX_RESUMING,
	STORAGE_SANDBOX_STATE_COUNT
};
#define STORAGE_STATE_BIT(state) (1u << (state))
#define STORAGE_STATES_ACTIVE                                                                      \
	(STORAGE_STATE_BIT(STORAGE_SANDBOX_STARTING) |                                             \
	 STORAGE_STATE_BIT(STORAGE_SANDBOX_RUNNING) | STORAGE_STATE_BIT(STORAGE_SANDBOX_PAUSED) |  \
	 STORAGE_STATE_BIT(STORAGE_SANDBOX_KILLING) | STORAGE_STATE_BIT(STORAGE_SANDBOX_PAUSING) | \
	 STORAGE_STATE_BIT(STORAGE_SANDBOX_RESUMING))
#define STORAGE_STATES_ALL ((1u << STORAGE_SANDBOX_STATE_COUNT) - 1)

const char *storage__sandbox_state_name(enum storage_sandbox_state state);
/* Parses a state name ("running", "timed_out", ...). Pure. */
bool storage__sandbox_state_parse(const char *name, enum storage_sandbox_state *state);

#define STORAGE_SANDBOX_ID_LEN 21

struct storage_sandbox {
	char id[STORAGE_SANDBOX_ID_LEN + 1];
	char team_id[STORAGE_UUID_LEN + 1];
	char template_id[129];
	char request_id[STORAGE_UUID_LEN + 1];
	enum storage_sandbox_state state;
	char host_id[65];      /* "" when unassigned */
	int32_t slot_index;    /* -1 when unassigned */
	char slot_address[64]; /* "" when unassigned */
	int64_t created_at, started_at, end_at, updated_at;
	json_t *network;  /* object, owned: storage__sandbox_clear */
	json_t *metadata; /* object, owned: storage__sandbox_clear */
	bool secure;
	bool allow_public_traffic;
	char mask_request_host[256];
	char failure_reason[1025];
	bool pause_on_timeout; /* on_timeout = 'pause' (0002) */
	bool auto_resume;
};

/* Releases the JSON members (the struct itself is the caller's). */
void storage__sandbox_clear(struct storage_sandbox *sandbox);

/* What a create request stores. network and metadata may be NULL ({}). */
struct storage_sandbox_new {
	const char *id; /* ids__sandbox_id */
	const char *team_id;
	const char *template_id;
	const char *request_id; /* the idempotency key */
	int32_t timeout_s;	/* end_at = now + timeout_s */
	const json_t *network;
	const json_t *metadata;
	bool secure;
	bool allow_public_traffic;
	const char *mask_request_host; /* NULL: none */
};

struct storage_admission {
	bool admitted;	      /* the sandbox row exists (new or existing) */
	bool existing;	      /* the request_id was already known: out is that row */
	int32_t active_count; /* starting + running of the team, this one included when admitted */
	int32_t limit;	      /* the team's concurrent_sandboxes */
};

/* Admits and inserts a new sandbox in state starting if the team's
 * starting+running count is below its concurrency limit, atomically across
 * every API instance (team row lock). Idempotent by request_id: a known
 * request returns its sandbox with existing = true (DUPLICATE if that
 * request belongs to another team). Not admitted: STORAGE_OK with
 * admitted = false and out untouched. */
int storage__sandbox_admit(struct storage_pool *pool, const struct storage_sandbox_new *sandbox,
			   struct storage_admission *admission, struct storage_sandbox *out,
			   struct storage_error *err);
/* The same without the limit check (internal callers, e.g. a restore). */
int storage__sandbox_insert(struct storage_pool *pool, const struct storage_sandbox_new *sandbox,
			    bool *existing, struct storage_sandbox *out, struct storage_error *err);

/* A sandbox of team_id; another team's is NOT_FOUND. */
int storage__sandbox_get(struct storage_pool *pool, const char *team_id, const char *sandbox_id,
			 struct storage_sandbox *out, struct storage_error *err);
/* Any team's sandbox (worker, proxy). */
int storage__sandbox_get_internal(struct storage_pool *pool, const char *sandbox_id,
				  struct storage_sandbox *out, struct storage_error *err);

/* A state change guarded by the expected current state. NULL / -1 fields
 * keep the row's value. */
struct storage_sandbox_transition {
	const char *sandbox_id;
	const char *team_id; /* NULL: internal caller, no team check */
	enum storage_sandbox_state from, to;
	const char *host_id;
	int32_t slot_index; /* -1: keep */
	const char *slot_address;
	const char *failure_reason;
};

/* Compare-and-set of sandboxes.state: applies when the row is in t->from
 * (CONFLICT otherwise, NOT_FOUND when absent), INVALID when from -> to is
 * not an edge of the state machine. Sets started_at on the first running,
 * appends a state_changed event in the same statement. out may be NULL.
 * Rerun once after a lost connection: if the lost run had committed, the
 * rerun reports CONFLICT; reload the row to see the state it is in. */
int storage__sandbox_transition(struct storage_pool *pool,
				const struct storage_sandbox_transition *t,
				struct storage_sandbox *out, struct storage_error *err);

/* Sets what a timeout does to the sandbox (pause instead of kill) and
 * E2B's autoResume flag. NOT_FOUND when absent. */
int storage__sandbox_set_lifecycle(struct storage_pool *pool, const char *sandbox_id,
				   bool pause_on_timeout, bool auto_resume,
				   struct storage_error *err);

/* Sets end_at = now + timeout_s for a starting/running/paused sandbox of
 * team_id (NOT_FOUND otherwise); *end_at (may be NULL) gets the new value. */
int storage__sandbox_set_timeout(struct storage_pool *pool, const char *team_id,
				 const char *sandbox_id, int32_t timeout_s, int64_t *end_at,
				 struct storage_error *err);

/* Merges patch (an object: its top-level keys replace the stored ones)
 * into sandboxes.network of a starting/running/paused sandbox of team_id
 * (NOT_FOUND otherwise): a network update the worker applied. */
int storage__sandbox_set_network(struct storage_pool *pool, const char *team_id,
				 const char *sandbox_id, const json_t *patch,
				 struct storage_error *err);

#define STORAGE_PAGE_LIMIT_MAX 100
#define STORAGE_PAGE_TOKEN_MAX 96

struct storage_sandbox_filter {
	uint32_t states;	   /* STORAGE_STATE_BIT mask; 0 = all */
	const json_t *metadata;	   /* NULL or an object every result contains (@>) */
	int limit;		   /* 1..100; <= 0 means 100 */
	const char *page_token;	   /* NULL/"" for the first page */
	const char *template_id;   /* NULL or a template id: only its sandboxes */
	int64_t started_after_ms;  /* > 0: only sandboxes created at or after it */
	int64_t started_before_ms; /* > 0: only sandboxes created at or before it */
	bool ascending;		   /* oldest first (E2B's order=asc); default newest */
};

struct storage_sandbox_list {
	struct storage_sandbox *items;
	size_t count;
	char next_token[STORAGE_PAGE_TOKEN_MAX]; /* "" on the last page */
};

/* A team's sandboxes, newest first (oldest with filter->ascending),
 * keyset-paginated over (created_at, id); a page token is only valid with
 * the order it was made for. INVALID for a bad token or limit > 100. Free with
 * storage__sandbox_list_free. */
int storage__sandbox_list(struct storage_pool *pool, const char *team_id,
			  const struct storage_sandbox_filter *filter,
			  struct storage_sandbox_list *out, struct storage_error *err);
void storage__sandbox_list_free(struct storage_sandbox_list *list);
/* Starting + running sandboxes of a team. */
int storage__sandbox_count_active(struct storage_pool *pool, const char *team_id, int32_t *count,
				  struct storage_error *err);
/* Sandboxes of a host in the given states (mask, 0 = all), oldest first. */
int storage__sandbox_list_by_host(struct storage_pool *pool, const char *host_id, uint32_t states,
				  struct storage_sandbox_list *out, struct storage_error *err);
/* Running sandboxes of a host whose end_at has passed, soonest first, at
 * most limit (1..1000). */
int storage__sandbox_list_expired(struct storage_pool *pool, const char *host_id, int limit,
				  struct storage_sandbox_list *out, struct storage_error *err);

/* Keyset token of a page position. Pure; out needs STORAGE_PAGE_TOKEN_MAX. */
void storage__page_token_encode(int64_t created_us, const char *sandbox_id, char *out);
/* Parses a token (client input: strictly validated). false if malformed. */
bool storage__page_token_decode(const char *token, int64_t *created_us,
				char sandbox_id[STORAGE_SANDBOX_ID_LEN + 1]);

/* ---- sandbox events (append-only) ---- */

struct storage_sandbox_event {
	int64_t id;
	char type[65];
	json_t *payload; /* owned */
	int64_t at;
};

/* Appends an event (type [a-z_]{1,64}, payload an object or NULL). Not
 * retried after a lost connection (it would append twice): UNAVAILABLE. */
int storage__sandbox_event_append(struct storage_pool *pool, const char *sandbox_id,
				  const char *type, const json_t *payload, int64_t *event_id,
				  struct storage_error *err);
/* Events of a sandbox with id > after_id, oldest first, at most limit
 * (1..1000). Free with storage__sandbox_events_free. */
int storage__sandbox_events_list(struct storage_pool *pool, const char *sandbox_id,
				 int64_t after_id, int limit, struct storage_sandbox_event **out,
				 size_t *count, struct storage_error *err);
void storage__sandbox_events_free(struct storage_sandbox_event *events, size_t count);

/* ---- sandbox metrics (resource samples, a bounded window) ---- */

#define STORAGE_METRICS_LIST_MAX 10000 /* samples one list answers at most */

struct storage_sandbox_metric {
	char sandbox_id[STORAGE_SANDBOX_ID_LEN + 1];
	int64_t at; /* ms since the epoch */
	int32_t cpu_count;
	double cpu_used_pct;			/* 0..100 * cpu_count */
	int64_t mem_used, mem_total, mem_cache; /* bytes */
	int64_t disk_used, disk_total;		/* bytes */
};

/* Stores one sample (a second one with the same sandbox and time is
 * ignored). INVALID for a bad id or a negative figure. */
int storage__sandbox_metric_insert(struct storage_pool *pool,
				   const struct storage_sandbox_metric *sample,
				   struct storage_error *err);
/* Samples of team_id's sandbox taken in [start_ms, end_ms], oldest first,
 * at most STORAGE_METRICS_LIST_MAX (*out malloc'ed, NULL when none). */
int storage__sandbox_metrics_list(struct storage_pool *pool, const char *team_id,
				  const char *sandbox_id, int64_t start_ms, int64_t end_ms,
				  struct storage_sandbox_metric **out, size_t *count,
				  struct storage_error *err);
/* The newest sample of each of ids (count 1..100) that is a live sandbox
 * of team_id; ids without a sample are left out. */
int storage__sandbox_metrics_latest(struct storage_pool *pool, const char *team_id,
				    const char *const *ids, size_t id_count,
				    struct storage_sandbox_metric **out, size_t *count,
				    struct storage_error *err);
/* Live sandboxes of every team by state (starting, running, paused,
 * killing; the others stay 0), for the daemons' Prometheus gauges. */
int storage__sandbox_count_by_state(struct storage_pool *pool,
				    int64_t counts[STORAGE_SANDBOX_STATE_COUNT],
				    struct storage_error *err);
/* Deletes samples older than keep_s seconds; *deleted (may be NULL). */
int storage__sandbox_metrics_prune(struct storage_pool *pool, int64_t keep_s, int64_t *deleted,
				   struct storage_error *err);

/* ---- sandbox logs ---- */

#define STORAGE_LOG_LINE_MAX  4096 /* bytes of one message */
#define STORAGE_LOGS_LIST_MAX 1000

struct storage_log_line {
	int64_t at;	 /* ms since the epoch */
	char level[8];	 /* debug | info | warn | error */
	char source[16]; /* console | lifecycle (read only) */
	char *message;	 /* owned by the list (storage__sandbox_logs_free) */
};

/* Appends count lines (message <= STORAGE_LOG_LINE_MAX bytes; bytes that
 * are not UTF-8 become '?') of a sandbox. Not rerun after a lost
 * connection (it would append twice): UNAVAILABLE. */
int storage__sandbox_logs_append(struct storage_pool *pool, const char *sandbox_id,
				 const struct storage_log_line *lines, size_t count,
				 struct storage_error *err);

struct storage_logs_query {
	int64_t cursor_ms; /* forward: lines at or after it; backward: at or before */
	bool forward;
	int limit;	       /* 1..STORAGE_LOGS_LIST_MAX */
	const char *min_level; /* NULL: debug */
	const char *search;    /* NULL: any; else a case-sensitive substring */
};

/* The lines of team_id's sandbox (any state): its console lines and
 * lifecycle lines ("sandbox running -> killed") from its state changes,
 * in time order (newest first when backward). Free with
 * storage__sandbox_logs_free. INVALID for a bad level or limit. */
int storage__sandbox_logs_list(struct storage_pool *pool, const char *team_id,
			       const char *sandbox_id, const struct storage_logs_query *query,
			       struct storage_log_line **out, size_t *count,
			       struct storage_error *err);
void storage__sandbox_logs_free(struct storage_log_line *lines, size_t count);
/* Deletes the lines of sandboxes that ended more than keep_s ago. */
int storage__sandbox_logs_prune(struct storage_pool *pool, int64_t keep_s, int64_t *deleted,
				struct storage_error *err);

/* ---- requests (idempotency) ---- */

enum storage_request_status {
	STORAGE_REQUEST_PENDING = 0,
	STORAGE_REQUEST_DONE,
	STORAGE_REQUEST_FAILED
};

struct storage_request {
	char request_id[STORAGE_UUID_LEN + 1];
	char team_id[STORAGE_UUID_LEN + 1];
	char type[65];
	char sandbox_id[STORAGE_SANDBOX_ID_LEN + 1]; /* "" when none */
	enum storage_request_status status;
	json_t *result; /* owned, NULL while pending */
	int64_t created_at, finished_at;
};

void storage__request_clear(struct storage_request *request);

/* Records a pending request, or returns the known one (*created false).
 * A request_id of another team is DUPLICATE. sandbox_id may be NULL. */
int storage__request_begin(struct storage_pool *pool, const char *request_id, const char *team_id,
			   const char *type, const char *sandbox_id, bool *created,
			   struct storage_request *out, struct storage_error *err);
/* Finishes a pending request (status DONE or FAILED) with a result
 * object. CONFLICT when it is already finished, NOT_FOUND when unknown. */
int storage__request_finish(struct storage_pool *pool, const char *request_id,
			    enum storage_request_status status, const json_t *result,
			    struct storage_error *err);
/* The same, and at its commit event (may be NULL: then none; an event of
 * STORAGE_NOTIFY_PAYLOAD_MAX bytes or more is not sent either) goes to the
 * listeners of STORAGE_RESULTS_CHANNEL (storage__listener_*): the outcome
 * reaches a waiting API before the result event's trip through Kafka.
 * Nothing is sent when the request was already finished. */
int storage__request_finish_notify(struct storage_pool *pool, const char *request_id,
				   enum storage_request_status status, const json_t *result,
				   const char *event, struct storage_error *err);
int storage__request_get(struct storage_pool *pool, const char *request_id,
			 struct storage_request *out, struct storage_error *err);

/* ---- notifications (LISTEN/NOTIFY, docs/schema.md "Notifications") ---- */

#define STORAGE_RESULTS_CHANNEL	   "warren_results"
#define STORAGE_NOTIFY_PAYLOAD_MAX 7999 /* PostgreSQL: payloads < 8000 bytes */

/* One connection of its own that LISTENs on a channel. Not thread-safe:
 * one thread opens, waits on its descriptor, drains and closes it. */
struct storage_listener;
typedef void (*storage_notify_fn)(const char *payload, void *opaque);

/* Connects and LISTENs on channel (an identifier); NULL with err set. */
struct storage_listener *storage__listener_open(const struct storage_settings *settings,
						const char *channel, struct storage_error *err);
/* The socket to poll() for input. */
int storage__listener_fd(const struct storage_listener *listener);
/* Reads what the server sent and calls fn for each notification, in
 * order. The count, or -1 when the connection is gone (close, reopen). */
int storage__listener_drain(struct storage_listener *listener, storage_notify_fn fn, void *opaque);
void storage__listener_close(struct storage_listener *listener);

/* ---- rate-limit state (generic; the limiter lives elsewhere) ---- */

/* Loads the state of key: *found false (and *tat_ms 0) when none. */
int storage__rate_limit_load(struct storage_pool *pool, const char *key, bool *found,
			     int64_t *tat_ms, struct storage_error *err);
/* Compare-and-set: stores new_tat_ms when the key's state is still
 * expected_tat_ms (or absent when expected_found is false); CONFLICT when
 * another writer got there first (reload and retry). */
int storage__rate_limit_store(struct storage_pool *pool, const char *key, bool expected_found,
			      int64_t expected_tat_ms, int64_t new_tat_ms,
			      struct storage_error *err);
/* Counts one rejection of limit_name ([a-z_]{1,64}) for team_id in the
 * current minute (admin view admin_rate_limit_rejections). */
int storage__rate_limit_record_rejection(struct storage_pool *pool, const char *team_id,
					 const char *limit_name, struct storage_error *err);

/* ---- admin views (docs/admin.md) ---- */

struct storage_admin_running {
	char team[STORAGE_TEAM_NAME_MAX + 1];
	enum storage_tier tier;
	int32_t limit, starting, running, paused;
};
int storage__admin_running(struct storage_pool *pool, struct storage_admin_running **out,
			   size_t *count, struct storage_error *err);

struct storage_admin_rejections {
	int64_t minute;
	char team[STORAGE_TEAM_NAME_MAX + 1];
	char limit_name[65];
	int64_t rejections;
};
/* Rejections of the last `minutes` minutes, newest first. */
int storage__admin_rejections(struct storage_pool *pool, int minutes,
			      struct storage_admin_rejections **out, size_t *count,
			      struct storage_error *err);

#endif

/* storage internals: the prepared-statement table, the pooled executor and
 * row decoding helpers shared by the storage/ source files. Not a public API. */
#ifndef WARREN_STORAGE_INTERNAL_H
#define WARREN_STORAGE_INTERNAL_H

#include <libpq-fe.h>

#include "warren/storage.h"

/* A new connection with settings' url, password, sslmode and sslrootcert
 * (connect_timeout_s: libpq's connect_timeout, NULL: none). Never NULL;
 * the caller checks PQstatus and PQfinishes it. */
PGconn *storage__connect_with(const struct storage_settings *settings,
			      const char *connect_timeout_s);

enum storage_statement_id {
	STMT_TEAM_CREATE,
	STMT_TEAM_GET,
	STMT_TEAM_GET_BY_NAME,
	STMT_TEAM_LIST,
	STMT_TEAM_SET_TIER,
	STMT_TEAM_SET_LIMIT,
	STMT_API_KEY_CREATE,
	STMT_API_KEY_AUTHENTICATE,
	STMT_API_KEY_REVOKE,
	STMT_API_KEY_REVOKE_BY_HASH,
	STMT_API_KEY_LIST,
	STMT_TEMPLATE_UPSERT,
	STMT_TEMPLATE_GET,
	STMT_TEMPLATE_GET_FOR_TEAM,
	STMT_TEMPLATE_LIST,
	STMT_HOST_HEARTBEAT,
	STMT_HOST_LIST,
	STMT_HOST_DECLARE_LOST,
	STMT_HOST_HEARTBEAT_WAS,
	STMT_HOST_SET_DRAIN,
	STMT_SANDBOX_ADMIT,
	STMT_SANDBOX_GET,
	STMT_SANDBOX_GET_INTERNAL,
	STMT_SANDBOX_TRANSITION,
	STMT_SANDBOX_SET_TIMEOUT,
	STMT_SANDBOX_SET_LIFECYCLE,
	STMT_SANDBOX_LIST,
	STMT_SANDBOX_COUNT_ACTIVE,
	STMT_SANDBOX_LIST_BY_HOST,
	STMT_SANDBOX_LIST_EXPIRED,
	STMT_EVENT_APPEND,
	STMT_EVENT_LIST,
	STMT_REQUEST_BEGIN,
	STMT_REQUEST_FINISH,
	STMT_REQUEST_FINISH_NOTIFY,
	STMT_REQUEST_GET,
	STMT_RATE_LIMIT_LOAD,
	STMT_RATE_LIMIT_INSERT,
	STMT_RATE_LIMIT_UPDATE,
	STMT_RATE_LIMIT_REJECTION,
	STMT_ADMIN_RUNNING,
	STMT_ADMIN_REJECTIONS,
	STMT_PING,
	STMT_METRICS_INSERT,
	STMT_METRICS_LIST,
	STMT_METRICS_LATEST,
	STMT_METRICS_PRUNE,
	STMT_SANDBOX_COUNT_BY_STATE,
	STMT_LOGS_APPEND,
	STMT_LOGS_LIST,
	STMT_LOGS_PRUNE,
	STMT_SANDBOX_SET_NETWORK,
	STMT_COUNT
};

struct storage_statement {
	const char *name;
	const char *sql;
	int param_count;
	/* true when running it twice is harmless (reads, idempotent or
	 * compare-and-set writes): after a lost connection the pool reconnects
	 * and runs it once more. */
	bool retry_safe;
};

extern const struct storage_statement storage_statements[STMT_COUNT];

/* Runs a prepared statement on a pooled connection (preparing it on that
 * connection first if needed; reconnecting once after a lost connection,
 * and rerunning the statement when it is retry_safe). Returns a result with
 * PGRES_TUPLES_OK / PGRES_COMMAND_OK (caller PQclears it), or NULL with err
 * filled. params[i] NULL is SQL NULL. */
PGresult *storage__run(struct storage_pool *pool, enum storage_statement_id id,
		       const char *const *params, struct storage_error *err);

/* Runs one SQL text with parameters (unprepared; for the rooms' own
 * statement files that keep the shared table above small). Not retried
 * after a lost connection. Same result contract as storage__run. */
PGresult *storage__run_sql(struct storage_pool *pool, const char *sql, int param_count,
			   const char *const *params, struct storage_error *err);

/* Fills err (may be NULL) and returns code. printf-style message. */
int storage__fail(struct storage_error *err, enum storage_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Fills err from a failed libpq result (SQLSTATE mapped, message kept). */
int storage__fail_result(struct storage_error *err, const PGresult *result, PGconn *conn);
/* Clears err to STORAGE_OK. */
void storage__ok(struct storage_error *err);

/* storage__run discarding the result: the status code. */
int storage__run_exec(struct storage_pool *pool, enum storage_statement_id id,
		      const char *const *params, struct storage_error *err);
/* storage__run expecting exactly one row: NOT_FOUND ("<what> not found")
 * when there is none. *result is set only on STORAGE_OK. */
int storage__run_row(struct storage_pool *pool, enum storage_statement_id id,
		     const char *const *params, PGresult **result, const char *what,
		     struct storage_error *err);
/* storage__run decoding every row into a new array of elem_size items
 * (caller frees *out; NULL when empty). */
/* Runs a prune statement whose one parameter is keep_s (seconds, >= 0);
 * *deleted (may be NULL) gets the rows it removed. A storage status. */
int storage__run_prune(struct storage_pool *pool, enum storage_statement_id statement,
		       int64_t keep_s, int64_t *deleted, struct storage_error *err);
int storage__run_list(struct storage_pool *pool, enum storage_statement_id id,
		      const char *const *params, size_t elem_size,
		      void (*decode)(const PGresult *result, int row, void *item), void **out,
		      size_t *count, struct storage_error *err);

/* Runs sql (one row expected: a count or a sum) and reads its first count
 * columns as integers into out: 0 for NULL, when no row came back, or on
 * an error.
 * STORAGE_OK or the error's code. */
int storage__query_ints(struct storage_pool *pool, const char *sql, int param_count,
			const char *const *params, int64_t *out, int count,
			struct storage_error *err);

/* Row decoding: NULL columns give "" / fallback / NULL. */
void storage__text(const PGresult *result, int row, int column, char *out, size_t size);
int64_t storage__int(const PGresult *result, int row, int column, int64_t fallback);
bool storage__bool(const PGresult *result, int row, int column);
/* A jsonb column parsed with jansson (new reference), NULL when SQL NULL
 * or unparsable. */
json_t *storage__json(const PGresult *result, int row, int column);

/* "to_ms(x)" in SQL: a timestamptz as integer milliseconds since the epoch. */
#define STORAGE_SQL_MS(column) "floor(extract(epoch from " column ") * 1000)::int8"

#endif

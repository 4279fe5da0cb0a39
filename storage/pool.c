/* storage pool: a fixed set of libpq connections shared by threads.
 * Checkout waits for a free connection; every statement is prepared once
 * per connection (lazily, the first time that connection runs it); a lost
 * connection (server restart, pg_terminate_backend) is reset and the
 * statement rerun once when that is safe (storage_statement.retry_safe). */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "warren/check.h"
#include "warren/clock.h"
#include "warren/log.h"

struct storage_connection {
	PGconn *conn;
	bool busy;
	bool prepared[STMT_COUNT];
};

struct storage_pool {
	char *url;
	int size;
	int64_t checkout_timeout_ms;
	struct storage_connection *connections;
	pthread_mutex_t lock;
	pthread_cond_t available;
};

void storage__ok(struct storage_error *err)
{
	if (!err)
		return;
	err->code = STORAGE_OK;
	err->sqlstate[0] = '\0';
	err->message[0] = '\0';
}

int storage__fail(struct storage_error *err, enum storage_status code, const char *fmt, ...)
{
	va_list ap;

	CHECK(code != STORAGE_OK); /* a failure must never read as success */
	if (!err)
		return code;
	err->code = code;
	err->sqlstate[0] = '\0';
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return code;
}

int storage__fail_result(struct storage_error *err, const PGresult *result, PGconn *conn)
{
	const char *sqlstate = result ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : NULL;
	const char *primary = result ? PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *detail = result ? PQresultErrorField(result, PG_DIAG_MESSAGE_DETAIL) : NULL;
	enum storage_status code = storage__status_from_sqlstate(sqlstate);
	char message[sizeof(err->message)];
	size_t len;

	if (primary)
		snprintf(message, sizeof(message), "%s%s%s", primary, detail ? ": " : "",
			 detail ? detail : "");
	else
		snprintf(message, sizeof(message), "%s", conn ? PQerrorMessage(conn) : "no result");
	len = strlen(message);
	while (len && (message[len - 1] == '\n' || message[len - 1] == ' '))
		message[--len] = '\0';
	if (!err)
		return code;
	err->code = code;
	snprintf(err->sqlstate, sizeof(err->sqlstate), "%s", sqlstate ? sqlstate : "");
	memcpy(err->message, message, sizeof(err->message));
	return code;
}

PGconn *storage__connect_with(const struct storage_settings *settings,
			      const char *connect_timeout_s)
{
	const char *keywords[6], *values[6];
	int n = 0;

	/* dbname first: expanded from the url, then overridden by the rest. */
	keywords[n] = "dbname", values[n++] = settings->url;
	if (settings->password)
		keywords[n] = "password", values[n++] = settings->password;
	if (settings->ssl_mode)
		keywords[n] = "sslmode", values[n++] = settings->ssl_mode;
	if (settings->ssl_root_cert)
		keywords[n] = "sslrootcert", values[n++] = settings->ssl_root_cert;
	if (connect_timeout_s)
		keywords[n] = "connect_timeout", values[n++] = connect_timeout_s;
	keywords[n] = NULL, values[n] = NULL;
	return PQconnectdbParams(keywords, values, 1);
}

static PGconn *storage__connect(const struct storage_settings *settings, struct storage_error *err)
{
	PGconn *conn = storage__connect_with(settings, NULL);

	if (PQstatus(conn) != CONNECTION_OK) {
		storage__fail(err, STORAGE_ERR_UNAVAILABLE, "cannot connect to PostgreSQL: %s",
			      PQerrorMessage(conn));
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

struct storage_pool *storage__pool_open_settings(const struct storage_settings *settings,
						 struct storage_error *err)
{
	struct storage_pool *pool;
	int size = settings->pool_size;

	if (!settings->url || !*settings->url) {
		storage__fail(err, STORAGE_ERR_INVALID,
			      "no PostgreSQL url (set pg_url / WARREN_PG_URL)");
		return NULL;
	}
	if (size < 1 || size > 1024) {
		storage__fail(err, STORAGE_ERR_INVALID, "pool size %d out of 1..1024", size);
		return NULL;
	}
	pool = calloc(1, sizeof(*pool));
	if (!pool)
		goto nomem;
	pool->url = strdup(settings->url);
	pool->size = size;
	pool->checkout_timeout_ms = settings->checkout_timeout_ms;
	pool->connections = calloc((size_t)size, sizeof(*pool->connections));
	if (!pool->url || !pool->connections)
		goto nomem;
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->available, NULL);
	for (int i = 0; i < size; i++) {
		/* libpq keeps its own copy of the settings (PQreset reuses it) */
		pool->connections[i].conn = storage__connect(settings, err);
		if (!pool->connections[i].conn) {
			storage__pool_close(pool);
			return NULL;
		}
	}
	storage__ok(err);
	return pool;
nomem:
	if (pool) {
		free(pool->url);
		free(pool->connections);
		free(pool);
	}
	storage__fail(err, STORAGE_ERR_INTERNAL, "out of memory");
	return NULL;
}

struct storage_pool *storage__pool_open(const char *url, int size, struct storage_error *err)
{
	struct storage_settings settings;

	storage_settings__for_url(&settings, url, size);
	return storage__pool_open_settings(&settings, err);
}

void storage__pool_close(struct storage_pool *pool)
{
	if (!pool)
		return;
	for (int i = 0; i < pool->size; i++)
		if (pool->connections[i].conn)
			PQfinish(pool->connections[i].conn);
	pthread_mutex_destroy(&pool->lock);
	pthread_cond_destroy(&pool->available);
	free(pool->connections);
	free(pool->url);
	free(pool);
}

static struct storage_connection *storage__checkout(struct storage_pool *pool,
						    struct storage_error *err)
{
	struct storage_connection *found = NULL;
	struct timespec deadline;

	clock__timespec_after(CLOCK_REALTIME, (uint64_t)pool->checkout_timeout_ms * 1000000u,
			      &deadline);
	pthread_mutex_lock(&pool->lock);
	for (;;) {
		for (int i = 0; i < pool->size && !found; i++)
			if (!pool->connections[i].busy)
				found = &pool->connections[i];
		if (found) {
			found->busy = true;
			break;
		}
		if (pthread_cond_timedwait(&pool->available, &pool->lock, &deadline) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&pool->lock);
	if (!found)
		storage__fail(err, STORAGE_ERR_UNAVAILABLE,
			      "no free PostgreSQL connection within %lld ms (pool of %d)",
			      (long long)pool->checkout_timeout_ms, pool->size);
	return found;
}

static void storage__checkin(struct storage_pool *pool, struct storage_connection *connection)
{
	pthread_mutex_lock(&pool->lock);
	CHECK(connection->busy);
	connection->busy = false;
	pthread_cond_signal(&pool->available);
	pthread_mutex_unlock(&pool->lock);
}

/* Reconnects a broken connection; its prepared statements are gone. */
static bool storage__reset(struct storage_connection *connection)
{
	memset(connection->prepared, 0, sizeof(connection->prepared));
	PQreset(connection->conn);
	if (PQstatus(connection->conn) != CONNECTION_OK) {
		log_warn("storage: reconnect failed: %s", PQerrorMessage(connection->conn));
		return false;
	}
	log_info("storage: reconnected to PostgreSQL");
	return true;
}

PGresult *storage__run(struct storage_pool *pool, enum storage_statement_id id,
		       const char *const *params, struct storage_error *err)
{
	const struct storage_statement *statement = &storage_statements[id];
	struct storage_connection *connection;
	PGresult *result = NULL;
	ExecStatusType status;

	CHECK(id >= 0 && id < STMT_COUNT);
	connection = storage__checkout(pool, err);
	if (!connection)
		return NULL;
	for (int attempt = 0; attempt < 2; attempt++) {
		bool executed = false;

		if (PQstatus(connection->conn) != CONNECTION_OK && !storage__reset(connection)) {
			storage__fail(err, STORAGE_ERR_UNAVAILABLE, "PostgreSQL unavailable: %s",
				      PQerrorMessage(connection->conn));
			goto out;
		}
		if (!connection->prepared[id]) {
			result = PQprepare(connection->conn, statement->name, statement->sql,
					   statement->param_count, NULL);
			if (PQresultStatus(result) == PGRES_COMMAND_OK) {
				connection->prepared[id] = true;
				PQclear(result);
				result = NULL;
			}
		}
		if (connection->prepared[id]) {
			executed = true;
			result = PQexecPrepared(connection->conn, statement->name,
						statement->param_count, params, NULL, NULL, 0);
		}
		status = PQresultStatus(result);
		if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) {
			storage__ok(err);
			goto out;
		}
		/* A lost connection: reconnect, and run once more if a second
		 * run cannot double-apply (preparing alone is always safe). */
		if (PQstatus(connection->conn) == CONNECTION_BAD && attempt == 0 &&
		    (!executed || statement->retry_safe)) {
			log_warn("storage: connection lost during %s, retrying", statement->name);
			PQclear(result);
			result = NULL;
			continue;
		}
		storage__fail_result(err, result, connection->conn);
		if (PQstatus(connection->conn) == CONNECTION_BAD && err) {
			err->code = STORAGE_ERR_UNAVAILABLE;
			/* Reconnect now so the next caller finds a working one. */
			storage__reset(connection);
		}
		PQclear(result);
		result = NULL;
		goto out;
	}
out:
	storage__checkin(pool, connection);
	return result;
}

PGresult *storage__run_sql(struct storage_pool *pool, const char *sql, int param_count,
			   const char *const *params, struct storage_error *err)
{
	struct storage_connection *connection = storage__checkout(pool, err);
	PGresult *result = NULL;
	ExecStatusType status;

	if (!connection)
		return NULL;
	if (PQstatus(connection->conn) != CONNECTION_OK && !storage__reset(connection)) {
		storage__fail(err, STORAGE_ERR_UNAVAILABLE, "PostgreSQL unavailable: %s",
			      PQerrorMessage(connection->conn));
		goto out;
	}
	result = PQexecParams(connection->conn, sql, param_count, NULL, params, NULL, NULL, 0);
	status = PQresultStatus(result);
	if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) {
		storage__ok(err);
		goto out;
	}
	storage__fail_result(err, result, connection->conn);
	if (PQstatus(connection->conn) == CONNECTION_BAD && err) {
		err->code = STORAGE_ERR_UNAVAILABLE;
		storage__reset(connection);
	}
	PQclear(result);
	result = NULL;
out:
	storage__checkin(pool, connection);
	return result;
}

/* ---- row decoding ---- */

void storage__text(const PGresult *result, int row, int column, char *out, size_t size)
{
	const char *value;

	if (!size)
		return;
	if (PQgetisnull(result, row, column)) {
		out[0] = '\0';
		return;
	}
	value = PQgetvalue(result, row, column);
	snprintf(out, size, "%s", value);
}

int64_t storage__int(const PGresult *result, int row, int column, int64_t fallback)
{
	const char *value;
	char *end;
	long long parsed;

	if (PQgetisnull(result, row, column))
		return fallback;
	value = PQgetvalue(result, row, column);
	errno = 0;
	parsed = strtoll(value, &end, 10);
	if (errno || end == value || *end)
		return fallback;
	return parsed;
}

int storage__query_ints(struct storage_pool *pool, const char *sql, int param_count,
			const char *const *params, int64_t *out, int count,
			struct storage_error *err)
{
	PGresult *result = storage__run_sql(pool, sql, param_count, params, err);
	bool have_row;

	for (int i = 0; i < count; i++)
		out[i] = 0;
	if (!result)
		return err ? err->code : STORAGE_ERR_INTERNAL;
	have_row = PQntuples(result) > 0;
	for (int i = 0; i < count; i++)
		out[i] = have_row ? storage__int(result, 0, i, 0) : 0;
	PQclear(result);
	return STORAGE_OK;
}

bool storage__bool(const PGresult *result, int row, int column)
{
	return !PQgetisnull(result, row, column) && PQgetvalue(result, row, column)[0] == 't';
}

json_t *storage__json(const PGresult *result, int row, int column)
{
	if (PQgetisnull(result, row, column))
		return NULL;
	return json_loads(PQgetvalue(result, row, column), JSON_DECODE_ANY, NULL);
}

int storage__run_row(struct storage_pool *pool, enum storage_statement_id id,
		     const char *const *params, PGresult **result, const char *what,
		     struct storage_error *err)
{
	struct storage_error local;
	PGresult *res;

	if (!err)
		err = &local;
	res = storage__run(pool, id, params, err);
	if (!res)
		return err->code;
	if (PQntuples(res) < 1) {
		PQclear(res);
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "%s not found", what);
	}
	*result = res;
	return STORAGE_OK;
}

int storage__run_list(struct storage_pool *pool, enum storage_statement_id id,
		      const char *const *params, size_t elem_size,
		      void (*decode)(const PGresult *result, int row, void *item), void **out,
		      size_t *count, struct storage_error *err)
{
	struct storage_error local;
	PGresult *res;
	char *items = NULL;
	int rows;

	if (!err)
		err = &local;
	res = storage__run(pool, id, params, err);
	if (!res)
		return err->code;
	rows = PQntuples(res);
	if (rows > 0) {
		items = calloc((size_t)rows, elem_size);
		if (!items) {
			PQclear(res);
			return storage__fail(err, STORAGE_ERR_INTERNAL, "out of memory");
		}
		for (int i = 0; i < rows; i++)
			decode(res, i, items + (size_t)i * elem_size);
	}
	PQclear(res);
	*out = items;
	*count = (size_t)rows;
	return STORAGE_OK;
}

int storage__run_exec(struct storage_pool *pool, enum storage_statement_id id,
		      const char *const *params, struct storage_error *err)
{
	struct storage_error local;
	PGresult *res;

	if (!err)
		err = &local;
	res = storage__run(pool, id, params, err);
	if (!res)
		return err->code;
	PQclear(res);
	return STORAGE_OK;
}

int storage__ping(struct storage_pool *pool, struct storage_error *err)
{
	PGresult *result = NULL;
	int rc = storage__run_row(pool, STMT_PING, NULL, &result, "ping", err);

	PQclear(result);
	return rc;
}

int storage__run_prune(struct storage_pool *pool, enum storage_statement_id statement,
		       int64_t keep_s, int64_t *deleted, struct storage_error *err)
{
	char keep[24];
	const char *params[] = {keep};
	struct storage_error local;
	PGresult *result;

	if (!err)
		err = &local;
	if (keep_s < 0)
		return storage__fail(err, STORAGE_ERR_INVALID, "keep_s must be >= 0");
	snprintf(keep, sizeof(keep), "%lld", (long long)keep_s);
	result = storage__run(pool, statement, params, err);
	if (!result)
		return err->code;
	if (deleted)
		*deleted = strtoll(PQcmdTuples(result), NULL, 10);
	PQclear(result);
	return STORAGE_OK;
}

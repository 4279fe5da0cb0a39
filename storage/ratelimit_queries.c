/* storage_ratelimit: the lease, give-back and rejection statements of the
 * shared GCRA limiter (docs/ratelimit.md). Own connections, prepared once
 * each; a lost connection is reset and the statement rerun once when it is
 * safe to (the give-back is a compare-and-set; the lease is NOT rerun: a
 * lost answer may have reserved tokens, which can only under-admit). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "warren/check.h"
#include "warren/clock.h"
#include "warren/ids.h"
#include "warren/storage_ratelimit.h"

#define RATELIMIT_CONNECTIONS_MAX 16
#define RATELIMIT_KEY_PREFIX	  "gcra-us:"

/* GCRA lease (docs/ratelimit.md, "Lease"): the row is locked FOR UPDATE
 * (READ COMMITTED re-reads the newest version after a wait), tokens are
 * counted against the server's clock, and the new tat written. */
static const char ratelimit_sql_lease[] =
    "WITH clock AS (SELECT floor(extract(epoch FROM clock_timestamp()) * 1000000)::int8 AS now_us),"
    " current_row AS (SELECT r.key, greatest(r.tat_ms, c.now_us + $5::int8) AS first_us, c.now_us"
    "  FROM rate_limits r, clock c WHERE r.key = $1 FOR UPDATE OF r),"
    " decided AS (SELECT key, first_us, now_us,"
    "  CASE WHEN first_us - $4::int8 > now_us THEN 0::int8"
    "  ELSE least($2::int8, (now_us + $4::int8 - first_us) / $3::int8 + 1) END AS granted"
    "  FROM current_row)"
    " UPDATE rate_limits r SET tat_ms = d.first_us + d.granted * $3::int8, updated_at = now()"
    " FROM decided d WHERE r.key = d.key"
    " RETURNING d.granted, d.first_us, r.tat_ms, d.now_us";
static const char ratelimit_sql_create[] =
    "INSERT INTO rate_limits (key, tat_ms) VALUES ($1, 0) ON CONFLICT (key) DO NOTHING";
static const char ratelimit_sql_give_back[] =
    "UPDATE rate_limits SET tat_ms = tat_ms - $2::int8 * $3::int8, updated_at = now()"
    " WHERE key = $1 AND tat_ms = $4::int8 RETURNING tat_ms";
static const char ratelimit_sql_rejections[] =
    "INSERT INTO rate_limit_rejections (team_id, limit_name, minute, count)"
    " VALUES ($1::uuid, $2, date_trunc('minute', now()), $3::int8)"
    " ON CONFLICT (team_id, limit_name, minute)"
    " DO UPDATE SET count = rate_limit_rejections.count + EXCLUDED.count";

static const struct {
	const char *name;
	const char *sql;
	int params;
} ratelimit_statements[] = {
    {"ratelimit_lease", ratelimit_sql_lease, 5},
    {"ratelimit_create", ratelimit_sql_create, 1},
    {"ratelimit_give_back", ratelimit_sql_give_back, 4},
    {"ratelimit_rejections", ratelimit_sql_rejections, 3},
};
enum { SQL_LEASE, SQL_CREATE, SQL_GIVE_BACK, SQL_REJECTIONS, SQL_COUNT };

struct ratelimit_connection {
	pthread_mutex_t lock;
	PGconn *conn;
	bool prepared;
	int64_t next_reconnect_ms; /* after a failed reconnect: fail fast until then */
};

/* A limiter must never hold a request for long: connections time out
 * after 2 s, and a failed reconnect is retried at most once a second. */
#define RATELIMIT_CONNECT_TIMEOUT "2"
#define RATELIMIT_RECONNECT_MS	  1000

struct storage_ratelimit {
	int count;
	unsigned next;
	struct ratelimit_connection connections[RATELIMIT_CONNECTIONS_MAX];
};

static bool ratelimit__prepare(struct ratelimit_connection *c, struct storage_error *err)
{
	for (int i = 0; i < SQL_COUNT; i++) {
		PGresult *result =
		    PQprepare(c->conn, ratelimit_statements[i].name, ratelimit_statements[i].sql,
			      ratelimit_statements[i].params, NULL);

		if (PQresultStatus(result) != PGRES_COMMAND_OK) {
			storage__fail_result(err, result, c->conn);
			PQclear(result);
			return false;
		}
		PQclear(result);
	}
	c->prepared = true;
	return true;
}

struct storage_ratelimit *storage_ratelimit__open(const struct storage_settings *settings,
						  int connections, bool connect_later,
						  struct storage_error *err)
{
	struct storage_ratelimit *store;

	if (!settings->url || connections < 1 || connections > RATELIMIT_CONNECTIONS_MAX) {
		storage__fail(err, STORAGE_ERR_INVALID, "url and 1..%d connections required",
			      RATELIMIT_CONNECTIONS_MAX);
		return NULL;
	}
	store = calloc(1, sizeof(*store));
	if (!store) {
		storage__fail(err, STORAGE_ERR_INTERNAL, "out of memory");
		return NULL;
	}
	for (int i = 0; i < connections; i++) {
		struct ratelimit_connection *c = &store->connections[i];

		pthread_mutex_init(&c->lock, NULL);
		store->count = i + 1;
		c->conn = storage__connect_with(settings, RATELIMIT_CONNECT_TIMEOUT);
		if (!c->conn) {
			storage__fail(err, STORAGE_ERR_INTERNAL, "out of memory");
			goto err;
		}
		if (PQstatus(c->conn) != CONNECTION_OK && connect_later) {
			c->next_reconnect_ms = 0; /* the first statement tries again */
			continue;
		}
		if (PQstatus(c->conn) != CONNECTION_OK) {
			storage__fail(err, STORAGE_ERR_UNAVAILABLE, "rate limit store: %s",
				      PQerrorMessage(c->conn));
			goto err;
		}
		if (!ratelimit__prepare(c, err))
			goto err;
	}
	storage__ok(err);
	return store;
err:
	storage_ratelimit__close(store);
	return NULL;
}

void storage_ratelimit__close(struct storage_ratelimit *store)
{
	if (!store)
		return;
	for (int i = 0; i < store->count; i++) {
		PQfinish(store->connections[i].conn);
		pthread_mutex_destroy(&store->connections[i].lock);
	}
	free(store);
}

/* A locked connection: a free one if any, else round robin (waits). */
static struct ratelimit_connection *ratelimit__checkout(struct storage_ratelimit *store)
{
	unsigned start = __atomic_fetch_add(&store->next, 1, __ATOMIC_RELAXED);
	struct ratelimit_connection *c;

	CHECK(store->count >= 1 && store->count <= RATELIMIT_CONNECTIONS_MAX);
	for (int i = 0; i < store->count; i++) {
		c = &store->connections[(start + i) % store->count];
		if (pthread_mutex_trylock(&c->lock) == 0)
			return c;
	}
	c = &store->connections[start % store->count];
	pthread_mutex_lock(&c->lock);
	return c;
}

/* Runs statement id on a checked-out connection. A broken connection is
 * reset (and re-prepared); the statement is rerun only when retry_safe. */
static PGresult *ratelimit__run(struct storage_ratelimit *store, int id, const char *const *params,
				bool retry_safe, struct storage_error *err)
{
	struct ratelimit_connection *c;
	PGresult *result = NULL;
	ExecStatusType status;

	CHECK(id >= 0 && id < SQL_COUNT);
	c = ratelimit__checkout(store);

	for (int attempt = 0; attempt < 2; attempt++) {
		if (PQstatus(c->conn) != CONNECTION_OK || !c->prepared) {
			if (clock__monotonic_ms() < (uint64_t)c->next_reconnect_ms) {
				storage__fail(err, STORAGE_ERR_UNAVAILABLE,
					      "rate limit store: PostgreSQL unreachable");
				break;
			}
			PQreset(c->conn);
			c->prepared = false;
			if (PQstatus(c->conn) != CONNECTION_OK) {
				c->next_reconnect_ms =
				    (int64_t)clock__monotonic_ms() + RATELIMIT_RECONNECT_MS;
				storage__fail(err, STORAGE_ERR_UNAVAILABLE, "rate limit store: %s",
					      PQerrorMessage(c->conn));
				break;
			}
			if (!ratelimit__prepare(c, err))
				break;
		}
		result = PQexecPrepared(c->conn, ratelimit_statements[id].name,
					ratelimit_statements[id].params, params, NULL, NULL, 0);
		status = PQresultStatus(result);
		if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK)
			break;
		storage__fail_result(err, result, c->conn);
		PQclear(result);
		result = NULL;
		if (PQstatus(c->conn) == CONNECTION_OK || !retry_safe)
			break;
	}
	pthread_mutex_unlock(&c->lock);
	if (result)
		storage__ok(err);
	return result;
}

static bool ratelimit__key(const char *key, char *out, size_t size, struct storage_error *err)
{
	size_t len = key ? strlen(key) : 0;

	if (len < 1 || len + sizeof(RATELIMIT_KEY_PREFIX) > 256) {
		storage__fail(err, STORAGE_ERR_INVALID, "rate limit key must be 1..%zu bytes",
			      256 - sizeof(RATELIMIT_KEY_PREFIX));
		return false;
	}
	snprintf(out, size, RATELIMIT_KEY_PREFIX "%s", key);
	return true;
}

int storage_ratelimit__lease(struct storage_ratelimit *store, const char *key, int64_t want,
			     int64_t interval_us, int64_t tau_us, int64_t lead_us,
			     struct storage_ratelimit_grant *out, struct storage_error *err)
{
	char stored_key[300], want_text[24], interval_text[24], tau_text[24], lead_text[24];
	const char *params[] = {stored_key, want_text, interval_text, tau_text, lead_text};
	PGresult *result;

	if (!ratelimit__key(key, stored_key, sizeof(stored_key), err))
		return err ? err->code : STORAGE_ERR_INVALID;
	if (want < 1 || interval_us < 1 || tau_us < 0 || lead_us < 0 || lead_us > tau_us)
		return storage__fail(err, STORAGE_ERR_INVALID,
				     "want, interval >= 1, 0 <= lead <= tau required");
	snprintf(want_text, sizeof(want_text), "%lld", (long long)want);
	snprintf(interval_text, sizeof(interval_text), "%lld", (long long)interval_us);
	snprintf(tau_text, sizeof(tau_text), "%lld", (long long)tau_us);
	snprintf(lead_text, sizeof(lead_text), "%lld", (long long)lead_us);
	for (int attempt = 0; attempt < 2; attempt++) {
		result = ratelimit__run(store, SQL_LEASE, params, false, err);
		if (!result)
			return err ? err->code : STORAGE_ERR_UNAVAILABLE;
		if (PQntuples(result) == 1) {
			out->granted = storage__int(result, 0, 0, 0);
			out->first_us = storage__int(result, 0, 1, 0);
			out->tat_us = storage__int(result, 0, 2, 0);
			out->now_us = storage__int(result, 0, 3, 0);
			PQclear(result);
			return STORAGE_OK;
		}
		PQclear(result);
		/* First use of the key: create it (idempotent) and lease again. */
		result = ratelimit__run(store, SQL_CREATE, params, true, err);
		if (!result)
			return err ? err->code : STORAGE_ERR_UNAVAILABLE;
		PQclear(result);
	}
	return storage__fail(err, STORAGE_ERR_INTERNAL, "rate limit key %s vanished", key);
}

int storage_ratelimit__give_back(struct storage_ratelimit *store, const char *key, int64_t count,
				 int64_t interval_us, int64_t tat_us, bool *returned,
				 struct storage_error *err)
{
	char stored_key[300], count_text[24], interval_text[24], tat_text[24];
	const char *params[] = {stored_key, count_text, interval_text, tat_text};
	PGresult *result;

	*returned = false;
	if (!ratelimit__key(key, stored_key, sizeof(stored_key), err))
		return err ? err->code : STORAGE_ERR_INVALID;
	if (count < 1 || interval_us < 1)
		return storage__fail(err, STORAGE_ERR_INVALID, "count, interval >= 1");
	snprintf(count_text, sizeof(count_text), "%lld", (long long)count);
	snprintf(interval_text, sizeof(interval_text), "%lld", (long long)interval_us);
	snprintf(tat_text, sizeof(tat_text), "%lld", (long long)tat_us);
	result = ratelimit__run(store, SQL_GIVE_BACK, params, true, err);
	if (!result)
		return err ? err->code : STORAGE_ERR_UNAVAILABLE;
	*returned = PQntuples(result) == 1;
	PQclear(result);
	return STORAGE_OK;
}

int storage_ratelimit__record_rejections(struct storage_ratelimit *store, const char *team_id,
					 const char *limit_name, int64_t count,
					 struct storage_error *err)
{
	char count_text[24];
	const char *params[] = {team_id, limit_name, count_text};
	PGresult *result;

	if (!ids__is_uuid(team_id))
		return storage__fail(err, STORAGE_ERR_NOT_FOUND_REF, "team not found");
	if (!limit_name || count < 1)
		return storage__fail(err, STORAGE_ERR_INVALID,
				     "limit name and count >= 1 required");
	snprintf(count_text, sizeof(count_text), "%lld", (long long)count);
	result = ratelimit__run(store, SQL_REJECTIONS, params, false, err);
	if (!result)
		return err ? err->code : STORAGE_ERR_UNAVAILABLE;
	PQclear(result);
	return STORAGE_OK;
}

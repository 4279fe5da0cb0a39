/* storage_ratelimit: the SQL of the shared GCRA limiter (lib/ratelimit,
 * docs/ratelimit.md) over the rate_limits table of migrations/0001_initial.sql.
 * Keys are stored as "gcra-us:<key>" and their tat_ms column holds a
 * theoretical arrival time in MICROseconds of the PostgreSQL server's
 * clock (the column is documented as "any single-number state").
 *
 * storage_ratelimit__open_limiter opens a lib/ratelimit limiter on it
 * (the PostgreSQL backend, ratelimit_backend.c).
 *
 * It keeps its own small set of libpq connections, not the storage pool:
 * the limiter must never hold a request (docs/ratelimit.md, "Non-blocking
 * decisions"), and the pool waits up to pg_checkout_timeout_ms for a
 * connection, connects with libpq's default (no) connect timeout, opens
 * every connection at start and retries a lost one on every call. These
 * connections time out after 2 s, may start unconnected (connect_later)
 * and retry a failed reconnect at most once a second. Thread-safe. */
#ifndef WARREN_STORAGE_RATELIMIT_H
#define WARREN_STORAGE_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "warren/ratelimit.h"
#include "warren/storage.h"

struct storage_ratelimit;

/* What one lease statement did. Times are µs of the server's clock. */
struct storage_ratelimit_grant {
	int64_t granted;  /* 0..want slots reserved */
	int64_t first_us; /* slot of the first granted token: greatest(old tat, now + lead) */
	int64_t tat_us;	  /* the new theoretical arrival time */
	int64_t now_us;	  /* the server's clock_timestamp() in the statement */
};

/* Opens `connections` (1..16) connections as settings say (url, password,
 * TLS; pool_size is not used). NULL on error (err filled).
 * connect_later: a server that cannot be reached now is no error; each
 * connection is (re)tried by the statement that needs it (at most once a
 * second, 2 s connect timeout), which fails until then. */
struct storage_ratelimit *storage_ratelimit__open(const struct storage_settings *settings,
						  int connections, bool connect_later,
						  struct storage_error *err);
/* Closes every connection; no call may be in flight. */
void storage_ratelimit__close(struct storage_ratelimit *store);

/* One statement: reserves up to want (>= 1) tokens of the GCRA
 * (interval_us per token, tolerance tau_us) for key, as many as conform
 * at the server's now: first = greatest(tat, now + lead_us) (0 <= lead <=
 * tau), slot i = first + i*interval must be <= now + tau. Creates the key
 * on first use. */
int storage_ratelimit__lease(struct storage_ratelimit *store, const char *key, int64_t want,
			     int64_t interval_us, int64_t tau_us, int64_t lead_us,
			     struct storage_ratelimit_grant *out, struct storage_error *err);
/* Gives back the last `count` tokens of a lease whose end was tat_us, only
 * if nobody reserved after it (tat still == tat_us); *returned says
 * whether it did. Never over-admits: it only erases unspent tail slots. */
int storage_ratelimit__give_back(struct storage_ratelimit *store, const char *key, int64_t count,
				 int64_t interval_us, int64_t tat_us, bool *returned,
				 struct storage_error *err);
/* Adds count rejections of limit_name for team_id to the current minute
 * (admin view admin_rate_limit_rejections), in one statement. */
int storage_ratelimit__record_rejections(struct storage_ratelimit *store, const char *team_id,
					 const char *limit_name, int64_t count,
					 struct storage_error *err);

/* A lib/ratelimit limiter whose shared state is PostgreSQL at pg_url
 * (rate_limits table, server clock): storage_ratelimit__open with
 * options->connections (0 -> 2) and options->connect_later, as the
 * limiter's backend. options may be NULL. NULL on error (logged). Close
 * with ratelimit__close. */
struct ratelimit *storage_ratelimit__open_limiter(const char *pg_url,
						  const struct ratelimit_options *options);
/* The same, connecting as settings say (password, TLS). */
struct ratelimit *storage_ratelimit__open_limiter_settings(const struct storage_settings *settings,
							   const struct ratelimit_options *options);

#endif

/* storage ratelimit backend: the PostgreSQL backend of lib/ratelimit
 * (struct ratelimit_backend) over ratelimit_queries.c, and the limiter
 * opened on it. lib/ratelimit knows only the backend interface; the arrow
 * goes storage -> lib, never back (lib/README.md). */
#include "warren/log.h"
#include "warren/storage_ratelimit.h"

static int pg__lease(void *ctx, const char *key, int64_t want, int64_t interval_us, int64_t tau_us,
		     int64_t lead_us, struct ratelimit_grant *out)
{
	struct storage_ratelimit_grant grant;
	struct storage_error err;

	if (storage_ratelimit__lease(ctx, key, want, interval_us, tau_us, lead_us, &grant, &err)) {
		log_warn("ratelimit: lease %s: %s", key, err.message);
		return -1;
	}
	out->granted = grant.granted;
	out->first_us = grant.first_us;
	out->tat_us = grant.tat_us;
	out->now_us = grant.now_us;
	return 0;
}

static int pg__give_back(void *ctx, const char *key, int64_t count, int64_t interval_us,
			 int64_t tat_us, bool *returned)
{
	struct storage_error err;

	if (storage_ratelimit__give_back(ctx, key, count, interval_us, tat_us, returned, &err)) {
		log_warn("ratelimit: give back %s: %s", key, err.message);
		return -1;
	}
	return 0;
}

static int pg__record_rejections(void *ctx, const char *team_id, const char *limit_name,
				 int64_t count)
{
	struct storage_error err;

	if (storage_ratelimit__record_rejections(ctx, team_id, limit_name, count, &err)) {
		log_warn("ratelimit: rejections of %s: %s", team_id, err.message);
		return -1;
	}
	return 0;
}

static void pg__close(void *ctx)
{
	storage_ratelimit__close(ctx);
}

struct ratelimit *storage_ratelimit__open_limiter(const char *pg_url,
						  const struct ratelimit_options *options)
{
	struct storage_settings settings;

	storage_settings__for_url(&settings, pg_url, 1);
	return storage_ratelimit__open_limiter_settings(&settings, options);
}

struct ratelimit *storage_ratelimit__open_limiter_settings(const struct storage_settings *settings,
							   const struct ratelimit_options *options)
{
	struct ratelimit_backend backend = {pg__lease, pg__give_back, pg__record_rejections,
					    pg__close, NULL};
	struct storage_error err;
	struct ratelimit *limiter;
	int connections = options && options->connections > 0 ? options->connections : 2;

	backend.ctx =
	    storage_ratelimit__open(settings, connections, options && options->connect_later, &err);
	if (!backend.ctx) {
		log_error("ratelimit: %s", err.message);
		return NULL;
	}
	limiter = ratelimit__open_backend(&backend, options);
	if (!limiter)
		storage_ratelimit__close(backend.ctx);
	return limiter;
}

/* limiter: the proxy's per-IP limit over lib/ratelimit (see limiter.h). */
#include <stdio.h>
#include <stdlib.h>

#include "limiter.h"
#include "warren/log.h"
#include "warren/storage_ratelimit.h"

struct limiter {
	struct ratelimit *ratelimit;
	int64_t limit, window_ms;
};

struct limiter *limiter__create(const struct limiter_config *config)
{
	struct ratelimit_options options = {.monotonic_us = config->monotonic_us,
					    .clock_ctx = config->clock_ctx,
					    .connect_later = true};
	struct storage_settings pg;
	struct limiter *limiter;

	if (config->limit < 1 || config->window_s < 1)
		return NULL;
	limiter = calloc(1, sizeof(*limiter));
	if (!limiter)
		return NULL;
	limiter->limit = config->limit;
	limiter->window_ms = config->window_s * 1000;
	if (config->pg_url) {
		if (config->pg)
			pg = *config->pg;
		else
			storage_settings__for_url(&pg, config->pg_url, 1);
		pg.url = config->pg_url;
		limiter->ratelimit = storage_ratelimit__open_limiter_settings(&pg, &options);
	} else
		limiter->ratelimit = ratelimit__open_local(&options);
	if (!limiter->ratelimit) {
		free(limiter);
		return NULL;
	}
	return limiter;
}

void limiter__destroy(struct limiter *limiter)
{
	if (!limiter)
		return;
	ratelimit__close(limiter->ratelimit);
	free(limiter);
}

void limiter__check(struct limiter *limiter, const char *client_ip, struct ratelimit_decision *out)
{
	char key[80];

	snprintf(key, sizeof(key), "proxy-ip:%s", client_ip);
	ratelimit__take_nowait(limiter->ratelimit, key, limiter->limit, limiter->window_ms,
			       limiter->limit, out);
}

void limiter__stats(struct limiter *limiter, struct ratelimit_stats *out)
{
	ratelimit__stats(limiter->ratelimit, out);
}

/* api_metrics: warren-api's Prometheus metrics (docs/observability.md):
 * requests by endpoint and status, their latency, rate-limit rejections,
 * live sandboxes by state (read from PostgreSQL at each scrape), served on
 * the setting metrics_listen when it is set. */
#include "api_metrics.h"

#include <stdio.h>

#include "api.h"
#include "route.h"
#include "warren/clock.h"
#include "warren/config.h"
#include "warren/log.h"
#include "warren/prom.h"
#include "warren/storage.h"

static void api_metrics__collect(void *arg)
{
	static const enum storage_sandbox_state live[] = {
	    STORAGE_SANDBOX_STARTING,
	    STORAGE_SANDBOX_RUNNING,
	    STORAGE_SANDBOX_PAUSED,
	    STORAGE_SANDBOX_KILLING,
	};
	int64_t counts[STORAGE_SANDBOX_STATE_COUNT];
	struct storage_pool *pool = api__pool();
	char labels[64];

	(void)arg;
	prom__gauge_set("warren_api_database_up", "1 when PostgreSQL answered the last scrape",
			NULL, 0);
	if (!pool || storage__sandbox_count_by_state(pool, counts, NULL))
		return;
	prom__gauge_set("warren_api_database_up", NULL, NULL, 1);
	for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++) {
		snprintf(labels, sizeof(labels), "state=\"%s\"",
			 storage__sandbox_state_name(live[i]));
		prom__gauge_set("warren_sandboxes", "Live sandboxes of every team by state", labels,
				(double)counts[live[i]]);
	}
}

int api_metrics__start(const char *listen)
{
	prom__add_collector(api_metrics__collect, NULL);
	return prom__serve_logged(listen);
}

void api_metrics__request(int endpoint, int status, uint64_t started_ns)
{
	const char *name = route__name((enum api_endpoint)endpoint);
	char labels[96];

	snprintf(labels, sizeof(labels), "endpoint=\"%s\",code=\"%d\"", name, status);
	prom__counter_add("warren_api_requests_total",
			  "HTTP requests answered, by endpoint and status", labels, 1);
	snprintf(labels, sizeof(labels), "endpoint=\"%s\"", name);
	prom__histogram_observe("warren_api_request_duration_seconds",
				"Time from the request's arrival to its completion", labels,
				(double)(clock__monotonic_ns() - started_ns) / 1e9);
}

void api_metrics__rejection(const char *limit_name)
{
	char labels[96], value[64];

	prom__label_value(limit_name, value, sizeof(value));
	snprintf(labels, sizeof(labels), "limit=\"%s\"", value);
	prom__counter_add("warren_api_rate_limit_rejections_total",
			  "Requests refused with 429, by the limit that refused them", labels, 1);
}

void api_metrics__result(const char *via)
{
	char labels[64];

	snprintf(labels, sizeof(labels), "via=\"%s\"", via);
	prom__counter_add("warren_api_results_total",
			  "Results handed to a waiting request, by the way they came first", labels,
			  1);
}

/* api_metrics: warren-api's Prometheus metrics (lib/prom). */
#ifndef WARREN_API_METRICS_H
#define WARREN_API_METRICS_H

#include <stdint.h>

/* Registers the collectors and, when listen (the setting metrics_listen,
 * IPV4:PORT) is not empty, serves GET /metrics there. 0, or -1 (logged)
 * when it cannot listen. */
int api_metrics__start(const char *listen);
/* One answered request: endpoint is an enum api_endpoint. */
void api_metrics__request(int endpoint, int status, uint64_t started_ns);
/* One 429 (limit_name as in the rejection counts). */
void api_metrics__rejection(const char *limit_name);
/* One result handed to its waiter, by the way it came ("notification":
 * PostgreSQL's, "event": the Kafka result event). */
void api_metrics__result(const char *via);

#endif

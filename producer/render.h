/* render: the JSON bodies warren-api answers with, in E2B's shapes
 * (docs/e2b-compatibility.md, "REST API"; docs/api.md). Pure: no I/O. */
#ifndef WARREN_API_RENDER_H
#define WARREN_API_RENDER_H

#include <jansson.h>
#include <stdbool.h>

#include "warren/storage.h"

/* What the renderer needs besides the row. */
struct render_context {
	const char *token_seed; /* tokens__access_token / tokens__traffic_token */
	const char *domain;	/* NULL or "": the JSON null */
	const char *envd_version;
	int cpu_count;
	int memory_mb;
	int disk_mb;
};

/* {"code": code, "message": message} */
json_t *render__error(int code, const char *message);
/* The 201 body of POST /sandboxes: templateID, sandboxID, alias, clientID,
 * envdVersion, envdAccessToken (secure only, else null),
 * trafficAccessToken (allowPublicTraffic=false only, else null), domain. */
json_t *render__created(const struct render_context *context, const struct storage_sandbox *sandbox,
			const char *client_id);
/* One entry of GET /sandboxes and GET /v2/sandboxes (ListedSandbox). */
json_t *render__listed(const struct render_context *context, const struct storage_sandbox *sandbox);
/* GET /sandboxes/{id} (SandboxDetail: the listed fields plus
 * envdAccessToken and domain). */
json_t *render__detail(const struct render_context *context, const struct storage_sandbox *sandbox);
/* One SandboxMetric: timestamp (RFC 3339), timestampUnix (seconds),
 * cpuCount, cpuUsedPct, memUsed, memTotal, memCache, diskUsed, diskTotal
 * (bytes). */
json_t *render__metric(const struct storage_sandbox_metric *metric);
/* One SandboxLogEntry: timestamp, level, message, fields {source}. */
json_t *render__log_entry(const struct storage_log_line *line);
/* One SandboxLog (the deprecated v1 shape): timestamp, line. */
json_t *render__log_line(const struct storage_log_line *line);
/* The state name clients see: E2B's "running" / "paused", and ours for
 * the others ("starting", "killing", ...). */
const char *render__state(enum storage_sandbox_state state);

#endif

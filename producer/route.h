/* route: maps a method and path to an endpoint of the REST API
 * (docs/e2b-compatibility.md, "REST API"; docs/api.md), including the /v2 paths the
 * npm e2b SDK 2.x calls (POST /v2/sandboxes, POST /v2/sandboxes/{id}/connect).
 * Pure. */
#ifndef WARREN_API_ROUTE_H
#define WARREN_API_ROUTE_H

#include <stdbool.h>

enum api_endpoint {
	API_ROUTE_NOT_FOUND = 0, /* no such path: 404 */
	API_ROUTE_BAD_METHOD,	 /* known path, other method: 405 */
	API_ROUTE_HEALTH,	 /* GET /health (no auth) */
	API_ROUTE_CREATE,	 /* POST /sandboxes */
	API_ROUTE_LIST_V1,	 /* GET /sandboxes */
	API_ROUTE_LIST_V2,	 /* GET /v2/sandboxes */
	API_ROUTE_GET,		 /* GET /sandboxes/{id} */
	API_ROUTE_KILL,		 /* DELETE /sandboxes/{id} */
	API_ROUTE_TIMEOUT,	 /* POST /sandboxes/{id}/timeout */
	API_ROUTE_REFRESH,	 /* POST /sandboxes/{id}/refreshes */
	API_ROUTE_PAUSE,	 /* POST /sandboxes/{id}/pause */
	API_ROUTE_RESUME,	 /* POST /sandboxes/{id}/resume */
	API_ROUTE_NETWORK,	 /* PUT /sandboxes/{id}/network */
	API_ROUTE_CONNECT,	 /* POST /sandboxes/{id}/connect, POST /v2/sandboxes/{id}/connect */
	API_ROUTE_FORK,		 /* POST /sandboxes/{id}/fork (fork_api.c) */
	API_ROUTE_METRICS,	 /* GET /sandboxes/{id}/metrics */
	API_ROUTE_METRICS_LIST,	 /* GET /sandboxes/metrics?sandbox_ids=a,b */
	API_ROUTE_LOGS,		 /* GET /sandboxes/{id}/logs */
	API_ROUTE_LOGS_V2,	 /* GET /v2/sandboxes/{id}/logs */
	API_ROUTE_UNIMPLEMENTED, /* a route of the E2B API warren does not build: 501 */
	/* custom templates (templates_route.c, docs/templates.md) */
	API_ROUTE_TEMPLATE_CREATE,	 /* POST /v3/templates */
	API_ROUTE_TEMPLATE_LIST,	 /* GET /templates */
	API_ROUTE_TEMPLATE_GET,		 /* GET /templates/{id} */
	API_ROUTE_TEMPLATE_DELETE,	 /* DELETE /templates/{id} */
	API_ROUTE_TEMPLATE_ALIAS,	 /* GET /templates/aliases/{alias} */
	API_ROUTE_TEMPLATE_FILE,	 /* GET /templates/{id}/files/{hash} */
	API_ROUTE_TEMPLATE_UPLOAD,	 /* PUT /templates/{id}/files/{hash}/upload (signed URL) */
	API_ROUTE_TEMPLATE_BUILD,	 /* POST /v2/templates/{id}/builds/{buildID} */
	API_ROUTE_TEMPLATE_BUILD_STATUS, /* GET /templates/{id}/builds/{buildID}/status */
	API_ROUTE_TEMPLATE_BUILD_LOGS,	 /* GET /templates/{id}/builds/{buildID}/logs */
	/* volumes (volumes_api.c, docs/volumes.md) */
	API_ROUTE_VOLUME_CREATE, /* POST /volumes */
	API_ROUTE_VOLUME_LIST,	 /* GET /volumes */
	API_ROUTE_VOLUME_GET,	 /* GET /volumes/{volumeID} */
	API_ROUTE_VOLUME_DELETE, /* DELETE /volumes/{volumeID} */
	/* snapshots (handlers.c, docs/api.md) */
	API_ROUTE_SNAPSHOT_CREATE, /* POST /sandboxes/{id}/snapshots */
	API_ROUTE_SNAPSHOT_LIST,   /* GET /snapshots */
};

#define API_ROUTE_ID_MAX 64 /* longer path ids are cut (they are never valid) */

struct api_route {
	enum api_endpoint endpoint;
	char sandbox_id[API_ROUTE_ID_MAX + 1]; /* the {id} segment, "" when none */
	const char *allowed_methods;	       /* for 405's Allow header */
	const char *feature;		       /* API_ROUTE_UNIMPLEMENTED: what is missing */
	/* template routes: the {templateID} (or alias), {buildID}, {hash} */
	char template_id[API_ROUTE_ID_MAX + 1];
	char build_id[API_ROUTE_ID_MAX + 1];
	char file_hash[API_ROUTE_ID_MAX + 1];
	char volume_id[API_ROUTE_ID_MAX + 1]; /* volume routes: the {volumeID} */
};

/* Matches the template paths (templates_route.c); false when path is not
 * one of them (then route__match goes on). */
bool templates_route__match(const char *method, const char *path, struct api_route *out);

/* Matches /volumes and /volumes/{volumeID}; false for other paths. */
bool route__volumes(const char *method, const char *path, struct api_route *out);

/* Routes method + path (no query string; one trailing '/' tolerated).
 * Paths of the E2B API that warren does not implement (docs/api.md) route
 * to API_ROUTE_UNIMPLEMENTED with out->feature set; paths E2B does not
 * have stay API_ROUTE_NOT_FOUND. */
void route__match(const char *method, const char *path, struct api_route *out);
/* True for endpoints counted by the lifecycle rate limit. */
bool route__is_lifecycle(enum api_endpoint endpoint);
/* A short stable name ("create", "kill", ...) for logs. */
const char *route__name(enum api_endpoint endpoint);

#endif

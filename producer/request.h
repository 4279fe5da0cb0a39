/* request: one HTTP request in flight, shared by server.c (plumbing) and
 * handlers.c (endpoints). */
#ifndef WARREN_API_REQUEST_H
#define WARREN_API_REQUEST_H

#include <microhttpd.h>

#include "api.h"
#include "api_limits.h"

enum api_phase {
	API_PHASE_NEW = 0,  /* headers seen, body not yet complete */
	API_PHASE_WAITING,  /* suspended on a waiter */
	API_PHASE_ANSWERED, /* a response was queued */
};

struct api_request {
	struct MHD_Connection *connection;
	const struct api_config *config;
	char request_id[IDS_UUID_LEN + 1]; /* X-Request-Id (client's if a UUID, else new) */
	bool request_id_from_client;
	const char *method;
	char path[256];
	struct api_route route;
	int64_t started_ms;
	int64_t deadline_ms; /* of the host command it waits for (handlers__host_command) */
	char *body;
	size_t body_len, body_cap;
	bool body_too_large;
	enum api_phase phase;
	struct storage_team team; /* after authentication */
	struct api_waiter waiter;
	/* state a handler keeps across a suspension */
	struct storage_sandbox sandbox;
	bool have_sandbox;
	char envd_version[65];
	int status; /* the status answered, for the access log */
	/* PUT of a template file (templates_api.c): streamed to a temp file */
	int upload_fd; /* 0: not opened (fds 0..2 are never ours) */
	char upload_tmp[512];
	uint64_t upload_len;
	bool upload_refused;
	int upload_status;
	char upload_message[96];
	/* create timing for the access log (clock__monotonic_ns; 0 = not reached) */
	uint64_t started_ns, admitted_ns, queued_ns, result_ns;
	/* POST /sandboxes/{id}/fork (fork_api.c): its steps' state; while
	 * capture is set a response is kept (captured_*) instead of sent */
	struct api_fork *fork;
	bool capture;
	int captured_status;
	json_t *captured_body; /* owned; NULL when the body was not JSON */
};

/* Queues {"code","message"} with status (and X-Request-Id). */
/* 503 with Retry-After: retry_after_s and the JSON error body of fmt. */
enum MHD_Result request__unavailable(struct api_request *r, int retry_after_s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
enum MHD_Result request__error(struct api_request *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Queues body (reference stolen; NULL -> 500) with status. headers: NULL
 * or a NULL-terminated list of name, value pairs. */
enum MHD_Result request__json(struct api_request *r, int status, json_t *body,
			      const char *const *headers);
/* Queues an empty response (204). */
enum MHD_Result request__empty(struct api_request *r, int status);
/* Queues a 429 from a limiter decision (RateLimit-* and Retry-After). */
enum MHD_Result request__rate_limited(struct api_request *r, const struct limits_decision *d);
/* Maps a storage failure: UNAVAILABLE -> 503, else 500 (logged). */
enum MHD_Result request__storage_error(struct api_request *r, const struct storage_error *e);
/* A query argument (decoded once by libmicrohttpd) or NULL. */
const char *request__query(struct api_request *r, const char *name);
/* The render context of this request (envd_version may be NULL). */
void request__render_context(const struct api_request *r, const char *envd_version,
			     struct render_context *out);

/* Template endpoints (templates_api.c). dispatch: authenticated; upload:
 * the signed PUT (no API key), chunk takes body bytes as they arrive
 * (0, or -1 to stop reading), done releases what a request left. */
enum MHD_Result templates_api__dispatch(struct api_request *r, struct storage_pool *pool);
enum MHD_Result templates_api__upload_finish(struct api_request *r);
int templates_api__upload_chunk(struct api_request *r, const char *data, size_t len);
void templates_api__request_done(struct api_request *r);

/* Volume endpoints (volumes_api.c, docs/volumes.md); authenticated. */
enum MHD_Result volumes_api__dispatch(struct api_request *r, struct storage_pool *pool);

/* The steps of a create and of a snapshot, shared with the fork
 * (handlers.c): each answers r (or suspends it, phase WAITING); the
 * *_answer functions answer once the waited-for result is in. */
enum MHD_Result handlers__create(struct api_request *r, struct storage_pool *pool);
enum MHD_Result handlers__create_answer(struct api_request *r);
enum MHD_Result handlers__snapshot_create(struct api_request *r, struct storage_pool *pool);
enum MHD_Result handlers__snapshot_answer(struct api_request *r);

/* POST /sandboxes/{id}/fork (fork_api.c, docs/api.md "Fork"): start
 * answers the first call, resume each call after a suspension; done
 * releases what a request left (server.c, at completion). */
enum MHD_Result fork_api__start(struct api_request *r, struct storage_pool *pool);
enum MHD_Result fork_api__resume(struct api_request *r);
void fork_api__request_done(struct api_request *r);

/* Runs the endpoint of r->route (authenticated, limits checked). Called
 * with the complete body; again after a suspension (phase WAITING). */
enum MHD_Result handlers__dispatch(struct api_request *r);

#endif

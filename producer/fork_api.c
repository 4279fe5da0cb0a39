/* fork_api: POST /sandboxes/{id}/fork {count?, timeout?} (the SDK's
 * Sandbox.fork; docs/api.md, "Fork"). The sandbox's files are captured
 * once, as a snapshot (the createSnapshot steps of handlers.c), then
 * `count` sandboxes are created from it one after the other, each through
 * the create steps of handlers.c with its own request id, so each is
 * checked against the team's limits and succeeds or fails on its own.
 * The steps answer into r->captured_* (r->capture) instead of the client;
 * the client gets 201 with one {sandbox} or {error} per fork, or the
 * snapshot's own error when nothing could be forked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"
#include "warren/ids.h"
#include "warren/log.h"
#include "warren/template_builds.h"

#define FORK_COUNT_MAX	    10 /* forks per request (docs/api.md) */
#define FORK_COUNT_MAX_TEXT "10"

enum fork_stage {
	FORK_SNAPSHOT, /* waiting for the source's snapshot */
	FORK_CREATE,   /* creating fork number `done` */
};

struct api_fork {
	enum fork_stage stage;
	int count, done;
	char request_id[IDS_UUID_LEN + 1]; /* the fork request's own X-Request-Id */
	char *source_body;		   /* the client's body (r->body while forking) */
	size_t source_body_len;
	char *create_body; /* each fork's create body (r->body while creating) */
	char snapshot_id[128];
	struct storage_pool *pool;
	json_t *results; /* one {sandbox} or {error} per fork so far */
};

/* The body's count (1..FORK_COUNT_MAX, 1 when absent) and timeout (whole
 * seconds within the team's maximum, or absent: the create's default).
 * 0, or -1 with a 400 queued. */
static int fork__parse(struct api_request *r, int *count, json_t **timeout, enum MHD_Result *ret)
{
	json_t *body = r->body_len ? json_loadb(r->body, r->body_len, 0, NULL) : json_object();
	json_t *value;
	const char *problem = NULL;

	*timeout = NULL;
	*count = 1;
	if (!json_is_object(body)) {
		problem = "the body must be a JSON object";
		goto out;
	}
	value = json_object_get(body, "count");
	if (value && !json_is_null(value)) {
		if (!json_is_integer(value) || json_integer_value(value) < 1 ||
		    json_integer_value(value) > FORK_COUNT_MAX) {
			problem = "count must be an integer from 1 to " FORK_COUNT_MAX_TEXT;
			goto out;
		}
		*count = (int)json_integer_value(value);
	}
	value = json_object_get(body, "timeout");
	if (value && !json_is_null(value)) {
		if (!json_is_integer(value) || json_integer_value(value) <= 0 ||
		    json_integer_value(value) > r->team.limits.max_timeout_s) {
			problem = "timeout must be a whole number of seconds, greater than 0 and "
				  "within the team's maximum sandbox timeout";
			goto out;
		}
		*timeout = json_incref(value);
	}
out:
	json_decref(body);
	if (problem)
		*ret = request__error(r, 400, "%s", problem);
	return problem ? -1 : 0;
}

/* The create body of every fork: the snapshot as template, the source's
 * network policy, metadata and secure setting, the asked-for timeout. */
static char *fork__create_body(const struct storage_sandbox *source, const char *snapshot_id,
			       json_t *timeout)
{
	const json_t *network = source->network;
	const json_t *internet = json_object_get(network, "allowInternetAccess");
	json_t *body, *rules = json_object();
	static const char *const keys[] = {"allowOut", "denyOut", "allowPublicTraffic",
					   "maskRequestHost"};
	char *text;

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (json_object_get(network, keys[i]))
			json_object_set(rules, keys[i], json_object_get(network, keys[i]));
	body =
	    json_pack("{s:s, s:b, s:b, s:o}", "templateID", snapshot_id, "secure", source->secure,
		      "allow_internet_access", !json_is_false(internet), "network", rules);
	if (body && source->metadata && json_object_size(source->metadata))
		json_object_set(body, "metadata", source->metadata);
	if (body && timeout)
		json_object_set(body, "timeout", timeout);
	text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	return text;
}

/* Sends the final answer: the fork request's own id and body again. */
static enum MHD_Result fork__answer(struct api_request *r, int status, json_t *body)
{
	struct api_fork *fork = r->fork;

	r->capture = false;
	snprintf(r->request_id, sizeof(r->request_id), "%s", fork->request_id);
	return request__json(r, status, body, NULL);
}

/* Passes a captured answer on as the request's answer (a step that failed
 * before any fork was tried). */
static enum MHD_Result fork__forward(struct api_request *r)
{
	json_t *body = r->captured_body;
	int status = r->captured_status;

	r->captured_body = NULL;
	if (!body)
		body = json_pack("{s:i, s:s}", "code", status, "message", "the fork failed");
	return fork__answer(r, status, body);
}

/* Appends the captured answer of the latest fork's create to the results. */
static void fork__record(struct api_request *r)
{
	struct api_fork *fork = r->fork;
	json_t *body = r->captured_body;

	r->captured_body = NULL;
	if (r->captured_status == 201 && json_is_object(body)) {
		json_array_append_new(fork->results, json_pack("{s:o}", "sandbox", body));
		return;
	}
	if (!json_is_object(body) || !json_is_integer(json_object_get(body, "code"))) {
		json_decref(body);
		body = json_pack("{s:i, s:s}", "code", r->captured_status, "message",
				 "the fork failed to start");
	}
	log_info("req=%s fork %d of %d: %d", fork->request_id, fork->done + 1, fork->count,
		 r->captured_status);
	json_array_append_new(fork->results, json_pack("{s:o}", "error", body));
}

/* Makes r ready for the next fork's create: a fresh waiter, no sandbox,
 * a request id of its own, the fork's create body. */
static int fork__prepare_create(struct api_request *r)
{
	struct api_fork *fork = r->fork;

	waiters__remove(&r->waiter);
	json_decref(r->waiter.result);
	memset(&r->waiter, 0, sizeof(r->waiter));
	if (r->have_sandbox) {
		storage__sandbox_clear(&r->sandbox);
		r->have_sandbox = false;
	}
	r->phase = API_PHASE_NEW;
	r->queued_ns = r->admitted_ns = r->result_ns = 0;
	r->body = fork->create_body;
	r->body_len = strlen(fork->create_body);
	return ids__uuid(r->request_id);
}

/* The team's snapshot made for the fork is removed once every fork was
 * tried: its files stay on the host while a fork uses them (the worker
 * prunes a deleted snapshot only when no sandbox uses it). */
static void fork__drop_snapshot(struct api_fork *fork, const char *team_id)
{
	struct storage_error e;

	if (fork->snapshot_id[0] &&
	    storage__team_template_delete(fork->pool, team_id, fork->snapshot_id, &e))
		log_warn("req=%s cannot delete the fork's snapshot %s: %s", fork->request_id,
			 fork->snapshot_id, e.message);
}

/* Creates the forks that are left, one at a time; returns when one waits
 * for its worker (suspended) or with the final answer. */
static enum MHD_Result fork__next(struct api_request *r)
{
	struct api_fork *fork = r->fork;
	enum MHD_Result ret;

	while (fork->done < fork->count) {
		if (fork__prepare_create(r)) {
			r->captured_status = 500;
			r->captured_body = NULL;
		} else {
			ret = handlers__create(r, fork->pool);
			if (r->phase == API_PHASE_WAITING)
				return ret;
		}
		fork__record(r);
		fork->done++;
	}
	fork__drop_snapshot(fork, r->team.id);
	return fork__answer(r, 201, json_incref(fork->results));
}

/* After the snapshot's answer: its error is the request's, else the
 * forks are created from it. */
static enum MHD_Result fork__after_snapshot(struct api_request *r)
{
	struct api_fork *fork = r->fork;
	const char *id = json_string_value(json_object_get(r->captured_body, "snapshotID"));
	json_t *timeout = NULL;
	int count;
	enum MHD_Result ret;

	if (r->captured_status != 201 || !id || !r->have_sandbox)
		return fork__forward(r);
	snprintf(fork->snapshot_id, sizeof(fork->snapshot_id), "%s", id);
	r->body = fork->source_body;
	r->body_len = fork->source_body_len;
	if (fork__parse(r, &count, &timeout, &ret)) /* checked before: cannot fail */
		return ret;
	fork->create_body = fork__create_body(&r->sandbox, fork->snapshot_id, timeout);
	json_decref(timeout);
	if (!fork->create_body) {
		fork__drop_snapshot(fork, r->team.id);
		return fork__answer(
		    r, 500, json_pack("{s:i, s:s}", "code", 500, "message", "out of memory"));
	}
	fork->stage = FORK_CREATE;
	return fork__next(r);
}

enum MHD_Result fork_api__start(struct api_request *r, struct storage_pool *pool)
{
	struct api_fork *fork;
	json_t *timeout = NULL;
	enum MHD_Result ret;
	int count;

	if (fork__parse(r, &count, &timeout, &ret))
		return ret;
	json_decref(timeout);
	fork = calloc(1, sizeof(*fork));
	if (!fork || !(fork->results = json_array())) {
		free(fork);
		return request__error(r, 500, "out of memory");
	}
	fork->count = count;
	fork->pool = pool;
	fork->source_body = r->body;
	fork->source_body_len = r->body_len;
	snprintf(fork->request_id, sizeof(fork->request_id), "%s", r->request_id);
	r->fork = fork;
	r->capture = true;
	ret = handlers__snapshot_create(r, pool);
	if (r->phase == API_PHASE_WAITING)
		return ret;
	return fork__after_snapshot(r);
}

enum MHD_Result fork_api__resume(struct api_request *r)
{
	struct api_fork *fork = r->fork;

	if (!fork) /* not reached: only a started fork suspends */
		return request__error(r, 500, "fork state lost");
	if (fork->stage == FORK_SNAPSHOT) {
		handlers__snapshot_answer(r);
		return fork__after_snapshot(r);
	}
	handlers__create_answer(r);
	fork__record(r);
	fork->done++;
	return fork__next(r);
}

void fork_api__request_done(struct api_request *r)
{
	struct api_fork *fork = r->fork;

	json_decref(r->captured_body);
	r->captured_body = NULL;
	if (!fork)
		return;
	if (fork->stage == FORK_CREATE && fork->done < fork->count)
		fork__drop_snapshot(fork, r->team.id); /* the client went away */
	r->body = fork->source_body;		       /* server.c frees the client's body */
	r->body_len = fork->source_body_len;
	free(fork->create_body);
	json_decref(fork->results);
	free(fork);
	r->fork = NULL;
}

/* handlers: the endpoints of docs/api.md (docs/e2b-compatibility.md, "REST API").
 * Every query is scoped to the authenticated team: another team's sandbox
 * is the same 404 as a missing one. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_limits.h"
#include "api_metrics.h"
#include "placement.h"
#include "query.h"
#include "request.h"
#include "warren/volumes.h"
#include "warren/config.h"
#include "warren/ids.h"
#include "warren/snapshots.h"
#include "warren/clock.h"
#include "warren/log.h"
#include "warren/template_builds.h"
#include "warren/tokens.h"

#define API_MSG_NOT_FOUND "Sandbox \"%.64s\" doesn't exist or you don't have access to it"

#define WANT(type) (1u << (type))
/* A host whose heartbeat (every second) is older than this is not
 * counted as ready when a create asks for its runtime. */
#define API_HOST_FRESH_S 30

static bool handlers__visible(enum storage_sandbox_state state)
{
	return (STORAGE_STATES_ACTIVE & STORAGE_STATE_BIT(state)) != 0;
}

static enum MHD_Result handlers__not_found(struct api_request *r)
{
	return request__error(r, 404, API_MSG_NOT_FOUND, r->route.sandbox_id);
}

/* Loads the route's sandbox of the team into r->sandbox. On failure the
 * response is queued and false returned (*ret set). */
static bool handlers__load_sandbox(struct api_request *r, struct storage_pool *pool,
				   enum MHD_Result *ret)
{
	struct storage_error e;
	int rc;

	if (r->have_sandbox) {
		storage__sandbox_clear(&r->sandbox);
		r->have_sandbox = false;
	}
	if (!ids__is_sandbox_id(r->route.sandbox_id)) {
		*ret = handlers__not_found(r);
		return false;
	}
	rc = storage__sandbox_get(pool, r->team.id, r->route.sandbox_id, &r->sandbox, &e);
	if (rc == STORAGE_ERR_NOT_FOUND) {
		*ret = handlers__not_found(r);
		return false;
	}
	if (rc) {
		*ret = request__storage_error(r, &e);
		return false;
	}
	r->have_sandbox = true;
	if (!handlers__visible(r->sandbox.state)) {
		*ret = handlers__not_found(r);
		return false;
	}
	return true;
}

static void handlers__template_version(struct storage_pool *pool, const char *template_id,
				       char out[65])
{
	struct storage_template template;

	out[0] = '\0';
	if (storage__template_get(pool, template_id, &template, NULL) == STORAGE_OK)
		snprintf(out, 65, "%s", template.agent_version);
}

static void handlers__record_rejection(struct api_request *r, struct storage_pool *pool,
				       const char *limit_name)
{
	api_metrics__rejection(limit_name);
	if (!limits__count_rejection(pool, r->team.id, limit_name))
		log_warn("req=%s cannot record a %s rejection", r->request_id, limit_name);
}

/* Starts waiting for a result of r->waiter's request; the caller produced
 * (or is about to produce) the command. */
static void handlers__wait_for(struct api_request *r, uint32_t want, int64_t deadline_ms)
{
	snprintf(r->waiter.request_id, sizeof(r->waiter.request_id), "%s", r->request_id);
	r->waiter.want = want;
	r->waiter.deadline_ms = (int64_t)clock__monotonic_ms() + deadline_ms;
	waiters__add(&r->waiter);
}

/* ---- POST /sandboxes ---- */

/* Finishes a create's request row as failed with the body of a `failed`
 * result (docs/events/failed.schema.json): {command, code, message}. */
static void handlers__finish_failed(struct storage_pool *pool, const char *request_id, int code,
				    const char *message)
{
	json_t *result =
	    json_pack("{s:s, s:i, s:s}", "command", kafka_event__type_name(KAFKA_EVENT_CREATE),
		      "code", code, "message", message);

	storage__request_finish(pool, request_id, STORAGE_REQUEST_FAILED, result, NULL);
	json_decref(result);
}

static json_t *handlers__create_spec(const struct api_create_request *c)
{
	json_t *network = json_object(), *spec;
	const json_t *mask = json_object_get(c->network, "maskRequestHost");

	json_object_set(network, "allow_out", json_object_get(c->network, "allowOut"));
	json_object_set(network, "deny_out", json_object_get(c->network, "denyOut"));
	json_object_set_new(network, "allow_public_traffic", json_boolean(c->allow_public_traffic));
	if (mask)
		json_object_set(network, "mask_request_host", (json_t *)mask);
	spec = json_pack("{s:s, s:i, s:s, s:b, s:b, s:b, s:O, s:O, s:o}", "template_id",
			 c->template_id, "timeout_s", c->timeout_s, "alias", c->template_id,
			 "secure", c->secure, "allow_internet_access", c->allow_internet_access,
			 "auto_pause", c->pause_on_timeout, "metadata", c->metadata, "env_vars",
			 c->env_vars, "network", network);
	if (spec && c->runtime[0])
		json_object_set_new(spec, "runtime", json_string(c->runtime));
	if (spec && c->volume_mount_count)
		json_object_set_new(spec, "volume_mounts", json_integer(c->volume_mount_count));
	return spec;
}

/* The answer once the outcome of a create is known (or its deadline). */
enum MHD_Result handlers__create_answer(struct api_request *r)
{
	struct storage_pool *pool = api__pool();
	struct render_context context;
	struct storage_error e;
	const char *client_id = NULL;

	if (r->queued_ns)
		r->result_ns = clock__monotonic_ns();

	if (r->waiter.timed_out || !r->waiter.result) {
		/* The result may have arrived by another path (another
		 * instance's replay, a missed event): PostgreSQL decides. */
		struct storage_sandbox fresh;

		if (pool && storage__sandbox_get(pool, r->team.id, r->sandbox.id, &fresh, &e) ==
				STORAGE_OK) {
			storage__sandbox_clear(&r->sandbox);
			r->sandbox = fresh;
		}
		if (r->sandbox.state == STORAGE_SANDBOX_RUNNING)
			goto created;
		if (r->sandbox.state == STORAGE_SANDBOX_FAILED)
			return request__error(
			    r, 500, "sandbox %s failed to start: %s", r->sandbox.id,
			    r->sandbox.failure_reason[0] ? r->sandbox.failure_reason
							 : "unknown reason");
		return request__error(
		    r, 504,
		    "sandbox %s is still starting after %lld ms; find it with GET /sandboxes/%s",
		    r->sandbox.id, (long long)r->config->create_deadline_ms, r->sandbox.id);
	}
	if (r->waiter.result_type == KAFKA_EVENT_FAILED) {
		int code = (int)json_integer_value(json_object_get(r->waiter.result, "code"));
		const char *message =
		    json_string_value(json_object_get(r->waiter.result, "message"));

		if (pool)
			storage__request_finish(pool, r->request_id, STORAGE_REQUEST_FAILED,
						r->waiter.result, NULL);
		if (code < 400 || code > 599)
			code = 500;
		return request__error(r, code, "%s", message ? message : "sandbox failed to start");
	}
	if (pool)
		storage__request_finish(pool, r->request_id, STORAGE_REQUEST_DONE, r->waiter.result,
					NULL);
	client_id = json_string_value(json_object_get(r->waiter.result, "client_id"));
	if (json_string_value(json_object_get(r->waiter.result, "envd_version")))
		snprintf(r->envd_version, sizeof(r->envd_version), "%s",
			 json_string_value(json_object_get(r->waiter.result, "envd_version")));
	snprintf(r->sandbox.host_id, sizeof(r->sandbox.host_id), "%s", r->waiter.host_id);
created:
	if (!client_id)
		client_id = r->sandbox.host_id;
	request__render_context(r, r->envd_version, &context);
	return request__json(r, 201, render__created(&context, &r->sandbox, client_id), NULL);
}

/* A create in progress: the steps below each either pass (true) or answer
 * the request (false, ctx->ret holds libmicrohttpd's result). */
struct create_ctx {
	struct api_request *r;
	struct storage_pool *pool;
	struct api_create_request create; /* valid after step 1 */
	char sandbox_id[IDS_SANDBOX_ID_LEN + 1];
	struct storage_admission admission;
	char topic[KAFKA_TOPIC_NAME_MAX + 1]; /* where the create goes (step 3b) */
	enum MHD_Result ret;
};

/* Step 1: the body, validated against the team's limits. */
static bool create__parse(struct create_ctx *ctx)
{
	struct api_error error;
	json_t *body;
	int rc;

	body = validate__parse_body(ctx->r->body, ctx->r->body_len, &error);
	if (!body) {
		ctx->ret = request__error(ctx->r, error.status, "%s", error.message);
		return false;
	}
	rc = validate__create(body, ctx->r->team.limits.max_timeout_s, &ctx->create, &error);
	json_decref(body);
	if (rc) {
		ctx->ret = request__error(ctx->r, error.status, "%s", error.message);
		return false;
	}
	return true;
}

/* Step 2: the team's creation rate (a 429 is counted as a rejection). */
static bool create__check_rate(struct create_ctx *ctx)
{
	struct limits_decision decision;

	limits__create(ctx->r->team.id, &ctx->r->team.limits, &decision);
	if (decision.allowed)
		return true;
	handlers__record_rejection(ctx->r, ctx->pool, decision.limit_name);
	ctx->ret = request__rate_limited(ctx->r, &decision);
	return false;
}

/* Step 3: the template exists; its agent version is the answer's envdVersion. */
static bool create__load_template(struct create_ctx *ctx)
{
	struct storage_template template;
	struct storage_error e;
	int rc;

	/* a team's own built template is that team's only (docs/templates.md) */
	rc = storage__template_get_for_team(ctx->pool, ctx->r->team.id, ctx->create.template_id,
					    &template, &e);
	if (rc == STORAGE_ERR_NOT_FOUND || rc == STORAGE_ERR_INVALID) {
		ctx->ret = request__error(ctx->r, 404, "template '%.128s' not found",
					  ctx->create.template_id);
		return false;
	}
	if (rc) {
		ctx->ret = request__storage_error(ctx->r, &e);
		return false;
	}
	snprintf(ctx->r->envd_version, sizeof(ctx->r->envd_version), "%s", template.agent_version);
	return true;
}

/* Step 3b during a rolling upgrade: the create goes to host's own topic
 * (a worker takes creates there too, as a handed-off one). */
static bool create__place_on_host(struct create_ctx *ctx, const char *host)
{
	if (bus__host_topic(ctx->r->config, host, ctx->topic, sizeof(ctx->topic))) {
		ctx->ret =
		    request__error(ctx->r, 500, "the topic name of host %s is too long", host);
		return false;
	}
	log_info("req=%s mixed event versions among the workers: the create goes to host %s",
		 ctx->r->request_id, host);
	return true;
}

/* Step 3b, placement (docs/api.md, "Placement"): a create that asks for
 * a runtime (metadata warren.runtime) goes to that runtime's create
 * topic, else to the shared one. The hosts table (each worker's heartbeat,
 * every second) answers at once, instead of a 504 after the create
 * deadline: 503 with Retry-After when every ready host is full, 503 when
 * the runtime asked for has no ready host. With no ready host at all (a
 * worker restarting) the create waits in Kafka, up to the create
 * deadline, for one to come back. During a rolling upgrade (a ready host
 * whose worker does not understand this API's event version: it would
 * dead-letter the command) the create goes to the host topic of the
 * compatible host with most room, and is refused (503) when there is none
 * (docs/operations.md, "Rolling upgrades"). */
static bool create__place(struct create_ctx *ctx)
{
	struct storage_host *hosts = NULL;
	struct storage_error e;
	struct placement p;
	size_t count = 0;
	const char *runtime = ctx->create.runtime;

	snprintf(ctx->topic, sizeof(ctx->topic), "%s", ctx->r->config->commands_topic);
	if (storage__host_list(ctx->pool, &hosts, &count, &e)) {
		ctx->ret = request__storage_error(ctx->r, &e);
		return false;
	}
	placement__survey(hosts, count, runtime, KAFKA_EVENT_VERSION, clock__realtime_ms(),
			  API_HOST_FRESH_S * 1000, &p);
	free(hosts);
	if (!p.ready && p.incompatible) {
		ctx->ret = request__unavailable(
		    ctx->r, 5,
		    "no ready worker host understands event version %d (%zu ready host(s) speak "
		    "up to version %d): upgrade the workers before the API",
		    KAFKA_EVENT_VERSION, p.incompatible, (int)p.newest_incompatible);
		return false;
	}
	if (!p.ready && *runtime) {
		ctx->ret = request__error(ctx->r, 503,
					  "no worker host with the %s runtime is ready", runtime);
		return false;
	}
	if (p.ready && p.running >= p.capacity) {
		ctx->ret =
		    request__unavailable(ctx->r, 1,
					 "no worker host has room: %lld of %lld sandboxes on %zu "
					 "host(s); retry later",
					 (long long)p.running, (long long)p.capacity, p.ready);
		return false;
	}
	if (p.incompatible && p.best_host[0])
		return create__place_on_host(ctx, p.best_host);
	if (!*runtime)
		return true;
	char runtime_topic[KAFKA_TOPIC_NAME_MAX + 1];
	if (kafka__runtime_topic(runtime, runtime_topic, sizeof(runtime_topic)) ||
	    snprintf(ctx->topic, sizeof(ctx->topic), "%s%s", ctx->r->config->topic_prefix,
		     runtime_topic) >= (int)sizeof(ctx->topic)) {
		ctx->ret = request__error(ctx->r, 500, "the topic name of runtime %s is too long",
					  runtime);
		return false;
	}
	return true;
}

/* Step 4: the request row (X-Request-Id) names the sandbox id: a new one,
 * or the one a replayed request id already chose. */
static bool create__begin_request(struct create_ctx *ctx)
{
	struct api_request *r = ctx->r;
	struct storage_request known = {0};
	struct storage_error e;
	bool created = false;
	int rc;

	if (ids__sandbox_id(ctx->sandbox_id)) {
		ctx->ret = request__error(r, 500, "cannot generate a sandbox id");
		return false;
	}
	rc = storage__request_begin(ctx->pool, r->request_id, r->team.id, "create", ctx->sandbox_id,
				    &created, &known, &e);
	if (rc == STORAGE_ERR_DUPLICATE) {
		ctx->ret = request__error(r, 409, "request id %s is already used", r->request_id);
		return false;
	}
	if (rc) {
		ctx->ret = request__storage_error(r, &e);
		return false;
	}
	if (!created && known.sandbox_id[0])
		snprintf(ctx->sandbox_id, sizeof(ctx->sandbox_id), "%s", known.sandbox_id);
	storage__request_clear(&known);
	return true;
}

/* The 429 of a team at its concurrent-sandbox limit (request row failed). */
static enum MHD_Result create__concurrency_limited(struct create_ctx *ctx)
{
	struct limits_decision concurrency = {
	    .limit_name = "concurrent_sandboxes",
	    .limit = ctx->admission.limit,
	    .remaining = 0,
	    .reset_s = 1,
	    .retry_after_s = 1,
	};

	snprintf(concurrency.message, sizeof(concurrency.message),
		 "you have reached the maximum number of concurrent sandboxes (%d)",
		 ctx->admission.limit);
	handlers__finish_failed(ctx->pool, ctx->r->request_id, 429, concurrency.message);
	handlers__record_rejection(ctx->r, ctx->pool, concurrency.limit_name);
	return request__rate_limited(ctx->r, &concurrency);
}

/* Step 5: the sandbox row, admitted under the team's concurrency limit in
 * one statement (r->sandbox holds it after). */
static bool create__admit(struct create_ctx *ctx)
{
	struct api_request *r = ctx->r;
	const struct api_create_request *c = &ctx->create;
	struct storage_sandbox_new row = {
	    .id = ctx->sandbox_id,
	    .team_id = r->team.id,
	    .template_id = c->template_id,
	    .request_id = r->request_id,
	    .timeout_s = c->timeout_s,
	    .network = c->network,
	    .metadata = c->metadata,
	    .secure = c->secure,
	    .allow_public_traffic = c->allow_public_traffic,
	    .mask_request_host = c->mask_request_host[0] ? c->mask_request_host : NULL,
	};
	struct storage_error e;
	int rc;

	if (!c->secure)
		log_warn("req=%s secure=false: sandbox %s's agent accepts requests without an "
			 "access token (discouraged)",
			 r->request_id, ctx->sandbox_id);
	rc = storage__sandbox_admit(ctx->pool, &row, &ctx->admission, &r->sandbox, &e);
	if (rc == STORAGE_ERR_DUPLICATE) {
		ctx->ret = request__error(r, 409, "request id %s is already used", r->request_id);
		return false;
	}
	if (rc) {
		ctx->ret = request__storage_error(r, &e);
		return false;
	}
	if (!ctx->admission.admitted) {
		ctx->ret = create__concurrency_limited(ctx);
		return false;
	}
	r->have_sandbox = true;
	/* What a timeout does, stored before the command is produced. */
	if (!ctx->admission.existing && (c->pause_on_timeout || c->auto_resume)) {
		rc = storage__sandbox_set_lifecycle(ctx->pool, r->sandbox.id, c->pause_on_timeout,
						    c->auto_resume, &e);
		if (rc) {
			ctx->ret = request__storage_error(r, &e);
			return false;
		}
		r->sandbox.pause_on_timeout = c->pause_on_timeout;
		r->sandbox.auto_resume = c->auto_resume;
	}
	return true;
}

/* Step 6: a replayed X-Request-Id is answered from the row when it is
 * settled; one still starting is produced again (idempotent on request_id). */
static bool create__settle_replay(struct create_ctx *ctx)
{
	struct api_request *r = ctx->r;

	if (!ctx->admission.existing)
		return true;
	log_info("req=%s replay of the create of %s (%s)", r->request_id, r->sandbox.id,
		 storage__sandbox_state_name(r->sandbox.state));
	if (r->sandbox.state == STORAGE_SANDBOX_RUNNING) {
		r->waiter.timed_out = true;
		ctx->ret = handlers__create_answer(r);
		return false;
	}
	if (r->sandbox.state != STORAGE_SANDBOX_STARTING) {
		ctx->ret =
		    request__error(r, 409, "the sandbox %s of this request is %s", r->sandbox.id,
				   storage__sandbox_state_name(r->sandbox.state));
		return false;
	}
	return true;
}

/* Step 4b: every volume of volumeMounts is the team's and free now (400
 * unknown, 409 held by another live sandbox than this request's), checked
 * before the sandbox row is made (the request row ends failed); step 6b's
 * claim settles a race with another create. */
static bool create__check_volumes(struct create_ctx *ctx)
{
	const struct api_create_request *c = &ctx->create;
	struct storage_volume volume;
	struct storage_error e;
	char message[512];
	int rc, status;

	for (int i = 0; i < c->volume_mount_count; i++) {
		rc = storage__volume_get_by_name(ctx->pool, ctx->r->team.id,
						 c->volume_mounts[i].name, &volume, &e);
		if (rc && rc != STORAGE_ERR_NOT_FOUND) {
			ctx->ret = request__storage_error(ctx->r, &e);
			return false;
		}
		if (rc == STORAGE_ERR_NOT_FOUND) {
			status = 400;
			snprintf(message, sizeof(message), "%s", e.message);
		} else if (volume.in_use && strcmp(volume.sandbox_id, ctx->sandbox_id)) {
			status = 409;
			snprintf(message, sizeof(message),
				 "volume '%s' is in use by sandbox %s (one writer at a time)",
				 volume.name, volume.sandbox_id);
		} else {
			continue;
		}
		handlers__finish_failed(ctx->pool, ctx->r->request_id, status, message);
		ctx->ret = request__error(ctx->r, status, "%s", message);
		return false;
	}
	return true;
}

/* Step 6b: the volumes of volumeMounts claimed for this sandbox (one
 * writer at a time, docs/volumes.md). A volume the team lacks is a 400, one
 * another live sandbox holds a 409; either way the sandbox row ends failed
 * (which also drops the claims it made) and the request row says why. */
static bool create__claim_volumes(struct create_ctx *ctx)
{
	struct api_request *r = ctx->r;
	const struct api_create_request *c = &ctx->create;
	struct storage_sandbox_transition failed = {
	    .sandbox_id = r->sandbox.id,
	    .team_id = r->team.id,
	    .from = STORAGE_SANDBOX_STARTING,
	    .to = STORAGE_SANDBOX_FAILED,
	    .slot_index = -1,
	};
	struct storage_error e;
	char message[512];
	int rc = STORAGE_OK, status;

	for (int i = 0; i < c->volume_mount_count && rc == STORAGE_OK; i++)
		rc = storage__volume_claim(ctx->pool, r->team.id, c->volume_mounts[i].name,
					   r->sandbox.id, c->volume_mounts[i].path, NULL, &e);
	if (rc == STORAGE_OK)
		return true;
	if (rc != STORAGE_ERR_NOT_FOUND && rc != STORAGE_ERR_CONFLICT) {
		ctx->ret = request__storage_error(r, &e);
		return false;
	}
	status = rc == STORAGE_ERR_NOT_FOUND ? 400 : 409;
	snprintf(message, sizeof(message), "%s", e.message);
	failed.failure_reason = message;
	if (storage__sandbox_transition(ctx->pool, &failed, NULL, &e))
		log_warn("req=%s cannot mark %s failed: %s", r->request_id, r->sandbox.id,
			 e.message);
	handlers__finish_failed(ctx->pool, r->request_id, status, message);
	ctx->ret = request__error(r, status, "%s", message);
	return false;
}

/* A command that could not be queued: the client gets the error and the
 * rows say why (no lost request). */
static enum MHD_Result create__produce_failed(struct create_ctx *ctx)
{
	struct api_request *r = ctx->r;
	struct storage_sandbox_transition t = {
	    .sandbox_id = r->sandbox.id,
	    .team_id = r->team.id,
	    .from = STORAGE_SANDBOX_STARTING,
	    .to = STORAGE_SANDBOX_FAILED,
	    .slot_index = -1,
	    .failure_reason = "the create command could not be queued in Kafka",
	};
	struct storage_error e;

	waiters__remove(&r->waiter);
	if (storage__sandbox_transition(ctx->pool, &t, NULL, &e))
		log_warn("req=%s cannot mark %s failed: %s", r->request_id, r->sandbox.id,
			 e.message);
	handlers__finish_failed(ctx->pool, r->request_id, 503, "Kafka unavailable");
	return request__unavailable(r, 2,
				    "cannot queue the request (Kafka unavailable), retry later");
}

/* Step 7: the create command, produced durably to Kafka after the waiter
 * for its result is registered (so no result can be missed). */
static bool create__produce(struct create_ctx *ctx)
{
	struct api_request *r = ctx->r;
	struct kafka_event ev = {0};
	char reason[256];
	int rc;

	if (kafka_event__init_command(&ev, KAFKA_EVENT_CREATE, r->team.id, r->sandbox.id,
				      handlers__create_spec(&ctx->create), reason,
				      sizeof(reason)) != KAFKA_EVENT_OK) {
		ctx->ret = request__error(r, 500, "cannot build the create command: %s", reason);
		return false;
	}
	snprintf(ev.request_id, sizeof(ev.request_id), "%s", r->request_id);
	handlers__wait_for(r, WANT(KAFKA_EVENT_CREATED) | WANT(KAFKA_EVENT_FAILED),
			   r->config->create_deadline_ms);
	r->admitted_ns = clock__monotonic_ns();
	rc = bus__produce(ctx->topic, &ev);
	r->queued_ns = clock__monotonic_ns();
	kafka_event__clear(&ev);
	if (rc) {
		ctx->ret = create__produce_failed(ctx);
		return false;
	}
	return true;
}

/* POST /sandboxes: the steps above in order, then the answer once the
 * result is in (the connection is suspended until then when it can be). */
enum MHD_Result handlers__create(struct api_request *r, struct storage_pool *pool)
{
	struct create_ctx ctx = {.r = r, .pool = pool};

	if (!create__parse(&ctx))
		return ctx.ret;
	if (!create__check_rate(&ctx) || !create__load_template(&ctx) || !create__place(&ctx) ||
	    !create__begin_request(&ctx) || !create__check_volumes(&ctx) || !create__admit(&ctx) ||
	    !create__settle_replay(&ctx) || !create__claim_volumes(&ctx) || !create__produce(&ctx))
		goto out;
	if (waiters__suspend(&r->waiter, r->connection)) {
		r->phase = API_PHASE_WAITING;
		ctx.ret = MHD_YES;
		goto out;
	}
	ctx.ret = handlers__create_answer(r);
out:
	api_create_request__clear(&ctx.create);
	return ctx.ret;
}

/* ---- GET /sandboxes, GET /v2/sandboxes ---- */

struct handlers_versions {
	char template_id[8][129];
	char version[8][65];
	int count;
};

static const char *handlers__version_of(struct handlers_versions *cache, struct storage_pool *pool,
					const char *template_id)
{
	int slot;

	for (int i = 0; i < cache->count; i++)
		if (!strcmp(cache->template_id[i], template_id))
			return cache->version[i];
	slot = cache->count < 8 ? cache->count++ : 7;
	snprintf(cache->template_id[slot], sizeof(cache->template_id[slot]), "%s", template_id);
	handlers__template_version(pool, template_id, cache->version[slot]);
	return cache->version[slot];
}

struct handlers_state_args {
	uint32_t mask;
	bool failed;
	struct api_error error;
};

static enum MHD_Result handlers__state_arg(void *cls, enum MHD_ValueKind kind, const char *key,
					   const char *value)
{
	struct handlers_state_args *args = cls;

	if (strcmp(key, "state") || args->failed)
		return MHD_YES;
	if (query__states(value ? value : "", &args->mask, &args->error))
		args->failed = true;
	return MHD_YES;
}

static enum MHD_Result handlers__list(struct api_request *r, struct storage_pool *pool, bool v2)
{
	struct storage_sandbox_filter filter = {0};
	struct storage_sandbox_list page = {0};
	struct handlers_versions *versions = calloc(1, sizeof(*versions));
	struct handlers_state_args states = {0};
	struct render_context context;
	struct api_error error;
	struct storage_error e;
	json_t *metadata = NULL, *items = json_array();
	char next_token[STORAGE_PAGE_TOKEN_MAX] = "", total[16];
	const char *headers[5] = {NULL};
	int32_t running = 0;
	enum MHD_Result ret;

	if (!versions || !items) {
		ret = request__error(r, 500, "out of memory");
		goto out;
	}
	if (query__metadata(request__query(r, "metadata"), &metadata, &error)) {
		ret = request__error(r, error.status, "%s", error.message);
		goto out;
	}
	filter.metadata = metadata;
	filter.limit = STORAGE_PAGE_LIMIT_MAX;
	if (query__template(request__query(r, "template"), &filter.template_id, &error) ||
	    query__time("startedAfter", request__query(r, "startedAfter"), &filter.started_after_ms,
			&error) ||
	    query__time("startedBefore", request__query(r, "startedBefore"),
			&filter.started_before_ms, &error) ||
	    query__order(request__query(r, "order"), &filter.ascending, &error)) {
		ret = request__error(r, error.status, "%s", error.message);
		goto out;
	}
	if (v2) {
		/* ?state= may repeat and may hold a comma list. */
		MHD_get_connection_values(r->connection, MHD_GET_ARGUMENT_KIND, handlers__state_arg,
					  &states);
		if (states.failed) {
			ret = request__error(r, states.error.status, "%s", states.error.message);
			goto out;
		}
		filter.states = states.mask;
		if (query__limit(request__query(r, "limit"), &filter.limit, &error)) {
			ret = request__error(r, error.status, "%s", error.message);
			goto out;
		}
		filter.page_token = request__query(r, "nextToken");
	}
	if (!filter.states)
		filter.states = STORAGE_STATE_BIT(STORAGE_SANDBOX_STARTING) |
				STORAGE_STATE_BIT(STORAGE_SANDBOX_RUNNING) |
				STORAGE_STATE_BIT(STORAGE_SANDBOX_PAUSED) |
				STORAGE_STATE_BIT(STORAGE_SANDBOX_PAUSING) |
				STORAGE_STATE_BIT(STORAGE_SANDBOX_RESUMING);
	/* v1 answers every match in one body (pages of 100 chained, at most
	 * 100 pages); v2 answers one page and X-Next-Token. */
	for (int pages = 0; pages < (v2 ? 1 : 100); pages++) {
		int rc = storage__sandbox_list(pool, r->team.id, &filter, &page, &e);

		if (rc == STORAGE_ERR_INVALID) {
			ret = request__error(r, 400, "invalid nextToken");
			goto out;
		}
		if (rc) {
			ret = request__storage_error(r, &e);
			goto out;
		}
		for (size_t i = 0; i < page.count; i++) {
			request__render_context(
			    r, handlers__version_of(versions, pool, page.items[i].template_id),
			    &context);
			json_array_append_new(items, render__listed(&context, &page.items[i]));
		}
		snprintf(next_token, sizeof(next_token), "%s", page.next_token);
		storage__sandbox_list_free(&page);
		if (!next_token[0])
			break;
		filter.page_token = next_token;
	}
	if (v2) {
		size_t n = 0;

		if (storage__sandbox_count_active(pool, r->team.id, &running, &e)) {
			ret = request__storage_error(r, &e);
			goto out;
		}
		snprintf(total, sizeof(total), "%d", running);
		headers[n++] = "X-Total-Running";
		headers[n++] = total;
		if (next_token[0]) {
			headers[n++] = "X-Next-Token";
			headers[n++] = next_token;
		}
	}
	ret = request__json(r, 200, items, headers);
	items = NULL;
out:
	json_decref(metadata);
	json_decref(items);
	free(versions);
	return ret;
}

/* ---- GET /sandboxes/{id} ---- */

static enum MHD_Result handlers__get(struct api_request *r, struct storage_pool *pool)
{
	struct render_context context;
	enum MHD_Result ret;

	if (!handlers__load_sandbox(r, pool, &ret))
		return ret;
	handlers__template_version(pool, r->sandbox.template_id, r->envd_version);
	request__render_context(r, r->envd_version, &context);
	return request__json(r, 200, render__detail(&context, &r->sandbox), NULL);
}

/* ---- operations on a live sandbox, through its host's topic ---- */

/* Produces a command for r->sandbox to its host topic; with want != 0,
 * registers the waiter first and suspends. *produced false: a response
 * was queued (the return value). */
static enum MHD_Result handlers__host_command(struct api_request *r, enum kafka_event_type type,
					      json_t *spec, uint32_t want, bool *suspended)
{
	struct kafka_event ev = {0};
	char topic[KAFKA_TOPIC_NAME_MAX + 1], reason[256];
	int rc;

	*suspended = false;
	if (bus__host_topic(r->config, r->sandbox.host_id, topic, sizeof(topic))) {
		json_decref(spec);
		log_error("req=%s sandbox %s has an invalid host id", r->request_id, r->sandbox.id);
		return want ? request__error(r, 500, "sandbox %s has an invalid host id",
					     r->sandbox.id)
			    : MHD_YES;
	}
	if (kafka_event__init_command(&ev, type, r->team.id, r->sandbox.id, spec, reason,
				      sizeof(reason)) != KAFKA_EVENT_OK) {
		log_error("req=%s cannot build the %s command: %s", r->request_id,
			  kafka_event__type_name(type), reason);
		return want ? request__error(r, 500, "cannot build the %s command: %s",
					     kafka_event__type_name(type), reason)
			    : MHD_YES;
	}
	snprintf(ev.request_id, sizeof(ev.request_id), "%s", r->request_id);
	if (!want) {
		bus__produce_async(topic, &ev);
		kafka_event__clear(&ev);
		return MHD_YES;
	}
	/* a pause or snapshot of a vm sandbox writes its guest's memory */
	r->deadline_ms = type == KAFKA_EVENT_PAUSE || type == KAFKA_EVENT_SNAPSHOT
			     ? r->config->snapshot_deadline_ms
			     : r->config->operation_deadline_ms;
	handlers__wait_for(r, want, r->deadline_ms);
	rc = bus__produce(topic, &ev);
	kafka_event__clear(&ev);
	if (rc) {
		waiters__remove(&r->waiter);
		return request__unavailable(
		    r, 2, "cannot queue the request (Kafka unavailable), retry later");
	}
	if (waiters__suspend(&r->waiter, r->connection)) {
		r->phase = API_PHASE_WAITING;
		*suspended = true;
	}
	return MHD_YES;
}

/* After the worker applied a network update: the stored policy follows
 * (GET /sandboxes/{id} shows it). Best effort: the sandbox runs the new
 * rules either way. */
static void handlers__store_network(struct api_request *r)
{
	struct storage_pool *pool = api__pool();
	struct api_error error;
	struct storage_error e;
	json_t *body, *rules = NULL;

	body = validate__parse_body(r->body, r->body_len, &error);
	if (!pool || !body || validate__network_update(body, &rules, &error)) {
		json_decref(body);
		return;
	}
	json_object_set_new(
	    rules, "allowInternetAccess",
	    json_boolean(!json_is_false(json_object_get(body, "allow_internet_access"))));
	if (storage__sandbox_set_network(pool, r->team.id, r->sandbox.id, rules, &e))
		log_warn("req=%s the network of %s is applied but not stored: %s", r->request_id,
			 r->sandbox.id, e.message);
	json_decref(rules);
	json_decref(body);
}

/* The answer to a kill or network update once its result (or deadline) is in. */
static enum MHD_Result handlers__operation_answer(struct api_request *r, const char *what)
{
	if (r->waiter.timed_out)
		return request__error(
		    r, 504, "the worker did not confirm the %s of sandbox %s within %lld ms", what,
		    r->sandbox.id, (long long)r->deadline_ms);
	if (r->waiter.result_type == KAFKA_EVENT_FAILED) {
		int code = (int)json_integer_value(json_object_get(r->waiter.result, "code"));
		const char *message =
		    json_string_value(json_object_get(r->waiter.result, "message"));

		if (code == 404)
			return handlers__not_found(r);
		if (code < 400 || code > 599)
			code = 500;
		return request__error(r, code, "%s", message ? message : "the operation failed");
	}
	if (r->route.endpoint == API_ROUTE_NETWORK)
		handlers__store_network(r);
	return request__empty(r, 204);
}

static enum MHD_Result handlers__kill(struct api_request *r, struct storage_pool *pool)
{
	enum MHD_Result ret;
	struct storage_error e;
	bool suspended;

	if (!handlers__load_sandbox(r, pool, &ret))
		return ret;
	if (!r->sandbox.host_id[0]) {
		/* Not placed on a host yet: no worker holds it, end it here
		 * (the worker that picks up the create finds it killed). */
		struct storage_sandbox_transition t = {
		    .sandbox_id = r->sandbox.id,
		    .team_id = r->team.id,
		    .from = r->sandbox.state,
		    .to = STORAGE_SANDBOX_KILLED,
		    .slot_index = -1,
		};
		int rc = storage__sandbox_transition(pool, &t, NULL, &e);

		if (rc == STORAGE_OK)
			return request__empty(r, 204);
		if (rc != STORAGE_ERR_CONFLICT)
			return request__storage_error(r, &e);
		/* It moved meanwhile (placed, or gone): look again. */
		if (!handlers__load_sandbox(r, pool, &ret))
			return ret;
		if (!r->sandbox.host_id[0])
			return request__error(r, 409, "sandbox %s is changing state, retry",
					      r->sandbox.id);
	}
	ret =
	    handlers__host_command(r, KAFKA_EVENT_KILL, NULL,
				   WANT(KAFKA_EVENT_KILLED) | WANT(KAFKA_EVENT_FAILED), &suspended);
	if (suspended || r->phase == API_PHASE_ANSWERED)
		return ret;
	return handlers__operation_answer(r, "kill");
}

static enum MHD_Result handlers__network(struct api_request *r, struct storage_pool *pool)
{
	struct api_error error;
	enum MHD_Result ret;
	json_t *body, *rules = NULL, *spec;
	bool suspended;

	body = validate__parse_body(r->body, r->body_len, &error);
	if (!body)
		return request__error(r, error.status, "%s", error.message);
	if (validate__network_update(body, &rules, &error)) {
		json_decref(body);
		return request__error(r, error.status, "%s", error.message);
	}
	json_decref(body);
	if (!handlers__load_sandbox(r, pool, &ret)) {
		json_decref(rules);
		return ret;
	}
	if (!r->sandbox.host_id[0]) {
		json_decref(rules);
		return request__error(r, 409, "sandbox %s is still starting; retry when it runs",
				      r->sandbox.id);
	}
	spec =
	    json_pack("{s:{s:O, s:O}}", "network", "allow_out", json_object_get(rules, "allowOut"),
		      "deny_out", json_object_get(rules, "denyOut"));
	json_decref(rules);
	ret = handlers__host_command(r, KAFKA_EVENT_UPDATE_NETWORK, spec,
				     WANT(KAFKA_EVENT_NETWORK_UPDATED) | WANT(KAFKA_EVENT_FAILED),
				     &suspended);
	if (suspended || r->phase == API_PHASE_ANSWERED)
		return ret;
	return handlers__operation_answer(r, "network update");
}

/* POST /timeout (absolute: now + timeout) and /refreshes (extends only). */
static enum MHD_Result handlers__timeout(struct api_request *r, struct storage_pool *pool,
					 bool refresh)
{
	struct api_error error;
	struct storage_error e;
	enum MHD_Result ret;
	json_t *body = NULL;
	int32_t seconds;
	int64_t end_at;
	bool suspended;
	int rc;

	if (r->body_len > 0 || !refresh) {
		body = validate__parse_body(r->body, r->body_len, &error);
		if (!body)
			return request__error(r, error.status, "%s", error.message);
	}
	/* E2B: /refreshes takes a duration of at most 3600 s (default 15). */
	rc = refresh
		 ? validate__seconds_field(
		       body, "duration", API_TIMEOUT_DEFAULT_S,
		       r->team.limits.max_timeout_s < 3600 ? r->team.limits.max_timeout_s : 3600,
		       &seconds, &error)
		 : validate__seconds_field(body, "timeout", 0, r->team.limits.max_timeout_s,
					   &seconds, &error);
	json_decref(body);
	if (rc)
		return request__error(r, error.status, "%s", error.message);
	if (!handlers__load_sandbox(r, pool, &ret))
		return ret;
	if (refresh && r->sandbox.end_at >= clock__realtime_ms() + (int64_t)seconds * 1000)
		return request__empty(r, 204); /* already lives longer */
	rc = storage__sandbox_set_timeout(pool, r->team.id, r->sandbox.id, seconds, &end_at, &e);
	if (rc == STORAGE_ERR_NOT_FOUND)
		return handlers__not_found(r);
	if (rc)
		return request__storage_error(r, &e);
	/* PostgreSQL holds end_at (the worker's expiry reads it); the host
	 * topic message is a hint to re-arm its timer, best effort. */
	if (r->sandbox.host_id[0])
		handlers__host_command(r, KAFKA_EVENT_SET_TIMEOUT,
				       json_pack("{s:i}", "timeout_s", seconds), 0, &suspended);
	return request__empty(r, 204);
}

/* The {timeout?} body of connect and resume: 0 when absent. */
static bool handlers__resume_timeout(struct api_request *r, int32_t *seconds, enum MHD_Result *ret)
{
	struct api_error error;
	json_t *body;
	int rc = 0;

	*seconds = 0;
	if (r->body_len == 0)
		return true;
	body = validate__parse_body(r->body, r->body_len, &error);
	if (!body) {
		*ret = request__error(r, error.status, "%s", error.message);
		return false;
	}
	if (json_object_get(body, "timeout") && !json_is_null(json_object_get(body, "timeout")))
		rc = validate__seconds_field(body, "timeout", 0, r->team.limits.max_timeout_s,
					     seconds, &error);
	json_decref(body);
	if (rc) {
		*ret = request__error(r, error.status, "%s", error.message);
		return false;
	}
	return true;
}

/* The sandbox body (as a create answers it) with status. */
static enum MHD_Result handlers__sandbox_body(struct api_request *r, struct storage_pool *pool,
					      int status)
{
	struct render_context context;

	handlers__template_version(pool, r->sandbox.template_id, r->envd_version);
	request__render_context(r, r->envd_version, &context);
	return request__json(r, status, render__created(&context, &r->sandbox, r->sandbox.host_id),
			     NULL);
}

/* The answer to a resume (connect of a paused sandbox, or /resume) once
 * its result is in: 201 with the sandbox, as E2B answers a resume. */
static enum MHD_Result handlers__resume_answer(struct api_request *r)
{
	struct storage_pool *pool = api__pool();
	struct storage_sandbox fresh;
	struct storage_error e;

	if (r->waiter.timed_out || r->waiter.result_type == KAFKA_EVENT_FAILED)
		return handlers__operation_answer(r, "resume");
	if (pool &&
	    storage__sandbox_get(pool, r->team.id, r->sandbox.id, &fresh, &e) == STORAGE_OK) {
		storage__sandbox_clear(&r->sandbox);
		r->sandbox = fresh;
	}
	return pool ? handlers__sandbox_body(r, pool, 201)
		    : request__error(r, 503, "database unavailable, retry later");
}

/* Resumes r->sandbox (paused, or on its way to or from it) through its
 * host's worker, which moves the row (paused -> resuming -> running) and
 * sets end_at = now + seconds (E2B's default when 0). */
static enum MHD_Result handlers__resume_sandbox(struct api_request *r, int32_t seconds)
{
	enum MHD_Result ret;
	bool suspended;

	if (seconds <= 0)
		seconds = API_TIMEOUT_DEFAULT_S < r->team.limits.max_timeout_s
			      ? API_TIMEOUT_DEFAULT_S
			      : r->team.limits.max_timeout_s;
	ret = handlers__host_command(
	    r, KAFKA_EVENT_RESUME, json_pack("{s:i}", "timeout_s", seconds),
	    WANT(KAFKA_EVENT_RESUMED) | WANT(KAFKA_EVENT_FAILED), &suspended);
	if (suspended || r->phase == API_PHASE_ANSWERED)
		return ret;
	return handlers__resume_answer(r);
}

static bool handlers__is_paused(enum storage_sandbox_state state)
{
	return state == STORAGE_SANDBOX_PAUSED || state == STORAGE_SANDBOX_PAUSING ||
	       state == STORAGE_SANDBOX_RESUMING;
}

/* POST /sandboxes/{id}/connect and POST /v2/sandboxes/{id}/connect
 * {timeout?}: the SDK's Sandbox.connect. A running sandbox answers 200
 * with the create body (tokens re-derived); timeout, when given, extends
 * end_at to now + timeout (never shortens, capped at the team max). A
 * paused one is resumed first (end_at = now + timeout) and answers 201. */
static enum MHD_Result handlers__connect(struct api_request *r, struct storage_pool *pool)
{
	struct storage_error e;
	enum MHD_Result ret;
	int32_t seconds = 0;
	int64_t end_at;
	bool suspended;
	int rc = 0;

	if (!handlers__resume_timeout(r, &seconds, &ret))
		return ret;
	if (!handlers__load_sandbox(r, pool, &ret))
		return ret;
	if (handlers__is_paused(r->sandbox.state) && r->sandbox.host_id[0])
		return handlers__resume_sandbox(r, seconds);
	if (r->sandbox.state != STORAGE_SANDBOX_RUNNING)
		return request__error(r, 409, "sandbox %s is %s, not running", r->sandbox.id,
				      storage__sandbox_state_name(r->sandbox.state));
	if (seconds > 0 && r->sandbox.end_at < clock__realtime_ms() + (int64_t)seconds * 1000) {
		rc = storage__sandbox_set_timeout(pool, r->team.id, r->sandbox.id, seconds, &end_at,
						  &e);
		if (rc == STORAGE_ERR_NOT_FOUND)
			return handlers__not_found(r);
		if (rc)
			return request__storage_error(r, &e);
		if (r->sandbox.host_id[0])
			handlers__host_command(r, KAFKA_EVENT_SET_TIMEOUT,
					       json_pack("{s:i}", "timeout_s", seconds), 0,
					       &suspended);
	}
	return handlers__sandbox_body(r, pool, 200);
}

/* POST /sandboxes/{id}/resume {timeout?, autoPause?}: E2B's older resume.
 * 201 with the sandbox; 409 when it is running; 404 when not paused. */
static enum MHD_Result handlers__resume(struct api_request *r, struct storage_pool *pool)
{
	enum MHD_Result ret;
	int32_t seconds = 0;

	if (!handlers__resume_timeout(r, &seconds, &ret))
		return ret;
	if (!handlers__load_sandbox(r, pool, &ret))
		return ret;
	if (r->sandbox.state == STORAGE_SANDBOX_RUNNING)
		return request__error(r, 409, "sandbox %s is already running", r->sandbox.id);
	if (!handlers__is_paused(r->sandbox.state) || !r->sandbox.host_id[0])
		return request__error(r, 404, "paused sandbox %.64s not found", r->sandbox.id);
	return handlers__resume_sandbox(r, seconds);
}

/* POST /sandboxes/{id}/pause {memory?}: running -> pausing here (one of
 * two racing pauses wins; the other is the 409 "already paused"), then
 * the worker freezes it (jail) or snapshots and stops its VMM (vm) and
 * answers `paused` (204) or `failed` (its code). */
/* Moves r->sandbox running -> pausing (compare-and-set). False with the
 * answer queued in *ret when it is not running: 409 when already paused
 * (or pausing: another pause won), else 400; 404 when gone. */
static bool handlers__begin_pause(struct api_request *r, struct storage_pool *pool,
				  const struct storage_sandbox_transition *t, enum MHD_Result *ret)
{
	struct storage_error e;
	int rc = STORAGE_ERR_CONFLICT;

	if (r->sandbox.state == STORAGE_SANDBOX_RUNNING && r->sandbox.host_id[0]) {
		rc = storage__sandbox_transition(pool, t, NULL, &e);
		if (rc == STORAGE_OK)
			return true;
		if (rc != STORAGE_ERR_CONFLICT) {
			*ret = request__storage_error(r, &e);
			return false;
		}
		/* It moved meanwhile: answer from the state that won. */
		if (!handlers__load_sandbox(r, pool, ret))
			return false;
	}
	if (r->sandbox.state == STORAGE_SANDBOX_PAUSED ||
	    r->sandbox.state == STORAGE_SANDBOX_PAUSING)
		*ret = request__error(r, 409, "sandbox %s is already paused", r->sandbox.id);
	else
		*ret =
		    request__error(r, 400, "sandbox %s is %s; only a running sandbox can be paused",
				   r->sandbox.id, storage__sandbox_state_name(r->sandbox.state));
	return false;
}

static enum MHD_Result handlers__pause(struct api_request *r, struct storage_pool *pool)
{
	struct storage_sandbox_transition t = {
	    .sandbox_id = r->route.sandbox_id,
	    .team_id = r->team.id,
	    .from = STORAGE_SANDBOX_RUNNING,
	    .to = STORAGE_SANDBOX_PAUSING,
	    .slot_index = -1,
	};
	struct storage_error e;
	enum MHD_Result ret;
	bool suspended;

	if (!handlers__load_sandbox(r, pool, &ret) || !handlers__begin_pause(r, pool, &t, &ret))
		return ret;
	ret =
	    handlers__host_command(r, KAFKA_EVENT_PAUSE, NULL,
				   WANT(KAFKA_EVENT_PAUSED) | WANT(KAFKA_EVENT_FAILED), &suspended);
	if (suspended)
		return ret;
	if (r->phase == API_PHASE_ANSWERED) {
		/* Not queued: undo pausing, nothing will freeze it. */
		t.from = STORAGE_SANDBOX_PAUSING;
		t.to = STORAGE_SANDBOX_RUNNING;
		storage__sandbox_transition(pool, &t, NULL, &e);
		return ret;
	}
	return handlers__operation_answer(r, "pause");
}

/* ---- snapshots: POST /sandboxes/{id}/snapshots, GET /snapshots ---- */

/* The answer once the worker captured (201 {snapshotID, names}) or not
 * (its code: 403 over the quota, 501 a vm sandbox, 404 gone). */
enum MHD_Result handlers__snapshot_answer(struct api_request *r)
{
	const char *id;
	json_t *body, *names;

	if (r->waiter.timed_out || r->waiter.result_type == KAFKA_EVENT_FAILED)
		return handlers__operation_answer(r, "snapshot");
	id = json_string_value(json_object_get(r->waiter.result, "snapshot_id"));
	if (!id)
		return request__error(r, 500, "the worker's answer has no snapshot id");
	names = json_pack("[s]", id);
	body = json_loadb(r->body, r->body_len, 0, NULL);
	if (json_is_string(json_object_get(body, "name")))
		json_array_append(names, json_object_get(body, "name"));
	json_decref(body);
	return request__json(r, 201, json_pack("{s:s, s:o}", "snapshotID", id, "names", names),
			     NULL);
}

/* The body's optional name: a string of 1..128 printable ASCII
 * characters. 0, or -1 with a 400 queued in *ret. */
static int handlers__snapshot_name(struct api_request *r, json_t **name, enum MHD_Result *ret)
{
	json_t *body = r->body_len ? json_loadb(r->body, r->body_len, 0, NULL) : json_object();
	const char *text;

	*name = NULL;
	if (!json_is_object(body)) {
		json_decref(body);
		*ret = request__error(r, 400, "the body must be a JSON object");
		return -1;
	}
	text = json_string_value(json_object_get(body, "name"));
	if (json_object_get(body, "name") && !json_is_null(json_object_get(body, "name"))) {
		size_t len = text ? strlen(text) : 0;
		bool ok = len > 0 && len <= 128;

		for (size_t i = 0; ok && i < len; i++)
			ok = text[i] >= 0x20 && text[i] < 0x7f;
		if (!ok) {
			json_decref(body);
			*ret =
			    request__error(r, 400, "name must be 1-128 printable ASCII characters");
			return -1;
		}
		*name = json_string(text);
	}
	json_decref(body);
	return 0;
}

/* POST /sandboxes/{id}/snapshots {name?}: a running or paused sandbox's
 * files as a new template of the team, captured by its host's worker.
 * 403 when the team's snapshots already hold snapshot_quota_mb. */
enum MHD_Result handlers__snapshot_create(struct api_request *r, struct storage_pool *pool)
{
	int64_t quota = config__get_int("snapshot_quota_mb", 10240) * 1024 * 1024, used = 0;
	char id[IDS_SANDBOX_ID_LEN + 8], sandbox_part[IDS_SANDBOX_ID_LEN + 1];
	struct storage_error e;
	enum MHD_Result ret;
	json_t *name, *spec;
	bool suspended;

	if (!handlers__load_sandbox(r, pool, &ret))
		return ret;
	if (r->sandbox.state != STORAGE_SANDBOX_RUNNING &&
	    r->sandbox.state != STORAGE_SANDBOX_PAUSED)
		return request__error(r, 409,
				      "sandbox %s is %s; only a running or paused sandbox "
				      "can be snapshotted",
				      r->sandbox.id, storage__sandbox_state_name(r->sandbox.state));
	if (!r->sandbox.host_id[0])
		return request__error(r, 409, "sandbox %s is still starting", r->sandbox.id);
	if (storage__snapshot_team_bytes(pool, r->team.id, &used, &e))
		return request__storage_error(r, &e);
	if (used >= quota)
		return request__error(r, 403,
				      "snapshot storage quota exceeded: the team's snapshots "
				      "hold %lld of %lld bytes (setting snapshot_quota_mb); delete "
				      "one with DELETE /templates/{id}",
				      (long long)used, (long long)quota);
	if (handlers__snapshot_name(r, &name, &ret))
		return ret;
	if (ids__sandbox_id(sandbox_part)) {
		json_decref(name);
		return request__error(r, 500, "no random source");
	}
	snprintf(id, sizeof(id), "snap-%s", sandbox_part);
	spec = json_pack("{s:s, s:s, s:I}", "snapshot_id", id, "template_id",
			 r->sandbox.template_id, "max_bytes", (json_int_t)(quota - used));
	if (name)
		json_object_set_new(spec, "name", name);
	ret = handlers__host_command(r, KAFKA_EVENT_SNAPSHOT, spec,
				     WANT(KAFKA_EVENT_SNAPSHOTTED) | WANT(KAFKA_EVENT_FAILED),
				     &suspended);
	if (suspended || r->phase == API_PHASE_ANSWERED)
		return ret;
	return handlers__snapshot_answer(r);
}

/* GET /snapshots?sandboxID=&name=: the team's snapshots, newest first
 * (one page: no nextToken). */
static enum MHD_Result handlers__snapshot_list(struct api_request *r, struct storage_pool *pool)
{
	struct storage_error e;
	json_t *list = NULL;

	if (storage__snapshot_list(pool, r->team.id, request__query(r, "sandboxID"),
				   request__query(r, "name"), &list, &e))
		return request__storage_error(r, &e);
	return request__json(r, 200, list, NULL);
}

/* ---- GET /sandboxes/{id}/metrics, GET /sandboxes/metrics ---- */

/* The samples of one sandbox in [start, end] (Unix seconds; default: all
 * that are kept, up to now), oldest first: the SDK's getMetrics({start, end}). */
static enum MHD_Result handlers__metrics(struct api_request *r, struct storage_pool *pool)
{
	struct storage_sandbox_metric *samples = NULL;
	int64_t start_s, end_s, start_ms, end_ms;
	struct api_error error;
	struct storage_error e;
	enum MHD_Result ret;
	json_t *items;
	size_t count = 0;

	if (query__unix_seconds("start", request__query(r, "start"), &start_s, &error) ||
	    query__unix_seconds("end", request__query(r, "end"), &end_s, &error))
		return request__error(r, error.status, "%s", error.message);
	if (start_s >= 0 && end_s >= 0 && start_s > end_s)
		return request__error(r, 400, "start must not be after end");
	if (!handlers__load_sandbox(r, pool, &ret))
		return ret;
	start_ms = start_s >= 0 ? start_s * 1000 : 0;
	end_ms = end_s >= 0 ? end_s * 1000 + 999 : clock__realtime_ms();
	if (storage__sandbox_metrics_list(pool, r->team.id, r->sandbox.id, start_ms, end_ms,
					  &samples, &count, &e))
		return request__storage_error(r, &e);
	items = json_array();
	for (size_t i = 0; items && i < count; i++)
		json_array_append_new(items, render__metric(&samples[i]));
	free(samples);
	if (!items)
		return request__error(r, 500, "out of memory");
	return request__json(r, 200, items, NULL);
}

/* {"sandboxes": {id: newest SandboxMetric}} for ?sandbox_ids=a,b (the
 * team's live sandboxes among them that have a sample). */
static enum MHD_Result handlers__metrics_list(struct api_request *r, struct storage_pool *pool)
{
	struct storage_sandbox_metric *samples = NULL;
	char(*ids)[24] = calloc(STORAGE_PAGE_LIMIT_MAX, sizeof(*ids));
	const char *id_list[STORAGE_PAGE_LIMIT_MAX];
	size_t id_count = 0, count = 0;
	struct api_error error;
	struct storage_error e;
	enum MHD_Result ret;
	json_t *by_id;

	if (!ids)
		return request__error(r, 500, "out of memory");
	if (query__sandbox_ids(request__query(r, "sandbox_ids"), ids, STORAGE_PAGE_LIMIT_MAX,
			       &id_count, &error)) {
		ret = request__error(r, error.status, "%s", error.message);
		goto out;
	}
	for (size_t i = 0; i < id_count; i++)
		id_list[i] = ids[i];
	if (storage__sandbox_metrics_latest(pool, r->team.id, id_list, id_count, &samples, &count,
					    &e)) {
		ret = request__storage_error(r, &e);
		goto out;
	}
	by_id = json_object();
	for (size_t i = 0; by_id && i < count; i++)
		json_object_set_new(by_id, samples[i].sandbox_id, render__metric(&samples[i]));
	ret = by_id ? request__json(r, 200, json_pack("{s:o}", "sandboxes", by_id), NULL)
		    : request__error(r, 500, "out of memory");
out:
	free(samples);
	free(ids);
	return ret;
}

/* ---- GET /sandboxes/{id}/logs, GET /v2/sandboxes/{id}/logs ---- */

/* The query of either version: v1 ?start=&limit= (forward from start),
 * v2 ?cursor=&limit=&direction=&level=&search=. 0, or -1 with error. */
static int handlers__logs_query(struct api_request *r, bool v2, struct storage_logs_query *query,
				struct api_error *error)
{
	int64_t cursor, limit;

	memset(query, 0, sizeof(*query));
	query->forward = true;
	if (query__int_range("limit", request__query(r, "limit"), 1, STORAGE_LOGS_LIST_MAX,
			     STORAGE_LOGS_LIST_MAX, &limit, error))
		return -1;
	query->limit = (int)limit;
	if (!v2)
		return query__int_range("start", request__query(r, "start"), 0, INT64_MAX / 2, 0,
					&query->cursor_ms, error);
	if (query__direction(request__query(r, "direction"), &query->forward, error) ||
	    query__log_level(request__query(r, "level"), &query->min_level, error) ||
	    query__int_range("cursor", request__query(r, "cursor"), 0, INT64_MAX / 2, -1, &cursor,
			     error))
		return -1;
	query->cursor_ms = cursor >= 0 ? cursor : query->forward ? 0 : clock__realtime_ms();
	query->search = request__query(r, "search");
	if (query->search && strlen(query->search) > 256) {
		error->status = 400;
		snprintf(error->message, sizeof(error->message),
			 "search must be at most 256 characters");
		return -1;
	}
	return 0;
}

/* A sandbox's log lines (its console and its lifecycle), also after it
 * ended, until the retention removes them. */
static enum MHD_Result handlers__logs(struct api_request *r, struct storage_pool *pool, bool v2)
{
	struct storage_logs_query query;
	struct storage_log_line *lines = NULL;
	struct api_error error;
	struct storage_error e;
	json_t *entries, *plain, *body;
	size_t count = 0;
	int rc;

	if (handlers__logs_query(r, v2, &query, &error))
		return request__error(r, error.status, "%s", error.message);
	if (!ids__is_sandbox_id(r->route.sandbox_id))
		return handlers__not_found(r);
	rc = storage__sandbox_get(pool, r->team.id, r->route.sandbox_id, NULL, &e);
	if (rc == STORAGE_ERR_NOT_FOUND)
		return handlers__not_found(r);
	if (rc || storage__sandbox_logs_list(pool, r->team.id, r->route.sandbox_id, &query, &lines,
					     &count, &e))
		return request__storage_error(r, &e);
	entries = json_array();
	plain = v2 ? NULL : json_array();
	for (size_t i = 0; entries && i < count; i++) {
		json_array_append_new(entries, render__log_entry(&lines[i]));
		if (plain)
			json_array_append_new(plain, render__log_line(&lines[i]));
	}
	storage__sandbox_logs_free(lines, count);
	body = v2 ? json_pack("{s:o}", "logs", entries)
		  : json_pack("{s:o, s:o}", "logs", plain, "logEntries", entries);
	return body ? request__json(r, 200, body, NULL) : request__error(r, 500, "out of memory");
}

/* ---- dispatch ---- */

static bool handlers__authenticate(struct api_request *r, struct storage_pool *pool,
				   enum MHD_Result *ret)
{
	const char *key = MHD_lookup_connection_value(r->connection, MHD_HEADER_KIND, "X-API-Key");
	char hash[TOKENS_SHA256_HEX_LEN + 1];
	struct storage_error e;
	int rc;

	if (!key || !*key) {
		*ret = request__error(r, 401, "missing X-API-Key header");
		return false;
	}
	tokens__sha256_hex(key, strlen(key), hash);
	rc = storage__api_key_authenticate(pool, hash, &r->team, &e);
	if (rc == STORAGE_ERR_NOT_FOUND) {
		*ret = request__error(r, 401, "Invalid API key");
		return false;
	}
	if (rc) {
		*ret = request__storage_error(r, &e);
		return false;
	}
	return true;
}

enum MHD_Result handlers__dispatch(struct api_request *r)
{
	struct storage_pool *pool = api__pool();
	struct limits_decision decision;
	enum MHD_Result ret;

	if (r->phase == API_PHASE_WAITING) {
		r->phase = API_PHASE_NEW;
		if (r->route.endpoint == API_ROUTE_CREATE)
			return handlers__create_answer(r);
		if (r->route.endpoint == API_ROUTE_CONNECT || r->route.endpoint == API_ROUTE_RESUME)
			return handlers__resume_answer(r);
		if (r->route.endpoint == API_ROUTE_PAUSE)
			return handlers__operation_answer(r, "pause");
		if (r->route.endpoint == API_ROUTE_SNAPSHOT_CREATE)
			return handlers__snapshot_answer(r);
		if (r->route.endpoint == API_ROUTE_FORK)
			return fork_api__resume(r);
		return handlers__operation_answer(
		    r, r->route.endpoint == API_ROUTE_KILL ? "kill" : "network update");
	}
	switch (r->route.endpoint) {
	case API_ROUTE_NOT_FOUND:
		return request__error(r, 404, "no such endpoint: %s %.100s", r->method, r->path);
	case API_ROUTE_BAD_METHOD: {
		const char *headers[] = {"Allow", r->route.allowed_methods, NULL};

		return request__json(r, 405, render__error(405, "method not allowed"), headers);
	}
	case API_ROUTE_HEALTH:
		/* Healthy means able to serve: the database must answer now. */
		if (!pool || storage__ping(pool, NULL) != STORAGE_OK)
			return request__error(r, 503, "database unavailable, retry later");
		return request__json(r, 200, json_pack("{s:s}", "status", "ok"), NULL);
	default:
		break;
	}
	if (!pool)
		return request__error(r, 503, "database unavailable, retry later");
	if (r->route.endpoint == API_ROUTE_TEMPLATE_UPLOAD)
		return templates_api__upload_finish(r); /* signed URL, no API key */
	if (!handlers__authenticate(r, pool, &ret))
		return ret;
	if (route__is_lifecycle(r->route.endpoint)) {
		limits__lifecycle(r->team.id, &r->team.limits, &decision);
		if (!decision.allowed) {
			handlers__record_rejection(r, pool, decision.limit_name);
			return request__rate_limited(r, &decision);
		}
	}
	switch (r->route.endpoint) {
	case API_ROUTE_CREATE:
		return handlers__create(r, pool);
	case API_ROUTE_LIST_V1:
		return handlers__list(r, pool, false);
	case API_ROUTE_LIST_V2:
		return handlers__list(r, pool, true);
	case API_ROUTE_GET:
		return handlers__get(r, pool);
	case API_ROUTE_KILL:
		return handlers__kill(r, pool);
	case API_ROUTE_TIMEOUT:
		return handlers__timeout(r, pool, false);
	case API_ROUTE_REFRESH:
		return handlers__timeout(r, pool, true);
	case API_ROUTE_PAUSE:
		return handlers__pause(r, pool);
	case API_ROUTE_RESUME:
		return handlers__resume(r, pool);
	case API_ROUTE_NETWORK:
		return handlers__network(r, pool);
	case API_ROUTE_CONNECT:
		return handlers__connect(r, pool);
	case API_ROUTE_FORK:
		return fork_api__start(r, pool);
	case API_ROUTE_METRICS:
		return handlers__metrics(r, pool);
	case API_ROUTE_METRICS_LIST:
		return handlers__metrics_list(r, pool);
	case API_ROUTE_LOGS:
		return handlers__logs(r, pool, false);
	case API_ROUTE_LOGS_V2:
		return handlers__logs(r, pool, true);
	case API_ROUTE_UNIMPLEMENTED:
		return request__error(r, 501, "%s is not implemented by warren (%s %.100s)",
				      r->route.feature ? r->route.feature : "this route", r->method,
				      r->path);
	case API_ROUTE_VOLUME_CREATE:
	case API_ROUTE_VOLUME_LIST:
	case API_ROUTE_VOLUME_GET:
	case API_ROUTE_VOLUME_DELETE:
		return volumes_api__dispatch(r, pool);
	case API_ROUTE_SNAPSHOT_CREATE:
		return handlers__snapshot_create(r, pool);
	case API_ROUTE_SNAPSHOT_LIST:
		return handlers__snapshot_list(r, pool);
	default:
		if (r->route.endpoint >= API_ROUTE_TEMPLATE_CREATE)
			return templates_api__dispatch(r, pool);
		return request__error(r, 404, "no such endpoint");
	}
}

/* lifecycle: what the worker does for each command of the Kafka contract
 * (docs/events/README.md). Every transition is written to PostgreSQL
 * before the result event is produced and before the offset is committed,
 * so a redelivered command finds its outcome and repeats only the event. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agent_client.h"
#include "create_pool.h"
#include "warm_pool.h"
#include "warren/clock.h"
#include "warren/config.h"
#include "warren/ids.h"
#include "warren/json_util.h"
#include "warren/log.h"
#include "warren/templates.h"
#include "build.h"
#include "warren/tokens.h"
#include "volumes.h"
#include "snapshot.h"
#include "warren/snapshots.h"
#include "worker.h"

#define RESULT_TIMEOUT_MS 10000

/* ---- the table of live sandboxes ---- */

static struct live_sandbox *worker__find_locked(struct worker *worker, const char *sandbox_id)
{
	for (struct live_sandbox *s = worker->sandboxes; s; s = s->next)
		if (!strcmp(s->id, sandbox_id))
			return s;
	return NULL;
}

/* worker__find_locked once no other thread holds the sandbox (holds 0):
 * waits for worker->released, the lock given up meanwhile. */
static struct live_sandbox *worker__find_unheld_locked(struct worker *worker,
						       const char *sandbox_id)
{
	struct live_sandbox *sandbox;

	while ((sandbox = worker__find_locked(worker, sandbox_id)) && sandbox->holds)
		pthread_cond_wait(&worker->released, &worker->lock);
	return sandbox;
}

/* Holds the live sandbox (NULL when not here) so that its instance can be
 * used without the table lock for an operation that takes long (a vm's
 * pause, resume or snapshot export); worker__release ends it. */
static struct live_sandbox *worker__hold(struct worker *worker, const char *sandbox_id)
{
	struct live_sandbox *sandbox;

	pthread_mutex_lock(&worker->lock);
	sandbox = worker__find_unheld_locked(worker, sandbox_id);
	if (sandbox)
		sandbox->holds++;
	pthread_mutex_unlock(&worker->lock);
	return sandbox;
}

static void worker__release(struct worker *worker, struct live_sandbox *sandbox)
{
	pthread_mutex_lock(&worker->lock);
	sandbox->holds--;
	pthread_cond_broadcast(&worker->released);
	pthread_mutex_unlock(&worker->lock);
}

/* Removes and returns the live sandbox (NULL when not here), once no
 * other thread holds it. */
static struct live_sandbox *worker__take(struct worker *worker, const char *sandbox_id)
{
	struct live_sandbox **link, *found = NULL;

	pthread_mutex_lock(&worker->lock);
	worker__find_unheld_locked(worker, sandbox_id);
	for (link = &worker->sandboxes; *link; link = &(*link)->next) {
		if (!strcmp((*link)->id, sandbox_id)) {
			found = *link;
			*link = found->next;
			worker->live_count--;
			break;
		}
	}
	pthread_mutex_unlock(&worker->lock);
	return found;
}

/* Stops the runtime and gives the slot back; frees the record. */
static void worker__teardown(struct worker *worker, struct live_sandbox *sandbox)
{
	if (!sandbox)
		return;
	runtime__stop(sandbox->instance);
	if (worker->net && sandbox->slot >= 0 && net_pool__release(worker->net, sandbox->slot))
		log_warn("sandbox %s: slot %d could not be recycled; it was destroyed", sandbox->id,
			 sandbox->slot);
	free(sandbox);
}

/* ---- results ---- */

/* Publishes command's outcome as a result event (result reference
 * stolen), after recording it when record is set. The record's commit
 * also notifies the API (storage__request_finish_notify), which answers
 * its client from that without waiting for the event's trip through
 * Kafka. A request finished earlier (a redelivery) keeps its first
 * outcome; only the event repeats. */
static int worker__emit(struct worker *worker, const struct kafka_event *command,
			enum kafka_event_type type, json_t *result, bool record)
{
	enum kafka_event_error error;
	struct storage_error err;
	struct kafka_event ev;
	char reason[256], *text;
	int rc;

	if (kafka_event__init_result(&ev, type, command, worker->host_id, result, reason,
				     sizeof(reason)) != KAFKA_EVENT_OK) {
		log_error("request %s: result %s does not encode: %s", command->request_id,
			  kafka_event__type_name(type), reason);
		return -EINVAL;
	}
	text = kafka_event__encode(&ev, &error, reason, sizeof(reason));
	if (!text) {
		log_error("request %s: result %s does not encode: %s", command->request_id,
			  kafka_event__type_name(type), reason);
		kafka_event__clear(&ev);
		return -EINVAL;
	}
	rc = !record
		 ? STORAGE_OK
		 : storage__request_finish_notify(
		       worker->storage, command->request_id,
		       type == KAFKA_EVENT_FAILED ? STORAGE_REQUEST_FAILED : STORAGE_REQUEST_DONE,
		       ev.result, text, &err);
	if (rc == STORAGE_ERR_UNAVAILABLE) {
		rc = -EAGAIN;
		goto out;
	}
	if (rc && rc != STORAGE_ERR_CONFLICT && rc != STORAGE_ERR_NOT_FOUND)
		log_warn("request %s: recording the outcome failed: %s", command->request_id,
			 err.message);
	rc = kafka_producer__produce_sync(worker->producer, worker->events_topic, ev.sandbox_id,
					  strlen(ev.sandbox_id), text, strlen(text), NULL, 0,
					  RESULT_TIMEOUT_MS, NULL);
	if (rc) {
		log_error("request %s: producing %s failed (%d)", command->request_id,
			  kafka_event__type_name(type), rc);
		rc = -EAGAIN;
	}
out:
	free(text);
	kafka_event__clear(&ev);
	return rc;
}

static int worker__finish(struct worker *worker, const struct kafka_event *command,
			  enum kafka_event_type type, json_t *result)
{
	return worker__emit(worker, command, type, result, true);
}

static int worker__publish(struct worker *worker, const struct kafka_event *command,
			   enum kafka_event_type type, json_t *result)
{
	return worker__emit(worker, command, type, result, false);
}

/* A `failed` result (docs/events/failed.schema.json): the command, the
 * HTTP status the API should answer with, and the reason. */
static json_t *worker__failure(const struct kafka_event *command, int code, const char *reason)
{
	return json_pack("{s:s, s:i, s:s}", "command", kafka_event__type_name(command->type),
			 "code", code, "message", reason && *reason ? reason : "failed");
}

/* The `failed` result of a recorded failure, rebuilt from its code and
 * message: the API records its own refusals too (a create it refused
 * whose command reached Kafka after all), and a row may predate the
 * `command` member. */
static json_t *worker__recorded_failure(const struct kafka_event *command, const json_t *recorded)
{
	json_int_t code = json_integer_value(json_object_get(recorded, "code"));

	return worker__failure(command, code >= 400 && code <= 599 ? (int)code : 500,
			       json_string_value(json_object_get(recorded, "message")));
}

/* A `created` result (docs/events/created.schema.json). */
static json_t *worker__created_result(struct worker *worker, const struct storage_sandbox *row,
				      const char *envd_version)
{
	char end_at[32];

	clock__format_rfc3339(row->end_at, end_at);
	return json_pack("{s:s, s:s, s:s, s:s}", "template_id", row->template_id, "envd_version",
			 envd_version && *envd_version ? envd_version : "unknown", "end_at", end_at,
			 "client_id", row->host_id[0] ? row->host_id : worker->host_id);
}

/* ---- create ---- */

/* A sandbox's vCPUs (jail: CPU time) and memory: its template's
 * cpu_count/memory_mb when template.json has them, else the settings
 * sandbox_cpu_count (2) and sandbox_memory_mb (512), the same ones
 * warren-api reports as cpuCount/memoryMB. */
void worker__resources(const char *template_id, uint32_t *vcpus, uint32_t *memory_mib)
{
	struct template_info info;
	char err[256];

	*vcpus = (uint32_t)config__get_int("sandbox_cpu_count", 2);
	*memory_mib = (uint32_t)config__get_int("sandbox_memory_mb", 512);
	if (templates__read(templates__dir(), template_id, &info, err, sizeof(err)))
		return; /* the runtime reports a missing template itself */
	if (info.cpu_count)
		*vcpus = info.cpu_count;
	if (info.memory_mb)
		*memory_mib = info.memory_mb;
}

/* The E2B network object of a create/update spec, in net_policy's names. */
static json_t *worker__policy_spec(const json_t *spec)
{
	const json_t *network = json_object_get(spec, "network");
	json_t *policy = json_object();
	const json_t *list;

	if ((list = json_object_get(network, "allow_out")))
		json_object_set(policy, "allowOut", (json_t *)list);
	if ((list = json_object_get(network, "deny_out")))
		json_object_set(policy, "denyOut", (json_t *)list);
	if (json_is_boolean(json_object_get(spec, "allow_internet_access")))
		json_object_set(policy, "allow_internet_access",
				json_object_get(spec, "allow_internet_access"));
	return policy;
}

/* Makes sure the sandbox row exists: commands produced straight to Kafka
 * (not through warren-api) are admitted here against the team's limit. */
static int worker__ensure_row(struct worker *worker, const struct kafka_event *command,
			      struct storage_sandbox *row, char *reason, size_t reason_len)
{
	struct storage_error err;
	struct storage_admission admission;
	const json_t *spec = command->spec;
	const json_t *network = json_object_get(spec, "network");
	struct storage_sandbox_new fresh = {
	    .id = command->sandbox_id,
	    .team_id = command->team_id,
	    .template_id = json_util__string(spec, "template_id", ""),
	    .request_id = command->request_id,
	    .timeout_s = (int32_t)json_util__int(spec, "timeout_s", 15),
	    .network = network,
	    .metadata = json_object_get(spec, "metadata"),
	    .secure = json_util__bool(spec, "secure", true),
	    .allow_public_traffic = json_util__bool(network, "allow_public_traffic", true),
	    .mask_request_host = json_util__string(network, "mask_request_host", NULL),
	};
	int rc = storage__sandbox_get_internal(worker->storage, command->sandbox_id, row, &err);

	if (rc != STORAGE_ERR_NOT_FOUND)
		return rc == STORAGE_ERR_UNAVAILABLE ? -EAGAIN : rc ? -EIO : 0;
	rc = storage__sandbox_admit(worker->storage, &fresh, &admission, row, &err);
	if (rc == STORAGE_ERR_UNAVAILABLE)
		return -EAGAIN;
	if (rc) {
		snprintf(reason, reason_len, "the sandbox could not be recorded: %s", err.message);
		return -EINVAL;
	}
	if (!admission.admitted) {
		snprintf(reason, reason_len,
			 "you have reached the maximum number of concurrent sandboxes (%d)",
			 admission.limit);
		return -EDQUOT;
	}
	/* auto_pause: a timeout pauses it instead (E2B's autoPause). */
	if (json_util__bool(spec, "auto_pause", false) &&
	    storage__sandbox_set_lifecycle(worker->storage, command->sandbox_id, true,
					   json_util__bool(spec, "auto_resume", false),
					   &err) == STORAGE_OK)
		row->pause_on_timeout = true;
	return 0;
}

/* The volumes the API claimed for a create whose spec says volume_mounts
 * (docs/volumes.md): jail only; their images are made here on first use.
 * 0 (out->count 0 when none), -EAGAIN (PostgreSQL away), or -1 with the
 * reason and the failure's HTTP code. */
static int worker__create_volumes(struct worker *worker, const struct kafka_event *command,
				  struct worker_volumes *out, int *failure_code, char *reason,
				  size_t reason_len)
{
	int rc;

	if (json_integer_value(json_object_get(command->spec, "volume_mounts")) <= 0)
		return 0;
	if (worker->runtime == RUNTIME_VM) {
		snprintf(reason, reason_len,
			 "volumes need the jail runtime; host %s runs vm "
			 "(docs/volumes.md)",
			 worker->host_id);
		*failure_code = 400;
		return -1;
	}
	rc = worker_volumes__prepare(worker, command->sandbox_id, out, reason, reason_len);
	if (rc == -EAGAIN)
		return rc;
	if (rc) {
		*failure_code = rc == -EXDEV ? 503 : 500;
		return -1;
	}
	return 0;
}

/* ---- create, in steps (workers/README.md, "Create") ----
 * Each step reads and fills the create's context and answers how to go
 * on; worker__create runs them in order and ends the create in one place. */

enum create_outcome {
	CREATE_NEXT = 0,    /* go on with the next step */
	CREATE_DONE,	    /* the outcome is published already (ctx->rc) */
	CREATE_FAIL,	    /* move the row to failed, publish ctx->reason */
	CREATE_FAIL_NO_ROW, /* publish ctx->reason; there is no row of ours to move */
	CREATE_RETRY,	    /* PostgreSQL or Kafka away: not committed, -EAGAIN */
};

enum create_timing {
	TIME_CHECK,
	TIME_LOOKUP,
	TIME_SLOT,
	TIME_RUNTIME,
	TIME_HEALTH,
	TIME_INIT,
	TIME_PERSIST,
	TIME_COUNT
};

struct create_ctx {
	struct worker *worker;
	const struct kafka_event *command;
	const json_t *spec;
	bool secure;
	struct storage_sandbox row;
	struct storage_team team;
	struct storage_template template_row;
	struct worker_volumes volumes;
	struct live_sandbox *sandbox; /* ours until it is in the live list */
	struct net_policy *policy;
	json_t *policy_spec;
	bool claimed;	  /* a warm sandbox (warm_pool.h) */
	bool joined_live; /* counted in worker->creates_live */
	char access_token[TOKENS_SHA256_HEX_LEN + 1];
	char token_hash[80];
	char slot_address[INET_ADDRSTRLEN];
	const char *agent_address;
	char reason[1024];
	int failure_code;
	int rc;
	uint64_t started_ms;
	uint64_t step_ns[TIME_COUNT]; /* for the timing debug line (bench/pipeline reads it) */
};

/* Publishes the outcome of a redelivered create whose sandbox is no
 * longer starting: the recorded one when the request finished; when the
 * worker died between the durable `running` and recording the outcome
 * (row->started_at set, request pending), the created result that was
 * due. Returns 1 when it published, 0 when there is no such outcome (or
 * the recorded one is not a valid result), -EAGAIN when PostgreSQL is
 * away or the produce failed. */
static int worker__repeat_outcome(struct worker *worker, const struct kafka_event *command,
				  const struct storage_sandbox *row,
				  const struct storage_template *template_row)
{
	struct storage_request request = {0};
	struct storage_error err;
	int rc = storage__request_get(worker->storage, command->request_id, &request, &err);

	if (rc == STORAGE_ERR_UNAVAILABLE)
		return -EAGAIN;
	if (rc || strcmp(request.sandbox_id, command->sandbox_id)) {
		rc = 0;
	} else if (request.status != STORAGE_REQUEST_PENDING && json_is_object(request.result)) {
		bool failed = request.status == STORAGE_REQUEST_FAILED;

		rc = worker__publish(worker, command,
				     failed ? KAFKA_EVENT_FAILED : KAFKA_EVENT_CREATED,
				     failed ? worker__recorded_failure(command, request.result)
					    : json_incref(request.result));
		rc = rc == -EINVAL ? 0 : rc ? -EAGAIN : 1;
	} else if (request.status == STORAGE_REQUEST_PENDING && row->started_at > 0) {
		rc = worker__finish(
		    worker, command, KAFKA_EVENT_CREATED,
		    worker__created_result(worker, row, template_row->agent_version));
		rc = rc ? -EAGAIN : 1;
	} else {
		rc = 0;
	}
	storage__request_clear(&request);
	return rc;
}

/* The row: admitted here when the command came straight to Kafka; a
 * redelivery of a finished create repeats its event; a create that is no
 * longer starting, of another team or for another runtime ends here. */
static enum create_outcome create__check_row(struct create_ctx *ctx)
{
	struct worker *worker = ctx->worker;
	const struct kafka_event *command = ctx->command;
	struct storage_error err;
	int rc = worker__ensure_row(worker, command, &ctx->row, ctx->reason, sizeof(ctx->reason));

	if (rc == -EAGAIN)
		return CREATE_RETRY;
	if (rc) {
		if (!ctx->reason[0])
			snprintf(ctx->reason, sizeof(ctx->reason), "sandbox lookup failed");
		ctx->failure_code = rc == -EDQUOT ? 429 : 400;
		return CREATE_FAIL_NO_ROW;
	}
	if (ctx->row.state == STORAGE_SANDBOX_RUNNING) {
		/* A redelivery of a create that was finished (here or, after a
		 * rebalance, on another host): repeat its event. */
		if (storage__template_get(worker->storage, ctx->row.template_id, &ctx->template_row,
					  &err))
			ctx->template_row.agent_version[0] = '\0';
		ctx->rc = worker__finish(
		    worker, command, KAFKA_EVENT_CREATED,
		    worker__created_result(worker, &ctx->row, ctx->template_row.agent_version));
		return CREATE_DONE;
	}
	if (ctx->row.state != STORAGE_SANDBOX_STARTING) {
		/* A redelivery of a create finished earlier whose sandbox ended
		 * since (e.g. lost when the worker restarted): its first outcome
		 * again, never a second, different one. */
		if (storage__template_get(worker->storage, ctx->row.template_id, &ctx->template_row,
					  &err))
			ctx->template_row.agent_version[0] = '\0';
		rc = worker__repeat_outcome(worker, command, &ctx->row, &ctx->template_row);
		if (rc == -EAGAIN)
			return CREATE_RETRY;
		if (rc > 0)
			return CREATE_DONE;
		/* Killed (or failed) before we got to it: nothing to start. */
		snprintf(ctx->reason, sizeof(ctx->reason), "sandbox is %s, not starting",
			 storage__sandbox_state_name(ctx->row.state));
		ctx->rc = worker__finish(worker, command, KAFKA_EVENT_FAILED,
					 worker__failure(command, 409, ctx->reason));
		return CREATE_DONE;
	}
	if (strcasecmp(ctx->row.team_id, command->team_id)) {
		snprintf(ctx->reason, sizeof(ctx->reason), "sandbox belongs to another team");
		return CREATE_FAIL_NO_ROW;
	}
	/* A create that asked for a runtime reaches only that runtime's
	 * topic; one on the wrong host (a producer writing to Kafka directly)
	 * fails with the reason instead of running elsewhere. */
	const char *wanted_runtime = json_util__string(ctx->spec, "runtime", "");
	if (*wanted_runtime && strcmp(wanted_runtime, runtime__name(worker->runtime))) {
		snprintf(ctx->reason, sizeof(ctx->reason),
			 "the create asks for the %.16s runtime; host %s runs %s", wanted_runtime,
			 worker->host_id, runtime__name(worker->runtime));
		ctx->failure_code = 503;
		return CREATE_FAIL;
	}
	return CREATE_NEXT;
}

/* The team (its limits), the template and the volumes the API claimed. */
static enum create_outcome create__lookup(struct create_ctx *ctx)
{
	struct storage_error err;
	int rc = storage__team_get(ctx->worker->storage, ctx->command->team_id, &ctx->team, &err);

	if (rc == STORAGE_ERR_UNAVAILABLE)
		return CREATE_RETRY;
	if (rc) {
		snprintf(ctx->reason, sizeof(ctx->reason), "unknown team");
		return CREATE_FAIL;
	}
	rc = storage__template_get(ctx->worker->storage, ctx->row.template_id, &ctx->template_row,
				   &err);
	if (rc == STORAGE_ERR_UNAVAILABLE)
		return CREATE_RETRY;
	if (rc) {
		snprintf(ctx->reason, sizeof(ctx->reason), "unknown template \"%s\"",
			 ctx->row.template_id);
		ctx->failure_code = 400;
		return CREATE_FAIL;
	}
	rc = worker__create_volumes(ctx->worker, ctx->command, &ctx->volumes, &ctx->failure_code,
				    ctx->reason, sizeof(ctx->reason));
	if (rc == -EAGAIN)
		return CREATE_RETRY;
	return rc ? CREATE_FAIL : CREATE_NEXT;
}

/* The slot and its egress policy: a warm sandbox's slot gets the create's
 * policy (warm_pool.h), else a fresh slot. */
static enum create_outcome create__acquire_slot(struct create_ctx *ctx)
{
	struct worker *worker = ctx->worker;
	struct live_sandbox *sandbox = calloc(1, sizeof(*sandbox));
	struct warm_sandbox warm;

	if (!sandbox) {
		snprintf(ctx->reason, sizeof(ctx->reason), "out of memory");
		return CREATE_FAIL;
	}
	ctx->sandbox = sandbox;
	snprintf(sandbox->id, sizeof(sandbox->id), "%s", ctx->command->sandbox_id);
	snprintf(sandbox->team_id, sizeof(sandbox->team_id), "%s", ctx->command->team_id);
	sandbox->slot = -1;
	if (worker->net) {
		ctx->policy_spec = worker__policy_spec(ctx->spec);
		ctx->policy = net_policy__parse(ctx->policy_spec,
						(uint32_t)ctx->team.limits.egress_connections,
						ctx->reason, sizeof(ctx->reason));
		if (!ctx->policy) {
			ctx->failure_code = 400;
			return CREATE_FAIL;
		}
	}
	/* a warm sandbox started without volumes: one that mounts some starts fresh */
	ctx->claimed =
	    !ctx->volumes.count &&
	    warm_pool__claim(worker->warm_pool, ctx->row.template_id,
			     ctx->policy ? net_policy__connection_limit(ctx->policy) : 0, &warm);
	if (ctx->claimed) {
		sandbox->slot = warm.slot;
		sandbox->slot_info = warm.slot_info;
		sandbox->instance = warm.instance;
		/* the warm slot has the default policy: only another one is applied */
		if (worker->net && !net_policy__is_default(ctx->policy) &&
		    net_pool__set_policy(worker->net, sandbox->slot, ctx->policy)) {
			snprintf(ctx->reason, sizeof(ctx->reason),
				 "applying the egress policy failed");
			return CREATE_FAIL;
		}
		runtime__set_hostname(sandbox->instance, ctx->command->sandbox_id);
		log_debug("sandbox %s: claimed warm sandbox %s", ctx->command->sandbox_id,
			  warm.warm_id);
	} else if (worker->net) {
		sandbox->slot = net_pool__acquire(
		    worker->net, worker->runtime == RUNTIME_VM ? NET_RUNTIME_VM : NET_RUNTIME_JAIL,
		    ctx->policy, &sandbox->slot_info);
		if (sandbox->slot < 0) {
			snprintf(ctx->reason, sizeof(ctx->reason), "no network slot available");
			ctx->failure_code = 507;
			return CREATE_FAIL;
		}
	}
	if (worker->net)
		inet_ntop(AF_INET, &sandbox->slot_info.slot_address, ctx->slot_address,
			  sizeof(ctx->slot_address));
	ctx->agent_address =
	    worker->agent_address_override ? worker->agent_address_override : ctx->slot_address;
	return CREATE_NEXT;
}

/* The runtime (a warm sandbox has one already), told only a hash of the
 * access token. */
static enum create_outcome create__start_runtime(struct create_ctx *ctx)
{
	struct worker *worker = ctx->worker;

	tokens__access_token(worker->token_seed, ctx->command->sandbox_id, ctx->access_token);
	if (ctx->secure) {
		char hex[TOKENS_SHA256_HEX_LEN + 1];

		tokens__sha256_hex(ctx->access_token, strlen(ctx->access_token), hex);
		snprintf(ctx->token_hash, sizeof(ctx->token_hash), "sha256:%s", hex);
	}
	if (ctx->claimed)
		return CREATE_NEXT;
	struct runtime_start start = {
	    .sandbox_id = ctx->command->sandbox_id,
	    .template_id = ctx->row.template_id,
	    .netns_path = worker->net ? ctx->sandbox->slot_info.netns_path : NULL,
	    .token_hash = ctx->secure ? ctx->token_hash : NULL,
	    .volumes = ctx->volumes.mounts,
	    .volume_count = ctx->volumes.count,
	};
	worker__resources(ctx->row.template_id, &start.vcpus, &start.memory_mib);
	ctx->sandbox->instance =
	    runtime__start(worker->runtime, &start, ctx->reason, sizeof(ctx->reason));
	return ctx->sandbox->instance ? CREATE_NEXT : CREATE_FAIL;
}

/* The agent answers /health (a warm sandbox's answered already). */
static enum create_outcome create__wait_agent(struct create_ctx *ctx)
{
	int timeout_ms = ctx->worker->agent_timeout_ms;

	if (ctx->claimed ||
	    !agent_client__wait_healthy(ctx->agent_address, WORKER_AGENT_PORT,
					clock__monotonic_ms() + (uint64_t)timeout_ms))
		return CREATE_NEXT;
	snprintf(ctx->reason, sizeof(ctx->reason), "the agent did not answer within %d ms",
		 timeout_ms);
	return CREATE_FAIL;
}

/* /init with the derived token: a built template's ENV and USER
 * (template.json), the create's env vars over them; a warm sandbox also
 * learns its name here (started under another id); then the template's
 * start/ready commands (build.h). */
static enum create_outcome create__init_agent(struct create_ctx *ctx)
{
	const char *token = ctx->secure ? ctx->access_token : NULL;
	char template_user[64], template_workdir[1025], source_id[IDS_SANDBOX_ID_LEN + 1];
	char source_token[TOKENS_SHA256_HEX_LEN + 1];
	bool source_secure = false;
	/* a guest restored from a vm snapshot runs its source's agent */
	bool restored =
	    ctx->worker->runtime == RUNTIME_VM &&
	    snapshot__vm_source(ctx->row.template_id, source_id, sizeof(source_id), &source_secure);
	struct agent_init init = {.access_token = token, .replace_token = restored};
	json_t *init_envs;
	int rc;

	if (restored && source_secure) {
		tokens__access_token(ctx->worker->token_seed, source_id, source_token);
		init.current_token = source_token;
	}
	build__template_defaults(ctx->row.template_id, &init_envs, template_user,
				 sizeof(template_user), template_workdir, sizeof(template_workdir));
	json_object_update(init_envs, json_object_get(ctx->spec, "env_vars"));
	if (ctx->claimed || restored)
		json_object_set_new(init_envs, "E2B_SANDBOX_ID",
				    json_string(ctx->command->sandbox_id));
	init.env_vars = init_envs;
	init.default_user = template_user[0] ? template_user : NULL;
	init.hostname = ctx->claimed || restored ? ctx->command->sandbox_id : NULL;
	rc = agent_client__init(ctx->agent_address, WORKER_AGENT_PORT, &init, ctx->reason,
				sizeof(ctx->reason));
	json_decref(init_envs);
	if (rc)
		return CREATE_FAIL;
	if (!restored &&
	    build__sandbox_start_cmd(
		ctx->row.template_id, ctx->agent_address, WORKER_AGENT_PORT, token,
		ctx->started_ms + (uint64_t)config__get_int("start_cmd_timeout_ms", 50000),
		ctx->reason, sizeof(ctx->reason)))
		return CREATE_FAIL;
	return CREATE_NEXT;
}

/* Durable: running, on this host, at this slot; then the sandbox joins the
 * live list (no longer ours to tear down). */
static enum create_outcome create__persist(struct create_ctx *ctx)
{
	struct worker *worker = ctx->worker;
	struct storage_error err;
	struct storage_sandbox_transition running = {
	    .sandbox_id = ctx->command->sandbox_id,
	    .from = STORAGE_SANDBOX_STARTING,
	    .to = STORAGE_SANDBOX_RUNNING,
	    .host_id = worker->host_id,
	    .slot_index = ctx->sandbox->slot,
	    .slot_address = ctx->slot_address,
	};
	int rc;

	storage__sandbox_clear(&ctx->row);
	rc = storage__sandbox_transition(worker->storage, &running, &ctx->row, &err);
	if (rc == STORAGE_ERR_UNAVAILABLE)
		return CREATE_RETRY;
	if (rc) {
		snprintf(ctx->reason, sizeof(ctx->reason),
			 "the sandbox changed state while starting: %s", err.message);
		worker__teardown(worker, ctx->sandbox);
		ctx->sandbox = NULL;
		ctx->rc = worker__finish(worker, ctx->command, KAFKA_EVENT_FAILED,
					 worker__failure(ctx->command, 409, ctx->reason));
		return CREATE_DONE;
	}
	pthread_mutex_lock(&worker->lock);
	ctx->sandbox->next = worker->sandboxes;
	worker->sandboxes = ctx->sandbox;
	worker->live_count++;
	worker->creates_live++; /* until worker__create returns */
	ctx->joined_live = true;
	pthread_mutex_unlock(&worker->lock);
	log_info("sandbox %s: running (team %s, template %s, slot %d at %s%s) in %llu ms",
		 ctx->command->sandbox_id, ctx->command->team_id, ctx->row.template_id,
		 ctx->sandbox->slot, ctx->slot_address, ctx->claimed ? ", warm" : "",
		 (unsigned long long)(clock__monotonic_ms() - ctx->started_ms));
	ctx->sandbox = NULL;
	return CREATE_NEXT;
}

/* The created event, and the step timings as a debug line (queue: from
 * the command's sent_at, the API's clock, to our start). */
static int create__publish(struct create_ctx *ctx)
{
	uint64_t mark_ns = clock__monotonic_ns();
	int rc = worker__finish(
	    ctx->worker, ctx->command, KAFKA_EVENT_CREATED,
	    worker__created_result(ctx->worker, &ctx->row, ctx->template_row.agent_version));
	const uint64_t *t = ctx->step_ns;

	log_debug("sandbox %s: timing queue=%lld lookup=%.2f slot=%.2f runtime=%.2f "
		  "health=%.2f init=%.2f persist=%.2f publish=%.2f (ms)%s",
		  ctx->command->sandbox_id,
		  (long long)(clock__realtime_ms() -
			      (int64_t)(clock__monotonic_ms() - ctx->started_ms) -
			      ctx->command->sent_at_ms),
		  (double)(t[TIME_CHECK] + t[TIME_LOOKUP]) / 1e6, (double)t[TIME_SLOT] / 1e6,
		  (double)t[TIME_RUNTIME] / 1e6, (double)t[TIME_HEALTH] / 1e6,
		  (double)t[TIME_INIT] / 1e6, (double)t[TIME_PERSIST] / 1e6,
		  (double)(clock__monotonic_ns() - mark_ns) / 1e6, ctx->claimed ? " warm" : "");
	return rc;
}

/* A create that failed: whatever it started is torn down, the row (when
 * move_row) becomes failed with the reason, and the failure is published.
 * -EAGAIN when PostgreSQL went away before the row was moved. */
static int create__fail(struct create_ctx *ctx, bool move_row)
{
	struct storage_error err;

	worker__teardown(ctx->worker, ctx->sandbox);
	ctx->sandbox = NULL;
	if (move_row) {
		struct storage_sandbox_transition failed = {
		    .sandbox_id = ctx->command->sandbox_id,
		    .from = STORAGE_SANDBOX_STARTING,
		    .to = STORAGE_SANDBOX_FAILED,
		    .host_id = ctx->worker->host_id,
		    .slot_index = -1,
		    .failure_reason = ctx->reason,
		};
		if (storage__sandbox_transition(ctx->worker->storage, &failed, NULL, &err) ==
		    STORAGE_ERR_UNAVAILABLE)
			return -EAGAIN;
	}
	log_warn("sandbox %s: create failed: %s", ctx->command->sandbox_id, ctx->reason);
	return worker__finish(ctx->worker, ctx->command, KAFKA_EVENT_FAILED,
			      worker__failure(ctx->command, ctx->failure_code, ctx->reason));
}

/* Runs the steps of a create in order and ends it in one of the ways
 * enum create_outcome names. Returns as worker__handle_command does. */
static int worker__create(struct worker *worker, const struct kafka_event *command)
{
	static enum create_outcome (*const steps[TIME_COUNT])(struct create_ctx *) = {
	    [TIME_CHECK] = create__check_row,	[TIME_LOOKUP] = create__lookup,
	    [TIME_SLOT] = create__acquire_slot, [TIME_RUNTIME] = create__start_runtime,
	    [TIME_HEALTH] = create__wait_agent, [TIME_INIT] = create__init_agent,
	    [TIME_PERSIST] = create__persist,
	};
	struct create_ctx ctx = {
	    .worker = worker,
	    .command = command,
	    .spec = command->spec,
	    .secure = json_util__bool(command->spec, "secure", true),
	    .slot_address = "127.0.0.1",
	    .failure_code = 500,
	    .started_ms = clock__monotonic_ms(),
	};
	enum create_outcome outcome = CREATE_NEXT;
	uint64_t mark_ns = clock__monotonic_ns();

	for (size_t i = 0; i < TIME_COUNT && outcome == CREATE_NEXT; i++) {
		uint64_t now_ns;

		outcome = steps[i](&ctx);
		now_ns = clock__monotonic_ns();
		ctx.step_ns[i] = now_ns - mark_ns;
		mark_ns = now_ns;
	}
	switch (outcome) {
	case CREATE_NEXT:
		ctx.rc = create__publish(&ctx);
		break;
	case CREATE_DONE:
		break;
	case CREATE_FAIL:
	case CREATE_FAIL_NO_ROW:
		/* -EAGAIN when PostgreSQL went away before the row was failed */
		ctx.rc = create__fail(&ctx, outcome == CREATE_FAIL);
		break;
	case CREATE_RETRY:
		worker__teardown(worker, ctx.sandbox);
		ctx.sandbox = NULL;
		ctx.rc = -EAGAIN;
		break;
	}
	if (ctx.joined_live) {
		pthread_mutex_lock(&worker->lock);
		worker->creates_live--;
		pthread_mutex_unlock(&worker->lock);
	}
	storage__sandbox_clear(&ctx.row);
	net_policy__free(ctx.policy);
	json_decref(ctx.policy_spec);
	return ctx.rc;
}

size_t worker__occupied(const struct worker *worker, size_t creates_in_hand)
{
	size_t live = worker->live_count > 0 ? (size_t)worker->live_count : 0;
	size_t joined = worker->creates_live > 0 ? (size_t)worker->creates_live : 0;

	return live + (creates_in_hand > joined ? creates_in_hand - joined : 0);
}

/* ---- kill, timeouts, network updates ---- */

/* Stops a sandbox of this host and moves its row to `to` (killed or
 * timed_out) from whichever active state it is in. */
static int worker__end_sandbox(struct worker *worker, const char *sandbox_id,
			       enum storage_sandbox_state to, const char *reason)
{
	static const enum storage_sandbox_state from_states[] = {
	    STORAGE_SANDBOX_RUNNING, STORAGE_SANDBOX_KILLING, STORAGE_SANDBOX_STARTING,
	    STORAGE_SANDBOX_PAUSED,  STORAGE_SANDBOX_PAUSING, STORAGE_SANDBOX_RESUMING};
	struct storage_error err;
	int rc = STORAGE_ERR_CONFLICT;

	worker__teardown(worker, worker__take(worker, sandbox_id));
	for (size_t i = 0; i < sizeof(from_states) / sizeof(from_states[0]); i++) {
		struct storage_sandbox_transition t = {
		    .sandbox_id = sandbox_id,
		    .from = from_states[i],
		    .to = to,
		    .slot_index = -1,
		    .failure_reason = reason,
		};
		if (to == STORAGE_SANDBOX_TIMED_OUT && from_states[i] != STORAGE_SANDBOX_RUNNING)
			t.to = STORAGE_SANDBOX_KILLED;
		rc = storage__sandbox_transition(worker->storage, &t, NULL, &err);
		if (rc != STORAGE_ERR_CONFLICT && rc != STORAGE_ERR_INVALID)
			break;
	}
	if (rc == STORAGE_ERR_UNAVAILABLE)
		return -EAGAIN;
	return rc == STORAGE_OK ? 0 : -ENOENT; /* -ENOENT: already ended */
}

static int worker__kill(struct worker *worker, const struct kafka_event *command)
{
	int rc = worker__end_sandbox(worker, command->sandbox_id, STORAGE_SANDBOX_KILLED, NULL);

	if (rc == -EAGAIN)
		return rc;
	log_info("sandbox %s: killed", command->sandbox_id);
	return worker__finish(
	    worker, command, KAFKA_EVENT_KILLED,
	    json_pack("{s:s}", "reason", rc == -ENOENT ? "already ended" : "killed"));
}

static int worker__update_network(struct worker *worker, const struct kafka_event *command)
{
	char reason[512] = "";
	json_t *policy_spec = worker__policy_spec(command->spec);
	struct net_policy *policy = NULL;
	struct live_sandbox *sandbox;
	int slot = -1;
	int rc;

	pthread_mutex_lock(&worker->lock);
	sandbox = worker__find_locked(worker, command->sandbox_id);
	if (sandbox)
		slot = sandbox->slot;
	pthread_mutex_unlock(&worker->lock);
	if (!sandbox) {
		snprintf(reason, sizeof(reason), "sandbox is not running on this host");
	} else if (!worker->net) {
		snprintf(reason, sizeof(reason), "this worker runs without network slots");
	} else {
		struct storage_team team;
		struct storage_error err;
		uint32_t limit = 0;
		if (!storage__team_get(worker->storage, command->team_id, &team, &err))
			limit = (uint32_t)team.limits.egress_connections;
		policy = net_policy__parse(policy_spec, limit, reason, sizeof(reason));
		if (policy && net_pool__set_policy(worker->net, slot, policy))
			snprintf(reason, sizeof(reason), "applying the policy failed");
	}
	if (reason[0])
		rc = worker__finish(worker, command, KAFKA_EVENT_FAILED,
				    worker__failure(command, sandbox ? 400 : 404, reason));
	else
		rc = worker__finish(worker, command, KAFKA_EVENT_NETWORK_UPDATED,
				    json_pack("{s:O}", "network", command->spec));
	net_policy__free(policy);
	json_decref(policy_spec);
	return rc;
}

/* ---- pause, resume (jail: cgroup freeze; vm: not yet) ---- */

/* Pauses or resumes the live sandbox, held (worker__hold) so a kill on
 * another thread cannot free it meanwhile, while the host's other work
 * goes on (a vm's pause writes its memory: seconds). -ENOENT when it is
 * not on this host, else runtime__set_paused's answer. */
static int worker__set_paused(struct worker *worker, const char *sandbox_id, bool paused,
			      char *reason, size_t reason_len)
{
	struct live_sandbox *sandbox = worker__hold(worker, sandbox_id);
	int rc;

	if (!sandbox) {
		snprintf(reason, reason_len, "sandbox is not on this host");
		return -ENOENT;
	}
	rc = runtime__set_paused(sandbox->instance, paused, reason, reason_len);
	worker__release(worker, sandbox);
	return rc;
}

/* Compare-and-set of the row's state (no team check: this host owns it). */
/* The row from -> to, with the slot (index, address) when slot_index >= 0. */
static int worker__move_to_slot(struct worker *worker, const char *sandbox_id,
				enum storage_sandbox_state from, enum storage_sandbox_state to,
				int slot_index, const char *slot_address,
				struct storage_sandbox *out)
{
	struct storage_error err;
	struct storage_sandbox_transition t = {
	    .sandbox_id = sandbox_id,
	    .from = from,
	    .to = to,
	    .slot_index = slot_index,
	    .slot_address = slot_address,
	};

	return storage__sandbox_transition(worker->storage, &t, out, &err);
}

static int worker__move(struct worker *worker, const char *sandbox_id,
			enum storage_sandbox_state from, enum storage_sandbox_state to,
			struct storage_sandbox *out)
{
	return worker__move_to_slot(worker, sandbox_id, from, to, -1, NULL, out);
}

/* worker__move that also records the live sandbox's slot (index and
 * address): a paused sandbox adopted after a restart resumes in another
 * slot than the row names. */
static int worker__move_in_slot(struct worker *worker, const char *sandbox_id,
				enum storage_sandbox_state from, enum storage_sandbox_state to,
				struct storage_sandbox *out)
{
	struct live_sandbox *sandbox;
	char address[INET_ADDRSTRLEN] = "";
	int slot_index = -1;

	pthread_mutex_lock(&worker->lock);
	sandbox = worker__find_locked(worker, sandbox_id);
	if (sandbox && worker->net && sandbox->slot >= 0) {
		slot_index = sandbox->slot;
		inet_ntop(AF_INET, &sandbox->slot_info.slot_address, address, sizeof(address));
	}
	pthread_mutex_unlock(&worker->lock);
	return worker__move_to_slot(worker, sandbox_id, from, to, slot_index,
				    slot_index >= 0 ? address : NULL, out);
}

/* The row's state now; -EAGAIN (PostgreSQL away) or -ENOENT (no row). */
static int worker__row_state(struct worker *worker, const char *sandbox_id,
			     enum storage_sandbox_state *state, int64_t *end_at)
{
	struct storage_sandbox row = {0};
	struct storage_error err;
	int rc = storage__sandbox_get_internal(worker->storage, sandbox_id, &row, &err);

	if (rc)
		return rc == STORAGE_ERR_UNAVAILABLE ? -EAGAIN : -ENOENT;
	*state = row.state;
	if (end_at)
		*end_at = row.end_at;
	storage__sandbox_clear(&row);
	return 0;
}

/* The HTTP status for a sandbox that cannot be paused or resumed from
 * state: gone (404) or changing (409). */
static int worker__state_code(enum storage_sandbox_state state)
{
	return (STORAGE_STATES_ACTIVE & STORAGE_STATE_BIT(state)) ? 409 : 404;
}

/* Pauses a sandbox of this host: running -> pausing (the API usually did
 * it) -> frozen -> paused. A failed freeze is undone (thawed, back to
 * running). 0 when paused (also: already was); -EAGAIN retry later;
 * -ESRCH a kill ended it meanwhile; -ENOENT not on this host (or no row);
 * else not paused. *code and reason say why. */
static int worker__pause_sandbox(struct worker *worker, const char *sandbox_id, int *code,
				 char *reason, size_t reason_len)
{
	enum storage_sandbox_state state;
	char ignored[256];
	int rc = worker__row_state(worker, sandbox_id, &state, NULL);

	*code = 404;
	if (rc) {
		snprintf(reason, reason_len, "sandbox not found");
		return rc;
	}
	if (state == STORAGE_SANDBOX_PAUSED)
		return 0;
	if (state == STORAGE_SANDBOX_RUNNING) {
		rc = worker__move(worker, sandbox_id, STORAGE_SANDBOX_RUNNING,
				  STORAGE_SANDBOX_PAUSING, NULL);
		if (rc == STORAGE_ERR_UNAVAILABLE)
			return -EAGAIN;
		if (rc) {
			*code = 409;
			snprintf(reason, reason_len, "sandbox changed state while pausing");
			return -EBUSY;
		}
	} else if (state != STORAGE_SANDBOX_PAUSING) {
		*code = worker__state_code(state);
		snprintf(reason, reason_len, "sandbox is %s", storage__sandbox_state_name(state));
		return -EBUSY;
	}
	rc = worker__set_paused(worker, sandbox_id, true, reason, reason_len);
	if (rc) {
		worker__set_paused(worker, sandbox_id, false, ignored, sizeof(ignored));
		if (worker__move(worker, sandbox_id, STORAGE_SANDBOX_PAUSING,
				 STORAGE_SANDBOX_RUNNING, NULL) == STORAGE_ERR_UNAVAILABLE)
			log_warn("sandbox %s: left pausing (PostgreSQL away)", sandbox_id);
		*code = rc == -ENOTSUP ? 501 : rc == -ENOENT ? 404 : 500;
		return rc;
	}
	rc =
	    worker__move(worker, sandbox_id, STORAGE_SANDBOX_PAUSING, STORAGE_SANDBOX_PAUSED, NULL);
	if (rc == STORAGE_ERR_UNAVAILABLE)
		return -EAGAIN; /* frozen; the redelivery freezes again and moves the row */
	if (rc && worker__row_state(worker, sandbox_id, &state, NULL) == 0 &&
	    state == STORAGE_SANDBOX_PAUSED)
		return 0; /* a second pause of it (timeout and command) got there first */
	if (rc) {
		/* A kill won the race: it ends the sandbox, the pause has nothing to say. */
		snprintf(reason, reason_len, "sandbox was ended while pausing");
		return -ESRCH;
	}
	return 0;
}

/* A resumed vm guest's clock shows the time of its pause: its agent sets
 * it from /init's timestamp (guest/agent/README.md). The call carries the
 * sandbox's token and changes nothing else. Best effort: logged. */
static void worker__sync_guest_clock(struct worker *worker, const char *sandbox_id)
{
	char address[INET_ADDRSTRLEN] = "", token[TOKENS_SHA256_HEX_LEN + 1], reason[256];
	struct agent_init init = {.current_token = token};
	struct live_sandbox *sandbox;

	pthread_mutex_lock(&worker->lock);
	sandbox = worker__find_locked(worker, sandbox_id);
	if (sandbox && worker->net && sandbox->slot >= 0)
		inet_ntop(AF_INET, &sandbox->slot_info.slot_address, address, sizeof(address));
	pthread_mutex_unlock(&worker->lock);
	if (worker->agent_address_override)
		snprintf(address, sizeof(address), "%s", worker->agent_address_override);
	if (!address[0])
		return;
	tokens__access_token(worker->token_seed, sandbox_id, token);
	if (agent_client__init(address, WORKER_AGENT_PORT, &init, reason, sizeof(reason)))
		log_warn("sandbox %s: its clock was not set after the resume: %s", sandbox_id,
			 reason);
}

/* Resumes a paused sandbox of this host: paused -> resuming (the API
 * usually did it) -> thawed -> end_at = now + timeout_s -> running.
 * 0 running (*end_at set); -EAGAIN retry later; else *code and reason. */
static int worker__resume_sandbox(struct worker *worker, const struct kafka_event *command,
				  int *code, char *reason, size_t reason_len, int64_t *end_at)
{
	const char *sandbox_id = command->sandbox_id;
	int32_t timeout_s = (int32_t)json_util__int(command->spec, "timeout_s", 0);
	struct storage_sandbox row = {0};
	struct storage_error err;
	enum storage_sandbox_state state;
	int rc = worker__row_state(worker, sandbox_id, &state, end_at);

	*code = 404;
	if (rc) {
		snprintf(reason, reason_len, "sandbox not found");
		return rc;
	}
	if (state == STORAGE_SANDBOX_RUNNING)
		return 0; /* a redelivery of a resume that finished */
	if (state == STORAGE_SANDBOX_PAUSED) {
		rc = worker__move(worker, sandbox_id, STORAGE_SANDBOX_PAUSED,
				  STORAGE_SANDBOX_RESUMING, NULL);
		if (rc == STORAGE_ERR_UNAVAILABLE)
			return -EAGAIN;
		if (rc) {
			*code = 409;
			snprintf(reason, reason_len, "sandbox changed state while resuming");
			return -EBUSY;
		}
	} else if (state != STORAGE_SANDBOX_RESUMING) {
		*code = worker__state_code(state);
		snprintf(reason, reason_len, "sandbox is %s", storage__sandbox_state_name(state));
		return -EBUSY;
	}
	rc = worker__set_paused(worker, sandbox_id, false, reason, reason_len);
	if (!rc && worker->runtime == RUNTIME_VM)
		worker__sync_guest_clock(worker, sandbox_id);
	if (rc) {
		if (worker__move(worker, sandbox_id, STORAGE_SANDBOX_RESUMING,
				 STORAGE_SANDBOX_PAUSED, NULL) == STORAGE_ERR_UNAVAILABLE)
			log_warn("sandbox %s: left resuming (PostgreSQL away)", sandbox_id);
		*code = rc == -ENOENT ? 404 : 500;
		return rc;
	}
	/* The new deadline before `running`, so expiry never sees the old one. */
	if (timeout_s > 0 &&
	    storage__sandbox_set_timeout(worker->storage, command->team_id, sandbox_id, timeout_s,
					 NULL, &err) == STORAGE_ERR_UNAVAILABLE)
		return -EAGAIN;
	rc = worker__move_in_slot(worker, sandbox_id, STORAGE_SANDBOX_RESUMING,
				  STORAGE_SANDBOX_RUNNING, &row);
	if (rc == STORAGE_ERR_UNAVAILABLE)
		return -EAGAIN; /* thawed; the redelivery thaws again and moves the row */
	if (rc && worker__row_state(worker, sandbox_id, &state, end_at) == 0 &&
	    state == STORAGE_SANDBOX_RUNNING)
		return 0; /* another resume of it got there first */
	if (rc) {
		snprintf(reason, reason_len, "sandbox was ended while resuming");
		return -ESRCH;
	}
	*end_at = row.end_at;
	storage__sandbox_clear(&row);
	return 0;
}

static int worker__pause(struct worker *worker, const struct kafka_event *command)
{
	char reason[512] = "";
	int code = 500;
	int rc = worker__pause_sandbox(worker, command->sandbox_id, &code, reason, sizeof(reason));

	if (rc == -EAGAIN)
		return rc;
	if (rc) {
		log_info("sandbox %s: not paused: %s", command->sandbox_id, reason);
		return worker__finish(worker, command, KAFKA_EVENT_FAILED,
				      worker__failure(command, code, reason));
	}
	log_info("sandbox %s: paused", command->sandbox_id);
	return worker__finish(worker, command, KAFKA_EVENT_PAUSED, json_object());
}

static int worker__resume(struct worker *worker, const struct kafka_event *command)
{
	char reason[512] = "", end_at_text[32];
	int64_t end_at = 0;
	int code = 500;
	int rc = worker__resume_sandbox(worker, command, &code, reason, sizeof(reason), &end_at);

	if (rc == -EAGAIN)
		return rc;
	if (rc) {
		log_info("sandbox %s: not resumed: %s", command->sandbox_id, reason);
		return worker__finish(worker, command, KAFKA_EVENT_FAILED,
				      worker__failure(command, code, reason));
	}
	log_info("sandbox %s: resumed", command->sandbox_id);
	clock__format_rfc3339(end_at, end_at_text);
	return worker__finish(worker, command, KAFKA_EVENT_RESUMED,
			      json_pack("{s:s}", "end_at", end_at_text));
}

/* ---- snapshot (createSnapshot: a jail sandbox's files as a template) ---- */

/* Freezes (freeze) or thaws the sandbox and, when freezing, reads its
 * writable layer's path and host uid under the table's lock. -ENOENT not
 * here, -ENOTSUP not a jail, else 0 or -errno. */
static int worker__snapshot_hold(struct worker *worker, const char *sandbox_id, bool freeze,
				 char *upper, size_t upper_len, unsigned *host_uid, char *reason,
				 size_t reason_len)
{
	struct live_sandbox *sandbox;
	int rc = -ENOENT;

	pthread_mutex_lock(&worker->lock);
	sandbox = worker__find_unheld_locked(worker, sandbox_id);
	if (!sandbox)
		snprintf(reason, reason_len, "sandbox is not on this host");
	else if (freeze && runtime__jail_layer(sandbox->instance, upper, upper_len, host_uid)) {
		snprintf(reason, reason_len, "snapshots of this runtime are not supported yet");
		rc = -ENOTSUP;
	} else
		rc = runtime__set_paused(sandbox->instance, freeze, reason, reason_len);
	pthread_mutex_unlock(&worker->lock);
	return rc;
}

/* 0 when snapshot_id is registered for the command's team already (a
 * redelivered command), 1 when not, -EAGAIN when PostgreSQL is away. */
static int worker__snapshot_done(struct worker *worker, const struct kafka_event *command,
				 const char *snapshot_id)
{
	struct storage_error err;
	json_t *list = NULL;
	int rc = storage__snapshot_list(worker->storage, command->team_id, NULL, snapshot_id, &list,
					&err);

	if (rc)
		return rc == STORAGE_ERR_UNAVAILABLE ? -EAGAIN : 1;
	rc = json_array_size(list) ? 0 : 1;
	json_decref(list);
	return rc;
}

/* The snapshot of a vm sandbox: its files exported by the runtime with
 * the sandbox held (worker__find_unheld_locked), not the table lock: the
 * export takes seconds, and the host's other sandboxes, creates and
 * heartbeat go on meanwhile; a kill, pause or resume of this one waits. */
struct worker_vm_export {
	struct worker *worker;
	const char *sandbox_id;
	int code; /* the HTTP status when the export failed */
};

static int worker__snapshot_export_vm(void *opaque, const char *dir, uint64_t *bytes, char *err,
				      size_t err_len)
{
	struct worker_vm_export *export = opaque;
	struct live_sandbox *sandbox;
	char reason[256];
	bool left_paused;
	int rc = -ENOENT, rc_pause, code;

	export->code = 404;
	sandbox = worker__hold(export->worker, export->sandbox_id);
	if (!sandbox) {
		snprintf(err, err_len, "sandbox is not on this host");
		return rc;
	}
	rc = runtime__export_vm(sandbox->instance, dir, bytes, err, err_len);
	left_paused = rc && runtime__vm_paused(sandbox->instance);
	worker__release(export->worker, sandbox);
	export->code = rc == -ENOTSUP ? 501 : 500;
	if (left_paused) {
		/* The source did not come back after its snapshot (two resumes
		 * failed) but its paused files are whole: its row says paused, so
		 * a connect resumes it, rather than running with nothing behind. */
		rc_pause = worker__pause_sandbox(export->worker, export->sandbox_id, &code, reason,
						 sizeof(reason));
		if (rc_pause)
			log_warn("sandbox %s: left paused by its snapshot, not marked paused: %s",
				 export->sandbox_id, reason);
		else
			log_warn("sandbox %s: paused: it was not resumed after its snapshot",
				 export->sandbox_id);
	}
	return rc;
}

/* The snapshot of a jail sandbox's files: frozen (when running) for the
 * copy, which is refused before it starts when the layer is over
 * max_bytes (-EDQUOT, *captured its size). 0 or -errno with *code. */
static int worker__snapshot_capture_jail(struct worker *worker, struct snapshot_source *source,
					 struct storage_sandbox *row, const char *snapshot_id,
					 int64_t max_bytes, uint64_t *captured, int *code,
					 char *reason, size_t reason_len)
{
	char upper[PATH_MAX], ignored[256];
	bool was_running = row->state == STORAGE_SANDBOX_RUNNING;
	int rc = worker__snapshot_hold(worker, row->id, true, upper, sizeof(upper),
				       &source->host_uid, reason, reason_len);

	if (rc) {
		*code = rc == -ENOTSUP ? 501 : rc == -ENOENT ? 404 : 500;
		return rc;
	}
	source->upper = upper;
	*code = 500;
	*captured = snapshot__layer_bytes(upper); /* refused before any copy when too big */
	if (max_bytes > 0 && (int64_t)*captured > max_bytes)
		rc = -EDQUOT;
	else
		rc = snapshot__capture(source, snapshot_id, captured, reason, reason_len);
	if (was_running && worker__row_state(worker, row->id, &row->state, NULL) == 0 &&
	    row->state == STORAGE_SANDBOX_RUNNING)
		worker__snapshot_hold(worker, row->id, false, NULL, 0, NULL, ignored,
				      sizeof(ignored));
	return rc;
}

/* Captures and registers the snapshot of a running or paused sandbox
 * (jail: its files, frozen for the copy; vm: its guest and disk, paused
 * for the copy). 0, -EAGAIN, or *code and reason. */
static int worker__snapshot_take(struct worker *worker, const struct kafka_event *command,
				 const char *snapshot_id, int64_t *bytes, int *code, char *reason,
				 size_t reason_len)
{
	struct snapshot_source source = {.templates_dir = templates__dir(),
					 .cache_dir = templates__cache_dir()};
	struct storage_sandbox row = {0};
	struct storage_template template_row = {0};
	struct storage_error err;
	uint64_t captured = 0;
	int64_t max_bytes = json_util__int(command->spec, "max_bytes", 0);
	bool was_running, locked = false;
	int rc = storage__sandbox_get_internal(worker->storage, command->sandbox_id, &row, &err);

	*code = 404;
	if (rc) {
		snprintf(reason, reason_len, "sandbox not found");
		return rc == STORAGE_ERR_UNAVAILABLE ? -EAGAIN : -ENOENT;
	}
	was_running = row.state == STORAGE_SANDBOX_RUNNING;
	if (!was_running && row.state != STORAGE_SANDBOX_PAUSED) {
		*code = worker__state_code(row.state);
		snprintf(reason, reason_len, "sandbox is %s",
			 storage__sandbox_state_name(row.state));
		rc = -EBUSY;
		goto out;
	}
	rc = worker__snapshot_done(worker, command, snapshot_id);
	if (rc <= 0)
		goto out; /* a redelivery of a snapshot that finished, or PostgreSQL away */
	/* an earlier attempt that died before registering it */
	snapshot__remove(source.templates_dir, snapshot_id);
	rc = templates__read(source.templates_dir, row.template_id, &source.base, reason,
			     reason_len);
	if (rc) {
		*code = 500;
		goto out;
	}
	pthread_mutex_lock(&worker->templates_lock); /* install .. register */
	locked = true;
	if (worker->runtime == RUNTIME_VM) {
		struct worker_vm_export export = {
		    .worker = worker, .sandbox_id = row.id, .code = 500};

		source.export_vm = worker__snapshot_export_vm;
		source.export_opaque = &export;
		source.source_id = row.id;
		source.source_secure = row.secure;
		rc = snapshot__capture(&source, snapshot_id, &captured, reason, reason_len);
		*code = export.code;
		if (was_running) /* resumed after the export: its clock is behind */
			worker__sync_guest_clock(worker, row.id);
	} else {
		rc = worker__snapshot_capture_jail(worker, &source, &row, snapshot_id, max_bytes,
						   &captured, code, reason, reason_len);
	}
	if (rc && rc != -EDQUOT)
		goto out;
	if (max_bytes > 0 && (int64_t)captured > max_bytes) {
		if (!rc)
			snapshot__remove(source.templates_dir, snapshot_id);
		*code = 403;
		snprintf(
		    reason, reason_len,
		    "snapshot storage quota exceeded: this snapshot holds %llu bytes, the team "
		    "has %lld left (setting snapshot_quota_mb)",
		    (unsigned long long)captured, (long long)max_bytes);
		rc = -EDQUOT;
		goto out;
	}
	snprintf(template_row.id, sizeof(template_row.id), "%s", snapshot_id);
	snprintf(template_row.agent_version, sizeof(template_row.agent_version), "%s",
		 source.base.agent_version);
	snprintf(template_row.image_path, sizeof(template_row.image_path), "%s/%s",
		 source.cache_dir, snapshot_id);
	{
		struct template_info mine;

		rc = templates__read(source.templates_dir, snapshot_id, &mine, reason, reason_len);
		if (!rc)
			snprintf(template_row.content_hash, sizeof(template_row.content_hash), "%s",
				 mine.content_hash);
		/* a vm snapshot restores the source's machine, not the base's */
		if (!rc)
			runtime__template_machine(worker->runtime, mine.dir, &source.base.memory_mb,
						  &source.base.cpu_count);
	}
	struct storage_snapshot snap = {
	    .id = snapshot_id,
	    .team_id = row.team_id,
	    .sandbox_id = row.id,
	    .name = json_util__string(command->spec, "name", NULL),
	    .host_id = worker->host_id,
	    .cpu_count = source.base.cpu_count ? (int32_t)source.base.cpu_count : 2,
	    .memory_mb = source.base.memory_mb ? (int32_t)source.base.memory_mb : 512,
	    .bytes = (int64_t)captured,
	    .template_row = &template_row,
	};
	if (!rc)
		rc = storage__snapshot_register(worker->storage, &snap, &err);
	if (rc) {
		snapshot__remove(source.templates_dir, snapshot_id);
		if (rc == STORAGE_ERR_UNAVAILABLE) {
			rc = -EAGAIN;
			goto out;
		}
		log_warn("snapshot %s: registering failed: %s", snapshot_id, err.message);
		snprintf(reason, reason_len, "registering the snapshot failed");
		rc = -EIO;
		goto out;
	}
	*bytes = (int64_t)captured;
out:
	if (locked)
		pthread_mutex_unlock(&worker->templates_lock);
	storage__sandbox_clear(&row);
	return rc;
}

static int worker__snapshot(struct worker *worker, const struct kafka_event *command)
{
	const char *snapshot_id = json_util__string(command->spec, "snapshot_id", "");
	char reason[512] = "";
	int64_t bytes = 0;
	int code = 500;
	int rc = worker__snapshot_take(worker, command, snapshot_id, &bytes, &code, reason,
				       sizeof(reason));
	json_t *result;

	if (rc == -EAGAIN)
		return rc;
	if (rc) {
		log_info("sandbox %s: no snapshot: %s", command->sandbox_id, reason);
		return worker__finish(worker, command, KAFKA_EVENT_FAILED,
				      worker__failure(command, code, reason));
	}
	log_info("sandbox %s: snapshot %s (%lld bytes)", command->sandbox_id, snapshot_id,
		 (long long)bytes);
	result = json_pack("{s:s}", "snapshot_id", snapshot_id);
	if (bytes > 0)
		json_object_set_new(result, "bytes", json_integer(bytes));
	return worker__finish(worker, command, KAFKA_EVENT_SNAPSHOTTED, result);
}

int worker__handle_command(struct worker *worker, const struct kafka_event *command)
{
	switch (command->type) {
	case KAFKA_EVENT_CREATE:
		return worker__create(worker, command);
	case KAFKA_EVENT_KILL:
		return worker__kill(worker, command);
	case KAFKA_EVENT_SET_TIMEOUT:
		/* end_at lives in PostgreSQL (set by the API); housekeeping reads
		 * it there, so a moved deadline needs nothing more here. */
		return 0;
	case KAFKA_EVENT_UPDATE_NETWORK:
		return worker__update_network(worker, command);
	case KAFKA_EVENT_PAUSE:
		return worker__pause(worker, command);
	case KAFKA_EVENT_RESUME:
		return worker__resume(worker, command);
	case KAFKA_EVENT_SNAPSHOT:
		return worker__snapshot(worker, command);
	default:
		log_warn("request %s: %s is not a command; ignored", command->request_id,
			 kafka_event__type_name(command->type));
		return 0;
	}
}

/* ---- housekeeping ---- */

/* onTimeout: pause. True when the sandbox was paused (a `paused` event is
 * published) or must be tried again later; false when it could not be
 * paused and is to be ended like any other timeout. */
static bool worker__timeout_pause(struct worker *worker, const struct storage_sandbox *row)
{
	struct kafka_event command = {.version = KAFKA_EVENT_VERSION, .type = KAFKA_EVENT_PAUSE};
	char reason[512] = "";
	int code;
	int rc = worker__pause_sandbox(worker, row->id, &code, reason, sizeof(reason));

	if (rc == -EAGAIN)
		return true;
	if (rc == -ESRCH)
		return true; /* a kill ended it meanwhile */
	if (rc) {
		log_warn("sandbox %s: the timeout could not pause it (%s); ending it", row->id,
			 reason);
		return false;
	}
	log_info("sandbox %s: timed out, paused (onTimeout: pause)", row->id);
	ids__uuid(command.request_id);
	snprintf(command.team_id, sizeof(command.team_id), "%s", row->team_id);
	snprintf(command.sandbox_id, sizeof(command.sandbox_id), "%s", row->id);
	worker__publish(worker, &command, KAFKA_EVENT_PAUSED,
			json_pack("{s:s}", "reason", "timeout"));
	return true;
}

#define WORKER_EXITED_PER_PASS 16

static void worker__declare_lost_hosts(struct worker *worker);

/* Sandboxes whose runtime ended by itself (a VMM killed or crashed, a
 * jail's init gone) are torn down and their rows marked failed with the
 * reason; a `killed` result says so on the events topic. */
static void worker__end_exited(struct worker *worker)
{
	struct {
		char id[IDS_SANDBOX_ID_LEN + 1];
		char team_id[KAFKA_EVENT_TEAM_ID_MAX + 1];
		char why[128];
	} ended[WORKER_EXITED_PER_PASS];
	size_t count = 0;

	/* Under the lock: a listed sandbox is not being torn down (kill and
	 * timeout take it off the list first); a held one is skipped (its
	 * holder stops and restarts its VMM on purpose). */
	pthread_mutex_lock(&worker->lock);
	for (struct live_sandbox *s = worker->sandboxes; s && count < WORKER_EXITED_PER_PASS;
	     s = s->next) {
		if (s->holds ||
		    !runtime__exited(s->instance, ended[count].why, sizeof(ended[count].why)))
			continue;
		snprintf(ended[count].id, sizeof(ended[count].id), "%s", s->id);
		snprintf(ended[count].team_id, sizeof(ended[count].team_id), "%s", s->team_id);
		count++;
	}
	pthread_mutex_unlock(&worker->lock);
	for (size_t i = 0; i < count; i++) {
		struct kafka_event command = {.version = KAFKA_EVENT_VERSION,
					      .type = KAFKA_EVENT_KILL};

		log_warn("sandbox %s: %s; marked failed", ended[i].id, ended[i].why);
		if (worker__end_sandbox(worker, ended[i].id, STORAGE_SANDBOX_FAILED,
					ended[i].why) != 0)
			continue;
		ids__uuid(command.request_id);
		/* same sizes: the record was filled from these fields */
		memcpy(command.team_id, ended[i].team_id, sizeof(command.team_id));
		memcpy(command.sandbox_id, ended[i].id, sizeof(command.sandbox_id));
		worker__publish(worker, &command, KAFKA_EVENT_KILLED,
				json_pack("{s:s}", "reason", ended[i].why));
	}
}

void worker__housekeeping(struct worker *worker)
{
	struct storage_sandbox_list expired = {0};
	struct storage_error err;
	struct storage_host host = {0};

	if (storage__sandbox_list_expired(worker->storage, worker->host_id, 100, &expired, &err) ==
	    STORAGE_OK) {
		for (size_t i = 0; i < expired.count; i++) {
			const struct storage_sandbox *row = &expired.items[i];
			struct kafka_event command = {.version = KAFKA_EVENT_VERSION,
						      .type = KAFKA_EVENT_KILL};

			if (row->pause_on_timeout && worker__timeout_pause(worker, row))
				continue; /* paused (or retried on the next round) */
			if (worker__end_sandbox(worker, row->id, STORAGE_SANDBOX_TIMED_OUT,
						"timeout") != 0)
				continue;
			log_info("sandbox %s: timed out", row->id);
			ids__uuid(command.request_id);
			snprintf(command.team_id, sizeof(command.team_id), "%s", row->team_id);
			snprintf(command.sandbox_id, sizeof(command.sandbox_id), "%s", row->id);
			char end_at[32];
			clock__format_rfc3339(row->end_at, end_at);
			worker__publish(worker, &command, KAFKA_EVENT_TIMED_OUT,
					json_pack("{s:s}", "end_at", end_at));
		}
		storage__sandbox_list_free(&expired);
	}

	/* Images of volumes deleted through the API: once a minute. */
	if (clock__monotonic_ms() - worker->last_volume_sweep_ms >= 60000) {
		worker->last_volume_sweep_ms = clock__monotonic_ms();
		worker_volumes__sweep(worker);
	}

	/* Expiry needs the 200 ms cadence; the host row needs a beat a second. */
	if (worker->last_heartbeat_ms && clock__monotonic_ms() - worker->last_heartbeat_ms < 1000 &&
	    !atomic_load(&worker->stopping))
		return;
	worker->last_heartbeat_ms = clock__monotonic_ms();
	worker__end_exited(worker);
	snprintf(host.id, sizeof(host.id), "%s", worker->host_id);
	snprintf(host.address, sizeof(host.address), "%s",
		 config__get("host_address", "127.0.0.1"));
	snprintf(host.runtime, sizeof(host.runtime), "%s", runtime__name(worker->runtime));
	snprintf(host.state, sizeof(host.state), "%s",
		 atomic_load(&worker->stopping) || atomic_load(&worker->draining) ? "draining"
										  : "ready");
	host.capacity = worker->capacity;
	host.protocol_version = KAFKA_EVENT_VERSION;
	/* "running": live sandboxes plus creates in hand, what capacity
	 * bounds (the API's placement reads it). A create whose sandbox is
	 * live counts once: the API answers it before its handler returns, and
	 * a beat that counted it twice refused the next create for a second. */
	size_t in_hand = worker->create_pool ? create_pool__pending(worker->create_pool) : 0;
	pthread_mutex_lock(&worker->lock);
	host.running = (int32_t)worker__occupied(worker, in_hand);
	pthread_mutex_unlock(&worker->lock);
	char previous[16] = "";
	bool drain = false;
	if (storage__host_heartbeat_was(worker->storage, &host, previous, sizeof(previous), &drain,
					&err) != STORAGE_OK) {
		worker__declare_lost_hosts(worker);
		return;
	}
	if (drain != atomic_load(&worker->draining)) {
		log_info(drain ? "drained by an operator: no new creates; the sandboxes here run on"
			       : "drain lifted: taking creates again");
		atomic_store(&worker->draining, drain);
	}
	if (!strcmp(previous, "down")) {
		/* Declared lost while we did not beat (a pause, a partition):
		 * our sandboxes' rows are failed already; what still runs here
		 * would be unaccounted for, so it stops. */
		log_warn("this host was declared lost (no heartbeat for host_lost_after_s): "
			 "stopping the sandboxes it still runs");
		worker__stop_all(worker, "lost: this host was declared lost");
	}
	worker__declare_lost_hosts(worker);
}

/* Ends the rows of host_id's active sandboxes (killing -> killed, the
 * others -> failed with reason, paused ones with paused_reason), with a
 * `killed` result each when publish. How many, or -1 when PostgreSQL
 * could not list them. */
static int worker__end_host_rows(struct worker *worker, const char *host_id, const char *reason,
				 const char *paused_reason, bool publish, const char *const *kept,
				 size_t kept_count)
{
	struct storage_sandbox_list rows = {0};
	struct storage_error err;
	int ended = 0;

	if (storage__sandbox_list_by_host(worker->storage, host_id,
					  STORAGE_STATE_BIT(STORAGE_SANDBOX_RUNNING) |
					      STORAGE_STATE_BIT(STORAGE_SANDBOX_KILLING) |
					      STORAGE_STATE_BIT(STORAGE_SANDBOX_PAUSED) |
					      STORAGE_STATE_BIT(STORAGE_SANDBOX_PAUSING) |
					      STORAGE_STATE_BIT(STORAGE_SANDBOX_RESUMING),
					  &rows, &err) != STORAGE_OK)
		return -1;
	for (size_t i = 0; i < rows.count; i++) {
		const struct storage_sandbox *row = &rows.items[i];
		const char *why = row->state == STORAGE_SANDBOX_PAUSED ? paused_reason : reason;
		bool is_kept = false;

		for (size_t k = 0; k < kept_count && !is_kept; k++)
			is_kept = !strcmp(kept[k], row->id);
		if (is_kept)
			continue;
		struct storage_sandbox_transition t = {
		    .sandbox_id = row->id,
		    .from = row->state,
		    .to = row->state == STORAGE_SANDBOX_KILLING ? STORAGE_SANDBOX_KILLED
								: STORAGE_SANDBOX_FAILED,
		    .slot_index = -1,
		    .failure_reason = why,
		};
		if (storage__sandbox_transition(worker->storage, &t, NULL, &err) != STORAGE_OK)
			continue;
		ended++;
		if (publish) {
			struct kafka_event command = {.version = KAFKA_EVENT_VERSION,
						      .type = KAFKA_EVENT_KILL};
			ids__uuid(command.request_id);
			snprintf(command.team_id, sizeof(command.team_id), "%s", row->team_id);
			snprintf(command.sandbox_id, sizeof(command.sandbox_id), "%s", row->id);
			worker__publish(worker, &command, KAFKA_EVENT_KILLED,
					json_pack("{s:s}", "reason", why));
		}
	}
	storage__sandbox_list_free(&rows);
	return ended;
}

/* Other hosts that stopped heartbeating for host_lost_after_s (30 s):
 * declared `down` (one UPDATE: one worker wins each), their sandboxes
 * failed "lost: host <id> stopped heartbeating" with a `killed` result.
 * Every 5 s. A host declared lost that comes back stops what it still
 * runs (worker__housekeeping). */
static void worker__declare_lost_hosts(struct worker *worker)
{
	char(*ids)[65] = NULL, reason[160];
	struct storage_error err;
	size_t count = 0;

	if (worker->last_lost_sweep_ms && clock__monotonic_ms() - worker->last_lost_sweep_ms < 5000)
		return;
	worker->last_lost_sweep_ms = clock__monotonic_ms();
	if (storage__hosts_declare_lost(worker->storage, config__get_int("host_lost_after_s", 30),
					&ids, &count, &err) != STORAGE_OK)
		return;
	for (size_t i = 0; i < count; i++) {
		if (!strcmp(ids[i], worker->host_id))
			continue; /* ourselves, late: the heartbeat below says so */
		snprintf(reason, sizeof(reason), "lost: host %s stopped heartbeating", ids[i]);
		int ended = worker__end_host_rows(worker, ids[i], reason, reason, true, NULL, 0);
		log_warn(
		    "host %s stopped heartbeating: declared lost, %d sandbox(es) marked failed",
		    ids[i], ended < 0 ? 0 : ended);
	}
	free(ids);
}

/* Takes back one paused sandbox a previous process left complete: a slot
 * with the row's egress policy, the runtime instance (paused, restored in
 * that slot on resume), the live list; a row a crash left pausing or
 * resuming is paused again (a redelivered resume then resumes it). 0, or
 * -1 with nothing kept (its row is then ended as lost). */
static int worker__adopt_paused(struct worker *worker, const struct storage_sandbox *row)
{
	struct live_sandbox *sandbox = calloc(1, sizeof(*sandbox));
	char reason[512] = "";
	json_t *spec = NULL;
	struct net_policy *policy = NULL;

	if (!sandbox)
		return -1;
	snprintf(sandbox->id, sizeof(sandbox->id), "%s", row->id);
	snprintf(sandbox->team_id, sizeof(sandbox->team_id), "%s", row->team_id);
	sandbox->slot = -1;
	if (worker->net) {
		struct storage_team team;
		struct storage_error err;
		uint32_t limit = 0;

		if (!storage__team_get(worker->storage, row->team_id, &team, &err))
			limit = (uint32_t)team.limits.egress_connections;
		spec = json_object();
		for (int k = 0; k < 2; k++) {
			const char *key = k ? "denyOut" : "allowOut";

			if (json_is_array(json_object_get(row->network, key)))
				json_object_set(spec, key, json_object_get(row->network, key));
		}
		policy = net_policy__parse(spec, limit, reason, sizeof(reason));
		if (policy)
			sandbox->slot = net_pool__acquire(worker->net, NET_RUNTIME_VM, policy,
							  &sandbox->slot_info);
		if (!policy || sandbox->slot < 0)
			goto fail;
	}
	sandbox->instance = runtime__adopt_paused(
	    worker->runtime, row->id, worker->net ? sandbox->slot_info.netns_path : NULL, reason,
	    sizeof(reason));
	if (!sandbox->instance ||
	    (row->state != STORAGE_SANDBOX_PAUSED &&
	     worker__move(worker, row->id, row->state, STORAGE_SANDBOX_PAUSED, NULL)))
		goto fail;
	pthread_mutex_lock(&worker->lock);
	sandbox->next = worker->sandboxes;
	worker->sandboxes = sandbox;
	worker->live_count++;
	pthread_mutex_unlock(&worker->lock);
	log_info("reconcile: sandbox %s: paused, kept across the restart (slot %d)", row->id,
		 sandbox->slot);
	net_policy__free(policy);
	json_decref(spec);
	return 0;
fail:
	log_warn("reconcile: sandbox %s: its paused snapshot cannot be kept: %s", row->id,
		 reason[0] ? reason : "no slot or state change");
	worker__teardown(worker, sandbox); /* its files go with it */
	net_policy__free(policy);
	json_decref(spec);
	return -1;
}

/* The paused (pausing, resuming) sandboxes of this host whose files are
 * complete (runtime__paused_complete), adopted; their ids in kept (at
 * most max). How many, or -1 when PostgreSQL could not list them. */
static int worker__keep_paused(struct worker *worker, char (*kept)[IDS_SANDBOX_ID_LEN + 1],
			       size_t max)
{
	struct storage_sandbox_list rows = {0};
	struct storage_error err;
	size_t count = 0;

	if (storage__sandbox_list_by_host(worker->storage, worker->host_id,
					  STORAGE_STATE_BIT(STORAGE_SANDBOX_PAUSED) |
					      STORAGE_STATE_BIT(STORAGE_SANDBOX_PAUSING) |
					      STORAGE_STATE_BIT(STORAGE_SANDBOX_RESUMING),
					  &rows, &err) != STORAGE_OK)
		return -1;
	for (size_t i = 0; i < rows.count && count < max; i++) {
		if (!runtime__paused_complete(worker->runtime, rows.items[i].id) ||
		    worker__adopt_paused(worker, &rows.items[i]))
			continue;
		snprintf(kept[count++], IDS_SANDBOX_ID_LEN + 1, "%s", rows.items[i].id);
	}
	storage__sandbox_list_free(&rows);
	return (int)count;
}

int worker__reconcile(struct worker *worker)
{
	size_t max = (size_t)(worker->capacity > 0 ? worker->capacity : 1);
	char(*kept)[IDS_SANDBOX_ID_LEN + 1] = calloc(max, sizeof(*kept));
	const char **keep = calloc(max, sizeof(*keep));
	int reaped, lost, paused;

	if (!kept || !keep) {
		free(kept);
		free(keep);
		return -ENOMEM;
	}
	/* A previous process of this worker may have left sandboxes running; we
	 * hold no handles on them, so they are stopped and their rows ended.
	 * Rows still `starting` are left: their create was not committed and
	 * Kafka delivers it again. A paused vm sandbox whose snapshot is
	 * complete is kept (adopted, still paused); any other paused one ends
	 * as failed, as do paused jail sandboxes: their frozen processes die
	 * with the reap and only ever lived in memory (workers/README.md,
	 * "Pause"). */
	paused = worker__keep_paused(worker, kept, max);
	if (paused < 0) {
		free(kept);
		free(keep);
		log_error("reconcile: listing this host's paused sandboxes failed");
		return -EAGAIN;
	}
	for (int i = 0; i < paused; i++)
		keep[i] = kept[i];
	reaped = runtime__reap_orphans(worker->runtime, keep, (size_t)paused);
	lost = worker__end_host_rows(worker, worker->host_id, "lost: the worker restarted",
				     "lost: the worker restarted while it was paused", false, keep,
				     (size_t)paused);
	free(kept);
	free(keep);
	if (lost < 0) {
		log_error("reconcile: listing this host's sandboxes failed");
		return -EAGAIN;
	}
	log_info("reconcile: %d orphan sandbox(es) stopped, %d row(s) marked lost, %d paused "
		 "sandbox(es) kept",
		 reaped, lost, paused);
	/* after the reap: no mount of a deleted volume's image is left */
	worker_volumes__sweep(worker);
	lost = snapshot__sweep_unfinished(templates__dir(), templates__cache_dir());
	if (lost > 0)
		log_info("reconcile: %d unfinished snapshot(s) of a previous process removed",
			 lost);
	return 0;
}

void worker__stop_all(struct worker *worker, const char *reason)
{
	for (;;) {
		char id[IDS_SANDBOX_ID_LEN + 1];

		pthread_mutex_lock(&worker->lock);
		if (!worker->sandboxes) {
			pthread_mutex_unlock(&worker->lock);
			break;
		}
		snprintf(id, sizeof(id), "%s", worker->sandboxes->id);
		pthread_mutex_unlock(&worker->lock);
		if (worker__end_sandbox(worker, id, STORAGE_SANDBOX_KILLED, reason) == -EAGAIN) {
			/* PostgreSQL is away: the next start's reconcile ends the row. */
			log_warn("sandbox %s: stopped, row left for reconcile", id);
		}
	}
}

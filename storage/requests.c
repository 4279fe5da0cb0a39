/* storage requests: idempotency records, sandbox events (append-only),
 * generic rate-limit state and the admin views. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rows.h"
#include "warren/ids.h"

/* ---- sandbox events ---- */

int storage__sandbox_event_append(struct storage_pool *pool, const char *sandbox_id,
				  const char *type, const json_t *payload, int64_t *event_id,
				  struct storage_error *err)
{
	char *payload_text = NULL;
	PGresult *result;
	int rc;

	if (!ids__is_sandbox_id(sandbox_id))
		return storage__fail(err, STORAGE_ERR_NOT_FOUND_REF, "sandbox not found");
	if (!type)
		return storage__fail(err, STORAGE_ERR_INVALID, "event type required");
	if (payload) {
		if (!json_is_object(payload))
			return storage__fail(err, STORAGE_ERR_INVALID, "payload must be an object");
		payload_text = json_dumps(payload, JSON_COMPACT);
		if (!payload_text)
			return storage__fail(err, STORAGE_ERR_INVALID,
					     "payload cannot be serialized");
	}
	{
		const char *params[] = {sandbox_id, type, payload_text};

		rc = storage__run_row(pool, STMT_EVENT_APPEND, params, &result, "event", err);
	}
	free(payload_text);
	if (rc)
		return rc;
	if (event_id)
		*event_id = storage__int(result, 0, 0, -1);
	PQclear(result);
	return STORAGE_OK;
}

static void event_decode(const PGresult *result, int row, void *item)
{
	struct storage_sandbox_event *event = item;

	event->id = storage__int(result, row, 0, -1);
	storage__text(result, row, 1, event->type, sizeof(event->type));
	event->payload = storage__json(result, row, 2);
	event->at = storage__int(result, row, 3, -1);
}

int storage__sandbox_events_list(struct storage_pool *pool, const char *sandbox_id,
				 int64_t after_id, int limit, struct storage_sandbox_event **out,
				 size_t *count, struct storage_error *err)
{
	char after[24], limit_text[16];
	const char *params[] = {sandbox_id, after, limit_text};

	*out = NULL;
	*count = 0;
	if (!ids__is_sandbox_id(sandbox_id))
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "sandbox not found");
	if (limit < 1 || limit > 1000)
		return storage__fail(err, STORAGE_ERR_INVALID, "limit must be 1..1000");
	snprintf(after, sizeof(after), "%lld", (long long)after_id);
	snprintf(limit_text, sizeof(limit_text), "%d", limit);
	return storage__run_list(pool, STMT_EVENT_LIST, params, sizeof(**out), event_decode,
				 (void **)out, count, err);
}

void storage__sandbox_events_free(struct storage_sandbox_event *events, size_t count)
{
	for (size_t i = 0; events && i < count; i++)
		json_decref(events[i].payload);
	free(events);
}

/* ---- requests ---- */

void storage__request_clear(struct storage_request *request)
{
	if (!request)
		return;
	json_decref(request->result);
	request->result = NULL;
}

int storage__request_begin(struct storage_pool *pool, const char *request_id, const char *team_id,
			   const char *type, const char *sandbox_id, bool *created,
			   struct storage_request *out, struct storage_error *err)
{
	const char *params[] = {request_id, team_id, type, sandbox_id};
	struct storage_request request;
	PGresult *result = NULL;
	int rc = STORAGE_ERR_NOT_FOUND;

	if (!ids__is_uuid(request_id))
		return storage__fail(err, STORAGE_ERR_INVALID, "bad request id");
	if (!ids__is_uuid(team_id))
		return storage__fail(err, STORAGE_ERR_NOT_FOUND_REF, "team not found");
	if (!type)
		return storage__fail(err, STORAGE_ERR_INVALID, "request type required");
	/* Zero rows happen when a concurrent begin of the same id committed
	 * after this statement's snapshot: run once more to read it. */
	for (int attempt = 0; attempt < 2 && rc == STORAGE_ERR_NOT_FOUND; attempt++)
		rc = storage__run_row(pool, STMT_REQUEST_BEGIN, params, &result, "request", err);
	if (rc)
		return rc;
	storage__request_from_row(result, 0, &request);
	if (created)
		*created = storage__bool(result, 0, 8);
	PQclear(result);
	if (strcasecmp(request.team_id, team_id)) { /* uuid text: any case */
		storage__request_clear(&request);
		return storage__fail(err, STORAGE_ERR_DUPLICATE,
				     "request id %s is used by another team", request_id);
	}
	if (out)
		*out = request;
	else
		storage__request_clear(&request);
	return STORAGE_OK;
}

int storage__request_get(struct storage_pool *pool, const char *request_id,
			 struct storage_request *out, struct storage_error *err)
{
	const char *params[] = {request_id};
	PGresult *result;
	int rc;

	if (!ids__is_uuid(request_id))
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "request not found");
	rc = storage__run_row(pool, STMT_REQUEST_GET, params, &result, "request", err);
	if (rc)
		return rc;
	if (out)
		storage__request_from_row(result, 0, out);
	PQclear(result);
	return STORAGE_OK;
}

int storage__request_finish(struct storage_pool *pool, const char *request_id,
			    enum storage_request_status status, const json_t *result_json,
			    struct storage_error *err)
{
	return storage__request_finish_notify(pool, request_id, status, result_json, NULL, err);
}

int storage__request_finish_notify(struct storage_pool *pool, const char *request_id,
				   enum storage_request_status status, const json_t *result_json,
				   const char *event, struct storage_error *err)
{
	char *result_text = NULL;
	const char *status_name = status == STORAGE_REQUEST_DONE ? "done" : "failed";
	PGresult *result;
	int rc;

	if (!ids__is_uuid(request_id))
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "request not found");
	if (status != STORAGE_REQUEST_DONE && status != STORAGE_REQUEST_FAILED)
		return storage__fail(err, STORAGE_ERR_INVALID, "a request finishes done or failed");
	if (result_json) {
		result_text = json_dumps(result_json, JSON_COMPACT | JSON_ENCODE_ANY);
		if (!result_text)
			return storage__fail(err, STORAGE_ERR_INVALID,
					     "result cannot be serialized");
	}
	{
		const char *params[] = {request_id, status_name, result_text, event};
		/* NOTIFY payloads are shorter than 8000 bytes: a longer event
		 * reaches its waiter through Kafka alone. */
		bool notify = event && strlen(event) < STORAGE_NOTIFY_PAYLOAD_MAX;

		rc = storage__run_row(pool,
				      notify ? STMT_REQUEST_FINISH_NOTIFY : STMT_REQUEST_FINISH,
				      params, &result, "request", err);
	}
	free(result_text);
	if (rc == STORAGE_OK) {
		PQclear(result);
		return STORAGE_OK;
	}
	if (rc != STORAGE_ERR_NOT_FOUND)
		return rc;
	rc = storage__request_get(pool, request_id, NULL, err);
	if (rc)
		return rc;
	return storage__fail(err, STORAGE_ERR_CONFLICT, "request %s is already finished",
			     request_id);
}

/* ---- rate limits ---- */

int storage__rate_limit_load(struct storage_pool *pool, const char *key, bool *found,
			     int64_t *tat_ms, struct storage_error *err)
{
	const char *params[] = {key};
	PGresult *result;
	int rc;

	if (!key)
		return storage__fail(err, STORAGE_ERR_INVALID, "key required");
	rc = storage__run_row(pool, STMT_RATE_LIMIT_LOAD, params, &result, "rate limit", err);
	if (rc == STORAGE_ERR_NOT_FOUND) {
		*found = false;
		*tat_ms = 0;
		storage__ok(err);
		return STORAGE_OK;
	}
	if (rc)
		return rc;
	*found = true;
	*tat_ms = storage__int(result, 0, 0, 0);
	PQclear(result);
	return STORAGE_OK;
}

int storage__rate_limit_store(struct storage_pool *pool, const char *key, bool expected_found,
			      int64_t expected_tat_ms, int64_t new_tat_ms,
			      struct storage_error *err)
{
	char expected[24], value[24];
	PGresult *result;
	int rc;

	if (!key)
		return storage__fail(err, STORAGE_ERR_INVALID, "key required");
	snprintf(expected, sizeof(expected), "%lld", (long long)expected_tat_ms);
	snprintf(value, sizeof(value), "%lld", (long long)new_tat_ms);
	if (expected_found) {
		const char *params[] = {key, expected, value};

		rc = storage__run_row(pool, STMT_RATE_LIMIT_UPDATE, params, &result, "key", err);
	} else {
		const char *params[] = {key, value};

		rc = storage__run_row(pool, STMT_RATE_LIMIT_INSERT, params, &result, "key", err);
	}
	if (rc == STORAGE_ERR_NOT_FOUND)
		return storage__fail(err, STORAGE_ERR_CONFLICT, "rate limit %s changed", key);
	if (rc)
		return rc;
	PQclear(result);
	return STORAGE_OK;
}

int storage__rate_limit_record_rejection(struct storage_pool *pool, const char *team_id,
					 const char *limit_name, struct storage_error *err)
{
	const char *params[] = {team_id, limit_name};

	if (!ids__is_uuid(team_id))
		return storage__fail(err, STORAGE_ERR_NOT_FOUND_REF, "team not found");
	if (!limit_name)
		return storage__fail(err, STORAGE_ERR_INVALID, "limit name required");
	return storage__run_exec(pool, STMT_RATE_LIMIT_REJECTION, params, err);
}

/* ---- admin views ---- */

static void admin_running_decode(const PGresult *result, int row, void *item)
{
	struct storage_admin_running *running = item;
	char tier[16];

	storage__text(result, row, 0, running->team, sizeof(running->team));
	storage__text(result, row, 1, tier, sizeof(tier));
	if (!storage__tier_parse(tier, &running->tier))
		running->tier = STORAGE_TIER_HOBBY;
	running->limit = (int32_t)storage__int(result, row, 2, 0);
	running->starting = (int32_t)storage__int(result, row, 3, 0);
	running->running = (int32_t)storage__int(result, row, 4, 0);
	running->paused = (int32_t)storage__int(result, row, 5, 0);
}

int storage__admin_running(struct storage_pool *pool, struct storage_admin_running **out,
			   size_t *count, struct storage_error *err)
{
	return storage__run_list(pool, STMT_ADMIN_RUNNING, NULL, sizeof(**out),
				 admin_running_decode, (void **)out, count, err);
}

static void admin_rejections_decode(const PGresult *result, int row, void *item)
{
	struct storage_admin_rejections *rejections = item;

	rejections->minute = storage__int(result, row, 0, -1);
	storage__text(result, row, 1, rejections->team, sizeof(rejections->team));
	storage__text(result, row, 2, rejections->limit_name, sizeof(rejections->limit_name));
	rejections->rejections = storage__int(result, row, 3, 0);
}

int storage__admin_rejections(struct storage_pool *pool, int minutes,
			      struct storage_admin_rejections **out, size_t *count,
			      struct storage_error *err)
{
	char minutes_text[16];
	const char *params[] = {minutes_text};

	if (minutes < 1 || minutes > 525600)
		return storage__fail(err, STORAGE_ERR_INVALID, "minutes must be 1..525600");
	snprintf(minutes_text, sizeof(minutes_text), "%d", minutes);
	return storage__run_list(pool, STMT_ADMIN_REJECTIONS, params, sizeof(**out),
				 admin_rejections_decode, (void **)out, count, err);
}

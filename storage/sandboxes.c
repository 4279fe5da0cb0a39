/* storage sandboxes: admission, idempotent insert, compare-and-set state
 * transitions, team-isolated reads and keyset-paginated lists
 * (docs/schema.md, "Sandbox state machine"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rows.h"
#include "warren/ids.h"

void storage__sandbox_clear(struct storage_sandbox *sandbox)
{
	if (!sandbox)
		return;
	json_decref(sandbox->network);
	json_decref(sandbox->metadata);
	sandbox->network = NULL;
	sandbox->metadata = NULL;
}

void storage__sandbox_list_free(struct storage_sandbox_list *list)
{
	if (!list)
		return;
	for (size_t i = 0; i < list->count; i++)
		storage__sandbox_clear(&list->items[i]);
	free(list->items);
	list->items = NULL;
	list->count = 0;
	list->next_token[0] = '\0';
}

/* Serializes an optional JSON object parameter; *text is freed by the
 * caller. INVALID when value is not an object. */
static int storage__json_param(const json_t *value, const char *what, char **text,
			       struct storage_error *err)
{
	*text = NULL;
	if (!value)
		return STORAGE_OK;
	if (!json_is_object(value))
		return storage__fail(err, STORAGE_ERR_INVALID, "%s must be a JSON object", what);
	*text = json_dumps(value, JSON_COMPACT);
	if (!*text)
		return storage__fail(err, STORAGE_ERR_INVALID, "%s cannot be serialized", what);
	return STORAGE_OK;
}

/* "{starting,running}" from a state mask (0 = every state). */
static void storage__state_array(uint32_t states, char *out, size_t size)
{
	size_t used = 0;

	if (!states)
		states = STORAGE_STATES_ALL;
	used += (size_t)snprintf(out, size, "{");
	for (int i = 0; i < STORAGE_SANDBOX_STATE_COUNT && used < size; i++) {
		if (!(states & STORAGE_STATE_BIT(i)))
			continue;
		used +=
		    (size_t)snprintf(out + used, size - used, "%s%s", used > 1 ? "," : "",
				     storage__sandbox_state_name((enum storage_sandbox_state)i));
	}
	if (used < size)
		snprintf(out + used, size - used, "}");
}

static int storage__sandbox_one(struct storage_pool *pool, enum storage_statement_id id,
				const char *const *params, struct storage_sandbox *out,
				struct storage_error *err)
{
	PGresult *result;
	int rc = storage__run_row(pool, id, params, &result, "sandbox", err);

	if (rc)
		return rc;
	if (out)
		storage__sandbox_from_row(result, 0, out);
	PQclear(result);
	return STORAGE_OK;
}

int storage__sandbox_get(struct storage_pool *pool, const char *team_id, const char *sandbox_id,
			 struct storage_sandbox *out, struct storage_error *err)
{
	const char *params[] = {sandbox_id, team_id};

	if (!ids__is_sandbox_id(sandbox_id) || !ids__is_uuid(team_id))
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "sandbox not found");
	return storage__sandbox_one(pool, STMT_SANDBOX_GET, params, out, err);
}

int storage__sandbox_get_internal(struct storage_pool *pool, const char *sandbox_id,
				  struct storage_sandbox *out, struct storage_error *err)
{
	const char *params[] = {sandbox_id};

	if (!ids__is_sandbox_id(sandbox_id))
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "sandbox not found");
	return storage__sandbox_one(pool, STMT_SANDBOX_GET_INTERNAL, params, out, err);
}

static int storage__sandbox_admit_with(struct storage_pool *pool,
				       const struct storage_sandbox_new *sandbox, bool enforce,
				       struct storage_admission *admission,
				       struct storage_sandbox *out, struct storage_error *err)
{
	char timeout[16], *network = NULL, *metadata = NULL,
			  admitted_id[STORAGE_SANDBOX_ID_LEN + 1];
	PGresult *result = NULL;
	struct storage_admission local;
	int rc;

	if (!admission)
		admission = &local;
	if (!ids__is_sandbox_id(sandbox->id)) {
		rc = storage__fail(err, STORAGE_ERR_INVALID, "bad sandbox id");
		goto out;
	}
	if (!ids__is_uuid(sandbox->team_id)) {
		rc = storage__fail(err, STORAGE_ERR_NOT_FOUND_REF, "team not found");
		goto out;
	}
	if (!ids__is_uuid(sandbox->request_id)) {
		rc = storage__fail(err, STORAGE_ERR_INVALID, "bad request id");
		goto out;
	}
	if (!sandbox->template_id || sandbox->timeout_s <= 0) {
		rc = storage__fail(err, STORAGE_ERR_INVALID, "template and a timeout > 0 required");
		goto out;
	}
	rc = storage__json_param(sandbox->network, "network", &network, err);
	if (rc)
		goto out;
	rc = storage__json_param(sandbox->metadata, "metadata", &metadata, err);
	if (rc)
		goto out;
	snprintf(timeout, sizeof(timeout), "%d", sandbox->timeout_s);
	{
		const char *params[] = {sandbox->id,
					sandbox->team_id,
					sandbox->template_id,
					sandbox->request_id,
					timeout,
					network,
					metadata,
					sandbox->secure ? "t" : "f",
					sandbox->allow_public_traffic ? "t" : "f",
					sandbox->mask_request_host,
					enforce ? "t" : "f"};

		rc = storage__run_row(pool, STMT_SANDBOX_ADMIT, params, &result, "admission", err);
	}
	if (rc)
		goto out;
	admission->admitted = storage__bool(result, 0, 0);
	admission->existing = storage__bool(result, 0, 1);
	admission->active_count = (int32_t)storage__int(result, 0, 2, 0);
	admission->limit = (int32_t)storage__int(result, 0, 3, 0);
	storage__text(result, 0, 4, admitted_id, sizeof(admitted_id));
	if (admission->admitted && out)
		rc = storage__sandbox_get_internal(pool, admitted_id, out, err);
	else
		storage__ok(err);
out:
	PQclear(result);
	free(network);
	free(metadata);
	return rc;
}

int storage__sandbox_admit(struct storage_pool *pool, const struct storage_sandbox_new *sandbox,
			   struct storage_admission *admission, struct storage_sandbox *out,
			   struct storage_error *err)
{
	return storage__sandbox_admit_with(pool, sandbox, true, admission, out, err);
}

int storage__sandbox_insert(struct storage_pool *pool, const struct storage_sandbox_new *sandbox,
			    bool *existing, struct storage_sandbox *out, struct storage_error *err)
{
	struct storage_admission admission;
	int rc = storage__sandbox_admit_with(pool, sandbox, false, &admission, out, err);

	if (!rc && existing)
		*existing = admission.existing;
	return rc;
}

int storage__sandbox_transition(struct storage_pool *pool,
				const struct storage_sandbox_transition *t,
				struct storage_sandbox *out, struct storage_error *err)
{
	char slot_index[16];
	const char *params[] = {t->sandbox_id,
				storage__sandbox_state_name(t->from),
				storage__sandbox_state_name(t->to),
				t->host_id,
				t->slot_index >= 0 ? slot_index : NULL,
				t->slot_address,
				t->failure_reason,
				t->team_id};
	struct storage_sandbox current;
	struct storage_error local;
	PGresult *result;
	int rc;

	if (!err)
		err = &local;
	if (!ids__is_sandbox_id(t->sandbox_id) || (t->team_id && !ids__is_uuid(t->team_id)))
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "sandbox not found");
	if ((unsigned)t->from >= STORAGE_SANDBOX_STATE_COUNT ||
	    (unsigned)t->to >= STORAGE_SANDBOX_STATE_COUNT)
		return storage__fail(err, STORAGE_ERR_INVALID, "bad state");
	snprintf(slot_index, sizeof(slot_index), "%d", t->slot_index);
	rc = storage__run_row(pool, STMT_SANDBOX_TRANSITION, params, &result, "sandbox", err);
	if (rc == STORAGE_OK) {
		if (out)
			storage__sandbox_from_row(result, 0, out);
		PQclear(result);
		return STORAGE_OK;
	}
	if (rc != STORAGE_ERR_NOT_FOUND)
		return rc;
	/* No row changed: absent (or another team's), or not in t->from. */
	rc = t->team_id ? storage__sandbox_get(pool, t->team_id, t->sandbox_id, &current, err)
			: storage__sandbox_get_internal(pool, t->sandbox_id, &current, err);
	if (rc)
		return rc;
	storage__sandbox_clear(&current);
	return storage__fail(err, STORAGE_ERR_CONFLICT, "sandbox %s is %s, not %s", t->sandbox_id,
			     storage__sandbox_state_name(current.state),
			     storage__sandbox_state_name(t->from));
}

int storage__sandbox_set_lifecycle(struct storage_pool *pool, const char *sandbox_id,
				   bool pause_on_timeout, bool auto_resume,
				   struct storage_error *err)
{
	const char *params[] = {sandbox_id, pause_on_timeout ? "pause" : "kill",
				auto_resume ? "t" : "f"};
	PGresult *result;
	int rc;

	if (!ids__is_sandbox_id(sandbox_id))
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "sandbox not found");
	rc = storage__run_row(pool, STMT_SANDBOX_SET_LIFECYCLE, params, &result, "sandbox", err);
	if (rc)
		return rc;
	PQclear(result);
	return STORAGE_OK;
}

int storage__sandbox_set_timeout(struct storage_pool *pool, const char *team_id,
				 const char *sandbox_id, int32_t timeout_s, int64_t *end_at,
				 struct storage_error *err)
{
	char timeout[16];
	const char *params[] = {sandbox_id, team_id, timeout};
	PGresult *result;
	int rc;

	if (!ids__is_sandbox_id(sandbox_id) || !ids__is_uuid(team_id))
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "sandbox not found");
	if (timeout_s <= 0)
		return storage__fail(err, STORAGE_ERR_INVALID, "timeout must be > 0");
	snprintf(timeout, sizeof(timeout), "%d", timeout_s);
	rc = storage__run_row(pool, STMT_SANDBOX_SET_TIMEOUT, params, &result, "live sandbox", err);
	if (rc)
		return rc;
	if (end_at)
		*end_at = storage__int(result, 0, 0, -1);
	PQclear(result);
	return STORAGE_OK;
}

/* Runs a sandbox listing; with page_limit > 0, one extra row tells that a
 * next page exists and its token is set from the page's last row. */
static int storage__sandbox_list_run(struct storage_pool *pool, enum storage_statement_id id,
				     const char *const *params, int page_limit,
				     struct storage_sandbox_list *out, struct storage_error *err)
{
	struct storage_error local;
	PGresult *result;
	int rows;

	if (!err)
		err = &local;
	memset(out, 0, sizeof(*out));
	result = storage__run(pool, id, params, err);
	if (!result)
		return err->code;
	rows = PQntuples(result);
	if (page_limit > 0 && rows > page_limit) {
		char last_id[STORAGE_SANDBOX_ID_LEN + 1];

		rows = page_limit;
		storage__text(result, rows - 1, 0, last_id, sizeof(last_id));
		storage__page_token_encode(
		    storage__int(result, rows - 1, SANDBOX_COLUMN_CREATED_US, 0), last_id,
		    out->next_token);
	}
	if (rows > 0) {
		out->items = calloc((size_t)rows, sizeof(*out->items));
		if (!out->items) {
			PQclear(result);
			return storage__fail(err, STORAGE_ERR_INTERNAL, "out of memory");
		}
		for (int i = 0; i < rows; i++)
			storage__sandbox_from_row(result, i, &out->items[i]);
	}
	out->count = (size_t)rows;
	PQclear(result);
	return STORAGE_OK;
}

int storage__sandbox_list(struct storage_pool *pool, const char *team_id,
			  const struct storage_sandbox_filter *filter,
			  struct storage_sandbox_list *out, struct storage_error *err)
{
	char states[128], created_us_text[24], limit_text[16], after_text[24] = "",
							       before_text[24] = "";
	char after_id[STORAGE_SANDBOX_ID_LEN + 1] = "";
	char *metadata = NULL;
	int64_t created_us = 0;
	bool paged = false;
	int limit = filter && filter->limit > 0 ? filter->limit : STORAGE_PAGE_LIMIT_MAX;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!ids__is_uuid(team_id))
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "team not found");
	if (limit > STORAGE_PAGE_LIMIT_MAX)
		return storage__fail(err, STORAGE_ERR_INVALID, "limit must be at most %d",
				     STORAGE_PAGE_LIMIT_MAX);
	if (filter && filter->page_token && filter->page_token[0]) {
		if (!storage__page_token_decode(filter->page_token, &created_us, after_id))
			return storage__fail(err, STORAGE_ERR_INVALID, "bad page token");
		paged = true;
	}
	rc = storage__json_param(filter ? filter->metadata : NULL, "metadata filter", &metadata,
				 err);
	if (rc)
		return rc;
	storage__state_array(filter ? filter->states : 0, states, sizeof(states));
	snprintf(created_us_text, sizeof(created_us_text), "%lld", (long long)created_us);
	snprintf(limit_text, sizeof(limit_text), "%d", limit + 1);
	if (filter && filter->started_after_ms > 0)
		snprintf(after_text, sizeof(after_text), "%lld",
			 (long long)filter->started_after_ms);
	if (filter && filter->started_before_ms > 0)
		snprintf(before_text, sizeof(before_text), "%lld",
			 (long long)filter->started_before_ms);
	{
		const char *params[] = {team_id,
					states,
					metadata ? metadata : "{}",
					paged ? created_us_text : NULL,
					paged ? after_id : NULL,
					limit_text,
					filter && filter->template_id ? filter->template_id : NULL,
					after_text[0] ? after_text : NULL,
					filter && filter->ascending ? "true" : "false",
					before_text[0] ? before_text : NULL};

		rc = storage__sandbox_list_run(pool, STMT_SANDBOX_LIST, params, limit, out, err);
	}
	free(metadata);
	return rc;
}

int storage__sandbox_count_active(struct storage_pool *pool, const char *team_id, int32_t *count,
				  struct storage_error *err)
{
	const char *params[] = {team_id};
	PGresult *result;
	int rc;

	if (!ids__is_uuid(team_id))
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "team not found");
	rc = storage__run_row(pool, STMT_SANDBOX_COUNT_ACTIVE, params, &result, "count", err);
	if (rc)
		return rc;
	*count = (int32_t)storage__int(result, 0, 0, 0);
	PQclear(result);
	return STORAGE_OK;
}

int storage__sandbox_list_by_host(struct storage_pool *pool, const char *host_id, uint32_t states,
				  struct storage_sandbox_list *out, struct storage_error *err)
{
	char state_array[128];
	const char *params[] = {host_id, state_array};

	memset(out, 0, sizeof(*out));
	if (!host_id)
		return storage__fail(err, STORAGE_ERR_INVALID, "host id required");
	storage__state_array(states, state_array, sizeof(state_array));
	return storage__sandbox_list_run(pool, STMT_SANDBOX_LIST_BY_HOST, params, 0, out, err);
}

int storage__sandbox_list_expired(struct storage_pool *pool, const char *host_id, int limit,
				  struct storage_sandbox_list *out, struct storage_error *err)
{
	char limit_text[16];
	const char *params[] = {host_id, limit_text};

	memset(out, 0, sizeof(*out));
	if (!host_id || limit < 1 || limit > 1000)
		return storage__fail(err, STORAGE_ERR_INVALID,
				     "host id and a limit of 1..1000 required");
	snprintf(limit_text, sizeof(limit_text), "%d", limit);
	return storage__sandbox_list_run(pool, STMT_SANDBOX_LIST_EXPIRED, params, 0, out, err);
}

int storage__sandbox_set_network(struct storage_pool *pool, const char *team_id,
				 const char *sandbox_id, const json_t *patch,
				 struct storage_error *err)
{
	char *text = NULL;
	PGresult *result = NULL;
	int rc;

	if (!ids__is_sandbox_id(sandbox_id) || !ids__is_uuid(team_id))
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "sandbox not found");
	if (!patch)
		return storage__fail(err, STORAGE_ERR_INVALID,
				     "network patch must be a JSON object");
	rc = storage__json_param(patch, "network patch", &text, err);
	if (rc)
		return rc;
	{
		const char *params[] = {sandbox_id, team_id, text};

		rc = storage__run_row(pool, STMT_SANDBOX_SET_NETWORK, params, &result, "sandbox",
				      err);
	}
	PQclear(result);
	free(text);
	return rc;
}

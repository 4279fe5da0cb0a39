/* storage catalog: teams, API keys, templates and hosts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rows.h"
#include "warren/ids.h"

static void team_decode(const PGresult *result, int row, void *item)
{
	storage__team_from_row(result, row, item);
}

static void api_key_decode(const PGresult *result, int row, void *item)
{
	storage__api_key_from_row(result, row, item);
}

static void template_decode(const PGresult *result, int row, void *item)
{
	storage__template_from_row(result, row, item);
}

static void host_decode(const PGresult *result, int row, void *item)
{
	storage__host_from_row(result, row, item);
}

/* One team row from statement id (NOT_FOUND when none). */
static int storage__team_one(struct storage_pool *pool, enum storage_statement_id id,
			     const char *const *params, struct storage_team *out,
			     struct storage_error *err)
{
	PGresult *result;
	int rc = storage__run_row(pool, id, params, &result, "team", err);

	if (rc)
		return rc;
	if (out)
		storage__team_from_row(result, 0, out);
	PQclear(result);
	return STORAGE_OK;
}

int storage__team_create(struct storage_pool *pool, const char *name, enum storage_tier tier,
			 struct storage_team *out, struct storage_error *err)
{
	const char *params[] = {name, storage__tier_name(tier)};
	int rc;

	if (!name)
		return storage__fail(err, STORAGE_ERR_INVALID, "team name missing");
	rc = storage__team_one(pool, STMT_TEAM_CREATE, params, out, err);
	if (rc == STORAGE_ERR_NOT_FOUND) /* no such tier row */
		return storage__fail(err, STORAGE_ERR_INVALID, "unknown tier");
	return rc;
}

int storage__team_get(struct storage_pool *pool, const char *team_id, struct storage_team *out,
		      struct storage_error *err)
{
	const char *params[] = {team_id};

	if (!ids__is_uuid(team_id))
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "team not found");
	return storage__team_one(pool, STMT_TEAM_GET, params, out, err);
}

int storage__team_get_by_name(struct storage_pool *pool, const char *name, struct storage_team *out,
			      struct storage_error *err)
{
	const char *params[] = {name};

	if (!name)
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "team not found");
	return storage__team_one(pool, STMT_TEAM_GET_BY_NAME, params, out, err);
}

int storage__team_list(struct storage_pool *pool, struct storage_team **out, size_t *count,
		       struct storage_error *err)
{
	return storage__run_list(pool, STMT_TEAM_LIST, NULL, sizeof(**out), team_decode,
				 (void **)out, count, err);
}

int storage__team_set_tier(struct storage_pool *pool, const char *team_id, enum storage_tier tier,
			   struct storage_team *out, struct storage_error *err)
{
	const char *params[] = {team_id, storage__tier_name(tier)};

	if (!ids__is_uuid(team_id))
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "team not found");
	return storage__team_one(pool, STMT_TEAM_SET_TIER, params, out, err);
}

int storage__team_set_limit(struct storage_pool *pool, const char *team_id, const char *limit_name,
			    int32_t value, struct storage_team *out, struct storage_error *err)
{
	char value_text[16];
	const char *params[] = {team_id, limit_name, value_text};

	if (!storage__limit_name_valid(limit_name))
		return storage__fail(err, STORAGE_ERR_INVALID, "unknown limit '%s'",
				     limit_name ? limit_name : "");
	if (value <= 0)
		return storage__fail(err, STORAGE_ERR_INVALID, "limit %s must be > 0", limit_name);
	if (!ids__is_uuid(team_id))
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "team not found");
	snprintf(value_text, sizeof(value_text), "%d", value);
	return storage__team_one(pool, STMT_TEAM_SET_LIMIT, params, out, err);
}

/* ---- API keys ---- */

int storage__api_key_create(struct storage_pool *pool, const char *team_id, const char *key_hash,
			    const char *prefix, struct storage_api_key *out,
			    struct storage_error *err)
{
	const char *params[] = {team_id, key_hash, prefix};
	PGresult *result;
	int rc;

	if (!ids__is_uuid(team_id))
		return storage__fail(err, STORAGE_ERR_NOT_FOUND_REF, "team not found");
	if (!key_hash || !prefix)
		return storage__fail(err, STORAGE_ERR_INVALID, "key hash and prefix required");
	rc = storage__run_row(pool, STMT_API_KEY_CREATE, params, &result, "api key", err);
	if (rc)
		return rc;
	if (out)
		storage__api_key_from_row(result, 0, out);
	PQclear(result);
	return STORAGE_OK;
}

int storage__api_key_authenticate(struct storage_pool *pool, const char *key_hash,
				  struct storage_team *team, struct storage_error *err)
{
	const char *params[] = {key_hash};
	int rc;

	if (!key_hash)
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "api key not found");
	rc = storage__team_one(pool, STMT_API_KEY_AUTHENTICATE, params, team, err);
	if (rc == STORAGE_ERR_NOT_FOUND)
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "api key not found or revoked");
	return rc;
}

static int storage__api_key_revoke_with(struct storage_pool *pool, enum storage_statement_id id,
					const char *value, struct storage_error *err)
{
	const char *params[] = {value};
	PGresult *result;
	int rc = storage__run_row(pool, id, params, &result, "active api key", err);

	if (rc)
		return rc;
	PQclear(result);
	return STORAGE_OK;
}

int storage__api_key_revoke(struct storage_pool *pool, const char *key_id,
			    struct storage_error *err)
{
	if (!ids__is_uuid(key_id))
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "active api key not found");
	return storage__api_key_revoke_with(pool, STMT_API_KEY_REVOKE, key_id, err);
}

int storage__api_key_revoke_by_hash(struct storage_pool *pool, const char *key_hash,
				    struct storage_error *err)
{
	if (!key_hash)
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "active api key not found");
	return storage__api_key_revoke_with(pool, STMT_API_KEY_REVOKE_BY_HASH, key_hash, err);
}

int storage__api_key_list(struct storage_pool *pool, const char *team_id,
			  struct storage_api_key **out, size_t *count, struct storage_error *err)
{
	const char *params[] = {team_id};

	if (!ids__is_uuid(team_id)) {
		*out = NULL;
		*count = 0;
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "team not found");
	}
	return storage__run_list(pool, STMT_API_KEY_LIST, params, sizeof(**out), api_key_decode,
				 (void **)out, count, err);
}

/* ---- templates ---- */

int storage__template_upsert(struct storage_pool *pool, const struct storage_template *template_in,
			     struct storage_error *err)
{
	const char *params[] = {template_in->id, template_in->agent_version,
				template_in->image_path, template_in->content_hash};

	return storage__run_exec(pool, STMT_TEMPLATE_UPSERT, params, err);
}

/* One template row of statement (its params) into out (may be NULL). */
static int template_row(struct storage_pool *pool, enum storage_statement_id statement,
			const char *const *params, struct storage_template *out,
			struct storage_error *err)
{
	PGresult *result;
	int rc = storage__run_row(pool, statement, params, &result, "template", err);

	if (rc)
		return rc;
	if (out)
		storage__template_from_row(result, 0, out);
	PQclear(result);
	return STORAGE_OK;
}

int storage__template_get(struct storage_pool *pool, const char *id, struct storage_template *out,
			  struct storage_error *err)
{
	const char *params[] = {id};

	if (!id)
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "template not found");
	return template_row(pool, STMT_TEMPLATE_GET, params, out, err);
}

int storage__template_get_for_team(struct storage_pool *pool, const char *team_id, const char *id,
				   struct storage_template *out, struct storage_error *err)
{
	const char *params[] = {team_id, id};

	if (!id || !team_id)
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "template not found");
	return template_row(pool, STMT_TEMPLATE_GET_FOR_TEAM, params, out, err);
}

int storage__template_list(struct storage_pool *pool, struct storage_template **out, size_t *count,
			   struct storage_error *err)
{
	return storage__run_list(pool, STMT_TEMPLATE_LIST, NULL, sizeof(**out), template_decode,
				 (void **)out, count, err);
}

/* ---- hosts ---- */

int storage__host_heartbeat(struct storage_pool *pool, const struct storage_host *host,
			    struct storage_error *err)
{
	char capacity[16], running[16], protocol[16];
	const char *params[] = {host->id, host->address, host->runtime,
				capacity, running,	 host->state[0] ? host->state : "ready",
				protocol};

	snprintf(capacity, sizeof(capacity), "%d", host->capacity);
	snprintf(running, sizeof(running), "%d", host->running);
	snprintf(protocol, sizeof(protocol), "%d",
		 host->protocol_version > 0 ? host->protocol_version : 1);
	return storage__run_exec(pool, STMT_HOST_HEARTBEAT, params, err);
}

int storage__host_heartbeat_was(struct storage_pool *pool, const struct storage_host *host,
				char *previous, size_t previous_len, bool *drain_requested,
				struct storage_error *err)
{
	char capacity[16], running[16], protocol[16];
	const char *params[] = {host->id, host->address, host->runtime, capacity,
				running,  host->state,	 protocol};
	PGresult *result;
	int rc;

	snprintf(capacity, sizeof(capacity), "%d", host->capacity);
	snprintf(running, sizeof(running), "%d", host->running);
	snprintf(protocol, sizeof(protocol), "%d",
		 host->protocol_version > 0 ? host->protocol_version : 1);
	rc = storage__run_row(pool, STMT_HOST_HEARTBEAT_WAS, params, &result, "host", err);
	if (rc)
		return rc;
	storage__text(result, 0, 0, previous, previous_len);
	if (drain_requested)
		*drain_requested = storage__bool(result, 0, 1);
	PQclear(result);
	return STORAGE_OK;
}

int storage__host_set_drain(struct storage_pool *pool, const char *id, bool drain,
			    struct storage_error *err)
{
	const char *params[] = {id, drain ? "true" : "false"};
	PGresult *result;
	int rc = storage__run_row(pool, STMT_HOST_SET_DRAIN, params, &result, "host", err);

	if (rc)
		return rc;
	PQclear(result);
	return STORAGE_OK;
}

static void host_id_decode(const PGresult *result, int row, void *item)
{
	storage__text(result, row, 0, (char *)item, 65);
}

int storage__hosts_declare_lost(struct storage_pool *pool, int64_t after_s, char (**ids)[65],
				size_t *count, struct storage_error *err)
{
	char after[24];
	const char *params[] = {after};

	snprintf(after, sizeof(after), "%lld", (long long)(after_s > 0 ? after_s : 1));
	return storage__run_list(pool, STMT_HOST_DECLARE_LOST, params, sizeof(**ids),
				 host_id_decode, (void **)ids, count, err);
}

int storage__host_list(struct storage_pool *pool, struct storage_host **out, size_t *count,
		       struct storage_error *err)
{
	return storage__run_list(pool, STMT_HOST_LIST, NULL, sizeof(**out), host_decode,
				 (void **)out, count, err);
}

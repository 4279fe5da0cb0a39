/* storage rows: result rows -> public structs (column order: rows.h). */
#include <string.h>

#include "rows.h"

void storage__team_from_row(const PGresult *result, int row, struct storage_team *out)
{
	char tier[16];

	memset(out, 0, sizeof(*out));
	storage__text(result, row, 0, out->id, sizeof(out->id));
	storage__text(result, row, 1, out->name, sizeof(out->name));
	storage__text(result, row, 2, tier, sizeof(tier));
	if (!storage__tier_parse(tier, &out->tier))
		out->tier = STORAGE_TIER_HOBBY;
	out->limits.lifecycle_requests = (int32_t)storage__int(result, row, 3, 0);
	out->limits.lifecycle_window_s = (int32_t)storage__int(result, row, 4, 0);
	out->limits.sandbox_operations = (int32_t)storage__int(result, row, 5, 0);
	out->limits.sandbox_operations_window_s = (int32_t)storage__int(result, row, 6, 0);
	out->limits.concurrent_sandboxes = (int32_t)storage__int(result, row, 7, 0);
	out->limits.creation_rate_per_s = (int32_t)storage__int(result, row, 8, 0);
	out->limits.egress_connections = (int32_t)storage__int(result, row, 9, 0);
	out->limits.max_timeout_s = (int32_t)storage__int(result, row, 10, 0);
	out->created_at = storage__int(result, row, 11, -1);
}

void storage__api_key_from_row(const PGresult *result, int row, struct storage_api_key *out)
{
	memset(out, 0, sizeof(*out));
	storage__text(result, row, 0, out->id, sizeof(out->id));
	storage__text(result, row, 1, out->team_id, sizeof(out->team_id));
	storage__text(result, row, 2, out->prefix, sizeof(out->prefix));
	out->created_at = storage__int(result, row, 3, -1);
	out->last_used_at = storage__int(result, row, 4, -1);
	out->revoked_at = storage__int(result, row, 5, -1);
}

void storage__template_from_row(const PGresult *result, int row, struct storage_template *out)
{
	memset(out, 0, sizeof(*out));
	storage__text(result, row, 0, out->id, sizeof(out->id));
	storage__text(result, row, 1, out->agent_version, sizeof(out->agent_version));
	storage__text(result, row, 2, out->image_path, sizeof(out->image_path));
	storage__text(result, row, 3, out->content_hash, sizeof(out->content_hash));
	out->created_at = storage__int(result, row, 4, -1);
	out->updated_at = storage__int(result, row, 5, -1);
}

void storage__host_from_row(const PGresult *result, int row, struct storage_host *out)
{
	memset(out, 0, sizeof(*out));
	storage__text(result, row, 0, out->id, sizeof(out->id));
	storage__text(result, row, 1, out->address, sizeof(out->address));
	storage__text(result, row, 2, out->runtime, sizeof(out->runtime));
	out->capacity = (int32_t)storage__int(result, row, 3, 0);
	out->running = (int32_t)storage__int(result, row, 4, 0);
	storage__text(result, row, 5, out->state, sizeof(out->state));
	out->registered_at = storage__int(result, row, 6, -1);
	out->heartbeat_at = storage__int(result, row, 7, -1);
	out->protocol_version = (int32_t)storage__int(result, row, 8, 1);
	out->drain_requested = storage__bool(result, row, 9);
}

void storage__sandbox_from_row(const PGresult *result, int row, struct storage_sandbox *out)
{
	char state[16];

	memset(out, 0, sizeof(*out));
	storage__text(result, row, 0, out->id, sizeof(out->id));
	storage__text(result, row, 1, out->team_id, sizeof(out->team_id));
	storage__text(result, row, 2, out->template_id, sizeof(out->template_id));
	storage__text(result, row, 3, out->request_id, sizeof(out->request_id));
	storage__text(result, row, 4, state, sizeof(state));
	if (!storage__sandbox_state_parse(state, &out->state))
		out->state = STORAGE_SANDBOX_FAILED;
	storage__text(result, row, 5, out->host_id, sizeof(out->host_id));
	out->slot_index = (int32_t)storage__int(result, row, 6, -1);
	storage__text(result, row, 7, out->slot_address, sizeof(out->slot_address));
	out->created_at = storage__int(result, row, 8, -1);
	out->started_at = storage__int(result, row, 9, -1);
	out->end_at = storage__int(result, row, 10, -1);
	out->updated_at = storage__int(result, row, 11, -1);
	out->network = storage__json(result, row, 12);
	out->metadata = storage__json(result, row, 13);
	if (!out->network)
		out->network = json_object();
	if (!out->metadata)
		out->metadata = json_object();
	out->secure = storage__bool(result, row, 14);
	out->allow_public_traffic = storage__bool(result, row, 15);
	storage__text(result, row, 16, out->mask_request_host, sizeof(out->mask_request_host));
	storage__text(result, row, 17, out->failure_reason, sizeof(out->failure_reason));
	if (PQnfields(result) > 20) { /* 0002's lifecycle columns */
		char on_timeout[16];

		storage__text(result, row, 19, on_timeout, sizeof(on_timeout));
		out->pause_on_timeout = !strcmp(on_timeout, "pause");
		out->auto_resume = storage__bool(result, row, 20);
	}
}

void storage__request_from_row(const PGresult *result, int row, struct storage_request *out)
{
	char status[16];

	memset(out, 0, sizeof(*out));
	storage__text(result, row, 0, out->request_id, sizeof(out->request_id));
	storage__text(result, row, 1, out->team_id, sizeof(out->team_id));
	storage__text(result, row, 2, out->type, sizeof(out->type));
	storage__text(result, row, 3, out->sandbox_id, sizeof(out->sandbox_id));
	storage__text(result, row, 4, status, sizeof(status));
	if (!strcmp(status, "done"))
		out->status = STORAGE_REQUEST_DONE;
	else if (!strcmp(status, "failed"))
		out->status = STORAGE_REQUEST_FAILED;
	else
		out->status = STORAGE_REQUEST_PENDING;
	out->result = storage__json(result, row, 5);
	out->created_at = storage__int(result, row, 6, -1);
	out->finished_at = storage__int(result, row, 7, -1);
}

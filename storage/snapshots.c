/* storage snapshots: migrations/0006_snapshots.sql (warren/snapshots.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "warren/snapshots.h"

int storage__snapshot_register(struct storage_pool *pool, const struct storage_snapshot *snap,
			       struct storage_error *err)
{
	static const char sql[] =
	    "WITH t AS (INSERT INTO templates (id, agent_version, image_path, content_hash)"
	    "  VALUES ($1, $8, $9, $10) ON CONFLICT (id) DO UPDATE SET agent_version = $8,"
	    "  image_path = $9, content_hash = $10, updated_at = now() RETURNING id),"
	    " tt AS (INSERT INTO team_templates (id, team_id, cpu_count, memory_mb)"
	    "  VALUES ($1, $2::uuid, $6::int, $7::int) RETURNING id)"
	    " INSERT INTO snapshots (id, team_id, sandbox_id, name, host_id, bytes)"
	    " SELECT tt.id, $2::uuid, $3, NULLIF($4, ''), NULLIF($5, ''), $11::bigint"
	    " FROM tt, t";
	char cpu[16], mem[16], bytes[24];
	const char *params[] = {snap->id,
				snap->team_id,
				snap->sandbox_id,
				snap->name ? snap->name : "",
				snap->host_id ? snap->host_id : "",
				cpu,
				mem,
				snap->template_row->agent_version,
				snap->template_row->image_path,
				snap->template_row->content_hash,
				bytes};
	PGresult *result;

	snprintf(cpu, sizeof(cpu), "%d", (int)snap->cpu_count);
	snprintf(mem, sizeof(mem), "%d", (int)snap->memory_mb);
	snprintf(bytes, sizeof(bytes), "%lld", (long long)snap->bytes);
	result = storage__run_sql(pool, sql, 11, params, err);
	if (!result)
		return err ? err->code : STORAGE_ERR_INTERNAL;
	PQclear(result);
	return STORAGE_OK;
}

int storage__snapshot_team_bytes(struct storage_pool *pool, const char *team_id, int64_t *bytes,
				 struct storage_error *err)
{
	static const char sql[] =
	    "SELECT COALESCE(sum(s.bytes), 0)::text FROM snapshots s"
	    " JOIN team_templates tt ON tt.id = s.id AND tt.deleted_at IS NULL"
	    " WHERE s.team_id::text = $1";
	const char *params[] = {team_id};

	return storage__query_ints(pool, sql, 1, params, bytes, 1, err);
}

int storage__snapshot_list(struct storage_pool *pool, const char *team_id, const char *sandbox_id,
			   const char *name, json_t **out, struct storage_error *err)
{
	static const char sql[] =
	    "SELECT COALESCE(json_agg(json_build_object('snapshotID', s.id, 'names',"
	    "  CASE WHEN s.name IS NULL THEN json_build_array(s.id)"
	    "  ELSE json_build_array(s.id, s.name) END) ORDER BY s.created_at DESC, s.id),"
	    "  '[]'::json)::text"
	    " FROM snapshots s JOIN team_templates tt ON tt.id = s.id AND tt.deleted_at IS NULL"
	    " WHERE s.team_id::text = $1 AND ($2 = '' OR s.sandbox_id = $2)"
	    " AND ($3 = '' OR s.name = $3 OR s.id = $3)";
	const char *params[] = {team_id, sandbox_id ? sandbox_id : "", name ? name : ""};
	PGresult *result = storage__run_sql(pool, sql, 3, params, err);

	if (!result)
		return err ? err->code : STORAGE_ERR_INTERNAL;
	*out = json_loads(PQgetvalue(result, 0, 0), 0, NULL);
	PQclear(result);
	return *out ? STORAGE_OK : storage__fail(err, STORAGE_ERR_INTERNAL, "out of memory");
}

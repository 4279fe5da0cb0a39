/* storage template_builds: custom templates and their builds
 * (warren/template_builds.h, migrations/0004_template_builds.sql). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "warren/template_builds.h"

static const char *const status_names[] = {"waiting", "building", "ready", "error"};

const char *template_build__status_name(enum template_build_status status)
{
	return status >= TEMPLATE_BUILD_WAITING && status <= TEMPLATE_BUILD_ERROR
		   ? status_names[status]
		   : "error";
}

static enum template_build_status status_from_name(const char *name)
{
	for (int i = 0; i < 4; i++)
		if (!strcmp(name, status_names[i]))
			return (enum template_build_status)i;
	return TEMPLATE_BUILD_ERROR;
}

void storage__template_build_clear(struct storage_template_build *build)
{
	json_decref(build->spec);
	build->spec = NULL;
}

/* Runs sql and returns the number of rows (result freed), or -1 with err. */
static int run_count(struct storage_pool *pool, const char *sql, int n, const char *const *params,
		     struct storage_error *err)
{
	PGresult *result = storage__run_sql(pool, sql, n, params, err);
	int rows;

	if (!result)
		return -1;
	rows = PQntuples(result);
	PQclear(result);
	return rows;
}

int storage__template_build_create(struct storage_pool *pool, const char *team_id,
				   const char *template_id, const char *build_id, int32_t cpu_count,
				   int32_t memory_mb, struct storage_error *err)
{
	static const char sql[] =
	    "WITH t AS (INSERT INTO team_templates (id, team_id, cpu_count, memory_mb)"
	    " SELECT $1, $2::uuid, $3::int, $4::int WHERE NOT EXISTS (SELECT 1 FROM templates x"
	    "  WHERE x.id = $1 AND NOT EXISTS (SELECT 1 FROM team_templates y WHERE y.id = $1))"
	    " ON CONFLICT (id) DO UPDATE SET cpu_count = EXCLUDED.cpu_count,"
	    "  memory_mb = EXCLUDED.memory_mb, updated_at = now(), deleted_at = NULL"
	    "  WHERE team_templates.team_id = EXCLUDED.team_id RETURNING id)"
	    " INSERT INTO template_builds (id, template_id, team_id, cpu_count, memory_mb)"
	    " SELECT $5::uuid, t.id, $2::uuid, $3::int, $4::int FROM t RETURNING id";
	char cpu[16], memory[16];
	const char *params[] = {template_id, team_id, cpu, memory, build_id};
	int rows;

	snprintf(cpu, sizeof(cpu), "%d", cpu_count);
	snprintf(memory, sizeof(memory), "%d", memory_mb);
	rows = run_count(pool, sql, 5, params, err);
	if (rows < 0)
		return err ? err->code : STORAGE_ERR_INTERNAL;
	if (rows == 0)
		return storage__fail(err, STORAGE_ERR_CONFLICT, "template name '%s' is taken",
				     template_id);
	return STORAGE_OK;
}

int storage__template_build_host_internal(struct storage_pool *pool, const char *template_id,
					  char *host_out, size_t host_len,
					  struct storage_error *err)
{
	static const char sql[] =
	    "SELECT host_id FROM template_builds"
	    " WHERE template_id = $1 AND status = 'ready' AND host_id IS NOT NULL"
	    " ORDER BY finished_at DESC NULLS LAST LIMIT 1";
	const char *params[] = {template_id};
	PGresult *result = storage__run_sql(pool, sql, 1, params, err);

	if (!result)
		return err ? err->code : STORAGE_ERR_INTERNAL;
	host_out[0] = '\0';
	if (PQntuples(result) == 1)
		storage__text(result, 0, 0, host_out, host_len);
	PQclear(result);
	return STORAGE_OK;
}

int storage__template_build_get(struct storage_pool *pool, const char *team_id,
				const char *build_id, struct storage_template_build *out,
				struct storage_error *err)
{
	static const char sql[] =
	    "SELECT id, template_id, team_id, status, spec, cpu_count, memory_mb, attempts,"
	    " host_id, reason, reason_step FROM template_builds"
	    " WHERE id::text = $1 AND ($2::text IS NULL OR team_id::text = $2)";
	const char *params[] = {build_id, team_id};
	PGresult *result = storage__run_sql(pool, sql, 2, params, err);
	char status[16];

	if (!result)
		return err ? err->code : STORAGE_ERR_INTERNAL;
	if (PQntuples(result) != 1) {
		PQclear(result);
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "build not found");
	}
	memset(out, 0, sizeof(*out));
	storage__text(result, 0, 0, out->id, sizeof(out->id));
	storage__text(result, 0, 1, out->template_id, sizeof(out->template_id));
	storage__text(result, 0, 2, out->team_id, sizeof(out->team_id));
	storage__text(result, 0, 3, status, sizeof(status));
	out->status = status_from_name(status);
	out->spec = storage__json(result, 0, 4);
	out->cpu_count = (int32_t)storage__int(result, 0, 5, 0);
	out->memory_mb = (int32_t)storage__int(result, 0, 6, 0);
	out->attempts = (int32_t)storage__int(result, 0, 7, 0);
	storage__text(result, 0, 8, out->host_id, sizeof(out->host_id));
	storage__text(result, 0, 9, out->reason, sizeof(out->reason));
	storage__text(result, 0, 10, out->reason_step, sizeof(out->reason_step));
	PQclear(result);
	return STORAGE_OK;
}

int storage__template_build_start(struct storage_pool *pool, const char *team_id,
				  const char *template_id, const char *build_id, const json_t *spec,
				  struct storage_error *err)
{
	static const char sql[] =
	    "UPDATE template_builds SET spec = $4::jsonb, status = 'building', updated_at = now()"
	    " WHERE id::text = $1 AND team_id::text = $2 AND template_id = $3"
	    " AND status = 'waiting' RETURNING id";
	char *text = json_dumps(spec, JSON_COMPACT);
	const char *params[] = {build_id, team_id, template_id, text};
	int rows;

	if (!text)
		return storage__fail(err, STORAGE_ERR_INTERNAL, "out of memory");
	rows = run_count(pool, sql, 4, params, err);
	free(text);
	if (rows < 0)
		return err ? err->code : STORAGE_ERR_INTERNAL;
	if (rows == 0)
		return storage__fail(err, STORAGE_ERR_CONFLICT, "build is not waiting");
	return STORAGE_OK;
}

int storage__template_build_claim(struct storage_pool *pool, const char *build_id,
				  const char *host_id, int32_t *attempts, struct storage_error *err)
{
	static const char sql[] =
	    "UPDATE template_builds SET attempts = attempts + 1, host_id = $2,"
	    " updated_at = now() WHERE id::text = $1 AND status = 'building' RETURNING attempts";
	const char *params[] = {build_id, host_id};
	PGresult *result = storage__run_sql(pool, sql, 2, params, err);

	if (!result)
		return err ? err->code : STORAGE_ERR_INTERNAL;
	if (PQntuples(result) != 1) {
		PQclear(result);
		return storage__fail(err, STORAGE_ERR_CONFLICT, "build is not building");
	}
	*attempts = (int32_t)storage__int(result, 0, 0, 0);
	PQclear(result);
	return STORAGE_OK;
}

int storage__template_build_log(struct storage_pool *pool, const char *build_id, const char *level,
				const char *step, const char *message, struct storage_error *err)
{
	static const char sql[] =
	    "INSERT INTO template_build_logs (build_id, seq, level, step, message)"
	    " SELECT $1::uuid, coalesce(max(seq) + 1, 0), $2, $3, $4 FROM template_build_logs"
	    " WHERE build_id = $1::uuid";
	const char *params[] = {build_id, level, step, message};

	return run_count(pool, sql, 4, params, err) < 0 ? (err ? err->code : STORAGE_ERR_INTERNAL)
							: STORAGE_OK;
}

int storage__template_build_finish(struct storage_pool *pool, const char *build_id,
				   enum template_build_status status, const char *reason,
				   const char *step, struct storage_error *err)
{
	static const char sql[] =
	    "UPDATE template_builds SET status = $2, reason = $3, reason_step = $4,"
	    " updated_at = now(), finished_at = now(),"
	    " spec = spec #- '{fromImageRegistry,password}'" /* not kept past the build */
	    " WHERE id::text = $1 AND status = 'building' RETURNING id";
	const char *params[] = {build_id, template_build__status_name(status), reason, step};
	int rows = run_count(pool, sql, 4, params, err);

	if (rows < 0)
		return err ? err->code : STORAGE_ERR_INTERNAL;
	return rows ? STORAGE_OK
		    : storage__fail(err, STORAGE_ERR_CONFLICT, "build is not building");
}

/* Every row of result as a JSON array: each row's first column is a JSON
 * text (built by PostgreSQL's json functions). */
static json_t *json_rows(PGresult *result)
{
	json_t *array = json_array();

	for (int i = 0; array && i < PQntuples(result); i++) {
		json_t *item = storage__json(result, i, 0);

		if (item)
			json_array_append_new(array, item);
	}
	return array;
}

int storage__template_build_logs(struct storage_pool *pool, const char *build_id, int64_t offset,
				 int64_t limit, json_t **out, struct storage_error *err)
{
	static const char sql[] =
	    "SELECT json_strip_nulls(json_build_object('timestamp',"
	    " to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
	    " 'level', level, 'message', message, 'step', step))"
	    " FROM template_build_logs WHERE build_id::text = $1 AND seq >= $2::int"
	    " ORDER BY seq LIMIT $3::int";
	char off[24], lim[24];
	const char *params[] = {build_id, off, lim};
	PGresult *result;

	snprintf(off, sizeof(off), "%lld", (long long)(offset < 0 ? 0 : offset));
	snprintf(lim, sizeof(lim), "%lld", (long long)(limit <= 0 ? 100 : limit));
	result = storage__run_sql(pool, sql, 3, params, err);
	if (!result)
		return err ? err->code : STORAGE_ERR_INTERNAL;
	*out = json_rows(result);
	PQclear(result);
	return *out ? STORAGE_OK : storage__fail(err, STORAGE_ERR_INTERNAL, "out of memory");
}

#define TEMPLATE_JSON                                                                              \
	"json_build_object('templateID', t.id, 'buildID', coalesce(("                              \
	"  SELECT b.id::text FROM template_builds b WHERE b.template_id = t.id"                    \
	"  AND b.status = 'ready' ORDER BY b.created_at DESC LIMIT 1), ''),"                       \
	" 'buildStatus', coalesce((SELECT b.status FROM template_builds b"                         \
	"  WHERE b.template_id = t.id ORDER BY b.created_at DESC LIMIT 1), 'waiting'),"            \
	" 'buildCount', (SELECT count(*) FROM template_builds b WHERE b.template_id = t.id),"      \
	" 'cpuCount', t.cpu_count, 'memoryMB', t.memory_mb, 'diskSizeMB', 0,"                      \
	" 'envdVersion', coalesce((SELECT agent_version FROM templates x WHERE x.id = t.id), '')," \
	" 'public', false, 'aliases', json_build_array(t.id), 'names', json_build_array(t.id),"    \
	" 'createdAt', to_char(t.created_at AT TIME ZONE 'UTC', "                                  \
	"'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"                                                       \
	" 'updatedAt', to_char(t.updated_at AT TIME ZONE 'UTC', "                                  \
	"'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"                                                       \
	" 'lastSpawnedAt', NULL, 'spawnCount', 0, 'createdBy', NULL)"

int storage__team_template_list(struct storage_pool *pool, const char *team_id, json_t **out,
				struct storage_error *err)
{
	static const char sql[] =
	    "SELECT " TEMPLATE_JSON " FROM team_templates t"
	    " WHERE t.team_id::text = $1 AND t.deleted_at IS NULL ORDER BY t.id";
	const char *params[] = {team_id};
	PGresult *result = storage__run_sql(pool, sql, 1, params, err);

	if (!result)
		return err ? err->code : STORAGE_ERR_INTERNAL;
	*out = json_rows(result);
	PQclear(result);
	return *out ? STORAGE_OK : storage__fail(err, STORAGE_ERR_INTERNAL, "out of memory");
}

int storage__team_template_get(struct storage_pool *pool, const char *team_id,
			       const char *template_id, json_t **out, struct storage_error *err)
{
	static const char sql[] =
	    "SELECT json_build_object('templateID', t.id, 'public', false,"
	    " 'aliases', json_build_array(t.id), 'names', json_build_array(t.id),"
	    " 'builds', coalesce((SELECT json_agg(json_build_object('buildID', b.id,"
	    "  'status', b.status, 'cpuCount', b.cpu_count, 'memoryMB', b.memory_mb,"
	    "  'createdAt', to_char(b.created_at AT TIME ZONE 'UTC', "
	    "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
	    "  'updatedAt', to_char(b.updated_at AT TIME ZONE 'UTC', "
	    "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))"
	    "  ORDER BY b.created_at DESC) FROM template_builds b WHERE b.template_id = t.id),"
	    "  '[]'::json))"
	    " FROM team_templates t WHERE t.id = $2 AND t.team_id::text = $1"
	    " AND t.deleted_at IS NULL";
	const char *params[] = {team_id, template_id};
	PGresult *result = storage__run_sql(pool, sql, 2, params, err);

	if (!result)
		return err ? err->code : STORAGE_ERR_INTERNAL;
	if (PQntuples(result) != 1) {
		PQclear(result);
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "template not found");
	}
	*out = storage__json(result, 0, 0);
	PQclear(result);
	return *out ? STORAGE_OK : storage__fail(err, STORAGE_ERR_INTERNAL, "bad template row");
}

int storage__team_template_delete(struct storage_pool *pool, const char *team_id,
				  const char *template_id, struct storage_error *err)
{
	static const char sql[] =
	    "WITH d AS (UPDATE team_templates SET deleted_at = now() WHERE id = $2"
	    " AND team_id::text = $1 AND deleted_at IS NULL RETURNING id),"
	    " x AS (DELETE FROM templates USING d WHERE templates.id = d.id AND NOT EXISTS"
	    "  (SELECT 1 FROM sandboxes s WHERE s.template_id = d.id))"
	    " SELECT id FROM d";
	const char *params[] = {team_id, template_id};
	int rows = run_count(pool, sql, 2, params, err);

	if (rows < 0)
		return err ? err->code : STORAGE_ERR_INTERNAL;
	return rows ? STORAGE_OK : storage__fail(err, STORAGE_ERR_NOT_FOUND, "template not found");
}

int storage__template_alias_lookup(struct storage_pool *pool, const char *team_id,
				   const char *alias, bool *exists, bool *team_owned,
				   struct storage_error *err)
{
	static const char sql[] =
	    "SELECT EXISTS (SELECT 1 FROM templates WHERE id = $2)"
	    " OR EXISTS (SELECT 1 FROM team_templates WHERE id = $2),"
	    " EXISTS (SELECT 1 FROM team_templates WHERE id = $2 AND team_id::text = $1"
	    "  AND deleted_at IS NULL)";
	const char *params[] = {team_id, alias};
	PGresult *result = storage__run_sql(pool, sql, 2, params, err);

	if (!result)
		return err ? err->code : STORAGE_ERR_INTERNAL;
	*exists = storage__bool(result, 0, 0);
	*team_owned = storage__bool(result, 0, 1);
	PQclear(result);
	return STORAGE_OK;
}

int storage__team_template_visible(struct storage_pool *pool, const char *team_id,
				   const char *template_id, struct storage_error *err)
{
	static const char sql[] =
	    "SELECT 1 FROM team_templates WHERE id = $2"
	    " AND (team_id::text IS DISTINCT FROM $1 OR deleted_at IS NOT NULL)";
	const char *params[] = {team_id, template_id};
	int rows = run_count(pool, sql, 2, params, err);

	if (rows < 0)
		return err ? err->code : STORAGE_ERR_INTERNAL;
	return rows ? storage__fail(err, STORAGE_ERR_NOT_FOUND, "template not found") : STORAGE_OK;
}

int storage__team_template_ids(struct storage_pool *pool, json_t **out, struct storage_error *err)
{
	static const char sql[] = "SELECT to_json(id) FROM team_templates WHERE deleted_at IS NULL"
				  " ORDER BY id";
	PGresult *result = storage__run_sql(pool, sql, 0, NULL, err);

	if (!result)
		return err ? err->code : STORAGE_ERR_INTERNAL;
	*out = json_rows(result);
	PQclear(result);
	return *out ? STORAGE_OK : storage__fail(err, STORAGE_ERR_INTERNAL, "out of memory");
}

int storage__template_forget(struct storage_pool *pool, const char *id, struct storage_error *err)
{
	static const char sql[] =
	    "DELETE FROM templates WHERE id = $1 AND NOT EXISTS"
	    " (SELECT 1 FROM team_templates WHERE id = $1 AND deleted_at IS NULL)"
	    " AND NOT EXISTS (SELECT 1 FROM sandboxes WHERE template_id = $1)";
	const char *params[] = {id};

	return run_count(pool, sql, 1, params, err) < 0 ? (err ? err->code : STORAGE_ERR_INTERNAL)
							: STORAGE_OK;
}

int storage__template_in_use(struct storage_pool *pool, const char *id, bool *in_use,
			     struct storage_error *err)
{
	static const char sql[] = "SELECT 1 FROM sandboxes WHERE template_id = $1"
				  " AND state IN ('starting', 'running', 'paused') LIMIT 1";
	const char *params[] = {id};
	int rows = run_count(pool, sql, 1, params, err);

	if (rows < 0)
		return err ? err->code : STORAGE_ERR_INTERNAL;
	*in_use = rows > 0;
	return STORAGE_OK;
}

int storage__template_build_log_tail(struct storage_pool *pool, const char *build_id, int64_t count,
				     json_t **out, struct storage_error *err)
{
	static const char sql[] =
	    "SELECT j FROM (SELECT seq, json_strip_nulls(json_build_object('timestamp',"
	    " to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
	    " 'level', level, 'message', message, 'step', step)) AS j"
	    " FROM template_build_logs WHERE build_id::text = $1 ORDER BY seq DESC LIMIT $2::int) t"
	    " ORDER BY seq";
	char n[24];
	const char *params[] = {build_id, n};
	PGresult *result;

	snprintf(n, sizeof(n), "%lld", (long long)(count < 1 ? 1 : count));
	result = storage__run_sql(pool, sql, 2, params, err);
	if (!result)
		return err ? err->code : STORAGE_ERR_INTERNAL;
	*out = json_rows(result);
	PQclear(result);
	return *out ? STORAGE_OK : storage__fail(err, STORAGE_ERR_INTERNAL, "out of memory");
}

int storage__team_template_count(struct storage_pool *pool, const char *team_id, int64_t *count,
				 struct storage_error *err)
{
	static const char sql[] = "SELECT count(*) FROM team_templates WHERE team_id::text = $1"
				  " AND deleted_at IS NULL";
	const char *params[] = {team_id};

	return storage__query_ints(pool, sql, 1, params, count, 1, err);
}

/* storage volumes: persistent volumes of a team (warren/volumes.h,
 * migrations/0005_volumes.sql). SQL through storage__run_sql, unprepared,
 * like template_builds.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "warren/ids.h"
#include "warren/volumes.h"

/* The states in which a sandbox holds its volumes (SQL list). */
#define VOLUME_LIVE_STATES "('starting', 'running', 'pausing', 'paused', 'resuming', 'killing')"
/* SQL: true when the volume row v is held by a live sandbox. */
#define VOLUME_IN_USE(v)                                                                           \
	"(" v ".sandbox_id IS NOT NULL AND EXISTS (SELECT 1 FROM sandboxes s WHERE s.id = " v      \
	".sandbox_id AND s.state IN " VOLUME_LIVE_STATES "))"

int storage__volume_new_id(char out[STORAGE_VOLUME_ID_LEN + 1])
{
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	unsigned char raw[20];
	int ret = ids__random_bytes(raw, sizeof(raw));

	if (ret)
		return ret;
	memcpy(out, "vol_", 4);
	for (size_t i = 0; i < sizeof(raw); i++)
		out[4 + i] = alphabet[raw[i] % 36];
	out[STORAGE_VOLUME_ID_LEN] = '\0';
	return 0;
}

bool storage__volume_id_valid(const char *id)
{
	if (!id || strlen(id) != STORAGE_VOLUME_ID_LEN || strncmp(id, "vol_", 4))
		return false;
	for (const char *c = id + 4; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9')))
			return false;
	return true;
}

bool storage__volume_name_valid(const char *name)
{
	size_t len = name ? strlen(name) : 0;

	if (len == 0 || len > STORAGE_VOLUME_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		bool alnum =
		    (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');

		if (!alnum && (i == 0 || (c != '_' && c != '.' && c != '-')))
			return false;
	}
	return true;
}

bool storage__volume_quota_allows(const struct storage_volume_quota *quota, int64_t count,
				  int64_t total_bytes, int64_t size_bytes)
{
	if (count < 0 || total_bytes < 0 || size_bytes <= 0)
		return false;
	if (count + 1 > quota->max_count)
		return false;
	return size_bytes <= quota->max_bytes && total_bytes <= quota->max_bytes - size_bytes;
}

/* What the team holds now: *count volumes of *bytes in all. */
static int volume__usage(struct storage_pool *pool, const char *team_id, int64_t *count,
			 int64_t *bytes, struct storage_error *err)
{
	static const char sql[] = "SELECT count(*), coalesce(sum(size_bytes), 0)::int8 FROM volumes"
				  " WHERE team_id::text = $1";
	const char *params[] = {team_id};
	int64_t usage[2];
	int rc = storage__query_ints(pool, sql, 1, params, usage, 2, err);

	*count = usage[0];
	*bytes = usage[1];
	return rc;
}

int storage__volume_create(struct storage_pool *pool, const char *team_id, const char *id,
			   const char *name, int64_t size_bytes,
			   const struct storage_volume_quota *quota, struct storage_error *err)
{
	static const char sql[] =
	    "INSERT INTO volumes (id, team_id, name, size_bytes)"
	    " SELECT $1, $2::uuid, $3, $4::int8"
	    " WHERE (SELECT count(*) FROM volumes WHERE team_id = $2::uuid) < $5::int8"
	    " AND (SELECT coalesce(sum(size_bytes), 0) FROM volumes WHERE team_id = $2::uuid)"
	    "  + $4::int8 <= $6::int8 RETURNING id";
	char size[24], max_count[24], max_bytes[24];
	const char *params[] = {id, team_id, name, size, max_count, max_bytes};
	int64_t count = 0, bytes = 0;
	PGresult *result;
	int rows, rc;

	rc = volume__usage(pool, team_id, &count, &bytes, err);
	if (rc)
		return rc;
	if (!storage__volume_quota_allows(quota, count, bytes, size_bytes))
		goto over_quota;
	snprintf(size, sizeof(size), "%lld", (long long)size_bytes);
	snprintf(max_count, sizeof(max_count), "%lld", (long long)quota->max_count);
	snprintf(max_bytes, sizeof(max_bytes), "%lld", (long long)quota->max_bytes);
	result = storage__run_sql(pool, sql, 6, params, err);
	if (!result)
		return err ? err->code : STORAGE_ERR_INTERNAL;
	rows = PQntuples(result);
	PQclear(result);
	if (rows == 1)
		return STORAGE_OK;
over_quota:
	if (count + 1 > quota->max_count)
		return storage__fail(err, STORAGE_ERR_CONFLICT,
				     "volume quota exceeded: the team has %lld of %lld volumes",
				     (long long)count, (long long)quota->max_count);
	return storage__fail(err, STORAGE_ERR_CONFLICT,
			     "volume quota exceeded: %lld MiB more would pass the team's %lld MiB",
			     (long long)(size_bytes >> 20), (long long)(quota->max_bytes >> 20));
}

int storage__volume_list(struct storage_pool *pool, const char *team_id, json_t **out,
			 struct storage_error *err)
{
	static const char sql[] =
	    "SELECT coalesce(json_agg(json_build_object('volumeID', id, 'name', name)"
	    " ORDER BY created_at, id), '[]')::text FROM volumes WHERE team_id::text = $1";
	const char *params[] = {team_id};
	PGresult *result = storage__run_sql(pool, sql, 1, params, err);
	json_error_t parse;

	if (!result)
		return err ? err->code : STORAGE_ERR_INTERNAL;
	*out = json_loads(PQgetvalue(result, 0, 0), 0, &parse);
	PQclear(result);
	if (!*out)
		return storage__fail(err, STORAGE_ERR_INTERNAL, "volume list: %s", parse.text);
	return STORAGE_OK;
}

static void volume__decode(const PGresult *result, int row, struct storage_volume *out)
{
	memset(out, 0, sizeof(*out));
	storage__text(result, row, 0, out->id, sizeof(out->id));
	storage__text(result, row, 1, out->team_id, sizeof(out->team_id));
	storage__text(result, row, 2, out->name, sizeof(out->name));
	out->size_bytes = storage__int(result, row, 3, 0);
	storage__text(result, row, 4, out->sandbox_id, sizeof(out->sandbox_id));
	out->in_use = storage__bool(result, row, 5);
	storage__text(result, row, 6, out->mount_path, sizeof(out->mount_path));
	storage__text(result, row, 7, out->host_id, sizeof(out->host_id));
}

#define VOLUME_COLUMNS                                                                             \
	"v.id, v.team_id::text, v.name, v.size_bytes, v.sandbox_id, " VOLUME_IN_USE(               \
	    "v") ", "                                                                              \
		 "v.mount_path, v.host_id"

/* Runs a query for at most one volume row into out; STORAGE_ERR_NOT_FOUND
 * with "volume <what> not found" when there is none. */
static int volume__query_one(struct storage_pool *pool, const char *sql, const char *const *params,
			     const char *what, struct storage_volume *out,
			     struct storage_error *err)
{
	PGresult *result = storage__run_sql(pool, sql, 2, params, err);

	if (!result)
		return err ? err->code : STORAGE_ERR_INTERNAL;
	if (PQntuples(result) != 1) {
		PQclear(result);
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "volume %s not found", what);
	}
	volume__decode(result, 0, out);
	PQclear(result);
	return STORAGE_OK;
}

int storage__volume_get(struct storage_pool *pool, const char *team_id, const char *volume_id,
			struct storage_volume *out, struct storage_error *err)
{
	static const char sql[] = "SELECT " VOLUME_COLUMNS " FROM volumes v WHERE v.id = $1"
				  " AND ($2::text IS NULL OR v.team_id::text = $2)";
	const char *params[] = {volume_id, team_id};

	return volume__query_one(pool, sql, params, volume_id, out, err);
}

int storage__volume_get_by_name(struct storage_pool *pool, const char *team_id, const char *name,
				struct storage_volume *out, struct storage_error *err)
{
	static const char sql[] = "SELECT " VOLUME_COLUMNS " FROM volumes v"
				  " WHERE v.team_id::text = $1 AND v.name = $2";
	const char *params[] = {team_id, name};
	char quoted[STORAGE_VOLUME_NAME_MAX + 3];

	snprintf(quoted, sizeof(quoted), "'%s'", name);
	return volume__query_one(pool, sql, params, quoted, out, err);
}

int storage__volume_delete(struct storage_pool *pool, const char *team_id, const char *volume_id,
			   struct storage_error *err)
{
	static const char sql[] = "DELETE FROM volumes v WHERE v.id = $1 AND v.team_id::text = $2"
				  " AND NOT " VOLUME_IN_USE("v") " RETURNING v.id";
	const char *params[] = {volume_id, team_id};
	struct storage_volume volume;
	PGresult *result = storage__run_sql(pool, sql, 2, params, err);
	int rows, rc;

	if (!result)
		return err ? err->code : STORAGE_ERR_INTERNAL;
	rows = PQntuples(result);
	PQclear(result);
	if (rows == 1)
		return STORAGE_OK;
	rc = storage__volume_get(pool, team_id, volume_id, &volume, err);
	if (rc)
		return rc;
	return storage__fail(err, STORAGE_ERR_CONFLICT,
			     "volume %s is mounted by sandbox %s; kill it first", volume_id,
			     volume.sandbox_id);
}

int storage__volume_claim(struct storage_pool *pool, const char *team_id, const char *name,
			  const char *sandbox_id, const char *mount_path,
			  struct storage_volume *out, struct storage_error *err)
{
	static const char sql[] =
	    "UPDATE volumes v SET sandbox_id = $3, mount_path = $4"
	    " WHERE v.team_id::text = $1 AND v.name = $2"
	    " AND (v.sandbox_id IS NULL OR v.sandbox_id = $3 OR NOT " VOLUME_IN_USE(
		"v") ")"
		     " RETURNING " VOLUME_COLUMNS;
	static const char holder_sql[] =
	    "SELECT v.sandbox_id FROM volumes v WHERE v.team_id::text = $1 AND v.name = $2";
	const char *params[] = {team_id, name, sandbox_id, mount_path};
	struct storage_volume volume;
	char holder[65] = "";
	PGresult *result = storage__run_sql(pool, sql, 4, params, err);

	if (!result)
		return err ? err->code : STORAGE_ERR_INTERNAL;
	if (PQntuples(result) == 1) {
		volume__decode(result, 0, out ? out : &volume);
		PQclear(result);
		return STORAGE_OK;
	}
	PQclear(result);
	result = storage__run_sql(pool, holder_sql, 2, params, err);
	if (!result)
		return err ? err->code : STORAGE_ERR_INTERNAL;
	if (PQntuples(result) != 1) {
		PQclear(result);
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "volume '%s' not found", name);
	}
	storage__text(result, 0, 0, holder, sizeof(holder));
	PQclear(result);
	return storage__fail(err, STORAGE_ERR_CONFLICT,
			     "volume '%s' is in use by sandbox %s (one writer at a time)", name,
			     holder);
}

int storage__volume_release_internal(struct storage_pool *pool, const char *sandbox_id,
				     struct storage_error *err)
{
	static const char sql[] = "UPDATE volumes SET sandbox_id = NULL, mount_path = NULL"
				  " WHERE sandbox_id = $1 RETURNING id";
	const char *params[] = {sandbox_id};
	PGresult *result = storage__run_sql(pool, sql, 1, params, err);

	if (!result)
		return err ? err->code : STORAGE_ERR_INTERNAL;
	PQclear(result);
	return STORAGE_OK;
}

int storage__volume_list_by_sandbox_internal(struct storage_pool *pool, const char *sandbox_id,
					     struct storage_volume **out, size_t *count,
					     struct storage_error *err)
{
	static const char sql[] = "SELECT " VOLUME_COLUMNS " FROM volumes v WHERE v.sandbox_id = $1"
				  " ORDER BY v.mount_path, v.id";
	const char *params[] = {sandbox_id};
	PGresult *result = storage__run_sql(pool, sql, 1, params, err);
	int rows;

	*out = NULL;
	*count = 0;
	if (!result)
		return err ? err->code : STORAGE_ERR_INTERNAL;
	rows = PQntuples(result);
	if (rows > 0) {
		*out = calloc((size_t)rows, sizeof(**out));
		if (!*out) {
			PQclear(result);
			return storage__fail(err, STORAGE_ERR_INTERNAL, "out of memory");
		}
	}
	for (int i = 0; i < rows; i++)
		volume__decode(result, i, &(*out)[i]);
	*count = (size_t)rows;
	PQclear(result);
	return STORAGE_OK;
}

int storage__volume_set_host_internal(struct storage_pool *pool, const char *volume_id,
				      const char *host_id, struct storage_error *err)
{
	static const char sql[] = "UPDATE volumes SET host_id = $2 WHERE id = $1 RETURNING id";
	const char *params[] = {volume_id, host_id};
	PGresult *result = storage__run_sql(pool, sql, 2, params, err);
	int rows;

	if (!result)
		return err ? err->code : STORAGE_ERR_INTERNAL;
	rows = PQntuples(result);
	PQclear(result);
	return rows == 1
		   ? STORAGE_OK
		   : storage__fail(err, STORAGE_ERR_NOT_FOUND, "volume %s not found", volume_id);
}

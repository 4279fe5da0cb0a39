/* storage snapshots: a sandbox's files kept as a team template
 * (migrations/0006_snapshots.sql). Returns STORAGE_OK or the error code
 * (err filled). */
#ifndef WARREN_STORAGE_SNAPSHOTS_H
#define WARREN_STORAGE_SNAPSHOTS_H

#include <jansson.h>
#include <stdint.h>

#include "warren/storage.h"

struct storage_snapshot {
	const char *id; /* the new template id */
	const char *team_id;
	const char *sandbox_id; /* its source */
	const char *name;	/* the caller's name, or NULL */
	const char *host_id;	/* the host whose templates_dir holds it */
	int32_t cpu_count, memory_mb;
	int64_t bytes; /* its own storage (the base's files are shared) */
	const struct storage_template *template_row; /* the `templates` row */
};

/* Registers a captured snapshot in one transaction: the templates row,
 * the team_templates row and the snapshots row. CONFLICT when the id is
 * taken. */
int storage__snapshot_register(struct storage_pool *pool, const struct storage_snapshot *snap,
			       struct storage_error *err);

/* *bytes: the storage held by team_id's live snapshots. */
int storage__snapshot_team_bytes(struct storage_pool *pool, const char *team_id, int64_t *bytes,
				 struct storage_error *err);

/* The team's live snapshots, newest first, as E2B's list answers them:
 * [{"snapshotID", "names": [id, name?]}]; only those of sandbox_id when
 * it is not NULL, only those named name when it is not NULL. */
int storage__snapshot_list(struct storage_pool *pool, const char *team_id, const char *sandbox_id,
			   const char *name, json_t **out, struct storage_error *err);

#endif

/* template_builds: custom templates of a team and their builds
 * (migrations/0004_template_builds.sql, docs/templates.md). Same
 * conventions as warren/storage.h: STORAGE_OK or an error code, err
 * filled; a team only ever sees its own rows. List answers are JSON in
 * the API's shape (the only reader renders them as is). */
#ifndef WARREN_STORAGE_TEMPLATE_BUILDS_H
#define WARREN_STORAGE_TEMPLATE_BUILDS_H

#include <jansson.h>
#include <stdint.h>

#include "warren/storage.h"

enum template_build_status {
	TEMPLATE_BUILD_WAITING = 0,
	TEMPLATE_BUILD_BUILDING,
	TEMPLATE_BUILD_READY,
	TEMPLATE_BUILD_ERROR,
};

struct storage_template_build {
	char id[37];
	char template_id[64];
	char team_id[37];
	enum template_build_status status;
	json_t *spec; /* the steps as posted (owned; NULL while waiting) */
	int32_t cpu_count, memory_mb, attempts;
	char host_id[65];
	char reason[1024];
	char reason_step[32];
};

const char *template_build__status_name(enum template_build_status status);
void storage__template_build_clear(struct storage_template_build *build);

/* Creates the team's template id (or updates its resources when the team
 * owns it already) and a new build of it in status waiting. CONFLICT when
 * another team owns the name or it is a host-installed template. */
int storage__template_build_create(struct storage_pool *pool, const char *team_id,
				   const char *template_id, const char *build_id, int32_t cpu_count,
				   int32_t memory_mb, struct storage_error *err);
/* The build (team_id NULL: any team, for workers). NOT_FOUND otherwise. */
/* The host that built and installed template_id's newest ready build, in
 * host_out ("" when no ready build names one). Internal: any team. */
int storage__template_build_host_internal(struct storage_pool *pool, const char *template_id,
					  char *host_out, size_t host_len,
					  struct storage_error *err);
int storage__template_build_get(struct storage_pool *pool, const char *team_id,
				const char *build_id, struct storage_template_build *out,
				struct storage_error *err);
/* waiting -> building with the steps (spec). CONFLICT when it is not
 * waiting (already started: the caller decides whether that is a retry). */
int storage__template_build_start(struct storage_pool *pool, const char *team_id,
				  const char *template_id, const char *build_id, const json_t *spec,
				  struct storage_error *err);
/* A worker takes a building build: attempts + 1, host recorded. *attempts
 * gets the new count. CONFLICT when it is not building (finished). */
int storage__template_build_claim(struct storage_pool *pool, const char *build_id,
				  const char *host_id, int32_t *attempts,
				  struct storage_error *err);
/* Appends one log line (level debug|info|warn|error, step may be NULL). */
int storage__template_build_log(struct storage_pool *pool, const char *build_id, const char *level,
				const char *step, const char *message, struct storage_error *err);
/* building -> ready or error (reason, step may be NULL). CONFLICT when it
 * was not building. */
int storage__template_build_finish(struct storage_pool *pool, const char *build_id,
				   enum template_build_status status, const char *reason,
				   const char *step, struct storage_error *err);
/* Log lines from offset (0-based), at most limit: a new JSON array of
 * {timestamp, level, message, step?}. */
int storage__template_build_logs(struct storage_pool *pool, const char *build_id, int64_t offset,
				 int64_t limit, json_t **out, struct storage_error *err);
/* The last count log lines of a build (oldest first), same shape. */
int storage__template_build_log_tail(struct storage_pool *pool, const char *build_id, int64_t count,
				     json_t **out, struct storage_error *err);
/* How many live (not deleted) templates the team has. */
int storage__team_template_count(struct storage_pool *pool, const char *team_id, int64_t *count,
				 struct storage_error *err);
/* The team's templates as the API's Template objects (JSON array). */
int storage__team_template_list(struct storage_pool *pool, const char *team_id, json_t **out,
				struct storage_error *err);
/* One of the team's templates with its builds: {templateID, public,
 * aliases, names, builds: [...]}. NOT_FOUND when not the team's. */
int storage__team_template_get(struct storage_pool *pool, const char *team_id,
			       const char *template_id, json_t **out, struct storage_error *err);
/* Deletes the team's template, its builds and its `templates` row. */
int storage__team_template_delete(struct storage_pool *pool, const char *team_id,
				  const char *template_id, struct storage_error *err);
/* STORAGE_OK when team_id may start sandboxes of template_id (it is not
 * a team's template, or it is team_id's); NOT_FOUND when another team
 * owns it. */
int storage__team_template_visible(struct storage_pool *pool, const char *team_id,
				   const char *template_id, struct storage_error *err);
/* The ids of every team template (any team): a JSON array of strings. */
int storage__team_template_ids(struct storage_pool *pool, json_t **out, struct storage_error *err);
/* Removes the `templates` row of id unless a team owns that name (a
 * deleted team template a worker registered again from its disk). */
int storage__template_forget(struct storage_pool *pool, const char *id, struct storage_error *err);
/* *in_use: a sandbox of template id is starting, running or paused. */
int storage__template_in_use(struct storage_pool *pool, const char *id, bool *in_use,
			     struct storage_error *err);
/* True (1) when the name is taken by a host-installed template or a
 * team's template; *team_owned tells whether team_id owns it. */
int storage__template_alias_lookup(struct storage_pool *pool, const char *team_id,
				   const char *alias, bool *exists, bool *team_owned,
				   struct storage_error *err);

#endif

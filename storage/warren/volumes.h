/* volumes: persistent volumes of a team (migrations/0005_volumes.sql,
 * docs/volumes.md). Same conventions as warren/storage.h: STORAGE_OK or an
 * error code with err filled; a team only ever sees its own rows;
 * *_internal functions skip the team check (workers only). A volume is in
 * use while the sandbox that claimed it last is in a live state. */
#ifndef WARREN_STORAGE_VOLUMES_H
#define WARREN_STORAGE_VOLUMES_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "warren/storage.h"

#define STORAGE_VOLUME_ID_LEN	24 /* "vol_" + 20 of [a-z0-9] */
#define STORAGE_VOLUME_NAME_MAX 63
#define STORAGE_VOLUME_PATH_MAX 1024

struct storage_volume {
	char id[STORAGE_VOLUME_ID_LEN + 1];
	char team_id[STORAGE_UUID_LEN + 1];
	char name[STORAGE_VOLUME_NAME_MAX + 1];
	int64_t size_bytes;
	char sandbox_id[65];			      /* holder, "" when none */
	bool in_use;				      /* the holder is live */
	char mount_path[STORAGE_VOLUME_PATH_MAX + 1]; /* the holder's mount path */
	char host_id[65];			      /* "" until first mounted */
};

/* Per-team quota (settings volume_quota_count, volume_quota_mb). */
struct storage_volume_quota {
	int64_t max_count;
	int64_t max_bytes;
};

/* A new volume id "vol_" + 20 random [a-z0-9]. 0 or -errno. */
int storage__volume_new_id(char out[STORAGE_VOLUME_ID_LEN + 1]);
/* True for a well-formed volume id / name (the SQL checks, in C). Pure. */
bool storage__volume_id_valid(const char *id);
bool storage__volume_name_valid(const char *name);
/* True when a team holding count volumes of total bytes may add one of
 * size_bytes under quota. Pure. */
bool storage__volume_quota_allows(const struct storage_volume_quota *quota, int64_t count,
				  int64_t total_bytes, int64_t size_bytes);

/* Creates the team's volume. DUPLICATE when the team has one of that
 * name, CONFLICT (message says which limit) when the quota would be
 * exceeded. Two creates racing at the quota's edge may both pass. */
int storage__volume_create(struct storage_pool *pool, const char *team_id, const char *id,
			   const char *name, int64_t size_bytes,
			   const struct storage_volume_quota *quota, struct storage_error *err);
/* The team's volumes as the API's Volume objects [{volumeID, name}]. */
int storage__volume_list(struct storage_pool *pool, const char *team_id, json_t **out,
			 struct storage_error *err);
/* One of the team's volumes (team_id NULL: any team, internal). */
int storage__volume_get(struct storage_pool *pool, const char *team_id, const char *volume_id,
			struct storage_volume *out, struct storage_error *err);
/* The team's volume called name. NOT_FOUND when the team has none. */
int storage__volume_get_by_name(struct storage_pool *pool, const char *team_id, const char *name,
				struct storage_volume *out, struct storage_error *err);
/* Deletes the team's volume. NOT_FOUND, or CONFLICT while it is in use. */
int storage__volume_delete(struct storage_pool *pool, const char *team_id, const char *volume_id,
			   struct storage_error *err);
/* Claims the team's volume called name for sandbox_id at mount_path (the
 * sandbox row must exist). NOT_FOUND when the team has no such volume,
 * CONFLICT when another live sandbox holds it. out (may be NULL) gets it. */
int storage__volume_claim(struct storage_pool *pool, const char *team_id, const char *name,
			  const char *sandbox_id, const char *mount_path,
			  struct storage_volume *out, struct storage_error *err);
/* Drops every claim of sandbox_id (a create that failed before starting). */
int storage__volume_release_internal(struct storage_pool *pool, const char *sandbox_id,
				     struct storage_error *err);
/* The volumes sandbox_id claimed, in mount path order (caller frees *out;
 * NULL when none). */
int storage__volume_list_by_sandbox_internal(struct storage_pool *pool, const char *sandbox_id,
					     struct storage_volume **out, size_t *count,
					     struct storage_error *err);
/* Records host_id as the host holding the volume's image. */
int storage__volume_set_host_internal(struct storage_pool *pool, const char *volume_id,
				      const char *host_id, struct storage_error *err);

#endif

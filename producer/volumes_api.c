/* volumes_api: the /volumes endpoints of the REST API (docs/volumes.md,
 * docs/api.md "Volumes"): a team's persistent volumes, created, listed,
 * read and deleted here; sandboxes mount them through volumeMounts. The
 * images themselves live on the worker host (workers/worker/volumes.c). */
#include <stdio.h>
#include <string.h>

#include "request.h"
#include "warren/log.h"
#include "warren/volumes.h"

/* {volumeID, name, token}: the VolumeAndToken the SDK reads. token is
 * empty: warren has no volume content API (those routes answer 501). */
static json_t *volumes_api__render(const char *id, const char *name)
{
	return json_pack("{s:s, s:s, s:s}", "volumeID", id, "name", name, "token", "");
}

/* POST /volumes {name}: 201, 400, 403 over the team's quota, 409 when the
 * team has a volume of that name. */
static enum MHD_Result volumes_api__create(struct api_request *r, struct storage_pool *pool)
{
	struct storage_volume_quota quota = {
	    .max_count = r->config->volume_quota_count,
	    .max_bytes = r->config->volume_quota_mb << 20,
	};
	char name[64], id[STORAGE_VOLUME_ID_LEN + 1];
	struct api_error error;
	struct storage_error e;
	enum MHD_Result ret;
	json_t *body;
	int rc;

	body = validate__parse_body(r->body, r->body_len, &error);
	if (!body || validate__volume_create(body, name, &error)) {
		ret = request__error(r, error.status, "%s", error.message);
		goto out;
	}
	if (storage__volume_new_id(id)) {
		ret = request__error(r, 500, "internal error");
		goto out;
	}
	rc = storage__volume_create(pool, r->team.id, id, name, r->config->volume_size_mb << 20,
				    &quota, &e);
	if (rc == STORAGE_ERR_DUPLICATE) {
		ret = request__error(r, 409, "volume '%s' already exists", name);
		goto out;
	}
	if (rc == STORAGE_ERR_CONFLICT) {
		ret = request__error(r, 403, "%s", e.message);
		goto out;
	}
	if (rc) {
		ret = request__storage_error(r, &e);
		goto out;
	}
	log_info("req=%s team=%s volume %s (%s) created, %lld MiB", r->request_id, r->team.id, id,
		 name, (long long)r->config->volume_size_mb);
	ret = request__json(r, 201, volumes_api__render(id, name), NULL);
out:
	json_decref(body);
	return ret;
}

static enum MHD_Result volumes_api__not_found(struct api_request *r)
{
	return request__error(r, 404, "volume %.64s not found", r->route.volume_id);
}

/* GET /volumes/{volumeID}: 200 or 404 (another team's is not found). */
static enum MHD_Result volumes_api__get(struct api_request *r, struct storage_pool *pool)
{
	struct storage_volume volume;
	struct storage_error e;
	int rc;

	if (!storage__volume_id_valid(r->route.volume_id))
		return volumes_api__not_found(r);
	rc = storage__volume_get(pool, r->team.id, r->route.volume_id, &volume, &e);
	if (rc == STORAGE_ERR_NOT_FOUND)
		return volumes_api__not_found(r);
	if (rc)
		return request__storage_error(r, &e);
	return request__json(r, 200, volumes_api__render(volume.id, volume.name), NULL);
}

/* DELETE /volumes/{volumeID}: 204, 404, or 409 while a sandbox mounts it.
 * The image file goes when its worker next sweeps (docs/volumes.md). */
static enum MHD_Result volumes_api__delete(struct api_request *r, struct storage_pool *pool)
{
	struct storage_error e;
	int rc;

	if (!storage__volume_id_valid(r->route.volume_id))
		return volumes_api__not_found(r);
	rc = storage__volume_delete(pool, r->team.id, r->route.volume_id, &e);
	if (rc == STORAGE_ERR_NOT_FOUND)
		return volumes_api__not_found(r);
	if (rc == STORAGE_ERR_CONFLICT)
		return request__error(r, 409, "%s", e.message);
	if (rc)
		return request__storage_error(r, &e);
	log_info("req=%s team=%s volume %s deleted", r->request_id, r->team.id, r->route.volume_id);
	return request__empty(r, 204);
}

enum MHD_Result volumes_api__dispatch(struct api_request *r, struct storage_pool *pool)
{
	struct storage_error e;
	json_t *list = NULL;

	switch (r->route.endpoint) {
	case API_ROUTE_VOLUME_CREATE:
		return volumes_api__create(r, pool);
	case API_ROUTE_VOLUME_GET:
		return volumes_api__get(r, pool);
	case API_ROUTE_VOLUME_DELETE:
		return volumes_api__delete(r, pool);
	case API_ROUTE_VOLUME_LIST:
		if (storage__volume_list(pool, r->team.id, &list, &e))
			return request__storage_error(r, &e);
		return request__json(r, 200, list, NULL);
	default:
		return request__error(r, 404, "no such endpoint");
	}
}

/* volumes: images of the volumes a create mounts, and the sweep of
 * deleted ones (volumes.h, docs/volumes.md). */
#include "volumes.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "warren/config.h"
#include "warren/dirs.h"
#include "warren/jail.h"
#include "warren/log.h"
#include "warren/volumes.h"

/* A half-made image older than this is a leftover of a crash. */
#define WORKER_VOLUMES_HALF_MADE_S 600

static const char *worker_volumes__dir(void)
{
	return config__get("volumes_dir", "/var/lib/warren/volumes");
}

int worker_volumes__prepare(struct worker *worker, const char *sandbox_id,
			    struct worker_volumes *out, char *reason, size_t reason_len)
{
	struct storage_volume *volumes = NULL;
	struct storage_error err;
	size_t count = 0;
	int rc, ret = 0;

	memset(out, 0, sizeof(*out));
	rc = storage__volume_list_by_sandbox_internal(worker->storage, sandbox_id, &volumes, &count,
						      &err);
	if (rc == STORAGE_ERR_UNAVAILABLE)
		return -EAGAIN;
	if (rc) {
		snprintf(reason, reason_len, "listing the sandbox's volumes failed: %s",
			 err.message);
		return -EIO;
	}
	if (count > WORKER_VOLUMES_MAX) {
		snprintf(reason, reason_len, "at most %d volumes", WORKER_VOLUMES_MAX);
		ret = -EINVAL;
		goto out;
	}
	if (count && (ret = dirs__make(worker_volumes__dir(), 0700))) {
		snprintf(reason, reason_len, "mkdir %s: %s", worker_volumes__dir(), strerror(-ret));
		goto out;
	}
	for (size_t i = 0; i < count; i++) {
		if (!storage__volume_id_valid(volumes[i].id)) {
			snprintf(reason, reason_len, "bad volume id");
			ret = -EINVAL;
			goto out;
		}
		if (volumes[i].host_id[0] && strcmp(volumes[i].host_id, worker->host_id)) {
			snprintf(reason, reason_len, "volume '%s' lives on host %s, not %s",
				 volumes[i].name, volumes[i].host_id, worker->host_id);
			ret = -EXDEV;
			goto out;
		}
		snprintf(out->image[i], sizeof(out->image[i]), "%s/%s.img", worker_volumes__dir(),
			 volumes[i].id);
		snprintf(out->path[i], sizeof(out->path[i]), "%s", volumes[i].mount_path);
		ret = jail__volume_make(out->image[i], (uint64_t)volumes[i].size_bytes, reason,
					reason_len);
		if (ret)
			goto out;
		if (!volumes[i].host_id[0] &&
		    storage__volume_set_host_internal(worker->storage, volumes[i].id,
						      worker->host_id, &err))
			log_warn("volume %s: recording host %s failed: %s", volumes[i].id,
				 worker->host_id, err.message);
		out->mounts[i].image = out->image[i];
		out->mounts[i].path = out->path[i];
	}
	out->count = count;
out:
	free(volumes);
	return ret;
}

int worker_volumes__sweep(struct worker *worker)
{
	char id[STORAGE_VOLUME_ID_LEN + 1], path[PATH_MAX];
	struct storage_volume volume;
	struct storage_error err;
	struct dirent *entry;
	int removed = 0;
	DIR *dir = opendir(worker_volumes__dir());

	if (!dir)
		return 0;
	while ((entry = readdir(dir))) {
		const char *name = entry->d_name;
		bool half_made;

		if (strncmp(name, "vol_", 4) || strlen(name) < STORAGE_VOLUME_ID_LEN + 4 ||
		    strncmp(name + STORAGE_VOLUME_ID_LEN, ".img", 4))
			continue;
		memcpy(id, name, STORAGE_VOLUME_ID_LEN);
		id[STORAGE_VOLUME_ID_LEN] = '\0';
		half_made = name[STORAGE_VOLUME_ID_LEN + 4] != '\0'; /* <image>.<pid>.<n> */
		if (half_made) {
			/* one a create thread may be making right now is left alone */
			struct stat st;

			if (fstatat(dirfd(dir), name, &st, AT_SYMLINK_NOFOLLOW) ||
			    time(NULL) - st.st_mtime < WORKER_VOLUMES_HALF_MADE_S)
				continue;
		} else {
			int rc = storage__volume_get(worker->storage, NULL, id, &volume, &err);

			if (rc != STORAGE_ERR_NOT_FOUND)
				continue; /* kept, or PostgreSQL away: next time */
		}
		snprintf(path, sizeof(path), "%s/%s", worker_volumes__dir(), name);
		if (unlink(path) == 0) {
			log_info("volume image %s removed (%s)", name,
				 half_made ? "half made" : "the volume was deleted");
			removed++;
		}
	}
	closedir(dir);
	return removed;
}

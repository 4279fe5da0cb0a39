/* snapshot: a sandbox captured as a new template (snapshot.h, docs/api.md
 * "Snapshots"). jail: the new tree is a hard-link copy of the sandbox's
 * template rootfs with a copy of its writable layer merged in by
 * build__merge_upper (the live upper is never touched: the sandbox keeps
 * running from it); only files, a jail's processes and memory are not
 * captured. vm: the runtime exports the guest's snapshot and disk into
 * the new template's dir (runtime__export_vm). */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build.h"
#include "snapshot.h"
#include "warren/clock.h"
#include "warren/ids.h"
#include "warren/templates.h"
#include "warren/tokens.h"

static uint64_t snapshot_bytes;

static int snapshot__count(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)path;
	(void)type;
	(void)ftw;
	if (S_ISREG(st->st_mode) || S_ISLNK(st->st_mode))
		snapshot_bytes += (uint64_t)st->st_size;
	return 0;
}

uint64_t snapshot__layer_bytes(const char *dir)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	uint64_t bytes;

	pthread_mutex_lock(&lock);
	snapshot_bytes = 0;
	bytes = nftw(dir, snapshot__count, 64, FTW_PHYS) ? 0 : snapshot_bytes;
	pthread_mutex_unlock(&lock);
	return bytes;
}

/* template.json of the snapshot: the base's, with its own name, base,
 * content hash, time and size (the base's user, workdir and envs kept;
 * jail: its start/ready commands too, so a sandbox from it starts like
 * its source; vm: none, the restored guest runs them already, and the
 * source the restored agent belongs to). */
static int snapshot__write_metadata(const struct snapshot_source *source, const char *name,
				    const char *work, uint64_t bytes)
{
	const struct template_info *base = &source->base;
	char path[PATH_MAX + 32], built_at[32], hash[TOKENS_SHA256_HEX_LEN + 1], seed[256];
	json_t *meta;
	int ret = -1;

	snprintf(path, sizeof(path), "%.4000s/template.json", base->dir);
	meta = json_load_file(path, 0, NULL);
	if (!json_is_object(meta))
		goto out;
	clock__format_rfc3339(clock__realtime_ms(), built_at);
	snprintf(seed, sizeof(seed), "snapshot %s %s %s", name, base->content_hash, built_at);
	tokens__sha256_hex(seed, strlen(seed), hash);
	json_object_set_new(meta, "name", json_string(name));
	json_object_set_new(meta, "base", json_string(base->name));
	json_object_set_new(meta, "content_hash", json_string(hash));
	json_object_set_new(meta, "built_at", json_string(built_at));
	json_object_set_new(meta, "size", json_integer((json_int_t)(base->size + bytes)));
	json_object_set_new(meta, "image_size", json_integer(0));
	json_object_set_new(meta, "snapshot_bytes", json_integer((json_int_t)bytes));
	/* a build_id marks a team's template: the worker's prune removes it
	 * from this host once its team deleted it and no sandbox uses it */
	json_object_set_new(meta, "build_id", json_string(name));
	if (source->export_vm) {
		json_object_del(meta, "start_cmd");
		json_object_del(meta, "ready_cmd");
		json_object_set_new(meta, "vm_snapshot",
				    json_pack("{s:s, s:b}", "source_sandbox_id", source->source_id,
					      "secure", source->source_secure));
	}
	snprintf(path, sizeof(path), "%.4000s/template.json", work);
	ret = json_dump_file(meta, path, JSON_INDENT(2) | JSON_SORT_KEYS) ? -1 : 0;
out:
	json_decref(meta);
	return ret;
}

/* jail: the base's tree with the sandbox's layer merged in, into work. */
static int snapshot__fill_jail(const struct snapshot_source *source, const char *work,
			       uint64_t *bytes, char *err, size_t err_len)
{
	char rootfs[PATH_MAX + 16], upper[PATH_MAX + 16];
	const char *link_copy[] = {"cp", "-al", source->base.rootfs, rootfs, NULL};
	const char *upper_copy[] = {"cp", "-a", source->upper, upper, NULL};
	const char *rm_upper[] = {"rm", "-rf", "--one-file-system", upper, NULL};

	snprintf(rootfs, sizeof(rootfs), "%s/rootfs", work);
	snprintf(upper, sizeof(upper), "%s/upper", work);
	if (build__spawn_wait(link_copy) || build__spawn_wait(upper_copy)) {
		snprintf(err, err_len, "copying the sandbox's files failed");
		return -1;
	}
	*bytes = snapshot__layer_bytes(upper);
	if (build__merge_upper(upper, rootfs, source->host_uid, err, err_len))
		return -1;
	if (build__spawn_wait(rm_upper)) {
		snprintf(err, err_len, "removing the copied layer failed");
		return -1;
	}
	return 0;
}

int snapshot__capture(const struct snapshot_source *source, const char *name, uint64_t *bytes,
		      char *err, size_t err_len)
{
	char work[PATH_MAX], final[PATH_MAX], link[PATH_MAX], link_tmp[PATH_MAX];
	const char *rm_work[] = {"rm", "-rf", "--one-file-system", work, NULL};
	int ret = -1;

	*bytes = 0;
	if (!templates__name_valid(name)) {
		snprintf(err, err_len, "bad snapshot name");
		return -1;
	}
	snprintf(work, sizeof(work), "%.2000s/.snapshot-%s", source->cache_dir, name);
	snprintf(final, sizeof(final), "%.2000s/%s", source->cache_dir, name);
	snprintf(link, sizeof(link), "%.2000s/%s", source->templates_dir, name);
	snprintf(link_tmp, sizeof(link_tmp), "%.2000s/.%s.snapshot", source->templates_dir, name);
	if (!access(link, F_OK)) {
		snprintf(err, err_len, "template %s exists", name);
		return -1;
	}
	const char *rm_final[] = {"rm", "-rf", "--one-file-system", final, NULL};
	build__spawn_wait(rm_work); /* an interrupted earlier attempt */
	build__spawn_wait(rm_final);
	if (mkdir(work, 0755)) {
		snprintf(err, err_len, "mkdir %s: %s", work, strerror(errno));
		return -1;
	}
	if (source->export_vm ? source->export_vm(source->export_opaque, work, bytes, err, err_len)
			      : snapshot__fill_jail(source, work, bytes, err, err_len))
		goto out;
	if (snapshot__write_metadata(source, name, work, *bytes)) {
		snprintf(err, err_len, "writing the snapshot's template.json failed");
		goto out;
	}
	unlink(link_tmp);
	if (rename(work, final) || symlink(final, link_tmp) || rename(link_tmp, link)) {
		snprintf(err, err_len, "installing into %s failed: %s", source->templates_dir,
			 strerror(errno));
		unlink(link_tmp);
		goto out;
	}
	ret = 0;
out:
	if (ret)
		build__spawn_wait(rm_work);
	return ret;
}

bool snapshot__vm_source(const char *template_id, char *source_id, size_t source_id_len,
			 bool *secure)
{
	struct template_info info;
	char path[PATH_MAX + 32], err[256];
	json_t *meta, *vm;
	const char *id;
	bool found = false;

	if (templates__read(templates__dir(), template_id, &info, err, sizeof(err)))
		return false;
	snprintf(path, sizeof(path), "%.4000s/template.json", info.dir);
	meta = json_load_file(path, 0, NULL);
	vm = json_object_get(meta, "vm_snapshot");
	id = json_string_value(json_object_get(vm, "source_sandbox_id"));
	if (id && ids__is_sandbox_id(id)) {
		snprintf(source_id, source_id_len, "%s", id);
		*secure = json_is_true(json_object_get(vm, "secure"));
		found = true;
	}
	json_decref(meta);
	return found;
}

/* Removes the entries of dir that begin with prefix and end with suffix. */
static int snapshot__sweep_dir(const char *dir, const char *prefix, const char *suffix)
{
	DIR *listing = opendir(dir);
	struct dirent *entry;
	char path[PATH_MAX];
	int removed = 0;

	while (listing && (entry = readdir(listing))) {
		size_t length = strlen(entry->d_name), suffix_length = strlen(suffix);

		if (strncmp(entry->d_name, prefix, strlen(prefix)) ||
		    length < strlen(prefix) + suffix_length ||
		    strcmp(entry->d_name + length - suffix_length, suffix))
			continue;
		snprintf(path, sizeof(path), "%.2000s/%s", dir, entry->d_name);
		const char *rm[] = {"rm", "-rf", "--one-file-system", path, NULL};
		if (build__spawn_wait(rm) == 0)
			removed++;
	}
	if (listing)
		closedir(listing);
	return removed;
}

int snapshot__sweep_unfinished(const char *templates_dir, const char *cache_dir)
{
	return snapshot__sweep_dir(cache_dir, ".snapshot-", "") +
	       snapshot__sweep_dir(templates_dir, ".", ".snapshot");
}

int snapshot__remove(const char *templates_dir, const char *name)
{
	char link[PATH_MAX], target[PATH_MAX];
	ssize_t n;

	if (!templates__name_valid(name))
		return -EINVAL;
	snprintf(link, sizeof(link), "%.2000s/%s", templates_dir, name);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return -errno;
	target[n] = '\0';
	const char *rm[] = {"rm", "-rf", "--one-file-system", target, NULL};
	if (unlink(link) || build__spawn_wait(rm))
		return -EIO;
	return 0;
}

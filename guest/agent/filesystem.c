/* filesystem: filesystem.Filesystem unary methods, see filesystem.h.
 * EntryInfo in proto3 JSON: name, type (FILE_TYPE_*), path, size (int64 as
 * a string), mode, permissions ("-rw-r--r--" as Go's FileMode.String()),
 * owner, group, modifiedTime (RFC 3339), symlinkTarget when a symlink. */
#define _XOPEN_SOURCE 700
#include "filesystem.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent_paths.h"

static void set_errno_error(struct rpc_error *err, int error, const char *path)
{
	switch (error) {
	case ENOENT:
	case ENOTDIR:
		err->code = "not_found";
		snprintf(err->message, sizeof(err->message), "path '%.400s' does not exist", path);
		return;
	case EEXIST:
		err->code = "already_exists";
		break;
	case EACCES:
	case EPERM:
	case EROFS:
		err->code = "permission_denied";
		break;
	case ENOSPC:
	case EDQUOT:
		err->code = "resource_exhausted";
		break;
	case ENAMETOOLONG:
	case ELOOP:
	case EINVAL:
	case EISDIR:
	case ENOTEMPTY:
		err->code = "invalid_argument";
		break;
	default:
		err->code = "internal";
		break;
	}
	snprintf(err->message, sizeof(err->message), "'%.400s': %s", path, strerror(error));
}

static bool request_path(const json_t *request, const char *key, const struct agent_user *user,
			 char *out, size_t out_len, struct rpc_error *err)
{
	const json_t *value = json_object_get(request, key);

	if (!json_is_string(value) ||
	    strlen(json_string_value(value)) != json_string_length(value) ||
	    !paths__resolve(json_string_value(value), user->home, out, out_len)) {
		err->code = "invalid_argument";
		snprintf(err->message, sizeof(err->message), "%s must be a non-empty path", key);
		return false;
	}
	return true;
}

static void permissions_string(mode_t mode, char out[11])
{
	static const char rwx[] = "rwxrwxrwx";
	int i;

	out[0] = S_ISDIR(mode)	  ? 'd'
		 : S_ISLNK(mode)  ? 'L'
		 : S_ISFIFO(mode) ? 'p'
		 : S_ISSOCK(mode) ? 'S'
		 : S_ISCHR(mode)  ? 'c'
		 : S_ISBLK(mode)  ? 'D'
				  : '-';
	for (i = 0; i < 9; i++)
		out[i + 1] = (mode & (1u << (8 - i))) ? rwx[i] : '-';
	out[10] = '\0';
}

/* EntryInfo of path (lstat, so a symlink is reported as one). */
static json_t *entry_info(const char *path, struct rpc_error *err)
{
	struct stat st;
	struct passwd pw, *pw_result = NULL;
	struct group gr, *gr_result = NULL;
	char buf[4096], owner[64], group[64], permissions[11], when[64], size[32];
	char target[PATH_MAX];
	struct tm tm;
	const char *type;
	json_t *entry;
	ssize_t n;

	if (lstat(path, &st) < 0) {
		set_errno_error(err, errno, path);
		return NULL;
	}
	if (getpwuid_r(st.st_uid, &pw, buf, sizeof(buf), &pw_result) == 0 && pw_result)
		snprintf(owner, sizeof(owner), "%s", pw_result->pw_name);
	else
		snprintf(owner, sizeof(owner), "%u", (unsigned)st.st_uid);
	if (getgrgid_r(st.st_gid, &gr, buf, sizeof(buf), &gr_result) == 0 && gr_result)
		snprintf(group, sizeof(group), "%s", gr_result->gr_name);
	else
		snprintf(group, sizeof(group), "%u", (unsigned)st.st_gid);
	permissions_string(st.st_mode, permissions);
	gmtime_r(&st.st_mtim.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(when + strlen(when), sizeof(when) - strlen(when), ".%09ldZ", st.st_mtim.tv_nsec);
	snprintf(size, sizeof(size), "%lld", (long long)st.st_size);
	type = S_ISDIR(st.st_mode)   ? "FILE_TYPE_DIRECTORY"
	       : S_ISLNK(st.st_mode) ? "FILE_TYPE_SYMLINK"
	       : S_ISREG(st.st_mode) ? "FILE_TYPE_FILE"
				     : "FILE_TYPE_UNSPECIFIED";
	entry = json_pack("{s:s,s:s,s:s,s:s,s:i,s:s,s:s,s:s,s:s}", "name", paths__basename(path),
			  "type", type, "path", path, "size", size, "mode",
			  (int)(st.st_mode & 0777), "permissions", permissions, "owner", owner,
			  "group", group, "modifiedTime", when);
	if (S_ISLNK(st.st_mode)) {
		n = readlink(path, target, sizeof(target) - 1);
		if (n >= 0) {
			target[n] = '\0';
			json_object_set_new(entry, "symlinkTarget", json_string(target));
		}
	}
	return entry;
}

json_t *filesystem__stat(const json_t *request, const struct agent_user *user,
			 struct rpc_error *err)
{
	char path[PATH_MAX];
	struct fs_identity saved;
	json_t *entry;

	if (!request_path(request, "path", user, path, sizeof(path), err))
		return NULL;
	users__fs_enter(user, &saved);
	entry = entry_info(path, err);
	users__fs_leave(&saved);
	return entry ? json_pack("{s:o}", "entry", entry) : NULL;
}

static int make_dirs(const char *path)
{
	char buf[PATH_MAX];
	size_t i, len = strlen(path);

	if (len >= sizeof(buf))
		return ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST) {
			int error = errno;
			return error;
		}
		if (i < len)
			buf[i] = '/';
	}
	return 0;
}

json_t *filesystem__make_dir(const json_t *request, const struct agent_user *user,
			     struct rpc_error *err)
{
	char path[PATH_MAX];
	struct fs_identity saved;
	struct stat st;
	json_t *entry = NULL;
	int error;

	if (!request_path(request, "path", user, path, sizeof(path), err))
		return NULL;
	users__fs_enter(user, &saved);
	if (lstat(path, &st) == 0) {
		err->code = "already_exists";
		snprintf(err->message, sizeof(err->message), "path '%.400s' already exists", path);
		goto out;
	}
	error = make_dirs(path);
	if (error) {
		set_errno_error(err, error, path);
		goto out;
	}
	entry = entry_info(path, err);
out:
	users__fs_leave(&saved);
	return entry ? json_pack("{s:o}", "entry", entry) : NULL;
}

json_t *filesystem__move(const json_t *request, const struct agent_user *user,
			 struct rpc_error *err)
{
	char source[PATH_MAX], destination[PATH_MAX], parent[PATH_MAX];
	struct fs_identity saved;
	json_t *entry = NULL;
	char *slash;
	int error;

	if (!request_path(request, "source", user, source, sizeof(source), err) ||
	    !request_path(request, "destination", user, destination, sizeof(destination), err))
		return NULL;
	users__fs_enter(user, &saved);
	snprintf(parent, sizeof(parent), "%s", destination);
	slash = strrchr(parent, '/');
	if (slash && slash != parent) {
		*slash = '\0';
		error = make_dirs(parent);
		if (error) {
			set_errno_error(err, error, parent);
			goto out;
		}
	}
	if (rename(source, destination) < 0) {
		set_errno_error(err, errno, source);
		goto out;
	}
	entry = entry_info(destination, err);
out:
	users__fs_leave(&saved);
	return entry ? json_pack("{s:o}", "entry", entry) : NULL;
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Appends the entries of dir (and below, to depth levels) to entries. */
static bool list_into(const char *dir, unsigned depth, json_t *entries, struct rpc_error *err)
{
	DIR *handle = opendir(dir);
	struct dirent *dirent;
	char **names = NULL, **grown, child[PATH_MAX];
	size_t count = 0, cap = 0, i;
	json_t *entry;
	bool ok = true;

	if (!handle) {
		set_errno_error(err, errno, dir);
		return false;
	}
	while ((dirent = readdir(handle))) {
		if (strcmp(dirent->d_name, ".") == 0 || strcmp(dirent->d_name, "..") == 0)
			continue;
		if (count == cap) {
			cap = cap ? cap * 2 : 64;
			grown = realloc(names, cap * sizeof(char *));
			if (!grown)
				break;
			names = grown;
		}
		names[count] = strdup(dirent->d_name);
		if (names[count])
			count++;
	}
	closedir(handle);
	if (count)
		qsort(names, count, sizeof(char *), compare_names);
	for (i = 0; i < count; i++) {
		if (json_array_size(entries) >= FILESYSTEM_MAX_LIST_ENTRIES)
			break;
		if (snprintf(child, sizeof(child), "%s%s%s", dir, strcmp(dir, "/") ? "/" : "",
			     names[i]) >= (int)sizeof(child))
			continue;
		entry = entry_info(child, err);
		if (!entry)
			continue; /* vanished meanwhile */
		json_array_append_new(entries, entry);
		if (depth > 1 && strcmp(json_string_value(json_object_get(entry, "type")),
					"FILE_TYPE_DIRECTORY") == 0)
			list_into(child, depth - 1, entries, err);
	}
	for (i = 0; i < count; i++)
		free(names[i]);
	free(names);
	return ok;
}

json_t *filesystem__list_dir(const json_t *request, const struct agent_user *user,
			     struct rpc_error *err)
{
	char path[PATH_MAX];
	struct fs_identity saved;
	const json_t *depth_value;
	json_t *entries = NULL;
	long long depth = 1;
	struct stat st;

	if (!request_path(request, "path", user, path, sizeof(path), err))
		return NULL;
	depth_value = json_object_get(request, "depth");
	if (json_is_integer(depth_value))
		depth = json_integer_value(depth_value);
	if (depth == 0)
		depth = 1; /* proto3 default */
	if (depth < 0 || depth > 64) {
		err->code = "invalid_argument";
		snprintf(err->message, sizeof(err->message), "depth must be within 1..64");
		return NULL;
	}
	users__fs_enter(user, &saved);
	if (stat(path, &st) < 0) {
		set_errno_error(err, errno, path);
		goto out;
	}
	if (!S_ISDIR(st.st_mode)) {
		err->code = "invalid_argument";
		snprintf(err->message, sizeof(err->message), "path '%.400s' is not a directory",
			 path);
		goto out;
	}
	entries = json_array();
	if (!list_into(path, (unsigned)depth, entries, err)) {
		json_decref(entries);
		entries = NULL;
	}
out:
	users__fs_leave(&saved);
	return entries ? json_pack("{s:o}", "entries", entries) : NULL;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

json_t *filesystem__remove(const json_t *request, const struct agent_user *user,
			   struct rpc_error *err)
{
	char path[PATH_MAX];
	struct fs_identity saved;
	struct stat st;
	json_t *result = NULL;

	if (!request_path(request, "path", user, path, sizeof(path), err))
		return NULL;
	if (strcmp(path, "/") == 0) {
		err->code = "invalid_argument";
		snprintf(err->message, sizeof(err->message), "refusing to remove /");
		return NULL;
	}
	users__fs_enter(user, &saved);
	/* os.RemoveAll semantics: a missing path is not an error. */
	if (lstat(path, &st) < 0 && errno == ENOENT) {
		result = json_object();
		goto out;
	}
	if (nftw(path, remove_one, 32, FTW_DEPTH | FTW_PHYS) < 0) {
		set_errno_error(err, errno, path);
		goto out;
	}
	result = json_object();
out:
	users__fs_leave(&saved);
	return result;
}

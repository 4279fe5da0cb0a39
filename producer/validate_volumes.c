/* validate_volumes: the volume bodies and volumeMounts of create
 * (validate.h, docs/volumes.md). Pure; every field hostile. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "validate.h"
#include "warren/volumes.h"

static int volumes__fail(struct api_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int volumes__fail(struct api_error *err, const char *fmt, ...)
{
	va_list ap;

	if (err) {
		err->status = 400;
		va_start(ap, fmt);
		vsnprintf(err->message, sizeof(err->message), fmt, ap);
		va_end(ap);
	}
	return -1;
}

int validate__volume_create(const json_t *body, char name[64], struct api_error *err)
{
	const json_t *value = json_object_get(body, "name");
	const char *text = json_string_value(value);

	if (!json_is_object(body))
		return volumes__fail(err, "the body must be a JSON object");
	if (!text)
		return volumes__fail(err, "name is required (a string)");
	if (!storage__volume_name_valid(text))
		return volumes__fail(err,
				     "name must be 1 to %d characters of [A-Za-z0-9_.-], "
				     "starting with a letter or digit",
				     STORAGE_VOLUME_NAME_MAX);
	snprintf(name, 64, "%s", text);
	return 0;
}

/* True when path is prefix or under prefix ("/a" holds "/a" and "/a/b"). */
static bool volumes__under(const char *path, const char *prefix)
{
	size_t len = strlen(prefix);

	return !strncmp(path, prefix, len) && (path[len] == '\0' || path[len] == '/');
}

int validate__mount_path(const char *path, struct api_error *err)
{
	static const char *const reserved[] = {"/proc", "/sys", "/dev"};
	size_t len = path ? strlen(path) : 0;
	const char *segment;

	if (len < 2 || path[0] != '/' || len > API_VOLUME_PATH_MAX)
		return volumes__fail(err,
				     "volume mount path must be an absolute path of 2 to %d "
				     "characters, not \"/\"",
				     API_VOLUME_PATH_MAX);
	for (segment = path + 1; *segment;) {
		size_t n = strcspn(segment, "/");

		if (n == 0 || (n == 1 && segment[0] == '.') ||
		    (n == 2 && segment[0] == '.' && segment[1] == '.'))
			return volumes__fail(err,
					     "volume mount path '%s' has an empty, '.' or '..' "
					     "segment",
					     path);
		for (size_t i = 0; i < n; i++) {
			char c = segment[i];

			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
				return volumes__fail(err,
						     "volume mount path '%s' may only hold "
						     "[A-Za-z0-9._-] and '/'",
						     path);
		}
		segment += n;
		if (*segment == '/' && *++segment == '\0')
			return volumes__fail(err, "volume mount path '%s' ends in '/'", path);
	}
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
		if (volumes__under(path, reserved[i]))
			return volumes__fail(err, "volume mount path '%s' is under %s", path,
					     reserved[i]);
	return 0;
}

int validate__volume_mounts(const json_t *mounts,
			    struct api_volume_mount out[API_VOLUME_MOUNTS_MAX], int *count,
			    struct api_error *err)
{
	size_t index;
	const json_t *mount;

	*count = 0;
	if (!mounts || json_is_null(mounts))
		return 0;
	if (!json_is_array(mounts))
		return volumes__fail(err, "volumeMounts must be an array of {name, path}");
	if (json_array_size(mounts) > API_VOLUME_MOUNTS_MAX)
		return volumes__fail(err, "volumeMounts may hold at most %d volumes",
				     API_VOLUME_MOUNTS_MAX);
	json_array_foreach(mounts, index, mount)
	{
		const char *name = json_string_value(json_object_get(mount, "name"));
		const char *path = json_string_value(json_object_get(mount, "path"));

		if (!json_is_object(mount) || !name || !path)
			return volumes__fail(
			    err, "volumeMounts[%zu] must be {name, path} (strings)", index);
		if (!storage__volume_name_valid(name))
			return volumes__fail(
			    err, "volumeMounts[%zu].name is not a valid volume name", index);
		if (validate__mount_path(path, err))
			return -1;
		for (int i = 0; i < *count; i++) {
			if (!strcmp(out[i].name, name))
				return volumes__fail(err, "volume '%s' is mounted twice", name);
			if (volumes__under(path, out[i].path) || volumes__under(out[i].path, path))
				return volumes__fail(err,
						     "volume mount paths '%s' and '%s' overlap",
						     out[i].path, path);
		}
		snprintf(out[*count].name, sizeof(out[*count].name), "%s", name);
		snprintf(out[*count].path, sizeof(out[*count].path), "%s", path);
		(*count)++;
	}
	return 0;
}

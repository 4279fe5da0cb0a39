/* templates: metadata of installed templates. guest/rootfs/README.md. */
#include "warren/templates.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "warren/binary_path.h"
#include "warren/log.h"

#define TEMPLATE_JSON_MAX (64 * 1024)

extern char **environ;

static struct templates_settings templates_configured;

void templates__configure(const struct templates_settings *settings)
{
	templates_configured = *settings;
}

const char *templates__dir(void)
{
	return templates_configured.dir ? templates_configured.dir : "/var/lib/warren/templates";
}

const char *templates__cache_dir(void)
{
	static char fallback[PATH_MAX];
	const char *xdg = getenv("XDG_CACHE_HOME");
	const char *home = getenv("HOME");

	if (templates_configured.cache_dir)
		return templates_configured.cache_dir;
	if (!fallback[0]) {
		if (xdg && xdg[0] == '/')
			snprintf(fallback, sizeof(fallback), "%s/warren/templates", xdg);
		else
			snprintf(fallback, sizeof(fallback), "%s/.cache/warren/templates",
				 home && home[0] == '/' ? home : "/root");
	}
	return fallback;
}

bool templates__name_valid(const char *name)
{
	size_t len;

	if (!name)
		return false;
	len = strlen(name);
	if (len == 0 || len > TEMPLATES_NAME_MAX || name[0] == '-')
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return false;
	}
	return true;
}

static bool is_lower_hex(const char *s, size_t len)
{
	if (strlen(s) != len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static int copy_string_field(const json_t *root, const char *key, char *out, size_t out_len,
			     char *err, size_t err_len)
{
	const json_t *value = json_object_get(root, key);
	const char *s;

	if (!json_is_string(value)) {
		snprintf(err, err_len, "template.json: \"%s\" missing or not a string", key);
		return -EINVAL;
	}
	s = json_string_value(value);
	if (strlen(s) >= out_len || strlen(s) == 0) {
		snprintf(err, err_len, "template.json: \"%s\" empty or longer than %zu", key,
			 out_len - 1);
		return -EINVAL;
	}
	memcpy(out, s, strlen(s) + 1);
	return 0;
}

static int copy_size_field(const json_t *root, const char *key, bool required, uint64_t *out,
			   char *err, size_t err_len)
{
	const json_t *value = json_object_get(root, key);

	*out = 0;
	if (!value && !required)
		return 0;
	if (!json_is_integer(value) || json_integer_value(value) < 0) {
		snprintf(err, err_len, "template.json: \"%s\" missing or not a size", key);
		return -EINVAL;
	}
	*out = (uint64_t)json_integer_value(value);
	return 0;
}

/* An optional integer in [min, max]; absent: 0. */
static int copy_resource_field(const json_t *root, const char *key, uint32_t min, uint32_t max,
			       uint32_t *out, char *err, size_t err_len)
{
	const json_t *value = json_object_get(root, key);

	*out = 0;
	if (!value)
		return 0;
	if (!json_is_integer(value) || json_integer_value(value) < (json_int_t)min ||
	    json_integer_value(value) > (json_int_t)max) {
		snprintf(err, err_len, "template.json: \"%s\" must be an integer in [%u, %u]", key,
			 min, max);
		return -EINVAL;
	}
	*out = (uint32_t)json_integer_value(value);
	return 0;
}

int templates__parse_metadata(const char *text, size_t len, struct template_info *out, char *err,
			      size_t err_len)
{
	json_error_t json_error;
	json_t *root = NULL;
	int ret = -EINVAL;

	memset(out->name, 0, sizeof(out->name));
	if (len > TEMPLATE_JSON_MAX) {
		snprintf(err, err_len, "template.json: larger than %d bytes", TEMPLATE_JSON_MAX);
		goto out;
	}
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &json_error);
	if (!root || !json_is_object(root)) {
		snprintf(err, err_len, "template.json: not a JSON object (%s)",
			 root ? "wrong type" : json_error.text);
		goto out;
	}
	if (copy_string_field(root, "name", out->name, sizeof(out->name), err, err_len) ||
	    copy_string_field(root, "agent_version", out->agent_version, sizeof(out->agent_version),
			      err, err_len) ||
	    copy_string_field(root, "content_hash", out->content_hash, sizeof(out->content_hash),
			      err, err_len) ||
	    copy_string_field(root, "built_at", out->built_at, sizeof(out->built_at), err,
			      err_len) ||
	    copy_size_field(root, "size", true, &out->size, err, err_len) ||
	    copy_size_field(root, "image_size", false, &out->image_size, err, err_len))
		goto out;
	if (!templates__name_valid(out->name)) {
		snprintf(err, err_len, "template.json: invalid name");
		goto out;
	}
	if (copy_resource_field(root, "cpu_count", 1, TEMPLATES_CPU_MAX, &out->cpu_count, err,
				err_len) ||
	    copy_resource_field(root, "memory_mb", TEMPLATES_MEMORY_MIN_MB, TEMPLATES_MEMORY_MAX_MB,
				&out->memory_mb, err, err_len))
		goto out;
	if (!is_lower_hex(out->content_hash, 64)) {
		snprintf(err, err_len,
			 "template.json: content_hash is not 64 lower-case hex digits");
		goto out;
	}
	ret = 0;
out:
	json_decref(root);
	return ret;
}

static int read_small_file(const char *path, char **text, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buffer = NULL;
	size_t used = 0;
	int ret = 0;

	if (fd < 0)
		return -errno;
	buffer = malloc(TEMPLATE_JSON_MAX + 1);
	if (!buffer) {
		ret = -ENOMEM;
		goto out;
	}
	while (used <= TEMPLATE_JSON_MAX) {
		ssize_t n = read(fd, buffer + used, TEMPLATE_JSON_MAX + 1 - used);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			goto out;
		}
		if (n == 0)
			break;
		used += (size_t)n;
	}
	*text = buffer;
	*len = used;
	buffer = NULL;
out:
	free(buffer);
	close(fd);
	return ret;
}

int templates__read(const char *templates_dir, const char *name, struct template_info *out,
		    char *err, size_t err_len)
{
	char link_path[PATH_MAX], json_path[PATH_MAX + 32];
	char *text = NULL;
	size_t len = 0;
	int ret;

	memset(out, 0, sizeof(*out));
	if (!templates__name_valid(name)) {
		snprintf(err, err_len, "invalid template name");
		return -EINVAL;
	}
	if ((size_t)snprintf(link_path, sizeof(link_path), "%s/%s", templates_dir, name) >=
	    sizeof(link_path)) {
		snprintf(err, err_len, "templates dir path too long");
		return -ENAMETOOLONG;
	}
	if (!realpath(link_path, out->dir)) {
		ret = -errno;
		snprintf(err, err_len, "template %s not installed in %s: %s", name, templates_dir,
			 strerror(errno));
		return ret;
	}
	snprintf(json_path, sizeof(json_path), "%s/template.json", out->dir);
	ret = read_small_file(json_path, &text, &len);
	if (ret) {
		snprintf(err, err_len, "%s: %s", json_path, strerror(-ret));
		goto out;
	}
	ret = templates__parse_metadata(text, len, out, err, err_len);
	if (ret)
		goto out;
	if (strcmp(out->name, name) != 0) {
		snprintf(err, err_len, "template.json of %s names \"%s\"", name, out->name);
		ret = -EINVAL;
		goto out;
	}
	if ((size_t)snprintf(out->rootfs, sizeof(out->rootfs), "%s/rootfs", out->dir) >=
		sizeof(out->rootfs) ||
	    (size_t)snprintf(out->image, sizeof(out->image), "%s/rootfs.ext4", out->dir) >=
		sizeof(out->image)) {
		snprintf(err, err_len, "template path too long");
		ret = -ENAMETOOLONG;
	}
out:
	free(text);
	return ret;
}

static int compare_by_name(const void *a, const void *b)
{
	return strcmp(((const struct template_info *)a)->name,
		      ((const struct template_info *)b)->name);
}

int templates__list(const char *templates_dir, struct template_info **out, size_t *count)
{
	DIR *dir = opendir(templates_dir);
	struct template_info *list = NULL;
	size_t used = 0, capacity = 0;
	struct dirent *entry;
	char err[256];

	*out = NULL;
	*count = 0;
	if (!dir)
		return errno == ENOENT ? 0 : -errno;
	while ((entry = readdir(dir))) {
		if (!templates__name_valid(entry->d_name))
			continue;
		if (used == capacity) {
			size_t next = capacity ? capacity * 2 : 4;
			struct template_info *grown = realloc(list, next * sizeof(*list));

			if (!grown) {
				free(list);
				closedir(dir);
				return -ENOMEM;
			}
			list = grown;
			capacity = next;
		}
		if (templates__read(templates_dir, entry->d_name, &list[used], err, sizeof(err))) {
			log_warn("template %s skipped: %s", entry->d_name, err);
			continue;
		}
		used++;
	}
	closedir(dir);
	if (used)
		qsort(list, used, sizeof(*list), compare_by_name);
	*out = list;
	*count = used;
	return 0;
}

const char *templates__agent_binary(void)
{
	const char *configured = templates_configured.agent_binary;
	static char sibling[PATH_MAX];

	if (configured && configured[0])
		return access(configured, X_OK) == 0 ? configured : NULL;
	/* Next to this binary, or in the install's libexec/warren. */
	if (binary__find_sibling("warren-agent", sibling, sizeof(sibling)) == 0)
		return sibling;
	return access(WARREN_AGENT_DEFAULT_PATH, X_OK) == 0 ? WARREN_AGENT_DEFAULT_PATH : NULL;
}

/* build-template.sh: the install's (share/warren/guest/rootfs), else the
 * source tree's this was built from. */
static const char *templates__default_builder(void)
{
	static char installed[PATH_MAX];

	if (binary__find_data("guest/rootfs/build-template.sh", installed, sizeof(installed)) == 0)
		return installed;
	return WARREN_ROOTFS_SOURCE_DIR "/build-template.sh";
}

int templates__build(const char *name, bool force)
{
	const char *builder = templates_configured.builder ? templates_configured.builder
							   : templates__default_builder();
	const char *agent = templates__agent_binary();
	const char *argv[12];
	size_t argc = 0;
	pid_t pid;
	int status, ret;

	if (!templates__name_valid(name))
		return -1;
	argv[argc++] = "/bin/bash";
	argv[argc++] = builder;
	argv[argc++] = "--name";
	argv[argc++] = name;
	argv[argc++] = "--cache-dir";
	argv[argc++] = templates__cache_dir();
	argv[argc++] = "--templates-dir";
	argv[argc++] = templates__dir();
	argv[argc++] = "--agent";
	argv[argc++] = agent ? agent : "";
	if (force)
		argv[argc++] = "--force";
	argv[argc] = NULL;
	if (!agent)
		log_warn("template %s: no agent binary (setting agent_binary, or build "
			 "warren-agent): the template gets none",
			 name);
	ret = posix_spawn(&pid, argv[0], NULL, NULL, (char *const *)argv, environ);
	if (ret) {
		log_error("template %s: cannot run %s: %s", name, builder, strerror(ret));
		return -1;
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* build_steps: running a template build's steps (docs/templates.md).
 * The new template starts as a hard-link copy of its base's rootfs; each
 * RUN and COPY step runs in a jail whose lower layer is that tree (the
 * jail runtime, its isolation and the build's network slot), and the
 * step's overlay upper is merged back (build_merge.c). ENV, WORKDIR and
 * USER only change the state later steps and sandboxes get. Nothing here
 * follows a path inside the tree on the host except through our own
 * staging dir. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "build.h"
#include "warren/clock.h"
#include "warren/config.h"
#include "warren/jail.h"
#include "warren/log.h"
#include "warren/templates.h"
#include "warren/tokens.h"
#include "worker.h"

extern char **environ;

#define BUILD_ENV_MAX 48 /* of the jail's JAIL_ENV_MAX, the rest is ours */

/* snprintf that says so when it had to cut (every path here is built
 * from bounded parts; a cut one is a bug worth seeing). */
__attribute__((format(printf, 3, 4))) static int checked_snprintf(char *out, size_t len,
								  const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out, len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= len)
		log_error("build: text cut to %zu bytes: %.80s...", len, out);
	return n;
}
#define snprintf checked_snprintf

void build__log(struct build_run *run, const char *level, const char *fmt, ...)
{
	char message[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	log_info("build %s: %s", run->row->id, message);
	storage__template_build_log(run->worker->storage, run->row->id, level,
				    run->step[0] ? run->step : NULL, message, NULL);
}

/* Opens path inside root without leaving it (symlinks resolved as if root
 * were /). An fd or -1. */
static int open_in_root(const char *root, const char *path, int flags)
{
	struct open_how how = {.flags = (uint64_t)flags | O_CLOEXEC,
			       .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
	int root_fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC), fd;

	if (root_fd < 0)
		return -1;
	fd = (int)syscall(SYS_openat2, root_fd, path, &how, sizeof(how));
	close(root_fd);
	return fd;
}

/* uid, gid and home of user in the tree's /etc/passwd (a name or a
 * number). 0, or -1 when there is no such user. */
static int build__lookup_user(const char *rootfs, const char *user, unsigned *uid, unsigned *gid,
			      char *home, size_t home_len)
{
	char line[1024];
	int fd = open_in_root(rootfs, "/etc/passwd", O_RDONLY);
	FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
	int ret = -1;

	if (!f) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		char *fields[7] = {0}, *save = NULL, *p = line;
		int n = 0;

		line[strcspn(line, "\n")] = '\0';
		for (char *tok; n < 7 && (tok = strsep(&p, ":")); n++)
			fields[n] = tok;
		(void)save;
		if (n < 6)
			continue;
		if (strcmp(fields[0], user) && strcmp(fields[2], user))
			continue;
		*uid = (unsigned)strtoul(fields[2], NULL, 10);
		*gid = (unsigned)strtoul(fields[3], NULL, 10);
		snprintf(home, home_len, "%s", fields[5][0] == '/' ? fields[5] : "/");
		ret = 0;
		break;
	}
	fclose(f);
	return ret;
}

/* build__lookup_user, with root known without /etc/passwd (images built
 * FROM scratch often have none). */
static int build__lookup_user_or_root(const char *rootfs, const char *user, unsigned *uid,
				      unsigned *gid, char *home, size_t home_len)
{
	if (!build__lookup_user(rootfs, user, uid, gid, home, home_len))
		return 0;
	if (strcmp(user, "root") && strcmp(user, "0"))
		return -1;
	*uid = *gid = 0;
	snprintf(home, home_len, "/root");
	return 0;
}

/* The envp of a step's jail: PATH, HOME, the template's ENV, then extra
 * (NULL-terminated). Strings are malloc'ed into out (free_env). */
static int build__env(struct build_run *run, const char *home, const char *const *extra, char **out,
		      size_t out_len)
{
	const char *key;
	json_t *value;
	size_t n = 0;

	if (asprintf(&out[n++],
		     "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin") < 0 ||
	    asprintf(&out[n++], "HOME=%s", home) < 0)
		return -1;
	json_object_foreach(run->envs, key, value)
	{
		if (n + 1 >= out_len)
			return -1;
		if (asprintf(&out[n++], "%s=%s", key, json_string_value(value)) < 0)
			return -1;
	}
	for (size_t i = 0; extra && extra[i]; i++) {
		if (n + 1 >= out_len)
			return -1;
		out[n++] = strdup(extra[i]);
	}
	out[n] = NULL;
	return 0;
}

static void free_env(char **env)
{
	for (size_t i = 0; env[i]; i++)
		free(env[i]);
}

/* Copies the new bytes of console.log (from *offset) into the build log,
 * line by line (a partial last line waits unless flush). */
static void build__pump_console(struct build_run *run, const char *path, off_t *offset, bool flush)
{
	char buffer[8192];
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	ssize_t n;

	if (fd < 0)
		return;
	while ((n = pread(fd, buffer, sizeof(buffer) - 1, *offset)) > 0) {
		char *start = buffer, *nl;

		buffer[n] = '\0';
		while ((nl = memchr(start, '\n', (size_t)(buffer + n - start)))) {
			*nl = '\0';
			build__log(run, "info", "%s", start);
			start = nl + 1;
		}
		if (start == buffer && n == (ssize_t)sizeof(buffer) - 1) {
			build__log(run, "info", "%s", buffer); /* a very long line */
			start = buffer + n;
		} else if (flush && start < buffer + n) {
			build__log(run, "info", "%s", start);
			start = buffer + n;
		}
		*offset += start - buffer;
		if (start == buffer)
			break;
	}
	close(fd);
}

/* Runs script with /bin/sh -c in a jail over run->rootfs, in the build's
 * slot, then merges its writes into run->rootfs. 0, or -1 with the
 * reason in run->reason (the command's exit code when it failed). */
static int build__jail_step(struct build_run *run, const char *netns, const char *script,
			    const char *home, const char *const *extra_env)
{
	const char *state_dir = config__get("state_dir", "/var/lib/warren/sandboxes");
	char id[64], dir[PATH_MAX * 3], console[PATH_MAX * 3], upper[PATH_MAX * 3], err[512];
	char *envp[JAIL_ENV_MAX] = {0};
	const char *argv[] = {"/bin/sh", "-c", script, NULL};
	int64_t timeout_ms = config__get_int("template_build_step_timeout_s", 1800) * 1000;
	uint64_t started = clock__monotonic_ms();
	struct jail *jail = NULL;
	off_t offset = 0;
	int status = 0, ret = -1;

	snprintf(id, sizeof(id), "tb-%.8s%.4s%.4s-%s", run->row->id, run->row->id + 9,
		 run->row->id + 14, run->step);
	snprintf(dir, sizeof(dir), "%s/%s", state_dir, id);
	snprintf(console, sizeof(console), "%s/console.log", dir);
	snprintf(upper, sizeof(upper), "%s/upper", dir);
	jail__kill_by_id(state_dir, NULL, id); /* a leftover of an interrupted attempt */
	if (build__env(run, home, extra_env, envp, JAIL_ENV_MAX)) {
		snprintf(run->reason, sizeof(run->reason), "too many environment variables");
		goto out;
	}
	struct jail_config config = {
	    .id = id,
	    .rootfs = run->rootfs,
	    .netns_path = netns,
	    .state_dir = state_dir,
	    .memory_max_bytes = (uint64_t)(run->row->memory_mb < 512 ? 512 : run->row->memory_mb)
				<< 20,
	    .cpu_millicores = (uint32_t)run->row->cpu_count * 1000,
	    .pids_max = 4096,
	    .disk_max_bytes = 0,
	    .argv = argv,
	    .envp = (const char *const *)envp,
	};
	jail = jail__start(&config, err, sizeof(err));
	if (!jail) {
		snprintf(run->reason, sizeof(run->reason),
			 "step %s: the build jail did not start: %s", run->step, err);
		goto out;
	}
	while (jail__wait(jail, 300) == -ETIMEDOUT) {
		build__pump_console(run, console, &offset, false);
		if ((int64_t)(clock__monotonic_ms() - started) > timeout_ms) {
			snprintf(run->reason, sizeof(run->reason),
				 "step %s: timed out after %lld s", run->step,
				 (long long)(timeout_ms / 1000));
			goto out;
		}
		if (atomic_load(&run->worker->stopping)) {
			snprintf(run->reason, sizeof(run->reason), "the worker is stopping");
			run->interrupted = true;
			goto out;
		}
	}
	build__pump_console(run, console, &offset, true);
	jail__state(jail, &status);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		snprintf(run->reason, sizeof(run->reason),
			 "step %s: the command exited with code %d", run->step,
			 WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
		goto out;
	}
	if (build__merge_upper(upper, run->rootfs, jail__host_uid(jail), err, sizeof(err))) {
		snprintf(run->reason, sizeof(run->reason), "step %s: %s", run->step, err);
		goto out;
	}
	ret = 0;
out:
	if (jail)
		jail__destroy(jail);
	free_env(envp);
	return ret;
}

/* RUN cmd [user] */
static int build__run(struct build_run *run, const char *netns, const struct template_step *s)
{
	static const char script[] =
	    "mkdir -p \"$WARREN_BUILD_WORKDIR\" 2>/dev/null; cd \"$WARREN_BUILD_WORKDIR\" || exit "
	    "1\n"
	    "if [ \"$WARREN_BUILD_UID\" = 0 ]; then exec /bin/sh -c \"$WARREN_BUILD_CMD\"; fi\n"
	    "if setpriv --help 2>&1 | grep -q reuid; then\n"
	    "  exec setpriv --reuid=\"$WARREN_BUILD_UID\" --regid=\"$WARREN_BUILD_GID\" "
	    "--clear-groups /bin/sh -c \"$WARREN_BUILD_CMD\"\n"
	    "fi\n" /* busybox's setpriv cannot: its su can */
	    "exec su -s /bin/sh \"$WARREN_BUILD_USER\" -c \"$WARREN_BUILD_CMD\"\n";
	const char *user = s->arg_count > 1 && s->args[1][0] ? s->args[1] : run->user;
	unsigned uid, gid;
	char home[512], e_uid[48], e_gid[48], e_wd[1100], e_user[64], *e_cmd = NULL;
	int ret;

	if (build__lookup_user_or_root(run->rootfs, user, &uid, &gid, home, sizeof(home))) {
		snprintf(run->reason, sizeof(run->reason), "step %s: no user '%s' in the template",
			 run->step, user);
		return -1;
	}
	snprintf(e_uid, sizeof(e_uid), "WARREN_BUILD_UID=%u", uid);
	snprintf(e_gid, sizeof(e_gid), "WARREN_BUILD_GID=%u", gid);
	snprintf(e_wd, sizeof(e_wd), "WARREN_BUILD_WORKDIR=%s", run->workdir);
	snprintf(e_user, sizeof(e_user), "WARREN_BUILD_USER=%s", user);
	if (asprintf(&e_cmd, "WARREN_BUILD_CMD=%s", s->args[0]) < 0)
		return -1;
	const char *extra[] = {e_uid, e_gid, e_wd, e_user, e_cmd, NULL};
	ret = build__jail_step(run, netns, script, home, extra);
	free(e_cmd);
	return ret;
}

/* Puts the uploaded archive at <rootfs>/.warren-copy/files.tar (a dir we
 * make fresh; nothing in the tree is followed). 0 or -1. */
static int build__stage_upload(struct build_run *run, const char *hash, bool *gzip)
{
	char stage[PATH_MAX * 3], source[PATH_MAX * 3], buffer[65536];
	const char *argv[] = {"rm", "-rf", "--one-file-system", stage, NULL};
	int in = -1, out = -1, ret = -1;
	ssize_t n;

	snprintf(stage, sizeof(stage), "%s/.warren-copy", run->rootfs);
	snprintf(source, sizeof(source), "%s/%s/%s.tar",
		 config__get("template_uploads_dir", "/var/lib/warren/template-uploads"),
		 run->row->team_id, hash);
	if (build__spawn_wait(argv) || mkdir(stage, 0700))
		goto out;
	in = open(source, O_RDONLY | O_CLOEXEC);
	out = open_in_root(run->rootfs, "/.warren-copy/files.tar",
			   O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW);
	if (in < 0 || out < 0)
		goto out;
	*gzip = false;
	for (bool first = true; (n = read(in, buffer, sizeof(buffer))) > 0; first = false) {
		if (first && n >= 2 && (unsigned char)buffer[0] == 0x1f &&
		    (unsigned char)buffer[1] == 0x8b)
			*gzip = true;
		if (write(out, buffer, (size_t)n) != n)
			goto out;
	}
	ret = n < 0 ? -1 : 0;
out:
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	if (ret)
		snprintf(run->reason, sizeof(run->reason),
			 "step %s: the uploaded files (%s) could not be staged", run->step, hash);
	return ret;
}

/* COPY src dest [user] [mode]: the archive is unpacked in the jail's
 * /tmp and copied to dest there (Docker's COPY rules: a file to a dir
 * when dest ends with '/' or is a dir; a dir's contents into dest). */
static int build__copy(struct build_run *run, const char *netns, const struct template_step *s)
{
	static const char script[] =
	    "set -e\n"
	    "mkdir -p /tmp/.warren-copy && tar -x${WARREN_COPY_Z}f /.warren-copy/files.tar -C "
	    "/tmp/.warren-copy\n"
	    "mkdir -p \"$WARREN_BUILD_WORKDIR\"; cd \"$WARREN_BUILD_WORKDIR\"\n"
	    "dest=\"$WARREN_COPY_DEST\"; case \"$dest\" in /*) ;; *) dest=\"$PWD/$dest\";; esac\n"
	    "cd /tmp/.warren-copy; found=0\n"
	    "for m in $WARREN_COPY_SRC; do\n"
	    "  [ -e \"$m\" ] || [ -L \"$m\" ] || continue; found=1\n"
	    "  if [ -d \"$m\" ] && [ ! -L \"$m\" ]; then mkdir -p \"$dest\"; cp -a \"$m\"/. "
	    "\"$dest\"/; t=\"$dest\"\n"
	    "  else case \"$dest\" in */) mkdir -p \"$dest\"; t=\"$dest$(basename \"$m\")\";;\n"
	    "    *) if [ -d \"$dest\" ]; then t=\"$dest/$(basename \"$m\")\"; else mkdir -p "
	    "\"$(dirname \"$dest\")\"; t=\"$dest\"; fi;; esac\n"
	    "    cp -a \"$m\" \"$t\"; fi\n"
	    "  chown -R \"$WARREN_COPY_OWNER\" \"$t\"\n"
	    "  if [ -n \"$WARREN_COPY_MODE\" ]; then chmod -R \"$WARREN_COPY_MODE\" \"$t\"; fi\n"
	    "  echo \"copied $m -> $t\"\n"
	    "done\n"
	    "[ $found = 1 ] || { echo \"COPY: nothing matches $WARREN_COPY_SRC\" >&2; exit 1; }\n";
	const char *user = s->arg_count > 2 && s->args[2][0] ? s->args[2] : run->user;
	unsigned uid, gid;
	char home[512], e_wd[1100], e_src[1100], e_dest[1100], e_owner[64], e_mode[32], e_z[16];
	char stage[PATH_MAX * 3];
	const char *rm[] = {"rm", "-rf", "--one-file-system", stage, NULL};
	bool gzip = false;
	int ret;

	if (build__lookup_user_or_root(run->rootfs, user, &uid, &gid, home, sizeof(home))) {
		snprintf(run->reason, sizeof(run->reason), "step %s: no user '%s' in the template",
			 run->step, user);
		return -1;
	}
	if (build__stage_upload(run, s->files_hash, &gzip))
		return -1;
	snprintf(e_wd, sizeof(e_wd), "WARREN_BUILD_WORKDIR=%s", run->workdir);
	snprintf(e_src, sizeof(e_src), "WARREN_COPY_SRC=%s", s->args[0]);
	snprintf(e_dest, sizeof(e_dest), "WARREN_COPY_DEST=%s", s->args[1]);
	snprintf(e_owner, sizeof(e_owner), "WARREN_COPY_OWNER=%u:%u", uid, gid);
	snprintf(e_mode, sizeof(e_mode), "WARREN_COPY_MODE=%s", s->arg_count > 3 ? s->args[3] : "");
	snprintf(e_z, sizeof(e_z), "WARREN_COPY_Z=%s", gzip ? "z" : "");
	const char *extra[] = {e_wd, e_src, e_dest, e_owner, e_mode, e_z, NULL};
	ret = build__jail_step(run, netns, script, "/root", extra);
	snprintf(stage, sizeof(stage), "%s/.warren-copy", run->rootfs);
	if (build__spawn_wait(rm) && !ret) {
		snprintf(run->reason, sizeof(run->reason), "step %s: cleanup failed", run->step);
		ret = -1;
	}
	return ret;
}

/* One step; state steps only change run. */
static int build__step(struct build_run *run, const char *netns, const struct template_step *s)
{
	switch (s->kind) {
	case TEMPLATE_STEP_RUN:
		return build__run(run, netns, s);
	case TEMPLATE_STEP_COPY:
		return build__copy(run, netns, s);
	case TEMPLATE_STEP_ENV:
		if (json_object_size(run->envs) + s->arg_count / 2 > BUILD_ENV_MAX) {
			snprintf(run->reason, sizeof(run->reason), "step %s: more than %d env vars",
				 run->step, BUILD_ENV_MAX);
			return -1;
		}
		for (size_t i = 0; i + 1 < s->arg_count; i += 2)
			json_object_set_new(run->envs, s->args[i], json_string(s->args[i + 1]));
		return 0;
	case TEMPLATE_STEP_WORKDIR:
		if (s->args[0][0] == '/')
			snprintf(run->workdir, sizeof(run->workdir), "%s", s->args[0]);
		else
			snprintf(run->workdir, sizeof(run->workdir), "%s/%s",
				 strcmp(run->workdir, "/") ? run->workdir : "", s->args[0]);
		return 0;
	case TEMPLATE_STEP_USER:
		snprintf(run->user, sizeof(run->user), "%s", s->args[0]);
		return 0;
	}
	return -1;
}

/* A one-line description of a step for the log. */
static void step__describe(const struct template_step *s, char *out, size_t len)
{
	size_t used = (size_t)snprintf(out, len, "%s", template_step__name(s->kind));

	for (size_t i = 0; i < s->arg_count && used < len; i++)
		if (s->args[i][0])
			used += (size_t)snprintf(out + used, len - used, " %s", s->args[i]);
}

/* template.json of the result. 0 or -1. */
static int build__write_metadata(struct build_run *run, const struct template_info *base,
				 uint64_t size, uint64_t image_size)
{
	char path[PATH_MAX * 3], built_at[32], hash[TOKENS_SHA256_HEX_LEN + 1];
	json_t *spec = json_deep_copy(run->row->spec);
	char *spec_text;

	json_object_del(spec, "fromImageRegistry"); /* no credentials in the hash */
	spec_text = json_dumps(spec, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(spec);
	char *seed = NULL;
	json_t *meta;
	int ret = -1;

	if (!spec_text ||
	    asprintf(&seed, "%s %s %s", run->row->id, base->content_hash, spec_text) < 0)
		goto out;
	tokens__sha256_hex(seed, strlen(seed), hash);
	clock__format_rfc3339(clock__realtime_ms(), built_at);
	meta =
	    json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:i, s:i, s:s, s:s, s:O, s:s, s:s}", "name",
		      run->row->template_id, "agent_version", base->agent_version, "content_hash",
		      hash, "built_at", built_at, "size", (json_int_t)size, "image_size",
		      (json_int_t)image_size, "cpu_count", run->row->cpu_count, "memory_mb",
		      run->row->memory_mb, "base", base->name, "build_id", run->row->id, "envs",
		      run->envs, "user", run->user, "workdir", run->workdir);
	if (meta && run->plan->start_cmd)
		json_object_set_new(meta, "start_cmd", json_string(run->plan->start_cmd));
	if (meta && run->plan->ready_cmd)
		json_object_set_new(meta, "ready_cmd", json_string(run->plan->ready_cmd));
	snprintf(path, sizeof(path), "%s/template.json", run->work);
	ret = meta && !json_dump_file(meta, path, JSON_INDENT(2) | JSON_SORT_KEYS) ? 0 : -1;
	json_decref(meta);
out:
	free(seed);
	free(spec_text);
	return ret;
}

/* du -sb of a tree (bytes) via a pipe; 0 when unknown. */
static uint64_t tree_size(const char *dir)
{
	char cmd[PATH_MAX + 32], line[64] = "";
	FILE *p;

	snprintf(cmd, sizeof(cmd), "du -sb -- '%s' 2>/dev/null", dir);
	if (strchr(dir, '\'') || !(p = popen(cmd, "r")))
		return 0;
	if (!fgets(line, sizeof(line), p))
		line[0] = '\0';
	pclose(p);
	return strtoull(line, NULL, 10);
}

/* rootfs.ext4, template.json, the entry renamed into the cache and the
 * templates_dir/<name> link swapped to it, the `templates` row. */
static int build__install(struct build_run *run, const struct template_info *base)
{
	char image[PATH_MAX * 3], size_arg[32], final[PATH_MAX * 3], link_tmp[PATH_MAX * 3],
	    link[PATH_MAX * 3];
	struct storage_template row = {0};
	struct storage_error e;
	struct stat st;
	uint64_t size = tree_size(run->rootfs), image_size = 0;

	snprintf(run->step, sizeof(run->step), "finalize");
	snprintf(image, sizeof(image), "%s/rootfs.ext4", run->work);
	if (config__get_bool("template_build_image", true)) {
		snprintf(size_arg, sizeof(size_arg), "%lluk",
			 (unsigned long long)((size + size / 3) / 1024 + 65536));
		const char *mkfs[] = {"mkfs.ext4", "-q",	"-F",  "-E",	 "root_owner=0:0",
				      "-d",	   run->rootfs, image, size_arg, NULL};
		if (build__spawn_wait(mkfs)) {
			snprintf(run->reason, sizeof(run->reason), "mkfs.ext4 -d failed");
			return -1;
		}
		if (!stat(image, &st))
			image_size = (uint64_t)st.st_size;
	}
	if (build__write_metadata(run, base, size, image_size)) {
		snprintf(run->reason, sizeof(run->reason), "template.json could not be written");
		return -1;
	}
	snprintf(final, sizeof(final), "%s/%s-%.8s%.4s", templates__cache_dir(),
		 run->row->template_id, run->row->id, run->row->id + 9);
	snprintf(link, sizeof(link), "%s/%s", templates__dir(), run->row->template_id);
	snprintf(link_tmp, sizeof(link_tmp), "%s/.%s.%s", templates__dir(), run->row->template_id,
		 run->row->id);
	const char *rm_final[] = {"rm", "-rf", "--one-file-system", final, NULL};
	build__spawn_wait(rm_final); /* an interrupted earlier attempt */
	unlink(link_tmp);
	if (rename(run->work, final) || symlink(final, link_tmp) || rename(link_tmp, link)) {
		snprintf(run->reason, sizeof(run->reason), "installing into %s failed: %s",
			 templates__dir(), strerror(errno));
		return -1;
	}
	snprintf(run->work, sizeof(run->work), "%s", final);
	snprintf(row.id, sizeof(row.id), "%s", run->row->template_id);
	snprintf(row.agent_version, sizeof(row.agent_version), "%s", base->agent_version);
	snprintf(row.image_path, sizeof(row.image_path), "%s", final);
	{
		struct template_info mine;
		char err[256];

		if (templates__read(templates__dir(), run->row->template_id, &mine, err,
				    sizeof(err))) {
			snprintf(run->reason, sizeof(run->reason),
				 "the result does not read back: %s", err);
			return -1;
		}
		snprintf(row.content_hash, sizeof(row.content_hash), "%s", mine.content_hash);
	}
	if (storage__template_upsert(run->worker->storage, &row, &e)) {
		snprintf(run->reason, sizeof(run->reason), "registering failed: %s", e.message);
		return -1;
	}
	build__log(run, "info", "template %s installed at %s (%llu MB tree, %llu MB image)",
		   run->row->template_id, final, (unsigned long long)(size >> 20),
		   (unsigned long long)(image_size >> 20));
	return 0;
}

/* The defaults of a build: the base's own `user` and its home when it
 * has one (E2B's convention), else root and /. */
static void build__defaults(struct build_run *run, const struct template_info *base)
{
	unsigned uid, gid;
	char home[512];

	if (!build__lookup_user(base->rootfs, "user", &uid, &gid, home, sizeof(home))) {
		snprintf(run->user, sizeof(run->user), "user");
		snprintf(run->workdir, sizeof(run->workdir), "%s", home);
	} else {
		snprintf(run->user, sizeof(run->user), "root");
		snprintf(run->workdir, sizeof(run->workdir), "/");
	}
}

/* An OCI image's own Env (PATH aside: steps and sandboxes get ours),
 * WorkingDir and User (when the tree knows that user) become the build's
 * defaults, as the image's ENV/WORKDIR/USER would. Values that are not
 * usable are skipped with a warning in the log. */
static void build__image_config(struct build_run *run, const struct template_info *base)
{
	char path[PATH_MAX + 32], user[64], home[512];
	json_t *config, *value;
	const char *text;
	unsigned uid, gid;
	size_t i;

	snprintf(path, sizeof(path), "%.4000s/image-config.json", base->dir);
	config = json_load_file(path, 0, NULL);
	json_array_foreach(json_object_get(config, "Env"), i, value)
	{
		const char *pair = json_string_value(value), *eq = pair ? strchr(pair, '=') : NULL;
		char name[129];

		if (!eq || eq - pair > 128)
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)(eq - pair), pair);
		if (!template_step__env_name_valid(name) || !strcmp(name, "PATH") ||
		    strchr(eq + 1, '\n') || json_object_size(run->envs) >= BUILD_ENV_MAX) {
			build__log(run, "warn", "image ENV %.128s: not used", name);
			continue;
		}
		json_object_set_new(run->envs, name, json_string(eq + 1));
	}
	text = json_string_value(json_object_get(config, "WorkingDir"));
	if (text && text[0] == '/' && strlen(text) < sizeof(run->workdir) && !strchr(text, '\n'))
		snprintf(run->workdir, sizeof(run->workdir), "%s", text);
	text = json_string_value(json_object_get(config, "User"));
	if (text && text[0]) {
		snprintf(user, sizeof(user), "%.*s", (int)strcspn(text, ":"), text);
		if (template_step__user_valid(user) &&
		    !build__lookup_user_or_root(base->rootfs, user, &uid, &gid, home, sizeof(home)))
			snprintf(run->user, sizeof(run->user), "%s", user);
		else
			build__log(run, "warn", "image USER %.64s: not in the image, not used",
				   text);
	}
	build__log(run, "info", "image config: USER %s, WORKDIR %s, %zu ENV", run->user,
		   run->workdir, json_object_size(run->envs));
	json_decref(config);
}

/* The start of the new tree: a hard-link copy (same filesystem; else a
 * copy) of source (the base's rootfs or a cached layer's). */
static int build__prepare(struct build_run *run, const char *source)
{
	const char *rm[] = {"rm", "-rf", "--one-file-system", run->work, NULL};
	const char *link_copy[] = {"cp", "-al", source, run->rootfs, NULL};
	const char *copy[] = {"cp", "-a", source, run->rootfs, NULL};

	build__spawn_wait(rm);
	if (mkdir(run->work, 0755) && errno != EEXIST)
		return -1;
	if (build__spawn_wait(link_copy)) {
		build__spawn_wait(rm);
		if (mkdir(run->work, 0755) || build__spawn_wait(copy))
			return -1;
	}
	return 0;
}

/* ---- the layer cache ----
 * A RUN or COPY step's result tree is kept as a hard-link snapshot under
 * <template_cache_dir>/layers/<key>/rootfs, key = sha256 of (the parent's
 * key, the step as posted, the files' hash, the USER/WORKDIR/ENV it runs
 * with); the chain starts at the base template's content hash. A build
 * starts from the last step of its unbroken cached prefix. Snapshots are
 * never written: merges replace files by new inodes. */

static bool build__layer_cache_on(void)
{
	return config__get_bool("template_layer_cache", true);
}

static void layer__path(const char *key, char *out, size_t len)
{
	snprintf(out, len, "%s/layers/%s/rootfs", templates__cache_dir(), key);
}

/* keys[i] for every step (state steps carry their parent's key forward
 * with their effect folded into the next key). run's user/workdir/envs
 * are the build's defaults; they are left as they were. */
static void build__layer_keys(struct build_run *run, const struct template_info *base,
			      char (*keys)[TOKENS_SHA256_HEX_LEN + 1])
{
	char user[sizeof(run->user)], workdir[sizeof(run->workdir)],
	    parent[TOKENS_SHA256_HEX_LEN + 1];
	json_t *envs = json_deep_copy(run->envs);

	memcpy(user, run->user, sizeof(user));
	memcpy(workdir, run->workdir, sizeof(workdir));
	snprintf(parent, sizeof(parent), "%s", base->content_hash);
	for (size_t i = 0; i < run->plan->step_count; i++) {
		const struct template_step *step = &run->plan->steps[i];
		json_t *args = json_array();
		char *envs_text, *args_text, *seed = NULL;

		if (step->kind != TEMPLATE_STEP_RUN && step->kind != TEMPLATE_STEP_COPY) {
			build__step(run, NULL, step); /* only changes the state */
			snprintf(keys[i], TOKENS_SHA256_HEX_LEN + 1, "%s", parent);
			json_decref(args);
			continue;
		}
		for (size_t a = 0; a < step->arg_count; a++)
			json_array_append_new(args, json_string(step->args[a]));
		envs_text = json_dumps(run->envs, JSON_COMPACT | JSON_SORT_KEYS);
		args_text = json_dumps(args, JSON_COMPACT);
		if (asprintf(&seed, "warren-layer-v1\n%s\n%s\n%s\n%s\n%s\n%s\n%s", parent,
			     template_step__name(step->kind), args_text ? args_text : "",
			     step->files_hash ? step->files_hash : "", run->user, run->workdir,
			     envs_text ? envs_text : "") >= 0)
			tokens__sha256_hex(seed, strlen(seed), keys[i]);
		snprintf(parent, sizeof(parent), "%s", keys[i]);
		free(seed);
		free(envs_text);
		free(args_text);
		json_decref(args);
	}
	memcpy(run->user, user, sizeof(user));
	memcpy(run->workdir, workdir, sizeof(workdir));
	json_decref(run->envs);
	run->envs = envs;
}

/* The folder of path (into out). */
static const char *dirname_of(const char *path, char *out, size_t len)
{
	const char *slash = strrchr(path, '/');

	snprintf(out, len, "%.*s", slash ? (int)(slash - path) : 0, path);
	return out;
}

/* The index of the last RUN/COPY step of the cached prefix, or -1. */
static long build__cached_prefix(const struct build_run *run,
				 char (*keys)[TOKENS_SHA256_HEX_LEN + 1])
{
	char path[PATH_MAX * 3];
	long last = -1;

	if (!build__layer_cache_on() || run->plan->force)
		return -1;
	for (size_t i = 0; i < run->plan->step_count; i++) {
		const struct template_step *step = &run->plan->steps[i];

		if (step->force)
			break;
		if (step->kind != TEMPLATE_STEP_RUN && step->kind != TEMPLATE_STEP_COPY)
			continue;
		layer__path(keys[i], path, sizeof(path));
		if (access(path, F_OK))
			break;
		last = (long)i;
	}
	return last;
}

/* Snapshots the tree as layer key (best effort: a failure only costs a
 * later cache miss). */
static void build__save_layer(struct build_run *run, const char *key)
{
	char dir[PATH_MAX * 3], tmp[PATH_MAX * 3], final[PATH_MAX * 3];
	const char *cp[] = {"cp", "-al", run->rootfs, tmp, NULL};
	const char *rm[] = {"rm", "-rf", "--one-file-system", dir, NULL};

	if (!build__layer_cache_on())
		return;
	snprintf(final, sizeof(final), "%s/layers/%s", templates__cache_dir(), key);
	snprintf(dir, sizeof(dir), "%s/layers/.%s.%s", templates__cache_dir(), key, run->row->id);
	snprintf(tmp, sizeof(tmp), "%s/rootfs", dir);
	if (!access(final, F_OK))
		return;
	build__spawn_wait(rm);
	snprintf(final, sizeof(final), "%s/layers", templates__cache_dir());
	mkdir(final, 0700);
	snprintf(final, sizeof(final), "%s/layers/%s", templates__cache_dir(), key);
	if (mkdir(dir, 0755) || build__spawn_wait(cp) || rename(dir, final))
		build__spawn_wait(rm);
}

int build__execute(struct build_run *run)
{
	const struct template_plan *plan = run->plan;
	struct template_info base;
	struct net_policy *policy = NULL;
	struct net_slot_info slot = {0};
	char err[512], what[1024], source[PATH_MAX * 3];
	char(*keys)[TOKENS_SHA256_HEX_LEN + 1] = NULL;
	int slot_index = -1, ret = -1;
	long cached = -1;
	uint64_t started = clock__monotonic_ms();

	snprintf(run->step, sizeof(run->step), "base");
	if (plan->oci) {
		build__log(run, "info", "FROM %s (OCI image)", plan->from_image);
		if (build__oci_base(run, &base))
			return -1;
	} else if (templates__read(templates__dir(), plan->base, &base, err, sizeof(err))) {
		snprintf(run->reason, sizeof(run->reason),
			 "base template '%s' is not installed: %s", plan->base, err);
		return -1;
	} else {
		build__log(run, "info", "FROM %s%s%s (template %s)",
			   plan->from_image ? plan->from_image : plan->base,
			   plan->from_image ? " -> " : "", plan->from_image ? plan->base : "",
			   base.dir);
	}
	build__defaults(run, &base);
	if (plan->oci)
		build__image_config(run, &base);
	keys = calloc(plan->step_count + 1, sizeof(*keys));
	if (!keys) {
		snprintf(run->reason, sizeof(run->reason), "out of memory");
		return -1;
	}
	build__layer_keys(run, &base, keys);
	cached = build__cached_prefix(run, keys);
	snprintf(source, sizeof(source), "%s", base.rootfs);
	if (cached >= 0) {
		layer__path(keys[cached], source, sizeof(source));
		utimensat(AT_FDCWD, dirname_of(source, what, sizeof(what)), NULL, 0);
	} /* used: `warren template prune` keeps it */
	snprintf(run->work, sizeof(run->work), "%s/.build-%s", templates__cache_dir(),
		 run->row->id);
	snprintf(run->rootfs, sizeof(run->rootfs), "%s/rootfs", run->work);
	if (build__prepare(run, source)) {
		snprintf(run->reason, sizeof(run->reason), "cannot copy %s into %s", source,
			 run->work);
		goto out;
	}
	if (!run->worker->net) {
		snprintf(run->reason, sizeof(run->reason), "this worker has no network slots");
		goto out;
	}
	policy = net_policy__default(2500);
	slot_index =
	    policy ? net_pool__acquire(run->worker->net, NET_RUNTIME_JAIL, policy, &slot) : -1;
	if (slot_index < 0) {
		snprintf(run->reason, sizeof(run->reason), "no network slot for the build");
		goto out;
	}
	for (size_t i = 0; i < plan->step_count; i++) {
		const struct template_step *step = &plan->steps[i];
		bool tree_step =
		    step->kind == TEMPLATE_STEP_RUN || step->kind == TEMPLATE_STEP_COPY;

		snprintf(run->step, sizeof(run->step), "%zu", i + 1);
		step__describe(step, what, sizeof(what));
		if ((long)i <= cached && tree_step) {
			build__log(run, "info", "CACHED [%zu/%zu] %s", i + 1, plan->step_count,
				   what);
			continue;
		}
		build__log(run, "info", "[%zu/%zu] %s", i + 1, plan->step_count, what);
		if (build__step(run, slot.netns_path, step))
			goto out;
		if (tree_step)
			build__save_layer(run, keys[i]);
	}
	if (build__install(run, &base))
		goto out;
	snprintf(run->step, sizeof(run->step), "finalize");
	build__log(run, "info", "build finished in %.1f s",
		   (double)(clock__monotonic_ms() - started) / 1000.0);
	ret = 0;
out:
	if (slot_index >= 0)
		net_pool__release(run->worker->net, slot_index);
	net_policy__free(policy);
	free(keys);
	if (ret) {
		const char *rm[] = {"rm", "-rf", "--one-file-system", run->work, NULL};

		build__spawn_wait(rm);
	}
	return ret;
}

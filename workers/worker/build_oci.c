/* build_oci: the base of a `fromImage` build pulled from an OCI registry
 * (build.h, docs/templates.md). skopeo copies docker://<ref> into an OCI
 * layout (credentials through a 0600 authfile, never argv or logs), umoci
 * unpacks it, the agent is added under /usr/local/lib/warren-agent, and
 * the tree is kept as <template_cache_dir>/oci/<manifest digest>/rootfs:
 * the next build of the same image only pulls the manifest's blobs again
 * and finds the tree by digest. The image's files are hostile: nothing is
 * followed through a symlink of the tree from the host. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "build.h"
#include "warren/clock.h"
#include "warren/config.h"
#include "warren/templates.h"
#include "warren/tokens.h"
#include "worker.h"

extern char **environ;

#define OCI_OUTPUT_MAX 4096

/* Removes the image's device nodes, then adds the agent of the `minimal`
 * template ($1: its rootfs) to the tree
 * $2, with its libraries and a static busybox ($3) in a folder of its own
 * so the image's libc is never replaced; /usr/local/bin/warren-agent
 * becomes a launcher through that folder's loader. Symlinks or files on
 * the way are removed first (the tree is the image's). */
static const char inject_script[] =
    "set -eu\n"
    "src=$1 dst=$2 bb=$3\n"
    /* no device nodes of the image's choosing (its /dev is the runtime's) */
    "find \"$dst\" -xdev \\( -type b -o -type c \\) -exec rm -f {} +\n"
    "for p in usr usr/local usr/local/bin usr/local/lib; do\n"
    "  if [ -L \"$dst/$p\" ] || { [ -e \"$dst/$p\" ] && [ ! -d \"$dst/$p\" ]; }; then\n"
    "    rm -f \"$dst/$p\"; fi\n"
    "  mkdir -p \"$dst/$p\"\n"
    "done\n"
    "d=\"$dst/usr/local/lib/warren-agent\"\n"
    "rm -rf \"$d\" \"$dst/usr/local/bin/warren-agent\"\n"
    "mkdir \"$d\"\n"
    "cp \"$src/usr/local/bin/warren-agent\" \"$d/warren-agent.bin\"\n"
    "cp \"$bb\" \"$d/busybox\"\n"
    "loader=\n"
    "for lib in $(ldd \"$src/usr/local/bin/warren-agent\" 2>/dev/null |\n"
    "    awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\\//) print $i }'); do\n"
    "  if [ -e \"$src$lib\" ]; then cp -L \"$src$lib\" \"$d/\"; else cp -L \"$lib\" \"$d/\"; fi\n"
    "  case \"$lib\" in */ld-linux*) loader=${lib##*/} ;; esac\n"
    "done\n"
    "l=/usr/local/lib/warren-agent\n"
    "if [ -n \"$loader\" ]; then\n"
    "  run=\"$l/$loader --library-path $l $l/warren-agent.bin\"\n"
    "else run=\"$l/warren-agent.bin\"; fi\n"
    "printf '#!%s/busybox sh\\nexec %s \"$@\"\\n' \"$l\" \"$run\" > "
    "\"$dst/usr/local/bin/warren-agent\"\n"
    "chmod 0755 \"$d\"/* \"$dst/usr/local/bin/warren-agent\"\n";

/* Runs argv with stdout+stderr captured into out (the last
 * OCI_OUTPUT_MAX bytes), killed after timeout_ms or when the worker
 * stops (run->interrupted set: the build is left for a retry). The exit
 * status (0..255), or -1 when it could not run or was killed. */
static int oci__run(struct build_run *run, const char *const *argv, uint64_t timeout_ms, char *out,
		    size_t out_len)
{
	posix_spawn_file_actions_t actions;
	uint64_t deadline = clock__monotonic_ms() + timeout_ms;
	int pipefd[2], status = 0, ret = -1;
	size_t used = 0;
	pid_t pid;

	out[0] = '\0';
	if (pipe2(pipefd, O_CLOEXEC))
		return -1;
	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_adddup2(&actions, pipefd[1], 1);
	posix_spawn_file_actions_adddup2(&actions, pipefd[1], 2);
	posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
	if (posix_spawnp(&pid, argv[0], &actions, NULL, (char *const *)argv, environ)) {
		posix_spawn_file_actions_destroy(&actions);
		close(pipefd[0]);
		close(pipefd[1]);
		return -1;
	}
	posix_spawn_file_actions_destroy(&actions);
	close(pipefd[1]);
	for (;;) {
		struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
		char chunk[1024];
		uint64_t now = clock__monotonic_ms();
		ssize_t n;

		if (atomic_load(&run->worker->stopping))
			run->interrupted = true;
		if (now >= deadline || run->interrupted) {
			kill(pid, SIGKILL);
			break;
		}
		if (poll(&pfd, 1, (int)(deadline - now > 200 ? 200 : deadline - now)) <= 0)
			continue;
		n = read(pipefd[0], chunk, sizeof(chunk));
		if (n <= 0)
			break;
		if (used + (size_t)n >= out_len) { /* keep the tail */
			size_t drop = used + (size_t)n - (out_len - 1);

			drop = drop > used ? used : drop;
			memmove(out, out + drop, used - drop);
			used -= drop;
		}
		n = (ssize_t)((size_t)n > out_len - 1 - used ? out_len - 1 - used : (size_t)n);
		memcpy(out + used, chunk, (size_t)n);
		used += (size_t)n;
		out[used] = '\0';
	}
	close(pipefd[0]);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (WIFEXITED(status))
		ret = WEXITSTATUS(status);
	return ret;
}

/* The registry host of an image reference: the first component when it
 * has a '.' or ':' or is "localhost", else docker.io. */
static void oci__registry_of(const char *ref, char *out, size_t len)
{
	const char *slash = strchr(ref, '/');
	size_t n = slash ? (size_t)(slash - ref) : 0;

	if (slash && (memchr(ref, '.', n) || memchr(ref, ':', n) || !strncmp(ref, "localhost", n)))
		snprintf(out, len, "%.*s", (int)n, ref);
	else
		snprintf(out, len, "docker.io");
}

/* True when registry is listed in template_registry_insecure. */
static bool oci__insecure(const char *registry)
{
	const char *list = config__get("template_registry_insecure", "");
	size_t n = strlen(registry);

	for (const char *p = list; p && *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		while (len && *p == ' ')
			p++, len--;
		while (len && p[len - 1] == ' ')
			len--;
		if (len == n && !strncmp(p, registry, n))
			return true;
		p = end ? end + 1 : NULL;
	}
	return false;
}

static void base64_encode(const unsigned char *in, size_t len, char *out)
{
	static const char abc[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;

	for (size_t i = 0; i < len; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (i + 1 < len ? (unsigned)in[i + 1] << 8 : 0) |
			     (i + 2 < len ? in[i + 2] : 0);

		out[o++] = abc[(v >> 18) & 63];
		out[o++] = abc[(v >> 12) & 63];
		out[o++] = i + 1 < len ? abc[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < len ? abc[v & 63] : '=';
	}
	out[o] = '\0';
}

/* Writes the containers-auth.json for registry with the plan's
 * credentials at path, mode 0600. 0 or -1. */
static int oci__write_authfile(const struct template_plan *plan, const char *registry,
			       const char *path)
{
	size_t ulen = strlen(plan->registry_username), plen = strlen(plan->registry_password);
	char *pair = malloc(ulen + plen + 2), *b64 = malloc((ulen + plen + 4) / 3 * 4 + 8);
	json_t *doc = NULL;
	int fd = -1, ret = -1;
	char *text = NULL;

	if (!pair || !b64)
		goto out;
	snprintf(pair, ulen + plen + 2, "%s:%s", plan->registry_username, plan->registry_password);
	base64_encode((const unsigned char *)pair, ulen + plen + 1, b64);
	doc = json_pack("{s:{s:{s:s}}}", "auths", registry, "auth", b64);
	text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (text && fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text))
		ret = 0;
out:
	if (fd >= 0)
		close(fd);
	if (pair)
		explicit_bzero(pair, ulen + plen + 2);
	if (b64)
		explicit_bzero(b64, strlen(b64));
	if (text)
		explicit_bzero(text, strlen(text));
	free(pair);
	free(b64);
	free(text);
	json_decref(doc);
	return ret;
}

/* The last non-empty line of a tool's output, for the reason. */
static const char *oci__last_line(char *output)
{
	size_t len = strlen(output);
	char *line;

	while (len && (output[len - 1] == '\n' || output[len - 1] == '\r'))
		output[--len] = '\0';
	line = strrchr(output, '\n');
	line = line ? line + 1 : output;
	/* skopeo's logrus line: time="..." level=fatal msg="<the reason>" */
	char *msg = strstr(line, "msg=\"");
	if (msg) {
		len = strlen(msg + 5);
		if (len && msg[5 + len - 1] == '"')
			msg[5 + len - 1] = '\0';
		line = msg + 5;
	}
	return line;
}

/* skopeo copy docker://ref oci:<layout>:img. 0, or -1 with the reason. */
static int oci__pull(struct build_run *run, const char *pull_dir, uint64_t timeout_ms)
{
	const struct template_plan *plan = run->plan;
	char registry[256], authfile[PATH_MAX + 16], src[600], dst[PATH_MAX + 32];
	char output[OCI_OUTPUT_MAX];
	const char *argv[12];
	size_t n = 0;
	int rc;

	oci__registry_of(plan->from_image, registry, sizeof(registry));
	snprintf(authfile, sizeof(authfile), "%s/auth.json", pull_dir);
	snprintf(src, sizeof(src), "docker://%s", plan->from_image);
	snprintf(dst, sizeof(dst), "oci:%s/layout:img", pull_dir);
	argv[n++] = "skopeo";
	argv[n++] = "--insecure-policy"; /* no signature policy: the build pins what it pulls */
	argv[n++] = "copy";
	argv[n++] = "--quiet";
	if (plan->registry_username) {
		if (oci__write_authfile(plan, registry, authfile)) {
			snprintf(run->reason, sizeof(run->reason),
				 "the registry credentials could not be staged");
			return -1;
		}
		argv[n++] = "--src-authfile";
		argv[n++] = authfile;
	} else {
		argv[n++] = "--src-no-creds";
	}
	if (oci__insecure(registry))
		argv[n++] = "--src-tls-verify=false";
	argv[n++] = src;
	argv[n++] = dst;
	argv[n] = NULL;
	build__log(run, "info", "pulling %s from %s%s", plan->from_image, registry,
		   oci__insecure(registry) ? " (insecure: TLS not verified)" : "");
	rc = oci__run(run, argv, timeout_ms, output, sizeof(output));
	unlink(authfile);
	if (rc) {
		const char *why = oci__last_line(output);

		build__log(run, "error", "skopeo: %s", why);
		snprintf(run->reason, sizeof(run->reason), "pulling image '%.200s' failed: %.600s",
			 plan->from_image,
			 rc < 0 ? "skopeo did not finish (timeout or not installed)" : why);
		return -1;
	}
	return 0;
}

/* The host's blob store, <template_cache_dir>/oci/blobs/sha256: blobs
 * are content-addressed and never written in place (skopeo writes a temp
 * file and renames it after checking its digest), so hard links share
 * them. Before a pull (back=false) the store is linked into the build's
 * layout, where skopeo finds what it already has and does not download
 * it; after (back=true) the new blobs are linked into the store. Best
 * effort: a failure only costs a download. */
static void oci__blobs_share(const char *pull_dir, bool back)
{
	char store[PATH_MAX], mine[PATH_MAX + 32];

	snprintf(store, sizeof(store), "%s/oci/blobs/sha256", templates__cache_dir());
	snprintf(mine, sizeof(mine), "%s/layout/blobs/sha256", pull_dir);
	const char *mkdir_p[] = {"mkdir", "-p", back ? store : mine, NULL};
	const char *link[] = {"sh",
			      "-c",
			      "cp -aln -- \"$1\"/. \"$2\"/ 2>/dev/null",
			      "oci-blobs",
			      back ? mine : store,
			      back ? store : mine,
			      NULL};

	if (build__spawn_wait(mkdir_p) || access(back ? mine : store, F_OK))
		return;
	build__spawn_wait(link);
	if (back) { /* used: `warren template prune` keeps the store */
		snprintf(store, sizeof(store), "%s/oci/blobs", templates__cache_dir());
		utimensat(AT_FDCWD, store, NULL, 0);
	}
}

/* The manifest digest's hex (64) of the pulled layout. 0 or -1. */
static int oci__digest(const char *pull_dir, char *hex, size_t len)
{
	char path[PATH_MAX + 32];
	json_t *index, *manifests;
	const char *digest;
	int ret = -1;

	snprintf(path, sizeof(path), "%s/layout/index.json", pull_dir);
	index = json_load_file(path, 0, NULL);
	manifests = json_object_get(index, "manifests");
	digest = json_string_value(json_object_get(json_array_get(manifests, 0), "digest"));
	if (digest && !strncmp(digest, "sha256:", 7) && strlen(digest) == 71 &&
	    strspn(digest + 7, "0123456789abcdef") == 64) {
		snprintf(hex, len, "%s", digest + 7);
		ret = 0;
	}
	json_decref(index);
	return ret;
}

/* A blob of the layout as JSON (digest "sha256:<hex>"), or NULL. */
static json_t *oci__blob(const char *pull_dir, const char *digest)
{
	char path[PATH_MAX + 128];

	if (!digest || strncmp(digest, "sha256:", 7) || strlen(digest) != 71 ||
	    strspn(digest + 7, "0123456789abcdef") != 64)
		return NULL;
	snprintf(path, sizeof(path), "%s/layout/blobs/sha256/%s", pull_dir, digest + 7);
	return json_load_file(path, 0, NULL);
}

/* The image config's "config" object (Env, WorkingDir, User, ...) saved
 * as <entry>/image-config.json ({} when the image has none). 0 or -1. */
static int oci__save_config(const char *pull_dir, const char *entry)
{
	char path[PATH_MAX + 128], digest[72];
	json_t *manifest, *config = NULL;
	int ret = -1;

	if (oci__digest(pull_dir, digest + 7, sizeof(digest) - 7))
		return -1;
	memcpy(digest, "sha256:", 7);
	manifest = oci__blob(pull_dir, digest);
	config = oci__blob(pull_dir, json_string_value(json_object_get(
					 json_object_get(manifest, "config"), "digest")));
	if (config) {
		json_t *inner = json_object_get(config, "config"), *empty = json_object();

		snprintf(path, sizeof(path), "%s/image-config.json", entry);
		ret = json_dump_file(json_is_object(inner) ? inner : empty, path, JSON_COMPACT) ? -1
												: 0;
		json_decref(empty);
	}
	json_decref(manifest);
	json_decref(config);
	return ret;
}

/* umoci raw unpack + the agent, into <oci>/.unpack-<build>, renamed to
 * entry. 0, or -1 with the reason. */
static int oci__unpack(struct build_run *run, const char *pull_dir, const char *entry,
		       const struct template_info *minimal, uint64_t timeout_ms)
{
	char tmp[PATH_MAX + 64], rootfs[PATH_MAX + 80], image[PATH_MAX + 32];
	char output[OCI_OUTPUT_MAX];
	const char *rm[] = {"rm", "-rf", "--one-file-system", tmp, NULL};
	int ret = -1;

	snprintf(tmp, sizeof(tmp), "%s/oci/.unpack-%s", templates__cache_dir(), run->row->id);
	snprintf(rootfs, sizeof(rootfs), "%s/rootfs", tmp);
	snprintf(image, sizeof(image), "%s/layout:img", pull_dir);
	build__spawn_wait(rm);
	if (mkdir(tmp, 0700))
		goto out;
	const char *unpack[] = {"umoci", "raw", "unpack", "--image", image, rootfs, NULL};
	if (oci__run(run, unpack, timeout_ms, output, sizeof(output))) {
		snprintf(run->reason, sizeof(run->reason),
			 "unpacking image '%.200s' failed: %.600s", run->plan->from_image,
			 oci__last_line(output));
		goto out;
	}
	chmod(rootfs, 0755);
	if (oci__save_config(pull_dir, tmp)) {
		snprintf(run->reason, sizeof(run->reason), "image '%.200s' has no readable config",
			 run->plan->from_image);
		goto out;
	}
	char bb[PATH_MAX + 16];

	snprintf(bb, sizeof(bb), "%.4000s/bin/busybox", minimal->rootfs); /* minimal's: static */
	const char *inject[] = {"sh",	"-c", inject_script, "warren-oci-inject", minimal->rootfs,
				rootfs, bb,   NULL};
	if (oci__run(run, inject, 120000, output, sizeof(output))) {
		snprintf(run->reason, sizeof(run->reason),
			 "adding the agent to image '%.200s' failed: %.600s", run->plan->from_image,
			 oci__last_line(output));
		goto out;
	}
	if (rename(tmp, entry) && errno != ENOTEMPTY && errno != EEXIST) {
		snprintf(run->reason, sizeof(run->reason), "keeping the image tree failed: %s",
			 strerror(errno));
		goto out;
	}
	ret = 0;
out:
	build__spawn_wait(rm); /* left only when another build renamed first */
	return ret;
}

int build__oci_base(struct build_run *run, struct template_info *base)
{
	uint64_t timeout_ms = (uint64_t)config__get_int("template_registry_timeout_s", 600) * 1000;
	char pull_dir[PATH_MAX], entry[PATH_MAX + 80], hex[65], err[256], seed[256];
	const char *rm[] = {"rm", "-rf", "--one-file-system", pull_dir, NULL};
	struct template_info minimal;
	int ret = -1;

	snprintf(run->step, sizeof(run->step), "base");
	if (templates__read(templates__dir(), "minimal", &minimal, err, sizeof(err))) {
		snprintf(run->reason, sizeof(run->reason),
			 "fromImage needs the 'minimal' template on the worker (its agent): %s",
			 err);
		return -1;
	}
	snprintf(entry, sizeof(entry), "%s/oci", templates__cache_dir());
	mkdir(templates__cache_dir(), 0755);
	mkdir(entry, 0700);
	snprintf(pull_dir, sizeof(pull_dir), "%s/oci/.pull-%s", templates__cache_dir(),
		 run->row->id);
	build__spawn_wait(rm);
	if (mkdir(pull_dir, 0700)) {
		snprintf(run->reason, sizeof(run->reason), "cannot make %.300s: %s", pull_dir,
			 strerror(errno));
		return -1;
	}
	oci__blobs_share(pull_dir, false);
	if (oci__pull(run, pull_dir, timeout_ms))
		goto out;
	oci__blobs_share(pull_dir, true);
	if (oci__digest(pull_dir, hex, sizeof(hex))) {
		snprintf(run->reason, sizeof(run->reason),
			 "the pulled image has no manifest digest");
		goto out;
	}
	/* the agent's template is part of the key: a new agent, a new tree */
	snprintf(seed, sizeof(seed), "warren-oci-v2 %s %s", hex, minimal.content_hash);
	memset(base, 0, sizeof(*base));
	tokens__sha256_hex(seed, strlen(seed), base->content_hash);
	snprintf(entry, sizeof(entry), "%s/oci/%s", templates__cache_dir(), base->content_hash);
	if (!access(entry, F_OK)) {
		build__log(run, "info", "image sha256:%s: its tree is cached", hex);
		utimensat(AT_FDCWD, entry, NULL, 0); /* used: prune keeps it */
	} else {
		build__log(run, "info", "image sha256:%s: unpacking", hex);
		if (oci__unpack(run, pull_dir, entry, &minimal, timeout_ms))
			goto out;
	}
	snprintf(base->name, sizeof(base->name), "oci");
	snprintf(base->agent_version, sizeof(base->agent_version), "%s", minimal.agent_version);
	if (strlen(entry) >= 4000) {
		snprintf(run->reason, sizeof(run->reason), "template_cache_dir is too long");
		goto out;
	}
	snprintf(base->dir, sizeof(base->dir), "%.4000s", entry);
	snprintf(base->rootfs, sizeof(base->rootfs), "%.4000s/rootfs", entry);
	ret = 0;
out:
	build__spawn_wait(rm);
	return ret;
}

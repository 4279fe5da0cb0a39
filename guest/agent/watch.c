/* watch: WatchDir over inotify, see watch.h. Messages are WatchDirResponse
 * in proto3 JSON: {"start":{}} first, then {"filesystem":{"name":<path
 * relative to the watched directory>,"type":"EVENT_TYPE_*"}} (fsnotify's
 * mapping as envd uses it: create/moved-to = CREATE, modify = WRITE,
 * delete = REMOVE, moved-from = RENAME, attrib = CHMOD), keepalives. */
#include "watch.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "paths.h"
#include "warren/log.h"

#define WATCH_MASK                                                                             \
	(IN_CREATE | IN_MOVED_TO | IN_MODIFY | IN_DELETE | IN_MOVED_FROM | IN_ATTRIB |          \
	 IN_DELETE_SELF | IN_ONLYDIR)

struct watched_directory {
	int wd;
	char *relative; /* "" for the root */
};

struct watch {
	int fd;
	bool recursive;
	char root[PATH_MAX];
	struct watched_directory *directories;
	size_t count, cap;
	struct agent_user user;
	bool start_sent, finished;
};

static const char *relative_of(struct watch *watch, int wd)
{
	size_t i;

	for (i = 0; i < watch->count; i++)
		if (watch->directories[i].wd == wd)
			return watch->directories[i].relative;
	return NULL;
}

/* Watches dir (relative to root) and, when recursive, everything below. */
/* Levels of relative below the watched root ("" = 0). */
static unsigned depth_of(const char *relative)
{
	unsigned depth = *relative ? 1 : 0;

	for (; *relative; relative++)
		depth += *relative == '/';
	return depth;
}

static int add_tree(struct watch *watch, const char *relative)
{
	char path[PATH_MAX], child[PATH_MAX];
	struct watched_directory *grown;
	struct dirent *dirent;
	DIR *handle;
	int wd;

	/* Bounded: larger or deeper trees are watched partially. The depth
	 * bound keeps this recursion's stack small whatever the tenant made
	 * (a tree thousands of levels deep would overflow the thread). */
	if (watch->count >= WATCH_MAX_DIRECTORIES || depth_of(relative) > WATCH_MAX_DEPTH)
		return 0;
	if (snprintf(path, sizeof(path), "%s%s%s", watch->root, *relative ? "/" : "", relative) >=
	    (int)sizeof(path))
		return ENAMETOOLONG;
	wd = inotify_add_watch(watch->fd, path, WATCH_MASK);
	if (wd < 0)
		return errno;
	if (!relative_of(watch, wd)) {
		if (watch->count == watch->cap) {
			size_t cap = watch->cap ? watch->cap * 2 : 16;
			grown = realloc(watch->directories, cap * sizeof(*grown));
			if (!grown)
				return ENOMEM;
			watch->directories = grown;
			watch->cap = cap;
		}
		watch->directories[watch->count].wd = wd;
		watch->directories[watch->count].relative = strdup(relative);
		if (!watch->directories[watch->count].relative)
			return ENOMEM;
		watch->count++;
	}
	if (!watch->recursive)
		return 0;
	handle = opendir(path);
	if (!handle)
		return 0;
	while ((dirent = readdir(handle))) {
		if (dirent->d_type != DT_DIR || strcmp(dirent->d_name, ".") == 0 ||
		    strcmp(dirent->d_name, "..") == 0)
			continue;
		if (snprintf(child, sizeof(child), "%s%s%s", relative, *relative ? "/" : "",
			     dirent->d_name) < (int)sizeof(child))
			add_tree(watch, child);
	}
	closedir(handle);
	return 0;
}

static const char *event_type(uint32_t mask)
{
	if (mask & (IN_CREATE | IN_MOVED_TO))
		return "EVENT_TYPE_CREATE";
	if (mask & IN_MODIFY)
		return "EVENT_TYPE_WRITE";
	if (mask & (IN_DELETE | IN_DELETE_SELF))
		return "EVENT_TYPE_REMOVE";
	if (mask & IN_MOVED_FROM)
		return "EVENT_TYPE_RENAME";
	if (mask & IN_ATTRIB)
		return "EVENT_TYPE_CHMOD";
	return NULL;
}

/* Reads the available inotify events into messages on out. */
static bool drain_events(struct watch *watch, struct stream_buffer *out)
{
	char buf[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));
	char name[PATH_MAX];
	const struct inotify_event *event;
	const char *relative, *type;
	json_t *message;
	char *text;
	ssize_t n;
	size_t off;

	n = read(watch->fd, buf, sizeof(buf));
	if (n <= 0)
		return n < 0 && (errno == EAGAIN || errno == EINTR);
	for (off = 0; off + sizeof(struct inotify_event) <= (size_t)n;
	     off += sizeof(struct inotify_event) + event->len) {
		event = (const struct inotify_event *)(buf + off);
		if (off + sizeof(*event) + event->len > (size_t)n)
			break;
		relative = relative_of(watch, event->wd);
		type = event_type(event->mask);
		if (!relative || !type)
			continue;
		if (event->len && event->name[0])
			snprintf(name, sizeof(name), "%s%s%s", relative, *relative ? "/" : "",
				 event->name);
		else
			snprintf(name, sizeof(name), "%s", relative);
		if (watch->recursive && (event->mask & (IN_CREATE | IN_MOVED_TO)) &&
		    (event->mask & IN_ISDIR))
			add_tree(watch, name);
		message = json_pack("{s:{s:s,s:s}}", "filesystem", "name", name, "type", type);
		text = json_dumps(message, JSON_COMPACT);
		json_decref(message);
		if (text)
			stream_buffer__append(out, 0, text, strlen(text));
		free(text);
		if (event->mask & IN_DELETE_SELF && relative[0] == '\0')
			watch->finished = true; /* the watched directory is gone */
	}
	return true;
}

/* stream_source.next: {"start":{}} first, then the events as they come
 * (waiting at most wait_ms), until the watched directory is gone. */
static enum stream_step watch_next(void *opaque, int wait_ms, struct stream_buffer *out)
{
	struct watch *watch = opaque;
	struct pollfd pfd = {.fd = watch->fd, .events = POLLIN};

	if (!watch->start_sent) {
		watch->start_sent = true;
		return stream_buffer__append(out, 0, "{\"start\":{}}", 12) ? STREAM_CONTINUE
									 : STREAM_FAILED;
	}
	if (!watch->finished && poll(&pfd, 1, wait_ms) > 0 && !drain_events(watch, out))
		watch->finished = true;
	return watch->finished ? STREAM_END : STREAM_CONTINUE;
}

static void watch_free(void *cls)
{
	struct watch *watch = cls;
	size_t i;

	if (watch->fd >= 0)
		close(watch->fd);
	for (i = 0; i < watch->count; i++)
		free(watch->directories[i].relative);
	free(watch->directories);
	free(watch);
}

bool watch__open(const json_t *request, const struct agent_user *user,
		 struct stream_source *source, struct rpc_error *err)
{
	const json_t *path = json_object_get(request, "path");
	struct watch *watch = calloc(1, sizeof(*watch));
	struct fs_identity saved;
	struct stat st;
	int error;

	if (!watch) {
		err->code = "resource_exhausted";
		snprintf(err->message, sizeof(err->message), "out of memory");
		return false;
	}
	watch->fd = -1;
	if (!json_is_string(path) ||
	    strlen(json_string_value(path)) != json_string_length(path) ||
	    !paths__resolve(json_string_value(path), user->home, watch->root, sizeof(watch->root))) {
		err->code = "invalid_argument";
		snprintf(err->message, sizeof(err->message), "path must be a non-empty path");
		goto fail;
	}
	watch->recursive = json_is_true(json_object_get(request, "recursive"));
	watch->user = *user;
	users__fs_enter(user, &saved);
	if (stat(watch->root, &st) < 0) {
		error = errno;
		users__fs_leave(&saved);
		err->code = error == ENOENT || error == ENOTDIR ? "not_found" : "permission_denied";
		snprintf(err->message, sizeof(err->message), "path '%.400s': %s", watch->root,
			 strerror(error));
		goto fail;
	}
	if (!S_ISDIR(st.st_mode)) {
		users__fs_leave(&saved);
		err->code = "invalid_argument";
		snprintf(err->message, sizeof(err->message), "path '%.400s' is not a directory",
			 watch->root);
		goto fail;
	}
	watch->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	error = watch->fd < 0 ? errno : add_tree(watch, "");
	users__fs_leave(&saved);
	if (error) {
		err->code = error == ENOSPC || error == EMFILE ? "resource_exhausted" : "internal";
		snprintf(err->message, sizeof(err->message), "watching '%.400s': %s", watch->root,
			 strerror(error));
		goto fail;
	}
	*source = (struct stream_source){
		.opaque = watch,
		.next = watch_next,
		.free = watch_free,
		.keepalive = "{\"keepalive\":{}}",
	};
	snprintf(source->name, sizeof(source->name), "watch of %.40s", watch->root);
	return true;
fail:
	watch_free(watch);
	return false;
}

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
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent_paths.h"
#include "warren/log.h"

#define WATCH_MASK                                                                                 \
	(IN_CREATE | IN_MOVED_TO | IN_MODIFY | IN_DELETE | IN_MOVED_FROM | IN_ATTRIB |             \
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

/* Called for every event drain_events() reads: name relative to the root. */
typedef void (*watch_emit)(void *context, const char *name, const char *type);

/* Levels of relative below the watched root ("" = 0). */
static unsigned depth_of(const char *relative)
{
	unsigned depth = *relative ? 1 : 0;

	for (; *relative; relative++)
		depth += *relative == '/';
	return depth;
}

/* Watches dir (relative to root) and, when recursive, everything below.
 * emit (may be NULL) gets a CREATE for each entry found below: a
 * directory created under a recursive watch may have been filled before
 * its own watch was added. */
static int add_tree(struct watch *watch, const char *relative, watch_emit emit, void *context)
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
		if (strcmp(dirent->d_name, ".") == 0 || strcmp(dirent->d_name, "..") == 0 ||
		    snprintf(child, sizeof(child), "%s%s%s", relative, *relative ? "/" : "",
			     dirent->d_name) >= (int)sizeof(child))
			continue;
		if (emit)
			emit(context, child, "EVENT_TYPE_CREATE");
		if (dirent->d_type == DT_DIR)
			add_tree(watch, child, emit, context);
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

/* Reads the available inotify events (one read) and hands each to emit.
 * False when the descriptor failed (not for EAGAIN). */
static bool drain_events(struct watch *watch, watch_emit emit, void *context)
{
	char buf[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));
	char name[PATH_MAX];
	const struct inotify_event *event;
	const char *relative, *type;
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
		emit(context, name, type);
		if (watch->recursive && (event->mask & (IN_CREATE | IN_MOVED_TO)) &&
		    (event->mask & IN_ISDIR))
			add_tree(watch, name, emit, context);
		if (event->mask & IN_DELETE_SELF && relative[0] == '\0')
			watch->finished = true; /* the watched directory is gone */
	}
	return true;
}

/* watch_emit of a stream: one WatchDirResponse message on the buffer. */
static void emit_message(void *context, const char *name, const char *type)
{
	json_t *message = json_pack("{s:{s:s,s:s}}", "filesystem", "name", name, "type", type);
	char *text = json_dumps(message, JSON_COMPACT);

	json_decref(message);
	if (text)
		stream_buffer__append(context, 0, text, strlen(text));
	free(text);
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
	if (!watch->finished && poll(&pfd, 1, wait_ms) > 0) {
		struct fs_identity saved;

		/* As the user: a recursive watch adds the directories created. */
		users__fs_enter(&watch->user, &saved);
		if (!drain_events(watch, emit_message, out))
			watch->finished = true;
		users__fs_leave(&saved);
	}
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

/* A watch of what a WatchDirRequest / CreateWatcherRequest names (path,
 * recursive), set up as user; NULL with err when it can't be watched. */
static struct watch *watch_create(const json_t *request, const struct agent_user *user,
				  struct rpc_error *err)
{
	const json_t *path = json_object_get(request, "path");
	struct watch *watch = calloc(1, sizeof(*watch));
	struct fs_identity saved;
	struct stat st;
	int error;

	if (!watch) {
		err->code = "resource_exhausted";
		snprintf(err->message, sizeof(err->message), "out of memory");
		return NULL;
	}
	watch->fd = -1;
	if (!json_is_string(path) || strlen(json_string_value(path)) != json_string_length(path) ||
	    !paths__resolve(json_string_value(path), user->home, watch->root,
			    sizeof(watch->root))) {
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
	error = watch->fd < 0 ? errno : add_tree(watch, "", NULL, NULL);
	users__fs_leave(&saved);
	if (error) {
		err->code = error == ENOSPC || error == EMFILE ? "resource_exhausted" : "internal";
		snprintf(err->message, sizeof(err->message), "watching '%.400s': %s", watch->root,
			 strerror(error));
		goto fail;
	}
	return watch;
fail:
	watch_free(watch);
	return NULL;
}

bool watch__open(const json_t *request, const struct agent_user *user, struct stream_source *source,
		 struct rpc_error *err)
{
	struct watch *watch = watch_create(request, user, err);

	if (!watch)
		return false;
	*source = (struct stream_source){
	    .opaque = watch,
	    .next = watch_next,
	    .free = watch_free,
	    .keepalive = "{\"keepalive\":{}}",
	};
	snprintf(source->name, sizeof(source->name), "watch of %.40s", watch->root);
	return true;
}

/* --- CreateWatcher / GetWatcherEvents / RemoveWatcher ---
 * A registry of watches whose events one collector thread (started with
 * the first watcher) queues as they happen, so that a directory created
 * under a recursive watcher is watched at once, not at the next poll. */

struct watcher {
	struct watcher *next;
	uint64_t serial; /* the collector finds a watcher by it, never by pointer */
	char id[WATCHER_ID_LEN + 1];
	struct watch *watch;
	json_t *events; /* FilesystemEvent objects not fetched yet */
	size_t dropped; /* events lost to the queue bound since the last fetch */
};

static pthread_mutex_t watchers_lock = PTHREAD_MUTEX_INITIALIZER;
static struct watcher *watchers;
static size_t watcher_count;
static uint64_t next_serial = 1;
static int collector_epoll = -1;

/* watch_emit of a watcher: queues the event unless the queue is full. */
static void emit_queued(void *context, const char *name, const char *type)
{
	struct watcher *watcher = context;

	if (json_array_size(watcher->events) >= WATCHER_QUEUE_LIMIT) {
		watcher->dropped++;
		return;
	}
	json_array_append_new(watcher->events, json_pack("{s:s,s:s}", "name", name, "type", type));
}

/* Reads everything the watcher's inotify descriptor holds, as its user
 * (a recursive watch adds new directories). Called with watchers_lock. */
static void watcher_drain(struct watcher *watcher)
{
	struct fs_identity saved;
	struct pollfd pfd = {.fd = watcher->watch->fd, .events = POLLIN};

	if (watcher->watch->finished)
		return;
	users__fs_enter(&watcher->watch->user, &saved);
	while (!watcher->watch->finished && poll(&pfd, 1, 0) > 0)
		if (!drain_events(watcher->watch, emit_queued, watcher))
			watcher->watch->finished = true;
	users__fs_leave(&saved);
	if (watcher->watch->finished && collector_epoll >= 0)
		epoll_ctl(collector_epoll, EPOLL_CTL_DEL, watcher->watch->fd, NULL);
}

static void *collector_thread(void *unused)
{
	struct epoll_event ready[32];
	struct watcher *watcher;
	int n, i;

	(void)unused;
	for (;;) {
		n = epoll_wait(collector_epoll, ready, 32, -1);
		if (n < 0 && errno != EINTR)
			break;
		pthread_mutex_lock(&watchers_lock);
		for (i = 0; i < n; i++)
			for (watcher = watchers; watcher; watcher = watcher->next)
				if (watcher->serial == ready[i].data.u64)
					watcher_drain(watcher);
		pthread_mutex_unlock(&watchers_lock);
	}
	log_error("watcher collector: epoll_wait: %s", strerror(errno));
	return NULL;
}

/* Starts the collector once. Called with watchers_lock. */
static bool collector_start(void)
{
	pthread_attr_t attr;
	pthread_t thread;
	int result;

	if (collector_epoll >= 0)
		return true;
	collector_epoll = epoll_create1(EPOLL_CLOEXEC);
	if (collector_epoll < 0)
		return false;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	result = pthread_create(&thread, &attr, collector_thread, NULL);
	pthread_attr_destroy(&attr);
	if (result != 0) {
		close(collector_epoll);
		collector_epoll = -1;
		return false;
	}
	return true;
}

static void watcher_free(struct watcher *watcher)
{
	if (!watcher)
		return;
	if (watcher->watch) {
		if (collector_epoll >= 0 && !watcher->watch->finished)
			epoll_ctl(collector_epoll, EPOLL_CTL_DEL, watcher->watch->fd, NULL);
		watch_free(watcher->watch);
	}
	json_decref(watcher->events);
	free(watcher);
}

/* A random id of WATCHER_ID_LEN hex digits into out. */
static bool watcher_new_id(char *out)
{
	uint8_t bytes[WATCHER_ID_LEN / 2];
	size_t i;

	if (getrandom(bytes, sizeof(bytes), 0) != (ssize_t)sizeof(bytes))
		return false;
	for (i = 0; i < sizeof(bytes); i++)
		snprintf(out + 2 * i, 3, "%02x", bytes[i]);
	return true;
}

json_t *watch__create_watcher(const json_t *request, const struct agent_user *user,
			      struct rpc_error *err)
{
	struct watcher *watcher = calloc(1, sizeof(*watcher));
	struct epoll_event event = {.events = EPOLLIN};
	json_t *result = NULL;

	pthread_mutex_lock(&watchers_lock);
	if (!watcher || !(watcher->events = json_array()) || !watcher_new_id(watcher->id) ||
	    !collector_start()) {
		err->code = "internal";
		snprintf(err->message, sizeof(err->message), "cannot create a watcher: %s",
			 strerror(errno));
		goto out;
	}
	if (watcher_count >= WATCHER_MAX) {
		err->code = "resource_exhausted";
		snprintf(err->message, sizeof(err->message),
			 "too many watchers (%d); remove one first", WATCHER_MAX);
		goto out;
	}
	watcher->watch = watch_create(request, user, err);
	if (!watcher->watch)
		goto out;
	watcher->serial = next_serial++;
	event.data.u64 = watcher->serial;
	if (epoll_ctl(collector_epoll, EPOLL_CTL_ADD, watcher->watch->fd, &event) < 0) {
		err->code = "internal";
		snprintf(err->message, sizeof(err->message), "epoll: %s", strerror(errno));
		goto out;
	}
	result = json_pack("{s:s}", "watcherId", watcher->id);
	watcher->next = watchers;
	watchers = watcher;
	watcher_count++;
	watcher = NULL;
out:
	watcher_free(watcher);
	pthread_mutex_unlock(&watchers_lock);
	return result;
}

/* The registered watcher named by request's watcherId, with its link;
 * NULL with err (not_found / invalid_argument). Called with watchers_lock. */
static struct watcher **watcher_find(const json_t *request, struct rpc_error *err)
{
	const json_t *id = json_object_get(request, "watcherId");
	struct watcher **link;

	if (!json_is_string(id)) {
		err->code = "invalid_argument";
		snprintf(err->message, sizeof(err->message), "watcherId must be a string");
		return NULL;
	}
	for (link = &watchers; *link; link = &(*link)->next)
		if (strcmp((*link)->id, json_string_value(id)) == 0)
			return link;
	err->code = "not_found";
	snprintf(err->message, sizeof(err->message), "watcher '%.64s' not found",
		 json_string_value(id));
	return NULL;
}

json_t *watch__get_watcher_events(const json_t *request, const struct agent_user *user,
				  struct rpc_error *err)
{
	struct watcher **link;
	json_t *events = NULL;

	(void)user;
	pthread_mutex_lock(&watchers_lock);
	link = watcher_find(request, err);
	if (link) {
		watcher_drain(*link); /* what the kernel has queued but the collector not yet */
		events = (*link)->events;
		(*link)->events = json_array();
		if ((*link)->dropped)
			log_warn("watcher %s: %zu events dropped (queue of %d full)", (*link)->id,
				 (*link)->dropped, WATCHER_QUEUE_LIMIT);
		(*link)->dropped = 0;
	}
	pthread_mutex_unlock(&watchers_lock);
	return events ? json_pack("{s:o}", "events", events) : NULL;
}

json_t *watch__remove_watcher(const json_t *request, const struct agent_user *user,
			      struct rpc_error *err)
{
	struct watcher **link, *watcher = NULL;

	(void)user;
	pthread_mutex_lock(&watchers_lock);
	link = watcher_find(request, err);
	if (link) {
		watcher = *link;
		*link = watcher->next;
		watcher_count--;
		watcher_free(watcher);
	}
	pthread_mutex_unlock(&watchers_lock);
	return watcher ? json_object() : NULL;
}

void watch__remove_all(void)
{
	struct watcher *watcher;

	pthread_mutex_lock(&watchers_lock);
	while ((watcher = watchers)) {
		watchers = watcher->next;
		watcher_free(watcher);
	}
	watcher_count = 0;
	pthread_mutex_unlock(&watchers_lock);
}

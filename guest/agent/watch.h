/* watch: filesystem.Filesystem/WatchDir (filesystem.proto), a server
 * stream of inotify events under a directory, optionally recursive. No
 * HTTP here: rpc.c answers with the stream (stream__respond). */
#ifndef WARREN_AGENT_WATCH_H
#define WARREN_AGENT_WATCH_H

#include "process.h"

#define WATCH_MAX_DIRECTORIES 8192
#define WATCH_MAX_DEPTH	      128 /* levels below the root; each costs ~8 KiB of stack */

/* Starts watching what a WatchDirRequest names, as user, and fills
 * source with its messages (stream.h; the source owns the watch). False
 * with err set when the directory can't be watched (the caller answers
 * the error). */
bool watch__open(const json_t *request, const struct agent_user *user, struct stream_source *source,
		 struct rpc_error *err);

/* CreateWatcher / GetWatcherEvents / RemoveWatcher: the same watch kept
 * by id; its events are queued as they happen (at most
 * WATCHER_QUEUE_LIMIT not fetched: later ones are dropped and logged) and
 * handed over, oldest first, by GetWatcherEvents. At most WATCHER_MAX
 * watchers at once. Unary handlers of rpc.c's table. */
#define WATCHER_MAX	    64
#define WATCHER_QUEUE_LIMIT 4096
#define WATCHER_ID_LEN	    32 /* hex digits */

/* {"watcherId"} for {"path","recursive"}. */
json_t *watch__create_watcher(const json_t *request, const struct agent_user *user,
			      struct rpc_error *err);
/* {"events":[{"name","type"}...]} for {"watcherId"}: the queue, emptied. */
json_t *watch__get_watcher_events(const json_t *request, const struct agent_user *user,
				  struct rpc_error *err);
/* {} for {"watcherId"}: the watch stops, its events and descriptors freed. */
json_t *watch__remove_watcher(const json_t *request, const struct agent_user *user,
			      struct rpc_error *err);
/* Frees every watcher (agent shutdown). */
void watch__remove_all(void);

#endif

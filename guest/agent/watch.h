/* watch: filesystem.Filesystem/WatchDir (filesystem.proto), a server
 * stream of inotify events under a directory, optionally recursive. No
 * HTTP here: rpc.c answers with the stream (stream__respond). */
#ifndef WARREN_AGENT_WATCH_H
#define WARREN_AGENT_WATCH_H

#include "process.h"

#define WATCH_MAX_DIRECTORIES 8192
#define WATCH_MAX_DEPTH       128 /* levels below the root; each costs ~8 KiB of stack */

/* Starts watching what a WatchDirRequest names, as user, and fills
 * source with its messages (stream.h; the source owns the watch). False
 * with err set when the directory can't be watched (the caller answers
 * the error). */
bool watch__open(const json_t *request, const struct agent_user *user,
		 struct stream_source *source, struct rpc_error *err);

#endif

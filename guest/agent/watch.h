/* watch: filesystem.Filesystem/WatchDir (filesystem.proto), a server
 * stream of inotify events under a directory, optionally recursive. */
#ifndef WARREN_AGENT_WATCH_H
#define WARREN_AGENT_WATCH_H

#include "process.h"

#define WATCH_MAX_DIRECTORIES 8192
#define WATCH_MAX_DEPTH       128 /* levels below the root; each costs ~8 KiB of stack */

/* The streaming response for a WatchDirRequest, or NULL with err set when
 * the directory can't be watched (the caller answers the error). */
struct MHD_Response *watch__stream_response(const json_t *request, const struct agent_user *user,
					    struct MHD_Connection *connection,
					    int keepalive_seconds, struct rpc_error *err);

#endif

/* filesystem: the unary methods of envd's filesystem.Filesystem service
 * (filesystem.proto): Stat, MakeDir, Move, ListDir, Remove. Each takes the
 * decoded JSON request and the acting user, and returns the JSON response
 * or NULL with err set. File access runs under the user's fsuid. */
#ifndef WARREN_AGENT_FILESYSTEM_H
#define WARREN_AGENT_FILESYSTEM_H

#include "process.h"

#define FILESYSTEM_MAX_LIST_ENTRIES 100000

json_t *filesystem__stat(const json_t *request, const struct agent_user *user,
			 struct rpc_error *err);
json_t *filesystem__make_dir(const json_t *request, const struct agent_user *user,
			     struct rpc_error *err);
json_t *filesystem__move(const json_t *request, const struct agent_user *user,
			 struct rpc_error *err);
json_t *filesystem__list_dir(const json_t *request, const struct agent_user *user,
			     struct rpc_error *err);
json_t *filesystem__remove(const json_t *request, const struct agent_user *user,
			   struct rpc_error *err);

#endif

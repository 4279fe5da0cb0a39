/* agent: shared state and helpers of warren-agent, the in-sandbox daemon
 * that speaks envd's wire protocol (docs/e2b-compatibility.md "Agent"). One process,
 * libmicrohttpd with a thread per connection, a thread per child process
 * pumping its output, and the main thread reaping children (SIGCHLD).
 * Nothing here knows the HTTP library: its side is server.h (server.c,
 * rpc.c, files.c, stream.c, users__for_request). */
#ifndef WARREN_AGENT_AGENT_H
#define WARREN_AGENT_AGENT_H

#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

#include "wire.h"

#define AGENT_DEFAULT_LISTEN	     "0.0.0.0:49983"
#define AGENT_MAX_JSON_BODY	     (1024 * 1024)
#define AGENT_MAX_CONNECTIONS	     1024 /* one thread each; the SDK pools <= 210 */
#define AGENT_MAX_CONNECTIONS_PER_IP 512  /* one peer never takes them all */
#define AGENT_IDLE_TIMEOUT_S	     60	  /* no byte either way for this long: closed */
#define AGENT_UNAUTH_INIT_S	     10	  /* an /init without a valid header token: whole body */
#define AGENT_UNAUTH_INIT_BODY	     (64 * 1024)
#define AGENT_MAX_GROUPS	     64
#define AGENT_MAX_TOKEN		     512
#define AGENT_DEFAULT_USERNAME	     "user" /* the SDK's default user name */
#define AGENT_DEFAULT_PATH	     "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* Everything /init may change, under lock. */
struct agent_state {
	pthread_mutex_t lock;
	struct token_hash token_hash; /* from --token-hash; NONE = secure=false */
	bool token_set;
	char token[AGENT_MAX_TOKEN];
	json_t *env_vars; /* object of strings, from /init */
	char default_user[64];
	char default_workdir[PATH_MAX];
	unsigned int idle_timeout_s;	 /* set once at start (--idle-timeout) */
	unsigned long long gunzip_limit; /* set once at start (--gzip-limit) */
	/* Set once at start: the agent runs on a machine of its own (a vm
	 * guest: started by PID 1 in the initial user namespace), so /init's
	 * timestamp and entropy may set its clock and reseed its generator. */
	bool owns_machine;
};

extern struct agent_state agent;

/* A resolved local user (or the agent's own identity as fallback). */
struct agent_user {
	char name[64];
	uid_t uid;
	gid_t gid;
	char home[PATH_MAX];
	gid_t groups[AGENT_MAX_GROUPS];
	int group_count;
};

/* Saved filesystem identity of the calling thread. */
struct fs_identity {
	bool switched;
	uid_t uid;
	gid_t gid;
	gid_t groups[AGENT_MAX_GROUPS];
	int group_count;
};

/* Resolves name (NULL or "" = the default user from /init, else "user")
 * through /etc/passwd into out. False when the name is unknown: the caller
 * answers 400; there is no fallback identity. */
bool users__resolve(const char *name, struct agent_user *out);
/* Makes this thread's file accesses run as user when the agent is root:
 * supplementary groups (the user's list), fsgid and fsuid, all per thread,
 * so the kernel checks the user's rights on every path component and
 * symlink. Undo with users__fs_leave. */
void users__fs_enter(const struct agent_user *user, struct fs_identity *saved);
void users__fs_leave(const struct fs_identity *saved);
/* True when the request may proceed: its X-Access-Token equals the token
 * from /init (constant time), or no token was set and either none is
 * expected (secure=false) or it hashes to --token-hash. */
bool agent__token_ok(const char *token_header);
/* True when token hashes to the configured --token-hash. */
bool agent__token_matches_hash(const char *token);
/* A copy of the current access token into out; false when none is set. */
bool agent__current_token(char *out, size_t out_len);

#endif

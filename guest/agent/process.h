/* process: the children the agent runs for process.Process (envd
 * process.proto): a table of running processes, one output pump thread
 * each, per-subscriber bounded output queues (back-pressure reaches the
 * child through its pipes), and the streaming Connect response. */
#ifndef WARREN_AGENT_PROCESS_H
#define WARREN_AGENT_PROCESS_H

#include "agent.h"

/* Bytes of output one subscriber may have queued before the pump stops
 * reading the child's pipes (the child then blocks in write). */
#define PROCESS_SUBSCRIBER_QUEUE_LIMIT (1024 * 1024)

struct subscriber;

/* Connect error: code is a Connect code string ("not_found"...). */
struct rpc_error {
	const char *code;
	char message[512];
};

/* Starts config as user; on success *subscriber receives the start event
 * and all output. stdin_pipe: give the child a stdin pipe (else /dev/null).
 * timeout_ms > 0: SIGKILL its process group after that long (envd applies
 * the Start call's Connect-Timeout-Ms so). config_json is kept for List.
 * False with err filled otherwise. */
bool process__start(const struct process_config *config, const json_t *config_json,
		    const char *tag, bool stdin_pipe, long long timeout_ms,
		    const struct agent_user *user, struct subscriber **subscriber,
		    struct rpc_error *err);
/* Attaches a new subscriber to a running process (Connect). */
bool process__connect(const struct process_selector *selector, struct subscriber **subscriber,
		      struct rpc_error *err);
/* Detaches and frees a subscriber that was never given to a response. */
void process__subscriber_free(struct subscriber *subscriber);
/* The streaming Connect response (application/connect+json) for a
 * subscriber; keepalive_seconds > 0 adds keepalive events. Owns it. */
struct MHD_Response *process__stream_response(struct subscriber *subscriber,
					      struct MHD_Connection *connection,
					      int keepalive_seconds);
/* {"processes":[ProcessInfo...]} */
json_t *process__list(void);
bool process__send_input(const struct process_selector *selector, const uint8_t *data,
			 size_t len, struct rpc_error *err);
bool process__close_stdin(const struct process_selector *selector, struct rpc_error *err);
bool process__signal(const struct process_selector *selector, int signal_number,
		     struct rpc_error *err);
/* Called by the reaper (main thread) for every child it waits for. */
void process__reaped(pid_t pid, int status);

/* SIGKILLs the process group of every running process (agent shutdown). */
void process__kill_all(void);

#endif

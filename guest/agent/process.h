/* process: the children the agent runs for process.Process (envd
 * process.proto): a table of running processes, one output pump thread
 * each, per-subscriber bounded output queues (back-pressure reaches the
 * child through its pipes), and each subscriber's messages as a stream
 * source (stream.h). No HTTP here: rpc.c decides what a call asks for and
 * answers it. */
#ifndef WARREN_AGENT_PROCESS_H
#define WARREN_AGENT_PROCESS_H

#include "agent.h"
#include "stream.h"

/* Bytes of output one subscriber may have queued before the pump stops
 * reading the child's pipes (the child then blocks in write). */
#define PROCESS_SUBSCRIBER_QUEUE_LIMIT (1024 * 1024)

/* Largest PTY width or height accepted (columns, rows). */
#define PROCESS_PTY_MAX_SIZE 4096

struct subscriber;

/* Connect error: code is a Connect code string ("not_found"...). */
struct rpc_error {
	const char *code;
	char message[512];
};

/* What a Start call asks for, as the caller (rpc.c) decided it. */
struct process_request {
	const struct process_config *config;
	const json_t *config_json;	   /* kept for List */
	const char *tag;		   /* NULL: none */
	bool stdin_pipe;		   /* give the child a stdin pipe (else /dev/null) */
	bool pty;			   /* run on a pseudo-terminal (stdin_pipe ignored) */
	unsigned short pty_cols, pty_rows; /* its size when pty (1..PROCESS_PTY_MAX_SIZE) */
	long long timeout_ms;		   /* > 0: SIGKILL its process group after that long
					    * (envd applies the Connect-Timeout-Ms so) */
	const struct agent_user *user;
	const json_t *env_vars;	     /* /init's envVars (object of strings) or NULL */
	const char *default_workdir; /* /init's defaultWorkdir; NULL or "": the home */
};

/* Starts request's command; on success *subscriber receives the start
 * event and all output. False with err filled otherwise. */
bool process__start(const struct process_request *request, struct subscriber **subscriber,
		    struct rpc_error *err);
/* Attaches a new subscriber to a running process (Connect). */
bool process__connect(const struct process_selector *selector, struct subscriber **subscriber,
		      struct rpc_error *err);
/* Detaches and frees a subscriber that was never given to a response. */
void process__subscriber_free(struct subscriber *subscriber);
/* The stream source of a subscriber's messages (start, data, end events;
 * keepalive event); the source owns the subscriber (freed with it). */
void process__stream_source(struct subscriber *subscriber, struct stream_source *source);
/* {"processes":[ProcessInfo...]} */
json_t *process__list(void);
/* Writes data to the process's stdin pipe or, for a PTY process, its
 * terminal. to_pty (the input's "pty" field) on a process without a
 * PTY is failed_precondition. */
bool process__send_input(const struct process_selector *selector, const uint8_t *data, size_t len,
			 bool to_pty, struct rpc_error *err);
/* Sets the terminal size of a PTY process (TIOCSWINSZ: its foreground
 * group gets SIGWINCH); failed_precondition when it has no PTY. */
bool process__resize(const struct process_selector *selector, unsigned short cols,
		     unsigned short rows, struct rpc_error *err);
bool process__close_stdin(const struct process_selector *selector, struct rpc_error *err);
bool process__signal(const struct process_selector *selector, int signal_number,
		     struct rpc_error *err);
/* Called by the reaper (main thread) for every child it waits for. */
void process__reaped(pid_t pid, int status);

/* How many listed processes have not been reaped (the loopback forwarder
 * scans every second while any runs). */
size_t process__running_count(void);

/* SIGKILLs the process group of every running process (agent shutdown). */
void process__kill_all(void);

/* --- the steps of process__start that stand alone (unit-tested) --- */

/* The environment of a child: PATH/HOME/USER/LOGNAME, then env_vars (may
 * be NULL), then config's envs (later wins), as a NULL-terminated array
 * of "KEY=VALUE" strings; NULL when out of memory. Free with
 * process__free_strings. */
char **process__environment(const struct process_config *config, const struct agent_user *user,
			    const json_t *env_vars);
void process__free_strings(char **strings);
/* Resolves cmd like exec.LookPath: as is when it has a '/', else through
 * the PATH of envp. /bin/bash falls back to /bin/sh when absent (busybox
 * templates). False when nothing executable is found. */
bool process__find_executable(const char *cmd, char **envp, char *out, size_t out_len);
/* The child's working directory into out: config's cwd, else
 * default_workdir, else the user's home. False with err
 * (invalid_argument) when it is not a directory. */
bool process__working_directory(const struct process_config *config, const struct agent_user *user,
				const char *default_workdir, char *out, size_t out_len,
				struct rpc_error *err);
/* err for an exec that failed with child_errno: invalid_argument for
 * ENOENT/EACCES (a bad command), internal otherwise. */
void process__exec_error(const char *cmd, int child_errno, struct rpc_error *err);

#endif

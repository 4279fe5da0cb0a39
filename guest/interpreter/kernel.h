/* kernel: one Jupyter kernel process (python3 -m ipykernel_launcher) and
 * the shell, iopub and control sockets to it (ZeroMQ over ipc sockets in a
 * private directory, HMAC-SHA256-signed messages), plus one execution at a
 * time driven step by step so an HTTP response can stream its lines.
 * docs/code-interpreter.md. */
#ifndef WARREN_INTERPRETER_KERNEL_H
#define WARREN_INTERPRETER_KERNEL_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "jmsg.h"

struct kernel_options {
	const char *python;	 /* interpreter to run, "python3" if NULL */
	const char *cwd;	 /* the kernel's working directory */
	const char *user;	 /* run the kernel as this user when we are root; NULL: as us */
	const char *runtime_dir; /* parent of the private socket directory ("/tmp" if NULL) */
	const char *startup;	 /* a Python file the kernel runs at start (charts); NULL: none */
	int start_timeout_ms;	 /* until kernel_info_reply and iopub flow */
};

struct kernel {
	pid_t pid;     /* 0: not running */
	char dir[256]; /* private directory: connection file, sockets, log */
	char key[65];
	char session[40];
	void *shell, *iopub, *control;
	pthread_mutex_t control_lock; /* control socket: interrupts come from any thread */
};

/* Once per struct kernel, before its first start. */
void kernel__init(struct kernel *k);
/* Starts a kernel and waits until it answers kernel_info_request and its
 * iopub stream flows. zctx is the process's ZeroMQ context. Returns 0, or
 * -1 with a reason in err (the process and directory are cleaned up). */
int kernel__start(struct kernel *k, void *zctx, const struct kernel_options *options, char *err,
		  size_t err_len);
/* Kills the kernel's process group, reaps it, closes sockets, removes its
 * directory. Safe on a stopped kernel. */
void kernel__stop(struct kernel *k);
/* False once the kernel process has exited (reaped here). */
bool kernel__alive(struct kernel *k);
/* Interrupts the running cell: interrupt_request on control, SIGINT to the
 * kernel's process group when no reply comes within a second. */
int kernel__interrupt(struct kernel *k);

/* Output budget of one execution (stream text and results together). */
#define EXECUTION_OUTPUT_MAX (16u << 20)

struct execution {
	struct kernel *kernel;
	char *code;	     /* kept to resend a request the kernel aborted */
	char *restore_code;  /* env_vars: run after the cell; NULL: none */
	char msg_id[40];     /* the cell's execute_request */
	char restore_id[40]; /* the env restore's, once sent */
	int attempts, restore_attempts;
	bool reply, idle, done, dead, truncated, restored;
	long long execution_count;
	long long reply_at_ms;	 /* monotonic, when execute_reply arrived */
	long long iopub_at_ms;	 /* monotonic, when iopub last delivered anything */
	long long restore_at_ms; /* when the restore was sent */
	size_t output_bytes;
	int client_fd; /* watched for a hang-up; -1: not watched */
};

/* A growable byte buffer of NDJSON lines waiting to be sent. */
struct line_buffer {
	char *data;
	size_t len, cap, sent;
};
int line_buffer__append(struct line_buffer *b, char *line /* freed */);
void line_buffer__free(struct line_buffer *b);

/* Sends execute_request for code (env_vars: object of strings set in
 * os.environ for this cell and restored after it, or NULL). Returns 0 or -1. */
int kernel__execute_begin(struct kernel *k, const char *code, const json_t *env_vars,
			  struct execution *e);
/* Waits up to wait_ms for the kernel (and watches e->client_fd for a
 * hang-up; a client that sends bytes instead is no longer watched), appending the NDJSON lines
 * produced to out. Returns 1: more to come, 0: the execution ended (end_of_execution appended), -1:
 * the client went away (the caller interrupts). A dead kernel ends the
 * execution with an error line (e->dead set). */
int kernel__execute_step(struct execution *e, int wait_ms, struct line_buffer *out);
/* The client left before the end: interrupts the cell and waits (a few
 * seconds) for its reply, so the next cell is not aborted by the kernel;
 * returns -1 when the kernel did not answer (the caller restarts it). */
int kernel__execute_abandon(struct execution *e);
/* Frees what the execution holds (not the kernel). */
void kernel__execute_clear(struct execution *e);

#endif

/* contexts: the interpreter's code contexts, one Jupyter kernel each, with
 * one execution at a time per context (later callers wait their turn). The
 * default Python context is created at boot; callers that arrive while its
 * kernel starts wait for it (the server queues, create does not wait).
 * docs/code-interpreter.md. */
#ifndef WARREN_INTERPRETER_CONTEXTS_H
#define WARREN_INTERPRETER_CONTEXTS_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>

#include "kernel.h"

#define CONTEXTS_MAX 16

struct context {
	char id[40];
	char language[16];
	char cwd[256];
	struct kernel kernel;
	pthread_mutex_t lock;
	pthread_cond_t turn;
	bool busy;    /* an execution, start or restart holds the kernel */
	bool removed; /* out of the table; freed when refs reach 0 */
	int refs;
};

struct contexts_config {
	void *zctx;
	struct kernel_options kernel; /* cwd: the default */
};

void contexts__init(const struct contexts_config *config);
/* Creates a context (language "python" only) and starts its kernel
 * (is_default: registers it as the default context without starting it;
 * the caller starts it with contexts__restart_acquired). Returns it
 * acquired (busy, one ref) or NULL with an HTTP status and reason: 400 bad
 * language/cwd, 429 too many, 500 kernel failed. */
struct context *contexts__create(const char *language, const char *cwd, bool is_default,
				 int *status, char *err, size_t err_len);
/* Finds a context by id (NULL id: the default one) and takes a reference. */
struct context *contexts__get(const char *id);
void contexts__put(struct context *c);
/* Waits for the context's turn, then marks it busy. A dead kernel is
 * restarted first; returns -1 with err if that fails (not busy then). */
int contexts__acquire(struct context *c, char *err, size_t err_len);
void contexts__release(struct context *c);
/* Restarts the kernel (call with the context acquired). */
int contexts__restart_acquired(struct context *c, char *err, size_t err_len);
/* Removes from the table and stops the kernel (waits for its turn). */
void contexts__remove(struct context *c);
/* {id, language, cwd} of every context, a new array. */
json_t *contexts__list(void);
json_t *contexts__describe(const struct context *c);
/* Stops every kernel (shutdown). */
void contexts__shutdown(void);

#endif

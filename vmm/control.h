/* control: the VMM's control socket. A Unix stream socket; each request is
 * one JSON object on one line, each response one JSON object on one line
 * (docs/vmm-api.md). Runs on the event-loop thread. */
#ifndef WARREN_VMM_CONTROL_H
#define WARREN_VMM_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vm.h"

#define CONTROL_MAX_LINE    (64u * 1024u)
#define CONTROL_MAX_CLIENTS 16

struct event_loop;
struct control_client;

struct control {
	struct vm *vm;
	struct event_loop *loop;
	int listen_fd;
	char path[108];
	struct control_client *clients[CONTROL_MAX_CLIENTS];
	bool exit_requested;			     /* an "exit" request was answered */
	void (*on_exit)(struct control *control);    /* called after answering "exit" */
	void (*on_started)(struct control *control); /* after a successful "start" */
};

/* Handles one request line; returns the response line (malloc'd, without
 * the newline). Sets control->exit_requested for {"op":"exit"}. Never NULL
 * except on allocation failure. */
char *control__handle_line(struct control *control, const char *line, size_t length);

/* Listens on `path` (an existing socket file there is replaced) and serves
 * requests on `loop`. Returns 0 or -errno. */
int control__open(struct control *control, struct vm *vm, struct event_loop *loop,
		  const char *path);
/* Closes the listener and every client; removes the socket file. */
void control__close(struct control *control);

#endif

/* server: the interpreter's HTTP API on port 49999, what
 * @e2b/code-interpreter calls: POST /execute (NDJSON stream), /contexts
 * (list, create, delete, restart, interrupt), GET /health.
 * docs/code-interpreter.md. */
#ifndef WARREN_INTERPRETER_SERVER_H
#define WARREN_INTERPRETER_SERVER_H

#include <stdbool.h>

#include "wire.h" /* struct token_hash (the agent's parser) */

struct server_config {
	const char *listen;	      /* "HOST:PORT" */
	struct token_hash token_hash; /* TOKEN_HASH_NONE: open (secure=false) */
};

/* Starts the HTTP daemon (its own threads). Returns 0 or -1. */
int server__start(const struct server_config *config);
void server__stop(void);
/* True when token (the X-Access-Token header, may be NULL) is allowed. */
bool server__token_ok(const char *token);

#endif

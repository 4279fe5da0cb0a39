/* requests: validation of the JSON bodies the interpreter's HTTP API
 * accepts (hostile input: tenant code talks to it). Pure, no server.
 * docs/code-interpreter.md. */
#ifndef WARREN_INTERPRETER_REQUESTS_H
#define WARREN_INTERPRETER_REQUESTS_H

#include <jansson.h>
#include <stddef.h>

/* POST /execute. Strings point into body (owned by the struct). */
struct execute_request {
	json_t *body;
	const char *code;
	const char *context_id; /* NULL: by language / the default context */
	const char *language;	/* NULL: python */
	const json_t *env_vars; /* NULL or a non-empty object of strings */
};

/* POST /contexts. */
struct context_request {
	json_t *body;
	const char *language, *cwd; /* NULL when absent */
};

/* Parse and check; 0, or an HTTP status (400) with a reason in err.
 * An empty body is {}. */
int requests__execute(const char *data, size_t len, struct execute_request *out, char *err,
		      size_t err_len);
int requests__context(const char *data, size_t len, struct context_request *out, char *err,
		      size_t err_len);
/* True for the languages served here (NULL, "python", "python3"). */
int requests__language_supported(const char *language);
void requests__execute_clear(struct execute_request *r);
void requests__context_clear(struct context_request *r);

#endif

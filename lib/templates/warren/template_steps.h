/* template_steps: the build plan of a custom template, parsed from the
 * body the e2b SDK's Template builder posts (fromTemplate | fromImage,
 * steps [{type, args, filesHash, force}], startCmd, readyCmd, force).
 * docs/templates.md has the step-by-step mapping. Pure: the API validates
 * with it (400 with the message) and the worker executes what it returns.
 * Every value is client-controlled and checked here. */
#ifndef WARREN_TEMPLATE_STEPS_H
#define WARREN_TEMPLATE_STEPS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define TEMPLATE_STEPS_MAX     256
#define TEMPLATE_STEP_ARGS_MAX 64    /* ENV pairs count twice */
#define TEMPLATE_CMD_MAX       65536 /* bytes of one command */

enum template_step_kind {
	TEMPLATE_STEP_RUN = 0, /* args: cmd [, user] */
	TEMPLATE_STEP_COPY,    /* args: src, dest, user ("" = default), mode ("" or octal) */
	TEMPLATE_STEP_ENV,     /* args: key, value, key, value ... */
	TEMPLATE_STEP_WORKDIR, /* args: path */
	TEMPLATE_STEP_USER,    /* args: user name */
};

struct template_step {
	enum template_step_kind kind;
	const char *args[TEMPLATE_STEP_ARGS_MAX]; /* point into the spec (keep it alive) */
	size_t arg_count;
	const char *files_hash; /* COPY: 64 lower-case hex digits */
	bool force;
};

struct template_plan {
	char base[64];		/* the installed template the build starts from ("" for oci) */
	const char *from_image; /* as posted, NULL for fromTemplate */
	bool oci;		/* from_image is pulled from its registry (not a mapped one) */
	const char *registry_username; /* fromImageRegistry credentials, or NULL */
	const char *registry_password;
	const char *start_cmd; /* NULL when none */
	const char *ready_cmd; /* NULL when none */
	bool force;
	size_t step_count;
	struct template_step steps[TEMPLATE_STEPS_MAX];
};

/* Parses and validates spec into plan. 0, or -EINVAL with a message fit
 * for a 400 answer in err. */
int template_plan__parse(const json_t *spec, struct template_plan *plan, char *err, size_t err_len);
/* The installed template an image reference is ("base": e2bdev/base*,
 * debian:bookworm* / debian:12*, python:3.11* of bookworm), or NULL when
 * it is pulled from its registry (docs/templates.md). */
const char *template_plan__image_base(const char *image);
/* True for a syntactically acceptable image reference: 1..255 of
 * [A-Za-z0-9._/:@-], starting with a letter or digit, no "//", not ending
 * in '/' or ':'. The registry decides the rest. */
bool template_plan__image_ref_valid(const char *image);
/* The step's wire name ("RUN", "COPY", ...). */
const char *template_step__name(enum template_step_kind kind);
/* True for a user name we accept in USER/RUN/COPY: 1..32 of
 * [a-z0-9_-], or a numeric uid. */
bool template_step__user_valid(const char *user);
/* True for an environment variable name: [A-Za-z_][A-Za-z0-9_]*, <= 128. */
bool template_step__env_name_valid(const char *name);

#endif

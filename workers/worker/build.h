/* build: the worker's template builder (docs/templates.md). A consumer of
 * warren.template.builds (group "warren-builders", one build at a time
 * per worker) runs each build's steps in jails of the build's base
 * template, installs the result as templates_dir/<name> and registers it;
 * state and log lines go to PostgreSQL, the outcome to
 * warren.template.events. Also the start command of such templates at
 * sandbox start (build_start.c). */
#ifndef WARREN_WORKER_BUILD_H
#define WARREN_WORKER_BUILD_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "warren/template_builds.h"
#include "warren/template_steps.h"
#include "warren/templates.h"

struct worker;
struct builds;

#define BUILDS_TOPIC	    "warren.template.builds"
#define BUILDS_EVENTS_TOPIC "warren.template.events"

/* Starts the build consumer thread (topics created when absent). NULL
 * when it could not start (logged; creates still work). */
struct builds *builds__start(struct worker *worker);
/* Stops it after the build in hand (worker->stopping is set first). */
void builds__stop(struct builds *builds);

/* One build in hand (build_steps.c). */
struct build_run {
	struct worker *worker;
	const struct storage_template_build *row;
	const struct template_plan *plan;
	char user[33];	    /* the current USER */
	char workdir[1025]; /* the current WORKDIR */
	json_t *envs;	    /* ENV so far: object of strings */
	char work[8192];    /* the entry being built (renamed when done) */
	char rootfs[8300];  /* work + "/rootfs" */
	char step[24];	    /* "1".. the step being run, "base", "finalize" */
	char reason[1024];  /* why it failed */
	bool interrupted;   /* the worker is stopping: the build is left for a retry */
};

/* Appends one log line of the build (also to the worker's log). */
void build__log(struct build_run *run, const char *level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Runs every step and installs the result: 0, or -1 with run->reason
 * and run->step set. */
int build__execute(struct build_run *run);
/* fromImage of a registry: pulls and unpacks the image (cached by its
 * manifest digest) with the agent added, and fills base as a template
 * (name "oci", content_hash, rootfs). 0, or -1 with run->reason
 * (build_oci.c). */
int build__oci_base(struct build_run *run, struct template_info *base);
/* Runs a host tool (argv[0] looked up in PATH) and waits: 0 when it
 * exited 0 (build_merge.c). */
int build__spawn_wait(const char *const *argv);
/* Moves the overlay upper dir of a finished step into rootfs: whiteouts
 * and opaque dirs applied, owners shifted back by host_uid, overlay
 * xattrs dropped. 0 or -1 (reason in err). */
int build__merge_upper(const char *upper, const char *rootfs, unsigned host_uid, char *err,
		       size_t err_len);

/* After a sandbox's /init: when its template has a start command, start
 * it through the agent and wait for the ready command (or the template's
 * ready timeout). 0, or -1 with the reason in err (build_start.c). */
int build__sandbox_start_cmd(const char *template_id, const char *agent_address, int port,
			     const char *access_token, uint64_t deadline_ms, char *err,
			     size_t err_len);
/* The template's envs/user/workdir (template.json) for /init; *envs is a
 * new object (maybe empty), user/workdir "" when unset. */
void build__template_defaults(const char *template_id, json_t **envs, char *user, size_t user_len,
			      char *workdir, size_t workdir_len);

#endif

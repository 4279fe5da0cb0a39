/* agent_client: how the worker talks to a sandbox's warren-agent over
 * HTTP (libcurl): wait until it answers /health, then POST /init with the
 * derived access token and the sandbox's env vars. */
#ifndef WARREN_WORKER_AGENT_CLIENT_H
#define WARREN_WORKER_AGENT_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Polls GET http://address:port/health until 204 or the deadline (ms of
 * CLOCK_MONOTONIC). Returns 0 when healthy, -ETIMEDOUT otherwise. */
int agent_client__wait_healthy(const char *address, int port, uint64_t deadline_ms);

/* What the worker hands a sandbox's agent at POST /init. */
struct agent_init {
	const char *access_token; /* the sandbox's; NULL: secure=false */
	/* The token the agent holds, sent as X-Access-Token: a guest restored
	 * from another sandbox's snapshot holds that sandbox's; a resumed one
	 * its own (with access_token NULL: the call changes no token). NULL:
	 * access_token is sent. */
	const char *current_token;
	/* Replace the token the agent holds with access_token (none when it
	 * is NULL): the restored guest's case. */
	bool replace_token;
	const json_t *env_vars;	  /* a JSON object of strings, or NULL */
	const char *default_user; /* NULL: the agent's default */
	const char *hostname;	  /* NULL: unchanged (a sandbox started before its
				     create learns its name here) */
};

/* POST /init {accessToken, envVars, defaultUser, hostname, timestamp,
 * entropy} (guest/agent/README.md): the timestamp sets a guest's clock
 * that is off (a restored guest), the entropy reseeds its random number
 * generator (two guests restored from one snapshot must not share it).
 * Returns 0 on 2xx, else -EPROTO with the reason in err. */
int agent_client__init(const char *address, int port, const struct agent_init *init, char *err,
		       size_t err_len);

#endif

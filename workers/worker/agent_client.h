/* agent_client: how the worker talks to a sandbox's warren-agent over
 * HTTP (libcurl): wait until it answers /health, then POST /init with the
 * derived access token and the sandbox's env vars. */
#ifndef WARREN_WORKER_AGENT_CLIENT_H
#define WARREN_WORKER_AGENT_CLIENT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Polls GET http://address:port/health until 204 or the deadline (ms of
 * CLOCK_MONOTONIC). Returns 0 when healthy, -ETIMEDOUT otherwise. */
int agent_client__wait_healthy(const char *address, int port, uint64_t deadline_ms);

/* POST /init {accessToken, envVars, defaultUser, hostname, timestamp}.
 * access_token may be NULL (secure=false). env_vars is a JSON object of
 * strings or NULL; default_user and hostname may be NULL (hostname: a
 * sandbox started before its create learns its name). Returns 0 on 2xx,
 * else -EPROTO with the reason in err. */
int agent_client__init(const char *address, int port, const char *access_token,
		       const json_t *env_vars, const char *default_user, const char *hostname,
		       char *err, size_t err_len);

#endif

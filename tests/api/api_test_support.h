/* Support for the warren-api integration test and benchmark: a throwaway
 * stack (own database migrated by storage, own Kafka topics under a unique
 * prefix), an in-process fake worker (a stand-in for workers/ until the
 * worker room lands), warren-api started as a child process, a libcurl
 * HTTP helper and a TCP forwarder that can cut PostgreSQL off. */
#ifndef WARREN_TEST_API_SUPPORT_H
#define WARREN_TEST_API_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "warren/storage.h"

#define TEST_API_SEED	"test-api-token-seed"
#define TEST_API_DOMAIN "warren.test"

struct test_stack {
	char db_name[64];
	char db_url[2048];
	char topic_prefix[64];
	char host_id[64]; /* the fake worker's host */
	struct storage_pool *pool;
};

/* Sets up database, topics and the fake worker. false (printed) on error. */
bool test_stack__up(struct test_stack *stack, const char *tag);
/* Stops everything and removes database and topics; safe to call twice. */
void test_stack__down(struct test_stack *stack);

/* Creates a team (tier name) with an API key; key needs 45 bytes. */
bool test_stack__team(struct test_stack *stack, const char *name, const char *tier,
		      struct storage_team *team, char *key);

/* Counters of what the fake worker saw. */
int fake_worker__count(const char *command_type);
/* Stops (true) or restarts the fake host's heartbeat (its hosts row). */
void fake_worker__pause_heartbeat(bool paused);

struct test_api {
	pid_t pid;
	int port;
};

/* Starts build/bin/warren-api with the stack's settings; pg_url NULL uses
 * the stack's database. extra_env: NULL-terminated "NAME=value" list. */
bool test_api__start(struct test_api *api, const struct test_stack *stack, const char *pg_url,
		     const char *const *extra_env);
/* SIGTERM, then waits (SIGKILL after 15 s). Returns its exit status: 0
 * for a clean exit; a sanitizer report or a crash makes it non-zero. */
int test_api__stop(struct test_api *api);

struct http_response {
	long status;
	char *body; /* NUL-terminated, owned */
	char headers[4096];
};

/* One request; key/body/request_id may be NULL. false on a transport error. */
bool http__request(int port, const char *method, const char *path, const char *key,
		   const char *body, const char *request_id, struct http_response *out);
/* A response header's value (case-insensitive name) copied to out; false if absent. */
bool http__header(const struct http_response *response, const char *name, char *out, size_t len);
void http__response_free(struct http_response *response);

/* A TCP forwarder 127.0.0.1:<port> -> target_port that can be cut. */
struct tcp_forwarder;
struct tcp_forwarder *tcp_forwarder__start(int target_port);
int tcp_forwarder__port(const struct tcp_forwarder *forwarder);
/* Closes the listener and every forwarded connection (an outage). */
void tcp_forwarder__cut(struct tcp_forwarder *forwarder);
/* Listens again on the same port (recovery). */
bool tcp_forwarder__restore(struct tcp_forwarder *forwarder);
void tcp_forwarder__free(struct tcp_forwarder *forwarder);

#endif

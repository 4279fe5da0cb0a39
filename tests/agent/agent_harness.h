/* agent_harness: the real warren-agent started on 127.0.0.1 (random port,
 * --token-hash of TOKEN) and driven over HTTP with libcurl as the e2b SDK
 * drives envd. Shared by the agent's integration and escape tests. */
#ifndef WARREN_TESTS_AGENT_HARNESS_H
#define WARREN_TESTS_AGENT_HARNESS_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define TOKEN "test-access-token-0123456789"

extern pid_t agent_pid;
extern int agent_port;
extern char work_dir[256];		/* scratch dir, removed by stop_agent */
extern double health_ms;		/* exec -> first /health answer */
extern const char *extra_header;	/* e.g. "Authorization: Basic ..." for one call */
extern const char *agent_extra_args[4]; /* more agent flags for start_agent (NULL-ended) */

struct buffer {
	char *data;
	size_t len;
	size_t abort_after; /* 0 = never: abort the transfer once len exceeds it */
	unsigned delay_ms;  /* sleep on the first chunk (a slow client) */
	int *attached;	    /* set to 1 once the first bytes arrived */
};

struct stream_result {
	long status;
	int pid;
	bool ended;
	int exit_code;
	bool exited;
	char status_text[64];
	char error_code[64];
	char out[65536];
	size_t out_len;
	char err[4096];
	bool end_stream;
	char raw[8192]; /* the first bytes of the body, for non-process streams */
};

struct background_stream {
	pthread_t thread;
	const char *procedure; /* NULL = Start */
	int attached;
	char request[1024];
	struct stream_result result;
	size_t abort_after;
	unsigned delay_ms;
};

/* CURLOPT_WRITEFUNCTION appending into a struct buffer (CURLOPT_WRITEDATA). */
size_t collect(char *ptr, size_t size, size_t nmemb, void *userdata);
/* One HTTP request; returns the status (-1: no answer), body in *out
 * (caller frees out->data). */
long http(const char *method, const char *path_and_query, const char *token,
	  const char *content_type, const void *body, size_t body_len, struct buffer *out);
/* A unary Connect call; returns the HTTP status and the decoded body. */
long unary(const char *procedure, const char *json, const char *token, json_t **result);
/* Parses enveloped Connect frames of a process stream into result. */
void parse_frames(const char *data, size_t len, struct stream_result *result);
/* A server-streaming Connect call (Start or Connect) to its end. */
void stream_call(const char *procedure, const char *json, struct stream_result *result,
		 size_t abort_after, unsigned delay_ms, int *attached);
/* stream_call of request on a new thread (join stream->thread). */
void background_start(struct background_stream *stream, const char *request);
/* Waits (5 s) until the first bytes of a background stream arrived. */
void wait_attached(struct background_stream *stream);
/* The pid of the running process tagged tag, waiting up to 5 s for it. */
int pid_of_tag(const char *tag);
/* True when pid has left the process table (reaped), within 5 s. */
bool pid_gone(int pid);
int free_port(void);
double now_ms(void);
/* cmocka group setup/teardown: start the agent (answering /health) and
 * stop it, failing on a sanitizer report in its log. */
int start_agent(void **state);
int stop_agent(void **state);
/* "/files?path=..&signature=..[&signature_expiration=..]" signed with TOKEN
 * for operation ("read"/"write"); expiration < 0 = none. */
void signed_query(char *out, size_t out_len, const char *path, const char *operation,
		  long long expiration);
/* The same with a signed ?username= (appended when username is not ""). */
void signed_query_user(char *out, size_t out_len, const char *path, const char *operation,
		       const char *username, long long expiration);

#endif

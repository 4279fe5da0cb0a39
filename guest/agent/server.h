/* server: the libmicrohttpd access handler of warren-agent: per-request
 * state, routing, authentication, and the handlers' entry points. */
#ifndef WARREN_AGENT_SERVER_H
#define WARREN_AGENT_SERVER_H

#include "agent.h"

enum request_kind {
	REQUEST_BODY = 1,    /* JSON or Connect body collected in memory (bounded) */
	REQUEST_UPLOAD_RAW,  /* POST /files application/octet-stream, streamed to disk */
	REQUEST_UPLOAD_FORM, /* POST /files multipart/form-data, streamed to disk */
	REQUEST_DRAIN,       /* rejected early: body discarded, error answered at the end */
};

struct request {
	enum request_kind kind;
	bool signed_url; /* /files with ?signature=: the user is the signed one only */
	/* REQUEST_BODY */
	char *body;
	size_t body_len, body_cap, body_limit;
	bool body_too_large;
	uint64_t body_deadline_ms; /* monotonic; 0 = none. Past it the connection is dropped */
	/* REQUEST_DRAIN and upload failures: the deferred answer */
	unsigned int error_status;
	char error_message[512];
	/* uploads */
	struct agent_user user;
	char path[PATH_MAX]; /* resolved ?path= ("" when absent) */
	int fd;
	char current_file[PATH_MAX];
	json_t *written; /* array of {name,type,path} */
	struct MHD_PostProcessor *post;
};

/* Sets the deferred error of a request (first one wins). */
void request__fail(struct request *request, unsigned int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* /files (files.c): called on the first call of a request to prepare it. */
void files__begin_upload(struct MHD_Connection *connection, struct request *request);
/* Consumes upload bytes of a /files POST. */
void files__upload_data(struct request *request, const char *data, size_t size);
/* Answers a finished /files POST. */
enum MHD_Result files__finish_upload(struct MHD_Connection *connection, struct request *request);
/* Answers GET /files. */
enum MHD_Result files__download(struct MHD_Connection *connection, const struct request *request);
/* Validates ?signature= for operation ("read"/"write"); 0 when valid, else
 * the HTTP status to answer, with a message in message. */
unsigned int files__check_signature(struct MHD_Connection *connection, const char *operation,
				    char *message, size_t message_len);

/* Connect RPC (rpc.c): answers POST /<service>/<method> with body. */
enum MHD_Result rpc__handle(struct MHD_Connection *connection, const char *url,
			    struct request *request);
/* True when url names a Connect procedure path this agent routes. */
bool rpc__is_rpc_path(const char *url);

/* Starts the HTTP server on listen ("host:port"); NULL on failure. */
struct MHD_Daemon *server__start(const char *listen);

#endif

/* server: the libmicrohttpd side of warren-agent, the one adapter layer
 * between the HTTP library and the process/filesystem logic: per-request
 * state, routing, authentication, the handlers' entry points and the
 * response helpers. Only server.c, rpc.c, files.c, stream.c and users.c
 * (users__for_request) include it. */
#ifndef WARREN_AGENT_SERVER_H
#define WARREN_AGENT_SERVER_H

#include <microhttpd.h>

#include "agent.h"
#include "gunzip.h"

/* Decoded bytes one gzip upload (Content-Encoding: gzip) may write. */
#define AGENT_MAX_GUNZIP_UPLOAD (1024ull * 1024 * 1024)

/* The user a request acts as: the query username, else (not for a signed
 * URL, whose user is only its signed username) the Basic auth user, else
 * the default. False when that user is unknown. */
bool users__for_request(struct MHD_Connection *connection, const char *username,
			bool signed_request, struct agent_user *out);

/* True when the client of a streaming response hung up (its socket polls
 * RDHUP/HUP/ERR); checked between frames. */
bool agent__peer_closed(struct MHD_Connection *connection);
/* A stream response starts on connection: no idle timeout while it runs
 * (its reader blocks until the next frame and notices a peer that went
 * away); request completion restores the idle timeout. */
void agent__stream_begins(struct MHD_Connection *connection);
/* Queues {"code":status,"message":...} as the response. */
enum MHD_Result agent__error_response(struct MHD_Connection *connection, unsigned int status,
				      const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Queues value as a JSON response with status (steals the reference). */
enum MHD_Result agent__json_response(struct MHD_Connection *connection, unsigned int status,
				     json_t *value);
/* Queues a response of len bytes from buf (copied) with a Content-Type. */
enum MHD_Result agent__buffer_response(struct MHD_Connection *connection, unsigned int status,
				       const char *content_type, const void *buf, size_t len);

enum request_kind {
	REQUEST_BODY = 1,    /* JSON or Connect body collected in memory (bounded) */
	REQUEST_UPLOAD_RAW,  /* POST /files application/octet-stream, streamed to disk */
	REQUEST_UPLOAD_FORM, /* POST /files multipart/form-data, streamed to disk */
	REQUEST_DRAIN,	     /* rejected early: body discarded, error answered at the end */
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
	struct gunzip *gunzip; /* Content-Encoding: gzip: the body is decoded first */
};

/* Sets the deferred error of a request (first one wins). */
void request__fail(struct request *request, unsigned int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* /files (files.c): called on the first call of a request to prepare it. */
void files__begin_upload(struct MHD_Connection *connection, struct request *request);
/* Consumes upload bytes of a /files POST (decoding gzip first). */
void files__upload_data(struct request *request, const char *data, size_t size);
/* Consumes decoded upload bytes: to the file or the multipart parser. */
void files__upload_plain(struct request *request, const char *data, size_t size);
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

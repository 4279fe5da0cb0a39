/* server: the interpreter's HTTP API (server.h). */
#include "server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "contexts.h"
#include "requests.h"
#include "warren/log.h"
#include "warren/net_address.h"
#include "warren/tokens.h"

#define SERVER_MAX_BODY	       (16u << 20) /* /execute: code up to 16 MiB */
#define SERVER_MAX_SMALL_BODY  (64u << 10)
#define SERVER_MAX_CONNECTIONS 64
#define SERVER_STEP_MS	       200

static struct {
	struct server_config config;
	struct MHD_Daemon *daemon;
} server;

struct request {
	char *body;
	size_t len;
	bool too_large;
};

/* The state of one streamed /execute response. */
struct stream {
	struct context *context;
	struct execution execution;
	struct line_buffer out;
	long long last_write_ms;
};

/* A cell silent this long gets a keepalive line (ignored by the SDK): a
 * write is how a client gone behind a proxy is noticed (the proxy then
 * closes our side), so its cell is interrupted. */
#define SERVER_KEEPALIVE_MS 1000

static long long monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool server__token_ok(const char *token)
{
	switch (server.config.token_hash.algorithm) {
	case TOKEN_HASH_NONE:
		return true; /* secure=false: open, like the agent */
	case TOKEN_HASH_SHA256:
	case TOKEN_HASH_SHA512:
		return tokens__digest_matches(
		    token, server.config.token_hash.algorithm == TOKEN_HASH_SHA512,
		    server.config.token_hash.hex);
	default:
		return false;
	}
}

static enum MHD_Result reply(struct MHD_Connection *connection, unsigned int status,
			     const char *type, const char *body)
{
	struct MHD_Response *response =
	    MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ret;

	if (!response)
		return MHD_NO;
	MHD_add_response_header(response, "Content-Type", type);
	ret = MHD_queue_response(connection, status, response);
	MHD_destroy_response(response);
	return ret;
}

/* Errors are plain text, like the upstream server's: the SDK puts the body
 * of a 404 into NotFoundError and shows status + text otherwise. */
static enum MHD_Result reply_error(struct MHD_Connection *connection, unsigned int status,
				   const char *message)
{
	return reply(connection, status, "text/plain; charset=utf-8", message);
}

static enum MHD_Result reply_json(struct MHD_Connection *connection, unsigned int status,
				  json_t *value)
{
	char *text = value ? json_dumps(value, JSON_COMPACT) : NULL;
	enum MHD_Result ret;

	json_decref(value);
	if (!text)
		return reply_error(connection, 500, "out of memory");
	ret = reply(connection, status, "application/json", text);
	free(text);
	return ret;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct stream *s = cls;

	while (s->out.sent == s->out.len) {
		int rc;

		s->out.sent = s->out.len = 0;
		if (s->execution.done)
			return MHD_CONTENT_READER_END_OF_STREAM;
		rc = kernel__execute_step(&s->execution, SERVER_STEP_MS, &s->out);
		if (rc < 0) {
			log_info("client left during an execution; interrupting");
			return MHD_CONTENT_READER_END_WITH_ERROR;
		}
		if (s->out.len == 0 && monotonic_ms() - s->last_write_ms >= SERVER_KEEPALIVE_MS)
			line_buffer__append(&s->out, strdup("{\"type\":\"keepalive\"}\n"));
	}
	s->last_write_ms = monotonic_ms();
	if (max > s->out.len - s->out.sent)
		max = s->out.len - s->out.sent;
	memcpy(buf, s->out.data + s->out.sent, max);
	s->out.sent += max;
	return (ssize_t)max;
}

/* The response is over (sent, failed or the client left). An unfinished
 * cell is interrupted; a dead kernel restarted before the next turn. */
static void stream_free(void *cls)
{
	struct stream *s = cls;
	char err[256];

	log_info("execute: %s (reply %d, idle %d, %zu bytes out, %d tries)",
		 s->execution.done ? "done" : "client left", s->execution.reply, s->execution.idle,
		 s->execution.output_bytes, s->execution.attempts);
	if (!s->execution.done && kernel__execute_abandon(&s->execution)) {
		log_warn("the interrupted cell did not end; restarting the kernel");
		s->execution.dead = true;
	}
	if (s->execution.dead && contexts__restart_acquired(s->context, err, sizeof(err)))
		log_error("restart after a dead kernel failed: %s", err);
	kernel__execute_clear(&s->execution);
	contexts__release(s->context);
	contexts__put(s->context);
	line_buffer__free(&s->out);
	free(s);
}

/* POST /execute {code, context_id?, language?, env_vars?}. */
static enum MHD_Result handle_execute(struct MHD_Connection *connection, const char *data,
				      size_t len)
{
	struct execute_request request;
	const union MHD_ConnectionInfo *info;
	struct MHD_Response *response;
	struct stream *s;
	char err[256];
	enum MHD_Result ret;
	int status = requests__execute(data, len, &request, err, sizeof(err));

	if (status)
		return reply_error(connection, (unsigned int)status, err);
	s = calloc(1, sizeof(*s));
	if (!s) {
		requests__execute_clear(&request);
		return reply_error(connection, 500, "out of memory");
	}
	s->context = contexts__get(request.context_id);
	if (!s->context) {
		snprintf(err, sizeof(err), "context %.64s not found",
			 request.context_id ? request.context_id : "default");
		requests__execute_clear(&request);
		free(s);
		return reply_error(connection, 404, err);
	}
	if (contexts__acquire(s->context, err, sizeof(err))) {
		requests__execute_clear(&request);
		contexts__put(s->context);
		free(s);
		return reply_error(connection, 500, err);
	}
	log_info("execute: context %s, %zu bytes of code", s->context->id, strlen(request.code));
	status = kernel__execute_begin(&s->context->kernel, request.code, request.env_vars,
				       &s->execution);
	requests__execute_clear(&request);
	if (status) {
		s->execution.done = true;
		stream_free(s);
		return reply_error(connection, 500, "cannot send the code to the kernel");
	}
	info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
	s->execution.client_fd = info ? info->connect_fd : -1;
	s->last_write_ms = monotonic_ms();
	response = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, stream_read, s,
						     stream_free);
	if (!response) {
		stream_free(s);
		return MHD_NO;
	}
	MHD_add_response_header(response, "Content-Type", "application/x-ndjson");
	ret = MHD_queue_response(connection, 200, response);
	MHD_destroy_response(response);
	return ret;
}

/* POST /contexts {language?, cwd?}. */
static enum MHD_Result handle_create_context(struct MHD_Connection *connection, const char *data,
					     size_t len)
{
	struct context_request request;
	struct context *c;
	char err[256];
	int status = requests__context(data, len, &request, err, sizeof(err));
	json_t *described;

	if (status)
		return reply_error(connection, (unsigned int)status, err);
	status = 500;
	c = contexts__create(request.language, request.cwd, false, &status, err, sizeof(err));
	requests__context_clear(&request);
	if (!c)
		return reply_error(connection, (unsigned int)status, err);
	described = contexts__describe(c);
	contexts__release(c);
	contexts__put(c);
	return reply_json(connection, 200, described);
}

/* /contexts/{id}[/restart|/interrupt] */
static enum MHD_Result handle_context(struct MHD_Connection *connection, const char *method,
				      const char *rest)
{
	char id[64], err[256];
	const char *action = strchr(rest, '/');
	size_t id_len = action ? (size_t)(action - rest) : strlen(rest);
	struct context *c;
	enum MHD_Result ret;

	if (id_len == 0 || id_len >= sizeof(id))
		return reply_error(connection, 404, "no such context");
	memcpy(id, rest, id_len);
	id[id_len] = '\0';
	c = contexts__get(id);
	if (!c) {
		snprintf(err, sizeof(err), "context %s not found", id);
		return reply_error(connection, 404, err);
	}
	if (!action && !strcmp(method, "DELETE")) {
		contexts__remove(c);
		ret = reply(connection, 204, "text/plain", "");
	} else if (action && !strcmp(action, "/restart") && !strcmp(method, "POST")) {
		kernel__interrupt(&c->kernel); /* a running cell must not block the restart */
		if (contexts__acquire(c, err, sizeof(err)) == 0) {
			int rc = kernel__alive(&c->kernel)
				     ? contexts__restart_acquired(c, err, sizeof(err))
				     : 0;

			contexts__release(c);
			ret = rc ? reply_error(connection, 500, err)
				 : reply(connection, 204, "text/plain", "");
		} else {
			ret = reply_error(connection, 500, err);
		}
	} else if (action && !strcmp(action, "/interrupt") && !strcmp(method, "POST")) {
		ret = kernel__interrupt(&c->kernel)
			  ? reply_error(connection, 500, "interrupt failed")
			  : reply(connection, 204, "text/plain", "");
	} else {
		ret = reply_error(connection, 405, "method not allowed");
	}
	contexts__put(c);
	return ret;
}

static enum MHD_Result route(struct MHD_Connection *connection, const char *url, const char *method,
			     const char *data, size_t len)
{
	const char *token =
	    MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "X-Access-Token");

	if (!strcmp(url, "/health"))
		return reply(connection, 200, "text/plain", "OK");
	/* The SDK sends the access token with /execute only; context calls
	 * are checked when they carry one (docs/code-interpreter.md). */
	if ((token || !strcmp(url, "/execute") || strstr(url, "/interrupt")) &&
	    !server__token_ok(token))
		return reply_error(connection, 401, "invalid or missing X-Access-Token");
	if (!strcmp(url, "/execute"))
		return strcmp(method, "POST") ? reply_error(connection, 405, "method not allowed")
					      : handle_execute(connection, data, len);
	if (!strcmp(url, "/contexts")) {
		if (!strcmp(method, "GET"))
			return reply_json(connection, 200, contexts__list());
		if (!strcmp(method, "POST"))
			return handle_create_context(connection, data, len);
		return reply_error(connection, 405, "method not allowed");
	}
	if (!strncmp(url, "/contexts/", 10))
		return handle_context(connection, method, url + 10);
	return reply_error(connection, 404, "not found");
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *connection, const char *url,
				      const char *method, const char *version,
				      const char *upload_data, size_t *upload_data_size,
				      void **con_cls)
{
	struct request *request = *con_cls;
	size_t limit = !strcmp(url, "/execute") ? SERVER_MAX_BODY : SERVER_MAX_SMALL_BODY;

	if (!request) {
		log_info("%s %s", method, url);
		request = calloc(1, sizeof(*request));
		if (!request)
			return MHD_NO;
		*con_cls = request;
		return MHD_YES;
	}
	if (*upload_data_size) {
		if (!request->too_large && request->len + *upload_data_size <= limit) {
			char *grown = realloc(request->body, request->len + *upload_data_size + 1);

			if (!grown)
				return MHD_NO;
			request->body = grown;
			memcpy(request->body + request->len, upload_data, *upload_data_size);
			request->len += *upload_data_size;
		} else {
			request->too_large = true;
		}
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (request->too_large)
		return reply_error(connection, 413, "request body too large");
	return route(connection, url, method, request->body ? request->body : "", request->len);
}

static void request_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
			      enum MHD_RequestTerminationCode code)
{
	struct request *request = *con_cls;

	if (!request)
		return;
	free(request->body);
	free(request);
	*con_cls = NULL;
}

int server__start(const struct server_config *config)
{
	struct sockaddr_in address = {.sin_family = AF_INET};
	char host[64];
	uint16_t port;

	server.config = *config;
	if (address__parse_host_port(config->listen, host, sizeof(host), &port) ||
	    inet_pton(AF_INET, host, &address.sin_addr) != 1) {
		log_error("--listen %s: expected an IPv4 HOST:PORT", config->listen);
		return -1;
	}
	address.sin_port = htons(port);
	/* A thread per connection: /execute blocks in its content reader
	 * until the kernel's next output. No connection timeout: a cell may
	 * run as long as the client waits (its hang-up interrupts it). */
	server.daemon = MHD_start_daemon(
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG, 0,
	    NULL, NULL, access_handler, NULL, MHD_OPTION_SOCK_ADDR,
	    (const struct sockaddr *)&address, MHD_OPTION_NOTIFY_COMPLETED, request_completed, NULL,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned int)SERVER_MAX_CONNECTIONS, MHD_OPTION_END);
	return server.daemon ? 0 : -1;
}

void server__stop(void)
{
	if (server.daemon)
		MHD_stop_daemon(server.daemon);
	server.daemon = NULL;
}

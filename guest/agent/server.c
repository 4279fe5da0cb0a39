/* server: HTTP routing and authentication of warren-agent. Routes (envd's
 * OpenAPI spec plus its Connect services, docs/e2b-compatibility.md "Agent"):
 *   GET /health, POST /init, GET /envs, GET|POST /files,
 *   POST /process.Process/<Method>, POST /filesystem.Filesystem/<Method>. */
#include "server.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "forward.h"
#include "warren/clock.h"
#include "warren/log.h"
#include "warren/net_address.h"
#include "warren/tokens.h"

struct agent_state agent = {.lock = PTHREAD_MUTEX_INITIALIZER,
			    .idle_timeout_s = AGENT_IDLE_TIMEOUT_S,
			    .gunzip_limit = AGENT_MAX_GUNZIP_UPLOAD};

bool agent__token_matches_hash(const char *token)
{
	if (agent.token_hash.algorithm != TOKEN_HASH_SHA256 &&
	    agent.token_hash.algorithm != TOKEN_HASH_SHA512)
		return false;
	return tokens__digest_matches(token, agent.token_hash.algorithm == TOKEN_HASH_SHA512,
				      agent.token_hash.hex);
}

/* agent__token_ok with agent.lock held. */
static bool agent__token_ok_locked(const char *token_header)
{
	if (agent.token_set)
		return token_header && tokens__equal(token_header, agent.token);
	if (agent.token_hash.algorithm != TOKEN_HASH_NONE)
		return agent__token_matches_hash(token_header);
	return true; /* secure=false and no /init token: envd is open */
}

bool agent__token_ok(const char *token_header)
{
	bool ok;

	pthread_mutex_lock(&agent.lock);
	ok = agent__token_ok_locked(token_header);
	pthread_mutex_unlock(&agent.lock);
	return ok;
}

bool agent__current_token(char *out, size_t out_len)
{
	bool set;

	pthread_mutex_lock(&agent.lock);
	set = agent.token_set;
	if (set)
		snprintf(out, out_len, "%s", agent.token);
	pthread_mutex_unlock(&agent.lock);
	return set;
}

enum MHD_Result agent__buffer_response(struct MHD_Connection *connection, unsigned int status,
				       const char *content_type, const void *buf, size_t len)
{
	struct MHD_Response *response;
	enum MHD_Result ret;

	response = MHD_create_response_from_buffer(len, (void *)buf, MHD_RESPMEM_MUST_COPY);
	if (!response)
		return MHD_NO;
	if (content_type)
		MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	ret = MHD_queue_response(connection, status, response);
	MHD_destroy_response(response);
	return ret;
}

bool agent__peer_closed(struct MHD_Connection *connection)
{
	const union MHD_ConnectionInfo *info =
	    MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct pollfd pfd;

	if (!info)
		return false;
	pfd = (struct pollfd){.fd = info->connect_fd, .events = POLLRDHUP};
	return poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

void agent__stream_begins(struct MHD_Connection *connection)
{
	MHD_set_connection_option(connection, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned int)0);
}

enum MHD_Result agent__json_response(struct MHD_Connection *connection, unsigned int status,
				     json_t *value)
{
	char *text = json_dumps(value, JSON_COMPACT);
	enum MHD_Result ret;

	json_decref(value);
	if (!text)
		return MHD_NO;
	ret = agent__buffer_response(connection, status, "application/json", text, strlen(text));
	free(text);
	return ret;
}

enum MHD_Result agent__error_response(struct MHD_Connection *connection, unsigned int status,
				      const char *fmt, ...)
{
	char message[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	return agent__json_response(
	    connection, status, json_pack("{s:i,s:s}", "code", (int)status, "message", message));
}

void request__fail(struct request *request, unsigned int status, const char *fmt, ...)
{
	va_list ap;

	if (request->error_status)
		return;
	request->error_status = status;
	va_start(ap, fmt);
	vsnprintf(request->error_message, sizeof(request->error_message), fmt, ap);
	va_end(ap);
}

static void body_append(struct request *request, const char *data, size_t size)
{
	size_t want;
	char *grown;

	if (request->body_too_large)
		return;
	if (size > request->body_limit - request->body_len) {
		request->body_too_large = true;
		return;
	}
	want = request->body_len + size + 1;
	if (want > request->body_cap) {
		size_t cap = request->body_cap ? request->body_cap : 4096;
		while (cap < want)
			cap *= 2;
		grown = realloc(request->body, cap);
		if (!grown) {
			request->body_too_large = true;
			return;
		}
		request->body = grown;
		request->body_cap = cap;
	}
	memcpy(request->body + request->body_len, data, size);
	request->body_len += size;
	request->body[request->body_len] = '\0';
}

/* A host name of 1..63 letters, digits, '-' and '.'. */
static bool agent__hostname_valid(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > 63)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)name[i]) && name[i] != '-' && name[i] != '.')
			return false;
	return true;
}

/* The token part of POST /init, with agent.lock held: an access token
 * is taken when it is the one held, or hashes to --token-hash before any
 * is held. With "replaceAccessToken": true, a request whose X-Access-Token
 * proves the current credential replaces the token (with none when
 * accessToken is null or absent: the API is then open): a guest restored
 * from another sandbox's snapshot holds that sandbox's token until its
 * worker hands over its own (guest/agent/README.md). False: refused. */
static bool agent__init_token(const char *access_token, bool replace, const char *header)
{
	bool guarded = agent.token_set || agent.token_hash.algorithm != TOKEN_HASH_NONE;

	if (replace && guarded && header && agent__token_ok_locked(header)) {
		snprintf(agent.token, sizeof(agent.token), "%s", access_token ? access_token : "");
		agent.token_set = access_token != NULL;
		agent.token_hash.algorithm = TOKEN_HASH_NONE;
		log_info("/init: access token %s by the holder of the previous one",
			 access_token ? "replaced" : "removed");
		return true;
	}
	if (agent.token_set) {
		if ((access_token && tokens__equal(access_token, agent.token)) ||
		    (!access_token && header && tokens__equal(header, agent.token)))
			return true;
		log_warn("/init with a different access token refused");
		return false;
	}
	if (agent.token_hash.algorithm != TOKEN_HASH_NONE) {
		if (!agent__token_matches_hash(access_token)) {
			log_warn("/init token does not match the configured hash, refused");
			return false;
		}
		snprintf(agent.token, sizeof(agent.token), "%s", access_token);
		agent.token_set = true;
		log_info("/init: access token accepted");
	} else if (access_token) {
		/* secure=false: envd still adopts a token it is given. */
		snprintf(agent.token, sizeof(agent.token), "%s", access_token);
		agent.token_set = true;
		log_info("/init: access token set (no hash was configured)");
	}
	return true;
}

/* /init's "timestamp" (Unix ms): a clock more than a second off is set to
 * it (a guest restored from a snapshot wakes up with the time it was
 * saved at). */
static void agent__set_clock(const json_t *timestamp)
{
	struct timespec to;
	long long wanted_ms = json_is_integer(timestamp) ? json_integer_value(timestamp) : 0;
	long long now_ms = (long long)clock__realtime_ms();

	if (wanted_ms <= 0 || llabs(now_ms - wanted_ms) <= 1000)
		return;
	to.tv_sec = (time_t)(wanted_ms / 1000);
	to.tv_nsec = (long)(wanted_ms % 1000) * 1000000;
	if (clock_settime(CLOCK_REALTIME, &to))
		log_warn("/init: setting the clock: %s", strerror(errno));
	else
		log_info("/init: clock set (it was %lld ms off)", now_ms - wanted_ms);
}

/* /init's "entropy" (hex, at most 64 bytes): mixed into the kernel's pool
 * as credited entropy and the generator reseeded from it, so guests
 * restored from one snapshot part ways (random(4), RNDADDENTROPY). */
static void agent__add_entropy(const json_t *entropy)
{
	struct {
		struct rand_pool_info info;
		unsigned char bytes[64];
	} pool;
	const char *hex = json_string_value(entropy);
	size_t length = 0;
	int fd;

	/* hex without separators; longer than the buffer or odd: refused */
	if (!hex || !OPENSSL_hexstr2buf_ex(pool.bytes, sizeof(pool.bytes), &length, hex, '\0') ||
	    length == 0)
		return;
	pool.info.entropy_count = (int)(length * 8);
	pool.info.buf_size = (int)length;
	fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
	if (fd < 0 || ioctl(fd, RNDADDENTROPY, &pool.info) || ioctl(fd, RNDRESEEDCRNG))
		log_warn("/init: reseeding the random generator: %s", strerror(errno));
	else
		log_info("/init: %zu bytes of entropy added, the random generator reseeded",
			 length);
	if (fd >= 0)
		close(fd);
	explicit_bzero(&pool, sizeof(pool));
}

/* POST /init: the orchestrator hands over the access token, env vars and
 * defaults (the token rules: agent__init_token). */
static enum MHD_Result handle_init(struct MHD_Connection *connection, struct request *request)
{
	const char *header =
	    MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "X-Access-Token");
	const char *access_token = NULL, *key;
	json_t *body = NULL, *value, *env_vars, *user, *workdir;
	json_error_t error;
	enum MHD_Result ret;

	if (request->body_len > 0) {
		body = json_loadb(request->body, request->body_len, 0, &error);
		if (!json_is_object(body)) {
			json_decref(body);
			return agent__error_response(connection, MHD_HTTP_BAD_REQUEST,
						     "invalid /init body: %s", error.text);
		}
		value = json_object_get(body, "accessToken");
		if (json_is_string(value) && json_string_length(value) > 0 &&
		    json_string_length(value) < AGENT_MAX_TOKEN &&
		    strlen(json_string_value(value)) == json_string_length(value))
			access_token = json_string_value(value);
		else if (value && !json_is_null(value) && !json_is_string(value)) {
			json_decref(body);
			return agent__error_response(connection, MHD_HTTP_BAD_REQUEST,
						     "accessToken must be a string");
		}
	}

	pthread_mutex_lock(&agent.lock);
	if (!agent__init_token(access_token,
			       json_is_true(json_object_get(body, "replaceAccessToken")), header)) {
		pthread_mutex_unlock(&agent.lock);
		ret = agent__error_response(connection, MHD_HTTP_UNAUTHORIZED,
					    "access token does not match");
		goto out;
	}
	forward__activity(); /* the sandbox is taken into use (a create, a claim) */
	env_vars = json_object_get(body, "envVars");
	if (json_is_object(env_vars)) {
		json_object_foreach(env_vars, key, value)
		{
			if (json_is_string(value) && key[0] && !strchr(key, '=') &&
			    strlen(json_string_value(value)) == json_string_length(value))
				json_object_set(agent.env_vars, key, value);
		}
	}
	user = json_object_get(body, "defaultUser");
	if (json_is_string(user) && json_string_length(user) > 0 &&
	    json_string_length(user) < sizeof(agent.default_user))
		snprintf(agent.default_user, sizeof(agent.default_user), "%s",
			 json_string_value(user));
	/* warren's own member: a sandbox started ahead of its create (a warm
	 * pool's) learns its name here (guest/agent/README.md). */
	value = json_object_get(body, "hostname");
	if (json_is_string(value) && agent__hostname_valid(json_string_value(value)) &&
	    sethostname(json_string_value(value), json_string_length(value)))
		log_warn("/init: sethostname: %s", strerror(errno));
	workdir = json_object_get(body, "defaultWorkdir");
	if (json_is_string(workdir) && json_string_length(workdir) > 0 &&
	    json_string_length(workdir) < sizeof(agent.default_workdir))
		snprintf(agent.default_workdir, sizeof(agent.default_workdir), "%s",
			 json_string_value(workdir));
	pthread_mutex_unlock(&agent.lock);
	/* envd sets the clock from "timestamp"; so does a vm guest's agent (a
	 * restored guest's clock is behind), never a jail's (the host's). */
	if (agent.owns_machine) {
		agent__set_clock(json_object_get(body, "timestamp"));
		agent__add_entropy(json_object_get(body, "entropy"));
	}
	ret = agent__buffer_response(connection, MHD_HTTP_NO_CONTENT, NULL, "", 0);
out:
	json_decref(body);
	return ret;
}

static enum MHD_Result handle_envs(struct MHD_Connection *connection)
{
	json_t *copy;

	pthread_mutex_lock(&agent.lock);
	copy = json_deep_copy(agent.env_vars);
	pthread_mutex_unlock(&agent.lock);
	return agent__json_response(connection, MHD_HTTP_OK, copy);
}

static bool is_post(const char *method)
{
	return strcmp(method, MHD_HTTP_METHOD_POST) == 0;
}

static bool is_get(const char *method)
{
	return strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
	       strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
}

/* First call of a request: authenticate and choose how to take its body.
 * A request refused here (kind REQUEST_DRAIN) is answered at once, before
 * any of its body is read. */
static void request_begin(struct MHD_Connection *connection, const char *url, const char *method,
			  struct request *request)
{
	const char *token =
	    MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "X-Access-Token");
	const char *signature =
	    MHD_lookup_connection_value(connection, MHD_GET_ARGUMENT_KIND, "signature");
	char message[256];
	unsigned int status;

	request->kind = REQUEST_BODY;
	request->body_limit = AGENT_MAX_JSON_BODY;
	if (strcmp(url, "/init") == 0 && !agent__token_ok(token)) {
		/* Its body carries the token, so it must be read: briefly. */
		request->body_limit = AGENT_UNAUTH_INIT_BODY;
		request->body_deadline_ms = clock__monotonic_ms() + AGENT_UNAUTH_INIT_S * 1000;
		MHD_set_connection_option(connection, MHD_CONNECTION_OPTION_TIMEOUT,
					  (unsigned int)AGENT_UNAUTH_INIT_S);
	}
	if (strcmp(url, "/health") == 0 || strcmp(url, "/init") == 0)
		return;
	if (strcmp(url, "/files") == 0 && signature) {
		request->signed_url = true;
		status = files__check_signature(connection, is_post(method) ? "write" : "read",
						message, sizeof(message));
		if (status) {
			request->kind = REQUEST_DRAIN;
			request__fail(request, status, "%s", message);
			return;
		}
	} else if (!agent__token_ok(token)) {
		request->kind = REQUEST_DRAIN;
		request__fail(request, MHD_HTTP_UNAUTHORIZED, "%s",
			      token ? "invalid access token" : "missing access token");
		return;
	}
	if (strcmp(url, "/files") == 0 && is_post(method))
		files__begin_upload(connection, request);
}

/* Answers a request refused on its first call, before its body: the
 * response says Connection: close, and libmicrohttpd, seeing a response
 * while upload bytes are still due, stops reading and closes after it. */
static enum MHD_Result request_refuse_now(struct MHD_Connection *connection,
					  const struct request *request)
{
	json_t *body = json_pack("{s:i,s:s}", "code", (int)request->error_status, "message",
				 request->error_message);
	struct MHD_Response *response;
	enum MHD_Result ret;
	char *text;

	text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (!text)
		return MHD_NO;
	response = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
	if (!response) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(response, MHD_HTTP_HEADER_CONNECTION, "close");
	ret = MHD_queue_response(connection, request->error_status, response);
	MHD_destroy_response(response);
	return ret;
}

static enum MHD_Result request_finish(struct MHD_Connection *connection, const char *url,
				      const char *method, struct request *request)
{
	if (request->kind == REQUEST_DRAIN)
		return agent__error_response(connection, request->error_status, "%s",
					     request->error_message);
	if (request->kind == REQUEST_UPLOAD_RAW || request->kind == REQUEST_UPLOAD_FORM)
		return files__finish_upload(connection, request);
	if (request->body_too_large)
		return agent__error_response(connection, MHD_HTTP_CONTENT_TOO_LARGE,
					     "request body larger than %zu bytes",
					     request->body_limit);
	if (strcmp(url, "/health") == 0) {
		if (!is_get(method))
			goto not_allowed;
		return agent__buffer_response(connection, MHD_HTTP_NO_CONTENT, NULL, "", 0);
	}
	if (strcmp(url, "/init") == 0) {
		if (!is_post(method))
			goto not_allowed;
		return handle_init(connection, request);
	}
	if (strcmp(url, "/envs") == 0) {
		if (!is_get(method))
			goto not_allowed;
		return handle_envs(connection);
	}
	if (strcmp(url, "/files") == 0) {
		if (!is_get(method))
			goto not_allowed;
		return files__download(connection, request);
	}
	if (rpc__is_rpc_path(url))
		return rpc__handle(connection, url, request);
	return agent__error_response(connection, MHD_HTTP_NOT_FOUND, "no route for %.200s", url);
not_allowed:
	return agent__error_response(connection, MHD_HTTP_METHOD_NOT_ALLOWED,
				     "method %.16s not allowed on %.200s", method, url);
}

/* True when the request announces a body (Content-Length > 0 or a
 * Transfer-Encoding). /health needs none: such a request is answered at
 * once and its connection closed instead of waiting for the body. A
 * bodiless one goes the usual way, which keeps its connection alive. */
static bool declares_body(struct MHD_Connection *connection)
{
	const char *length = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
							 MHD_HTTP_HEADER_CONTENT_LENGTH);

	return (length && strcmp(length, "0") != 0) ||
	       MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
					   MHD_HTTP_HEADER_TRANSFER_ENCODING);
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *connection, const char *url,
				      const char *method, const char *version,
				      const char *upload_data, size_t *upload_data_size,
				      void **con_cls)
{
	struct request *request = *con_cls;

	if (!request) {
		request = calloc(1, sizeof(*request));
		if (!request)
			return MHD_NO;
		request->fd = -1;
		*con_cls = request;
		request_begin(connection, url, method, request);
		if (request->kind == REQUEST_DRAIN && request->error_status)
			return request_refuse_now(connection, request);
		if (strcmp(url, "/health") == 0 && declares_body(connection))
			return request_finish(connection, url, method, request); /* and close */
		return MHD_YES;
	}
	if (*upload_data_size) {
		if (request->body_deadline_ms &&
		    clock__monotonic_ms() > request->body_deadline_ms) {
			log_debug(
			    "unauthenticated body still arriving after %d s: connection dropped",
			    AGENT_UNAUTH_INIT_S);
			return MHD_NO;
		}
		switch (request->kind) {
		case REQUEST_BODY:
			body_append(request, upload_data, *upload_data_size);
			break;
		case REQUEST_UPLOAD_RAW:
		case REQUEST_UPLOAD_FORM:
			files__upload_data(request, upload_data, *upload_data_size);
			break;
		case REQUEST_DRAIN:
			break;
		}
		*upload_data_size = 0;
		return MHD_YES;
	}
	return request_finish(connection, url, method, request);
}

static void request_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
			      enum MHD_RequestTerminationCode code)
{
	struct request *request = *con_cls;

	/* A stream lifted the idle timeout; the next request on a kept-alive
	 * connection has it again. */
	MHD_set_connection_option(connection, MHD_CONNECTION_OPTION_TIMEOUT, agent.idle_timeout_s);
	if (!request)
		return;
	if (request->post)
		MHD_destroy_post_processor(request->post);
	if (request->fd >= 0)
		close(request->fd);
	json_decref(request->written);
	gunzip__free(request->gunzip);
	free(request->body);
	free(request);
	*con_cls = NULL;
}

struct MHD_Daemon *server__start(const char *listen)
{
	struct sockaddr_in address = {.sin_family = AF_INET};
	char host[64];
	uint16_t port;

	if (address__parse_host_port(listen, host, sizeof(host), &port) || port == 0 ||
	    inet_pton(AF_INET, host, &address.sin_addr) != 1) {
		log_error("--listen %s: expected an IPv4 HOST:PORT", listen);
		return NULL;
	}
	address.sin_port = htons(port);
	/* A thread per connection: stream responses (process output,
	 * WatchDir) block in their content readers until the next frame. The
	 * threads are bounded by the connection caps; idle connections (slow
	 * headers, stalled bodies, unused keep-alive) go after the timeout. */
	return MHD_start_daemon(
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG, 0,
	    NULL, NULL, access_handler, NULL, MHD_OPTION_SOCK_ADDR,
	    (const struct sockaddr *)&address, MHD_OPTION_NOTIFY_COMPLETED, request_completed, NULL,
	    MHD_OPTION_CONNECTION_TIMEOUT, agent.idle_timeout_s, MHD_OPTION_CONNECTION_LIMIT,
	    (unsigned int)AGENT_MAX_CONNECTIONS, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
	    (unsigned int)AGENT_MAX_CONNECTIONS_PER_IP, MHD_OPTION_LISTENING_ADDRESS_REUSE,
	    (unsigned int)1, MHD_OPTION_END);
}

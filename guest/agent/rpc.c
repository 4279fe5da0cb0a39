/* rpc: the Connect protocol (connectrpc.com/docs/protocol) with the JSON
 * codec, as the npm e2b SDK uses it (createConnectTransport with
 * useBinaryFormat: false): unary calls are POST application/json bodies
 * answered with application/json, errors as {"code","message"} with the
 * mapped HTTP status; server-streaming calls are POST
 * application/connect+json with one enveloped request, answered with
 * enveloped messages and an end-stream frame (flag 0x02). */
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "filesystem.h"
#include "gunzip.h"
#include "process.h"
#include "watch.h"
#include "warren/log.h"

enum rpc_kind { RPC_UNARY, RPC_SERVER_STREAM };

typedef json_t *(*unary_handler)(const json_t *request, const struct agent_user *user,
				 struct rpc_error *err);

struct rpc_method {
	const char *path;
	enum rpc_kind kind;
	unary_handler unary; /* NULL for streams and for unimplemented methods */
	bool implemented;
};

static json_t *process_list(const json_t *request, const struct agent_user *user,
			    struct rpc_error *err)
{
	return process__list();
}

static bool selector_from(const json_t *request, struct process_selector *selector,
			  struct rpc_error *err)
{
	const json_t *process = json_object_get(request, "process");

	if (!wire__parse_selector(process ? process : json_null(), selector, err->message,
				  sizeof(err->message))) {
		err->code = "invalid_argument";
		return false;
	}
	return true;
}

static json_t *process_send_input(const json_t *request, const struct agent_user *user,
				  struct rpc_error *err)
{
	struct process_selector selector;
	const json_t *input = json_object_get(request, "input"), *data;
	uint8_t *bytes;
	long len;
	json_t *result = NULL;

	bool to_pty;

	if (!selector_from(request, &selector, err))
		return NULL;
	data = json_object_get(input, "stdin");
	to_pty = !data;
	if (to_pty)
		data = json_object_get(input, "pty");
	if (!json_is_string(data)) {
		err->code = "invalid_argument";
		snprintf(err->message, sizeof(err->message),
			 "input.stdin or input.pty must be base64 bytes");
		return NULL;
	}
	bytes = malloc(json_string_length(data) + 1);
	if (!bytes) {
		err->code = "resource_exhausted";
		snprintf(err->message, sizeof(err->message), "out of memory");
		return NULL;
	}
	len = wire__base64_decode(json_string_value(data), json_string_length(data), bytes,
				  json_string_length(data) + 1);
	if (len < 0) {
		err->code = "invalid_argument";
		snprintf(err->message, sizeof(err->message), "input.stdin is not valid base64");
	} else if (process__send_input(&selector, bytes, (size_t)len, to_pty, err)) {
		result = json_object();
	}
	free(bytes);
	return result;
}

/* A PTY's {"size":{"cols","rows"}} into cols/rows: each 1..PROCESS_PTY_MAX_SIZE. */
static bool pty_size_from(const json_t *pty, unsigned short *cols, unsigned short *rows,
			  struct rpc_error *err)
{
	const json_t *size = json_object_get(pty, "size");
	const json_t *cols_value = json_object_get(size, "cols");
	const json_t *rows_value = json_object_get(size, "rows");

	if (!json_is_integer(cols_value) || !json_is_integer(rows_value) ||
	    json_integer_value(cols_value) < 1 ||
	    json_integer_value(cols_value) > PROCESS_PTY_MAX_SIZE ||
	    json_integer_value(rows_value) < 1 ||
	    json_integer_value(rows_value) > PROCESS_PTY_MAX_SIZE) {
		err->code = "invalid_argument";
		snprintf(err->message, sizeof(err->message), "pty.size needs cols and rows of 1-%d",
			 PROCESS_PTY_MAX_SIZE);
		return false;
	}
	*cols = (unsigned short)json_integer_value(cols_value);
	*rows = (unsigned short)json_integer_value(rows_value);
	return true;
}

/* Update: only resizes a PTY (the request's only field besides the process). */
static json_t *process_update(const json_t *request, const struct agent_user *user,
			      struct rpc_error *err)
{
	struct process_selector selector;
	const json_t *pty = json_object_get(request, "pty");
	unsigned short cols, rows;

	if (!selector_from(request, &selector, err))
		return NULL;
	if (!pty || json_is_null(pty))
		return json_object(); /* nothing to change */
	if (!pty_size_from(pty, &cols, &rows, err))
		return NULL;
	return process__resize(&selector, cols, rows, err) ? json_object() : NULL;
}

static json_t *process_close_stdin(const json_t *request, const struct agent_user *user,
				   struct rpc_error *err)
{
	struct process_selector selector;

	if (!selector_from(request, &selector, err))
		return NULL;
	return process__close_stdin(&selector, err) ? json_object() : NULL;
}

static json_t *process_send_signal(const json_t *request, const struct agent_user *user,
				   struct rpc_error *err)
{
	struct process_selector selector;
	int signal_number;

	if (!selector_from(request, &selector, err))
		return NULL;
	signal_number = wire__parse_signal(json_object_get(request, "signal"));
	if (!signal_number) {
		err->code = "invalid_argument";
		snprintf(err->message, sizeof(err->message),
			 "signal must be SIGNAL_SIGKILL or SIGNAL_SIGTERM");
		return NULL;
	}
	return process__signal(&selector, signal_number, err) ? json_object() : NULL;
}

static const struct rpc_method methods[] = {
    {"/process.Process/List", RPC_UNARY, process_list, true},
    {"/process.Process/Start", RPC_SERVER_STREAM, NULL, true},
    {"/process.Process/Connect", RPC_SERVER_STREAM, NULL, true},
    {"/process.Process/SendInput", RPC_UNARY, process_send_input, true},
    {"/process.Process/SendSignal", RPC_UNARY, process_send_signal, true},
    {"/process.Process/CloseStdin", RPC_UNARY, process_close_stdin, true},
    {"/process.Process/Update", RPC_UNARY, process_update, true},
    {"/process.Process/StreamInput", RPC_UNARY, NULL, false}, /* client streaming */
    {"/filesystem.Filesystem/Stat", RPC_UNARY, filesystem__stat, true},
    {"/filesystem.Filesystem/MakeDir", RPC_UNARY, filesystem__make_dir, true},
    {"/filesystem.Filesystem/Move", RPC_UNARY, filesystem__move, true},
    {"/filesystem.Filesystem/ListDir", RPC_UNARY, filesystem__list_dir, true},
    {"/filesystem.Filesystem/Remove", RPC_UNARY, filesystem__remove, true},
    {"/filesystem.Filesystem/WatchDir", RPC_SERVER_STREAM, NULL, true},
    {"/filesystem.Filesystem/CreateWatcher", RPC_UNARY, watch__create_watcher, true},
    {"/filesystem.Filesystem/GetWatcherEvents", RPC_UNARY, watch__get_watcher_events, true},
    {"/filesystem.Filesystem/RemoveWatcher", RPC_UNARY, watch__remove_watcher, true},
};

bool rpc__is_rpc_path(const char *url)
{
	/* "/package.Service/Method" */
	const char *dot = strchr(url + 1, '.'), *slash = strchr(url + 1, '/');

	return url[0] == '/' && dot && slash && dot < slash && slash[1] != '\0';
}

/* HTTP status of a Connect error code (protocol spec, "Error Codes"). */
static unsigned int http_status_for(const char *code)
{
	static const struct {
		const char *code;
		unsigned int status;
	} table[] = {
	    {"canceled", 499},
	    {"unknown", 500},
	    {"invalid_argument", 400},
	    {"deadline_exceeded", 504},
	    {"not_found", 404},
	    {"already_exists", 409},
	    {"permission_denied", 403},
	    {"resource_exhausted", 429},
	    {"failed_precondition", 400},
	    {"aborted", 409},
	    {"out_of_range", 400},
	    {"unimplemented", 501},
	    {"internal", 500},
	    {"unavailable", 503},
	    {"data_loss", 500},
	    {"unauthenticated", 401},
	};
	size_t i;

	for (i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (strcmp(table[i].code, code) == 0)
			return table[i].status;
	return 500;
}

static enum MHD_Result unary_error(struct MHD_Connection *connection, unsigned int status,
				   const struct rpc_error *err)
{
	return agent__json_response(
	    connection, status ? status : http_status_for(err->code),
	    json_pack("{s:s,s:s}", "code", err->code, "message", err->message));
}

/* A whole streaming response that is only an end-stream frame with error. */
static enum MHD_Result stream_error(struct MHD_Connection *connection, const struct rpc_error *err)
{
	json_t *end =
	    json_pack("{s:{s:s,s:s}}", "error", "code", err->code, "message", err->message);
	char *text = json_dumps(end, JSON_COMPACT);
	size_t len = text ? strlen(text) : 0;
	uint8_t *frame = malloc(ENVELOPE_HEADER_LEN + len);
	enum MHD_Result ret = MHD_NO;

	json_decref(end);
	if (text && frame) {
		envelope__write_header(frame, ENVELOPE_FLAG_END_STREAM, (uint32_t)len);
		memcpy(frame + ENVELOPE_HEADER_LEN, text, len);
		ret = agent__buffer_response(connection, MHD_HTTP_OK, "application/connect+json",
					     frame, ENVELOPE_HEADER_LEN + len);
	}
	free(text);
	free(frame);
	return ret;
}

static int keepalive_seconds(struct MHD_Connection *connection)
{
	const char *value =
	    MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "Keepalive-Ping-Interval");
	long seconds;

	if (!value)
		return 90; /* envd's default ping interval */
	seconds = strtol(value, NULL, 10);
	if (seconds < 1)
		return 0;
	return seconds > 3600 ? 3600 : (int)seconds;
}

/* Connect-Timeout-Ms (Connect protocol: at most 10 digits); 0 = none. */
static long long connect_timeout_ms(struct MHD_Connection *connection)
{
	const char *value =
	    MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "Connect-Timeout-Ms");
	long long ms = 0;
	size_t i;

	if (!value || !*value || strlen(value) > 10)
		return 0;
	for (i = 0; value[i]; i++) {
		if (value[i] < '0' || value[i] > '9')
			return 0;
		ms = ms * 10 + (value[i] - '0');
	}
	return ms;
}

static enum MHD_Result process_start(struct MHD_Connection *connection, const json_t *request,
				     const struct agent_user *user)
{
	struct rpc_error err = {0};
	struct process_config config;
	struct process_request start;
	struct subscriber *subscriber = NULL;
	struct stream_source source;
	const json_t *process = json_object_get(request, "process");
	const json_t *tag = json_object_get(request, "tag"), *stdin_value, *pty;
	char default_workdir[PATH_MAX];
	bool stdin_pipe = true, started;
	unsigned short cols = 0, rows = 0;

	pty = json_object_get(request, "pty");
	if (pty && !json_is_null(pty) && !pty_size_from(pty, &cols, &rows, &err))
		return stream_error(connection, &err);
	if (tag && !json_is_null(tag) &&
	    (!json_is_string(tag) || json_string_length(tag) == 0 ||
	     json_string_length(tag) > 255 ||
	     strlen(json_string_value(tag)) != json_string_length(tag))) {
		err.code = "invalid_argument";
		snprintf(err.message, sizeof(err.message), "tag must be a string of 1-255 bytes");
		return stream_error(connection, &err);
	}
	stdin_value = json_object_get(request, "stdin");
	if (json_is_boolean(stdin_value))
		stdin_pipe = json_is_true(stdin_value);
	if (!wire__parse_process_config(process ? process : json_null(), &config, err.message,
					sizeof(err.message))) {
		err.code = "invalid_argument";
		return stream_error(connection, &err);
	}
	start = (struct process_request){
	    .config = &config,
	    .config_json = process,
	    .tag = json_is_string(tag) ? json_string_value(tag) : NULL,
	    .stdin_pipe = stdin_pipe,
	    .pty = pty && !json_is_null(pty),
	    .pty_cols = cols,
	    .pty_rows = rows,
	    .timeout_ms = connect_timeout_ms(connection),
	    .user = user,
	    .default_workdir = default_workdir,
	};
	/* /init's settings as they are now (a copy: /init may change them). */
	pthread_mutex_lock(&agent.lock);
	start.env_vars = json_deep_copy(agent.env_vars);
	snprintf(default_workdir, sizeof(default_workdir), "%s", agent.default_workdir);
	pthread_mutex_unlock(&agent.lock);
	started = process__start(&start, &subscriber, &err);
	json_decref((json_t *)start.env_vars);
	wire__process_config_free(&config);
	if (!started) {
		log_info("Start failed: %s", err.message);
		return stream_error(connection, &err);
	}
	process__stream_source(subscriber, &source);
	return (enum MHD_Result)stream__respond(connection, &source, keepalive_seconds(connection));
}

static enum MHD_Result process_connect(struct MHD_Connection *connection, const json_t *request)
{
	struct rpc_error err = {0};
	struct process_selector selector;
	struct subscriber *subscriber = NULL;
	struct stream_source source;

	if (!selector_from(request, &selector, &err) ||
	    !process__connect(&selector, &subscriber, &err))
		return stream_error(connection, &err);
	process__stream_source(subscriber, &source);
	return (enum MHD_Result)stream__respond(connection, &source, keepalive_seconds(connection));
}

/* A request message compressed with encoding (the Content-Encoding of a
 * unary call, the Connect-Content-Encoding of a stream; NULL = none) into
 * *decoded (malloc'ed, NULL when it was not compressed). Decoded messages
 * are bounded like plain ones. False with err otherwise. */
static bool decode_message(const char *encoding, bool compressed, const uint8_t *message,
			   size_t message_len, uint8_t **decoded, size_t *decoded_len,
			   struct rpc_error *err)
{
	enum gunzip_result result;

	*decoded = NULL;
	if (!compressed)
		return true;
	if (!encoding || strcasecmp(encoding, "gzip") != 0) {
		err->code = encoding && strcasecmp(encoding, "identity") != 0 ? "unimplemented"
									      : "invalid_argument";
		snprintf(err->message, sizeof(err->message),
			 "compressed message with encoding '%.32s' (only gzip is supported)",
			 encoding ? encoding : "identity");
		return false;
	}
	result = gunzip__buffer(message, message_len, AGENT_MAX_JSON_BODY, decoded, decoded_len);
	if (result == GUNZIP_OK)
		return true;
	err->code = result == GUNZIP_TOO_LARGE ? "resource_exhausted" : "invalid_argument";
	snprintf(err->message, sizeof(err->message), "%s (at most %d bytes decoded)",
		 gunzip__strerror(result), AGENT_MAX_JSON_BODY);
	return false;
}

enum MHD_Result rpc__handle(struct MHD_Connection *connection, const char *url,
			    struct request *request)
{
	const char *content_type =
	    MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	const char *encoding = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
							   MHD_HTTP_HEADER_CONTENT_ENCODING);
	const struct rpc_method *method = NULL;
	struct rpc_error err = {0};
	uint8_t *decoded = NULL;
	size_t decoded_len = 0;
	bool compressed = false;
	struct agent_user user;
	const uint8_t *message = (const uint8_t *)"{}";
	size_t message_len = 2, i;
	enum envelope_result envelope;
	json_error_t json_error;
	json_t *body, *result;
	enum MHD_Result ret;

	for (i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (strcmp(methods[i].path, url) == 0)
			method = &methods[i];
	if (!method || !method->implemented) {
		err.code = "unimplemented";
		snprintf(err.message, sizeof(err.message), "%.200s is not implemented", url);
		/* connect-go answers an unknown procedure with 404. */
		return unary_error(connection, method ? 501 : MHD_HTTP_NOT_FOUND, &err);
	}
	if (method->kind == RPC_UNARY) {
		if (!wire__content_type_is(content_type, "application/json")) {
			err.code = "unknown";
			snprintf(err.message, sizeof(err.message),
				 "unary calls need Content-Type application/json");
			return unary_error(connection, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, &err);
		}
		if (request->body_len > 0) {
			message = (const uint8_t *)request->body;
			message_len = request->body_len;
		}
		compressed = encoding && strcasecmp(encoding, "identity") != 0;
		if (!decode_message(encoding, compressed, message, message_len, &decoded,
				    &decoded_len, &err))
			return unary_error(connection, 0, &err);
	} else {
		if (!wire__content_type_is(content_type, "application/connect+json")) {
			err.code = "unknown";
			snprintf(err.message, sizeof(err.message),
				 "streaming calls need Content-Type application/connect+json");
			return unary_error(connection, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, &err);
		}
		envelope = envelope__parse_single((const uint8_t *)request->body, request->body_len,
						  AGENT_MAX_JSON_BODY, &message, &message_len);
		if (envelope != ENVELOPE_OK && envelope != ENVELOPE_COMPRESSED) {
			err.code = "invalid_argument";
			snprintf(err.message, sizeof(err.message), "%s",
				 envelope__strerror(envelope));
			return stream_error(connection, &err);
		}
		encoding = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
						       "Connect-Content-Encoding");
		if (!decode_message(encoding, envelope == ENVELOPE_COMPRESSED, message, message_len,
				    &decoded, &decoded_len, &err))
			return stream_error(connection, &err);
	}
	if (decoded) {
		message = decoded;
		message_len = decoded_len;
	}
	body = json_loadb((const char *)message, message_len, 0, &json_error);
	free(decoded);
	if (!json_is_object(body)) {
		json_decref(body);
		err.code = "invalid_argument";
		snprintf(err.message, sizeof(err.message), "request is not a JSON object: %s",
			 json_error.text);
		return method->kind == RPC_UNARY ? unary_error(connection, 0, &err)
						 : stream_error(connection, &err);
	}
	if (!users__for_request(connection, NULL, false, &user)) {
		json_decref(body);
		err.code = "invalid_argument";
		snprintf(err.message, sizeof(err.message), "user '%s' does not exist", user.name);
		return unary_error(connection, MHD_HTTP_BAD_REQUEST, &err);
	}
	if (strcmp(url, "/process.Process/Start") == 0) {
		ret = process_start(connection, body, &user);
	} else if (strcmp(url, "/process.Process/Connect") == 0) {
		ret = process_connect(connection, body);
	} else if (strcmp(url, "/filesystem.Filesystem/WatchDir") == 0) {
		struct stream_source source;

		if (!watch__open(body, &user, &source, &err))
			ret = stream_error(connection, &err);
		else
			ret = (enum MHD_Result)stream__respond(connection, &source,
							       keepalive_seconds(connection));
	} else {
		result = method->unary(body, &user, &err);
		ret = result ? agent__json_response(connection, MHD_HTTP_OK, result)
			     : unary_error(connection, 0, &err);
	}
	json_decref(body);
	return ret;
}

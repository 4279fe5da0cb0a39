/* agent_harness: see agent_harness.h. */
#include "agent_harness.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "envelope.h"
#include "warren/tokens.h"
#include "wire.h"

pid_t agent_pid = -1;
int agent_port;
char work_dir[256];
double health_ms;
const char *extra_header;
const char *agent_extra_args[4];

size_t collect(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct buffer *buffer = userdata;
	size_t n = size * nmemb;

	if (buffer->delay_ms) {
		usleep(buffer->delay_ms * 1000);
		buffer->delay_ms = 0;
	}
	if (buffer->attached)
		__atomic_store_n(buffer->attached, 1, __ATOMIC_SEQ_CST);
	buffer->data = realloc(buffer->data, buffer->len + n + 1);
	memcpy(buffer->data + buffer->len, ptr, n);
	buffer->len += n;
	buffer->data[buffer->len] = '\0';
	if (buffer->abort_after && buffer->len > buffer->abort_after)
		return 0;
	return n;
}

/* One HTTP request; returns the status, body in *out (caller frees). */
long http(const char *method, const char *path_and_query, const char *token,
	  const char *content_type, const void *body, size_t body_len, struct buffer *out)
{
	CURL *curl = curl_easy_init();
	struct curl_slist *headers = NULL;
	char url[4096], header[512];
	long status = -1;

	memset(out, 0, sizeof(*out));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", agent_port, path_and_query);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
	if (token) {
		snprintf(header, sizeof(header), "X-Access-Token: %s", token);
		headers = curl_slist_append(headers, header);
	}
	if (content_type) {
		snprintf(header, sizeof(header), "Content-Type: %s", content_type);
		headers = curl_slist_append(headers, header);
	}
	if (extra_header)
		headers = curl_slist_append(headers, extra_header);
	if (body) {
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)body_len);
	}
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	if (curl_easy_perform(curl) == CURLE_OK)
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(headers);
	curl_easy_cleanup(curl);
	return status;
}

/* A unary Connect call; returns the HTTP status and the decoded body. */
long unary(const char *procedure, const char *json, const char *token, json_t **result)
{
	struct buffer out;
	long status = http("POST", procedure, token, "application/json", json, strlen(json), &out);

	*result = out.data ? json_loads(out.data, 0, NULL) : NULL;
	free(out.data);
	return status;
}

void parse_frames(const char *data, size_t len, struct stream_result *result)
{
	size_t off = 0;
	uint8_t bytes[65536];

	while (len - off >= ENVELOPE_HEADER_LEN) {
		const uint8_t *p = (const uint8_t *)data + off;
		uint32_t n =
		    (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
		json_t *message, *event, *value;

		if (len - off - ENVELOPE_HEADER_LEN < n)
			break;
		message = json_loadb((const char *)p + 5, n, 0, NULL);
		assert_non_null(message);
		if (p[0] & ENVELOPE_FLAG_END_STREAM) {
			result->end_stream = true;
			value = json_object_get(json_object_get(message, "error"), "code");
			if (json_is_string(value))
				snprintf(result->error_code, sizeof(result->error_code), "%s",
					 json_string_value(value));
		} else {
			event = json_object_get(message, "event");
			if ((value = json_object_get(event, "start")))
				result->pid =
				    (int)json_integer_value(json_object_get(value, "pid"));
			if ((value = json_object_get(event, "data"))) {
				json_t *out = json_object_get(value, "stdout");
				json_t *err = json_object_get(value, "stderr");
				json_t *which = out ? out : err;
				long got = wire__base64_decode(json_string_value(which),
							       json_string_length(which), bytes,
							       sizeof(bytes));
				assert_true(got >= 0);
				if (out && result->out_len + (size_t)got < sizeof(result->out)) {
					memcpy(result->out + result->out_len, bytes, (size_t)got);
					result->out_len += (size_t)got;
				} else if (err) {
					size_t have = strlen(result->err);
					if (have + (size_t)got < sizeof(result->err))
						memcpy(result->err + have, bytes, (size_t)got);
				}
			}
			if ((value = json_object_get(event, "end"))) {
				result->ended = true;
				result->exit_code =
				    (int)json_integer_value(json_object_get(value, "exitCode"));
				result->exited = json_is_true(json_object_get(value, "exited"));
				snprintf(result->status_text, sizeof(result->status_text), "%s",
					 json_string_value(json_object_get(value, "status")));
			}
		}
		json_decref(message);
		off += ENVELOPE_HEADER_LEN + n;
	}
}

/* A server-streaming Connect call (Start or Connect) to its end. */
void stream_call(const char *procedure, const char *json, struct stream_result *result,
		 size_t abort_after, unsigned delay_ms, int *attached)
{
	size_t len = strlen(json);
	uint8_t *frame = malloc(ENVELOPE_HEADER_LEN + len);
	struct buffer out;

	memset(result, 0, sizeof(*result));
	envelope__write_header(frame, 0, (uint32_t)len);
	memcpy(frame + ENVELOPE_HEADER_LEN, json, len);
	{
		CURL *curl = curl_easy_init();
		struct curl_slist *headers = NULL;
		char url[256];

		memset(&out, 0, sizeof(out));
		out.abort_after = abort_after;
		out.delay_ms = delay_ms;
		out.attached = attached;
		snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", agent_port, procedure);
		headers = curl_slist_append(headers, "X-Access-Token: " TOKEN);
		headers = curl_slist_append(headers, "Content-Type: application/connect+json");
		headers = curl_slist_append(headers, "Connect-Protocol-Version: 1");
		if (extra_header)
			headers = curl_slist_append(headers, extra_header);
		curl_easy_setopt(curl, CURLOPT_URL, url);
		curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, frame);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)(ENVELOPE_HEADER_LEN + len));
		curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
		curl_easy_setopt(curl, CURLOPT_WRITEDATA, &out);
		curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);
		curl_easy_perform(curl);
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &result->status);
		curl_slist_free_all(headers);
		curl_easy_cleanup(curl);
	}
	if (out.data) {
		size_t i, n = out.len < sizeof(result->raw) - 1 ? out.len : sizeof(result->raw) - 1;
		memcpy(result->raw, out.data, n);
		for (i = 0; i < n; i++) /* envelope headers hold NULs: make it searchable */
			if (result->raw[i] == '\0')
				result->raw[i] = '.';
	}
	parse_frames(out.data ? out.data : "", out.len, result);
	free(out.data);
	free(frame);
}

static void *background_stream_run(void *arg)
{
	struct background_stream *stream = arg;

	stream_call(stream->procedure ? stream->procedure : "/process.Process/Start",
		    stream->request, &stream->result, stream->abort_after, stream->delay_ms,
		    &stream->attached);
	return NULL;
}

void background_start(struct background_stream *stream, const char *request)
{
	snprintf(stream->request, sizeof(stream->request), "%s", request);
	assert_int_equal(pthread_create(&stream->thread, NULL, background_stream_run, stream), 0);
}

/* The pid of the running process tagged tag, waiting up to 5 s for it. */
int pid_of_tag(const char *tag)
{
	json_t *result, *process;
	size_t i;
	int attempt;

	for (attempt = 0; attempt < 100; attempt++) {
		assert_int_equal(unary("/process.Process/List", "{}", TOKEN, &result), 200);
		json_array_foreach(json_object_get(result, "processes"), i, process)
		{
			const char *t = json_string_value(json_object_get(process, "tag"));
			if (t && strcmp(t, tag) == 0) {
				int pid = (int)json_integer_value(json_object_get(process, "pid"));
				json_decref(result);
				return pid;
			}
		}
		json_decref(result);
		usleep(50000);
	}
	fail_msg("process tagged %s never showed up in List", tag);
	return -1;
}

/* True when pid has left the process table (no zombie: reaped). */
bool pid_gone(int pid)
{
	char path[64];
	int attempt;

	snprintf(path, sizeof(path), "/proc/%d", pid);
	for (attempt = 0; attempt < 100; attempt++) {
		if (access(path, F_OK) != 0)
			return true;
		usleep(50000);
	}
	return false;
}

int free_port(void)
{
	struct sockaddr_in address = {.sin_family = AF_INET,
				      .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(address);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	bind(fd, (struct sockaddr *)&address, sizeof(address));
	getsockname(fd, (struct sockaddr *)&address, &len);
	port = ntohs(address.sin_port);
	close(fd);
	return port;
}

double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int start_agent(void **state)
{
	const char *build = getenv("WARREN_BUILD_DIR");
	char agent[512], listen[64], hash[80], hex[TOKENS_SHA256_HEX_LEN + 1], log_path[300];
	struct buffer out;
	double started;
	int attempt, fd;

	snprintf(agent, sizeof(agent), "%s/bin/warren-agent", build ? build : ".");
	snprintf(work_dir, sizeof(work_dir), "/tmp/warren-agent-test.XXXXXX");
	if (!mkdtemp(work_dir))
		return -1;
	tokens__sha256_hex(TOKEN, strlen(TOKEN), hex);
	snprintf(hash, sizeof(hash), "sha256:%s", hex);
	agent_port = free_port();
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", agent_port);
	snprintf(log_path, sizeof(log_path), "%s.log", work_dir);
	started = now_ms();
	agent_pid = fork();
	if (agent_pid == 0) {
		fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0)
			dup2(fd, 2);
		execl(agent, agent, "--listen", listen, "--token-hash", hash, agent_extra_args[0],
		      agent_extra_args[1], agent_extra_args[2], (char *)NULL);
		_exit(127);
	}
	for (attempt = 0; attempt < 2000; attempt++) {
		if (http("GET", "/health", NULL, NULL, NULL, 0, &out) == 204) {
			free(out.data);
			health_ms = now_ms() - started;
			printf("# agent answered /health %.1f ms after exec (log %s)\n", health_ms,
			       log_path);
			return 0;
		}
		free(out.data);
		usleep(1000);
	}
	fprintf(stderr, "agent %s did not answer /health\n", agent);
	return -1;
}

int stop_agent(void **state)
{
	char command[600];
	int status = 0;

	if (agent_pid > 0) {
		kill(agent_pid, SIGTERM);
		waitpid(agent_pid, &status, 0);
	}
	/* A sanitizer build of the agent reports into its log: fail on it. */
	snprintf(command, sizeof(command), "! grep -A30 Sanitizer '%s.log'", work_dir);
	if (system(command) != 0) {
		fprintf(stderr, "the agent reported a sanitizer error (above)\n");
		return -1;
	}
	snprintf(command, sizeof(command), "rm -rf '%s' '%s.log'", work_dir, work_dir);
	if (system(command) != 0)
		return -1;
	return 0;
}

void wait_attached(struct background_stream *stream)
{
	int attempt;

	for (attempt = 0; attempt < 500; attempt++) {
		if (__atomic_load_n(&stream->attached, __ATOMIC_SEQ_CST))
			return;
		usleep(10000);
	}
	fail_msg("stream never started");
}

void signed_query(char *out, size_t out_len, const char *path, const char *operation,
		  long long expiration)
{
	signed_query_user(out, out_len, path, operation, "", expiration);
}

void signed_query_user(char *out, size_t out_len, const char *path, const char *operation,
		       const char *username, long long expiration)
{
	char signature[128], user_arg[100] = "";
	size_t used;

	tokens__file_signature(path, operation, username, TOKEN, expiration, signature,
			       sizeof(signature));
	if (*username)
		snprintf(user_arg, sizeof(user_arg), "&username=%s", username);
	/* the signature is base64: '+' and '/' must be escaped in a query */
	{
		char escaped[256];
		size_t i, o = 0;
		for (i = 0; signature[i] && o + 4 < sizeof(escaped); i++) {
			if (signature[i] == '+' || signature[i] == '/') {
				o += (size_t)snprintf(escaped + o, sizeof(escaped) - o, "%%%02X",
						      (unsigned char)signature[i]);
			} else {
				escaped[o++] = signature[i];
			}
		}
		escaped[o] = '\0';
		if (expiration >= 0)
			used = (size_t)snprintf(
			    out, out_len, "/files?path=%s&signature=%s&signature_expiration=%lld",
			    path, escaped, expiration);
		else
			used = (size_t)snprintf(out, out_len, "/files?path=%s&signature=%s", path,
						escaped);
		if (used < out_len)
			snprintf(out + used, out_len - used, "%s", user_arg);
	}
}

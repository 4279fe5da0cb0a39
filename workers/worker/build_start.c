/* build_start: the start and ready commands of a built template, run
 * through the sandbox's agent (process.Process/Start, Connect's JSON
 * streaming encoding) right after /init (docs/templates.md, "Start
 * command"). The start command is detached (its output goes to
 * /tmp/warren-start-cmd.log in the sandbox); the ready command is run
 * every 500 ms until it exits 0 or the deadline passes. */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "build.h"
#include "warren/clock.h"
#include "warren/log.h"
#include "warren/templates.h"

struct body {
	unsigned char *data;
	size_t len, cap;
};

static size_t body__append(char *data, size_t size, size_t count, void *opaque)
{
	struct body *b = opaque;
	size_t n = size * count;

	if (b->len + n > (1u << 20))
		return 0; /* more than we ever need: stop */
	if (b->len + n > b->cap) {
		size_t cap = (b->len + n) * 2;
		unsigned char *grown = realloc(b->data, cap);

		if (!grown)
			return 0;
		b->data = grown;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, n);
	b->len += n;
	return n;
}

/* The exit code in a Start stream, or -1 when it has no end event. */
static int stream__exit_code(const struct body *b)
{
	size_t at = 0;

	while (at + 5 <= b->len) {
		uint32_t len = (uint32_t)b->data[at + 1] << 24 | (uint32_t)b->data[at + 2] << 16 |
			       (uint32_t)b->data[at + 3] << 8 | b->data[at + 4];
		json_t *message;
		int code = -1;

		if (at + 5 + len > b->len)
			break;
		message = json_loadb((const char *)b->data + at + 5, len, 0, NULL);
		if (!(b->data[at] & 0x02)) {
			json_t *end = json_object_get(json_object_get(message, "event"), "end");

			if (end && json_is_integer(json_object_get(end, "exitCode")))
				code = (int)json_integer_value(json_object_get(end, "exitCode"));
			else if (end)
				code = 0; /* protobuf JSON omits a zero exitCode */
		}
		json_decref(message);
		if (code >= 0)
			return code;
		at += 5 + len;
	}
	return -1;
}

/* Runs /bin/sh -c script [args...] in the sandbox and waits for its end
 * (timeout_ms). The exit code, or -1 when none came. */
static int agent__run(const char *address, int port, const char *token, const char *script,
		      const char *arg1, long timeout_ms)
{
	json_t *request = json_pack("{s:{s:s, s:[s, s, s, s]}}", "process", "cmd", "/bin/sh",
				    "args", "-c", script, "sh", arg1 ? arg1 : "");
	char *text = request ? json_dumps(request, JSON_COMPACT) : NULL;
	struct curl_slist *headers = NULL;
	struct body response = {0};
	char url[128], token_header[160];
	unsigned char *framed = NULL;
	size_t len = text ? strlen(text) : 0;
	CURL *curl = curl_easy_init();
	int code = -1;

	if (!text || !curl || !(framed = malloc(len + 5)))
		goto out;
	framed[0] = 0;
	framed[1] = (unsigned char)(len >> 24);
	framed[2] = (unsigned char)(len >> 16);
	framed[3] = (unsigned char)(len >> 8);
	framed[4] = (unsigned char)len;
	memcpy(framed + 5, text, len);
	snprintf(url, sizeof(url), "http://%s:%d/process.Process/Start", address, port);
	headers = curl_slist_append(headers, "Content-Type: application/connect+json");
	if (token) {
		snprintf(token_header, sizeof(token_header), "X-Access-Token: %s", token);
		headers = curl_slist_append(headers, token_header);
	}
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, framed);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)(len + 5));
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, body__append);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response);
	curl_easy_perform(curl);
	code = stream__exit_code(&response);
out:
	curl_slist_free_all(headers);
	if (curl)
		curl_easy_cleanup(curl);
	free(response.data);
	free(framed);
	free(text);
	json_decref(request);
	return code;
}

/* template.json of an installed template as JSON (new reference). */
static json_t *template_json(const char *template_id)
{
	struct template_info info;
	char err[256], path[PATH_MAX + 16];

	if (templates__read(templates__dir(), template_id, &info, err, sizeof(err)))
		return NULL;
	snprintf(path, sizeof(path), "%s/template.json", info.dir);
	return json_load_file(path, 0, NULL);
}

void build__template_defaults(const char *template_id, json_t **envs, char *user, size_t user_len,
			      char *workdir, size_t workdir_len)
{
	json_t *meta = template_json(template_id);
	const json_t *e = json_object_get(meta, "envs");
	const char *key;
	json_t *value;

	*envs = json_object();
	user[0] = workdir[0] = '\0';
	json_object_foreach((json_t *)e, key, value) if (json_is_string(value))
	    json_object_set(*envs, key, value);
	if (json_is_string(json_object_get(meta, "user")))
		snprintf(user, user_len, "%s", json_string_value(json_object_get(meta, "user")));
	if (json_is_string(json_object_get(meta, "workdir")))
		snprintf(workdir, workdir_len, "%s",
			 json_string_value(json_object_get(meta, "workdir")));
	json_decref(meta);
}

int build__sandbox_start_cmd(const char *template_id, const char *agent_address, int port,
			     const char *access_token, uint64_t deadline_ms, char *err,
			     size_t err_len)
{
	static const char detach[] =
	    "( exec /bin/sh -c \"$1\" ) </dev/null >>/tmp/warren-start-cmd.log 2>&1 &";
	json_t *meta = template_json(template_id);
	const char *start = json_string_value(json_object_get(meta, "start_cmd"));
	const char *ready = json_string_value(json_object_get(meta, "ready_cmd"));
	uint64_t begun = clock__monotonic_ms();
	struct timespec pause = {0, 500 * 1000 * 1000};
	int ret = 0, code;

	if (!start && !ready)
		goto out;
	if (start && (code = agent__run(agent_address, port, access_token, detach, start, 10000))) {
		snprintf(err, err_len, "the template's start command could not be started (%d)",
			 code);
		ret = -1;
		goto out;
	}
	while (ready) {
		long left = (long)(deadline_ms - clock__monotonic_ms());

		if (left <= 0 || clock__monotonic_ms() >= deadline_ms) {
			snprintf(err, err_len,
				 "the template's ready command did not succeed within %.1f s",
				 (double)(clock__monotonic_ms() - begun) / 1000.0);
			ret = -1;
			goto out;
		}
		if (agent__run(agent_address, port, access_token, ready, NULL,
			       left < 30000 ? left : 30000) == 0)
			break;
		nanosleep(&pause, NULL);
	}
	log_info("template %s: start command running%s after %llu ms", template_id,
		 ready ? ", ready" : "", (unsigned long long)(clock__monotonic_ms() - begun));
out:
	json_decref(meta);
	return ret;
}

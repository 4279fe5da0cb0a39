/* Support for the warren-api integration test (api_test_support.h). */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api_test_support.h"
#include "storage_test_db.h"
#include "warren/clock.h"
#include "warren/ids.h"
#include "warren/kafka.h"
#include "warren/tokens.h"

/* ---- the fake worker ---- */

static struct {
	pthread_t thread;
	atomic_bool stop;
	bool running;
	struct kafka_consumer *consumer;
	struct kafka_producer *producer;
	struct test_stack *stack;
	char commands_topic[KAFKA_TOPIC_NAME_MAX + 1];
	char events_topic[KAFKA_TOPIC_NAME_MAX + 1];
	char host_topic[KAFKA_TOPIC_NAME_MAX + 1];
	atomic_int counts[KAFKA_EVENT_TYPE_COUNT];
	atomic_bool heartbeat_paused;
} fake;

void fake_worker__pause_heartbeat(bool paused)
{
	atomic_store(&fake.heartbeat_paused, paused);
}

/* The fake host's row, refreshed each second like a real worker's
 * (warren-api places creates only on hosts with a fresh heartbeat). */
static void fake_worker__heartbeat(void)
{
	static uint64_t last_ms;
	struct storage_host host = {
	    .runtime = "jail", .capacity = 10000, .state = "ready", .address = "127.0.0.1"};
	struct storage_error e;

	if (atomic_load(&fake.heartbeat_paused) || clock__monotonic_ms() - last_ms < 1000)
		return;
	last_ms = clock__monotonic_ms();
	snprintf(host.id, sizeof(host.id), "%s", fake.stack->host_id);
	storage__host_heartbeat(fake.stack->pool, &host, &e); /* an outage: next second */
}

int fake_worker__count(const char *command_type)
{
	return atomic_load(&fake.counts[kafka_event__type_from_name(command_type)]);
}

static void fake_worker__answer(const struct kafka_event *command, enum kafka_event_type type,
				json_t *result)
{
	struct kafka_event ev = {0};
	char reason[256], *payload;

	if (kafka_event__init_result(&ev, type, command, fake.stack->host_id, result, reason,
				     sizeof(reason)) != KAFKA_EVENT_OK) {
		fprintf(stderr, "fake worker: cannot build %s: %s\n", kafka_event__type_name(type),
			reason);
		return;
	}
	/* Queued without waiting for the ack (a slow ack must not serialise
	 * the fake worker); kafka_producer__free flushes at the end. */
	payload = kafka_event__encode(&ev, NULL, reason, sizeof(reason));
	if (!payload || kafka_producer__produce(fake.producer, fake.events_topic, ev.sandbox_id,
						strlen(ev.sandbox_id), payload, strlen(payload),
						NULL, 0, NULL, NULL))
		fprintf(stderr, "fake worker: producing %s failed\n", kafka_event__type_name(type));
	free(payload);
	kafka_event__clear(&ev);
}

static void fake_worker__fail(const struct kafka_event *command, int code, const char *message)
{
	fake_worker__answer(command, KAFKA_EVENT_FAILED,
			    json_pack("{s:s, s:i, s:s}", "command",
				      kafka_event__type_name(command->type), "code", code,
				      "message", message));
}

/* The outcome recorded as a worker records it, with its notification
 * (storage__request_finish_notify), and no result event: only the API's
 * notification listener can answer (metadata "fake": "notify-only"). */
static void fake_worker__record_only(const struct kafka_event *command, json_t *result)
{
	struct kafka_event ev = {0};
	struct storage_error e;
	char reason[256], *payload;

	if (kafka_event__init_result(&ev, KAFKA_EVENT_CREATED, command, fake.stack->host_id, result,
				     reason, sizeof(reason)) != KAFKA_EVENT_OK) {
		fprintf(stderr, "fake worker: cannot build created: %s\n", reason);
		return;
	}
	payload = kafka_event__encode(&ev, NULL, reason, sizeof(reason));
	if (!payload ||
	    storage__request_finish_notify(fake.stack->pool, command->request_id,
					   STORAGE_REQUEST_DONE, ev.result, payload, &e))
		fprintf(stderr, "fake worker: recording the outcome failed\n");
	free(payload);
	kafka_event__clear(&ev);
}

/* A create: starting -> running through storage, then `created` (or the
 * behaviour asked for by metadata "fake": "fail", "silent" or
 * "notify-only"). */
static void fake_worker__create(const struct kafka_event *command)
{
	struct storage_pool *pool = fake.stack->pool;
	struct storage_sandbox row = {0};
	struct storage_error e;
	const char *behaviour =
	    json_string_value(json_object_get(json_object_get(command->spec, "metadata"), "fake"));
	struct storage_sandbox_transition t = {
	    .sandbox_id = command->sandbox_id,
	    .from = STORAGE_SANDBOX_STARTING,
	    .to = STORAGE_SANDBOX_RUNNING,
	    .host_id = fake.stack->host_id,
	    .slot_index = 0,
	    .slot_address = "10.11.0.2",
	};
	char end_at[32];
	int rc;

	if (behaviour && !strcmp(behaviour, "silent"))
		return;
	if (behaviour && !strcmp(behaviour, "fail")) {
		t.to = STORAGE_SANDBOX_FAILED;
		t.failure_reason = "fake failure";
		storage__sandbox_transition(pool, &t, NULL, &e);
		fake_worker__fail(command, 500, "fake failure");
		return;
	}
	rc = storage__sandbox_transition(pool, &t, &row, &e);
	if (rc == STORAGE_ERR_CONFLICT) /* a redelivery or a replay */
		rc = storage__sandbox_get_internal(pool, command->sandbox_id, &row, &e);
	if (rc) {
		fake_worker__fail(command, 500, e.message);
		return;
	}
	if (row.state != STORAGE_SANDBOX_RUNNING) {
		fake_worker__fail(command, 409, "sandbox is not starting");
		storage__sandbox_clear(&row);
		return;
	}
	clock__format_rfc3339(row.end_at, end_at);
	json_t *result =
	    json_pack("{s:s, s:s, s:s, s:s}", "template_id", row.template_id, "envd_version",
		      "0.2.0", "end_at", end_at, "client_id", fake.stack->host_id);
	if (behaviour && !strcmp(behaviour, "notify-only"))
		fake_worker__record_only(command, result);
	else
		fake_worker__answer(command, KAFKA_EVENT_CREATED, result);
	storage__sandbox_clear(&row);
}

static void fake_worker__kill(const struct kafka_event *command)
{
	struct storage_sandbox_transition t = {
	    .sandbox_id = command->sandbox_id,
	    .from = STORAGE_SANDBOX_RUNNING,
	    .to = STORAGE_SANDBOX_KILLED,
	    .slot_index = -1,
	};
	struct storage_error e;
	int rc = storage__sandbox_transition(fake.stack->pool, &t, NULL, &e);

	if (rc == STORAGE_ERR_CONFLICT) { /* a paused one */
		t.from = STORAGE_SANDBOX_PAUSED;
		rc = storage__sandbox_transition(fake.stack->pool, &t, NULL, &e);
	}
	if (rc && rc != STORAGE_ERR_CONFLICT) {
		fake_worker__fail(command, 500, e.message);
		return;
	}
	fake_worker__answer(command, KAFKA_EVENT_KILLED, json_pack("{s:s}", "reason", "api"));
}

/* A pause: pausing (set by the API) -> paused, then `paused`. A resume:
 * paused -> resuming -> running, then `resumed`. No process to freeze. */
static void fake_worker__pause_or_resume(const struct kafka_event *command, bool pause)
{
	static const enum storage_sandbox_state pause_path[] = {STORAGE_SANDBOX_PAUSING,
								STORAGE_SANDBOX_PAUSED};
	static const enum storage_sandbox_state resume_path[] = {
	    STORAGE_SANDBOX_PAUSED, STORAGE_SANDBOX_RESUMING, STORAGE_SANDBOX_RUNNING};
	const enum storage_sandbox_state *path = pause ? pause_path : resume_path;
	size_t steps = pause ? 1 : 2;
	struct storage_sandbox row = {0};
	struct storage_error e;
	char end_at[32];

	for (size_t i = 0; i < steps; i++) {
		struct storage_sandbox_transition t = {
		    .sandbox_id = command->sandbox_id,
		    .from = path[i],
		    .to = path[i + 1],
		    .slot_index = -1,
		};
		if (storage__sandbox_transition(fake.stack->pool, &t, NULL, &e)) {
			fake_worker__fail(command, 409, e.message);
			return;
		}
	}
	if (pause) {
		fake_worker__answer(command, KAFKA_EVENT_PAUSED, json_object());
		return;
	}
	storage__sandbox_set_timeout(
	    fake.stack->pool, command->team_id, command->sandbox_id,
	    (int32_t)json_integer_value(json_object_get(command->spec, "timeout_s")), NULL, &e);
	if (storage__sandbox_get_internal(fake.stack->pool, command->sandbox_id, &row, &e)) {
		fake_worker__fail(command, 500, e.message);
		return;
	}
	clock__format_rfc3339(row.end_at, end_at);
	storage__sandbox_clear(&row);
	fake_worker__answer(command, KAFKA_EVENT_RESUMED, json_pack("{s:s}", "end_at", end_at));
}

static void *fake_worker__run(void *arg)
{
	(void)arg;
	while (!atomic_load(&fake.stop)) {
		struct kafka_message msg = {0};
		struct kafka_event ev;
		char reason[256];
		int rc = kafka_consumer__poll(fake.consumer, 100, &msg);

		fake_worker__heartbeat();
		if (rc <= 0)
			continue;
		if (kafka_event__decode(msg.payload, msg.len, &ev, reason, sizeof(reason)) ==
		    KAFKA_EVENT_OK) {
			atomic_fetch_add(&fake.counts[ev.type], 1);
			switch (ev.type) {
			case KAFKA_EVENT_CREATE:
				fake_worker__create(&ev);
				break;
			case KAFKA_EVENT_KILL:
				fake_worker__kill(&ev);
				break;
			case KAFKA_EVENT_PAUSE:
			case KAFKA_EVENT_RESUME:
				fake_worker__pause_or_resume(&ev, ev.type == KAFKA_EVENT_PAUSE);
				break;
			case KAFKA_EVENT_UPDATE_NETWORK:
				fake_worker__answer(&ev, KAFKA_EVENT_NETWORK_UPDATED,
						    json_pack("{s:O}", "network",
							      json_object_get(ev.spec, "network")));
				break;
			default:
				break;
			}
			kafka_event__clear(&ev);
		} else {
			fprintf(stderr, "fake worker: bad command: %s\n", reason);
		}
		kafka_consumer__commit_message(fake.consumer, &msg);
		kafka_message__release(&msg);
	}
	return NULL;
}

/* ---- the stack ---- */

/* The kafka_* settings of the environment (a secure dev stack too). */
static const struct kafka_settings *test_stack__kafka(void)
{
	static struct kafka_settings kafka;

	kafka_settings__from_config(&kafka);
	return &kafka;
}

static const char *test_stack__brokers(void)
{
	const char *brokers = getenv("WARREN_KAFKA_BROKERS");

	if (!brokers || !*brokers) {
		fprintf(stderr, "FAIL: WARREN_KAFKA_BROKERS is not set; run eval "
				"\"$(scripts/dev-stack env)\"\n");
		return NULL;
	}
	return brokers;
}

bool test_stack__up(struct test_stack *stack, const char *tag)
{
	struct test_db db;
	struct storage_error e;
	struct storage_template template = {
	    .id = "base", .agent_version = "0.2.0", .image_path = "/nonexistent/base.img"};
	struct storage_host host = {
	    .runtime = "jail", .capacity = 10000, .state = "ready", .address = "127.0.0.1"};
	struct kafka_consumer_config consumer = {0};
	const char *brokers = test_stack__brokers();
	const char *topics[2];
	char err[512], group[160], host_topic[128];
	unsigned char random[4];

	memset(stack, 0, sizeof(*stack));
	memset(&fake, 0, sizeof(fake));
	if (!brokers || !test_db__server_url())
		return false;
	if (!test_db__create(&db, tag))
		return false;
	snprintf(stack->db_name, sizeof(stack->db_name), "%s", db.name);
	snprintf(stack->db_url, sizeof(stack->db_url), "%s", db.url);
	if (storage__migrate(stack->db_url, test_db__migrations_dir(), NULL, &e)) {
		fprintf(stderr, "migrate: %s\n", e.message);
		goto err;
	}
	stack->pool = storage__pool_open(stack->db_url, 4, &e);
	if (!stack->pool) {
		fprintf(stderr, "pool: %s\n", e.message);
		goto err;
	}
	memset(template.content_hash, 'a', 64);
	if (storage__template_upsert(stack->pool, &template, &e)) {
		fprintf(stderr, "template: %s\n", e.message);
		goto err;
	}
	ids__random_bytes(random, sizeof(random));
	snprintf(stack->host_id, sizeof(stack->host_id), "fake-%d-%02x%02x", (int)getpid(),
		 random[0], random[1]);
	snprintf(host.id, sizeof(host.id), "%s", stack->host_id);
	if (storage__host_heartbeat(stack->pool, &host, &e)) {
		fprintf(stderr, "host: %s\n", e.message);
		goto err;
	}

	/* Own topics under a unique prefix (warren-api's kafka_topic_prefix). */
	snprintf(stack->topic_prefix, sizeof(stack->topic_prefix), "test.api.%d.%02x%02x.",
		 (int)getpid(), random[2], random[3]);
	snprintf(fake.commands_topic, sizeof(fake.commands_topic), "%s%s", stack->topic_prefix,
		 KAFKA_TOPIC_SANDBOX_COMMANDS);
	snprintf(fake.events_topic, sizeof(fake.events_topic), "%s%s", stack->topic_prefix,
		 KAFKA_TOPIC_SANDBOX_EVENTS);
	kafka__host_topic(stack->host_id, host_topic, sizeof(host_topic));
	snprintf(fake.host_topic, sizeof(fake.host_topic), "%s%s", stack->topic_prefix, host_topic);
	if (kafka__create_topic(test_stack__kafka(), fake.commands_topic, 3, 1, 30000, err,
				sizeof(err)) ||
	    kafka__create_topic(test_stack__kafka(), fake.events_topic, 3, 1, 30000, err,
				sizeof(err)) ||
	    kafka__create_topic(test_stack__kafka(), fake.host_topic, 1, 1, 30000, err,
				sizeof(err))) {
		fprintf(stderr, "topics: %s\n", err);
		goto err;
	}

	fake.stack = stack;
	fake.producer = kafka_producer__new(test_stack__kafka(), NULL, err, sizeof(err));
	snprintf(group, sizeof(group), "%sfake-worker", stack->topic_prefix);
	consumer.settings = test_stack__kafka();
	consumer.group_id = group;
	consumer.session_timeout_ms = 6000;
	fake.consumer = kafka_consumer__new(&consumer, err, sizeof(err));
	topics[0] = fake.commands_topic;
	topics[1] = fake.host_topic;
	if (!fake.producer || !fake.consumer ||
	    kafka_consumer__subscribe(fake.consumer, topics, 2)) {
		fprintf(stderr, "fake worker: %s\n", err);
		goto err;
	}
	if (pthread_create(&fake.thread, NULL, fake_worker__run, NULL))
		goto err;
	fake.running = true;
	return true;
err:
	test_stack__down(stack);
	return false;
}

void test_stack__down(struct test_stack *stack)
{
	const char *brokers = getenv("WARREN_KAFKA_BROKERS");
	char err[512];

	if (fake.running) {
		atomic_store(&fake.stop, true);
		pthread_join(fake.thread, NULL);
		fake.running = false;
	}
	kafka_consumer__free(fake.consumer);
	if (fake.consumer && brokers && stack->topic_prefix[0]) {
		char group[160];

		snprintf(group, sizeof(group), "%sfake-worker", stack->topic_prefix);
		if (kafka__delete_group(test_stack__kafka(), group, 10000, err, sizeof(err)))
			fprintf(stderr, "cleanup: %s\n", err);
	}
	fake.consumer = NULL;
	kafka_producer__free(fake.producer);
	fake.producer = NULL;
	if (brokers && stack->topic_prefix[0]) {
		const char *topics[] = {fake.commands_topic, fake.events_topic, fake.host_topic};

		for (size_t i = 0; i < 3; i++)
			if (topics[i][0] && kafka__delete_topic(test_stack__kafka(), topics[i],
								30000, err, sizeof(err)))
				fprintf(stderr, "cleanup: %s\n", err);
		stack->topic_prefix[0] = '\0';
	}
	if (stack->pool) {
		storage__pool_close(stack->pool);
		stack->pool = NULL;
	}
	if (stack->db_name[0]) {
		struct test_db db = {0};

		snprintf(db.name, sizeof(db.name), "%s", stack->db_name);
		test_db__drop(&db);
		stack->db_name[0] = '\0';
	}
}

bool test_stack__team(struct test_stack *stack, const char *name, const char *tier,
		      struct storage_team *team, char *key)
{
	enum storage_tier t;
	struct storage_error e;
	struct storage_api_key api_key;
	char hash[TOKENS_SHA256_HEX_LEN + 1], prefix[9];

	if (!storage__tier_parse(tier, &t) ||
	    storage__team_create(stack->pool, name, t, team, &e)) {
		fprintf(stderr, "team %s: %s\n", name, e.message);
		return false;
	}
	ids__api_key(key);
	tokens__sha256_hex(key, strlen(key), hash);
	snprintf(prefix, sizeof(prefix), "%.8s", key);
	if (storage__api_key_create(stack->pool, team->id, hash, prefix, &api_key, &e)) {
		fprintf(stderr, "key: %s\n", e.message);
		return false;
	}
	return true;
}

/* ---- warren-api as a child process ---- */

bool test_api__start(struct test_api *api, const struct test_stack *stack, const char *pg_url,
		     const char *const *extra_env)
{
	const char *build = getenv("WARREN_BUILD_DIR");
	char binary[4096], line[512];
	int out[2];
	FILE *stream;
	int64_t deadline;

	memset(api, 0, sizeof(*api));
	snprintf(binary, sizeof(binary), "%s/bin/warren-api", build ? build : ".");
	if (access(binary, X_OK)) {
		fprintf(stderr, "FAIL: %s is missing (build the warren-api target)\n", binary);
		return false;
	}
	/* The environment is built before fork: the child of a threaded
	 * process may only call async-signal-safe functions before exec. */
	{
		static const char *const overridden[] = {"WARREN_PG_URL=",
							 "WARREN_KAFKA_TOPIC_PREFIX=",
							 "WARREN_TOKEN_SEED=",
							 "WARREN_DOMAIN=",
							 "WARREN_API_LISTEN=",
							 "WARREN_API_THREADS=",
							 "WARREN_PG_POOL_SIZE=",
							 "WARREN_CONFIG=",
							 NULL};
		extern char **environ;
		size_t count = 0, n = 0;
		char **env, *pg_env = NULL, *prefix_env = NULL;

		while (environ[count])
			count++;
		for (size_t i = 0; extra_env && extra_env[i]; i++)
			count++;
		env = calloc(count + 16, sizeof(*env));
		if (!env)
			return false;
		for (size_t i = 0; environ[i]; i++) {
			bool skip = false;

			for (size_t k = 0; overridden[k]; k++)
				if (!strncmp(environ[i], overridden[k], strlen(overridden[k])))
					skip = true;
			for (size_t k = 0; extra_env && extra_env[k]; k++) {
				const char *eq = strchr(extra_env[k], '=');

				if (eq && !strncmp(environ[i], extra_env[k],
						   (size_t)(eq - extra_env[k] + 1)))
					skip = true;
			}
			if (!skip)
				env[n++] = environ[i];
		}
		if (asprintf(&pg_env, "WARREN_PG_URL=%s", pg_url ? pg_url : stack->db_url) < 0 ||
		    asprintf(&prefix_env, "WARREN_KAFKA_TOPIC_PREFIX=%s", stack->topic_prefix) <
			0) {
			free(env);
			return false;
		}
		/* extra_env first: getenv() takes the first match. */
		for (size_t i = 0; extra_env && extra_env[i]; i++)
			env[n++] = (char *)extra_env[i];
		env[n++] = pg_env;
		env[n++] = prefix_env;
		env[n++] = (char *)"WARREN_TOKEN_SEED=" TEST_API_SEED;
		env[n++] = (char *)"WARREN_DOMAIN=" TEST_API_DOMAIN;
		env[n++] = (char *)"WARREN_API_LISTEN=127.0.0.1:0";
		env[n++] = (char *)"WARREN_API_THREADS=4";
		env[n++] = (char *)"WARREN_PG_POOL_SIZE=4";
		if (!getenv("WARREN_LOG_LEVEL"))
			env[n++] = (char *)"WARREN_LOG_LEVEL=warn";
		env[n] = NULL;
		if (pipe2(out, O_CLOEXEC)) {
			free(pg_env);
			free(prefix_env);
			free(env);
			return false;
		}
		api->pid = fork();
		if (api->pid == 0) {
			char *const argv[] = {binary, NULL};

			dup2(out[1], 1);
			execve(binary, argv, env);
			_exit(127);
		}
		free(pg_env);
		free(prefix_env);
		free(env);
		if (api->pid < 0)
			return false;
	}
	close(out[1]);
	stream = fdopen(out[0], "r");
	deadline = (int64_t)clock__monotonic_ms() + 60000;
	while (stream && fgets(line, sizeof(line), stream)) {
		const char *colon;

		if (strncmp(line, "warren-api listening on ", 24))
			continue;
		colon = strrchr(line, ':');
		api->port = colon ? atoi(colon + 1) : 0;
		break;
	}
	if (stream)
		fclose(stream); /* the child's later stdout writes get EPIPE; it logs to stderr */
	if (api->port <= 0 || (int64_t)clock__monotonic_ms() > deadline) {
		fprintf(stderr, "FAIL: warren-api did not start\n");
		test_api__stop(api);
		return false;
	}
	return true;
}

int test_api__stop(struct test_api *api)
{
	int status = 0;

	if (api->pid <= 0)
		return 0;
	kill(api->pid, SIGTERM);
	for (int i = 0; i < 300; i++) {
		if (waitpid(api->pid, &status, WNOHANG) == api->pid) {
			api->pid = 0;
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		}
		usleep(50 * 1000);
	}
	fprintf(stderr, "warren-api %d did not stop within 15 s\n", (int)api->pid);
	kill(api->pid, SIGKILL);
	waitpid(api->pid, &status, 0);
	api->pid = 0;
	return 137;
}

/* ---- HTTP ---- */

struct http_buffer {
	char *data;
	size_t len;
};

static size_t http__write(char *data, size_t size, size_t count, void *opaque)
{
	struct http_buffer *buffer = opaque;
	size_t n = size * count;
	char *grown = realloc(buffer->data, buffer->len + n + 1);

	if (!grown)
		return 0;
	memcpy(grown + buffer->len, data, n);
	buffer->data = grown;
	buffer->len += n;
	buffer->data[buffer->len] = '\0';
	return n;
}

static size_t http__header_line(char *data, size_t size, size_t count, void *opaque)
{
	struct http_response *response = opaque;
	size_t n = size * count, used = strlen(response->headers);

	if (used + n + 1 < sizeof(response->headers)) {
		memcpy(response->headers + used, data, n);
		response->headers[used + n] = '\0';
	}
	return n;
}

bool http__request(int port, const char *method, const char *path, const char *key,
		   const char *body, const char *request_id, struct http_response *out)
{
	CURL *curl = curl_easy_init();
	struct curl_slist *headers = NULL;
	struct http_buffer buffer = {0};
	char url[1024], header[256];
	CURLcode rc;

	memset(out, 0, sizeof(*out));
	if (!curl)
		return false;
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 90000L);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	if (key) {
		snprintf(header, sizeof(header), "X-API-Key: %s", key);
		headers = curl_slist_append(headers, header);
	}
	if (request_id) {
		snprintf(header, sizeof(header), "X-Request-Id: %s", request_id);
		headers = curl_slist_append(headers, header);
	}
	if (body) {
		headers = curl_slist_append(headers, "Content-Type: application/json");
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	headers = curl_slist_append(headers, "Expect:");
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, http__write);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &buffer);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, http__header_line);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, out);
	rc = curl_easy_perform(curl);
	if (rc == CURLE_OK)
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out->status);
	else
		fprintf(stderr, "%s %s: %s\n", method, path, curl_easy_strerror(rc));
	curl_slist_free_all(headers);
	curl_easy_cleanup(curl);
	out->body = buffer.data ? buffer.data : strdup("");
	return rc == CURLE_OK;
}

bool http__header(const struct http_response *response, const char *name, char *out, size_t len)
{
	const char *line = response->headers;
	size_t name_len = strlen(name);

	while (line && *line) {
		const char *end = strstr(line, "\r\n");

		if (!strncasecmp(line, name, name_len) && line[name_len] == ':') {
			const char *value = line + name_len + 1;
			size_t value_len;

			while (*value == ' ')
				value++;
			value_len = end ? (size_t)(end - value) : strlen(value);
			snprintf(out, len, "%.*s", (int)value_len, value);
			return true;
		}
		line = end ? end + 2 : NULL;
	}
	return false;
}

void http__response_free(struct http_response *response)
{
	free(response->body);
	response->body = NULL;
}

/* ---- TCP forwarder ---- */

#define FORWARDER_MAX 64

struct tcp_forwarder {
	int target_port, port, listener;
	pthread_t thread;
	bool thread_running;
	atomic_bool stop;
	pthread_mutex_t lock;
	int pairs[FORWARDER_MAX][2]; /* client, server; -1 when free */
};

static int tcp_forwarder__listen(int port)
{
	struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, (struct sockaddr *)&address, sizeof(address)) || listen(fd, 64)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static int tcp_forwarder__connect(int port)
{
	struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&address, sizeof(address))) {
		close(fd);
		return -1;
	}
	return fd;
}

/* One poll loop over the listener and every pair. */
static void *tcp_forwarder__run(void *arg)
{
	struct tcp_forwarder *f = arg;
	char buffer[16384];

	while (!atomic_load(&f->stop)) {
		struct pollfd fds[1 + 2 * FORWARDER_MAX];
		int index[1 + 2 * FORWARDER_MAX], n = 0;

		pthread_mutex_lock(&f->lock);
		if (f->listener >= 0) {
			fds[n] = (struct pollfd){.fd = f->listener, .events = POLLIN};
			index[n++] = -1;
		}
		for (int i = 0; i < FORWARDER_MAX; i++)
			for (int side = 0; side < 2; side++)
				if (f->pairs[i][side] >= 0) {
					fds[n] = (struct pollfd){.fd = f->pairs[i][side],
								 .events = POLLIN};
					index[n++] = i * 2 + side;
				}
		pthread_mutex_unlock(&f->lock);
		if (poll(fds, (nfds_t)n, 50) <= 0)
			continue;
		pthread_mutex_lock(&f->lock);
		for (int k = 0; k < n; k++) {
			if (!fds[k].revents)
				continue;
			if (index[k] < 0) {
				int client, server;

				if (f->listener < 0)
					continue;
				client = accept4(f->listener, NULL, NULL, SOCK_CLOEXEC);
				if (client < 0)
					continue;
				server = tcp_forwarder__connect(f->target_port);
				for (int i = 0; server >= 0 && i < FORWARDER_MAX; i++)
					if (f->pairs[i][0] < 0) {
						f->pairs[i][0] = client;
						f->pairs[i][1] = server;
						client = server = -1;
						break;
					}
				if (client >= 0)
					close(client);
				if (server >= 0)
					close(server);
				continue;
			}
			{
				int i = index[k] / 2, side = index[k] % 2;
				int from = f->pairs[i][side], to = f->pairs[i][!side];
				ssize_t got;

				if (from < 0 || to < 0)
					continue;
				got = read(from, buffer, sizeof(buffer));
				if (got <= 0 || write(to, buffer, (size_t)got) != got) {
					close(f->pairs[i][0]);
					close(f->pairs[i][1]);
					f->pairs[i][0] = f->pairs[i][1] = -1;
				}
			}
		}
		pthread_mutex_unlock(&f->lock);
	}
	return NULL;
}

struct tcp_forwarder *tcp_forwarder__start(int target_port)
{
	struct tcp_forwarder *f = calloc(1, sizeof(*f));
	struct sockaddr_in address;
	socklen_t len = sizeof(address);

	if (!f)
		return NULL;
	f->target_port = target_port;
	pthread_mutex_init(&f->lock, NULL);
	for (int i = 0; i < FORWARDER_MAX; i++)
		f->pairs[i][0] = f->pairs[i][1] = -1;
	f->listener = tcp_forwarder__listen(0);
	if (f->listener < 0 || getsockname(f->listener, (struct sockaddr *)&address, &len)) {
		tcp_forwarder__free(f);
		return NULL;
	}
	f->port = ntohs(address.sin_port);
	if (pthread_create(&f->thread, NULL, tcp_forwarder__run, f)) {
		tcp_forwarder__free(f);
		return NULL;
	}
	f->thread_running = true;
	return f;
}

int tcp_forwarder__port(const struct tcp_forwarder *f)
{
	return f->port;
}

void tcp_forwarder__cut(struct tcp_forwarder *f)
{
	pthread_mutex_lock(&f->lock);
	if (f->listener >= 0)
		close(f->listener);
	f->listener = -1;
	for (int i = 0; i < FORWARDER_MAX; i++)
		for (int side = 0; side < 2; side++)
			if (f->pairs[i][side] >= 0) {
				shutdown(f->pairs[i][side], SHUT_RDWR);
				close(f->pairs[i][side]);
				f->pairs[i][side] = -1;
			}
	pthread_mutex_unlock(&f->lock);
}

bool tcp_forwarder__restore(struct tcp_forwarder *f)
{
	int fd = tcp_forwarder__listen(f->port);

	if (fd < 0)
		return false;
	pthread_mutex_lock(&f->lock);
	f->listener = fd;
	pthread_mutex_unlock(&f->lock);
	return true;
}

void tcp_forwarder__free(struct tcp_forwarder *f)
{
	if (!f)
		return;
	if (f->thread_running) {
		atomic_store(&f->stop, true);
		pthread_join(f->thread, NULL);
	}
	tcp_forwarder__cut(f);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

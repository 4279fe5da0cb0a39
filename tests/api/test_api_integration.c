/* Integration tests of warren-api (warren-api; docs/e2b-compatibility.md,
 * "REST API"): the real binary against the dev-stack PostgreSQL (own
 * database, migrated by storage) and Kafka (own topics under a unique
 * kafka_topic_prefix), with an in-process fake worker standing in for
 * workers/. Needs WARREN_PG_URL and WARREN_KAFKA_BROKERS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <libpq-fe.h>

#include "api_test_support.h"
#include "warren/volumes.h"
#include "warren/clock.h"
#include "warren/ids.h"
#include "warren/kafka.h"
#include "warren/tokens.h"

static struct test_stack stack;
static struct test_api api;
static struct storage_team team_a, team_b, team_c;
static char key_a[45], key_b[45], key_c[45];

static int setup(void **state)
{
	(void)state;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (!test_stack__up(&stack, "api"))
		return -1;
	if (!test_stack__team(&stack, "team-a", "pro", &team_a, key_a) ||
	    !test_stack__team(&stack, "team-b", "hobby", &team_b, key_b) ||
	    !test_stack__team(&stack, "team-c", "hobby", &team_c, key_c))
		return -1;
	/* Team A creates fast (the creation-rate limit has its own test). */
	if (storage__team_set_limit(stack.pool, team_a.id, "creation_rate_per_s", 100000, &team_a,
				    NULL) ||
	    storage__team_set_limit(stack.pool, team_a.id, "concurrent_sandboxes", 1000, &team_a,
				    NULL) ||
	    storage__team_set_limit(stack.pool, team_c.id, "creation_rate_per_s", 100000, &team_c,
				    NULL))
		return -1;
	if (!test_api__start(&api, &stack, NULL, NULL))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	int status;

	(void)state;
	status = test_api__stop(&api);
	test_stack__down(&stack);
	curl_global_cleanup();
	if (status)
		fprintf(stderr, "FAIL: warren-api exited with status %d\n", status);
	return status ? -1 : 0;
}

/* ---- helpers ---- */

static json_t *call(const char *method, const char *path, const char *key, const char *body,
		    long want_status, struct http_response *out)
{
	struct http_response local;
	struct http_response *response = out ? out : &local;
	json_t *json;

	assert_true(http__request(api.port, method, path, key, body, NULL, response));
	if (response->status != want_status)
		fail_msg("%s %s: status %ld, want %ld: %s", method, path, response->status,
			 want_status, response->body);
	json = response->body[0] ? json_loads(response->body, 0, NULL) : NULL;
	if (!out)
		http__response_free(&local);
	return json;
}

/* Asserts an E2B error body {"code": status, "message": message}. */
static void expect_error(const char *method, const char *path, const char *key, const char *body,
			 long status, const char *message)
{
	json_t *error = call(method, path, key, body, status, NULL);

	assert_non_null(error);
	assert_int_equal(json_integer_value(json_object_get(error, "code")), status);
	if (message)
		assert_string_equal(json_string_value(json_object_get(error, "message")), message);
	assert_int_equal(json_object_size(error), 2);
	json_decref(error);
}

static void create(const char *key, const char *body, char id[IDS_SANDBOX_ID_LEN + 1])
{
	json_t *created = call("POST", "/sandboxes", key, body, 201, NULL);

	assert_non_null(created);
	assert_true(ids__is_sandbox_id(json_string_value(json_object_get(created, "sandboxID"))));
	snprintf(id, IDS_SANDBOX_ID_LEN + 1, "%s",
		 json_string_value(json_object_get(created, "sandboxID")));
	json_decref(created);
}

static void not_found_message(const char *id, char *out, size_t len)
{
	snprintf(out, len, "Sandbox \"%s\" doesn't exist or you don't have access to it", id);
}

/* ---- tests ---- */

static void test_create_returns_ready_sandbox_with_tokens(void **state)
{
	struct http_response response;
	struct storage_sandbox row;
	char access[65], traffic[65], path[64], request_id[64];
	const char *id;
	json_t *created, *detail;

	(void)state;
	created = call("POST", "/sandboxes", key_a,
		       "{\"templateID\":\"base\",\"timeout\":60,\"secure\":true,"
		       "\"network\":{\"allowPublicTraffic\":false},\"metadata\":{\"app\":\"one\"},"
		       "\"envVars\":{\"A\":\"1\"}}",
		       201, &response);
	assert_true(http__header(&response, "X-Request-Id", request_id, sizeof(request_id)));
	assert_true(ids__is_uuid(request_id));
	http__response_free(&response);
	id = json_string_value(json_object_get(created, "sandboxID"));
	assert_true(ids__is_sandbox_id(id));
	tokens__access_token(TEST_API_SEED, id, access);
	tokens__traffic_token(TEST_API_SEED, id, traffic);
	assert_string_equal(json_string_value(json_object_get(created, "templateID")), "base");
	assert_string_equal(json_string_value(json_object_get(created, "alias")), "base");
	assert_string_equal(json_string_value(json_object_get(created, "clientID")), stack.host_id);
	assert_string_equal(json_string_value(json_object_get(created, "envdVersion")), "0.2.0");
	assert_string_equal(json_string_value(json_object_get(created, "envdAccessToken")), access);
	assert_string_equal(json_string_value(json_object_get(created, "trafficAccessToken")),
			    traffic);
	assert_string_equal(json_string_value(json_object_get(created, "domain")), TEST_API_DOMAIN);

	/* PostgreSQL has it running (the worker's write), tokens are not stored. */
	assert_int_equal(storage__sandbox_get(stack.pool, team_a.id, id, &row, NULL), STORAGE_OK);
	assert_int_equal(row.state, STORAGE_SANDBOX_RUNNING);
	assert_string_equal(row.request_id, request_id);
	assert_true(row.end_at > clock__realtime_ms() + 50000);
	assert_true(row.secure);
	assert_false(row.allow_public_traffic);
	storage__sandbox_clear(&row);

	snprintf(path, sizeof(path), "/sandboxes/%s", id);
	detail = call("GET", path, key_a, NULL, 200, NULL);
	assert_string_equal(json_string_value(json_object_get(detail, "sandboxID")), id);
	assert_string_equal(json_string_value(json_object_get(detail, "state")), "running");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(detail, "metadata"), "app")), "one");
	assert_string_equal(json_string_value(json_object_get(detail, "envdAccessToken")), access);
	assert_non_null(json_object_get(detail, "endAt"));
	assert_non_null(json_object_get(detail, "cpuCount"));
	json_decref(detail);
	json_decref(created);
}

static void test_create_public_has_null_tokens(void **state)
{
	json_t *created;

	(void)state;
	created = call("POST", "/sandboxes", key_a, "{\"templateID\":\"base\",\"secure\":false}",
		       201, NULL);
	assert_true(json_is_null(json_object_get(created, "envdAccessToken")));
	assert_true(json_is_null(json_object_get(created, "trafficAccessToken")));
	json_decref(created);
}

/* The e2b SDK 2.x: POST /v2/sandboxes (no `secure`: secure by default),
 * POST /v2/sandboxes/{id}/connect, and its metadata filter encoding. */
static void test_sdk2_create_connect_and_metadata(void **state)
{
	char access[65], path[128];
	const char *id;
	json_t *created, *connected, *list;
	struct storage_sandbox row;

	(void)state;
	created =
	    call("POST", "/v2/sandboxes", key_a,
		 "{\"templateID\":\"base\",\"timeout\":300,\"metadata\":{\"sdk key\":\"100%\"},"
		 "\"mcp\":null,\"autoResume\":{\"enabled\":false}}",
		 201, NULL);
	id = json_string_value(json_object_get(created, "sandboxID"));
	tokens__access_token(TEST_API_SEED, id, access);
	assert_string_equal(json_string_value(json_object_get(created, "envdAccessToken")), access);
	assert_true(json_is_null(json_object_get(created, "trafficAccessToken")));

	snprintf(path, sizeof(path), "/v2/sandboxes/%s/connect", id);
	connected = call("POST", path, key_a, "{\"timeout\":900}", 200, NULL);
	assert_string_equal(json_string_value(json_object_get(connected, "sandboxID")), id);
	assert_string_equal(json_string_value(json_object_get(connected, "envdAccessToken")),
			    access);
	assert_string_equal(json_string_value(json_object_get(connected, "envdVersion")), "0.2.0");
	json_decref(connected);
	assert_int_equal(storage__sandbox_get(stack.pool, team_a.id, id, &row, NULL), STORAGE_OK);
	assert_true(row.end_at >= clock__realtime_ms() + 890000);
	storage__sandbox_clear(&row);
	snprintf(path, sizeof(path), "/sandboxes/%s/connect", id);
	connected = call("POST", path, key_a, NULL, 200, NULL);
	json_decref(connected);

	/* {"sdk key": "100%"} as SandboxPaginator sends it. */
	list =
	    call("GET", "/v2/sandboxes?metadata=sdk%252520key%3D100%252525&state=running&limit=10",
		 key_a, NULL, 200, NULL);
	assert_int_equal(json_array_size(list), 1);
	assert_string_equal(
	    json_string_value(json_object_get(json_array_get(list, 0), "sandboxID")), id);
	json_decref(list);
	json_decref(created);
}

static void test_validation_rules_over_http(void **state)
{
	char *big;

	(void)state;
	expect_error("POST", "/sandboxes", key_a, "{}", 400, "templateID is required");
	expect_error("POST", "/sandboxes", key_a, "{\"templateID\":\"base\",\"timeout\":0}", 400,
		     "timeout must be greater than 0 seconds");
	expect_error("POST", "/sandboxes", key_a, "{\"templateID\":\"base\",\"timeout\":86401}",
		     400, "Timeout cannot be greater than 24 hours");
	expect_error("POST", "/sandboxes", key_b, "{\"templateID\":\"base\",\"timeout\":3601}", 400,
		     "Timeout cannot be greater than 1 hours");
	expect_error(
	    "POST", "/sandboxes", key_a,
	    "{\"templateID\":\"base\",\"secure\":false,\"network\":{\"allowPublicTraffic\":false}}",
	    400, "allowPublicTraffic=false requires secure=true");
	expect_error("POST", "/sandboxes", key_a,
		     "{\"templateID\":\"base\",\"network\":{\"allowOut\":[\"example.com\"]}}", 400,
		     "When specifying allowed domains in allow out, you must include 'ALL_TRAFFIC' "
		     "in deny out");
	expect_error("POST", "/sandboxes", key_a,
		     "{\"templateID\":\"base\",\"network\":{\"denyOut\":[\"example.com\"]}}", 400,
		     "domains are not accepted in deny out, only IP addresses and CIDR ranges: "
		     "\"example.com\"");
	expect_error("POST", "/sandboxes", key_a,
		     "{\"templateID\":\"base\",\"network\":{\"denyOut\":[\"300.1.1.1/8\"]}}", 400,
		     "invalid IP address, CIDR range or domain in denyOut: \"300.1.1.1/8\"");
	expect_error("POST", "/sandboxes", key_a,
		     "{\"templateID\":\"base\",\"metadata\":{\"a\":1}}", 400,
		     "metadata.a must be a string");
	expect_error("POST", "/sandboxes", key_a, "{\"templateID\":\"base\",\"envVars\":[]}", 400,
		     "envVars must be an object of strings");
	expect_error("POST", "/sandboxes", key_a, "{\"templateID\":", 400, NULL);
	expect_error("POST", "/sandboxes", key_a, "not json", 400, NULL);
	expect_error("POST", "/sandboxes", key_a, "{\"templateID\":\"nope\"}", 404,
		     "template 'nope' not found");
	/* 2 MiB body: 413 before it is read. */
	big = malloc(2 * 1024 * 1024 + 1);
	assert_non_null(big);
	memset(big, ' ', 2 * 1024 * 1024);
	big[0] = '{';
	big[2 * 1024 * 1024 - 1] = '}';
	big[2 * 1024 * 1024] = '\0';
	expect_error("POST", "/sandboxes", key_a, big, 413,
		     "request body is larger than 1048576 bytes");
	free(big);
	expect_error("PATCH", "/sandboxes", key_a, NULL, 405, "method not allowed");
	expect_error("GET", "/nothing", key_a, NULL, 404, NULL);
}

static void test_auth(void **state)
{
	(void)state;
	expect_error("GET", "/sandboxes", NULL, NULL, 401, "missing X-API-Key header");
	expect_error("GET", "/sandboxes", "e2b_0000000000000000000000000000000000000000", NULL, 401,
		     "Invalid API key");
	expect_error("POST", "/sandboxes", "wrong", "{\"templateID\":\"base\"}", 401,
		     "Invalid API key");
}

static void test_revoked_key_is_401(void **state)
{
	struct storage_team team;
	char key[45], hash[65];

	(void)state;
	assert_true(test_stack__team(&stack, "team-revoked", "hobby", &team, key));
	json_decref(call("GET", "/v2/sandboxes", key, NULL, 200, NULL));
	tokens__sha256_hex(key, strlen(key), hash);
	assert_int_equal(storage__api_key_revoke_by_hash(stack.pool, hash, NULL), STORAGE_OK);
	expect_error("GET", "/v2/sandboxes", key, NULL, 401, "Invalid API key");
}

/* The lifecycle limit, made small for one team (limits are read with the
 * key on every request, so an admin's change applies at once). */
static void test_lifecycle_limit_429(void **state)
{
	struct storage_team team;
	struct http_response response;
	char key[45], value[32];
	int ok = 0, limited = 0;

	(void)state;
	assert_true(test_stack__team(&stack, "team-lifecycle", "hobby", &team, key));
	assert_int_equal(
	    storage__team_set_limit(stack.pool, team.id, "lifecycle_requests", 5, &team, NULL),
	    STORAGE_OK);
	for (int i = 0; i < 7; i++) {
		assert_true(
		    http__request(api.port, "GET", "/v2/sandboxes", key, NULL, NULL, &response));
		if (response.status == 200)
			ok++;
		if (response.status == 429) {
			limited++;
			assert_non_null(strstr(
			    response.body,
			    "rate limit exceeded: at most 5 lifecycle API requests per 30 s"));
			assert_true(
			    http__header(&response, "RateLimit-Limit", value, sizeof(value)));
			assert_string_equal(value, "5");
			assert_true(http__header(&response, "Retry-After", value, sizeof(value)));
			assert_true(atoi(value) >= 1 && atoi(value) <= 6);
			assert_true(
			    http__header(&response, "RateLimit-Reset", value, sizeof(value)));
			assert_true(atoi(value) >= 25 && atoi(value) <= 30);
		}
		http__response_free(&response);
	}
	assert_int_equal(ok, 5);
	assert_int_equal(limited, 2);
	/* Each rejection is counted for the admin view. The shared limiter
	 * batches the counts (one write per team and limit per second), so
	 * give it a few seconds; the count must then be exactly 2. */
	{
		int64_t rejections = 0;

		for (int attempt = 0; attempt < 40 && rejections < 2; attempt++) {
			struct storage_admin_rejections *rows = NULL;
			size_t count = 0;

			if (attempt)
				usleep(100 * 1000);
			rejections = 0;
			assert_int_equal(
			    storage__admin_rejections(stack.pool, 5, &rows, &count, NULL),
			    STORAGE_OK);
			for (size_t i = 0; i < count; i++)
				if (!strcmp(rows[i].team, "team-lifecycle") &&
				    !strcmp(rows[i].limit_name, "lifecycle_requests"))
					rejections += rows[i].rejections;
			free(rows);
		}
		assert_int_equal(rejections, 2);
	}
	/* /health is not a lifecycle request. */
	json_decref(call("GET", "/health", NULL, NULL, 200, NULL));
}

static void test_other_team_gets_404(void **state)
{
	char id[IDS_SANDBOX_ID_LEN + 1], path[96], message[160];

	(void)state;
	create(key_a, "{\"templateID\":\"base\"}", id);
	not_found_message(id, message, sizeof(message));
	snprintf(path, sizeof(path), "/sandboxes/%s", id);
	expect_error("GET", path, key_b, NULL, 404, message);
	expect_error("DELETE", path, key_b, NULL, 404, message);
	snprintf(path, sizeof(path), "/sandboxes/%s/timeout", id);
	expect_error("POST", path, key_b, "{\"timeout\":30}", 404, message);
	snprintf(path, sizeof(path), "/sandboxes/%s/refreshes", id);
	expect_error("POST", path, key_b, "{\"duration\":30}", 404, message);
	snprintf(path, sizeof(path), "/sandboxes/%s/network", id);
	expect_error("PUT", path, key_b, "{\"allowOut\":[]}", 404, message);
	/* Team B's list does not show it. */
	{
		json_t *list = call("GET", "/sandboxes", key_b, NULL, 200, NULL);
		size_t i;
		json_t *item;

		json_array_foreach(list, i, item) assert_string_not_equal(
		    json_string_value(json_object_get(item, "sandboxID")), id);
		json_decref(list);
	}
	not_found_message("inotasandbox", message, sizeof(message));
	expect_error("GET", "/sandboxes/inotasandbox", key_a, NULL, 404, message);
}

static void test_list_pagination_and_filters(void **state)
{
	char ids[5][IDS_SANDBOX_ID_LEN + 1], token[128], total[16], path[512];
	struct http_response response;
	json_t *page, *list;
	size_t seen = 0, i;
	json_t *item;

	(void)state;
	for (int k = 0; k < 5; k++)
		create(
		    key_c,
		    k < 3 ? "{\"templateID\":\"base\",\"metadata\":{\"group\":\"x y\",\"n\":\"1\"}}"
			  : "{\"templateID\":\"base\",\"metadata\":{\"group\":\"other\"}}",
		    ids[k]);
	/* v1: everything running, E2B's ListedSandbox shape. */
	list = call("GET", "/sandboxes", key_c, NULL, 200, NULL);
	assert_int_equal(json_array_size(list), 5);
	item = json_array_get(list, 0);
	assert_string_equal(json_string_value(json_object_get(item, "sandboxID")), ids[4]);
	for (const char *const *field =
		 (const char *const[]){"sandboxID", "templateID", "alias", "clientID", "startedAt",
				       "endAt", "cpuCount", "memoryMB", "metadata", "state", NULL};
	     *field; field++)
		if (!json_object_get(item, *field))
			fail_msg("listed sandbox lacks %s", *field);
	json_decref(list);

	/* v2 pages of 2: 2 + 2 + 1, X-Next-Token until the end, X-Total-Running. */
	snprintf(path, sizeof(path), "/v2/sandboxes?limit=2");
	for (int pages = 0; pages < 3; pages++) {
		page = call("GET", path, key_c, NULL, 200, &response);
		assert_true(http__header(&response, "X-Total-Running", total, sizeof(total)));
		assert_string_equal(total, "5");
		seen += json_array_size(page);
		json_decref(page);
		if (pages < 2) {
			assert_true(http__header(&response, "X-Next-Token", token, sizeof(token)));
			snprintf(path, sizeof(path), "/v2/sandboxes?limit=2&nextToken=%s", token);
		} else {
			assert_false(http__header(&response, "X-Next-Token", token, sizeof(token)));
		}
		http__response_free(&response);
	}
	assert_int_equal(seen, 5);

	/* metadata filter as the SDK sends it: urlencode("group=x%20y&n=1"). */
	list =
	    call("GET", "/v2/sandboxes?metadata=group%3Dx%2520y%26n%3D1", key_c, NULL, 200, NULL);
	assert_int_equal(json_array_size(list), 3);
	json_array_foreach(list, i, item) assert_string_equal(
	    json_string_value(json_object_get(json_object_get(item, "metadata"), "group")), "x y");
	json_decref(list);
	list = call("GET", "/sandboxes?metadata=group%3Dother", key_c, NULL, 200, NULL);
	assert_int_equal(json_array_size(list), 2);
	json_decref(list);
	/* state filters: repeated and comma lists. */
	list = call("GET", "/v2/sandboxes?state=paused", key_c, NULL, 200, NULL);
	assert_int_equal(json_array_size(list), 0);
	json_decref(list);
	list = call("GET", "/v2/sandboxes?state=paused&state=running", key_c, NULL, 200, NULL);
	assert_int_equal(json_array_size(list), 5);
	json_decref(list);
	list = call("GET", "/v2/sandboxes?state=paused,running", key_c, NULL, 200, NULL);
	assert_int_equal(json_array_size(list), 5);
	json_decref(list);
	expect_error("GET", "/v2/sandboxes?state=bogus", key_c, NULL, 400,
		     "state must be \"running\" or \"paused\", not \"bogus\"");
	expect_error("GET", "/v2/sandboxes?limit=101", key_c, NULL, 400,
		     "limit must be an integer from 1 to 100");
	expect_error("GET", "/v2/sandboxes?nextToken=garbage", key_c, NULL, 400,
		     "invalid nextToken");
	/* clean up for the concurrency test */
	for (int k = 0; k < 5; k++) {
		snprintf(path, sizeof(path), "/sandboxes/%s", ids[k]);
		json_decref(call("DELETE", path, key_c, NULL, 204, NULL));
	}
}

static void test_timeout_and_refresh_move_end_at(void **state)
{
	char id[IDS_SANDBOX_ID_LEN + 1], path[96];
	struct storage_sandbox row;
	int64_t before;

	(void)state;
	create(key_a, "{\"templateID\":\"base\",\"timeout\":30}", id);
	snprintf(path, sizeof(path), "/sandboxes/%s/timeout", id);
	before = clock__realtime_ms();
	json_decref(call("POST", path, key_a, "{\"timeout\":600}", 204, NULL));
	assert_int_equal(storage__sandbox_get(stack.pool, team_a.id, id, &row, NULL), STORAGE_OK);
	assert_true(row.end_at >= before + 599000 && row.end_at <= clock__realtime_ms() + 601000);
	storage__sandbox_clear(&row);
	/* Shorter is allowed for /timeout (TTL from now). */
	json_decref(call("POST", path, key_a, "{\"timeout\":20}", 204, NULL));
	assert_int_equal(storage__sandbox_get(stack.pool, team_a.id, id, &row, NULL), STORAGE_OK);
	assert_true(row.end_at <= clock__realtime_ms() + 21000);
	storage__sandbox_clear(&row);
	expect_error("POST", path, key_a, "{\"timeout\":0}", 400,
		     "timeout must be greater than 0 seconds");
	expect_error("POST", path, key_a, "{}", 400, "timeout is required");
	expect_error("POST", path, key_a, "{bad", 400, NULL);

	snprintf(path, sizeof(path), "/sandboxes/%s/refreshes", id);
	before = clock__realtime_ms();
	json_decref(call("POST", path, key_a, "{\"duration\":1000}", 204, NULL));
	assert_int_equal(storage__sandbox_get(stack.pool, team_a.id, id, &row, NULL), STORAGE_OK);
	assert_true(row.end_at >= before + 999000);
	storage__sandbox_clear(&row);
	/* A refresh never shortens. */
	json_decref(call("POST", path, key_a, NULL, 204, NULL));
	assert_int_equal(storage__sandbox_get(stack.pool, team_a.id, id, &row, NULL), STORAGE_OK);
	assert_true(row.end_at >= before + 999000);
	storage__sandbox_clear(&row);
	/* The host was told (best effort, after the PostgreSQL write). */
	for (int i = 0; i < 100 && fake_worker__count("set_timeout") < 3; i++)
		usleep(20 * 1000);
	assert_true(fake_worker__count("set_timeout") >= 3);
}

static void test_kill_then_404(void **state)
{
	char id[IDS_SANDBOX_ID_LEN + 1], path[96], message[160];
	struct storage_sandbox row;

	(void)state;
	create(key_a, "{\"templateID\":\"base\"}", id);
	snprintf(path, sizeof(path), "/sandboxes/%s", id);
	json_decref(call("DELETE", path, key_a, NULL, 204, NULL));
	assert_int_equal(storage__sandbox_get(stack.pool, team_a.id, id, &row, NULL), STORAGE_OK);
	assert_int_equal(row.state, STORAGE_SANDBOX_KILLED);
	storage__sandbox_clear(&row);
	not_found_message(id, message, sizeof(message));
	expect_error("GET", path, key_a, NULL, 404, message);
	expect_error("DELETE", path, key_a, NULL, 404, message);
}

static void test_pause_and_network(void **state)
{
	char id[IDS_SANDBOX_ID_LEN + 1], path[96];

	(void)state;
	create(key_a, "{\"templateID\":\"base\"}", id);
	snprintf(path, sizeof(path), "/sandboxes/%s/network", id);
	json_decref(call("PUT", path, key_a,
			 "{\"allowOut\":[\"example.com\"],\"denyOut\":[\"0.0.0.0/0\"]}", 204,
			 NULL));
	assert_true(fake_worker__count("update_network") >= 1);
	expect_error("PUT", path, key_a, "{\"denyOut\":[\"example.com\"]}", 400,
		     "domains are not accepted in deny out, only IP addresses and CIDR ranges: "
		     "\"example.com\"");
	expect_error("PUT", path, key_a, "{\"allowOut\":[\"example.com\"]}", 400,
		     "When specifying allowed domains in allow out, you must include 'ALL_TRAFFIC' "
		     "in deny out");
}

/* Pause and resume through the API with the fake worker (no process is
 * frozen here; tests/e2e/sdk_pause.cjs does it for real). */
static void test_pause_resume_connect(void **state)
{
	char id[IDS_SANDBOX_ID_LEN + 1], path[128], message[160];
	struct storage_sandbox row;
	json_t *body;

	(void)state;
	create(key_a, "{\"templateID\":\"base\",\"autoPause\":true}", id);
	snprintf(path, sizeof(path), "/sandboxes/%s/resume", id);
	expect_error("POST", path, key_a, NULL, 409, NULL);
	snprintf(path, sizeof(path), "/sandboxes/%s/pause", id);
	json_decref(call("POST", path, key_a, "{}", 204, NULL));
	assert_true(fake_worker__count("pause") >= 1);
	expect_error("POST", path, key_a, NULL, 409, NULL); /* the SDK's "already paused" */
	assert_int_equal(storage__sandbox_get(stack.pool, team_a.id, id, &row, NULL), STORAGE_OK);
	assert_int_equal(row.state, STORAGE_SANDBOX_PAUSED);
	assert_true(row.pause_on_timeout);
	storage__sandbox_clear(&row);
	snprintf(path, sizeof(path), "/sandboxes/%s", id);
	body = call("GET", path, key_a, NULL, 200, NULL);
	assert_string_equal(json_string_value(json_object_get(body, "state")), "paused");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(body, "lifecycle"), "onTimeout")),
	    "pause");
	json_decref(body);
	/* Another team sees nothing to pause. */
	snprintf(path, sizeof(path), "/sandboxes/%s/pause", id);
	not_found_message(id, message, sizeof(message));
	expect_error("POST", path, key_b, NULL, 404, message);
	/* connect resumes it: 201 with the create body. */
	snprintf(path, sizeof(path), "/v2/sandboxes/%s/connect", id);
	body = call("POST", path, key_a, "{\"timeout\":120}", 201, NULL);
	assert_string_equal(json_string_value(json_object_get(body, "sandboxID")), id);
	json_decref(body);
	assert_int_equal(storage__sandbox_get(stack.pool, team_a.id, id, &row, NULL), STORAGE_OK);
	assert_int_equal(row.state, STORAGE_SANDBOX_RUNNING);
	assert_true(row.end_at > clock__realtime_ms() + 100 * 1000);
	storage__sandbox_clear(&row);
	/* Running again: connect is a plain 200. */
	json_decref(call("POST", path, key_a, NULL, 200, NULL));
	/* Kill of a paused sandbox. */
	snprintf(path, sizeof(path), "/sandboxes/%s/pause", id);
	json_decref(call("POST", path, key_a, NULL, 204, NULL));
	snprintf(path, sizeof(path), "/sandboxes/%s", id);
	json_decref(call("DELETE", path, key_a, NULL, 204, NULL));
	snprintf(path, sizeof(path), "/sandboxes/%s/pause", id);
	expect_error("POST", path, key_a, NULL, 404, message);
}

/* The /volumes API (docs/volumes.md): create, list, get, delete per team,
 * duplicate names, the count quota, and one writer at a time (a claim by a
 * live sandbox blocks a second claim and the delete until it ends). */
static void test_volumes_api(void **state)
{
	char sandbox[IDS_SANDBOX_ID_LEN + 1], other[IDS_SANDBOX_ID_LEN + 1], path[160], id[64];
	struct storage_volume volume;
	struct storage_error e;
	json_t *created, *list, *got;
	int made = 1;

	(void)state;
	expect_error("POST", "/volumes", key_a, "{\"name\":\"../x\"}", 400, NULL);
	expect_error("POST", "/volumes", key_a, "{}", 400, "name is required (a string)");
	created = call("POST", "/volumes", key_a, "{\"name\":\"data\"}", 201, NULL);
	assert_string_equal(json_string_value(json_object_get(created, "name")), "data");
	assert_true(json_is_string(json_object_get(created, "token")));
	snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(created, "volumeID")));
	assert_true(storage__volume_id_valid(id));
	json_decref(created);
	expect_error("POST", "/volumes", key_a, "{\"name\":\"data\"}", 409,
		     "volume 'data' already exists");
	/* another team may use the name; it never sees team A's volume */
	json_decref(call("POST", "/volumes", key_b, "{\"name\":\"data\"}", 201, NULL));
	snprintf(path, sizeof(path), "/volumes/%s", id);
	got = call("GET", path, key_a, NULL, 200, NULL);
	assert_string_equal(json_string_value(json_object_get(got, "volumeID")), id);
	json_decref(got);
	expect_error("GET", path, key_b, NULL, 404, NULL);
	expect_error("DELETE", path, key_b, NULL, 404, NULL);
	expect_error("GET", "/volumes/vol_doesnotexist00000000", key_a, NULL, 404,
		     "volume vol_doesnotexist00000000 not found");
	list = call("GET", "/volumes", key_a, NULL, 200, NULL);
	assert_int_equal(json_array_size(list), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "name")),
			    "data");
	json_decref(list);

	/* one writer: a live sandbox's claim blocks another and the delete */
	create(key_a, "{\"templateID\":\"base\"}", sandbox);
	create(key_a, "{\"templateID\":\"base\"}", other);
	assert_int_equal(
	    storage__volume_claim(stack.pool, team_a.id, "data", sandbox, "/data", &volume, &e),
	    STORAGE_OK);
	assert_true(volume.in_use);
	assert_int_equal(
	    storage__volume_claim(stack.pool, team_a.id, "data", other, "/data", NULL, &e),
	    STORAGE_ERR_CONFLICT);
	assert_non_null(strstr(e.message, sandbox));
	assert_int_equal(
	    storage__volume_claim(stack.pool, team_b.id, "nope", other, "/data", NULL, &e),
	    STORAGE_ERR_NOT_FOUND);
	got = call("DELETE", path, key_a, NULL, 409, NULL);
	assert_non_null(
	    strstr(json_string_value(json_object_get(got, "message")), "is mounted by sandbox"));
	json_decref(got);
	snprintf(path, sizeof(path), "/sandboxes/%s", sandbox);
	call("DELETE", path, key_a, NULL, 204, NULL);
	/* the sandbox ended: the volume is free for the next one */
	assert_int_equal(
	    storage__volume_claim(stack.pool, team_a.id, "data", other, "/data", NULL, &e),
	    STORAGE_OK);
	assert_int_equal(storage__volume_release_internal(stack.pool, other, &e), STORAGE_OK);
	snprintf(path, sizeof(path), "/volumes/%s", id);
	call("DELETE", path, key_a, NULL, 204, NULL);
	expect_error("GET", path, key_a, NULL, 404, NULL);
	snprintf(path, sizeof(path), "/sandboxes/%s", other);
	call("DELETE", path, key_a, NULL, 204, NULL);

	/* the count quota (volume_quota_count, 20 by default): the 21st is a 403 */
	for (made = 0; made < 20; made++) {
		char body[64];

		snprintf(body, sizeof(body), "{\"name\":\"q%d\"}", made);
		json_decref(call("POST", "/volumes", key_c, body, 201, NULL));
	}
	expect_error("POST", "/volumes", key_c, "{\"name\":\"q20\"}", 403,
		     "volume quota exceeded: the team has 20 of 20 volumes");
}

/* The E2B surface beyond create/kill, one test each, run in this order:
 * 501 for routes warren lacks (after auth), list filters, metrics, network
 * update fields, logs. The list-filter test creates the two sandboxes the
 * later ones use (surface_a, surface_b); the network test kills them. */
static char surface_a[IDS_SANDBOX_ID_LEN + 1], surface_b[IDS_SANDBOX_ID_LEN + 1];

/* Routes warren lacks answer 501 (after the 401 for no key); an unknown
 * route is a 404. */
static void test_unimplemented_routes(void **state)
{
	json_t *list;

	(void)state;
	/* Unauthenticated: 401 first, as for every route. */
	expect_error("GET", "/volumes", NULL, NULL, 401, NULL);
	expect_error("GET", "/volumecontent/vol_x/dir", key_a, NULL, 501, NULL);
	/* snapshots of an unknown (or another team's) sandbox: 404 */
	expect_error("POST", "/sandboxes/iabcdefghij0123456789/snapshots", key_a, "{}", 404, NULL);
	list = call("GET", "/snapshots", key_a, NULL, 200, NULL);
	assert_true(json_is_array(list));
	assert_int_equal(json_array_size(list), 0);
	json_decref(list);
	/* fork: an unknown sandbox is a 404, a count out of bounds a 400 */
	expect_error("POST", "/sandboxes/iabcdefghij0123456789/fork", key_a, "{\"count\":2}", 404,
		     NULL);
	expect_error("POST", "/sandboxes/iabcdefghij0123456789/fork", key_a, "{\"count\":0}", 400,
		     NULL);
	expect_error("POST", "/sandboxes/iabcdefghij0123456789/fork", key_a, "{\"count\":\"2\"}",
		     400, NULL);
	expect_error("GET", "/no/such/thing", key_a, NULL, 404, NULL);
}

/* List filters: metadata, order, template, startedAfter (v1 and v2), and
 * the 400s for bad values. Creates surface_a and surface_b. */
static void test_list_filters(void **state)
{
	json_t *list;

	(void)state;
	create(key_a, "{\"templateID\":\"base\",\"metadata\":{\"suite\":\"surface\"}}", surface_a);
	create(key_a, "{\"templateID\":\"base\",\"metadata\":{\"suite\":\"surface\"}}", surface_b);
	/* order=asc: a first; desc (default): b first. */
	list = call("GET", "/v2/sandboxes?metadata=suite%3Dsurface&order=asc&template=base", key_a,
		    NULL, 200, NULL);
	assert_int_equal(json_array_size(list), 2);
	assert_string_equal(
	    json_string_value(json_object_get(json_array_get(list, 0), "sandboxID")), surface_a);
	json_decref(list);
	list = call("GET", "/v2/sandboxes?metadata=suite%3Dsurface", key_a, NULL, 200, NULL);
	assert_string_equal(
	    json_string_value(json_object_get(json_array_get(list, 0), "sandboxID")), surface_b);
	json_decref(list);
	list = call("GET", "/v2/sandboxes?metadata=suite%3Dsurface&template=minimal", key_a, NULL,
		    200, NULL);
	assert_int_equal(json_array_size(list), 0);
	json_decref(list);
	list =
	    call("GET",
		 "/v2/sandboxes?metadata=suite%3Dsurface&startedAfter=2999-01-01T00%3A00%3A00.000Z",
		 key_a, NULL, 200, NULL);
	assert_int_equal(json_array_size(list), 0);
	json_decref(list);
	list =
	    call("GET", "/sandboxes?metadata=suite%3Dsurface&startedAfter=2020-01-01T00%3A00%3A00Z",
		 key_a, NULL, 200, NULL);
	assert_int_equal(json_array_size(list), 2);
	json_decref(list);
	expect_error("GET", "/v2/sandboxes?order=sideways", key_a, NULL, 400,
		     "order must be \"asc\" or \"desc\", not \"sideways\"");
	expect_error("GET", "/v2/sandboxes?startedAfter=today", key_a, NULL, 400, NULL);
	expect_error("GET", "/v2/sandboxes?template=NO%20WAY", key_a, NULL, 400, NULL);
	expect_error("GET", "/v2/sandboxes?state=killed", key_a, NULL, 400, NULL);
}

/* Metrics: what the worker stored for surface_a, in E2B's shape, by time
 * range and for several sandboxes; other teams see none of it. */
static void test_sandbox_metrics(void **state)
{
	char path[160], message[256];
	struct storage_sandbox_metric sample = {.cpu_count = 1,
						.cpu_used_pct = 42.5,
						.mem_used = 1 << 20,
						.mem_total = 512 << 20,
						.disk_total = 1 << 30};
	int64_t now_s = clock__realtime_ms() / 1000;
	json_t *metrics;

	(void)state;
	assert_true(surface_a[0] && surface_b[0]); /* made by test_list_filters */
	/* Metrics: what the worker stored, in E2B's shape. */
	for (int i = 0; i < 3; i++) {
		snprintf(sample.sandbox_id, sizeof(sample.sandbox_id), "%s", surface_a);
		sample.at = (now_s - 10 + 5 * i) * 1000;
		assert_int_equal(storage__sandbox_metric_insert(stack.pool, &sample, NULL),
				 STORAGE_OK);
	}
	snprintf(path, sizeof(path), "/sandboxes/%s/metrics", surface_a);
	metrics = call("GET", path, key_a, NULL, 200, NULL);
	assert_int_equal(json_array_size(metrics), 3);
	assert_true(json_real_value(json_object_get(json_array_get(metrics, 0), "cpuUsedPct")) >
		    42);
	assert_int_equal(
	    json_integer_value(json_object_get(json_array_get(metrics, 2), "timestampUnix")),
	    now_s);
	assert_int_equal(
	    json_integer_value(json_object_get(json_array_get(metrics, 0), "memTotal")), 512 << 20);
	assert_true(json_is_string(json_object_get(json_array_get(metrics, 0), "timestamp")));
	json_decref(metrics);
	snprintf(path, sizeof(path), "/sandboxes/%s/metrics?start=%lld&end=%lld", surface_a,
		 (long long)(now_s - 6), (long long)now_s);
	metrics = call("GET", path, key_a, NULL, 200, NULL);
	assert_int_equal(json_array_size(metrics), 2);
	json_decref(metrics);
	snprintf(path, sizeof(path), "/sandboxes/%s/metrics?start=abc", surface_a);
	expect_error("GET", path, key_a, NULL, 400,
		     "start must be a Unix time in seconds, not \"abc\"");
	snprintf(path, sizeof(path), "/sandboxes/%s/metrics", surface_a);
	not_found_message(surface_a, message, sizeof(message));
	expect_error("GET", path, key_b, NULL, 404, message); /* another team's */
	snprintf(path, sizeof(path), "/sandboxes/metrics?sandbox_ids=%s,%s", surface_a, surface_b);
	metrics = call("GET", path, key_a, NULL, 200, NULL);
	assert_int_equal(json_object_size(json_object_get(metrics, "sandboxes")), 1);
	assert_int_equal(json_integer_value(json_object_get(
			     json_object_get(json_object_get(metrics, "sandboxes"), surface_a),
			     "timestampUnix")),
			 now_s);
	json_decref(metrics);
	metrics = call("GET", path, key_b, NULL, 200, NULL);
	assert_int_equal(json_object_size(json_object_get(metrics, "sandboxes")), 0);
	json_decref(metrics);
	expect_error("GET", "/sandboxes/metrics", key_a, NULL, 400, NULL);
}

/* Network update of surface_a: allow_internet_access reaches the stored
 * policy, egressProxy is refused. Then kills surface_a and surface_b. */
static void test_network_update(void **state)
{
	char path[160];
	json_t *metrics;

	(void)state;
	assert_true(surface_a[0] && surface_b[0]); /* made by test_list_filters */
	/* Network update: allow_internet_access reaches the worker as
	 * denyOut ALL_TRAFFIC; what warren lacks is refused. */
	snprintf(path, sizeof(path), "/sandboxes/%s/network", surface_a);
	json_decref(call("PUT", path, key_a, "{\"allow_internet_access\":false}", 204, NULL));
	snprintf(path, sizeof(path), "/sandboxes/%s", surface_a);
	metrics = call("GET", path, key_a, NULL, 200, NULL); /* the stored policy follows */
	assert_true(json_is_false(json_object_get(metrics, "allowInternetAccess")));
	assert_string_equal(
	    json_string_value(
		json_array_get(json_object_get(json_object_get(metrics, "network"), "denyOut"), 0)),
	    "0.0.0.0/0");
	assert_true(json_is_true(
	    json_object_get(json_object_get(metrics, "network"), "allowPublicTraffic")));
	json_decref(metrics);
	snprintf(path, sizeof(path), "/sandboxes/%s/network", surface_a);
	expect_error("PUT", path, key_a, "{\"egressProxy\":{\"address\":\"192.0.2.1:1080\"}}", 400,
		     "egressProxy is not supported by warren (no egress proxy chaining)");
	snprintf(path, sizeof(path), "/sandboxes/%s", surface_a);
	json_decref(call("DELETE", path, key_a, NULL, 204, NULL));
	snprintf(path, sizeof(path), "/sandboxes/%s", surface_b);
	json_decref(call("DELETE", path, key_a, NULL, 204, NULL));
}

/* Logs of surface_a (ended by test_network_update): lifecycle lines, the
 * v1 shape, level filter; another team's 404; bad parameters are 400. */
static void test_lifecycle_logs(void **state)
{
	char path[160], message[256];
	json_t *list;

	(void)state;
	assert_true(surface_a[0]); /* made by test_list_filters */
	/* Logs: lifecycle lines, also once the sandbox has ended; other
	 * teams get the 404; bad parameters are 400. */
	snprintf(path, sizeof(path), "/v2/sandboxes/%s/logs", surface_a);
	list = call("GET", path, key_a, NULL, 200, NULL);
	assert_true(json_array_size(json_object_get(list, "logs")) >= 1);
	assert_string_equal(json_string_value(json_object_get(
				json_array_get(json_object_get(list, "logs"), 0), "message")),
			    "sandbox starting");
	assert_string_equal(
	    json_string_value(json_object_get(
		json_object_get(json_array_get(json_object_get(list, "logs"), 0), "fields"),
		"source")),
	    "lifecycle");
	json_decref(list);
	snprintf(path, sizeof(path), "/sandboxes/%s/logs?limit=1", surface_a);
	list = call("GET", path, key_a, NULL, 200, NULL);
	assert_int_equal(json_array_size(json_object_get(list, "logs")), 1);
	assert_int_equal(json_array_size(json_object_get(list, "logEntries")), 1);
	assert_true(json_is_string(
	    json_object_get(json_array_get(json_object_get(list, "logs"), 0), "line")));
	json_decref(list);
	snprintf(path, sizeof(path), "/v2/sandboxes/%s/logs?level=error", surface_a);
	list = call("GET", path, key_a, NULL, 200, NULL);
	assert_int_equal(json_array_size(json_object_get(list, "logs")), 0);
	json_decref(list);
	snprintf(path, sizeof(path), "/v2/sandboxes/%s/logs", surface_a);
	not_found_message(surface_a, message, sizeof(message));
	expect_error("GET", path, key_b, NULL, 404, message);
	snprintf(path, sizeof(path), "/v2/sandboxes/%s/logs?direction=sideways", surface_a);
	expect_error("GET", path, key_a, NULL, 400, NULL);
}

static void test_failed_create_is_reported(void **state)
{
	PGconn *conn;
	PGresult *result;

	(void)state;
	expect_error("POST", "/sandboxes", key_a,
		     "{\"templateID\":\"base\",\"metadata\":{\"fake\":\"fail\"}}", 500,
		     "fake failure");
	/* The request row is finished as failed (read-only check from the test). */
	conn = PQconnectdb(stack.db_url);
	assert_int_equal(PQstatus(conn), CONNECTION_OK);
	result = PQexec(conn, "SELECT count(*) FROM sandboxes WHERE state = 'failed' AND "
			      "failure_reason = 'fake failure'");
	assert_int_equal(PQresultStatus(result), PGRES_TUPLES_OK);
	assert_string_equal(PQgetvalue(result, 0, 0), "1");
	PQclear(result);
	PQfinish(conn);
}

static void sql(const char *statement)
{
	PGconn *conn = PQconnectdb(stack.db_url);
	PGresult *result;

	assert_int_equal(PQstatus(conn), CONNECTION_OK);
	result = PQexec(conn, statement);
	if (PQresultStatus(result) != PGRES_COMMAND_OK)
		fail_msg("%s: %s", statement, PQerrorMessage(conn));
	PQclear(result);
	PQfinish(conn);
}

/* Placement from the hosts table (docs/api.md, "Placement"): every ready
 * host full -> 503 with Retry-After at once; room -> the create goes on;
 * a runtime no host runs -> 503; no fresh ready host at all -> the create
 * waits in Kafka for a worker (here the fake one answers it). The fake
 * worker's own host is set draining (its heartbeat paused meanwhile). */
static void test_placement_by_hosts_table(void **state)
{
	struct http_response response;
	json_t *created;
	char path[96], statement[256];

	(void)state;
	fake_worker__pause_heartbeat(true);
	usleep(200 * 1000); /* a beat in progress lands first */
	snprintf(statement, sizeof(statement),
		 "UPDATE hosts SET state = 'draining' WHERE id = '%s'", stack.host_id);
	sql(statement);
	sql("INSERT INTO hosts (id, address, runtime, capacity, running, state) "
	    "VALUES ('api-test-host', '127.0.0.1', 'jail', 2, 2, 'ready')");
	assert_true(http__request(api.port, "POST", "/sandboxes", key_a,
				  "{\"templateID\":\"base\"}", NULL, &response));
	assert_int_equal(response.status, 503);
	assert_non_null(strcasestr(response.headers, "Retry-After: 1"));
	assert_non_null(
	    strstr(response.body, "no worker host has room: 2 of 2 sandboxes on 1 host(s)"));
	http__response_free(&response);

	sql("UPDATE hosts SET running = 1 WHERE id = 'api-test-host'");
	created = call("POST", "/sandboxes", key_a, "{\"templateID\":\"base\"}", 201, NULL);
	snprintf(path, sizeof(path), "/sandboxes/%s",
		 json_string_value(json_object_get(created, "sandboxID")));
	json_decref(created);
	json_decref(call("DELETE", path, key_a, NULL, 204, NULL));

	expect_error("POST", "/sandboxes", key_a,
		     "{\"templateID\":\"base\",\"metadata\":{\"warren.runtime\":\"vm\"}}", 503,
		     "no worker host with the vm runtime is ready");
	sql("UPDATE hosts SET heartbeat_at = now() - interval '1 hour' WHERE id = 'api-test-host'");
	created = call("POST", "/sandboxes", key_a, "{\"templateID\":\"base\"}", 201, NULL);
	snprintf(path, sizeof(path), "/sandboxes/%s",
		 json_string_value(json_object_get(created, "sandboxID")));
	json_decref(created);
	json_decref(call("DELETE", path, key_a, NULL, 204, NULL));
	sql("DELETE FROM hosts WHERE id = 'api-test-host'");
	fake_worker__pause_heartbeat(false);
	usleep(1500 * 1000); /* the fake host is ready again */
}

static void test_request_id_is_idempotency_key(void **state)
{
	struct http_response first, second;
	char request_id[IDS_UUID_LEN + 1], echoed[64];
	json_t *a, *b;

	(void)state;
	ids__uuid(request_id);
	assert_true(http__request(api.port, "POST", "/sandboxes", key_a,
				  "{\"templateID\":\"base\"}", request_id, &first));
	assert_int_equal(first.status, 201);
	assert_true(http__header(&first, "X-Request-Id", echoed, sizeof(echoed)));
	assert_string_equal(echoed, request_id);
	assert_true(http__request(api.port, "POST", "/sandboxes", key_a,
				  "{\"templateID\":\"base\"}", request_id, &second));
	assert_int_equal(second.status, 201);
	a = json_loads(first.body, 0, NULL);
	b = json_loads(second.body, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(a, "sandboxID")),
			    json_string_value(json_object_get(b, "sandboxID")));
	json_decref(a);
	json_decref(b);
	http__response_free(&first);
	http__response_free(&second);
	/* Another team cannot reuse it. */
	assert_true(http__request(api.port, "POST", "/sandboxes", key_b,
				  "{\"templateID\":\"base\"}", request_id, &second));
	assert_int_equal(second.status, 409);
	http__response_free(&second);
}

static void test_concurrency_limit_21st_is_429(void **state)
{
	char ids[20][IDS_SANDBOX_ID_LEN + 1], value[32], path[96];
	struct http_response response;
	json_t *error;

	(void)state;
	for (int i = 0; i < 20; i++)
		create(key_c, "{\"templateID\":\"base\"}", ids[i]);
	error = call("POST", "/sandboxes", key_c, "{\"templateID\":\"base\"}", 429, &response);
	assert_int_equal(json_integer_value(json_object_get(error, "code")), 429);
	assert_string_equal(json_string_value(json_object_get(error, "message")),
			    "you have reached the maximum number of concurrent sandboxes (20)");
	json_decref(error);
	assert_true(http__header(&response, "RateLimit-Limit", value, sizeof(value)));
	assert_string_equal(value, "20");
	assert_true(http__header(&response, "RateLimit-Remaining", value, sizeof(value)));
	assert_string_equal(value, "0");
	assert_true(http__header(&response, "RateLimit-Reset", value, sizeof(value)));
	assert_true(http__header(&response, "Retry-After", value, sizeof(value)));
	assert_true(atoi(value) >= 1);
	http__response_free(&response);
	/* A kill frees the slot at once. */
	snprintf(path, sizeof(path), "/sandboxes/%s", ids[0]);
	json_decref(call("DELETE", path, key_c, NULL, 204, NULL));
	create(key_c, "{\"templateID\":\"base\"}", ids[0]);
}

static void test_creation_rate_limit(void **state)
{
	struct http_response response;
	char value[32];
	int created = 0, limited = 0;

	(void)state;
	/* Team B: hobby, 1 creation per second with a burst of 2. Earlier
	 * tests spent some of its budget: after 2 s the whole burst is back. */
	sleep(2);
	for (int i = 0; i < 3; i++) {
		assert_true(http__request(api.port, "POST", "/sandboxes", key_b,
					  "{\"templateID\":\"base\"}", NULL, &response));
		if (response.status == 201)
			created++;
		if (response.status == 429) {
			limited++;
			assert_non_null(
			    strstr(response.body,
				   "rate limit exceeded: at most 1 sandbox creations per second"));
			assert_true(
			    http__header(&response, "RateLimit-Limit", value, sizeof(value)));
			assert_string_equal(value, "1");
			assert_true(http__header(&response, "Retry-After", value, sizeof(value)));
			assert_string_equal(value, "1");
			assert_true(
			    http__header(&response, "RateLimit-Remaining", value, sizeof(value)));
			assert_string_equal(value, "0");
		}
		http__response_free(&response);
	}
	assert_int_equal(created, 2);
	assert_int_equal(limited, 1);
}

static void test_create_deadline_answers_504_and_get_finds_it(void **state)
{
	static const char *const env[] = {"WARREN_CREATE_DEADLINE_MS=300", NULL};
	struct test_api second;
	struct http_response response;
	json_t *error;
	char path[96], id[IDS_SANDBOX_ID_LEN + 1];
	const char *message;

	(void)state;
	assert_true(test_api__start(&second, &stack, NULL, env));
	assert_true(http__request(second.port, "POST", "/sandboxes", key_a,
				  "{\"templateID\":\"base\",\"metadata\":{\"fake\":\"silent\"}}",
				  NULL, &response));
	assert_int_equal(test_api__stop(&second), 0);
	assert_int_equal(response.status, 504);
	error = json_loads(response.body, 0, NULL);
	http__response_free(&response);
	message = json_string_value(json_object_get(error, "message"));
	assert_non_null(strstr(message, "is still starting"));
	/* "sandbox <id> is still starting ...": GET finds it, starting. */
	snprintf(id, sizeof(id), "%.21s", message + 8);
	json_decref(error);
	snprintf(path, sizeof(path), "/sandboxes/%s", id);
	error = call("GET", path, key_a, NULL, 200, NULL);
	assert_string_equal(json_string_value(json_object_get(error, "state")), "starting");
	json_decref(error);
	/* A starting sandbox that no host holds yet is killed in place. */
	json_decref(call("DELETE", path, key_a, NULL, 204, NULL));
}

/* A create whose outcome is only recorded (no result event) is answered
 * from PostgreSQL's notification (docs/schema.md, "Notifications"),
 * long before a 2 s create deadline. */
static void test_create_answered_by_notification(void **state)
{
	static const char *const env[] = {"WARREN_CREATE_DEADLINE_MS=2000", NULL};
	struct test_api second;
	struct http_response response;
	json_t *body;

	(void)state;
	assert_true(test_api__start(&second, &stack, NULL, env));
	assert_true(http__request(
	    second.port, "POST", "/sandboxes", key_a,
	    "{\"templateID\":\"base\",\"metadata\":{\"fake\":\"notify-only\"}}", NULL, &response));
	assert_int_equal(test_api__stop(&second), 0);
	assert_int_equal(response.status, 201);
	body = json_loads(response.body, 0, NULL);
	http__response_free(&response);
	assert_non_null(body);
	assert_string_equal(json_string_value(json_object_get(body, "envdVersion")), "0.2.0");
	assert_non_null(json_string_value(json_object_get(body, "sandboxID")));
	json_decref(body);
}

struct silent_create {
	pthread_t thread;
	int port;
	long status;
};

static void *silent_create_run(void *arg)
{
	struct silent_create *c = arg;
	struct http_response response;

	if (http__request(c->port, "POST", "/sandboxes", key_a,
			  "{\"templateID\":\"base\",\"metadata\":{\"fake\":\"silent\"}}", NULL,
			  &response))
		c->status = response.status;
	http__response_free(&response);
	return NULL;
}

/* Waiting creates are suspended, not parked on a thread: with 2 HTTP
 * threads and 6 creates waiting for results, /health still answers. */
static void test_waiting_creates_hold_no_thread(void **state)
{
	static const char *const env[] = {"WARREN_API_THREADS=2", "WARREN_CREATE_DEADLINE_MS=3000",
					  NULL};
	struct silent_create creates[6];
	struct test_api second;
	struct http_response response;
	uint64_t start;
	double health_ms;

	(void)state;
	assert_true(test_api__start(&second, &stack, NULL, env));
	for (int i = 0; i < 6; i++) {
		creates[i] = (struct silent_create){.port = second.port};
		assert_int_equal(
		    pthread_create(&creates[i].thread, NULL, silent_create_run, &creates[i]), 0);
	}
	usleep(800 * 1000);
	health_ms = 0;
	for (int i = 0; i < 3; i++) {
		double ms;

		start = clock__monotonic_ns();
		assert_true(
		    http__request(second.port, "GET", "/health", NULL, NULL, NULL, &response));
		ms = (double)(clock__monotonic_ns() - start) / 1e6;
		printf("health %d: %.1f ms\n", i, ms);
		health_ms = ms > health_ms ? ms : health_ms;
		assert_int_equal(response.status, 200);
		http__response_free(&response);
	}
	for (int i = 0; i < 6; i++)
		pthread_join(creates[i].thread, NULL);
	assert_int_equal(test_api__stop(&second), 0);
	printf("GET /health with 6 creates suspended on 2 threads: %.1f ms\n", health_ms);
	assert_true(health_ms < 1000);
	for (int i = 0; i < 6; i++)
		assert_int_equal(creates[i].status, 504);
}

static void test_postgres_outage_503_then_recovery(void **state)
{
	struct tcp_forwarder *forwarder;
	struct test_api second;
	struct http_response response;
	char url[2600], *port;
	long status = 0;

	(void)state;
	/* A second instance reaches PostgreSQL through a forwarder we can cut. */
	port = strstr(stack.db_url, "port='");
	assert_non_null(port);
	forwarder = tcp_forwarder__start(atoi(port + 6));
	assert_non_null(forwarder);
	snprintf(url, sizeof(url), "%.*sport='%d'%s", (int)(port - stack.db_url), stack.db_url,
		 tcp_forwarder__port(forwarder), strchr(port + 6, '\'') + 1);
	assert_true(test_api__start(&second, &stack, url, NULL));
	for (int i = 0; i < 100 && status != 200; i++) {
		assert_true(http__request(second.port, "GET", "/v2/sandboxes", key_a, NULL, NULL,
					  &response));
		status = response.status;
		http__response_free(&response);
		if (status != 200)
			usleep(100 * 1000);
	}
	assert_int_equal(status, 200);

	tcp_forwarder__cut(forwarder);
	assert_true(
	    http__request(second.port, "GET", "/v2/sandboxes", key_a, NULL, NULL, &response));
	assert_int_equal(response.status, 503);
	assert_non_null(strstr(response.body, "\"code\":503"));
	http__response_free(&response);
	assert_true(http__request(second.port, "POST", "/sandboxes", key_a,
				  "{\"templateID\":\"base\"}", NULL, &response));
	assert_int_equal(response.status, 503);
	http__response_free(&response);

	/* Back: it recovers by itself. */
	assert_true(tcp_forwarder__restore(forwarder));
	status = 0;
	for (int i = 0; i < 100 && status != 200; i++) {
		assert_true(http__request(second.port, "GET", "/v2/sandboxes", key_a, NULL, NULL,
					  &response));
		status = response.status;
		http__response_free(&response);
		if (status != 200)
			usleep(100 * 1000);
	}
	assert_int_equal(test_api__stop(&second), 0);
	tcp_forwarder__free(forwarder);
	assert_int_equal(status, 200);
}

/* Kafka refuses the command (here: the commands topic does not exist):
 * the client gets 503 and the row is failed, never a silent loss. */
static void test_kafka_produce_failure_503_and_row_failed(void **state)
{
	struct kafka_settings kafka;
	char prefix[96], topic[KAFKA_TOPIC_NAME_MAX + 1], prefix_env[160], err[256];
	const char *env[] = {prefix_env, "WARREN_KAFKA_PRODUCE_TIMEOUT_MS=1000", NULL};
	struct test_api second;
	PGconn *conn;
	PGresult *result;

	(void)state;
	kafka_settings__from_config(&kafka);
	snprintf(prefix, sizeof(prefix), "%snocommands.", stack.topic_prefix);
	snprintf(topic, sizeof(topic), "%s%s", prefix, KAFKA_TOPIC_SANDBOX_EVENTS);
	assert_int_equal(kafka__create_topic(&kafka, topic, 1, 1, 30000, err, sizeof(err)), 0);
	snprintf(prefix_env, sizeof(prefix_env), "WARREN_KAFKA_TOPIC_PREFIX=%s", prefix);
	if (!test_api__start(&second, &stack, NULL, env)) {
		kafka__delete_topic(&kafka, topic, 30000, err, sizeof(err));
		fail_msg("second instance did not start");
	}
	{
		struct http_response response;

		assert_true(http__request(second.port, "POST", "/sandboxes", key_a,
					  "{\"templateID\":\"base\"}", NULL, &response));
		assert_int_equal(response.status, 503);
		assert_non_null(strstr(
		    response.body, "cannot queue the request (Kafka unavailable), retry later"));
		http__response_free(&response);
	}
	assert_int_equal(test_api__stop(&second), 0);
	kafka__delete_topic(&kafka, topic, 30000, err, sizeof(err));
	conn = PQconnectdb(stack.db_url);
	result =
	    PQexec(conn, "SELECT count(*) FROM sandboxes s JOIN requests r USING (request_id) "
			 "WHERE s.state = 'failed' AND r.status = 'failed' AND "
			 "s.failure_reason = 'the create command could not be queued in Kafka'");
	assert_int_equal(PQresultStatus(result), PGRES_TUPLES_OK);
	assert_string_equal(PQgetvalue(result, 0, 0), "1");
	PQclear(result);
	PQfinish(conn);
}

static int compare_ms(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Create latency through API + Kafka + fake worker, sequential creates. */
static void test_create_latency(void **state)
{
	enum { CREATES = 200 };
	static double latency[CREATES];
	struct http_response response;

	(void)state;
	for (int i = 0; i < CREATES; i++) {
		uint64_t start = clock__monotonic_ns();

		assert_true(http__request(
		    api.port, "POST", "/sandboxes", key_a,
		    "{\"templateID\":\"base\",\"metadata\":{\"bench\":\"1\"}}", NULL, &response));
		latency[i] = (double)(clock__monotonic_ns() - start) / 1e6;
		if (response.status != 201)
			fail_msg("create %d: %ld %s", i, response.status, response.body);
		http__response_free(&response);
	}
	qsort(latency, CREATES, sizeof(latency[0]), compare_ms);
	printf("api create latency (API + Kafka + fake worker, %d sequential creates): "
	       "p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
	       CREATES, latency[CREATES / 2], latency[CREATES * 99 / 100], latency[CREATES - 1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_create_returns_ready_sandbox_with_tokens),
	    cmocka_unit_test(test_create_public_has_null_tokens),
	    cmocka_unit_test(test_sdk2_create_connect_and_metadata),
	    cmocka_unit_test(test_validation_rules_over_http),
	    cmocka_unit_test(test_auth),
	    cmocka_unit_test(test_revoked_key_is_401),
	    cmocka_unit_test(test_lifecycle_limit_429),
	    cmocka_unit_test(test_other_team_gets_404),
	    cmocka_unit_test(test_list_pagination_and_filters),
	    cmocka_unit_test(test_timeout_and_refresh_move_end_at),
	    cmocka_unit_test(test_kill_then_404),
	    cmocka_unit_test(test_pause_and_network),
	    cmocka_unit_test(test_pause_resume_connect),
	    cmocka_unit_test(test_placement_by_hosts_table),
	    cmocka_unit_test(test_unimplemented_routes),
	    cmocka_unit_test(test_list_filters),
	    cmocka_unit_test(test_sandbox_metrics),
	    cmocka_unit_test(test_network_update),
	    cmocka_unit_test(test_lifecycle_logs),
	    cmocka_unit_test(test_volumes_api),
	    cmocka_unit_test(test_failed_create_is_reported),
	    cmocka_unit_test(test_create_answered_by_notification),
	    cmocka_unit_test(test_request_id_is_idempotency_key),
	    cmocka_unit_test(test_concurrency_limit_21st_is_429),
	    cmocka_unit_test(test_creation_rate_limit),
	    cmocka_unit_test(test_create_deadline_answers_504_and_get_finds_it),
	    cmocka_unit_test(test_waiting_creates_hold_no_thread),
	    cmocka_unit_test(test_postgres_outage_503_then_recovery),
	    cmocka_unit_test(test_kafka_produce_failure_503_and_row_failed),
	    cmocka_unit_test(test_create_latency),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

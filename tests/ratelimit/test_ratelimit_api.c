/* ratelimit through two real warren-api processes (label integration
 * ratelimit): both instances share one PostgreSQL database, so one team's
 * creation rate and lifecycle limit hold across them (the per-instance
 * fallback would admit twice as much); 429 answers carry the headers.
 * Uses the warren-api test support (tests/api): own database, own Kafka
 * topics, in-process fake worker. Needs WARREN_PG_URL and
 * WARREN_KAFKA_BROKERS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "api_test_support.h"

static struct test_stack stack;
static struct test_api apis[2];
static int started;

static int setup(void **state)
{
	(void)state;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (!test_stack__up(&stack, "ratelimit_api"))
		return -1;
	for (started = 0; started < 2; started++)
		if (!test_api__start(&apis[started], &stack, NULL, NULL))
			return -1;
	return 0;
}

static int teardown(void **state)
{
	int status = 0;

	(void)state;
	for (int i = 0; i < started; i++)
		status |= test_api__stop(&apis[i]);
	test_stack__down(&stack);
	curl_global_cleanup();
	return status ? -1 : 0;
}

static int64_t monotonic_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void check_429_headers(const struct http_response *response, const char *limit)
{
	char value[32];

	assert_true(http__header(response, "RateLimit-Limit", value, sizeof(value)));
	assert_string_equal(value, limit);
	assert_true(http__header(response, "RateLimit-Remaining", value, sizeof(value)));
	assert_string_equal(value, "0");
	assert_true(http__header(response, "RateLimit-Reset", value, sizeof(value)));
	assert_true(atoi(value) >= 1);
	assert_true(http__header(response, "Retry-After", value, sizeof(value)));
	assert_true(atoi(value) >= 1);
}

/* Hobby: 1 creation per second, burst 2, over both instances. */
static void test_creation_rate_two_instances(void **state)
{
	struct storage_team team;
	struct http_response response;
	char key[45];
	int created = 0, limited = 0;
	int64_t start, span_ms;

	(void)state;
	assert_true(test_stack__team(&stack, "rl-create", "hobby", &team, key));
	start = monotonic_ms();
	for (int i = 0; i < 10; i++) {
		assert_true(http__request(apis[i % 2].port, "POST", "/sandboxes", key,
					  "{\"templateID\":\"base\"}", NULL, &response));
		if (response.status == 201)
			created++;
		if (response.status == 429) {
			limited++;
			assert_non_null(
			    strstr(response.body, "at most 1 sandbox creations per second"));
			check_429_headers(&response, "1");
		}
		http__response_free(&response);
	}
	span_ms = monotonic_ms() - start;
	printf("creation rate over two instances: %d created, %d limited in %lld ms\n", created,
	       limited, (long long)span_ms);
	/* docs/ratelimit.md: at most floor(D / T) + B; the burst is there. */
	assert_true(created <= span_ms / 1000 + 2);
	assert_true(created >= 2);
	assert_int_equal(created + limited, 10);

	/* An admin raises the rate to 20/s (burst 40). The shared state carries
	 * over (at most 2 s ahead; the new tolerance is 1.95 s): one second
	 * later about 20 tokens conform, so six creates in a row pass where
	 * 1/s (burst 2) would refuse at least three of them. */
	assert_int_equal(
	    storage__team_set_limit(stack.pool, team.id, "creation_rate_per_s", 20, &team, NULL),
	    STORAGE_OK);
	sleep(1);
	created = limited = 0;
	for (int i = 0; i < 6; i++) {
		assert_true(http__request(apis[i % 2].port, "POST", "/sandboxes", key,
					  "{\"templateID\":\"base\"}", NULL, &response));
		created += response.status == 201;
		limited += response.status == 429;
		if (response.status != 201)
			printf("after the edit, request %d: %ld %s [%s]\n", i, response.status,
			       response.body, response.headers);
		http__response_free(&response);
	}
	assert_int_equal(limited, 0);
	assert_int_equal(created, 6);
}

/* Lifecycle limit made small (10 per 30 s, exact: lease size 1). */
static void test_lifecycle_two_instances(void **state)
{
	struct storage_team team;
	struct http_response response;
	char key[45];
	int ok = 0, limited = 0;
	int64_t start, span_ms;

	(void)state;
	assert_true(test_stack__team(&stack, "rl-lifecycle", "hobby", &team, key));
	assert_int_equal(
	    storage__team_set_limit(stack.pool, team.id, "lifecycle_requests", 10, &team, NULL),
	    STORAGE_OK);
	start = monotonic_ms();
	for (int i = 0; i < 30; i++) {
		assert_true(http__request(apis[i % 2].port, "GET", "/v2/sandboxes", key, NULL, NULL,
					  &response));
		if (response.status == 200)
			ok++;
		if (response.status == 429) {
			limited++;
			check_429_headers(&response, "10");
		}
		http__response_free(&response);
	}
	span_ms = monotonic_ms() - start;
	printf("lifecycle over two instances: %d ok, %d limited in %lld ms\n", ok, limited,
	       (long long)span_ms);
	/* T = 3 s, burst 10: at most 10 + floor(D / 3 s). */
	assert_true(ok <= 10 + span_ms / 3000);
	assert_true(ok >= 10);
	assert_int_equal(ok + limited, 30);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_creation_rate_two_instances),
	    cmocka_unit_test(test_lifecycle_two_instances),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

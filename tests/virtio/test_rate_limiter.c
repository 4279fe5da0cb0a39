/* Unit tests for the token buckets: refill, burst, one-time burst,
 * oversized requests, wait times, JSON configuration and update. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "rate_limiter.h"

#define MS 1000000ull

static void test_refill_and_burst(void **unused)
{
	struct token_bucket bucket;
	uint64_t now = 1000 * MS;

	/* 1000 tokens per 100 ms. */
	token_bucket__init(&bucket, 1000, 0, 100, now);
	assert_true(token_bucket__consume(&bucket, 600, now));
	assert_true(token_bucket__consume(&bucket, 400, now));
	assert_false(token_bucket__consume(&bucket, 1, now));
	assert_int_equal(token_bucket__wait_ns(&bucket, 100, now), 10 * MS + 1);
	assert_false(token_bucket__consume(&bucket, 100, now + 9 * MS));
	assert_true(token_bucket__consume(&bucket, 100, now + 10 * MS));
	/* A long pause refills to the size, not beyond. */
	assert_true(token_bucket__consume(&bucket, 1000, now + 10000 * MS));
	assert_false(token_bucket__consume(&bucket, 1, now + 10000 * MS));
}

static void test_one_time_burst(void **unused)
{
	struct token_bucket bucket;

	token_bucket__init(&bucket, 100, 500, 1000, 0);
	assert_true(token_bucket__consume(&bucket, 450, 0)); /* from the burst */
	assert_int_equal(bucket.one_time_burst, 50);
	assert_true(token_bucket__consume(&bucket, 120, 0)); /* 50 burst + 70 budget */
	assert_int_equal(bucket.one_time_burst, 0);
	assert_int_equal(bucket.budget, 30);
	assert_false(token_bucket__consume(&bucket, 31, 0));
}

static void test_oversized_request(void **unused)
{
	struct token_bucket bucket;

	token_bucket__init(&bucket, 100, 0, 100, 0);
	assert_true(token_bucket__consume(&bucket, 250, 0)); /* full bucket: allowed, in debt */
	assert_true(bucket.budget < 0);
	assert_false(token_bucket__consume(&bucket, 250, 200 * MS));
	assert_true(token_bucket__wait_ns(&bucket, 250, 200 * MS) > 0);
	assert_true(token_bucket__consume(&bucket, 250, 300 * MS));
}

static void test_unlimited(void **unused)
{
	struct rate_limiter limiter;

	rate_limiter__init(&limiter);
	for (int i = 0; i < 1000; i++)
		assert_true(rate_limiter__consume(&limiter, 1 << 20, 0));
	assert_int_equal(rate_limiter__wait_ns(&limiter, 1 << 20, 0), 0);
}

static void test_configure_and_update(void **unused)
{
	struct rate_limiter limiter;
	char error[128];
	json_error_t json_error;
	json_t *config =
	    json_loads("{\"bandwidth\":{\"size\":8192,\"refill_time\":100},"
		       "\"ops\":{\"size\":2,\"one_time_burst\":1,\"refill_time\":1000}}",
		       0, &json_error);
	json_t *bad = json_loads("{\"ops\":{\"size\":-1,\"refill_time\":1}}", 0, &json_error);
	json_t *bad_refill = json_loads("{\"ops\":{\"size\":5}}", 0, &json_error);
	json_t *shown;

	rate_limiter__init(&limiter);
	assert_int_equal(rate_limiter__configure(&limiter, config, 0, error, sizeof(error)), 0);
	assert_true(rate_limiter__consume(&limiter, 4096, 0)); /* op from the burst */
	assert_true(rate_limiter__consume(&limiter, 4096, 0));
	assert_true(rate_limiter__consume(&limiter, 0, 0));
	assert_false(rate_limiter__consume(&limiter, 0, 0)); /* ops exhausted */
	assert_int_equal(limiter.bandwidth.budget, 0);	     /* all or nothing: not charged */
	assert_true(rate_limiter__wait_ns(&limiter, 4096, 0) >= 500 * MS);
	assert_int_equal(rate_limiter__configure(&limiter, bad, 0, error, sizeof(error)), -EINVAL);
	assert_non_null(strstr(error, "ops.size"));
	assert_int_equal(rate_limiter__configure(&limiter, bad_refill, 0, error, sizeof(error)),
			 -EINVAL);
	assert_int_equal(limiter.ops.size, 2); /* unchanged on error */
	shown = rate_limiter__to_json(&limiter);
	assert_int_equal(
	    json_integer_value(json_object_get(json_object_get(shown, "bandwidth"), "size")), 8192);
	json_decref(shown);
	/* Update at run time: to unlimited. */
	json_decref(config);
	config = json_object();
	assert_int_equal(rate_limiter__configure(&limiter, config, 0, error, sizeof(error)), 0);
	assert_true(rate_limiter__consume(&limiter, 1 << 30, 0));
	json_decref(config);
	json_decref(bad);
	json_decref(bad_refill);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_refill_and_burst),	 cmocka_unit_test(test_one_time_burst),
	    cmocka_unit_test(test_oversized_request),	 cmocka_unit_test(test_unlimited),
	    cmocka_unit_test(test_configure_and_update),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

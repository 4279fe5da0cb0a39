/* Unit tests of the pure parts of libwarren-storage: SQLSTATE mapping,
 * enum names, keyset page tokens (client input: strictly validated). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "warren/storage.h"

static void test_sqlstate_mapping(void **state)
{
	(void)state;
	assert_int_equal(storage__status_from_sqlstate("23505"), STORAGE_ERR_DUPLICATE);
	assert_int_equal(storage__status_from_sqlstate("23503"), STORAGE_ERR_NOT_FOUND_REF);
	assert_int_equal(storage__status_from_sqlstate("23514"), STORAGE_ERR_INVALID);
	assert_int_equal(storage__status_from_sqlstate("23502"), STORAGE_ERR_INVALID);
	assert_int_equal(storage__status_from_sqlstate("23001"), STORAGE_ERR_INVALID);
	assert_int_equal(storage__status_from_sqlstate("22P02"), STORAGE_ERR_INVALID);
	assert_int_equal(storage__status_from_sqlstate("22001"), STORAGE_ERR_INVALID);
	assert_int_equal(storage__status_from_sqlstate("08006"), STORAGE_ERR_UNAVAILABLE);
	assert_int_equal(storage__status_from_sqlstate("08001"), STORAGE_ERR_UNAVAILABLE);
	assert_int_equal(storage__status_from_sqlstate("57P01"), STORAGE_ERR_UNAVAILABLE);
	assert_int_equal(storage__status_from_sqlstate("57P03"), STORAGE_ERR_UNAVAILABLE);
	assert_int_equal(storage__status_from_sqlstate("40P01"), STORAGE_ERR_UNAVAILABLE);
	assert_int_equal(storage__status_from_sqlstate("53300"), STORAGE_ERR_UNAVAILABLE);
	assert_int_equal(storage__status_from_sqlstate("42601"), STORAGE_ERR_INTERNAL);
	assert_int_equal(storage__status_from_sqlstate("57014"), STORAGE_ERR_INTERNAL);
	assert_int_equal(storage__status_from_sqlstate(NULL), STORAGE_ERR_UNAVAILABLE);
	assert_int_equal(storage__status_from_sqlstate(""), STORAGE_ERR_UNAVAILABLE);
	assert_int_equal(storage__status_from_sqlstate("2350"), STORAGE_ERR_UNAVAILABLE);
	assert_string_equal(storage__status_name(STORAGE_ERR_CONFLICT), "conflict");
	assert_string_equal(storage__status_name((enum storage_status)99), "unknown");
}

static void test_names(void **state)
{
	enum storage_tier tier;
	enum storage_sandbox_state sandbox_state;

	(void)state;
	assert_true(storage__tier_parse("pro", &tier));
	assert_int_equal(tier, STORAGE_TIER_PRO);
	assert_false(storage__tier_parse("gold", &tier));
	assert_false(storage__tier_parse(NULL, &tier));
	assert_string_equal(storage__tier_name(STORAGE_TIER_ENTERPRISE), "enterprise");
	for (int i = 0; i < STORAGE_SANDBOX_STATE_COUNT; i++) {
		const char *name = storage__sandbox_state_name((enum storage_sandbox_state)i);

		assert_true(storage__sandbox_state_parse(name, &sandbox_state));
		assert_int_equal(sandbox_state, i);
	}
	assert_false(storage__sandbox_state_parse("Running", &sandbox_state));
	assert_true(storage__limit_name_valid("concurrent_sandboxes"));
	assert_true(storage__limit_name_valid("max_timeout_s"));
	assert_false(storage__limit_name_valid("concurrent_sandboxes; DROP TABLE teams"));
	assert_false(storage__limit_name_valid(NULL));
}

static void test_page_token_round_trip(void **state)
{
	const char *id = "iabcdefghij0123456789";
	char token[STORAGE_PAGE_TOKEN_MAX], decoded_id[STORAGE_SANDBOX_ID_LEN + 1];
	int64_t created_us = 0;
	const int64_t values[] = {0, 1, 1795650000123456LL, INT64_MAX};

	(void)state;
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		storage__page_token_encode(values[i], id, token);
		assert_true(strlen(token) > 0);
		assert_null(strpbrk(token, "+/="));
		assert_true(storage__page_token_decode(token, &created_us, decoded_id));
		assert_true(created_us == values[i]);
		assert_string_equal(decoded_id, id);
	}
}

static void test_page_token_rejects_garbage(void **state)
{
	char token[STORAGE_PAGE_TOKEN_MAX], id[STORAGE_SANDBOX_ID_LEN + 1];
	char long_token[300];
	int64_t created_us;

	(void)state;
	assert_false(storage__page_token_decode(NULL, &created_us, id));
	assert_false(storage__page_token_decode("", &created_us, id));
	assert_false(storage__page_token_decode("!!!!", &created_us, id));
	assert_false(storage__page_token_decode("a", &created_us, id));
	assert_false(storage__page_token_decode("aGVsbG8", &created_us, id)); /* "hello" */
	memset(long_token, 'A', sizeof(long_token) - 1);
	long_token[sizeof(long_token) - 1] = '\0';
	assert_false(storage__page_token_decode(long_token, &created_us, id));
	/* Right shape but a bad id, a negative or an overflowing number. */
	storage__page_token_encode(5, "iABCDEFGHIJ0123456789", token);
	assert_false(storage__page_token_decode(token, &created_us, id));
	storage__page_token_encode(-5, "iabcdefghij0123456789", token);
	assert_false(storage__page_token_decode(token, &created_us, id));
	/* base64url("99999999999999999999.iabcdefghij0123456789") */
	assert_false(storage__page_token_decode(
	    "OTk5OTk5OTk5OTk5OTk5OTk5OTkuaWFiY2RlZmdoaWowMTIzNDU2Nzg5", &created_us, id));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sqlstate_mapping),
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_page_token_round_trip),
	    cmocka_unit_test(test_page_token_rejects_garbage),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

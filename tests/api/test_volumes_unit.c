/* Unit tests of the volume parts of warren-api that need no services
 * (docs/volumes.md): the /volumes routes, the POST /volumes body, mount
 * paths and volumeMounts with their 400 messages, volume ids and names,
 * and the per-team quota arithmetic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "route.h"
#include "validate.h"
#include "warren/volumes.h"

static void test_routes(void **state)
{
	struct api_route route;

	(void)state;
	route__match("GET", "/volumes", &route);
	assert_int_equal(route.endpoint, API_ROUTE_VOLUME_LIST);
	route__match("POST", "/volumes/", &route);
	assert_int_equal(route.endpoint, API_ROUTE_VOLUME_CREATE);
	route__match("PUT", "/volumes", &route);
	assert_int_equal(route.endpoint, API_ROUTE_BAD_METHOD);
	assert_string_equal(route.allowed_methods, "GET, POST");
	route__match("GET", "/volumes/vol_abc", &route);
	assert_int_equal(route.endpoint, API_ROUTE_VOLUME_GET);
	assert_string_equal(route.volume_id, "vol_abc");
	route__match("DELETE", "/volumes/vol_abc", &route);
	assert_int_equal(route.endpoint, API_ROUTE_VOLUME_DELETE);
	route__match("PATCH", "/volumes/vol_abc", &route);
	assert_int_equal(route.endpoint, API_ROUTE_BAD_METHOD);
	assert_string_equal(route.allowed_methods, "GET, DELETE");
	route__match("GET", "/volumes/vol_abc/extra", &route);
	assert_int_equal(route.endpoint, API_ROUTE_NOT_FOUND);
	/* the content API stays a 501 naming itself */
	route__match("PUT", "/volumecontent/vol_abc/file", &route);
	assert_int_equal(route.endpoint, API_ROUTE_UNIMPLEMENTED);
	assert_non_null(strstr(route.feature, "volume content API"));
	assert_string_equal(route__name(API_ROUTE_VOLUME_DELETE), "volume_delete");
}

static void expect_create(const char *text, const char *message)
{
	json_error_t jerr;
	json_t *body = json_loads(text, 0, &jerr);
	struct api_error err = {0};
	char name[64] = "";
	int rc = validate__volume_create(body, name, &err);

	if (!message) {
		if (rc)
			fail_msg("%s: refused: %s", text, err.message);
	} else {
		assert_int_equal(rc, -1);
		assert_int_equal(err.status, 400);
		if (!strstr(err.message, message))
			fail_msg("%s: message '%s' lacks '%s'", text, err.message, message);
	}
	json_decref(body);
}

static void test_create_body(void **state)
{
	(void)state;
	expect_create("{\"name\":\"data\"}", NULL);
	expect_create("{\"name\":\"My.vol_1-x\"}", NULL);
	expect_create("{}", "name is required");
	expect_create("{\"name\":7}", "name is required");
	expect_create("{\"name\":\"\"}", "name must be 1 to 63");
	expect_create("{\"name\":\"-x\"}", "starting with a letter or digit");
	expect_create("{\"name\":\"a/b\"}", "[A-Za-z0-9_.-]");
	expect_create("{\"name\":\"../etc\"}", "name must be");
	expect_create(
	    "{\"name\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
	    "name must be"); /* 64 */
	expect_create("[]", "JSON object");
}

static void test_mount_paths(void **state)
{
	static const char *const good[] = {"/data", "/home/user/work", "/mnt/v-1_2.x", "/tmp/x"};
	static const char *const bad[] = {
	    "",		 "/",	     "data",	"/data/",  "//data",	 "/data//x",
	    "/a/../etc", "/a/./b",   "/..",	"/proc",   "/proc/self", "/sys/x",
	    "/dev",	 "/dev/shm", "/data x", "/data\n", "/a;b",	 "/\xc3\xa9",
	};
	struct api_error err;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (validate__mount_path(good[i], &err))
			fail_msg("'%s' refused: %s", good[i], err.message);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&err, 0, sizeof(err));
		if (!validate__mount_path(bad[i], &err))
			fail_msg("'%s' accepted", bad[i]);
		assert_int_equal(err.status, 400);
		assert_non_null(strstr(err.message, "volume mount path"));
	}
	assert_int_equal(validate__mount_path(NULL, &err), -1);
	/* the "/procfoo" lookalike is not under /proc */
	assert_int_equal(validate__mount_path("/procfoo", &err), 0);
}

static int mounts_of(const char *text, struct api_volume_mount out[API_VOLUME_MOUNTS_MAX],
		     int *count, struct api_error *err)
{
	json_error_t jerr;
	json_t *mounts = json_loads(text, JSON_DECODE_ANY, &jerr);
	int rc;

	assert_non_null(mounts);
	rc = validate__volume_mounts(mounts, out, count, err);
	json_decref(mounts);
	return rc;
}

static void test_volume_mounts(void **state)
{
	struct api_volume_mount mounts[API_VOLUME_MOUNTS_MAX];
	struct api_error err;
	int count = -1;

	(void)state;
	assert_int_equal(validate__volume_mounts(NULL, mounts, &count, &err), 0);
	assert_int_equal(count, 0);
	assert_int_equal(mounts_of("[]", mounts, &count, &err), 0);
	assert_int_equal(count, 0);
	assert_int_equal(mounts_of("[{\"name\":\"a\",\"path\":\"/data\"},"
				   "{\"name\":\"b\",\"path\":\"/data2\"}]",
				   mounts, &count, &err),
			 0);
	assert_int_equal(count, 2);
	assert_string_equal(mounts[1].name, "b");
	assert_string_equal(mounts[1].path, "/data2");
	assert_int_equal(mounts_of("{}", mounts, &count, &err), -1);
	assert_non_null(strstr(err.message, "must be an array"));
	assert_int_equal(mounts_of("[{\"name\":\"a\"}]", mounts, &count, &err), -1);
	assert_non_null(strstr(err.message, "volumeMounts[0] must be {name, path}"));
	assert_int_equal(mounts_of("[{\"name\":\"a b\",\"path\":\"/x\"}]", mounts, &count, &err),
			 -1);
	assert_non_null(strstr(err.message, "not a valid volume name"));
	assert_int_equal(mounts_of("[{\"name\":\"a\",\"path\":\"/x/../y\"}]", mounts, &count, &err),
			 -1);
	assert_non_null(strstr(err.message, "'..'"));
	assert_int_equal(
	    mounts_of("[{\"name\":\"a\",\"path\":\"/x\"},{\"name\":\"a\",\"path\":\"/y\"}]", mounts,
		      &count, &err),
	    -1);
	assert_non_null(strstr(err.message, "mounted twice"));
	assert_int_equal(
	    mounts_of("[{\"name\":\"a\",\"path\":\"/x/y\"},{\"name\":\"b\",\"path\":\"/x\"}]",
		      mounts, &count, &err),
	    -1);
	assert_non_null(strstr(err.message, "overlap"));
	assert_int_equal(
	    mounts_of("[{\"name\":\"a\",\"path\":\"/x\"},{\"name\":\"b\",\"path\":\"/xy\"}]",
		      mounts, &count, &err),
	    0);
	assert_int_equal(
	    mounts_of("[{\"name\":\"a\",\"path\":\"/a\"},{\"name\":\"b\",\"path\":\"/b\"},"
		      "{\"name\":\"c\",\"path\":\"/c\"},{\"name\":\"d\",\"path\":\"/d\"},"
		      "{\"name\":\"e\",\"path\":\"/e\"},{\"name\":\"f\",\"path\":\"/f\"},"
		      "{\"name\":\"g\",\"path\":\"/g\"},{\"name\":\"h\",\"path\":\"/h\"},"
		      "{\"name\":\"i\",\"path\":\"/i\"}]",
		      mounts, &count, &err),
	    -1);
	assert_non_null(strstr(err.message, "at most 8"));
}

static void test_ids_and_names(void **state)
{
	char id[STORAGE_VOLUME_ID_LEN + 1], other[STORAGE_VOLUME_ID_LEN + 1];

	(void)state;
	assert_int_equal(storage__volume_new_id(id), 0);
	assert_int_equal(storage__volume_new_id(other), 0);
	assert_true(storage__volume_id_valid(id));
	assert_string_not_equal(id, other);
	assert_false(storage__volume_id_valid("vol_short"));
	assert_false(storage__volume_id_valid("vol_ABCDEFGHIJ0123456789"));
	assert_false(storage__volume_id_valid("xol_abcdefghij0123456789"));
	assert_false(storage__volume_id_valid("vol_abcdefghij012345678/"));
	assert_false(storage__volume_id_valid(NULL));
	assert_true(storage__volume_name_valid("a"));
	assert_false(storage__volume_name_valid(".a"));
	assert_false(storage__volume_name_valid(NULL));
}

static void test_quota(void **state)
{
	struct storage_volume_quota quota = {.max_count = 2, .max_bytes = 3 << 20};

	(void)state;
	assert_true(storage__volume_quota_allows(&quota, 0, 0, 1 << 20));
	assert_true(storage__volume_quota_allows(&quota, 1, 2 << 20, 1 << 20));	 /* exactly full */
	assert_false(storage__volume_quota_allows(&quota, 2, 0, 1 << 20));	 /* count */
	assert_false(storage__volume_quota_allows(&quota, 1, 2 << 20, 2 << 20)); /* bytes */
	assert_false(storage__volume_quota_allows(&quota, 0, 0, 4 << 20));	 /* one too big */
	assert_false(storage__volume_quota_allows(&quota, 0, 0, 0));
	assert_false(storage__volume_quota_allows(&quota, -1, 0, 1));
	/* no overflow near INT64_MAX */
	quota.max_count = 10;
	quota.max_bytes = INT64_MAX;
	assert_true(storage__volume_quota_allows(&quota, 1, INT64_MAX - 10, 10));
	assert_false(storage__volume_quota_allows(&quota, 1, INT64_MAX - 10, 11));
	quota.max_count = 0;
	assert_false(storage__volume_quota_allows(&quota, 0, 0, 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_routes),	  cmocka_unit_test(test_create_body),
	    cmocka_unit_test(test_mount_paths),	  cmocka_unit_test(test_volume_mounts),
	    cmocka_unit_test(test_ids_and_names), cmocka_unit_test(test_quota),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

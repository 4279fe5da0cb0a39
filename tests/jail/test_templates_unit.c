/* Unit tests of template.json parsing and template names (guest/rootfs). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "warren/templates.h"

#define HASH "b7a1a3da1db23b07f6fbe2106231e2a1dfbf74a599a880044b9fa4f03cf311ae"

static int parse(const char *text, struct template_info *info, char *err, size_t err_len)
{
	return templates__parse_metadata(text, strlen(text), info, err, err_len);
}

static void test_parse_valid(void **state)
{
	struct template_info info;
	char err[256] = "";
	(void)state;

	assert_int_equal(
	    parse("{\"name\":\"minimal\",\"agent_version\":\"0.1.0\",\"content_hash\":\"" HASH
		  "\",\"built_at\":\"2026-11-26T23:44:03Z\",\"size\":2068842,"
		  "\"image_size\":35651584,\"extra\":[1]}",
		  &info, err, sizeof(err)),
	    0);
	assert_string_equal(info.name, "minimal");
	assert_string_equal(info.agent_version, "0.1.0");
	assert_string_equal(info.content_hash, HASH);
	assert_string_equal(info.built_at, "2026-11-26T23:44:03Z");
	assert_int_equal(info.size, 2068842);
	assert_int_equal(info.image_size, 35651584);
	assert_int_equal(info.cpu_count, 0); /* absent: the worker's defaults */
	assert_int_equal(info.memory_mb, 0);

	assert_int_equal(
	    parse("{\"name\":\"big\",\"agent_version\":\"0.1.0\",\"content_hash\":\"" HASH
		  "\",\"built_at\":\"t\",\"size\":1,\"cpu_count\":4,\"memory_mb\":2048}",
		  &info, err, sizeof(err)),
	    0);
	assert_int_equal(info.cpu_count, 4);
	assert_int_equal(info.memory_mb, 2048);
}

static void test_parse_rejects(void **state)
{
	static const char *const bad[] = {
	    "",
	    "[]",
	    "{",
	    "\"minimal\"",
	    /* missing fields */
	    "{\"name\":\"minimal\"}",
	    /* wrong types */
	    "{\"name\":1,\"agent_version\":\"x\",\"content_hash\":\"" HASH
	    "\",\"built_at\":\"t\",\"size\":1}",
	    "{\"name\":\"m\",\"agent_version\":\"x\",\"content_hash\":\"" HASH
	    "\",\"built_at\":\"t\",\"size\":\"1\"}",
	    "{\"name\":\"m\",\"agent_version\":\"x\",\"content_hash\":\"" HASH
	    "\",\"built_at\":\"t\",\"size\":-1}",
	    /* bad hash: short, upper case */
	    "{\"name\":\"m\",\"agent_version\":\"x\",\"content_hash\":\"abc\",\"built_at\":\"t\","
	    "\"size\":1}",
	    "{\"name\":\"m\",\"agent_version\":\"x\",\"content_hash\":"
	    "\"B7A1A3DA1DB23B07F6FBE2106231E2A1DFBF74A599A880044B9FA4F03CF311AE\",\"built_at\":"
	    "\"t\",\"size\":1}",
	    /* hostile name */
	    "{\"name\":\"../etc\",\"agent_version\":\"x\",\"content_hash\":\"" HASH
	    "\",\"built_at\":\"t\",\"size\":1}",
	    /* an over-long agent version */
	    "{\"name\":\"m\",\"agent_version\":"
	    "\"0123456789012345678901234567890123456789012345678901234567890123456789\",\"content_"
	    "hash\":\"" HASH "\",\"built_at\":\"t\",\"size\":1}",
	    /* resources out of range or of the wrong type */
	    "{\"name\":\"m\",\"agent_version\":\"x\",\"content_hash\":\"" HASH
	    "\",\"built_at\":\"t\",\"size\":1,\"cpu_count\":0}",
	    "{\"name\":\"m\",\"agent_version\":\"x\",\"content_hash\":\"" HASH
	    "\",\"built_at\":\"t\",\"size\":1,\"cpu_count\":65}",
	    "{\"name\":\"m\",\"agent_version\":\"x\",\"content_hash\":\"" HASH
	    "\",\"built_at\":\"t\",\"size\":1,\"memory_mb\":32}",
	    "{\"name\":\"m\",\"agent_version\":\"x\",\"content_hash\":\"" HASH
	    "\",\"built_at\":\"t\",\"size\":1,\"memory_mb\":\"512\"}",
	    /* duplicate keys */
	    "{\"name\":\"m\",\"name\":\"n\",\"agent_version\":\"x\",\"content_hash\":\"" HASH
	    "\",\"built_at\":\"t\",\"size\":1}",
	};
	struct template_info info;
	char err[256];
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		assert_int_equal(parse(bad[i], &info, err, sizeof(err)), -EINVAL);
		assert_true(err[0] != 0);
	}
	/* Not NUL-terminated input: the length bounds the read. */
	assert_int_equal(
	    templates__parse_metadata("{\"name\":\"m\"}XXXX", 12, &info, err, sizeof(err)),
	    -EINVAL);
}

static void test_names(void **state)
{
	(void)state;
	assert_true(templates__name_valid("minimal"));
	assert_true(templates__name_valid("base"));
	assert_true(templates__name_valid("my_tmpl-2"));
	assert_false(templates__name_valid(""));
	assert_false(templates__name_valid(NULL));
	assert_false(templates__name_valid("-x"));
	assert_false(templates__name_valid(".."));
	assert_false(templates__name_valid("a/b"));
	assert_false(templates__name_valid("Upper"));
	assert_false(templates__name_valid(
	    "a123456789012345678901234567890123456789012345678901234567890123"));
}

/* templates__read and templates__list over a fake installed tree. */
static void test_read_and_list(void **state)
{
	char dir[] = "/tmp/warren-templates-unit-XXXXXX";
	char path[512], err[256];
	struct template_info info, *list;
	size_t count;
	FILE *f;
	(void)state;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/entry-minimal", dir);
	assert_int_equal(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/entry-minimal/template.json", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "{\"name\":\"minimal\",\"agent_version\":\"none\",\"content_hash\":\"" HASH
		   "\",\"built_at\":\"2026-11-26T23:44:03Z\",\"size\":5}");
	fclose(f);
	snprintf(path, sizeof(path), "%s/minimal", dir);
	assert_int_equal(symlink("entry-minimal", path), 0);
	/* A link whose template.json names another template: skipped. */
	snprintf(path, sizeof(path), "%s/base", dir);
	assert_int_equal(symlink("entry-minimal", path), 0);

	assert_int_equal(templates__read(dir, "minimal", &info, err, sizeof(err)), 0);
	assert_non_null(strstr(info.rootfs, "/entry-minimal/rootfs"));
	assert_non_null(strstr(info.image, "/entry-minimal/rootfs.ext4"));
	assert_int_equal(templates__read(dir, "base", &info, err, sizeof(err)), -EINVAL);
	assert_int_equal(templates__read(dir, "absent", &info, err, sizeof(err)), -ENOENT);
	assert_int_equal(templates__read(dir, "../x", &info, err, sizeof(err)), -EINVAL);

	assert_int_equal(templates__list(dir, &list, &count), 0);
	assert_int_equal(count, 1);
	assert_string_equal(list[0].name, "minimal");
	free(list);

	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	assert_int_equal(system(path), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_valid),
	    cmocka_unit_test(test_parse_rejects),
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_read_and_list),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

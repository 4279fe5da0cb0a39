/* Unit tests of the custom-template parts of warren-api that need no
 * services: the build plan parser (what the SDK's Template builder posts,
 * docs/templates.md) with its 400 messages, the image mapping, and the
 * template routes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "route.h"
#include "warren/template_steps.h"

#define HASH "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

struct plan_case {
	const char *body;
	const char *error; /* NULL: valid; else a part of the message */
};

static const struct plan_case plan_cases[] = {
    {"{\"fromTemplate\":\"base\",\"steps\":[]}", NULL},
    {"{\"fromTemplate\":\"base\",\"startCmd\":\"python3 -m http.server\",\"readyCmd\":\"true\","
     "\"force\":false,\"steps\":[{\"type\":\"RUN\",\"args\":[\"echo hi\"],\"force\":false},"
     "{\"type\":\"RUN\",\"args\":[\"apt-get update\",\"root\"]},"
     "{\"type\":\"COPY\",\"args\":[\"a.txt\",\"/home/user/\",\"\",\"\"],\"filesHash\":\"" HASH
     "\"},"
     "{\"type\":\"COPY\",\"args\":[\"dir\",\"app\",\"user\",\"0755\"],\"filesHash\":\"" HASH "\"},"
     "{\"type\":\"ENV\",\"args\":[\"A\",\"1\",\"B_2\",\"x y\"]},"
     "{\"type\":\"WORKDIR\",\"args\":[\"/app\"]},{\"type\":\"USER\",\"args\":[\"root\"]}]}",
     NULL},
    {"{\"fromImage\":\"e2bdev/base\",\"steps\":[]}", NULL},
    {"{\"fromImage\":\"debian:bookworm\"}", NULL},
    {"{\"fromImage\":\"python:3.12\"}", NULL},
    {"[]", "JSON object"},
    {"{}", "exactly one of fromImage or fromTemplate"},
    {"{\"fromTemplate\":\"base\",\"fromImage\":\"debian:12\"}", "exactly one"},
    {"{\"fromImage\":\"ubuntu:22.04\"}", NULL},
    {"{\"fromImage\":\"e2bdev/basement\"}", NULL},
    {"{\"fromImage\":\"127.0.0.1:5000/test/img@sha256:" HASH "\"}", NULL},
    {"{\"fromImage\":\"registry.example/a/b:1\",\"fromImageRegistry\":{\"type\":\"registry\","
     "\"username\":\"u\",\"password\":\"p\"}}",
     NULL},
    {"{\"fromImage\":\"bad image!\"}", "is not an image reference"},
    {"{\"fromImage\":\"-x/y\"}", "is not an image reference"},
    {"{\"fromImage\":\"a//b\"}", "is not an image reference"},
    {"{\"fromImage\":\"a/b:\"}", "is not an image reference"},
    {"{\"fromImage\":\"a\",\"fromImageRegistry\":{\"type\":\"aws\"}}", "no AWS/GCP"},
    {"{\"fromImage\":\"a\",\"fromImageRegistry\":{\"type\":\"registry\",\"username\":\"a:b\","
     "\"password\":\"p\"}}",
     "needs a username"},
    {"{\"fromTemplate\":\"base\",\"fromImageRegistry\":{\"type\":\"registry\",\"username\":\"u\","
     "\"password\":\"p\"}}",
     "needs fromImage"},
    {"{\"fromTemplate\":\"../etc\"}", "not a template name"},
    {"{\"fromImage\":\"debian:12\",\"fromImageRegistry\":{\"type\":\"registry\"}}",
     "fromImageRegistry"},
    {"{\"fromTemplate\":\"base\",\"steps\":{}}", "steps must be an array"},
    {"{\"fromTemplate\":\"base\",\"steps\":[{\"type\":\"EXPOSE\",\"args\":[\"80\"]}]}",
     "unsupported step type 'EXPOSE'"},
    {"{\"fromTemplate\":\"base\",\"steps\":[{\"args\":[]}]}", "string type"},
    {"{\"fromTemplate\":\"base\",\"steps\":[{\"type\":\"RUN\",\"args\":[]}]}",
     "steps[0]: invalid arguments for RUN"},
    {"{\"fromTemplate\":\"base\",\"steps\":[{\"type\":\"RUN\",\"args\":[\"x\",\"bad user\"]}]}",
     "invalid arguments for RUN"},
    {"{\"fromTemplate\":\"base\",\"steps\":[{\"type\":\"RUN\",\"args\":[1]}]}", "strings"},
    {"{\"fromTemplate\":\"base\",\"steps\":[{\"type\":\"COPY\",\"args\":[\"a\",\"/a\"]}]}",
     "COPY needs filesHash"},
    {"{\"fromTemplate\":\"base\",\"steps\":[{\"type\":\"COPY\",\"args\":[\"a\",\"/a\"],"
     "\"filesHash\":\"ABC\"}]}",
     "COPY needs filesHash"},
    {"{\"fromTemplate\":\"base\",\"steps\":[{\"type\":\"COPY\",\"args\":[\"a\",\"/"
     "a\",\"\",\"999\"],"
     "\"filesHash\":\"" HASH "\"}]}",
     "invalid arguments for COPY"},
    {"{\"fromTemplate\":\"base\",\"steps\":[{\"type\":\"ENV\",\"args\":[\"A\"]}]}",
     "invalid arguments for ENV"},
    {"{\"fromTemplate\":\"base\",\"steps\":[{\"type\":\"ENV\",\"args\":[\"1A\",\"x\"]}]}",
     "invalid arguments for ENV"},
    {"{\"fromTemplate\":\"base\",\"steps\":[{\"type\":\"USER\",\"args\":[\"a\",\"b\"]}]}",
     "invalid arguments for USER"},
    {"{\"fromTemplate\":\"base\",\"steps\":[{\"type\":\"WORKDIR\",\"args\":[\"a\\nb\"]}]}",
     "invalid arguments for WORKDIR"},
    {"{\"fromTemplate\":\"base\",\"startCmd\":5}", "startCmd must be a string"},
};

static void test_plan_cases(void **state)
{
	struct template_plan *plan = malloc(sizeof(*plan));
	char err[512];

	(void)state;
	assert_non_null(plan);
	for (size_t i = 0; i < sizeof(plan_cases) / sizeof(plan_cases[0]); i++) {
		json_t *body = json_loads(plan_cases[i].body, 0, NULL);
		int rc;

		assert_non_null(body);
		err[0] = '\0';
		rc = template_plan__parse(body, plan, err, sizeof(err));
		if (!plan_cases[i].error) {
			if (rc)
				fail_msg("case %zu should be valid: %s", i, err);
		} else {
			if (!rc || !strstr(err, plan_cases[i].error))
				fail_msg("case %zu: want '%s', got rc %d '%s'", i,
					 plan_cases[i].error, rc, err);
		}
		json_decref(body);
	}
	free(plan);
}

static void test_plan_fields(void **state)
{
	struct template_plan *plan = malloc(sizeof(*plan));
	json_t *body = json_loads(plan_cases[1].body, 0, NULL);
	char err[256];

	(void)state;
	assert_int_equal(template_plan__parse(body, plan, err, sizeof(err)), 0);
	assert_string_equal(plan->base, "base");
	assert_null(plan->from_image);
	assert_string_equal(plan->start_cmd, "python3 -m http.server");
	assert_string_equal(plan->ready_cmd, "true");
	assert_int_equal(plan->step_count, 7);
	assert_int_equal(plan->steps[1].kind, TEMPLATE_STEP_RUN);
	assert_string_equal(plan->steps[1].args[1], "root");
	assert_int_equal(plan->steps[3].kind, TEMPLATE_STEP_COPY);
	assert_string_equal(plan->steps[3].args[3], "0755");
	assert_string_equal(plan->steps[3].files_hash, HASH);
	assert_int_equal(plan->steps[4].arg_count, 4);
	json_decref(body);

	body = json_loads("{\"fromImage\":\"e2bdev/base:latest\"}", 0, NULL);
	assert_int_equal(template_plan__parse(body, plan, err, sizeof(err)), 0);
	assert_string_equal(plan->base, "base");
	assert_string_equal(plan->from_image, "e2bdev/base:latest");
	assert_false(plan->oci);
	json_decref(body);
	/* any other image is pulled from its registry, with its credentials */
	body = json_loads("{\"fromImage\":\"127.0.0.1:5000/t/img:1\",\"fromImageRegistry\":"
			  "{\"type\":\"registry\",\"username\":\"u\",\"password\":\"p\"}}",
			  0, NULL);
	assert_int_equal(template_plan__parse(body, plan, err, sizeof(err)), 0);
	assert_true(plan->oci);
	assert_string_equal(plan->base, "");
	assert_string_equal(plan->registry_username, "u");
	assert_string_equal(plan->registry_password, "p");
	json_decref(body);
	/* credentials with a mapped image: pulled too (the user asked for it) */
	body = json_loads("{\"fromImage\":\"debian:12\",\"fromImageRegistry\":"
			  "{\"type\":\"registry\",\"username\":\"u\",\"password\":\"p\"}}",
			  0, NULL);
	assert_int_equal(template_plan__parse(body, plan, err, sizeof(err)), 0);
	assert_true(plan->oci);
	json_decref(body);
	assert_null(template_plan__image_base("alpine:3"));
	/* only what `base` is maps to it; other suites and pythons are pulled */
	assert_string_equal(template_plan__image_base("debian:bookworm-slim"), "base");
	assert_string_equal(template_plan__image_base("debian:12.5"), "base");
	assert_string_equal(template_plan__image_base("python:3.11-slim-bookworm"), "base");
	assert_string_equal(template_plan__image_base("e2bdev/base:latest"), "base");
	assert_null(template_plan__image_base("debian:stable"));
	assert_null(template_plan__image_base("debian:trixie"));
	assert_null(template_plan__image_base("debian:120"));
	assert_null(template_plan__image_base("python:3"));
	assert_null(template_plan__image_base("python:3.12"));
	assert_null(template_plan__image_base("python:3.11-alpine"));
	assert_null(template_plan__image_base("e2bdev/baseline"));
	assert_null(template_plan__image_base(NULL));
	free(plan);
}

static void test_names(void **state)
{
	(void)state;
	assert_true(template_step__user_valid("user"));
	assert_true(template_step__user_valid("1000"));
	assert_false(template_step__user_valid(""));
	assert_false(template_step__user_valid("-x"));
	assert_false(template_step__user_valid("a b"));
	assert_false(template_step__user_valid("ROOT"));
	assert_true(template_step__env_name_valid("_A1"));
	assert_false(template_step__env_name_valid("A-B"));
	assert_false(template_step__env_name_valid("1A"));
	assert_string_equal(template_step__name(TEMPLATE_STEP_WORKDIR), "WORKDIR");
}

struct route_case {
	const char *method, *path;
	enum api_endpoint endpoint;
	const char *template_id, *build_id, *hash;
};

static const struct route_case route_cases[] = {
    {"POST", "/v3/templates", API_ROUTE_TEMPLATE_CREATE, "", "", ""},
    {"GET", "/v3/templates", API_ROUTE_BAD_METHOD, "", "", ""},
    {"GET", "/templates", API_ROUTE_TEMPLATE_LIST, "", "", ""},
    {"GET", "/templates/", API_ROUTE_TEMPLATE_LIST, "", "", ""},
    {"GET", "/templates/my-t", API_ROUTE_TEMPLATE_GET, "my-t", "", ""},
    {"DELETE", "/templates/my-t", API_ROUTE_TEMPLATE_DELETE, "my-t", "", ""},
    {"PUT", "/templates/my-t", API_ROUTE_BAD_METHOD, "my-t", "", ""},
    {"GET", "/templates/aliases/my-t", API_ROUTE_TEMPLATE_ALIAS, "my-t", "", ""},
    {"GET", "/templates/t/files/abc", API_ROUTE_TEMPLATE_FILE, "t", "", "abc"},
    {"PUT", "/templates/t/files/abc/upload", API_ROUTE_TEMPLATE_UPLOAD, "t", "", "abc"},
    {"POST", "/v2/templates/t/builds/b1", API_ROUTE_TEMPLATE_BUILD, "t", "b1", ""},
    {"GET", "/templates/t/builds/b1/status", API_ROUTE_TEMPLATE_BUILD_STATUS, "t", "b1", ""},
    {"GET", "/templates/t/builds/b1/logs", API_ROUTE_TEMPLATE_BUILD_LOGS, "t", "b1", ""},
    {"GET", "/templates/t/builds/b1/other", API_ROUTE_NOT_FOUND, "", "", ""},
    {"GET", "/templates/t/files/abc/nope", API_ROUTE_NOT_FOUND, "", "", ""},
    {"GET", "/templates//x", API_ROUTE_NOT_FOUND, "", "", ""},
    {"POST", "/v2/templates/t/other/b1", API_ROUTE_NOT_FOUND, "", "", ""},
    {"GET", "/health", API_ROUTE_HEALTH, "", "", ""},
};

static void test_routes(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(route_cases) / sizeof(route_cases[0]); i++) {
		const struct route_case *c = &route_cases[i];
		struct api_route route;

		route__match(c->method, c->path, &route);
		if (route.endpoint != c->endpoint)
			fail_msg("%s %s: endpoint %d, want %d", c->method, c->path, route.endpoint,
				 c->endpoint);
		if (c->endpoint == API_ROUTE_NOT_FOUND)
			continue;
		assert_string_equal(route.template_id, c->template_id);
		assert_string_equal(route.build_id, c->build_id);
		assert_string_equal(route.file_hash, c->hash);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_plan_cases),
	    cmocka_unit_test(test_plan_fields),
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_routes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

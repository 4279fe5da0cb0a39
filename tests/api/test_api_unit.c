/* Unit tests of warren-api's pure parts: the validation table of
 * docs/e2b-compatibility.md ("REST API", Validation) with its exact messages, path
 * routing, the list query parsers, the JSON response shapes and the GCRA. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "api_limits.h"
#include "query.h"
#include "render.h"
#include "route.h"
#include "validate.h"
#include "warren/tokens.h"

/* ---- validation table ---- */

struct validation_case {
	const char *body;
	int status;	     /* 0: valid */
	const char *message; /* exact, when status != 0 */
};

static const struct validation_case validation_cases[] = {
    /* volumeMounts (docs/volumes.md): checked here, claimed at create. */
    {"{\"templateID\":\"base\",\"volumeMounts\":[{\"name\":\"v\",\"path\":\"/data\"}]}", 0, NULL},
    {"{\"templateID\":\"base\",\"volumeMounts\":[{\"name\":\"v\",\"path\":\"/proc/x\"}]}", 400,
     "volume mount path '/proc/x' is under /proc"},
    {"{\"templateID\":\"base\",\"metadata\":{\"warren.runtime\":\"vm\"},"
     "\"volumeMounts\":[{\"name\":\"v\",\"path\":\"/data\"}]}",
     400, "volumeMounts need the jail runtime (docs/volumes.md)"},
    /* What warren does not implement is a 400 naming it (empty is fine). */
    {"{\"templateID\":\"base\",\"volumeMounts\":[]}", 0, NULL},
    {"{\"templateID\":\"base\",\"mcp\":{\"github\":{}}}", 400,
     "mcp is not supported by warren (no MCP gateway)"},
    {"{\"templateID\":\"base\",\"iam\":{\"tokens\":{\"t\":{}}}}", 400,
     "iam is not supported by warren (no workload identity tokens)"},
    {"{\"templateID\":\"base\",\"network\":{\"rules\":{\"a.example\":[]}}}", 400,
     "rules is not supported by warren (no per-domain request transforms)"},
    {"{\"templateID\":\"base\",\"network\":{\"egressProxy\":{\"address\":\"x\"}}}", 400,
     "egressProxy is not supported by warren (no egress proxy chaining)"},
    {"{\"templateID\":\"base\",\"network\":{\"rules\":{}},\"mcp\":null}", 0, NULL},
    {"{\"templateID\":\"base\"}", 0, NULL},
    {"{\"templateID\":\"base\",\"timeout\":300,\"secure\":true,\"allow_internet_access\":true,"
     "\"metadata\":{\"a\":\"b\"},\"envVars\":{\"X\":\"1\"},\"autoPause\":false}",
     0, NULL},
    {"{}", 400, "templateID is required"},
    {"{\"templateID\":null}", 400, "templateID is required"},
    {"{\"templateID\":42}", 400, "templateID must be a non-empty string of at most 128 characters"},
    {"{\"templateID\":\"\"}", 400,
     "templateID must be a non-empty string of at most 128 characters"},
    {"{\"templateID\":\"base\",\"timeout\":0}", 400, "timeout must be greater than 0 seconds"},
    {"{\"templateID\":\"base\",\"timeout\":-5}", 400, "timeout must be greater than 0 seconds"},
    {"{\"templateID\":\"base\",\"timeout\":\"60\"}", 400,
     "timeout must be an integer number of seconds"},
    {"{\"templateID\":\"base\",\"timeout\":1.5}", 400,
     "timeout must be an integer number of seconds"},
    {"{\"templateID\":\"base\",\"timeout\":3601}", 400, "Timeout cannot be greater than 1 hours"},
    {"{\"templateID\":\"base\",\"timeout\":3600}", 0, NULL},
    {"{\"templateID\":\"base\",\"secure\":\"yes\"}", 400, "secure must be a boolean"},
    {"{\"templateID\":\"base\",\"allow_internet_access\":1}", 400,
     "allow_internet_access must be a boolean"},
    {"{\"templateID\":\"base\",\"autoPause\":true}", 0, NULL},
    {"{\"templateID\":\"base\",\"autoPause\":true,"
     "\"autoResume\":{\"enabled\":true}}",
     0, NULL},
    {"{\"templateID\":\"base\",\"autoResume\":{\"enabled\":true}}", 400,
     "autoResume can only be true when onTimeout action is 'pause'"},
    {"{\"templateID\":\"base\",\"autoPause\":\"yes\"}", 400, "autoPause must be a boolean"},
    {"{\"templateID\":\"base\",\"autoResume\":{\"enabled\":1}}", 400,
     "autoResume must be a boolean or {enabled: boolean}"},
    {"{\"templateID\":\"base\",\"lifecycle\":"
     "{\"onTimeout\":\"pause\",\"autoResume\":true}}",
     0, NULL},
    {"{\"templateID\":\"base\",\"lifecycle\":{\"onTimeout\":{\"action\":\"kill\"}}}", 0, NULL},
    {"{\"templateID\":\"base\",\"lifecycle\":{\"onTimeout\":\"sleep\"}}", 400,
     "lifecycle.onTimeout must be one of: pause, kill"},
    {"{\"templateID\":\"base\",\"secure\":false,\"network\":{\"allowPublicTraffic\":false}}", 400,
     "allowPublicTraffic=false requires secure=true"},
    /* secure is the default (docs/api.md), so this one is valid. */
    {"{\"templateID\":\"base\",\"network\":{\"allowPublicTraffic\":false}}", 0, NULL},
    {"{\"templateID\":\"base\",\"secure\":true,\"network\":{\"allowPublicTraffic\":false}}", 0,
     NULL},
    {"{\"templateID\":\"base\",\"network\":{\"allowOut\":[\"example.com\"]}}", 400,
     "When specifying allowed domains in allow out, you must include 'ALL_TRAFFIC' in deny out"},
    {"{\"templateID\":\"base\",\"network\":{\"allowOut\":[\"*.example.com\"],\"denyOut\":[\"10.0.0."
     "0/8\"]}}",
     400,
     "When specifying allowed domains in allow out, you must include 'ALL_TRAFFIC' in deny out"},
    {"{\"templateID\":\"base\",\"network\":{\"allowOut\":[\"example.com\"],\"denyOut\":[\"0.0.0.0/"
     "0\"]}}",
     0, NULL},
    {"{\"templateID\":\"base\",\"allow_internet_access\":false,\"network\":{\"allowOut\":["
     "\"example.com\"]}}",
     0, NULL},
    {"{\"templateID\":\"base\",\"network\":{\"denyOut\":[\"example.com\"]}}", 400,
     "domains are not accepted in deny out, only IP addresses and CIDR ranges: \"example.com\""},
    {"{\"templateID\":\"base\",\"network\":{\"denyOut\":[\"10.0.0.0/33\"]}}", 400,
     "invalid IP address, CIDR range or domain in denyOut: \"10.0.0.0/33\""},
    {"{\"templateID\":\"base\",\"network\":{\"allowOut\":[\"1.2.3.999\"]}}", 400,
     "invalid IP address, CIDR range or domain in allowOut: \"1.2.3.999\""},
    {"{\"templateID\":\"base\",\"network\":{\"allowOut\":[\"bad host\"]}}", 400,
     "invalid IP address, CIDR range or domain in allowOut: \"bad host\""},
    {"{\"templateID\":\"base\",\"network\":{\"allowOut\":[\"1.1.1.1\",\"2001:db8::/"
     "32\"],\"denyOut\":[\"0.0.0.0/0\",\"::/0\"]}}",
     0, NULL},
    /* The never-allow set: entries entirely inside it are refused, broad
     * ones accepted (the worker never opens those blocks). */
    {"{\"templateID\":\"base\",\"network\":{\"allowOut\":[\"169.254.169.254\"]}}", 400,
     "address in allowOut is never reachable from a sandbox (loopback, link-local, metadata, "
     "multicast or the platform's own networks): \"169.254.169.254\""},
    {"{\"templateID\":\"base\",\"network\":{\"allowOut\":[\"127.0.0.1/8\"]}}", 400,
     "address in allowOut is never reachable from a sandbox (loopback, link-local, metadata, "
     "multicast or the platform's own networks): \"127.0.0.1/8\""},
    {"{\"templateID\":\"base\",\"network\":{\"allowOut\":[\"10.11.0.5\"]}}", 400,
     "address in allowOut is never reachable from a sandbox (loopback, link-local, metadata, "
     "multicast or the platform's own networks): \"10.11.0.5\""},
    {"{\"templateID\":\"base\",\"network\":{\"allowOut\":[\"fe80::1\"]}}", 400,
     "address in allowOut is never reachable from a sandbox (loopback, link-local, metadata, "
     "multicast or the platform's own networks): \"fe80::1\""},
    {"{\"templateID\":\"base\",\"network\":{\"allowOut\":[\"0.0.0.0/0\",\"::/0\",\"10.12.0.0/"
     "16\"]}}",
     0, NULL},
    {"{\"templateID\":\"base\",\"network\":{\"denyOut\":[\"169.254.169.254\"]}}", 0, NULL},
    {"{\"templateID\":\"base\",\"network\":{\"allowOut\":\"1.1.1.1\"}}", 400,
     "network.allowOut must be an array of strings"},
    {"{\"templateID\":\"base\",\"network\":{\"denyOut\":[1]}}", 400,
     "network.denyOut must be an array of strings"},
    {"{\"templateID\":\"base\",\"network\":[]}", 400, "network must be an object"},
    {"{\"templateID\":\"base\",\"network\":{\"maskRequestHost\":7}}", 400,
     "network.maskRequestHost must be a string of at most 255 characters"},
    {"{\"templateID\":\"base\",\"metadata\":[]}", 400, "metadata must be an object of strings"},
    {"{\"templateID\":\"base\",\"metadata\":{\"k\":1}}", 400, "metadata.k must be a string"},
    {"{\"templateID\":\"base\",\"envVars\":{\"K\":true}}", 400, "envVars.K must be a string"},
    {"{\"templateID\":\"base\",\"envVars\":\"A=B\"}", 400, "envVars must be an object of strings"},
    {"{\"templateID\":\"base\",\"metadata\":{\"warren.runtime\":\"qemu\"}}", 400,
     "metadata warren.runtime must be \"vm\" or \"jail\""},
    {"{\"templateID\":\"base\",\"metadata\":{\"warren.runtime\":\"vm\"}}", 0, NULL},
};

static void test_validation_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(validation_cases) / sizeof(validation_cases[0]); i++) {
		const struct validation_case *c = &validation_cases[i];
		struct api_create_request request;
		struct api_error error = {0};
		json_t *body = validate__parse_body(c->body, strlen(c->body), &error);
		int rc;

		assert_non_null(body);
		rc = validate__create(body, 3600, &request, &error);
		json_decref(body);
		if (c->status == 0) {
			if (rc)
				fail_msg("case %zu (%s) refused: %s", i, c->body, error.message);
			api_create_request__clear(&request);
			continue;
		}
		if (rc == 0)
			fail_msg("case %zu (%s) accepted", i, c->body);
		assert_int_equal(error.status, c->status);
		assert_string_equal(error.message, c->message);
		assert_null(request.network);
	}
}

static void test_validation_defaults_and_normalisation(void **state)
{
	struct api_create_request request;
	struct api_error error;
	const char *text =
	    "{\"templateID\":\"base\",\"allow_internet_access\":false,"
	    "\"network\":{\"allowOut\":[\"api.example.com\"],\"maskRequestHost\":\"x-${PORT}\"}}";
	json_t *body = validate__parse_body(text, strlen(text), &error);

	(void)state;
	assert_int_equal(validate__create(body, 3600, &request, &error), 0);
	assert_int_equal(request.timeout_s, API_TIMEOUT_DEFAULT_S);
	assert_true(request.secure); /* secure by default */
	assert_true(request.allow_public_traffic);
	assert_false(request.allow_internet_access);
	/* allow_internet_access=false equals denyOut=[ALL_TRAFFIC]. */
	assert_string_equal(
	    json_string_value(json_array_get(json_object_get(request.network, "denyOut"), 0)),
	    API_ALL_TRAFFIC);
	assert_string_equal(request.mask_request_host, "x-${PORT}");
	assert_int_equal(json_object_size(request.metadata), 0);
	assert_string_equal(request.runtime, ""); /* any host */
	api_create_request__clear(&request);
	json_decref(body);

	/* Placement: the metadata key names the runtime and stays metadata. */
	text = "{\"templateID\":\"base\",\"metadata\":{\"warren.runtime\":\"jail\"}}";
	body = validate__parse_body(text, strlen(text), &error);
	assert_int_equal(validate__create(body, 3600, &request, &error), 0);
	assert_string_equal(request.runtime, "jail");
	assert_string_equal(json_string_value(json_object_get(request.metadata, "warren.runtime")),
			    "jail");
	api_create_request__clear(&request);
	json_decref(body);

	/* A team maximum below the 15 s default caps the default. */
	body = validate__parse_body("{\"templateID\":\"t\"}", 18, &error);
	assert_int_equal(validate__create(body, 10, &request, &error), 0);
	assert_int_equal(request.timeout_s, 10);
	api_create_request__clear(&request);
	json_decref(body);
	/* Pro: 24 hours. */
	body = validate__parse_body("{\"templateID\":\"t\",\"timeout\":86401}", 34, &error);
	assert_int_equal(validate__create(body, 86400, &request, &error), -1);
	assert_string_equal(error.message, "Timeout cannot be greater than 24 hours");
	json_decref(body);
}

static void test_parse_body(void **state)
{
	struct api_error error;

	(void)state;
	assert_null(validate__parse_body("{\"a\":", 5, &error));
	assert_int_equal(error.status, 400);
	assert_non_null(strstr(error.message, "malformed JSON body"));
	assert_null(validate__parse_body("[1]", 3, &error));
	assert_string_equal(error.message, "malformed JSON body: expected a JSON object");
	assert_null(validate__parse_body("", 0, &error));
	assert_null(validate__parse_body("{\"a\":1,\"a\":2}", 13, &error));
}

static void test_address_kinds(void **state)
{
	(void)state;
	assert_int_equal(validate__address("1.1.1.1"), API_ADDRESS_IP);
	assert_int_equal(validate__address("0.0.0.0/0"), API_ADDRESS_CIDR);
	assert_int_equal(validate__address("::1"), API_ADDRESS_IP);
	assert_int_equal(validate__address("2001:db8::/128"), API_ADDRESS_CIDR);
	assert_int_equal(validate__address("2001:db8::/129"), API_ADDRESS_INVALID);
	assert_int_equal(validate__address("10.0.0.0/"), API_ADDRESS_INVALID);
	assert_int_equal(validate__address("10.0.0.0/-1"), API_ADDRESS_INVALID);
	assert_int_equal(validate__address("example.com"), API_ADDRESS_DOMAIN);
	assert_int_equal(validate__address("*.example.com"), API_ADDRESS_DOMAIN);
	assert_int_equal(validate__address("localhost"), API_ADDRESS_DOMAIN);
	assert_int_equal(validate__address("1.2.3"), API_ADDRESS_INVALID);
	assert_int_equal(validate__address("-a.com"), API_ADDRESS_INVALID);
	assert_int_equal(validate__address("a..com"), API_ADDRESS_INVALID);
	assert_int_equal(validate__address("a.com."), API_ADDRESS_INVALID);
	assert_int_equal(validate__address("*.*.com"), API_ADDRESS_INVALID);
	assert_int_equal(validate__address(""), API_ADDRESS_INVALID);
	assert_int_equal(validate__address("example.com/24"), API_ADDRESS_INVALID);
}

static void test_seconds_field(void **state)
{
	struct api_error error;
	int32_t seconds = 0;
	json_t *body = json_pack("{s:i}", "timeout", 99999);

	(void)state;
	assert_int_equal(validate__seconds_field(body, "timeout", 0, 3600, &seconds, &error), 0);
	assert_int_equal(seconds, 3600); /* capped at the team's maximum */
	json_decref(body);
	body = json_object();
	assert_int_equal(validate__seconds_field(body, "timeout", 0, 3600, &seconds, &error), -1);
	assert_string_equal(error.message, "timeout is required");
	assert_int_equal(validate__seconds_field(body, "duration", 15, 3600, &seconds, &error), 0);
	assert_int_equal(seconds, 15);
	json_decref(body);
	body = json_pack("{s:i}", "duration", 0);
	assert_int_equal(validate__seconds_field(body, "duration", 15, 3600, &seconds, &error), -1);
	assert_string_equal(error.message, "duration must be greater than 0 seconds");
	json_decref(body);
}

/* ---- routing ---- */

static void test_routes(void **state)
{
	struct api_route route;

	(void)state;
	route__match("POST", "/sandboxes", &route);
	assert_int_equal(route.endpoint, API_ROUTE_CREATE);
	route__match("GET", "/sandboxes/", &route);
	assert_int_equal(route.endpoint, API_ROUTE_LIST_V1);
	route__match("GET", "/v2/sandboxes", &route);
	assert_int_equal(route.endpoint, API_ROUTE_LIST_V2);
	route__match("GET", "/sandboxes/iabc", &route);
	assert_int_equal(route.endpoint, API_ROUTE_GET);
	assert_string_equal(route.sandbox_id, "iabc");
	route__match("DELETE", "/sandboxes/iabc", &route);
	assert_int_equal(route.endpoint, API_ROUTE_KILL);
	route__match("POST", "/sandboxes/iabc/timeout", &route);
	assert_int_equal(route.endpoint, API_ROUTE_TIMEOUT);
	route__match("POST", "/sandboxes/iabc/refreshes", &route);
	assert_int_equal(route.endpoint, API_ROUTE_REFRESH);
	route__match("POST", "/sandboxes/iabc/pause", &route);
	assert_int_equal(route.endpoint, API_ROUTE_PAUSE);
	route__match("POST", "/sandboxes/iabc/resume", &route);
	assert_int_equal(route.endpoint, API_ROUTE_RESUME);
	assert_true(route__is_lifecycle(API_ROUTE_RESUME));
	route__match("PUT", "/sandboxes/iabc/network", &route);
	assert_int_equal(route.endpoint, API_ROUTE_NETWORK);
	route__match("GET", "/sandboxes/iabc/network", &route);
	assert_int_equal(route.endpoint, API_ROUTE_BAD_METHOD);
	assert_string_equal(route.allowed_methods, "PUT");
	route__match("PATCH", "/sandboxes/iabc", &route);
	assert_int_equal(route.endpoint, API_ROUTE_BAD_METHOD);
	route__match("DELETE", "/sandboxes", &route);
	assert_int_equal(route.endpoint, API_ROUTE_BAD_METHOD);
	route__match("GET", "/sandboxes/iabc/nothing", &route);
	assert_int_equal(route.endpoint, API_ROUTE_NOT_FOUND);
	route__match("GET", "/sandboxes//timeout", &route);
	assert_int_equal(route.endpoint, API_ROUTE_NOT_FOUND);
	route__match("GET", "/health", &route);
	assert_int_equal(route.endpoint, API_ROUTE_HEALTH);
	assert_false(route__is_lifecycle(API_ROUTE_HEALTH));
	assert_true(route__is_lifecycle(API_ROUTE_CREATE));
	assert_true(route__is_lifecycle(API_ROUTE_LIST_V2));
	route__match("GET", "/", &route);
	assert_int_equal(route.endpoint, API_ROUTE_NOT_FOUND);
	/* The e2b SDK 2.x paths. */
	route__match("POST", "/v2/sandboxes", &route);
	assert_int_equal(route.endpoint, API_ROUTE_CREATE);
	route__match("POST", "/v2/sandboxes/iabc/connect", &route);
	assert_int_equal(route.endpoint, API_ROUTE_CONNECT);
	assert_string_equal(route.sandbox_id, "iabc");
	route__match("POST", "/sandboxes/iabc/connect", &route);
	assert_int_equal(route.endpoint, API_ROUTE_CONNECT);
	route__match("GET", "/v2/sandboxes/iabc/connect", &route);
	assert_int_equal(route.endpoint, API_ROUTE_BAD_METHOD);
	route__match("GET", "/v2/sandboxes/iabc", &route);
	assert_int_equal(route.endpoint, API_ROUTE_NOT_FOUND);
	route__match("POST", "/v2/sandboxes//connect", &route);
	assert_int_equal(route.endpoint, API_ROUTE_NOT_FOUND);
	assert_true(route__is_lifecycle(API_ROUTE_CONNECT));
	/* fork (the SDK's Sandbox.fork): a lifecycle operation */
	route__match("POST", "/sandboxes/iabc/fork", &route);
	assert_int_equal(route.endpoint, API_ROUTE_FORK);
	assert_string_equal(route.sandbox_id, "iabc");
	assert_true(route__is_lifecycle(API_ROUTE_FORK));
	route__match("GET", "/sandboxes/iabc/fork", &route);
	assert_int_equal(route.endpoint, API_ROUTE_BAD_METHOD);
}

/* ---- query parsing ---- */

static void test_metadata_query(void **state)
{
	struct api_error error;
	json_t *filter = NULL;

	(void)state;
	/* What E2B's SDK sends: metadata=<urlencode("user=alice&app=my%20app")>;
	 * libmicrohttpd decodes the outer layer, we decode each pair. */
	assert_int_equal(query__metadata("user=alice&app=my%20app&x=a%3Db", &filter, &error), 0);
	assert_non_null(filter);
	assert_int_equal(json_object_size(filter), 3);
	assert_string_equal(json_string_value(json_object_get(filter, "user")), "alice");
	assert_string_equal(json_string_value(json_object_get(filter, "app")), "my app");
	assert_string_equal(json_string_value(json_object_get(filter, "x")), "a=b");
	json_decref(filter);
	/* The npm SDK's form: encodeURIComponent of key and value, then
	 * URLSearchParams ("%" -> "%25"): {"a b": "100%"} arrives as this. */
	assert_int_equal(query__metadata("a%2520b=100%2525", &filter, &error), 0);
	assert_string_equal(json_string_value(json_object_get(filter, "a b")), "100%");
	json_decref(filter);
	assert_int_equal(query__metadata("", &filter, &error), 0);
	assert_null(filter);
	assert_int_equal(query__metadata("k=", &filter, &error), 0);
	assert_string_equal(json_string_value(json_object_get(filter, "k")), "");
	json_decref(filter);
	assert_int_equal(query__metadata("novalue", &filter, &error), -1);
	assert_int_equal(error.status, 400);
	assert_int_equal(query__metadata("=v", &filter, &error), -1);
	assert_int_equal(query__metadata("k=%zz", &filter, &error), -1);
	assert_int_equal(query__metadata("k=%2", &filter, &error), -1);
	assert_int_equal(query__metadata("k=%00", &filter, &error), -1);
}

static void test_states_and_limit(void **state)
{
	struct api_error error;
	uint32_t mask = 0;
	int limit = 0;

	(void)state;
	assert_int_equal(query__states("running,paused", &mask, &error), 0);
	assert_int_equal(mask, STORAGE_STATE_BIT(STORAGE_SANDBOX_RUNNING) |
				   STORAGE_STATE_BIT(STORAGE_SANDBOX_PAUSED));
	/* E2B's list knows running and paused only; our other names are 400. */
	assert_int_equal(query__states("starting", &mask, &error), -1);
	assert_int_equal(query__states("killed", &mask, &error), -1);
	assert_int_equal(error.status, 400);
	assert_int_equal(query__states("running,bogus", &mask, &error), -1);
	assert_string_equal(error.message,
			    "state must be \"running\" or \"paused\", not \"bogus\"");
	assert_int_equal(query__limit(NULL, &limit, &error), 0);
	assert_int_equal(limit, 100);
	assert_int_equal(query__limit("7", &limit, &error), 0);
	assert_int_equal(limit, 7);
	assert_int_equal(query__limit("101", &limit, &error), -1);
	assert_int_equal(query__limit("0", &limit, &error), -1);
	assert_int_equal(query__limit("-1", &limit, &error), -1);
	assert_int_equal(query__limit("5x", &limit, &error), -1);
}

/* ---- routes warren does not implement, list filters, metrics ---- */

static void test_unimplemented_routes(void **state)
{
	static const char *const sdk_routes[][2] = {
	    {"GET", "/secrets"},
	    {"DELETE", "/secrets/s1"},
	    {"GET", "/teams"},
	    {"GET", "/teams/t1/metrics"},
	    {"GET", "/teams/t1/metrics/max"},
	    {"PATCH", "/templates/base"},
	    {"GET", "/templates/base/tags"},
	    {"POST", "/templates/tags"},
	    {"GET", "/v2/templates"},
	    {"PATCH", "/v2/templates/base"},
	    {"GET", "/volumecontent/v1/dir"},
	    {"PATCH", "/volumecontent/v1/path"},
	    {"PUT", "/volumecontent/v1/file"},
	};
	struct api_route route;

	(void)state;
	for (size_t i = 0; i < sizeof(sdk_routes) / sizeof(sdk_routes[0]); i++) {
		route__match(sdk_routes[i][0], sdk_routes[i][1], &route);
		if (route.endpoint != API_ROUTE_UNIMPLEMENTED)
			fail_msg("%s %s routes to %d, not 501", sdk_routes[i][0], sdk_routes[i][1],
				 route.endpoint);
		assert_non_null(route.feature);
		assert_true(strlen(route.feature) > 0);
	}
	route__match("GET", "/volumecontent/v1/file", &route);
	assert_non_null(strstr(route.feature, "volume content"));
	/* Known path, method E2B does not have: 405 with what it allows. */
	route__match("PUT", "/volumes", &route);
	assert_int_equal(route.endpoint, API_ROUTE_BAD_METHOD);
	assert_string_equal(route.allowed_methods, "GET, POST");
	/* Paths E2B does not have stay 404. */
	route__match("GET", "/volumes/v1/extra", &route);
	assert_int_equal(route.endpoint, API_ROUTE_NOT_FOUND);
	route__match("GET", "/nothing", &route);
	assert_int_equal(route.endpoint, API_ROUTE_NOT_FOUND);
	route__match("GET", "/volumes//", &route);
	assert_int_equal(route.endpoint, API_ROUTE_NOT_FOUND);
	/* Snapshots are implemented. */
	route__match("POST", "/sandboxes/iabc/snapshots", &route);
	assert_int_equal(route.endpoint, API_ROUTE_SNAPSHOT_CREATE);
	assert_string_equal(route.sandbox_id, "iabc");
	route__match("GET", "/snapshots", &route);
	assert_int_equal(route.endpoint, API_ROUTE_SNAPSHOT_LIST);
	route__match("DELETE", "/snapshots", &route);
	assert_int_equal(route.endpoint, API_ROUTE_BAD_METHOD);
	/* Logs, both versions, and metrics are implemented. */
	route__match("GET", "/sandboxes/iabc/logs", &route);
	assert_int_equal(route.endpoint, API_ROUTE_LOGS);
	route__match("GET", "/v2/sandboxes/iabc/logs", &route);
	assert_int_equal(route.endpoint, API_ROUTE_LOGS_V2);
	assert_string_equal(route.sandbox_id, "iabc");
	route__match("POST", "/v2/sandboxes/iabc/logs", &route);
	assert_int_equal(route.endpoint, API_ROUTE_BAD_METHOD);
	route__match("GET", "/v2/sandboxes/iabc/timeout", &route);
	assert_int_equal(route.endpoint, API_ROUTE_NOT_FOUND);
	route__match("GET", "/sandboxes/iabc/metrics", &route);
	assert_int_equal(route.endpoint, API_ROUTE_METRICS);
	assert_string_equal(route.sandbox_id, "iabc");
	route__match("GET", "/sandboxes/metrics", &route);
	assert_int_equal(route.endpoint, API_ROUTE_METRICS_LIST);
	route__match("POST", "/sandboxes/metrics", &route);
	assert_int_equal(route.endpoint, API_ROUTE_BAD_METHOD);
	assert_false(route__is_lifecycle(API_ROUTE_UNIMPLEMENTED));
}

static void test_list_filter_queries(void **state)
{
	struct api_error error;
	const char *template;
	bool ascending = true;
	int64_t ms = -1;

	(void)state;
	assert_int_equal(query__order(NULL, &ascending, &error), 0);
	assert_false(ascending);
	assert_int_equal(query__order("asc", &ascending, &error), 0);
	assert_true(ascending);
	assert_int_equal(query__order("desc", &ascending, &error), 0);
	assert_false(ascending);
	assert_int_equal(query__order("up", &ascending, &error), -1);
	assert_int_equal(error.status, 400);
	assert_string_equal(error.message, "order must be \"asc\" or \"desc\", not \"up\"");

	assert_int_equal(query__time("startedAfter", NULL, &ms, &error), 0);
	assert_int_equal(ms, 0);
	/* What the SDK sends: Date.toISOString(). */
	assert_int_equal(query__time("startedAfter", "2026-01-31T12:00:00.250Z", &ms, &error), 0);
	assert_int_equal(ms, 1769860800250LL);
	assert_int_equal(query__time("startedAfter", "2026-01-31T13:00:00+01:00", &ms, &error), 0);
	assert_int_equal(ms, 1769860800000LL);
	assert_int_equal(query__time("startedAfter", "yesterday", &ms, &error), -1);
	assert_int_equal(error.status, 400);
	assert_non_null(strstr(error.message, "startedAfter must be an RFC 3339 time"));
	assert_int_equal(query__time("startedBefore", "2026-13-01T00:00:00Z", &ms, &error), -1);

	assert_int_equal(query__template(NULL, &template, &error), 0);
	assert_null(template);
	assert_int_equal(query__template("", &template, &error), 0);
	assert_null(template);
	assert_int_equal(query__template("base-2.x_y", &template, &error), 0);
	assert_string_equal(template, "base-2.x_y");
	assert_int_equal(query__template("Base", &template, &error), -1);
	assert_int_equal(query__template("-x", &template, &error), -1);
	assert_int_equal(query__template("a'b", &template, &error), -1);
}

static void test_metrics_queries(void **state)
{
	char ids[100][24];
	struct api_error error;
	size_t count = 0;
	int64_t seconds = 0;
	char many[101 * 23];
	size_t used = 0;

	(void)state;
	assert_int_equal(query__unix_seconds("start", NULL, &seconds, &error), 0);
	assert_int_equal(seconds, -1);
	assert_int_equal(query__unix_seconds("start", "1769860800", &seconds, &error), 0);
	assert_int_equal(seconds, 1769860800LL);
	assert_int_equal(query__unix_seconds("start", "-5", &seconds, &error), -1);
	assert_int_equal(query__unix_seconds("end", "12x", &seconds, &error), -1);
	assert_string_equal(error.message, "end must be a Unix time in seconds, not \"12x\"");
	assert_int_equal(query__unix_seconds("end", "99999999999999999999", &seconds, &error), -1);

	assert_int_equal(query__sandbox_ids("iabcdefghij0123456789,iabcdefghij0123456788,"
					    "iabcdefghij0123456789",
					    ids, 100, &count, &error),
			 0);
	assert_int_equal(count, 2);
	assert_string_equal(ids[1], "iabcdefghij0123456788");
	assert_int_equal(query__sandbox_ids(NULL, ids, 100, &count, &error), -1);
	assert_int_equal(query__sandbox_ids(",", ids, 100, &count, &error), -1);
	assert_int_equal(query__sandbox_ids("nope", ids, 100, &count, &error), -1);
	assert_int_equal(query__sandbox_ids("iabcdefghij0123456789x", ids, 100, &count, &error),
			 -1);
	for (int i = 0; i < 101; i++)
		used +=
		    (size_t)snprintf(many + used, sizeof(many) - used, "%si%020d", i ? "," : "", i);
	assert_int_equal(query__sandbox_ids(many, ids, 100, &count, &error), -1);
	assert_string_equal(error.message, "sandbox_ids lists more than 100 sandboxes");
}

static void test_logs_queries(void **state)
{
	struct api_error error;
	const char *level;
	bool forward = false;
	int64_t value = 0;

	(void)state;
	assert_int_equal(query__log_level(NULL, &level, &error), 0);
	assert_null(level);
	assert_int_equal(query__log_level("warn", &level, &error), 0);
	assert_string_equal(level, "warn");
	assert_int_equal(query__log_level("WARN", &level, &error), -1);
	assert_string_equal(error.message,
			    "level must be debug, info, warn or error, not \"WARN\"");
	assert_int_equal(query__direction(NULL, &forward, &error), 0);
	assert_true(forward);
	assert_int_equal(query__direction("backward", &forward, &error), 0);
	assert_false(forward);
	assert_int_equal(query__direction("up", &forward, &error), -1);
	assert_int_equal(query__int_range("limit", NULL, 1, 1000, 1000, &value, &error), 0);
	assert_int_equal(value, 1000);
	assert_int_equal(query__int_range("limit", "10", 1, 1000, 1000, &value, &error), 0);
	assert_int_equal(value, 10);
	assert_int_equal(query__int_range("limit", "0", 1, 1000, 1000, &value, &error), -1);
	assert_string_equal(error.message, "limit must be an integer from 1 to 1000, not \"0\"");
	assert_int_equal(query__int_range("limit", "5e2", 1, 1000, 1000, &value, &error), -1);
	assert_int_equal(
	    query__int_range("cursor", "99999999999999999999", 0, 1LL << 60, -1, &value, &error),
	    -1);
}

static void test_network_update_body(void **state)
{
	struct api_error error;
	json_t *body, *rules = NULL;

	(void)state;
	/* allow_internet_access=false (the SDK's snake_case) is denyOut ALL_TRAFFIC. */
	body =
	    json_loads("{\"allow_internet_access\":false,\"allowOut\":[\"192.0.2.1\"]}", 0, NULL);
	assert_int_equal(validate__network_update(body, &rules, &error), 0);
	assert_string_equal(json_string_value(json_array_get(json_object_get(rules, "denyOut"), 0)),
			    API_ALL_TRAFFIC);
	assert_string_equal(
	    json_string_value(json_array_get(json_object_get(rules, "allowOut"), 0)), "192.0.2.1");
	json_decref(rules);
	json_decref(body);
	/* Absent: internet stays open; omitted lists are cleared. */
	body = json_loads("{}", 0, NULL);
	assert_int_equal(validate__network_update(body, &rules, &error), 0);
	assert_int_equal(json_array_size(json_object_get(rules, "denyOut")), 0);
	json_decref(rules);
	json_decref(body);
	body = json_loads("{\"allow_internet_access\":\"no\"}", 0, NULL);
	assert_int_equal(validate__network_update(body, &rules, &error), -1);
	assert_string_equal(error.message, "allow_internet_access must be a boolean");
	json_decref(body);
	/* What warren does not implement is refused, never dropped. */
	body = json_loads("{\"egressProxy\":{\"address\":\"192.0.2.1:1080\"}}", 0, NULL);
	assert_int_equal(validate__network_update(body, &rules, &error), -1);
	assert_int_equal(error.status, 400);
	assert_non_null(strstr(error.message, "egressProxy is not supported"));
	json_decref(body);
	body = json_loads("{\"rules\":{\"api.example.com\":[{}]}}", 0, NULL);
	assert_int_equal(validate__network_update(body, &rules, &error), -1);
	assert_non_null(strstr(error.message, "rules is not supported"));
	json_decref(body);
	body = json_loads("{\"rules\":{}}", 0, NULL);
	assert_int_equal(validate__network_update(body, &rules, &error), 0);
	json_decref(rules);
	json_decref(body);
}

static void test_metric_shape(void **state)
{
	struct storage_sandbox_metric metric = {
	    .sandbox_id = "iabcdefghij0123456789",
	    .at = 1769860800250LL,
	    .cpu_count = 2,
	    .cpu_used_pct = 37.126,
	    .mem_used = 1 << 20,
	    .mem_total = 512 << 20,
	    .mem_cache = 4096,
	    .disk_used = 8192,
	    .disk_total = 1LL << 33,
	};
	json_t *json = render__metric(&metric);

	(void)state;
	assert_string_equal(json_string_value(json_object_get(json, "timestamp")),
			    "2026-01-31T12:00:00.250Z");
	assert_int_equal(json_integer_value(json_object_get(json, "timestampUnix")), 1769860800LL);
	assert_int_equal(json_integer_value(json_object_get(json, "cpuCount")), 2);
	assert_true(json_real_value(json_object_get(json, "cpuUsedPct")) > 37.12);
	assert_true(json_real_value(json_object_get(json, "cpuUsedPct")) < 37.14);
	assert_int_equal(json_integer_value(json_object_get(json, "memTotal")), 512 << 20);
	assert_int_equal(json_integer_value(json_object_get(json, "diskTotal")), 1LL << 33);
	assert_int_equal(json_integer_value(json_object_get(json, "memCache")), 4096);
	json_decref(json);
}

/* ---- response shapes ---- */

static void test_render_shapes(void **state)
{
	struct render_context context = {.token_seed = "seed",
					 .domain = "warren.test",
					 .envd_version = "0.2.0",
					 .cpu_count = 2,
					 .memory_mb = 512,
					 .disk_mb = 1024};
	struct storage_sandbox sandbox = {.id = "iabcdefghij0123456789",
					  .template_id = "base",
					  .host_id = "host-1",
					  .state = STORAGE_SANDBOX_RUNNING,
					  .started_at = 1000,
					  .end_at = 16000,
					  .created_at = 900,
					  .secure = true,
					  .allow_public_traffic = false};
	char access[65], traffic[65];
	json_t *body;

	(void)state;
	tokens__access_token("seed", sandbox.id, access);
	tokens__traffic_token("seed", sandbox.id, traffic);
	body = render__created(&context, &sandbox, NULL);
	assert_int_equal(json_object_size(body), 8);
	assert_string_equal(json_string_value(json_object_get(body, "sandboxID")), sandbox.id);
	assert_string_equal(json_string_value(json_object_get(body, "templateID")), "base");
	assert_string_equal(json_string_value(json_object_get(body, "alias")), "base");
	assert_string_equal(json_string_value(json_object_get(body, "clientID")), "host-1");
	assert_string_equal(json_string_value(json_object_get(body, "envdVersion")), "0.2.0");
	assert_string_equal(json_string_value(json_object_get(body, "envdAccessToken")), access);
	assert_string_equal(json_string_value(json_object_get(body, "trafficAccessToken")),
			    traffic);
	assert_string_equal(json_string_value(json_object_get(body, "domain")), "warren.test");
	json_decref(body);

	sandbox.secure = false;
	sandbox.allow_public_traffic = true;
	context.domain = "";
	body = render__created(&context, &sandbox, "client");
	assert_true(json_is_null(json_object_get(body, "envdAccessToken")));
	assert_true(json_is_null(json_object_get(body, "trafficAccessToken")));
	assert_true(json_is_null(json_object_get(body, "domain")));
	assert_string_equal(json_string_value(json_object_get(body, "clientID")), "client");
	json_decref(body);

	body = render__listed(&context, &sandbox);
	assert_string_equal(json_string_value(json_object_get(body, "startedAt")),
			    "1970-01-01T00:00:01.000Z");
	assert_string_equal(json_string_value(json_object_get(body, "endAt")),
			    "1970-01-01T00:00:16.000Z");
	assert_int_equal(json_integer_value(json_object_get(body, "cpuCount")), 2);
	assert_int_equal(json_integer_value(json_object_get(body, "memoryMB")), 512);
	assert_string_equal(json_string_value(json_object_get(body, "state")), "running");
	assert_true(json_is_object(json_object_get(body, "metadata")));
	assert_null(json_object_get(body, "envdAccessToken"));
	json_decref(body);

	body = render__detail(&context, &sandbox);
	assert_true(json_is_null(json_object_get(body, "envdAccessToken")));
	assert_non_null(json_object_get(body, "domain"));
	json_decref(body);

	body = render__error(404, "gone");
	assert_int_equal(json_integer_value(json_object_get(body, "code")), 404);
	assert_string_equal(json_string_value(json_object_get(body, "message")), "gone");
	assert_int_equal(json_object_size(body), 2);
	json_decref(body);
}

/* ---- GCRA ---- */

static void test_gcra_burst_and_refill(void **state)
{
	struct limits_gcra gcra = {0};
	struct limits_decision d;
	int64_t now = 1000000000;

	(void)state;
	/* 1 per second, burst 2: two at once, the third waits a second. */
	limits__gcra(&gcra, now, 1000000, 2, &d);
	assert_true(d.allowed);
	assert_int_equal(d.remaining, 1);
	limits__gcra(&gcra, now, 1000000, 2, &d);
	assert_true(d.allowed);
	assert_int_equal(d.remaining, 0);
	limits__gcra(&gcra, now, 1000000, 2, &d);
	assert_false(d.allowed);
	assert_int_equal(d.retry_after_s, 1);
	assert_int_equal(d.reset_s, 2);
	/* A denial does not consume. */
	limits__gcra(&gcra, now + 999999, 1000000, 2, &d);
	assert_false(d.allowed);
	limits__gcra(&gcra, now + 1000000, 1000000, 2, &d);
	assert_true(d.allowed);
	assert_int_equal(d.remaining, 0);
	/* After a long idle time the whole burst is back, no more. */
	limits__gcra(&gcra, now + 100000000, 1000000, 2, &d);
	assert_true(d.allowed);
	assert_int_equal(d.remaining, 1);
	limits__gcra(&gcra, now + 100000000, 1000000, 2, &d);
	assert_true(d.allowed);
	limits__gcra(&gcra, now + 100000000, 1000000, 2, &d);
	assert_false(d.allowed);
}

static void test_gcra_window_quota(void **state)
{
	struct limits_gcra gcra = {0};
	struct limits_decision d;
	int64_t now = 5000000, interval = 30000000 / 20000;
	int allowed = 0;

	(void)state;
	/* 20,000 per 30 s: exactly 20,000 at one instant. */
	for (int i = 0; i < 20001; i++) {
		limits__gcra(&gcra, now, interval, 20000, &d);
		allowed += d.allowed;
	}
	assert_int_equal(allowed, 20000);
	assert_false(d.allowed);
	assert_int_equal(d.reset_s, 30);
	/* 1.5 ms later one more request conforms. */
	limits__gcra(&gcra, now + interval, interval, 20000, &d);
	assert_true(d.allowed);
	/* A clock that goes backwards never grants extra requests. */
	limits__gcra(&gcra, now - 10000000, interval, 20000, &d);
	assert_false(d.allowed);
}

static void test_limits_per_team(void **state)
{
	struct storage_team_limits hobby = {
	    .lifecycle_requests = 20000, .lifecycle_window_s = 30, .creation_rate_per_s = 1};
	struct limits_decision d;

	(void)state;
	limits__reset();
	limits__create("team-a", &hobby, &d);
	assert_true(d.allowed);
	assert_int_equal(d.limit, 1);
	limits__create("team-a", &hobby, &d);
	assert_true(d.allowed);
	limits__create("team-a", &hobby, &d);
	assert_false(d.allowed);
	assert_string_equal(d.message,
			    "rate limit exceeded: at most 1 sandbox creations per second");
	/* Another team has its own budget. */
	limits__create("team-b", &hobby, &d);
	assert_true(d.allowed);
	limits__lifecycle("team-a", &hobby, &d);
	assert_true(d.allowed);
	assert_int_equal(d.limit, 20000);
	assert_int_equal(d.remaining, 19999);
	limits__reset();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_validation_table),
	    cmocka_unit_test(test_validation_defaults_and_normalisation),
	    cmocka_unit_test(test_parse_body),
	    cmocka_unit_test(test_address_kinds),
	    cmocka_unit_test(test_seconds_field),
	    cmocka_unit_test(test_routes),
	    cmocka_unit_test(test_metadata_query),
	    cmocka_unit_test(test_states_and_limit),
	    cmocka_unit_test(test_render_shapes),
	    cmocka_unit_test(test_unimplemented_routes),
	    cmocka_unit_test(test_list_filter_queries),
	    cmocka_unit_test(test_metrics_queries),
	    cmocka_unit_test(test_network_update_body),
	    cmocka_unit_test(test_logs_queries),
	    cmocka_unit_test(test_metric_shape),
	    cmocka_unit_test(test_gcra_burst_and_refill),
	    cmocka_unit_test(test_gcra_window_quota),
	    cmocka_unit_test(test_limits_per_team),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

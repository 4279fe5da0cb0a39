/* warren-proxy unit tests: the request-head parser (smuggling attempts),
 * the chunked tracker, Host parsing, header routing, masks, error bodies
 * and the per-IP limiter. No services. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "http.h"
#include "limiter.h"
#include "route.h"

static struct http_head head;

static enum http_parse_status parse(const char *request)
{
	return http__parse_request(request, strlen(request), 16384, &head);
}

static void test_parse_simple(void **state)
{
	const char *r = "GET /a?b=c HTTP/1.1\r\nHost: 8080-abc.warren.test\r\n"
			"X-Empty:\r\nX-Spaces:   v  \r\n\r\nrest";

	(void)state;
	assert_int_equal(parse(r), HTTP_PARSE_OK);
	assert_int_equal(head.head_len, strlen(r) - 4);
	assert_int_equal(head.method_len, 3);
	assert_memory_equal(head.target, "/a?b=c", 6);
	assert_int_equal(head.version_minor, 1);
	assert_int_equal(head.header_count, 3);
	assert_int_equal(head.host_index, 0);
	assert_int_equal(head.headers[1].value_len, 0);
	assert_int_equal(head.headers[2].value_len, 1);
	assert_true(head.keep_alive);
	assert_int_equal(head.body, HTTP_BODY_NONE);
	/* every prefix is incomplete, never an error */
	for (size_t i = 0; i < strlen(r) - 4; i++)
		assert_int_equal(http__parse_request(r, i, 16384, &head), HTTP_PARSE_INCOMPLETE);
}

static void test_parse_framing(void **state)
{
	(void)state;
	assert_int_equal(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 42\r\n\r\n"),
			 HTTP_PARSE_OK);
	assert_int_equal(head.body, HTTP_BODY_LENGTH);
	assert_int_equal(head.content_length, 42);
	assert_int_equal(parse("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n"),
			 HTTP_PARSE_OK);
	assert_int_equal(head.body, HTTP_BODY_CHUNKED);
	assert_int_equal(parse("GET / HTTP/1.0\r\n\r\n"), HTTP_PARSE_OK);
	assert_false(head.keep_alive);
	assert_int_equal(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), HTTP_PARSE_OK);
	assert_true(head.keep_alive);
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
			 HTTP_PARSE_OK);
	assert_false(head.keep_alive);
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n"
			       "Upgrade: websocket\r\n\r\n"),
			 HTTP_PARSE_OK);
	assert_true(head.upgrade);
	/* leading empty lines are skipped */
	assert_int_equal(parse("\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"), HTTP_PARSE_OK);
}

static void test_parse_smuggling(void **state)
{
	static const char *const bad[] = {
	    /* CL + TE */
	    "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
	    /* two CLs, even equal ones; a CL list */
	    "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4, 4\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +4\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n",
	    /* TE variants */
	    "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
	    "x\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n",
	    "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
	    /* whitespace before the colon, obs-fold */
	    "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n",
	    "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
	    "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n",
	    /* bare LF / CR, NUL, controls */
	    "GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n",
	    "GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n",
	    "GET / HTTP/1.1\r\nHost: h\r\nX: a\x01z\r\n\r\n",
	    /* Host: none in 1.1, two */
	    "GET / HTTP/1.1\r\n\r\n",
	    "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	    /* request line */
	    "GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
	    "GET / HTTP/2.0\r\nHost: h\r\n\r\n",
	    "GET / HTTP/1.1 \r\nHost: h\r\n\r\n",
	    "G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
	    "GET /a b HTTP/1.1\r\nHost: h\r\n\r\n",
	    "GET / http/1.1\r\nHost: h\r\n\r\n",
	    ": / HTTP/1.1\r\nHost: h\r\n\r\n",
	    "GET / HTTP/1.1\r\n: empty-name\r\nHost: h\r\n\r\n",
	    NULL,
	};

	(void)state;
	for (int i = 0; bad[i]; i++) {
		enum http_parse_status status = parse(bad[i]);

		if (status != HTTP_PARSE_ERROR)
			fprintf(stderr, "accepted #%d: %s\n", i, bad[i]);
		assert_int_equal(status, HTTP_PARSE_ERROR);
		assert_non_null(head.error);
	}
}

static void test_parse_too_large(void **state)
{
	size_t len = 20000;
	char *r = malloc(len + 1);

	(void)state;
	memcpy(r, "GET / HTTP/1.1\r\nHost: h\r\nX-Big: ", 32);
	memset(r + 32, 'a', len - 32);
	r[len] = '\0';
	assert_int_equal(http__parse_request(r, len, 16384, &head), HTTP_PARSE_TOO_LARGE);
	/* under the limit but without an end: keep reading */
	assert_int_equal(http__parse_request(r, 8000, 16384, &head), HTTP_PARSE_INCOMPLETE);
	free(r);
	/* too many headers */
	{
		char many[8192];
		size_t used = (size_t)snprintf(many, sizeof(many), "GET / HTTP/1.1\r\nHost: h\r\n");

		for (int i = 0; i < 120; i++)
			used += (size_t)snprintf(many + used, sizeof(many) - used, "X%d: y\r\n", i);
		used += (size_t)snprintf(many + used, sizeof(many) - used, "\r\n");
		assert_int_equal(http__parse_request(many, used, 16384, &head),
				 HTTP_PARSE_TOO_LARGE);
	}
}

static void test_parse_response(void **state)
{
	const char *ok = "HTTP/1.0 200 OK\r\nServer: x\r\n\r\nbody";

	(void)state;
	assert_int_equal(http__parse_response(ok, strlen(ok), 16384, false, &head), HTTP_PARSE_OK);
	assert_int_equal(head.status, 200);
	assert_int_equal(head.body, HTTP_BODY_UNTIL_CLOSE);
	assert_int_equal(http__parse_response(ok, strlen(ok), 16384, true, &head), HTTP_PARSE_OK);
	assert_int_equal(head.body, HTTP_BODY_NONE);
	ok = "HTTP/1.1 204\r\nContent-Length: 5\r\n\r\n";
	assert_int_equal(http__parse_response(ok, strlen(ok), 16384, false, &head), HTTP_PARSE_OK);
	assert_int_equal(head.status, 204);
	assert_int_equal(head.body, HTTP_BODY_NONE);
	ok = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
	assert_int_equal(http__parse_response(ok, strlen(ok), 16384, false, &head), HTTP_PARSE_OK);
	assert_int_equal(head.body, HTTP_BODY_CHUNKED);
	ok = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
	assert_int_equal(http__parse_response(ok, strlen(ok), 16384, false, &head),
			 HTTP_PARSE_ERROR);
	ok = "HTTP/1.1 2000 OK\r\n\r\n";
	assert_int_equal(http__parse_response(ok, strlen(ok), 16384, false, &head),
			 HTTP_PARSE_ERROR);
	ok = "ICY 200 OK\r\n\r\n";
	assert_int_equal(http__parse_response(ok, strlen(ok), 16384, false, &head),
			 HTTP_PARSE_ERROR);
}

static ssize_t feed_all(const char *body, bool *done)
{
	struct http_chunked chunked;

	http__chunked_init(&chunked);
	return http__chunked_feed(&chunked, body, strlen(body), done);
}

static void test_chunked(void **state)
{
	const char *good = "5\r\nhello\r\nA;ext=1\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nNEXT";
	struct http_chunked chunked;
	bool done;
	ssize_t total = 0;

	(void)state;
	assert_int_equal(feed_all(good, &done), (ssize_t)strlen(good) - 4);
	assert_true(done);
	/* byte by byte gives the same end */
	http__chunked_init(&chunked);
	for (size_t i = 0; i < strlen(good) && !done; i++) {
		ssize_t n = http__chunked_feed(&chunked, good + i, 1, &done);

		assert_true(n >= 0);
		total += n;
		if (i + 1 < strlen(good) - 4)
			assert_false(done);
	}
	done = false;
	(void)total;
	static const char *const bad[] = {
	    "zz\r\nhello\r\n0\r\n\r\n", /* not hex */
	    "\r\n",			/* no digits */
	    "5 \r\nhello\r\n0\r\n\r\n", /* space after the size */
	    "-5\r\nhello\r\n0\r\n\r\n", /* sign */
	    "5\nhello\r\n0\r\n\r\n",	/* bare LF */
	    "5\r\nhelloXX0\r\n\r\n",	/* no CRLF after data */
	    "10000000000000000\r\n",	/* 17 digits: overflow */
	    "0\r\n folded: x\r\n\r\n",	/* a trailer starting with SP */
	    NULL,
	};
	for (int i = 0; bad[i]; i++) {
		if (feed_all(bad[i], &done) != -1)
			fprintf(stderr, "accepted chunked #%d\n", i);
		assert_int_equal(feed_all(bad[i], &done), -1);
	}
}

static void test_host_parsing(void **state)
{
	struct route_target t;

	(void)state;
	assert_int_equal(route__parse_host("8080-iabc123xyz.warren.test", 27, "warren.test", &t),
			 ROUTE_OK);
	assert_int_equal(t.port, 8080);
	assert_string_equal(t.sandbox_id, "iabc123xyz");
	/* case-insensitive, trailing dot, listen port */
	assert_int_equal(route__parse_host("49983-IABC.Warren.Test.:3002", 28, "warren.test", &t),
			 ROUTE_OK);
	assert_int_equal(t.port, 49983);
	assert_string_equal(t.sandbox_id, "iabc");
	assert_int_equal(route__parse_host("1-a.warren.test", 15, "warren.test", &t), ROUTE_OK);
	assert_int_equal(route__parse_host("65535-a.warren.test", 19, "warren.test", &t), ROUTE_OK);
	static const char *const bad[] = {
	    "0-abc.warren.test",     "65536-abc.warren.test",  "08080-abc.warren.test",
	    "8080abc.warren.test",   "-abc.warren.test",       "8080-.warren.test",
	    "8080-ab_c.warren.test", "x.8080-abc.warren.test", "8080-abc.warren.test:x",
	    "8080-a-b.warren.test",  "123456-abc.warren.test", NULL,
	};
	for (int i = 0; bad[i]; i++) {
		if (route__parse_host(bad[i], strlen(bad[i]), "warren.test", &t) != ROUTE_BAD_HOST)
			fprintf(stderr, "accepted host %s\n", bad[i]);
		assert_int_equal(route__parse_host(bad[i], strlen(bad[i]), "warren.test", &t),
				 ROUTE_BAD_HOST);
	}
	static const char *const other[] = {
	    "localhost",   "localhost:3002", "127.0.0.1:3002",	      "[::1]:3002",
	    "example.com", "warren.test",    "8080-abc.warren.testx", NULL};
	for (int i = 0; other[i]; i++)
		assert_int_equal(route__parse_host(other[i], strlen(other[i]), "warren.test", &t),
				 ROUTE_NOT_UNDER_DOMAIN);
}

static void test_header_routing(void **state)
{
	struct route_target t;
	const char *error = NULL;
	const char *r = "GET / HTTP/1.1\r\nHost: localhost:3002\r\nE2b-Sandbox-Id: IABC\r\n"
			"E2b-Sandbox-Port: 8080\r\n\r\n";

	(void)state;
	assert_int_equal(parse(r), HTTP_PARSE_OK);
	assert_true(route__request(&head, "warren.test", &t, &error));
	assert_string_equal(t.sandbox_id, "iabc");
	assert_int_equal(t.port, 8080);
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost: localhost\r\nE2b-Sandbox-Id: a\r\n"
			       "E2b-Sandbox-Port: 65536\r\n\r\n"),
			 HTTP_PARSE_OK);
	assert_false(route__request(&head, "warren.test", &t, &error));
	assert_non_null(error);
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost: 0-a.warren.test\r\nE2b-Sandbox-Id: a\r\n"
			       "E2b-Sandbox-Port: 80\r\n\r\n"),
			 HTTP_PARSE_OK);
	assert_false(route__request(&head, "warren.test", &t, &error)); /* a bad Host wins */
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"), HTTP_PARSE_OK);
	assert_false(route__request(&head, "warren.test", &t, &error));
}

static void test_mask(void **state)
{
	char out[64];

	(void)state;
	assert_true(route__mask_host("localhost:${PORT}", 8080, out, sizeof(out)));
	assert_string_equal(out, "localhost:8080");
	assert_true(route__mask_host("${PORT}.${PORT}.example", 3, out, sizeof(out)));
	assert_string_equal(out, "3.3.example");
	assert_true(route__mask_host("fixed.example", 3, out, sizeof(out)));
	assert_string_equal(out, "fixed.example");
	assert_true(route__mask_host("a${PORT", 3, out, sizeof(out)));
	assert_string_equal(out, "a${PORT");
	assert_false(route__mask_host("bad\r\nX-Injected: 1", 3, out, sizeof(out)));
	assert_false(route__mask_host("has space", 3, out, sizeof(out)));
	assert_false(route__mask_host("", 3, out, sizeof(out)));
	assert_false(route__mask_host("${PORT}${PORT}${PORT}", 65535, out, 8));
}

/* The body after the head of a rendered response, parsed as JSON. */
static json_t *render_json(const struct route_error *error, int *status)
{
	char response[4096];
	size_t len = route__render_error(error, false, true, response, sizeof(response));
	char *body;

	assert_true(len > 0);
	assert_int_equal(http__parse_response(response, len, 16384, false, &head), HTTP_PARSE_OK);
	*status = head.status;
	assert_int_equal(head.body, HTTP_BODY_LENGTH);
	assert_int_equal(head.content_length, len - head.head_len);
	body = response + head.head_len;
	return json_loadb(body, len - head.head_len, 0, NULL);
}

static void test_error_bodies(void **state)
{
	struct route_error e = {.kind = ROUTE_ERR_NOT_FOUND, .sandbox_id = "iabc", .port = 8080};
	char response[4096];
	json_t *json;
	int status;

	(void)state;
	json = render_json(&e, &status);
	assert_int_equal(status, 502);
	assert_string_equal(json_string_value(json_object_get(json, "sandboxId")), "iabc");
	assert_string_equal(json_string_value(json_object_get(json, "message")),
			    "The sandbox was not found");
	assert_int_equal(json_integer_value(json_object_get(json, "code")), 502);
	assert_int_equal(json_object_size(json), 3);
	json_decref(json);

	e.kind = ROUTE_ERR_PORT_CLOSED;
	json = render_json(&e, &status);
	assert_int_equal(status, 502);
	assert_string_equal(json_string_value(json_object_get(json, "message")),
			    "The sandbox is running but port is not open");
	assert_int_equal(json_integer_value(json_object_get(json, "port")), 8080);
	assert_int_equal(json_object_size(json), 4);
	json_decref(json);

	e.kind = ROUTE_ERR_TOKEN_MISSING;
	json = render_json(&e, &status);
	assert_int_equal(status, 403);
	assert_string_equal(json_string_value(json_object_get(json, "message")),
			    "Sandbox is secured with traffic access token. Token header "
			    "'e2b-traffic-access-token' is missing");
	json_decref(json);
	e.kind = ROUTE_ERR_TOKEN_INVALID;
	json = render_json(&e, &status);
	assert_string_equal(json_string_value(json_object_get(json, "message")),
			    "Sandbox is secured with traffic access token. Provided token in "
			    "header 'e2b-traffic-access-token' is invalid");
	json_decref(json);

	e = (struct route_error){.kind = ROUTE_ERR_BAD_REQUEST, .message = "bad \"quote\""};
	json = render_json(&e, &status);
	assert_int_equal(status, 400);
	assert_string_equal(json_string_value(json_object_get(json, "message")), "bad \"quote\"");
	json_decref(json);

	e = (struct route_error){.kind = ROUTE_ERR_RATE_LIMITED,
				 .limit = 10,
				 .remaining = 0,
				 .reset_s = 60,
				 .retry_after_s = 6};
	assert_true(route__render_error(&e, false, false, response, sizeof(response)) > 0);
	assert_non_null(strstr(response, "HTTP/1.1 429 "));
	assert_non_null(strstr(response, "\r\nRateLimit-Limit: 10\r\n"));
	assert_non_null(strstr(response, "\r\nRateLimit-Remaining: 0\r\n"));
	assert_non_null(strstr(response, "\r\nRateLimit-Reset: 60\r\n"));
	assert_non_null(strstr(response, "\r\nRetry-After: 6\r\n"));
	assert_non_null(strstr(response, "\r\nConnection: close\r\n"));

	/* HTML escapes what it shows */
	e = (struct route_error){.kind = ROUTE_ERR_BAD_REQUEST, .message = "<script>"};
	assert_true(route__render_error(&e, true, true, response, sizeof(response)) > 0);
	assert_non_null(strstr(response, "Content-Type: text/html"));
	assert_non_null(strstr(response, "&lt;script&gt;"));
	assert_null(strstr(response, "<script>"));
}

static void test_wants_html(void **state)
{
	(void)state;
	assert_int_equal(
	    parse("GET / HTTP/1.1\r\nHost: h\r\nAccept: text/html,application/xhtml+xml"
		  "\r\n\r\n"),
	    HTTP_PARSE_OK);
	assert_true(route__wants_html(&head));
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h\r\nAccept: application/json\r\n\r\n"),
			 HTTP_PARSE_OK);
	assert_false(route__wants_html(&head));
}

static int64_t fake_now(void *ctx)
{
	return *(int64_t *)ctx;
}

/* The in-process limiter (no pg_url): lib/ratelimit's local GCRA. */
static void test_limiter(void **state)
{
	int64_t now = 1000000000;
	struct limiter_config config = {
	    .limit = 10, .window_s = 60, .monotonic_us = fake_now, .clock_ctx = &now};
	struct limiter *limiter = limiter__create(&config);
	struct ratelimit_decision d;
	int64_t start = now;

	(void)state;
	assert_non_null(limiter);
	for (int i = 0; i < 10; i++) {
		limiter__check(limiter, "10.0.0.1", &d);
		assert_true(d.allowed);
		assert_int_equal(d.limit, 10);
		assert_int_equal(d.remaining, 9 - i);
	}
	limiter__check(limiter, "10.0.0.1", &d);
	assert_false(d.allowed);
	assert_int_equal(d.remaining, 0);
	assert_int_equal(d.retry_after_s, 6); /* one cell every 6 s */
	assert_int_equal(d.reset_s, 60);
	/* another IP is independent */
	limiter__check(limiter, "10.0.0.2", &d);
	assert_true(d.allowed);
	/* one cell comes back after 6 s, not two */
	now = start + 6000000;
	limiter__check(limiter, "10.0.0.1", &d);
	assert_true(d.allowed);
	limiter__check(limiter, "10.0.0.1", &d);
	assert_false(d.allowed);
	/* the whole quota after the window */
	now = start + 200000000;
	for (int i = 0; i < 10; i++) {
		limiter__check(limiter, "10.0.0.1", &d);
		assert_true(d.allowed);
	}
	limiter__destroy(limiter);
	config.limit = 0;
	assert_null(limiter__create(&config));
	config.limit = 10;
	config.window_s = 0;
	assert_null(limiter__create(&config));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_simple),
	    cmocka_unit_test(test_parse_framing),
	    cmocka_unit_test(test_parse_smuggling),
	    cmocka_unit_test(test_parse_too_large),
	    cmocka_unit_test(test_parse_response),
	    cmocka_unit_test(test_chunked),
	    cmocka_unit_test(test_host_parsing),
	    cmocka_unit_test(test_header_routing),
	    cmocka_unit_test(test_mask),
	    cmocka_unit_test(test_error_bodies),
	    cmocka_unit_test(test_wants_html),
	    cmocka_unit_test(test_limiter),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests of lib/prom: the exposition text of counters, gauges and
 * histograms with labels, label escaping, misuse ignored, and the
 * /metrics listener over a real socket. The same text is parsed by the
 * official Python client's parser in tests/e2e/test_surface.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "warren/prom.h"

static int collected;

static void collect(void *arg)
{
	collected++;
	prom__gauge_set("test_live", "Live things", (const char *)arg, collected);
}

static void test_render(void **state)
{
	char escaped[64];
	char *text;

	(void)state;
	prom__reset();
	prom__counter_add("test_requests_total", "Requests", "code=\"200\"", 2);
	prom__counter_add("test_requests_total", NULL, "code=\"200\"", 1);
	prom__counter_add("test_requests_total", NULL, "code=\"404\"", 1);
	prom__counter_add("test_requests_total", NULL, "code=\"500\"", -1); /* refused */
	prom__gauge_set("test_requests_total", NULL, NULL, 5); /* other type: ignored */
	prom__histogram_observe("test_seconds", "Durations", "op=\"a\"", 0.003);
	prom__histogram_observe("test_seconds", NULL, "op=\"a\"", 2);
	prom__histogram_observe("test_seconds", NULL, "op=\"a\"", 100);
	prom__add_collector(collect, "kind=\"x\"");
	text = prom__render();
	assert_non_null(text);
	assert_int_equal(collected, 1);
	assert_non_null(strstr(
	    text, "# HELP test_requests_total Requests\n# TYPE test_requests_total counter\n"));
	assert_non_null(strstr(text, "test_requests_total{code=\"200\"} 3\n"));
	assert_non_null(strstr(text, "test_requests_total{code=\"404\"} 1\n"));
	assert_null(strstr(text, "code=\"500\""));
	assert_non_null(strstr(text, "# TYPE test_seconds histogram\n"));
	assert_non_null(strstr(text, "test_seconds_bucket{op=\"a\",le=\"0.001\"} 0\n"));
	assert_non_null(strstr(text, "test_seconds_bucket{op=\"a\",le=\"0.005\"} 1\n"));
	assert_non_null(strstr(text, "test_seconds_bucket{op=\"a\",le=\"2.5\"} 2\n"));
	assert_non_null(strstr(text, "test_seconds_bucket{op=\"a\",le=\"+Inf\"} 3\n"));
	assert_non_null(strstr(text, "test_seconds_count{op=\"a\"} 3\n"));
	assert_non_null(strstr(text, "test_seconds_sum{op=\"a\"} 102.003\n"));
	assert_non_null(strstr(text, "test_live{kind=\"x\"} 1\n"));
	free(text);

	prom__label_value("a\"b\\c\nd", escaped, sizeof(escaped));
	assert_string_equal(escaped, "a\\\"b\\\\c\\nd");
	prom__label_value("abcdefgh", escaped, 5);
	assert_string_equal(escaped, "abc");
	prom__reset();
	text = prom__render();
	assert_string_equal(text, "");
	free(text);
}

static void test_listener(void **state)
{
	struct sockaddr_in address = {.sin_family = AF_INET};
	char err[128], response[4096];
	uint16_t port = 0;
	ssize_t got, total = 0;
	int fd;

	(void)state;
	prom__reset();
	prom__counter_add("test_hits_total", "Hits", NULL, 7);
	assert_int_equal(prom__serve("127.0.0.1:0", &port, err, sizeof(err)), 0);
	assert_true(port > 0);
	assert_int_not_equal(prom__serve("not an address", NULL, err, sizeof(err)), 0);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	address.sin_port = htons(port);
	inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
	assert_int_equal(connect(fd, (struct sockaddr *)&address, sizeof(address)), 0);
	assert_true(write(fd, "GET /metrics HTTP/1.0\r\n\r\n", 25) == 25);
	while ((got = read(fd, response + total, sizeof(response) - 1 - (size_t)total)) > 0)
		total += got;
	response[total] = '\0';
	close(fd);
	assert_non_null(strstr(response, "200 OK"));
	assert_non_null(strstr(response, "text/plain; version=0.0.4"));
	assert_non_null(strstr(response, "test_hits_total 7\n"));
	prom__stop();
	prom__stop(); /* idempotent */
	prom__reset();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_render),
	    cmocka_unit_test(test_listener),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

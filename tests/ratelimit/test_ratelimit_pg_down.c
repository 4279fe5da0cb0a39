/* The PostgreSQL backend (storage_ratelimit__open_limiter) with no server
 * behind its URL (label unit ratelimit; needs no PostgreSQL): open fails
 * unless connect_later, and then every decision is still made at once,
 * failing open (take) or on the local GCRA (take_nowait), with the
 * failures counted (docs/ratelimit.md, "PostgreSQL down", "Connections"). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "warren/clock.h"
#include "warren/ratelimit.h"
#include "warren/storage_ratelimit.h"

static char url[128];

/* A loopback port nobody listens on (bound, then closed): connects are
 * refused at once. */
static int group_setup(void **state)
{
	struct sockaddr_in address = {.sin_family = AF_INET};
	socklen_t len = sizeof(address);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	(void)state;
	address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&address, sizeof(address)) ||
	    getsockname(fd, (struct sockaddr *)&address, &len))
		return -1;
	close(fd);
	snprintf(url, sizeof(url), "postgresql://postgres@127.0.0.1:%u/postgres",
		 ntohs(address.sin_port));
	return 0;
}

static void test_open_needs_server_unless_connect_later(void **state)
{
	struct ratelimit_options later = {.connect_later = true};
	struct ratelimit *limiter;

	(void)state;
	assert_null(storage_ratelimit__open_limiter(url, NULL));
	limiter = storage_ratelimit__open_limiter(url, &later);
	assert_non_null(limiter);
	ratelimit__close(limiter);
}

static void test_take_fails_open(void **state)
{
	struct ratelimit_options later = {.connect_later = true};
	struct ratelimit *limiter = storage_ratelimit__open_limiter(url, &later);
	struct ratelimit_decision decision;
	struct ratelimit_stats stats;

	(void)state;
	assert_non_null(limiter);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(ratelimit__take(limiter, "down:take", 10, 1000, 10, &decision),
				 -1);
		assert_true(decision.allowed);
	}
	ratelimit__stats(limiter, &stats);
	assert_true(stats.backend_errors >= 1);
	ratelimit__close(limiter);
}

/* take_nowait never calls the backend on the caller's thread: with the
 * backend failing, the local GCRA decides (burst 3: a 4th is refused). */
static void test_take_nowait_decides_locally(void **state)
{
	struct ratelimit_options later = {.connect_later = true};
	struct ratelimit *limiter = storage_ratelimit__open_limiter(url, &later);
	struct ratelimit_decision decision;
	struct ratelimit_stats stats;
	bool fallback = false;
	int allowed = 0;

	(void)state;
	assert_non_null(limiter);
	/* let the background thread's first lease fail */
	for (int i = 0; i < 200 && (ratelimit__stats(limiter, &stats), !stats.backend_errors);
	     i++) {
		ratelimit__take_nowait(limiter, "down:warm", 3, 60000, 3, &decision);
		usleep(10000);
	}
	assert_true(stats.backend_errors >= 1);
	/* Within a second of a failed lease every key decides on the local
	 * GCRA; a stalled machine may miss that second, so a fresh key tries
	 * again (each sees at most its burst in any case). */
	for (int attempt = 0; attempt < 20 && !fallback; attempt++) {
		char key[32];
		int64_t before;

		snprintf(key, sizeof(key), "down:nowait:%d", attempt);
		ratelimit__stats(limiter, &stats);
		before = stats.decisions_fallback;
		allowed = 0;
		for (int i = 0; i < 4; i++) {
			ratelimit__take_nowait(limiter, key, 3, 60000, 3, &decision);
			allowed += decision.allowed;
		}
		ratelimit__stats(limiter, &stats);
		fallback = stats.decisions_fallback > before;
		assert_true(allowed <= 3);
		if (!fallback)
			usleep(50000);
	}
	assert_true(fallback);
	assert_true(allowed >= 1); /* the 4th was refused (<= 3, above) */
	ratelimit__close(limiter);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_open_needs_server_unless_connect_later),
	    cmocka_unit_test(test_take_fails_open),
	    cmocka_unit_test(test_take_nowait_decides_locally),
	};

	return cmocka_run_group_tests(tests, group_setup, NULL);
}

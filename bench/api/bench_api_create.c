/* bench_api_create: create latency and rate through warren-api + Kafka +
 * the in-test fake worker (tests/api/api_test_support.c), on a throwaway
 * database and topics of the dev stack. Measures the API's share of the
 * pipeline (no runtime start: the fake worker answers at once).
 *
 *   eval "$(scripts/dev-stack env)"
 *   WARREN_SOURCE_DIR=$PWD WARREN_BUILD_DIR=$PWD/build build/bin/bench_api_create [count]
 * [concurrency...]
 *
 * Prints, per concurrency level, p50/p99/max latency and creates/s. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_test_support.h"
#include "warren/clock.h"

#include "../samples.h"

static struct test_api api;
static char key[45];
static double *latency_ms;
static atomic_int next_index, failures;
static int total;

static void *bench__client(void *arg)
{
	(void)arg;
	for (;;) {
		int i = atomic_fetch_add(&next_index, 1);
		struct http_response response;
		uint64_t start;

		if (i >= total)
			return NULL;
		start = clock__monotonic_ns();
		if (!http__request(api.port, "POST", "/sandboxes", key,
				   "{\"templateID\":\"base\",\"timeout\":60}", NULL, &response) ||
		    response.status != 201) {
			if (atomic_fetch_add(&failures, 1) < 3)
				fprintf(stderr, "create %d: %ld %s\n", i, response.status,
					response.body ? response.body : "");
		}
		latency_ms[i] = (double)(clock__monotonic_ns() - start) / 1e6;
		http__response_free(&response);
	}
}

int main(int argc, char **argv)
{
	static const char *const env[] = {"WARREN_API_THREADS=8", "WARREN_PG_POOL_SIZE=8", NULL};
	int default_levels[] = {1, 8, 32};
	struct test_stack stack;
	struct storage_team team;
	int rc = 1;

	total = argc > 1 ? atoi(argv[1]) : 200;
	if (total < 1 || total > 100000) {
		fprintf(stderr, "usage: bench_api_create [count] [concurrency...]\n");
		return 2;
	}
	latency_ms = calloc((size_t)total, sizeof(*latency_ms));
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (!latency_ms || !test_stack__up(&stack, "apibench"))
		return 1;
	if (!test_stack__team(&stack, "bench", "enterprise", &team, key) ||
	    storage__team_set_limit(stack.pool, team.id, "creation_rate_per_s", 1000000, &team,
				    NULL) ||
	    storage__team_set_limit(stack.pool, team.id, "concurrent_sandboxes", 1000000, &team,
				    NULL) ||
	    !test_api__start(&api, &stack, NULL, env))
		goto out;
	{
		/* Warm-up: the fake worker's group join and the first connections. */
		struct http_response response;

		for (int i = 0; i < 5; i++) {
			http__request(api.port, "POST", "/sandboxes", key,
				      "{\"templateID\":\"base\"}", NULL, &response);
			http__response_free(&response);
		}
	}
	for (int level = 0; level < (argc > 2 ? argc - 2 : 3); level++) {
		int concurrency = argc > 2 ? atoi(argv[2 + level]) : default_levels[level];
		pthread_t threads[256];
		uint64_t start;
		double seconds;

		if (concurrency < 1 || concurrency > 256)
			continue;
		atomic_store(&next_index, 0);
		atomic_store(&failures, 0);
		start = clock__monotonic_ns();
		for (int t = 0; t < concurrency; t++)
			pthread_create(&threads[t], NULL, bench__client, NULL);
		for (int t = 0; t < concurrency; t++)
			pthread_join(threads[t], NULL);
		seconds = (double)(clock__monotonic_ns() - start) / 1e9;
		qsort(latency_ms, (size_t)total, sizeof(*latency_ms), samples__compare_double);
		printf("creates=%d concurrency=%d: p50 %.2f ms, p99 %.2f ms, max %.2f ms, %.0f "
		       "creates/s, %d failed\n",
		       total, concurrency, latency_ms[total / 2], latency_ms[total * 99 / 100],
		       latency_ms[total - 1], total / seconds, atomic_load(&failures));
		fflush(stdout);
	}
	rc = 0;
out:
	if (test_api__stop(&api))
		rc = 1;
	test_stack__down(&stack);
	curl_global_cleanup();
	free(latency_ms);
	return rc;
}

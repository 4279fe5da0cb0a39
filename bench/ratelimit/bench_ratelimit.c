/* bench_ratelimit: decisions per second of one limiter instance and
 * PostgreSQL writes per decision, leased (warren's design) vs naive (one
 * UPDATE per request), in the same run, against the dev-stack PostgreSQL
 * (WARREN_PG_URL) on a throwaway database. Both designs are exact GCRAs
 * (zero over-admission beyond the burst); each run checks the admitted
 * count against that bound and prints it.
 *
 * Usage: bench_ratelimit [seconds per run = 3] [threads = 4]
 * Scenarios: "lifecycle" (20,000 per 30 s, burst 20,000: the hobby/pro
 * lifecycle limit hammered past its rate), "high" (1,000,000 per 1 s,
 * burst 100,000, hammered: mostly admitted) and "paced" (100,000 per 1 s,
 * burst 100,000; each thread offers 5,000 decisions/s, below the limit:
 * decisions/s is the offered load unless PostgreSQL caps it). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storage_test_db.h"
#include "warren/ratelimit.h"
#include "warren/storage_ratelimit.h"
#include "warren/storage.h"

struct scenario {
	const char *name;
	int64_t count, window_ms, burst;
	int64_t per_thread_rate; /* decisions/s each thread offers; 0: as fast as it can */
};

struct run {
	struct ratelimit *limiter;
	const struct scenario *scenario;
	char key[64];
	int64_t deadline_ns;
};

static int64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void *hammer(void *arg)
{
	struct run *run = arg;
	struct ratelimit_decision decision;

	int64_t next = now_ns(), gap_ns = run->scenario->per_thread_rate
					      ? 1000000000 / run->scenario->per_thread_rate
					      : 0;

	while (now_ns() < run->deadline_ns) {
		if (gap_ns) {
			struct timespec until = {next / 1000000000, next % 1000000000};

			clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL);
			next += gap_ns;
			ratelimit__take(run->limiter, run->key, run->scenario->count,
					run->scenario->window_ms, run->scenario->burst, &decision);
			continue;
		}
		for (int i = 0; i < 64; i++)
			ratelimit__take(run->limiter, run->key, run->scenario->count,
					run->scenario->window_ms, run->scenario->burst, &decision);
	}
	return NULL;
}

static int run_one(const char *url, const struct scenario *scenario, bool naive, double seconds,
		   int threads, int *violations)
{
	struct ratelimit_options options = {.naive = naive, .connections = 2};
	struct ratelimit_stats stats;
	struct run run = {.scenario = scenario};
	pthread_t ids[64];
	int64_t start, elapsed_ns, interval_us, bound;

	run.limiter = storage_ratelimit__open_limiter(url, &options);
	if (!run.limiter)
		return -1;
	snprintf(run.key, sizeof(run.key), "bench:%s:%s", scenario->name,
		 naive ? "naive" : "leased");
	start = now_ns();
	run.deadline_ns = start + (int64_t)(seconds * 1e9);
	for (int i = 0; i < threads; i++)
		pthread_create(&ids[i], NULL, hammer, &run);
	for (int i = 0; i < threads; i++)
		pthread_join(ids[i], NULL);
	elapsed_ns = now_ns() - start;
	ratelimit__stats(run.limiter, &stats);
	ratelimit__close(run.limiter);
	interval_us = scenario->window_ms * 1000 / scenario->count;
	/* Admissions happen within the run (plus one round trip at each end,
	 * counted generously as 100 ms): slots in [start, end + tau]. */
	bound = (elapsed_ns / 1000 + 100000) / interval_us + scenario->burst;
	if (stats.allowed > bound)
		(*violations)++;
	printf("%-9s %-6s decisions/s %10.0f  allowed %8lld (bound %lld)  denied %9lld  "
	       "PG writes %7lld  writes/decision %.5f  tokens expired %lld\n",
	       scenario->name, naive ? "naive" : "leased", stats.decisions / (elapsed_ns / 1e9),
	       (long long)stats.allowed, (long long)bound, (long long)stats.denied,
	       (long long)stats.backend_leases,
	       stats.decisions ? (double)stats.backend_leases / (double)stats.decisions : 0.0,
	       (long long)stats.tokens_expired);
	return (int)(stats.decisions / (elapsed_ns / 1e9));
}

int main(int argc, char **argv)
{
	static const struct scenario scenarios[] = {
	    {"lifecycle", 20000, 30000, 20000, 0},
	    {"high", 1000000, 1000, 100000, 0},
	    {"paced", 100000, 1000, 100000, 5000},
	};
	double seconds = argc > 1 ? atof(argv[1]) : 3.0;
	int threads = argc > 2 ? atoi(argv[2]) : 4, violations = 0, rc = 1, applied;
	struct storage_error err;
	struct test_db db;

	if (seconds <= 0 || threads < 1 || threads > 64) {
		fprintf(stderr, "usage: bench_ratelimit [seconds] [threads 1..64]\n");
		return 2;
	}
	if (!test_db__server_url() || !test_db__create(&db, "bench_ratelimit"))
		return 1;
	if (storage__migrate(db.url, test_db__migrations_dir(), &applied, &err)) {
		fprintf(stderr, "migrate: %s\n", err.message);
		goto out;
	}
	printf("bench_ratelimit: %.1f s per run, %d threads, one key, one instance\n", seconds,
	       threads);
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
		int leased = run_one(db.url, &scenarios[i], false, seconds, threads, &violations);
		int naive = run_one(db.url, &scenarios[i], true, seconds, threads, &violations);

		if (leased < 0 || naive < 0)
			goto out;
		printf("%-9s ratio leased/naive decisions/s: %.1fx\n", scenarios[i].name,
		       naive ? (double)leased / naive : 0.0);
	}
	printf("over-admission bound violations: %d\n", violations);
	rc = violations ? 1 : 0;
out:
	test_db__drop(&db);
	return rc;
}

/* ratelimit unit tests (label unit ratelimit): the leased GCRA over the
 * memory backend with injected clocks (docs/ratelimit.md): window edges,
 * burst, refill, clock jumps, lease sizing, give-back, two instances and a
 * crash, limit changes, batched rejection counts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "warren/ratelimit.h"

/* One fake clock drives both the local monotonic clock and the backend's
 * "server" clock, unless a test moves server_offset (a server clock jump). */
struct fake_clock {
	int64_t local_us;
	int64_t server_offset_us;
};

static int64_t fake_local(void *ctx)
{
	return ((struct fake_clock *)ctx)->local_us;
}

static int64_t fake_server(void *ctx)
{
	struct fake_clock *clock = ctx;

	return clock->local_us + clock->server_offset_us;
}

/* A recording wrapper around the memory backend. */
struct recorder {
	struct ratelimit_backend inner;
	int leases;
	int rejection_calls;
	int64_t rejections;
};

static int rec_lease(void *ctx, const char *key, int64_t want, int64_t interval_us, int64_t tau_us,
		     int64_t lead_us, struct ratelimit_grant *out)
{
	struct recorder *r = ctx;

	r->leases++;
	return r->inner.lease(r->inner.ctx, key, want, interval_us, tau_us, lead_us, out);
}

static int rec_give_back(void *ctx, const char *key, int64_t count, int64_t interval_us,
			 int64_t tat_us, bool *returned)
{
	struct recorder *r = ctx;

	return r->inner.give_back(r->inner.ctx, key, count, interval_us, tat_us, returned);
}

static int rec_rejections(void *ctx, const char *team_id, const char *limit_name, int64_t count)
{
	struct recorder *r = ctx;

	(void)team_id;
	(void)limit_name;
	r->rejection_calls++;
	r->rejections += count;
	return 0;
}

static void rec_close(void *ctx)
{
	(void)ctx; /* the test frees the inner backend */
}

struct fixture {
	struct fake_clock clock;
	struct recorder recorder;
	struct ratelimit *a, *b;
};

static struct ratelimit *open_on(struct fixture *f, int64_t lease_divisor)
{
	struct ratelimit_backend backend = {rec_lease, rec_give_back, rec_rejections, rec_close,
					    &f->recorder};
	struct ratelimit_options options = {
	    .lease_divisor = lease_divisor, .monotonic_us = fake_local, .clock_ctx = &f->clock};

	return ratelimit__open_backend(&backend, &options);
}

static int setup(void **state)
{
	static struct fixture f;

	memset(&f, 0, sizeof(f));
	f.clock.local_us = 1000000000; /* 1000 s: any origin works */
	assert_int_equal(ratelimit__memory_backend(fake_server, &f.clock, &f.recorder.inner), 0);
	f.a = open_on(&f, 20);
	f.b = open_on(&f, 20);
	assert_non_null(f.a);
	assert_non_null(f.b);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	ratelimit__close(f->a);
	ratelimit__close(f->b);
	ratelimit__memory_backend_free(&f->recorder.inner);
	return 0;
}

/* 10 per second (T = 100 ms), burst 3: the exact GCRA (cap 1, no lead). */
static bool take10(struct ratelimit *limiter, struct ratelimit_decision *d)
{
	assert_int_equal(ratelimit__take(limiter, "k", 10, 1000, 3, d), 0);
	return d->allowed;
}

static void test_burst_edges_refill(void **state)
{
	struct fixture *f = *state;
	struct ratelimit_decision d;

	assert_true(take10(f->a, &d));
	assert_int_equal(d.limit, 10);
	assert_int_equal(d.remaining, 2);
	assert_true(take10(f->a, &d));
	assert_true(take10(f->a, &d));
	assert_int_equal(d.remaining, 0);
	/* The burst is spent: tat = t0 + 300 ms, tau = 200 ms. */
	assert_false(take10(f->a, &d));
	assert_int_equal(d.remaining, 0);
	assert_int_equal(d.retry_after_s, 1);
	assert_int_equal(d.reset_s, 1);
	/* One microsecond before the edge: still refused. */
	f->clock.local_us += 99999;
	assert_false(take10(f->a, &d));
	/* Exactly at the edge (tat - tau == now): conforming, one only. */
	f->clock.local_us += 1;
	assert_true(take10(f->a, &d));
	assert_false(take10(f->a, &d));
	/* Refill: after a long idle period, exactly the burst again. */
	f->clock.local_us += 10000000;
	assert_true(take10(f->a, &d));
	assert_true(take10(f->a, &d));
	assert_true(take10(f->a, &d));
	assert_false(take10(f->a, &d));
	/* Steady state: one per interval. */
	for (int i = 0; i < 20; i++) {
		f->clock.local_us += 100000;
		assert_true(take10(f->a, &d));
		assert_false(take10(f->a, &d));
	}
}

static void test_clock_jumps(void **state)
{
	struct fixture *f = *state;
	struct ratelimit_decision d;

	for (int i = 0; i < 3; i++)
		assert_true(take10(f->a, &d));
	assert_false(take10(f->a, &d));
	/* The server's clock jumps forward one hour: the state refills to the
	 * burst, never more (same as idling). */
	f->clock.server_offset_us += 3600LL * 1000000;
	f->clock.local_us += 100000; /* past the local denial hint */
	for (int i = 0; i < 3; i++)
		assert_true(take10(f->a, &d));
	assert_false(take10(f->a, &d));
	/* It jumps back two hours: the stored tat is far ahead, so requests are
	 * refused (under-admission) until the clock catches up, never admitted. */
	f->clock.server_offset_us -= 2 * 3600LL * 1000000;
	f->clock.local_us += 10000000;
	assert_false(take10(f->a, &d));
	assert_true(d.retry_after_s >= 2 * 3600 - 20);
	/* A second instance sees the same state, until the clock catches up. */
	assert_false(take10(f->b, &d));
	f->clock.local_us += 3600LL * 1000000;
	assert_false(take10(f->b, &d));
	f->clock.local_us += 3600LL * 1000000;
	assert_true(take10(f->b, &d));
}

/* 1000 per second (T = 1 ms), burst 1000, cap 50: leases grow 1, 2, 4 ...
 * 50 while every token is spent; the lead costs at most cap tokens. */
static void test_lease_sizing(void **state)
{
	struct fixture *f = *state;
	struct ratelimit_decision d;
	struct ratelimit_stats stats;
	int allowed = 0;

	for (int i = 0; i < 2000; i++) {
		assert_int_equal(ratelimit__take(f->a, "lease", 1000, 1000, 1000, &d), 0);
		allowed += d.allowed;
	}
	ratelimit__stats(f->a, &stats);
	/* lead 50 ms: slots from now+50 ms to now+999 ms: 950 tokens. */
	assert_int_equal(allowed, 950);
	assert_true(allowed >= 1000 - 2 * 50);
	/* 1+2+4+8+16+32 = 63, then (950-63)/50 -> 18 leases of <= 50; the
	 * last one is partial, so the denial hint answers the rest locally. */
	assert_int_equal(stats.backend_leases, 6 + 18);
	assert_int_equal(f->recorder.leases, 6 + 18);
	assert_int_equal(stats.tokens_expired, 0);

	/* Slow demand (one request per 20 ms, T = 1 ms): leased slots pass
	 * unspent and the lease shrinks back instead of growing. */
	f->clock.local_us += 10000000;
	for (int i = 0; i < 200; i++) {
		f->clock.local_us += 20000;
		assert_int_equal(ratelimit__take(f->a, "lease", 1000, 1000, 1000, &d), 0);
		assert_true(d.allowed);
	}
	ratelimit__stats(f->a, &stats);
	assert_true(stats.tokens_expired > 0);
	/* Each lease serves the requests of its ~50 ms lead (2-3 at 20 ms). */
	assert_true(stats.backend_leases - 24 < 200 / 2);
}

/* Two instances and a crash over one shared state: admitted requests never
 * exceed the GCRA bound floor(span / T) + burst. */
static void test_two_instances_and_crash(void **state)
{
	struct fixture *f = *state;
	struct ratelimit_decision d;
	int64_t start = f->clock.local_us, allowed = 0, interval_us = 1000, burst = 200;

	for (int step = 0; step < 3000; step++) {
		struct ratelimit *limiter;

		if (step == 1500) {
			/* Instance a "crashes" holding a lease it never gives back. */
			ratelimit__abandon(f->a);
			f->a = open_on(f, 20);
		}
		limiter = step % 2 ? f->b : f->a;
		f->clock.local_us += step % 7 == 0 ? 3000 : 100;
		for (int i = 0; i < 3; i++) {
			assert_int_equal(ratelimit__take(limiter, "shared", 1000, 1000, burst, &d),
					 0);
			allowed += d.allowed;
		}
	}
	{
		int64_t span = f->clock.local_us - start;
		int64_t bound = span / interval_us + burst;

		assert_true(allowed <= bound);
		/* Under-admission is bounded too: the lead and both instances'
		 * leases (cap 10 each) cost at most 3 * 10 tokens of the burst,
		 * plus the expired slots of the crash. */
		assert_true(allowed >= bound - 3 * 10 - 10 - 2);
	}
}

static void test_give_back_and_limit_change(void **state)
{
	struct fixture *f = *state;
	struct ratelimit_decision d;
	struct ratelimit_stats stats;
	int allowed = 0;

	/* a takes a few tokens of a lease, then closes cleanly: the unspent
	 * tail goes back, so b gets the full remaining burst at once. */
	for (int i = 0; i < 8; i++)
		assert_int_equal(ratelimit__take(f->a, "gb", 100, 1000, 100, &d), 0);
	ratelimit__flush(f->a);
	ratelimit__stats(f->a, &stats);
	assert_true(stats.tokens_given_back > 0);
	for (int i = 0; i < 200; i++) {
		assert_int_equal(ratelimit__take(f->b, "gb", 100, 1000, 100, &d), 0);
		allowed += d.allowed;
	}
	/* 100 - 8 spent, minus the lead (cap 5): 87. */
	assert_int_equal(allowed, 100 - 8 - 5);

	/* An admin raises the limit: the next decision uses it, on the same
	 * state (tat ~ now + 1 s, new tau ~ 1 s): refused for a few ms, then
	 * admitted at the new rate. */
	assert_int_equal(ratelimit__take(f->b, "gb", 100000, 1000, 100000, &d), 0);
	assert_int_equal(d.limit, 100000);
	f->clock.local_us += 20000;
	allowed = 0;
	for (int i = 0; i < 100; i++) {
		assert_int_equal(ratelimit__take(f->b, "gb", 100000, 1000, 100000, &d), 0);
		allowed += d.allowed;
	}
	assert_int_equal(allowed, 100);
}

static void test_rejections_batched(void **state)
{
	struct fixture *f = *state;
	const char *team = "00000000-0000-4000-8000-000000000001";

	for (int i = 0; i < 500; i++)
		ratelimit__count_rejection(f->a, team, "lifecycle_requests");
	ratelimit__count_rejection(f->a, team, "creation_rate");
	assert_int_equal(f->recorder.rejection_calls, 0);
	/* A second later the next count flushes both rows in two statements. */
	f->clock.local_us += 1000000;
	ratelimit__count_rejection(f->a, team, "creation_rate");
	assert_int_equal(f->recorder.rejection_calls, 2);
	assert_int_equal(f->recorder.rejections, 502);
	/* A pending count is written by the next decision a second later. */
	ratelimit__count_rejection(f->a, team, "creation_rate");
	assert_int_equal(f->recorder.rejection_calls, 2);
	f->clock.local_us += 1000000;
	{
		struct ratelimit_decision d;

		assert_int_equal(ratelimit__take(f->a, "other", 10, 1000, 10, &d), 0);
	}
	assert_int_equal(f->recorder.rejection_calls, 3);
	assert_int_equal(f->recorder.rejections, 503);
	/* Hostile input is ignored, not crashed on. */
	ratelimit__count_rejection(f->a, NULL, "x");
	ratelimit__count_rejection(f->a, "0123456789012345678901234567890123456789", "x");
	ratelimit__flush(f->a);
	assert_int_equal(f->recorder.rejections, 503);
}

static void test_bad_input(void **state)
{
	struct fixture *f = *state;
	struct ratelimit_decision d;
	char long_key[300];

	memset(long_key, 'x', sizeof(long_key) - 1);
	long_key[sizeof(long_key) - 1] = '\0';
	/* Fail open on a caller bug, and say so. */
	assert_int_equal(ratelimit__take(f->a, long_key, 10, 1000, 1, &d), -1);
	assert_true(d.allowed);
	/* Nonsense limits are clamped, never divide by zero. */
	assert_int_equal(ratelimit__take(f->a, "z", 0, 0, 0, &d), 0);
	assert_true(d.allowed);
	assert_int_equal(d.limit, 1);
}

static int failing_lease(void *ctx, const char *key, int64_t want, int64_t interval_us,
			 int64_t tau_us, int64_t lead_us, struct ratelimit_grant *out)
{
	(void)ctx, (void)key, (void)want, (void)interval_us, (void)tau_us, (void)lead_us, (void)out;
	return -1;
}

/* PostgreSQL down: requests pass (fail open), each one counted. */
static void test_backend_down_fails_open(void **state)
{
	struct ratelimit_backend down = {failing_lease, NULL, NULL, NULL, NULL};
	struct ratelimit *limiter = ratelimit__open_backend(&down, NULL);
	struct ratelimit_decision d;
	struct ratelimit_stats stats;

	(void)state;
	assert_non_null(limiter);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(ratelimit__take(limiter, "k", 1, 1000, 1, &d), -1);
		assert_true(d.allowed);
	}
	ratelimit__stats(limiter, &stats);
	assert_int_equal(stats.backend_errors, 5);
	assert_int_equal(stats.allowed, 5);
	ratelimit__close(limiter);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_burst_edges_refill, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_clock_jumps, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lease_sizing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_two_instances_and_crash, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_give_back_and_limit_change, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rejections_batched, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
	    cmocka_unit_test(test_backend_down_fails_open),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

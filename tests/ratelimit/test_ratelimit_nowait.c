/* ratelimit__take_nowait unit tests (label unit ratelimit): the memory
 * backend behind a gate (its lease blocks until the test opens it) and an
 * injected clock shared by the limiters and the backend's "server"
 * (docs/ratelimit.md, "Non-blocking decisions"): the backend is never
 * called on the deciding thread and a blocked backend does not block a
 * decision; credit is paid by the next lease; two limiters hammering one
 * key stay within floor(D / T) + B + I c; a failing backend leaves each
 * instance its own GCRA; a full refill queue; idle keys are dropped. */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "warren/ratelimit.h"

static int64_t fake_now_us; /* __atomic: read by the background threads too */

static int64_t fake_clock(void *ctx)
{
	(void)ctx;
	return __atomic_load_n(&fake_now_us, __ATOMIC_SEQ_CST);
}

static void advance(int64_t us)
{
	__atomic_add_fetch(&fake_now_us, us, __ATOMIC_SEQ_CST);
}

static int64_t real_us(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

/* The memory backend behind a gate: lease waits while the gate is closed;
 * fail: every lease fails (PostgreSQL down). */
struct gated {
	struct ratelimit_backend inner;
	pthread_mutex_t lock;
	pthread_cond_t opened;
	bool open, fail;
	int leases, leases_on_caller; /* under lock */
	pthread_t caller;	      /* the test's (deciding) thread */
};

static int gated_lease(void *ctx, const char *key, int64_t want, int64_t interval_us,
		       int64_t tau_us, int64_t lead_us, struct ratelimit_grant *out)
{
	struct gated *g = ctx;
	bool fail;

	pthread_mutex_lock(&g->lock);
	g->leases++;
	if (pthread_equal(pthread_self(), g->caller))
		g->leases_on_caller++;
	while (!g->open)
		pthread_cond_wait(&g->opened, &g->lock);
	fail = g->fail;
	pthread_mutex_unlock(&g->lock);
	if (fail)
		return -1;
	return g->inner.lease(g->inner.ctx, key, want, interval_us, tau_us, lead_us, out);
}

static int gated_give_back(void *ctx, const char *key, int64_t count, int64_t interval_us,
			   int64_t tat_us, bool *returned)
{
	struct gated *g = ctx;

	return g->inner.give_back(g->inner.ctx, key, count, interval_us, tat_us, returned);
}

static void gated_close(void *ctx)
{
	(void)ctx; /* the fixture frees the inner backend */
}

static void gate_set(struct gated *g, bool open)
{
	pthread_mutex_lock(&g->lock);
	g->open = open;
	pthread_cond_broadcast(&g->opened);
	pthread_mutex_unlock(&g->lock);
}

static int gate_leases(struct gated *g, int *on_caller)
{
	int leases;

	pthread_mutex_lock(&g->lock);
	leases = g->leases;
	if (on_caller)
		*on_caller = g->leases_on_caller;
	pthread_mutex_unlock(&g->lock);
	return leases;
}

struct fixture {
	struct gated gated;
	struct ratelimit *a, *b;
};

static struct ratelimit *open_on(struct fixture *f, int refill_queue)
{
	struct ratelimit_backend backend = {gated_lease, gated_give_back, NULL, gated_close,
					    &f->gated};
	struct ratelimit_options options = {.monotonic_us = fake_clock,
					    .refill_queue = refill_queue};

	return ratelimit__open_backend(&backend, &options);
}

static int setup(void **state)
{
	static struct fixture f;

	memset(&f, 0, sizeof(f));
	__atomic_store_n(&fake_now_us, 1000000000, __ATOMIC_SEQ_CST);
	assert_int_equal(ratelimit__memory_backend(fake_clock, NULL, &f.gated.inner), 0);
	pthread_mutex_init(&f.gated.lock, NULL);
	pthread_cond_init(&f.gated.opened, NULL);
	f.gated.open = true;
	f.gated.caller = pthread_self();
	f.a = open_on(&f, 0);
	f.b = open_on(&f, 0);
	assert_non_null(f.a);
	assert_non_null(f.b);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	gate_set(&f->gated, true); /* a blocked lease must end before the join */
	ratelimit__close(f->a);
	ratelimit__close(f->b);
	ratelimit__memory_backend_free(&f->gated.inner);
	pthread_mutex_destroy(&f->gated.lock);
	pthread_cond_destroy(&f->gated.opened);
	return 0;
}

/* Waits (real time, <= 5 s) until limiter's background thread finished
 * every refill queued so far. */
static void wait_refills(struct ratelimit *limiter)
{
	struct ratelimit_stats stats;
	int64_t give_up = real_us() + 5000000;

	do {
		ratelimit__stats(limiter, &stats);
		if (stats.refills_done >= stats.refills_queued)
			return;
		sched_yield();
	} while (real_us() < give_up);
	fail_msg("refills not done: %lld of %lld", (long long)stats.refills_done,
		 (long long)stats.refills_queued);
}

/* 100 per second (T = 10 ms), burst 100: credit c = 100 / 20 = 5. */
static int nowait100(struct ratelimit *limiter, const char *key, struct ratelimit_decision *d)
{
	return ratelimit__take_nowait(limiter, key, 100, 1000, 100, d);
}

/* The lease blocks: decisions still come at once, from credit then
 * refusals, and no lease ever runs on the deciding thread. When the lease
 * comes back, its first slots pay the debt. */
static void test_blocked_backend_does_not_block(void **state)
{
	struct fixture *f = *state;
	struct ratelimit_decision d;
	struct ratelimit_stats stats;
	int64_t start, slowest = 0, allowed = 0;
	int on_caller;

	gate_set(&f->gated, false);
	start = real_us();
	for (int i = 0; i < 1000; i++) {
		int64_t before = real_us();

		assert_int_equal(nowait100(f->a, "k", &d), 0);
		allowed += d.allowed;
		if (real_us() - before > slowest)
			slowest = real_us() - before;
		if (!d.allowed)
			assert_true(d.retry_after_s >= 1);
		/* The background thread takes the key's debt when it sends the
		 * lease: let it send after the first decision (debt 1), not at
		 * whatever point the scheduler picks (debt 1..5 changed the
		 * lease sizes, so the totals below, from run to run). */
		while (i == 0 && gate_leases(&f->gated, NULL) < 1)
			sched_yield();
	}
	print_message("1000 decisions with the lease blocked: %lld us, slowest %lld us\n",
		      (long long)(real_us() - start), (long long)slowest);
	assert_true(slowest < 100000);
	assert_int_equal(allowed, 5); /* the credit, nothing more */
	ratelimit__stats(f->a, &stats);
	assert_int_equal(stats.decisions_on_credit, 5);
	assert_int_equal(stats.refills_queued, 1); /* one lease in flight per key */
	/* The background thread is the one blocked in the lease. */
	while (gate_leases(&f->gated, NULL) < 1)
		sched_yield();
	gate_set(&f->gated, true);
	wait_refills(f->a);
	gate_leases(&f->gated, &on_caller);
	assert_int_equal(on_caller, 0);
	ratelimit__stats(f->a, &stats);
	/* The blocked lease: debt 1 + lease 1, both slots pay debt (the
	 * second one debt taken while it was out); the 3 still owed are
	 * leased at once with a lease doubled to 2: 2 + 5 = 7 leased, 5 of
	 * them paid the debt, 2 left to spend. */
	assert_int_equal(stats.tokens_leased, 7);
	assert_int_equal(stats.tokens_expired, 0);
	assert_true(nowait100(f->a, "k", &d) == 0 && d.allowed);
	ratelimit__stats(f->a, &stats);
	assert_int_equal(stats.decisions_on_credit, 5);
	/* The shared state holds all seven: b sees the burst less 7 less the
	 * lead (5 slots) from its own leases, never more. */
	wait_refills(f->a);
	allowed = 0;
	for (int i = 0; i < 300; i++) {
		nowait100(f->b, "k", &d);
		allowed += d.allowed;
		wait_refills(f->b);
	}
	assert_true(allowed <= 100 - 7 + 5);
	assert_true(allowed >= 100 - 7 - 3 * 5);
}

/* A full refill queue: keys keep deciding on credit, the drop is counted. */
static void test_refill_queue_full(void **state)
{
	struct fixture *f = *state;
	struct ratelimit *small = open_on(f, 2);
	struct ratelimit_decision d;
	struct ratelimit_stats stats;
	char key[16];

	gate_set(&f->gated, false);
	for (int i = 0; i < 10; i++) {
		snprintf(key, sizeof(key), "ip-%d", i);
		assert_int_equal(nowait100(small, key, &d), 0);
		assert_true(d.allowed);
	}
	ratelimit__stats(small, &stats);
	assert_int_equal(stats.refills_queued + stats.refills_dropped, 10);
	assert_true(stats.refills_queued <= 3); /* 2 waiting, 1 maybe taken */
	assert_int_equal(stats.decisions_on_credit, 10);
	/* A dropped key asks again at its next decision. */
	gate_set(&f->gated, true);
	wait_refills(small);
	for (int i = 0; i < 10; i++) {
		snprintf(key, sizeof(key), "ip-%d", i);
		nowait100(small, key, &d);
		wait_refills(small);
	}
	ratelimit__stats(small, &stats);
	assert_true(stats.refills_queued >= 10);
	ratelimit__close(small);
}

/* Two limiters (instances) hammer one key past its limit, one with the
 * lease sometimes held back: admitted <= floor(D / T) + B + 2 c. */
static void test_two_instances_bound(void **state)
{
	struct fixture *f = *state;
	struct ratelimit_decision d;
	int64_t start = fake_clock(NULL), allowed = 0, burst = 200, interval_us = 1000, cap = 10;

	for (int step = 0; step < 3000; step++) {
		/* Every 7th step the leases lag behind (decisions on credit). */
		bool lag = step % 7 == 3;

		advance(step % 11 == 0 ? 5000 : 300);
		if (lag)
			gate_set(&f->gated, false);
		for (int i = 0; i < 3; i++) {
			nowait100(f->a, "shared", &d); /* warm a second key too */
			ratelimit__take_nowait(f->a, "hot", 1000, 1000, burst, &d);
			allowed += d.allowed;
			ratelimit__take_nowait(f->b, "hot", 1000, 1000, burst, &d);
			allowed += d.allowed;
		}
		if (lag)
			gate_set(&f->gated, true);
		wait_refills(f->a);
		wait_refills(f->b);
	}
	{
		int64_t span = fake_clock(NULL) - start;
		int64_t bound = span / interval_us + burst + 2 * cap;
		struct ratelimit_stats a, b;

		ratelimit__stats(f->a, &a);
		ratelimit__stats(f->b, &b);
		print_message("admitted %lld, bound %lld (D %lld ms), credit %lld, leases %lld\n",
			      (long long)allowed, (long long)bound, (long long)(span / 1000),
			      (long long)(a.decisions_on_credit + b.decisions_on_credit),
			      (long long)(a.backend_leases + b.backend_leases));
		assert_true(allowed <= bound);
		assert_true(allowed >= (span / interval_us + burst) * 8 / 10);
		assert_true(a.decisions_on_credit + b.decisions_on_credit > 0);
	}
}

/* PostgreSQL down: each instance still holds the limit alone (its local
 * GCRA, charged by the credit it gave before it knew), and says so (-1). */
static void test_outage_local_gcra(void **state)
{
	struct fixture *f = *state;
	struct ratelimit_decision d;
	struct ratelimit_stats stats;
	int allowed = 0;

	pthread_mutex_lock(&f->gated.lock);
	f->gated.fail = true;
	pthread_mutex_unlock(&f->gated.lock);
	/* 10 per second, burst 10, c = 1: the first request is on credit. */
	assert_int_equal(ratelimit__take_nowait(f->a, "down", 10, 1000, 10, &d), 0);
	assert_true(d.allowed);
	wait_refills(f->a);
	for (int i = 0; i < 100; i++) {
		assert_int_equal(ratelimit__take_nowait(f->a, "down", 10, 1000, 10, &d), -1);
		allowed += d.allowed;
	}
	assert_int_equal(allowed, 9); /* the burst of 10, one spent on credit */
	assert_false(d.allowed);
	assert_true(d.retry_after_s >= 1);
	/* A new key meanwhile goes to the local GCRA at once (no credit). */
	assert_int_equal(ratelimit__take_nowait(f->a, "down-2", 10, 1000, 10, &d), -1);
	/* A second later: 10 more, as the configured rate allows. */
	advance(1000000);
	allowed = 0;
	for (int i = 0; i < 100; i++) {
		ratelimit__take_nowait(f->a, "down", 10, 1000, 10, &d);
		allowed += d.allowed;
		wait_refills(f->a);
	}
	assert_int_equal(allowed, 10);
	ratelimit__stats(f->a, &stats);
	assert_true(stats.decisions_fallback >= 200);
	assert_true(stats.backend_errors >= 2);
	assert_int_equal(stats.decisions_on_credit, 1);
	/* PostgreSQL back: the next lease after the retry second pays the debt
	 * and the key is shared again. */
	pthread_mutex_lock(&f->gated.lock);
	f->gated.fail = false;
	pthread_mutex_unlock(&f->gated.lock);
	advance(1100000);
	ratelimit__take_nowait(f->a, "down", 10, 1000, 10, &d);
	wait_refills(f->a);
	assert_int_equal(ratelimit__take_nowait(f->a, "down", 10, 1000, 10, &d), 0);
}

/* Keys idle for a window are dropped; a busy or indebted one is not. */
static void test_idle_keys_evicted(void **state)
{
	struct fixture *f = *state;
	struct ratelimit_decision d;
	struct ratelimit_stats stats;
	char key[16];
	int before;

	for (int i = 0; i < 100; i++) {
		snprintf(key, sizeof(key), "ip-%d", i);
		nowait100(f->a, key, &d);
	}
	wait_refills(f->a);
	ratelimit__stats(f->a, &stats);
	assert_int_equal(stats.keys, 100);
	/* Not idle for a whole window (1 s) yet. */
	advance(900000);
	nowait100(f->a, "ip-7", &d);
	wait_refills(f->a);
	ratelimit__sweep(f->a);
	ratelimit__stats(f->a, &stats);
	assert_int_equal(stats.keys, 100);
	advance(200000);
	ratelimit__sweep(f->a);
	ratelimit__stats(f->a, &stats);
	assert_int_equal(stats.keys, 1);
	assert_int_equal(stats.keys_evicted, 99);
	assert_int_equal(stats.debt_forgiven, 0);
	/* A debt is not forgiven while the backend works. Here the lease that
	 * should pay it is held for 2 s: anchored at its send time, the server
	 * clock estimate says every granted slot passed (conservative), so the
	 * debt stays; the sweep then asks for another lease, which pays it,
	 * and the key goes at the sweep after. */
	gate_set(&f->gated, false);
	before = gate_leases(&f->gated, NULL);
	nowait100(f->a, "owing", &d);
	while (gate_leases(&f->gated, NULL) == before)
		sched_yield();
	advance(2000000);
	ratelimit__sweep(f->a);
	ratelimit__stats(f->a, &stats);
	assert_int_equal(stats.keys, 1); /* ip-7 went, "owing" has a lease in flight */
	gate_set(&f->gated, true);
	wait_refills(f->a);
	ratelimit__sweep(f->a);
	wait_refills(f->a);
	ratelimit__sweep(f->a);
	ratelimit__stats(f->a, &stats);
	assert_int_equal(stats.keys, 0);
	assert_int_equal(stats.debt_forgiven, 0);
}

/* A local limiter (no backend) is this instance's exact GCRA. */
static void test_local_limiter(void **state)
{
	struct ratelimit_options options = {.monotonic_us = fake_clock};
	struct ratelimit *local = ratelimit__open_local(&options);
	struct ratelimit_decision d;
	int allowed = 0;

	(void)state;
	assert_non_null(local);
	for (int i = 0; i < 50; i++) {
		ratelimit__take_nowait(local, "k", 100, 1000, 100, &d);
		allowed += d.allowed;
	}
	assert_int_equal(allowed, 50);
	for (int i = 0; i < 100; i++) {
		ratelimit__take(local, "k", 100, 1000, 100, &d);
		allowed += d.allowed;
	}
	assert_int_equal(allowed, 100);
	assert_int_equal(d.retry_after_s, 1);
	ratelimit__close(local);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_blocked_backend_does_not_block, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refill_queue_full, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_two_instances_bound, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_outage_local_gcra, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_idle_keys_evicted, setup, teardown),
	    cmocka_unit_test(test_local_limiter),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for vmm/event_loop.c: watches, file I/O, fsync, timers,
 * cancel, defer and stop from another thread, bounded pool, one-shot poll,
 * fallocate, busy-polling with pollers. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "event_loop.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct watch_state {
	struct event_loop *loop;
	int fd;
	int events;
	int32_t last;
};

static bool on_eventfd(void *opaque, int32_t result)
{
	struct watch_state *state = opaque;
	uint64_t value = 1;

	state->last = result;
	if (result < 0)
		return false;
	assert_int_equal(read(state->fd, &value, sizeof(value)), sizeof(value));
	state->events++;
	if (state->events < 5) {
		value = 1;
		assert_int_equal(write(state->fd, &value, sizeof(value)), sizeof(value));
		return true;
	}
	event_loop__stop(state->loop);
	return false;
}

static void test_watch_fires_per_event(void **unused)
{
	struct watch_state state = {0};
	uint64_t one = 1;

	state.loop = event_loop__create(16);
	assert_non_null(state.loop);
	state.fd = eventfd(0, EFD_NONBLOCK);
	assert_true(event_loop__watch(state.loop, state.fd, POLLIN, on_eventfd, &state) >= 0);
	assert_int_equal(write(state.fd, &one, sizeof(one)), sizeof(one));
	assert_int_equal(event_loop__run(state.loop), 0);
	assert_int_equal(state.events, 5);
	assert_true(state.last & POLLIN);
	close(state.fd);
	event_loop__destroy(state.loop);
}

struct file_state {
	struct event_loop *loop;
	int fd;
	char out[32];
	char in[32];
	struct iovec out_iov[2];
	struct iovec in_iov[1];
	int32_t write_result, read_result, fsync_result;
};

static bool on_read(void *opaque, int32_t result)
{
	struct file_state *state = opaque;

	state->read_result = result;
	event_loop__stop(state->loop);
	return false;
}

static bool on_fsync(void *opaque, int32_t result)
{
	struct file_state *state = opaque;

	state->fsync_result = result;
	state->in_iov[0] = (struct iovec){state->in, 11};
	assert_int_equal(
	    event_loop__readv(state->loop, state->fd, state->in_iov, 1, 4096, on_read, state), 0);
	return false;
}

static bool on_write(void *opaque, int32_t result)
{
	struct file_state *state = opaque;

	state->write_result = result;
	assert_int_equal(event_loop__fsync(state->loop, state->fd, true, on_fsync, state), 0);
	return false;
}

static void test_file_write_fsync_read(void **unused)
{
	struct file_state state = {0};
	char path[] = "/tmp/warren-event-loop-XXXXXX";

	state.loop = event_loop__create(8);
	assert_non_null(state.loop);
	state.fd = mkstemp(path);
	assert_true(state.fd >= 0);
	unlink(path);
	memcpy(state.out, "hello world", 11);
	state.out_iov[0] = (struct iovec){state.out, 6};
	state.out_iov[1] = (struct iovec){state.out + 6, 5};
	assert_int_equal(
	    event_loop__writev(state.loop, state.fd, state.out_iov, 2, 4096, on_write, &state), 0);
	assert_int_equal(event_loop__run(state.loop), 0);
	assert_int_equal(state.write_result, 11);
	assert_int_equal(state.fsync_result, 0);
	assert_int_equal(state.read_result, 11);
	assert_memory_equal(state.in, "hello world", 11);
	/* A bad fd is reported through the callback as -EBADF. */
	assert_int_equal(event_loop__fsync(state.loop, 1000, false, on_read, &state), 0);
	assert_int_equal(event_loop__run(state.loop), 0);
	assert_int_equal(state.read_result, -EBADF);
	close(state.fd);
	event_loop__destroy(state.loop);
}

struct timer_state {
	struct event_loop *loop;
	int32_t result;
	int calls;
	uint64_t fired_ns;
};

static bool on_timer(void *opaque, int32_t result)
{
	struct timer_state *state = opaque;

	state->result = result;
	state->calls++;
	state->fired_ns = now_ns();
	event_loop__stop(state->loop);
	return false;
}

static void test_timer_fires(void **unused)
{
	struct timer_state state = {0};
	uint64_t start;

	state.loop = event_loop__create(4);
	assert_non_null(state.loop);
	start = now_ns();
	assert_true(event_loop__timer(state.loop, 20 * 1000000ull, on_timer, &state) >= 0);
	assert_int_equal(event_loop__run(state.loop), 0);
	assert_int_equal(state.result, -ETIME);
	assert_int_equal(state.calls, 1);
	assert_true(state.fired_ns - start >= 19 * 1000000ull);
	event_loop__destroy(state.loop);
}

static bool on_stop_timer(void *opaque, int32_t result)
{
	event_loop__stop(opaque);
	return false;
}

static void test_cancel_timer_and_watch(void **unused)
{
	struct timer_state timer = {0};
	struct watch_state watch = {0};
	int64_t timer_id, watch_id;

	timer.loop = event_loop__create(8);
	assert_non_null(timer.loop);
	timer_id = event_loop__timer(timer.loop, 10ull * 1000000000ull, on_timer, &timer);
	assert_true(timer_id >= 0);
	watch.loop = timer.loop;
	watch.fd = eventfd(0, EFD_NONBLOCK);
	watch_id = event_loop__watch(timer.loop, watch.fd, POLLIN, on_eventfd, &watch);
	assert_true(watch_id >= 0);
	assert_int_equal(event_loop__cancel(timer.loop, timer_id), 0);
	assert_int_equal(event_loop__cancel(timer.loop, timer_id), -EALREADY);
	assert_int_equal(event_loop__cancel(timer.loop, watch_id), 0);
	assert_true(event_loop__timer(timer.loop, 50 * 1000000ull, on_stop_timer, timer.loop) >= 0);
	assert_int_equal(event_loop__run(timer.loop), 0);
	assert_int_equal(timer.calls, 1);
	assert_int_equal(timer.result, -ECANCELED);
	assert_int_equal(watch.events, 0);
	assert_int_equal(watch.last, -ECANCELED);
	/* Stale and bogus ids are refused. */
	assert_int_equal(event_loop__cancel(timer.loop, timer_id), -ENOENT);
	assert_int_equal(event_loop__cancel(timer.loop, -5), -ENOENT);
	assert_int_equal(event_loop__cancel(timer.loop, 1ll << 20), -ENOENT);
	close(watch.fd);
	event_loop__destroy(timer.loop);
}

struct defer_state {
	struct event_loop *loop;
	pthread_t loop_thread;
	pthread_t ran_on;
	int ran;
};

static void deferred(void *opaque)
{
	struct defer_state *state = opaque;

	state->ran++;
	state->ran_on = pthread_self();
	if (state->ran == 100)
		event_loop__stop(state->loop);
}

static void *defer_thread(void *opaque)
{
	struct defer_state *state = opaque;

	for (int i = 0; i < 100; i++) {
		while (event_loop__defer(state->loop, deferred, state) == -EAGAIN)
			usleep(100);
		if (i % 10 == 0)
			usleep(1000);
	}
	return NULL;
}

static void test_defer_from_other_thread(void **unused)
{
	struct defer_state state = {0};
	pthread_t thread;

	state.loop = event_loop__create(4);
	assert_non_null(state.loop);
	state.loop_thread = pthread_self();
	assert_int_equal(pthread_create(&thread, NULL, defer_thread, &state), 0);
	assert_int_equal(event_loop__run(state.loop), 0);
	pthread_join(thread, NULL);
	assert_int_equal(state.ran, 100);
	assert_true(pthread_equal(state.ran_on, state.loop_thread));
	event_loop__destroy(state.loop);
}

static void *stop_thread(void *opaque)
{
	usleep(30000);
	event_loop__stop(opaque);
	return NULL;
}

static void test_stop_from_other_thread(void **unused)
{
	struct event_loop *loop = event_loop__create(4);
	pthread_t thread;
	uint64_t start = now_ns();

	assert_non_null(loop);
	assert_int_equal(pthread_create(&thread, NULL, stop_thread, loop), 0);
	assert_int_equal(event_loop__run(loop), 0);
	assert_true(now_ns() - start >= 25 * 1000000ull);
	pthread_join(thread, NULL);
	/* A stop before run makes the next run return at once. */
	event_loop__stop(loop);
	assert_int_equal(event_loop__run(loop), 0);
	event_loop__destroy(loop);
}

static bool never(void *opaque, int32_t result)
{
	return false;
}

static void test_bounded_pool(void **unused)
{
	struct event_loop *loop = event_loop__create(3);
	char byte;
	struct iovec iov = {&byte, 1};

	assert_non_null(loop);
	for (int i = 0; i < 3; i++)
		assert_true(event_loop__timer(loop, 1000000000ull, never, NULL) >= 0);
	assert_int_equal(event_loop__timer(loop, 1, never, NULL), -EBUSY);
	assert_int_equal(event_loop__readv(loop, 0, &iov, 1, 0, never, NULL), -EBUSY);
	assert_int_equal(event_loop__watch(loop, -1, POLLIN, never, NULL), -EINVAL);
	assert_null(event_loop__create(0));
	event_loop__destroy(loop);
}

/* --- one-shot poll, fallocate, busy-polling --------------------------------- */

struct once_state {
	struct event_loop *loop;
	int calls;
	int32_t result;
};

static bool on_once(void *opaque, int32_t result)
{
	struct once_state *state = opaque;

	state->calls++;
	state->result = result;
	event_loop__stop(state->loop);
	return true; /* ignored: one-shot */
}

static void test_poll_once(void **unused)
{
	struct once_state state = {0};
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	uint64_t one = 1;
	int64_t id;

	state.loop = event_loop__create(4);
	assert_true(event_loop__poll_once(state.loop, fd, POLLIN, on_once, &state) >= 0);
	assert_int_equal(write(fd, &one, sizeof(one)), sizeof(one));
	assert_int_equal(event_loop__run(state.loop), 0);
	assert_int_equal(state.calls, 1);
	assert_true(state.result & POLLIN);
	/* Still readable, but the poll is gone: a timer ends the next run. */
	assert_true(event_loop__timer(state.loop, 20 * 1000000ull, on_stop_timer, state.loop) >= 0);
	assert_int_equal(event_loop__run(state.loop), 0);
	assert_int_equal(state.calls, 1);
	/* Cancelled: called once more with -ECANCELED. */
	assert_int_equal(read(fd, &one, sizeof(one)), sizeof(one));
	id = event_loop__poll_once(state.loop, fd, POLLIN, on_once, &state);
	assert_true(id >= 0);
	assert_int_equal(event_loop__cancel(state.loop, id), 0);
	assert_int_equal(event_loop__run(state.loop), 0);
	assert_int_equal(state.calls, 2);
	assert_int_equal(state.result, -ECANCELED);
	event_loop__destroy(state.loop);
	close(fd);
}

static void test_fallocate_punches_hole(void **unused)
{
	char path[] = "/tmp/warren-loop-fallocate-XXXXXX";
	struct once_state state = {0};
	uint8_t block[4096];
	int fd = mkstemp(path);

	memset(block, 0x5a, sizeof(block));
	for (int i = 0; i < 4; i++)
		assert_int_equal(write(fd, block, sizeof(block)), sizeof(block));
	state.loop = event_loop__create(4);
	assert_int_equal(event_loop__fallocate(state.loop, fd,
					       0x01 | 0x02 /* KEEP_SIZE|PUNCH_HOLE */, 4096, 8192,
					       on_once, &state),
			 0);
	assert_int_equal(event_loop__fallocate(state.loop, fd, 0, -1, 1, on_once, &state), -EINVAL);
	assert_int_equal(event_loop__run(state.loop), 0);
	assert_int_equal(state.result, 0);
	assert_int_equal(pread(fd, block, sizeof(block), 4096), sizeof(block));
	assert_int_equal(block[0], 0);
	assert_int_equal(pread(fd, block, sizeof(block), 12288), sizeof(block));
	assert_int_equal(block[0], 0x5a);
	assert_int_equal(lseek(fd, 0, SEEK_END), 16384); /* size kept */
	event_loop__destroy(state.loop);
	close(fd);
	unlink(path);
}

struct poller_state {
	struct event_loop *loop;
	int calls, work;
};

/* "Finds work" on its 100th call, then stops the loop. */
static bool count_poller(void *opaque)
{
	struct poller_state *state = opaque;

	if (++state->calls == 100) {
		state->work++;
		event_loop__stop(state->loop);
		return true;
	}
	return false;
}

/* Re-arms itself every millisecond until the poller found its work: each
 * expiry is a turn of the loop, and so a fresh polling window. */
static bool on_tick(void *opaque, int32_t result)
{
	struct poller_state *state = opaque;

	(void)result;
	if (!state->work)
		assert_true(event_loop__timer(state->loop, 1000000ull, on_tick, state) >= 0);
	return false;
}

static void test_pollers_run_only_while_polling(void **unused)
{
	struct poller_state state = {0};
	int id;

	state.loop = event_loop__create(4);
	id = event_loop__add_poller(state.loop, count_poller, &state);
	assert_true(id >= 0);
	/* Polling off: the loop sleeps, the poller is never called. */
	assert_true(event_loop__timer(state.loop, 20 * 1000000ull, on_stop_timer, state.loop) >= 0);
	assert_int_equal(event_loop__run(state.loop), 0);
	assert_int_equal(state.calls, 0);
	/* Polling on (200 us window, starts at a quarter): the poller runs while
	 * the loop waits, and its work ends the run early. How many calls fit in
	 * one window depends on the kernel (each spin enters io_uring for
	 * deferred task work: ~1 us on 6.18, less on 6.1), so a 1 ms ticker
	 * gives the loop a fresh window on every turn; the calls add up well
	 * before the 5 s stop timer. The stop request is seen once the loop
	 * turns, which the deferred wake of event_loop__stop guarantees. */
	event_loop__set_polling(state.loop, 200 * 1000ull);
	assert_true(
	    event_loop__timer(state.loop, 5ull * 1000000000ull, on_stop_timer, state.loop) >= 0);
	assert_true(event_loop__timer(state.loop, 1000000ull, on_tick, &state) >= 0);
	assert_int_equal(event_loop__run(state.loop), 0);
	assert_true(state.calls >= 100);
	assert_int_equal(state.work, 1);
	event_loop__remove_poller(state.loop, id);
	for (int i = 0; i < EVENT_LOOP_MAX_POLLERS; i++)
		assert_true(event_loop__add_poller(state.loop, count_poller, &state) >= 0);
	assert_int_equal(event_loop__add_poller(state.loop, count_poller, &state), -ENOSPC);
	event_loop__destroy(state.loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_watch_fires_per_event),
	    cmocka_unit_test(test_file_write_fsync_read),
	    cmocka_unit_test(test_timer_fires),
	    cmocka_unit_test(test_cancel_timer_and_watch),
	    cmocka_unit_test(test_defer_from_other_thread),
	    cmocka_unit_test(test_stop_from_other_thread),
	    cmocka_unit_test(test_bounded_pool),
	    cmocka_unit_test(test_poll_once),
	    cmocka_unit_test(test_fallocate_punches_hole),
	    cmocka_unit_test(test_pollers_run_only_while_polling),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

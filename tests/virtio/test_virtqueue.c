/* Unit tests for vmm/virtio/virtqueue.c against a synthetic guest memory:
 * ring validation, chain walking (direct and indirect), used-ring updates,
 * notification suppression, and every malformed case we guard against. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_driver.h"
#include "virtqueue.h"

#define GUEST_SIZE (1u << 20)
#define RING_BASE  0x10000u
#define DATA_BASE  0x40000u

struct fixture {
	struct test_guest *guest;
	struct test_vring ring;
	struct virtq q;
	struct virtq_chain chain;
};

static int setup_size(void **state, uint16_t size)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->guest = test_guest__create(GUEST_SIZE);
	test_vring__init(f->guest, &f->ring, size, RING_BASE);
	virtq__init(&f->q, &f->guest->memory);
	assert_int_equal(virtq__enable(&f->q, size, 1024, f->ring.desc, f->ring.avail, f->ring.used,
				       false, true),
			 0);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_size(state, 16);
}

static int setup_big(void **state)
{
	return setup_size(state, 512);
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	test_guest__destroy(f->guest);
	free(f);
	return 0;
}

static void test_enable_validation(void **state)
{
	struct fixture *f = *state;
	struct virtq q;

	virtq__init(&q, &f->guest->memory);
	assert_int_equal(virtq__enable(&q, 12, 256, RING_BASE, RING_BASE + 0x1000,
				       RING_BASE + 0x2000, false, false),
			 -EINVAL); /* not a power of two */
	assert_int_equal(virtq__enable(&q, 0, 256, RING_BASE, RING_BASE + 0x1000,
				       RING_BASE + 0x2000, false, false),
			 -EINVAL);
	assert_int_equal(virtq__enable(&q, 512, 256, RING_BASE, RING_BASE + 0x1000,
				       RING_BASE + 0x2000, false, false),
			 -EINVAL); /* above the maximum */
	assert_int_equal(virtq__enable(&q, 16, 256, RING_BASE + 8, RING_BASE + 0x1000,
				       RING_BASE + 0x2000, false, false),
			 -EINVAL); /* descriptor table not 16-aligned */
	assert_int_equal(virtq__enable(&q, 16, 256, RING_BASE, RING_BASE + 0x1001,
				       RING_BASE + 0x2000, false, false),
			 -EINVAL); /* avail not 2-aligned */
	assert_int_equal(virtq__enable(&q, 16, 256, RING_BASE, RING_BASE + 0x1000,
				       RING_BASE + 0x2002, false, false),
			 -EINVAL); /* used not 4-aligned */
	assert_int_equal(virtq__enable(&q, 16, 256, GUEST_SIZE - 16, RING_BASE + 0x1000,
				       RING_BASE + 0x2000, false, false),
			 -EINVAL); /* table runs past the end of memory */
	assert_int_equal(virtq__enable(&q, 16, 256, RING_BASE, RING_BASE + 0x1000,
				       0xfffffffffffffff0ull, false, false),
			 -EINVAL); /* wraps */
	assert_int_equal(
	    virtq__enable(&q, 16, 256, RING_BASE, 3ull << 30, RING_BASE + 0x2000, false, false),
	    -EINVAL); /* MMIO hole */
	assert_false(q.ready);
	assert_int_equal(q.error, VIRTQ_ERROR_RING);
	assert_int_equal(virtq__pop(&q, &f->chain), 0); /* not ready: nothing */
}

static void test_pop_push(void **state)
{
	struct fixture *f = *state;
	struct test_buffer buffers[3] = {
	    {DATA_BASE, 16, false}, {DATA_BASE + 100, 8, false}, {DATA_BASE + 200, 512, true}};
	uint32_t id, len;
	uint16_t head;

	assert_int_equal(virtq__pop(&f->q, &f->chain), 0);
	head = test_vring__add_chain(f->guest, &f->ring, buffers, 3, true);
	assert_true(virtq__has_available(&f->q));
	assert_int_equal(virtq__pop(&f->q, &f->chain), 1);
	assert_int_equal(f->chain.head, head);
	assert_int_equal(f->chain.iov_count, 3);
	assert_int_equal(f->chain.readable_count, 2);
	assert_int_equal(f->chain.readable_bytes, 24);
	assert_int_equal(f->chain.writable_bytes, 512);
	assert_ptr_equal(f->chain.iov[0].iov_base, test_guest__ptr(f->guest, DATA_BASE));
	assert_ptr_equal(f->chain.iov[2].iov_base, test_guest__ptr(f->guest, DATA_BASE + 200));
	assert_int_equal(f->chain.iov[2].iov_len, 512);
	assert_int_equal(virtq__pop(&f->q, &f->chain), 0);
	assert_false(test_vring__get_used(f->guest, &f->ring, &id, &len));
	assert_int_equal(virtq__push(&f->q, head, 77), 0);
	assert_true(test_vring__get_used(f->guest, &f->ring, &id, &len));
	assert_int_equal(id, head);
	assert_int_equal(len, 77);
	/* Pushing with nothing in flight is a device bug, refused. */
	assert_int_equal(virtq__push(&f->q, head, 1), -EPROTO);
}

static void test_many_wraparound(void **state)
{
	struct fixture *f = *state;
	struct test_buffer buffer = {DATA_BASE, 64, true};
	uint32_t id, len;

	/* 70000 chains: the 16-bit indexes wrap several times. */
	for (unsigned i = 0; i < 70000; i++) {
		uint16_t head = test_vring__add_chain(f->guest, &f->ring, &buffer, 1, true);

		assert_int_equal(virtq__pop(&f->q, &f->chain), 1);
		assert_int_equal(f->chain.head, head);
		assert_int_equal(virtq__push(&f->q, head, i & 0xff), 0);
		assert_true(test_vring__get_used(f->guest, &f->ring, &id, &len));
		assert_int_equal(len, i & 0xff);
	}
}

static void test_unpop(void **state)
{
	struct fixture *f = *state;
	struct test_buffer buffer = {DATA_BASE, 64, true};
	uint16_t head = test_vring__add_chain(f->guest, &f->ring, &buffer, 1, true);

	assert_int_equal(virtq__pop(&f->q, &f->chain), 1);
	virtq__unpop(&f->q);
	assert_int_equal(virtq__pop(&f->q, &f->chain), 1);
	assert_int_equal(f->chain.head, head);
}

static void expect_broken(struct fixture *f, enum virtq_error error)
{
	assert_int_equal(virtq__pop(&f->q, &f->chain), -EPROTO);
	assert_true(f->q.broken);
	assert_int_equal(f->q.error, error);
	assert_int_equal(virtq__pop(&f->q, &f->chain), 0); /* stays quiet until reset */
	assert_int_equal(virtq__push(&f->q, 0, 0), -ENODEV);
}

static void test_avail_index_jump(void **state)
{
	struct fixture *f = *state;
	uint16_t *avail = test_vring__avail(f->guest, &f->ring);

	avail[1] = 17; /* 17 new chains in a 16-entry queue */
	expect_broken(f, VIRTQ_ERROR_AVAIL_INDEX);
}

static void test_head_out_of_range(void **state)
{
	struct fixture *f = *state;

	test_vring__publish(f->guest, &f->ring, 16);
	expect_broken(f, VIRTQ_ERROR_HEAD);
}

static void test_buffer_outside_memory(void **state)
{
	struct fixture *f = *state;
	struct test_buffer buffer = {GUEST_SIZE - 8, 16, false};

	test_vring__add_chain(f->guest, &f->ring, &buffer, 1, true);
	expect_broken(f, VIRTQ_ERROR_DESCRIPTOR);
}

static void test_buffer_wraps(void **state)
{
	struct fixture *f = *state;
	struct test_buffer buffer = {0xfffffffffffffff0ull, 0x20, true};

	test_vring__add_chain(f->guest, &f->ring, &buffer, 1, true);
	expect_broken(f, VIRTQ_ERROR_DESCRIPTOR);
}

static void test_chain_loop(void **state)
{
	struct fixture *f = *state;
	struct virtq_desc *d0 = test_vring__desc(f->guest, &f->ring, 0);
	struct virtq_desc *d1 = test_vring__desc(f->guest, &f->ring, 1);

	*d0 = (struct virtq_desc){DATA_BASE, 8, VIRTQ_DESC_F_NEXT, 1};
	*d1 = (struct virtq_desc){DATA_BASE, 8, VIRTQ_DESC_F_NEXT, 0};
	test_vring__publish(f->guest, &f->ring, 0);
	expect_broken(f, VIRTQ_ERROR_CHAIN_LENGTH);
}

static void test_next_out_of_range(void **state)
{
	struct fixture *f = *state;

	*test_vring__desc(f->guest, &f->ring, 0) =
	    (struct virtq_desc){DATA_BASE, 8, VIRTQ_DESC_F_NEXT, 300};
	test_vring__publish(f->guest, &f->ring, 0);
	expect_broken(f, VIRTQ_ERROR_DESCRIPTOR);
}

static void test_readable_after_writable(void **state)
{
	struct fixture *f = *state;
	struct test_buffer buffers[2] = {{DATA_BASE, 8, true}, {DATA_BASE + 8, 8, false}};

	test_vring__add_chain(f->guest, &f->ring, buffers, 2, true);
	expect_broken(f, VIRTQ_ERROR_ORDER);
}

static void test_over_long_direct_chain(void **state)
{
	struct fixture *f = *state;
	struct test_buffer buffers[VIRTQ_MAX_CHAIN + 1];

	/* 512-entry queue, 257 descriptors: no loop, but over the chain bound. */
	for (unsigned i = 0; i <= VIRTQ_MAX_CHAIN; i++)
		buffers[i] = (struct test_buffer){DATA_BASE + i, 1, false};
	test_vring__add_chain(f->guest, &f->ring, buffers, VIRTQ_MAX_CHAIN + 1, true);
	expect_broken(f, VIRTQ_ERROR_CHAIN_LENGTH);
}

/* An indirect table of n entries at `table`, chained 0..n-1. */
static void write_table(struct fixture *f, uint64_t table, unsigned n, bool last_writable)
{
	struct virtq_desc *entries = test_guest__ptr(f->guest, table);

	for (unsigned i = 0; i < n; i++)
		entries[i] = (struct virtq_desc){
		    DATA_BASE + 64 * i, 64,
		    (uint16_t)((i + 1 < n ? VIRTQ_DESC_F_NEXT : 0) |
			       (last_writable && i + 1 == n ? VIRTQ_DESC_F_WRITE : 0)),
		    (uint16_t)(i + 1)};
}

static void publish_indirect(struct fixture *f, uint64_t table, uint32_t len, uint16_t flags)
{
	*test_vring__desc(f->guest, &f->ring, 3) =
	    (struct virtq_desc){table, len, (uint16_t)(VIRTQ_DESC_F_INDIRECT | flags), 0};
	test_vring__publish(f->guest, &f->ring, 3);
}

static void test_indirect_ok(void **state)
{
	struct fixture *f = *state;

	write_table(f, 0x80000, 5, true);
	publish_indirect(f, 0x80000, 5 * 16, 0);
	assert_int_equal(virtq__pop(&f->q, &f->chain), 1);
	assert_int_equal(f->chain.head, 3);
	assert_int_equal(f->chain.iov_count, 5);
	assert_int_equal(f->chain.readable_count, 4);
	assert_int_equal(f->chain.writable_bytes, 64);
	assert_ptr_equal(f->chain.iov[4].iov_base, test_guest__ptr(f->guest, DATA_BASE + 256));
	assert_int_equal(virtq__push(&f->q, 3, 64), 0);
}

static void test_indirect_bad_size(void **state)
{
	struct fixture *f = *state;

	write_table(f, 0x80000, 5, false);
	publish_indirect(f, 0x80000, 5 * 16 + 4, 0);
	expect_broken(f, VIRTQ_ERROR_INDIRECT);
}

static void test_indirect_zero_size(void **state)
{
	struct fixture *f = *state;

	publish_indirect(f, 0x80000, 0, 0);
	expect_broken(f, VIRTQ_ERROR_INDIRECT);
}

static void test_indirect_too_big(void **state)
{
	struct fixture *f = *state;

	write_table(f, 0x80000, VIRTQ_MAX_CHAIN + 1, false);
	publish_indirect(f, 0x80000, (VIRTQ_MAX_CHAIN + 1) * 16, 0);
	expect_broken(f, VIRTQ_ERROR_INDIRECT);
}

static void test_indirect_outside_memory(void **state)
{
	struct fixture *f = *state;

	publish_indirect(f, GUEST_SIZE - 32, 64, 0);
	expect_broken(f, VIRTQ_ERROR_INDIRECT);
}

static void test_indirect_nested(void **state)
{
	struct fixture *f = *state;
	struct virtq_desc *entries = test_guest__ptr(f->guest, 0x80000);

	write_table(f, 0x80000, 3, false);
	entries[1].flags |= VIRTQ_DESC_F_INDIRECT;
	publish_indirect(f, 0x80000, 3 * 16, 0);
	expect_broken(f, VIRTQ_ERROR_INDIRECT);
}

static void test_indirect_with_next(void **state)
{
	struct fixture *f = *state;

	write_table(f, 0x80000, 3, false);
	publish_indirect(f, 0x80000, 3 * 16, VIRTQ_DESC_F_NEXT);
	expect_broken(f, VIRTQ_ERROR_INDIRECT);
}

static void test_indirect_after_direct(void **state)
{
	struct fixture *f = *state;

	write_table(f, 0x80000, 3, false);
	*test_vring__desc(f->guest, &f->ring, 0) =
	    (struct virtq_desc){DATA_BASE, 8, VIRTQ_DESC_F_NEXT, 3};
	*test_vring__desc(f->guest, &f->ring, 3) =
	    (struct virtq_desc){0x80000, 48, VIRTQ_DESC_F_INDIRECT, 0};
	test_vring__publish(f->guest, &f->ring, 0);
	expect_broken(f, VIRTQ_ERROR_INDIRECT);
}

static void test_indirect_loop(void **state)
{
	struct fixture *f = *state;
	struct virtq_desc *entries = test_guest__ptr(f->guest, 0x80000);

	write_table(f, 0x80000, 4, false);
	entries[3].flags |= VIRTQ_DESC_F_NEXT;
	entries[3].next = 1;
	publish_indirect(f, 0x80000, 4 * 16, 0);
	expect_broken(f, VIRTQ_ERROR_CHAIN_LENGTH);
}

static void test_indirect_next_out_of_table(void **state)
{
	struct fixture *f = *state;
	struct virtq_desc *entries = test_guest__ptr(f->guest, 0x80000);

	write_table(f, 0x80000, 4, false);
	entries[3].flags |= VIRTQ_DESC_F_NEXT;
	entries[3].next = 4;
	publish_indirect(f, 0x80000, 4 * 16, 0);
	expect_broken(f, VIRTQ_ERROR_DESCRIPTOR);
}

static void test_indirect_not_negotiated(void **state)
{
	struct fixture *f = *state;

	f->q.indirect = false;
	write_table(f, 0x80000, 2, false);
	publish_indirect(f, 0x80000, 2 * 16, 0);
	expect_broken(f, VIRTQ_ERROR_INDIRECT);
}

static void test_interrupt_suppression_flags(void **state)
{
	struct fixture *f = *state;
	struct test_buffer buffer = {DATA_BASE, 8, true};
	uint16_t *avail = test_vring__avail(f->guest, &f->ring);
	uint16_t *used = test_vring__used16(f->guest, &f->ring);

	test_vring__add_chain(f->guest, &f->ring, &buffer, 1, true);
	test_vring__add_chain(f->guest, &f->ring, &buffer, 1, true);
	assert_int_equal(virtq__pop(&f->q, &f->chain), 1);
	assert_int_equal(virtq__push(&f->q, f->chain.head, 1), 0);
	assert_true(virtq__should_interrupt(&f->q));
	avail[0] = VIRTQ_AVAIL_F_NO_INTERRUPT;
	assert_int_equal(virtq__pop(&f->q, &f->chain), 1);
	assert_int_equal(virtq__push(&f->q, f->chain.head, 1), 0);
	assert_false(virtq__should_interrupt(&f->q));
	/* Device -> driver: NO_NOTIFY in used->flags. */
	assert_false(virtq__set_notification(&f->q, false));
	assert_int_equal(used[0] & VIRTQ_USED_F_NO_NOTIFY, VIRTQ_USED_F_NO_NOTIFY);
	assert_false(virtq__set_notification(&f->q, true));
	assert_int_equal(used[0] & VIRTQ_USED_F_NO_NOTIFY, 0);
	test_vring__add_chain(f->guest, &f->ring, &buffer, 1, true);
	assert_true(virtq__set_notification(&f->q, true)); /* raced: keep popping */
}

static void test_event_idx(void **state)
{
	struct fixture *f = *state;
	struct test_buffer buffer = {DATA_BASE, 8, true};
	uint16_t *avail = test_vring__avail(f->guest, &f->ring);
	uint16_t *used_event = &avail[2 + f->ring.size];
	uint16_t *avail_event =
	    (uint16_t *)test_guest__ptr(f->guest, f->ring.used + 4 + 8ull * f->ring.size);

	f->q.event_idx = true;
	for (int i = 0; i < 6; i++)
		test_vring__add_chain(f->guest, &f->ring, &buffer, 1, true);
	avail[0] = VIRTQ_AVAIL_F_NO_INTERRUPT; /* ignored with EVENT_IDX */
	*used_event = 0;
	assert_int_equal(virtq__pop(&f->q, &f->chain), 1);
	assert_int_equal(virtq__push(&f->q, f->chain.head, 1), 0);
	assert_true(virtq__should_interrupt(&f->q)); /* used 1, event 0 crossed */
	*used_event = 3;			     /* interrupt me when used idx passes 3 */
	for (int i = 0; i < 2; i++) {
		assert_int_equal(virtq__pop(&f->q, &f->chain), 1);
		assert_int_equal(virtq__push(&f->q, f->chain.head, 1), 0);
		assert_false(virtq__should_interrupt(&f->q)); /* used 2, 3 */
	}
	assert_int_equal(virtq__pop(&f->q, &f->chain), 1);
	assert_int_equal(virtq__push(&f->q, f->chain.head, 1), 0);
	assert_true(virtq__should_interrupt(&f->q)); /* used 4 passed 3 */
	/* Batch of two pushes crossing the event in the middle still signals. */
	*used_event = 4;
	for (int i = 0; i < 2; i++) {
		assert_int_equal(virtq__pop(&f->q, &f->chain), 1);
		assert_int_equal(virtq__push(&f->q, f->chain.head, 1), 0);
	}
	assert_true(virtq__should_interrupt(&f->q));
	/* Notification request: avail_event = what we consumed. */
	assert_false(virtq__set_notification(&f->q, true));
	assert_int_equal(*avail_event, 6);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_enable_validation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pop_push, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_many_wraparound, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unpop, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_avail_index_jump, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_head_out_of_range, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_buffer_outside_memory, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_buffer_wraps, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_chain_loop, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_next_out_of_range, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_readable_after_writable, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_over_long_direct_chain, setup_big, teardown),
	    cmocka_unit_test_setup_teardown(test_indirect_ok, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_indirect_bad_size, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_indirect_zero_size, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_indirect_too_big, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_indirect_outside_memory, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_indirect_nested, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_indirect_with_next, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_indirect_after_direct, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_indirect_loop, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_indirect_next_out_of_table, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_indirect_not_negotiated, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_interrupt_suppression_flags, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_event_idx, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

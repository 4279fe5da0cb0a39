/* Unit tests for the virtio-mmio v2 register file and state machine
 * (virtio 1.x 4.2.2, 3.1.1): identification, feature negotiation, status
 * transitions, reset, queue setup with good and bad values, interrupts,
 * config space, notification path. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <cmocka.h>

#include "test_driver.h"
#include "virtio_mmio.h"

#define V1 (1ull << VIRTIO_F_VERSION_1)

struct fixture {
	struct test_guest *guest;
	struct virtio_mmio t;
	uint8_t config[8];
	int resets, driver_oks;
	int irq_fd, notify_fd;
	struct test_vring ring;
};

static void on_reset(void *opaque)
{
	((struct fixture *)opaque)->resets++;
}

static void on_driver_ok(void *opaque)
{
	((struct fixture *)opaque)->driver_oks++;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct virtio_mmio_device device = {
	    .device_id = 2,
	    .features = 1ull << 5,
	    .queue_count = 1,
	    .queue_max_size = 64,
	    .config = f->config,
	    .config_size = sizeof(f->config),
	    .opaque = f,
	    .reset = on_reset,
	    .driver_ok = on_driver_ok,
	};

	for (unsigned i = 0; i < sizeof(f->config); i++)
		f->config[i] = (uint8_t)(0x10 + i);
	f->guest = test_guest__create(1 << 20);
	f->irq_fd = eventfd(0, EFD_NONBLOCK);
	f->notify_fd = eventfd(0, EFD_NONBLOCK);
	assert_int_equal(
	    virtio_mmio__init(&f->t, &f->guest->memory, NULL, &device, f->notify_fd, f->irq_fd), 0);
	test_vring__init(f->guest, &f->ring, 16, 0x10000);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	virtio_mmio__uninit(&f->t);
	close(f->irq_fd);
	close(f->notify_fd);
	test_guest__destroy(f->guest);
	free(f);
	return 0;
}

static uint64_t irq_count(struct fixture *f)
{
	uint64_t value = 0;

	if (read(f->irq_fd, &value, sizeof(value)) != sizeof(value))
		return 0;
	return value;
}

static void test_identification(void **state)
{
	struct fixture *f = *state;
	uint8_t byte[2] = {0xaa, 0xaa};

	assert_int_equal(test_mmio__read(&f->t, VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
	assert_int_equal(test_mmio__read(&f->t, VIRTIO_MMIO_VERSION), 2);
	assert_int_equal(test_mmio__read(&f->t, VIRTIO_MMIO_DEVICE_ID), 2);
	assert_int_equal(test_mmio__read(&f->t, VIRTIO_MMIO_VENDOR_ID), VIRTIO_MMIO_VENDOR);
	test_mmio__write(&f->t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	assert_int_equal(test_mmio__read(&f->t, VIRTIO_MMIO_DEVICE_FEATURES),
			 (1u << 5) | (1u << VIRTIO_F_INDIRECT_DESC) | (1u << VIRTIO_F_EVENT_IDX));
	test_mmio__write(&f->t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	assert_int_equal(test_mmio__read(&f->t, VIRTIO_MMIO_DEVICE_FEATURES), 1);
	test_mmio__write(&f->t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 7);
	assert_int_equal(test_mmio__read(&f->t, VIRTIO_MMIO_DEVICE_FEATURES), 0);
	/* Registers are 32-bit only: a 2-byte read of Magic reads 0. */
	virtio_mmio__read(&f->t, VIRTIO_MMIO_MAGIC_VALUE, byte, 2);
	assert_int_equal(byte[0], 0);
	/* Config space reads at any width; past its end reads 0. */
	virtio_mmio__read(&f->t, VIRTIO_MMIO_CONFIG + 6, byte, 2);
	assert_int_equal(byte[0], 0x16);
	assert_int_equal(byte[1], 0x17);
	virtio_mmio__read(&f->t, VIRTIO_MMIO_CONFIG + 7, byte, 2);
	assert_int_equal(byte[0], 0x17);
	assert_int_equal(byte[1], 0);
	virtio_mmio__read(&f->t, 0xfff, byte, 1);
	assert_int_equal(byte[0], 0);
	assert_int_equal(test_mmio__read(&f->t, VIRTIO_MMIO_QUEUE_NUM_MAX), 64);
	test_mmio__write(&f->t, VIRTIO_MMIO_QUEUE_SEL, 1);
	assert_int_equal(test_mmio__read(&f->t, VIRTIO_MMIO_QUEUE_NUM_MAX), 0); /* no queue 1 */
}

static void test_negotiation(void **state)
{
	struct fixture *f = *state;

	/* Legacy driver (no VERSION_1): FEATURES_OK does not stick. */
	assert_int_equal(test_mmio__negotiate(&f->t, 1ull << 5) & VIRTIO_STATUS_FEATURES_OK, 0);
	/* A bit the device did not offer: refused. */
	assert_int_equal(test_mmio__negotiate(&f->t, V1 | (1ull << 6)) & VIRTIO_STATUS_FEATURES_OK,
			 0);
	/* DRIVER_OK without FEATURES_OK is refused too. */
	test_mmio__driver_ok(&f->t);
	assert_int_equal(test_mmio__read(&f->t, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DRIVER_OK, 0);
	assert_int_equal(f->driver_oks, 0);
	/* A good set sticks and can no longer change. */
	assert_int_equal(
	    test_mmio__negotiate(&f->t, V1 | (1ull << 5) | (1ull << VIRTIO_F_EVENT_IDX)) &
		VIRTIO_STATUS_FEATURES_OK,
	    VIRTIO_STATUS_FEATURES_OK);
	assert_true(virtio_mmio__has_feature(&f->t, VIRTIO_F_EVENT_IDX));
	assert_false(virtio_mmio__has_feature(&f->t, VIRTIO_F_INDIRECT_DESC));
	test_mmio__write(&f->t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	test_mmio__write(&f->t, VIRTIO_MMIO_DRIVER_FEATURES, 1u << VIRTIO_F_INDIRECT_DESC);
	assert_false(virtio_mmio__has_feature(&f->t, VIRTIO_F_INDIRECT_DESC));
	test_mmio__setup_queue(&f->t, 0, &f->ring);
	assert_int_equal(test_mmio__read(&f->t, VIRTIO_MMIO_QUEUE_READY), 1);
	test_mmio__driver_ok(&f->t);
	assert_int_equal(f->driver_oks, 1);
	virtio_mmio__lock(&f->t);
	assert_non_null(virtio_mmio__queue(&f->t, 0));
	assert_true(f->t.queues[0].event_idx);
	virtio_mmio__unlock(&f->t);
}

static void test_reset(void **state)
{
	struct fixture *f = *state;
	uint32_t generation = virtio_mmio__generation(&f->t);

	test_mmio__negotiate(&f->t, V1);
	test_mmio__setup_queue(&f->t, 0, &f->ring);
	test_mmio__driver_ok(&f->t);
	test_mmio__write(&f->t, VIRTIO_MMIO_STATUS, 0);
	assert_int_equal(test_mmio__read(&f->t, VIRTIO_MMIO_STATUS), 0);
	assert_int_equal(test_mmio__read(&f->t, VIRTIO_MMIO_QUEUE_READY), 0);
	assert_true(f->resets >= 1);
	assert_int_not_equal(virtio_mmio__generation(&f->t), generation);
	virtio_mmio__lock(&f->t);
	assert_null(virtio_mmio__queue(&f->t, 0));
	assert_false(virtio_mmio__has_feature(&f->t, VIRTIO_F_VERSION_1));
	virtio_mmio__unlock(&f->t);
}

static void test_bad_queue_size_needs_reset(void **state)
{
	struct fixture *f = *state;
	struct test_vring bad = f->ring;

	test_mmio__negotiate(&f->t, V1);
	test_mmio__driver_ok(&f->t);
	irq_count(f);
	bad.size = 24; /* not a power of two */
	test_mmio__setup_queue(&f->t, 0, &bad);
	assert_int_equal(test_mmio__read(&f->t, VIRTIO_MMIO_QUEUE_READY), 0);
	assert_true(test_mmio__read(&f->t, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	assert_int_equal(test_mmio__read(&f->t, VIRTIO_MMIO_INTERRUPT_STATUS) &
			     VIRTIO_INTERRUPT_CONFIG,
			 VIRTIO_INTERRUPT_CONFIG);
	assert_int_equal(irq_count(f), 1);
	assert_int_equal(f->t.needs_reset_count, 1);
	/* The driver cannot clear NEEDS_RESET except by a reset. */
	test_mmio__driver_ok(&f->t);
	assert_true(test_mmio__read(&f->t, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	test_mmio__write(&f->t, VIRTIO_MMIO_STATUS, 0);
	assert_int_equal(test_mmio__read(&f->t, VIRTIO_MMIO_STATUS), 0);
	/* After a reset, a good queue works again. */
	test_mmio__negotiate(&f->t, V1);
	test_mmio__setup_queue(&f->t, 0, &f->ring);
	assert_int_equal(test_mmio__read(&f->t, VIRTIO_MMIO_QUEUE_READY), 1);

	/* Too big and ring outside memory. */
	test_mmio__negotiate(&f->t, V1);
	bad = f->ring;
	bad.size = 128;
	test_mmio__setup_queue(&f->t, 0, &bad);
	assert_true(test_mmio__read(&f->t, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	test_mmio__negotiate(&f->t, V1);
	bad = f->ring;
	bad.used = 0x7fff0000000ull;
	test_mmio__setup_queue(&f->t, 0, &bad);
	assert_true(test_mmio__read(&f->t, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	assert_int_equal(f->t.needs_reset_count, 3);
}

static void test_queue_registers_locked_while_ready(void **state)
{
	struct fixture *f = *state;

	test_mmio__negotiate(&f->t, V1);
	test_mmio__setup_queue(&f->t, 0, &f->ring);
	test_mmio__write(&f->t, VIRTIO_MMIO_QUEUE_NUM, 2);
	test_mmio__write(&f->t, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x999000);
	assert_int_equal(f->t.queue_regs[0].num, 16);
	assert_int_equal(f->t.queue_regs[0].desc, f->ring.desc);
	/* Out-of-range QueueSel writes are ignored. */
	test_mmio__write(&f->t, VIRTIO_MMIO_QUEUE_SEL, 9);
	test_mmio__write(&f->t, VIRTIO_MMIO_QUEUE_NUM, 8);
	test_mmio__write(&f->t, VIRTIO_MMIO_QUEUE_READY, 1);
	assert_int_equal(test_mmio__read(&f->t, VIRTIO_MMIO_QUEUE_READY), 0);
}

static void test_interrupt_and_notify(void **state)
{
	struct fixture *f = *state;
	struct test_buffer buffer = {0x40000, 8, true};
	struct virtq_chain *chain = malloc(sizeof(*chain));
	struct virtq *q;
	uint64_t counter = 0;

	test_mmio__negotiate(&f->t, V1);
	test_mmio__setup_queue(&f->t, 0, &f->ring);
	test_mmio__driver_ok(&f->t);
	test_vring__add_chain(f->guest, &f->ring, &buffer, 1, true);
	test_mmio__write(&f->t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	assert_int_equal(read(f->notify_fd, &counter, sizeof(counter)), sizeof(counter));
	assert_int_equal(counter, 1);
	virtio_mmio__lock(&f->t);
	q = virtio_mmio__queue(&f->t, 0);
	assert_int_equal(virtq__pop(q, chain), 1);
	assert_int_equal(virtq__push(q, chain->head, 8), 0);
	virtio_mmio__signal_used(&f->t, 0);
	virtio_mmio__unlock(&f->t);
	assert_int_equal(irq_count(f), 1);
	assert_int_equal(test_mmio__read(&f->t, VIRTIO_MMIO_INTERRUPT_STATUS),
			 VIRTIO_INTERRUPT_USED);
	test_mmio__write(&f->t, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_INTERRUPT_USED);
	assert_int_equal(test_mmio__read(&f->t, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	/* A ring violation: NEEDS_RESET, config interrupt, queue unusable. */
	test_vring__publish(f->guest, &f->ring, 200);
	virtio_mmio__lock(&f->t);
	q = virtio_mmio__queue(&f->t, 0);
	assert_int_equal(virtq__pop(q, chain), -EPROTO);
	virtio_mmio__needs_reset(&f->t, q->error);
	assert_null(virtio_mmio__queue(&f->t, 0));
	virtio_mmio__unlock(&f->t);
	assert_int_equal(test_mmio__read(&f->t, VIRTIO_MMIO_INTERRUPT_STATUS),
			 VIRTIO_INTERRUPT_CONFIG);
	assert_int_equal(f->t.last_error, VIRTQ_ERROR_HEAD);
	free(chain);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_identification, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_negotiation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_queue_size_needs_reset, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_queue_registers_locked_while_ready, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_interrupt_and_notify, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

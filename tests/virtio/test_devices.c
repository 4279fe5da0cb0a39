/* virtio_devices__create: JSON config -> device on an mmio_bus, without a
 * VM (vm_fd -1: plain eventfds). Checks registration (Magic through the
 * bus), config errors, metrics and the rate-limit update entry point. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "event_loop.h"
#include "mmio_bus.h"
#include "test_driver.h"
#include "virtio_devices.h"

static void test_create_block(void **unused)
{
	struct test_guest *guest = test_guest__create(1 << 20);
	struct event_loop *loop = event_loop__create(64);
	struct mmio_bus *bus = mmio_bus__create();
	struct vmm_device_host host = {
	    .vm_fd = -1, .memory = &guest->memory, .loop = loop, .bus = bus};
	struct vmm_device device, other;
	char path[] = "/tmp/warren-devices-XXXXXX";
	char error[256], config_text[512];
	uint8_t data[4] = {0};
	json_t *config, *metrics, *limit;
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	close(fd);
	snprintf(config_text, sizeof(config_text),
		 "{\"type\":\"block\",\"path\":\"%s\",\"read_only\":true,"
		 "\"rate_limiter\":{\"ops\":{\"size\":100,\"refill_time\":1000}}}",
		 path);
	config = json_loads(config_text, 0, NULL);
	/* Created the way the VM does: through the type table the binary hands it. */
	assert_non_null(mmio_bus__device_type(virtio_device_types, "block"));
	assert_int_equal(
	    mmio_bus__device_type(virtio_device_types, "block")
		->create(&host, config, MMIO_BUS_VIRTIO_BASE, 5, &device, error, sizeof(error)),
	    0);
	assert_string_equal(device.type, "block");
	assert_true(device.set_rate_limit == virtio_device__set_rate_limit);
	assert_int_equal(device.mmio_size, MMIO_BUS_VIRTIO_WINDOW);
	assert_true(mmio_bus__dispatch(bus, MMIO_BUS_MEMORY, MMIO_BUS_VIRTIO_BASE, data, 4, false));
	assert_memory_equal(data, "virt", 4);
	assert_true(
	    mmio_bus__dispatch(bus, MMIO_BUS_MEMORY, MMIO_BUS_VIRTIO_BASE + 8, data, 4, false));
	assert_int_equal(data[0], 2); /* block */
	/* The same window twice is refused. */
	assert_int_equal(virtio_devices__create(&host, config, MMIO_BUS_VIRTIO_BASE, 6, &other,
						error, sizeof(error)),
			 -EEXIST);
	metrics = device.metrics(device.opaque);
	assert_int_equal(json_integer_value(json_object_get(metrics, "capacity_sectors")), 2048);
	assert_true(json_is_true(json_object_get(metrics, "read_only")));
	json_decref(metrics);
	limit = json_loads("{\"bandwidth\":{\"size\":1048576,\"refill_time\":100}}", 0, NULL);
	assert_int_equal(virtio_device__set_rate_limit(device.opaque, limit, error, sizeof(error)),
			 0);
	json_decref(limit);
	limit = json_loads("{\"bandwidth\":{\"size\":\"x\"}}", 0, NULL);
	assert_int_equal(virtio_device__set_rate_limit(device.opaque, limit, error, sizeof(error)),
			 -EINVAL);
	json_decref(limit);
	metrics = virtio_device__metrics(device.opaque);
	assert_int_equal(
	    json_integer_value(json_object_get(
		json_object_get(json_object_get(metrics, "rate_limiter"), "bandwidth"), "size")),
	    1048576);
	json_decref(metrics);
	device.destroy(device.opaque);
	json_decref(config);
	unlink(path);
	mmio_bus__destroy(bus);
	event_loop__destroy(loop);
	test_guest__destroy(guest);
}

static void test_config_errors(void **unused)
{
	struct test_guest *guest = test_guest__create(1 << 20);
	struct event_loop *loop = event_loop__create(64);
	struct vmm_device_host host = {.vm_fd = -1, .memory = &guest->memory, .loop = loop};
	struct vmm_device device;
	char error[256];
	const char *cases[][2] = {
	    {"{\"type\":\"floppy\"}", "unknown device type"},
	    {"{\"path\":\"/x\"}", "type"},
	    {"{\"type\":\"block\"}", "path is required"},
	    {"{\"type\":\"block\",\"path\":\"/nonexistent/x\"}", "cannot open"},
	    {"{\"type\":\"block\",\"path\":\"/dev/null\",\"queue_size\":100}", "power of two"},
	    {"{\"type\":\"net\",\"tap\":\"t0\"}", "mac"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *config = json_loads(cases[i][0], 0, NULL);

		error[0] = 0;
		assert_true(virtio_devices__create(&host, config, MMIO_BUS_VIRTIO_BASE, 5, &device,
						   error, sizeof(error)) < 0);
		if (!strstr(error, cases[i][1]))
			fail_msg("case %zu: error \"%s\" lacks \"%s\"", i, error, cases[i][1]);
		json_decref(config);
	}
	event_loop__destroy(loop);
	test_guest__destroy(guest);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_create_block),
	    cmocka_unit_test(test_config_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

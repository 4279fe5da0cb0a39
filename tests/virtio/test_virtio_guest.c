/* Integration: a freestanding guest drives warren-vmm's virtio-blk from
 * CPL3 (tests/virtio/guests/virtio_blk_guest.c): write a pattern, flush,
 * read back and compare, GET_ID, an out-of-range read. The VMM is driven
 * over its control socket with the block device in the config; the host
 * then checks the image file and the device metrics. Skips (77) without
 * /dev/kvm. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "tap_test_support.h"
#include "vmm_test_support.h"
#include "vmm_test_util.h"

static void print_json(const char *label, const json_t *value)
{
	char *text = value ? json_dumps(value, 0) : NULL;

	printf("%s: %s\n", label, text ? text : "(none)");
	free(text);
}

static void session_close(struct vmm_session *session)
{
	json_t *response = vmm_test__request(session, "{\"op\":\"exit\"}");
	int status;

	json_decref(response);
	for (int i = 0; i < 200; i++) {
		if (waitpid(session->pid, &status, WNOHANG) == session->pid)
			goto out;
		vmm_test__sleep_ms(10);
	}
	kill(session->pid, SIGKILL);
	waitpid(session->pid, &status, 0);
out:
	vmm_client__close(&session->client);
	unlink(session->path);
}

static void test_blk_guest(void **unused)
{
	struct vmm_session *session = calloc(1, sizeof(*session));
	char image[] = "/tmp/warren-virtio-guest-XXXXXX";
	char line[2048];
	uint8_t data[32 * 512];
	json_t *response = NULL, *state = NULL;
	const char *console;
	int fd = mkstemp(image);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	close(fd);
	assert_int_equal(vmm_test__session_open(session, "virtio-guest"), 0);
	snprintf(line, sizeof(line),
		 "{\"op\":\"configure\",\"config\":{\"kernel\":\"%s\",\"memory_mib\":32,"
		 "\"vcpus\":1,\"cpu_profile\":\"baseline\",\"devices\":[{\"type\":\"block\","
		 "\"path\":\"%s\",\"id\":\"warren-guest-disk\"}]}}",
		 vmm_test__guest("virtio_blk_guest"), image);
	response = vmm_test__request(session, line);
	if (!response || !json_is_true(json_object_get(response, "ok")))
		print_json("configure", response), fail();
	json_decref(response);
	response = vmm_test__request(session, "{\"op\":\"start\"}");
	if (!response || !json_is_true(json_object_get(response, "ok")))
		print_json("start", response), fail();
	json_decref(response);
	for (int i = 0; i < 3000; i++) { /* 30 s */
		state = vmm_test__request(session, "{\"op\":\"state\"}");
		assert_non_null(state);
		if (i % 100 == 0)
			print_json("state", state);
		if (strcmp(json_string_value(json_object_get(state, "state")), "stopped") == 0)
			break;
		json_decref(state);
		state = NULL;
		vmm_test__sleep_ms(10);
	}
	response = vmm_test__request(session, "{\"op\":\"console\",\"bytes\":4000}");
	console = response ? json_string_value(json_object_get(response, "data")) : NULL;
	printf("console:\n%s\n", console ? console : "(none)");
	if (!state)
		fail_msg("the guest did not stop within 30 s");
	print_json("state", state);
	assert_string_equal(json_string_value(json_object_get(state, "exit_reason")), "debug-exit");
	assert_int_equal(json_integer_value(json_object_get(state, "exit_code")), 0);
	assert_non_null(console);
	assert_non_null(strstr(console, "virtio-blk guest ok"));
	json_decref(response);
	json_decref(state);
	response = vmm_test__request(session, "{\"op\":\"metrics\"}");
	print_json("metrics", response);
	{
		json_t *device = json_array_get(json_object_get(response, "devices"), 0);
		json_t *metrics = json_object_get(device, "metrics");

		assert_int_equal(json_integer_value(json_object_get(metrics, "writes")), 1);
		assert_int_equal(json_integer_value(json_object_get(metrics, "flushes")), 1);
		assert_int_equal(json_integer_value(json_object_get(metrics, "read_bytes")), 16384);
		assert_int_equal(json_integer_value(json_object_get(metrics, "errors")), 1);
		assert_int_equal(json_integer_value(json_object_get(metrics, "needs_reset")), 0);
	}
	json_decref(response);
	session_close(session);

	/* The image on the host holds the guest's pattern at sector 8. */
	fd = open(image, O_RDONLY);
	assert_int_equal(pread(fd, data, sizeof(data), 8 * 512), sizeof(data));
	close(fd);
	for (uint32_t i = 0; i < sizeof(data); i++)
		if (data[i] != (uint8_t)(i * 7 + 3))
			fail_msg("image byte %u is %u", i, data[i]);
	unlink(image);
	free(session);
}

static bool in_namespace;

/* The guest waits for a frame from the host, then sends four; the tap
 * lives in this test's own network namespace (the VMM inherits it). */
static void test_net_guest(void **unused)
{
	struct vmm_session *session = calloc(1, sizeof(*session));
	struct sockaddr_ll address = {0};
	uint8_t frame[64] = {0}, received[2048];
	char line[2048];
	json_t *response, *state = NULL;
	const char *console;
	unsigned guest_frames = 0, ifindex = 0;
	int packet_fd;

	if (!in_namespace)
		skip();
	assert_int_equal(vmm_test__session_open(session, "virtio-guest"), 0);
	snprintf(line, sizeof(line),
		 "{\"op\":\"configure\",\"config\":{\"kernel\":\"%s\",\"memory_mib\":32,"
		 "\"vcpus\":1,\"cpu_profile\":\"baseline\",\"devices\":[{\"type\":\"net\","
		 "\"tap\":\"wvtap0\",\"mac\":\"02:00:00:00:00:02\"}]}}",
		 vmm_test__guest("virtio_net_guest"));
	response = vmm_test__request(session, line);
	if (!response || !json_is_true(json_object_get(response, "ok")))
		print_json("configure", response), fail();
	json_decref(response);
	response = vmm_test__request(session, "{\"op\":\"start\"}");
	if (!response || !json_is_true(json_object_get(response, "ok")))
		print_json("start", response), fail();
	json_decref(response);
	for (int i = 0; i < 500 && !(ifindex = if_nametoindex("wvtap0")); i++)
		vmm_test__sleep_ms(10);
	assert_true(ifindex > 0);
	assert_int_equal(test_tap__interface_up("wvtap0"), 0);
	packet_fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(0x88b5));
	assert_true(packet_fd >= 0);
	address.sll_family = AF_PACKET;
	address.sll_protocol = htons(0x88b5);
	address.sll_ifindex = (int)ifindex;
	assert_int_equal(bind(packet_fd, (struct sockaddr *)&address, sizeof(address)), 0);
	address.sll_halen = 6;
	memset(address.sll_addr, 0xff, 6);
	memset(frame, 0xff, 6);
	memcpy(frame + 6, "\x02\x00\x00\x00\x00\xfe", 6);
	frame[12] = 0x88;
	frame[13] = 0xb5;
	memcpy(frame + 14, "warren-host", 11);

	for (int i = 0; i < 1500; i++) { /* 30 s */
		ssize_t got;

		if (i % 5 == 0)
			sendto(packet_fd, frame, sizeof(frame), 0, (struct sockaddr *)&address,
			       sizeof(address));
		while ((got = recv(packet_fd, received, sizeof(received), 0)) > 0)
			if (got >= 27 && memcmp(received + 14, "warren-guest-", 13) == 0 &&
			    memcmp(received + 6, "\x02\x00\x00\x00\x00\x02", 6) == 0)
				guest_frames++;
		state = vmm_test__request(session, "{\"op\":\"state\"}");
		assert_non_null(state);
		if (strcmp(json_string_value(json_object_get(state, "state")), "stopped") == 0)
			break;
		json_decref(state);
		state = NULL;
		vmm_test__sleep_ms(20);
	}
	vmm_test__sleep_ms(50);
	while (recv(packet_fd, received, sizeof(received), 0) > 0)
		if (memcmp(received + 14, "warren-guest-", 13) == 0)
			guest_frames++;
	close(packet_fd);
	response = vmm_test__request(session, "{\"op\":\"console\",\"bytes\":4000}");
	console = response ? json_string_value(json_object_get(response, "data")) : NULL;
	printf("console:\n%s\n", console ? console : "(none)");
	if (!state)
		fail_msg("the guest did not stop within 30 s");
	print_json("state", state);
	assert_int_equal(json_integer_value(json_object_get(state, "exit_code")), 0);
	assert_non_null(console);
	assert_non_null(strstr(console, "virtio-net guest ok"));
	json_decref(response);
	json_decref(state);
	response = vmm_test__request(session, "{\"op\":\"metrics\"}");
	print_json("metrics", response);
	{
		json_t *device = json_array_get(json_object_get(response, "devices"), 0);
		json_t *metrics = json_object_get(device, "metrics");

		assert_int_equal(json_integer_value(json_object_get(metrics, "tx_packets")), 4);
		assert_true(json_integer_value(json_object_get(metrics, "rx_packets")) >= 1);
	}
	json_decref(response);
	session_close(session);
	printf("guest frames seen on the tap: %u\n", guest_frames);
	assert_int_equal(guest_frames, 4);
	free(session);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_blk_guest),
	    cmocka_unit_test(test_net_guest),
	};
	FILE *sysctl;

	setvbuf(stdout, NULL, _IONBF, 0);
	if (!vmm_test__have_kvm())
		return 77;
	/* The net test's tap lives in a namespace of our own: no route out, gone
	 * with the process. Without the privilege the net test is skipped. */
	if (unshare(CLONE_NEWNET) == 0) {
		in_namespace = true;
		sysctl = fopen("/proc/sys/net/ipv6/conf/default/disable_ipv6", "w");
		if (sysctl) {
			fputs("1", sysctl);
			fclose(sysctl);
		}
	} else {
		printf("net guest test will be skipped: unshare(CLONE_NEWNET): %s\n",
		       strerror(errno));
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}

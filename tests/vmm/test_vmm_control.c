/* Integration: the control socket drives a VM: configure, start, state,
 * console tail, pause/resume, metrics, stop (a spinning guest ends with
 * exit reason "stopped"), exit. Needs /dev/kvm. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "vmm_test_support.h"
#include "vmm_test_util.h"

/* Sends one request line, returns the parsed response (caller decrefs). */
static json_t *request(struct vmm_session *session, const char *line)
{
	json_t *response = vmm_test__request(session, line);

	printf("> %s\n< %s\n", line, response ? "(json)" : "(invalid)");
	return response;
}

static bool ok(json_t *response)
{
	return response && json_is_true(json_object_get(response, "ok"));
}

static const char *state_of(struct vmm_session *session)
{
	static char state[32];
	json_t *response = request(session, "{\"op\":\"state\"}");

	snprintf(state, sizeof(state), "%s",
		 response ? json_string_value(json_object_get(response, "state")) : "?");
	json_decref(response);
	return state;
}

/* Hostile or malformed requests to an empty VMM each get an error and the
 * VMM stays up, still in state "empty". */
static void control__reject_malformed(struct vmm_session *session)
{
	json_t *response = request(session, "not json");

	assert_false(ok(response));
	json_decref(response);
	response = request(session, "{\"op\":\"start\"}");
	assert_false(ok(response)); /* not configured */
	json_decref(response);
	response =
	    request(session, "{\"op\":\"configure\",\"config\":{\"kernel\":\"x\",\"bogus\":1}}");
	assert_false(ok(response));
	assert_non_null(strstr(json_string_value(json_object_get(response, "error")), "bogus"));
	json_decref(response);
	response = request(session, "{\"op\":\"frobnicate\"}");
	assert_false(ok(response));
	json_decref(response);
	assert_string_equal(state_of(session), "empty");
}

/* Creates the 1 MiB disk file at disk, configures the spin guest with it as
 * its one block device, starts it and waits until the guest has printed
 * "spinning" (asserting each state change on the way). */
static void control__configure_and_start(struct vmm_session *session, const char *disk)
{
	char line[1024];
	json_t *response;
	int fd = open(disk, O_CREAT | O_RDWR | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	close(fd);
	snprintf(line, sizeof(line),
		 "{\"op\":\"configure\",\"config\":{\"kernel\":\"%s\",\"memory_mib\":32,"
		 "\"vcpus\":1,\"cpu_profile\":\"baseline\",\"devices\":[{\"type\":\"block\","
		 "\"path\":\"%s\"}]}}",
		 vmm_test__guest("spin"), disk);
	response = request(session, line);
	assert_true(ok(response));
	json_decref(response);
	assert_string_equal(state_of(session), "configured");
	response = request(session, "{\"op\":\"start\"}");
	assert_true(ok(response));
	json_decref(response);
	assert_string_equal(state_of(session), "running");

	for (int i = 0; i < 1000; i++) { /* the guest prints before it spins */
		response = request(session, "{\"op\":\"console\",\"bytes\":100}");
		assert_true(ok(response));
		if (strstr(json_string_value(json_object_get(response, "data")), "spinning")) {
			json_decref(response);
			break;
		}
		json_decref(response);
		assert_true(i < 999);
		vmm_test__sleep_ms(10);
	}
}

/* On the running spin guest: a snapshot is refused until paused; paused, a
 * snapshot writes the state and a sparse memory file (removed again), an
 * empty path is refused, the registers show rip inside the guest image;
 * then resumes it. */
static void control__pause_snapshot_resume(struct vmm_session *session)
{
	char line[1024], snapshot[128], memory_file[160];
	json_t *response;

	snprintf(snapshot, sizeof(snapshot), "/tmp/warren-control-snapshot-%d", (int)getpid());
	snprintf(line, sizeof(line), "{\"op\":\"snapshot\",\"path\":\"%s\"}", snapshot);
	response = request(session, line);
	assert_false(ok(response)); /* running: pause first */
	assert_non_null(strstr(json_string_value(json_object_get(response, "error")), "pause"));
	json_decref(response);
	response = request(session, "{\"op\":\"pause\"}");
	assert_true(ok(response));
	json_decref(response);
	assert_string_equal(state_of(session), "paused");
	/* a paused VM is saved: the state file and the sparse memory file */
	response = request(session, line);
	assert_true(ok(response));
	assert_int_equal(json_integer_value(json_object_get(response, "memory_bytes")), 32 << 20);
	assert_true(json_integer_value(json_object_get(response, "memory_bytes_written")) > 0);
	assert_true(json_integer_value(json_object_get(response, "memory_bytes_written")) <
		    (16 << 20)); /* only what the guest touched */
	json_decref(response);
	assert_int_equal(access(snapshot, R_OK), 0);
	snprintf(memory_file, sizeof(memory_file), "%s.mem", snapshot);
	assert_int_equal(access(memory_file, R_OK), 0);
	unlink(snapshot);
	unlink(memory_file);
	response = request(session, "{\"op\":\"snapshot\",\"path\":\"\"}");
	assert_false(ok(response));
	json_decref(response);
	response = request(session, "{\"op\":\"registers\"}");
	assert_true(ok(response));
	{
		json_t *vcpu = json_array_get(json_object_get(response, "vcpus"), 0);
		json_int_t rip = json_integer_value(json_object_get(vcpu, "rip"));

		printf("paused spin guest at rip 0x%llx\n", (unsigned long long)rip);
		assert_true(rip >= 0x100000 && rip < 0x110000); /* inside the guest image */
	}
	json_decref(response);
	response = request(session, "{\"op\":\"resume\"}");
	assert_true(ok(response));
	json_decref(response);
	assert_string_equal(state_of(session), "running");
}

/* On the running guest: metrics count I/O exits, one boot marker and the
 * block device on irq 5; a rate limit is accepted for device 0 and refused
 * for a device that does not exist. */
static void control__metrics_and_rate_limit(struct vmm_session *session)
{
	json_t *response = request(session, "{\"op\":\"metrics\"}");
	json_t *devices;

	assert_true(ok(response));
	assert_true(json_integer_value(json_object_get(json_object_get(response, "exits"), "io")) >
		    0);
	assert_int_equal(json_array_size(json_object_get(response, "boot_markers_ns")), 1);
	devices = json_object_get(response, "devices");
	assert_int_equal(json_array_size(devices), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(devices, 0), "type")),
			    "block");
	assert_int_equal(json_integer_value(json_object_get(json_array_get(devices, 0), "irq")), 5);
	json_decref(response);

	response = request(session, "{\"op\":\"rate_limit\",\"device\":0,\"config\":"
				    "{\"bandwidth\":{\"size\":1048576,\"refill_time\":100}}}");
	assert_true(ok(response));
	json_decref(response);
	response = request(session, "{\"op\":\"rate_limit\",\"device\":7,\"config\":{}}");
	assert_false(ok(response));
	json_decref(response);
}

/* On the running guest: registers are refused (only while paused); stop
 * ends the VM with exit reason "stopped"; exit ends the VMM with status
 * 103 and removes its socket file. */
static void control__stop_and_exit(struct vmm_session *session)
{
	json_t *response = request(session, "{\"op\":\"registers\"}");
	int status = 0;

	assert_false(ok(response)); /* only while paused */
	json_decref(response);
	response = request(session, "{\"op\":\"stop\"}");
	assert_true(ok(response));
	json_decref(response);
	for (int i = 0; i < 1000 && strcmp(state_of(session), "stopped") != 0; i++)
		vmm_test__sleep_ms(10);
	response = request(session, "{\"op\":\"state\"}");
	assert_string_equal(json_string_value(json_object_get(response, "state")), "stopped");
	assert_string_equal(json_string_value(json_object_get(response, "exit_reason")), "stopped");
	json_decref(response);

	response = request(session, "{\"op\":\"exit\"}");
	assert_true(ok(response));
	json_decref(response);
	while (waitpid(session->pid, &status, 0) < 0 && errno == EINTR)
		;
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 103);
	vmm_client__close(&session->client);
	assert_int_equal(access(session->path, F_OK), -1); /* socket file removed */
}

static void test_control_socket(void **unused)
{
	struct vmm_session *session = calloc(1, sizeof(*session));
	char disk[128];

	assert_int_equal(vmm_test__session_open(session, "vmm-test"), 0);
	control__reject_malformed(session);
	snprintf(disk, sizeof(disk), "/tmp/warren-vmm-control-disk-%d", getpid());
	control__configure_and_start(session, disk);
	control__pause_snapshot_resume(session);
	control__metrics_and_rate_limit(session);
	control__stop_and_exit(session);
	unlink(disk);
	free(session);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_control_socket),
	};

	if (!vmm_test__have_kvm())
		return 77;
	return cmocka_run_group_tests(tests, NULL, NULL);
}

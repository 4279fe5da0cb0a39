/* Integration: each test guest boots under warren-vmm and its check passes;
 * guests that reset, triple-fault or spin are stopped with a clear exit
 * reason. Needs /dev/kvm (skipped with the reason otherwise). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "vmm_test_util.h"

static struct vmm_run run;

static void boot(const char *guest, const char *timeout_ms)
{
	const char *args[] = {
	    "--kernel", vmm_test__guest(guest), "--memory", "64", "--timeout-ms", timeout_ms, NULL};

	assert_int_equal(vmm_test__run(args, &run), 0);
	printf("%s: status %d in %.3f s\n  console: %s\n  stderr: %s\n", guest, run.status,
	       run.seconds, run.console, run.stderr_text);
}

static void test_hello(void **state)
{
	boot("hello", "10000");
	assert_int_equal(run.status, 0);
	assert_non_null(strstr(run.console, ">hello from warren guest\n"));
	assert_non_null(strstr(run.stderr_text, "exit reason=debug-exit code=0 status=0"));
}

/* Application processors wait for INIT/SIPI (an MP table announces them);
 * the BSP runs the guest and the VM stops cleanly with all threads. */
static void test_hello_four_vcpus(void **state)
{
	const char *args[] = {
	    "--kernel", vmm_test__guest("hello"), "--vcpus", "4", "--timeout-ms", "10000", NULL};

	assert_int_equal(vmm_test__run(args, &run), 0);
	printf("hello, 4 vCPUs: status %d in %.3f s\n", run.status, run.seconds);
	assert_int_equal(run.status, 0);
	assert_non_null(strstr(run.console, "hello from warren guest"));
}

static void test_roundtrip(void **state)
{
	boot("roundtrip", "10000");
	assert_non_null(strstr(run.console, "roundtrip ok"));
	assert_int_equal(run.status, 0);
}

static void test_timer(void **state)
{
	boot("timer", "10000");
	assert_non_null(strstr(run.console, "timer ok"));
	assert_int_equal(run.status, 0);
}

static void test_serial_irq(void **state)
{
	boot("serial_irq", "10000");
	assert_non_null(strstr(run.console, ">123\nserial irq ok"));
	assert_int_equal(run.status, 0);
}

static void test_reset(void **state)
{
	boot("reset", "10000");
	assert_int_equal(run.status, 100);
	assert_non_null(strstr(run.stderr_text, "exit reason=reset"));
	assert_null(strstr(run.console, "still running"));
}

static void test_triple_fault(void **state)
{
	boot("triple_fault", "10000");
	assert_int_equal(run.status, 101);
	assert_non_null(strstr(run.stderr_text, "exit reason=shutdown"));
	assert_non_null(strstr(run.stderr_text, "triple fault"));
}

static void test_spin_watchdog(void **state)
{
	boot("spin", "300");
	assert_int_equal(run.status, 102);
	assert_non_null(strstr(run.stderr_text, "exit reason=watchdog"));
	assert_true(run.seconds >= 0.3);
	assert_true(run.seconds < 10.0);
}

static void test_syscall_probe(void **state)
{
	boot("syscall_probe", "20000");
	assert_non_null(strstr(run.console, "cpl3 loop done"));
	if (run.status == 0) {
		assert_non_null(strstr(run.console, "SYSCALL reached the guest kernel"));
		printf("SYSCALL probe: SYSCALL from CPL3 reaches the guest kernel "
		       "(hardware KVM: Linux user space can run)\n");
	} else {
		assert_int_equal(run.status, 2);
		assert_non_null(strstr(run.console, "SYSCALL did not reach the guest kernel"));
		printf("SYSCALL probe: SYSCALL from CPL3 does not reach the guest kernel "
		       "(kvm_pvm-like host: Linux user space cannot run)\n");
	}
}

/* warren-vmm --probe boots the embedded copy of the same guest and prints
 * one JSON line: "hardware" (exit 0) or "limited" (exit 3). */
static void test_probe_command(void **state)
{
	char command[4200], line[1024] = "";
	FILE *pipe;
	int status;

	snprintf(command, sizeof(command), "%s --probe", vmm_test__binary());
	pipe = popen(command, "r");
	assert_non_null(pipe);
	if (fgets(line, sizeof(line), pipe) == NULL)
		line[0] = 0;
	status = pclose(pipe);
	printf("warren-vmm --probe: %s", line);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 0) {
		assert_non_null(strstr(line, "\"kvm\":\"hardware\""));
	} else {
		assert_int_equal(WEXITSTATUS(status), 3);
		assert_non_null(strstr(line, "\"kvm\":\"limited\""));
		assert_non_null(strstr(line, "SYSCALL did not reach the guest kernel"));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hello),	  cmocka_unit_test(test_hello_four_vcpus),
	    cmocka_unit_test(test_roundtrip),	  cmocka_unit_test(test_timer),
	    cmocka_unit_test(test_serial_irq),	  cmocka_unit_test(test_reset),
	    cmocka_unit_test(test_triple_fault),  cmocka_unit_test(test_spin_watchdog),
	    cmocka_unit_test(test_syscall_probe), cmocka_unit_test(test_probe_command),
	};

	if (!vmm_test__have_kvm())
		return 77;
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The worker's jailed VMM start without KVM (labels integration vmm
 * security; root, skipped otherwise): runtime__start(RUNTIME_VM) with a
 * stand-in kernel and template, in a network namespace of the test's own.
 * warren-vmm must get through the jail (its own uid, cgroup, pivot_root;
 * the tap opened before the drop) and fail only at creating the VM (no
 * /dev/kvm here; a bad kernel where there is one); the start then fails
 * cleanly: no state dir, no cgroup, no process left. With KVM the full
 * jailed boot is checked by tests/worker/test_worker_runtime_vm.c. */
#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "warren/jail_cgroup.h"
#include "runtime.h"
#include "settings.h"
#include "warren/ids.h"

static char base[] = "/tmp/warren-vmm-wjail-XXXXXX";

static int write_file(const char *path, const char *text, off_t size)
{
	FILE *file = fopen(path, "w");

	if (file == NULL || fputs(text, file) < 0 || fclose(file) != 0)
		return -1;
	return size ? truncate(path, size) : 0;
}

static void test_jailed_start_fails_cleanly(void **unused)
{
	char sandbox_id[IDS_SANDBOX_ID_LEN + 1], err[2048] = "", dir[512];
	struct runtime_instance *instance;
	struct jail_cgroup cgroup;
	struct stat st;

	(void)unused;
	assert_int_equal(ids__sandbox_id(sandbox_id), 0);
	struct runtime_start spec = {
	    .sandbox_id = sandbox_id,
	    .template_id = "fake",
	    .netns_path = NULL,
	    .token_hash = NULL,
	    .memory_mib = 64,
	    .vcpus = 1,
	};
	instance = runtime__start(RUNTIME_VM, &spec, err, sizeof(err));
	if (instance) {
		runtime__stop(instance);
		fail_msg("a stand-in kernel started");
	}
	printf("runtime__start(vm): %s\n", err);
	/* Through the jail, stopped by the VM itself. */
	assert_non_null(strstr(err, "exited at start"));
	assert_non_null(strstr(err, "cannot start the VM"));
	assert_null(strstr(err, "jail:"));
	assert_null(strstr(err, "hardening failed"));
	/* Without KVM the host has no /dev/kvm (ENOENT): ENODEV means the VMM
	 * opened the jail's own node, i.e. it ran inside the jail. */
	if (access("/dev/kvm", F_OK) != 0)
		assert_non_null(strstr(err, "/dev/kvm: No such device"));
	/* Nothing left behind. */
	snprintf(dir, sizeof(dir), "%s/state/%s", base, sandbox_id);
	assert_int_equal(stat(dir, &st), -1);
	assert_int_equal(jail_cgroup__paths(&cgroup, "warren-vm", sandbox_id), 0);
	for (int i = 0; i < JAIL_CGROUP_DIRS; i++)
		if (cgroup.dirs[i][0])
			assert_int_equal(stat(cgroup.dirs[i], &st), -1);
}

static void test_bad_uid_base_refused(void **unused)
{
	char sandbox_id[IDS_SANDBOX_ID_LEN + 1], err[1024] = "";
	struct runtime_instance *instance;

	(void)unused;
	assert_int_equal(ids__sandbox_id(sandbox_id), 0);
	struct runtime_start spec = {
	    .sandbox_id = sandbox_id,
	    .template_id = "fake",
	    .memory_mib = 64,
	    .vcpus = 1,
	};
	setenv("WARREN_VM_JAIL_UID_BASE", "0", 1); /* would map sandboxes onto root */
	instance = runtime__start(RUNTIME_VM, &spec, err, sizeof(err));
	unsetenv("WARREN_VM_JAIL_UID_BASE");
	assert_null(instance);
	assert_non_null(strstr(err, "vm_jail_uid_base"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_jailed_start_fails_cleanly),
	    cmocka_unit_test(test_bad_uid_base_refused),
	};
	const char *build = getenv("WARREN_BUILD_DIR");
	char path[512], template_dir[300];
	int result;

	if (geteuid() != 0) {
		printf("SKIP: the jail needs root\n");
		return 77;
	}
	/* tap0 is opened in a network namespace of our own: gone with us. */
	if (unshare(CLONE_NEWNET) != 0 || mkdtemp(base) == NULL)
		return 1;
	snprintf(template_dir, sizeof(template_dir), "%s/templates/fake", base);
	snprintf(path, sizeof(path), "mkdir -p %s/rootfs %s/state", template_dir, base);
	if (system(path) != 0)
		return 1;
	snprintf(path, sizeof(path), "%s/template.json", template_dir);
	if (write_file(path,
		       "{\"name\":\"fake\",\"agent_version\":\"0\",\"content_hash\":"
		       "\"0000000000000000000000000000000000000000000000000000000000000000\","
		       "\"built_at\":\"2026-01-01T00:00:00Z\",\"size\":1,\"image_size\":1048576,"
		       "\"rootfs\":\"rootfs\",\"image\":\"rootfs.ext4\"}\n",
		       0))
		return 1;
	snprintf(path, sizeof(path), "%s/rootfs.ext4", template_dir);
	if (write_file(path, "", 1 << 20))
		return 1;
	snprintf(path, sizeof(path), "%s/vmlinux", base);
	if (write_file(path, "not a kernel", 0))
		return 1;
	setenv("WARREN_GUEST_KERNEL", path, 1);
	snprintf(path, sizeof(path), "%s/templates", base);
	setenv("WARREN_TEMPLATES_DIR", path, 1);
	snprintf(path, sizeof(path), "%s/state", base);
	setenv("WARREN_STATE_DIR", path, 1);
	snprintf(path, sizeof(path), "%s/bin/warren-vmm", build ? build : ".");
	setenv("WARREN_VMM_BINARY", path, 1);
	setenv("WARREN_VM_CPU_PROFILE", "baseline", 1);
	worker_settings__configure_libraries();
	{
		/* LeakSanitizer needs /proc at exit; the jail has none. */
		static char options[1024];
		const char *current = getenv("ASAN_OPTIONS");

		snprintf(options, sizeof(options), "%s%sdetect_leaks=0", current ? current : "",
			 current && *current ? ":" : "");
		setenv("ASAN_OPTIONS", options, 1);
	}
	result = cmocka_run_group_tests(tests, NULL, NULL);
	snprintf(path, sizeof(path), "rm -rf %s", base);
	if (system(path) != 0)
		result = result ? result : 1;
	return result;
}

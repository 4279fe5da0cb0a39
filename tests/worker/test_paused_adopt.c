/* A paused vm sandbox after a worker restart, without KVM (labels
 * integration worker lifecycle): made-up state dirs as a pause leaves them
 * (paused.json, root/snapshot, root/snapshot.mem, root/rootfs.ext4).
 * runtime__paused_complete says yes only when every file is there and the
 * marker is sane and names the dir's id and no VMM was started since the
 * marker (vmm.json's started_ns); runtime__adopt_paused refuses an
 * incomplete one and a root not owned by the marker's jail uid, and adopts
 * a complete one as a paused instance (a cgroup of its own, not ended);
 * a reap that keeps the id leaves its dir, runtime__stop removes it, a
 * reap that does not keep it removes it too; a pid in vmm.json that is no
 * warren-vmm is left alone; the
 * jail runtime never keeps a paused sandbox. The restore itself needs KVM:
 * test_worker_runtime_vm (hostvm). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "runtime.h"
#include "warren/ids.h"

#define JAIL_UID 1500000123u

static char temp_dir[64] = "/tmp/warren-adopt-XXXXXX";
static char state_dir[128];

__attribute__((format(printf, 1, 2))) static int shell(const char *format, ...)
{
	char command[1024];
	va_list args;

	va_start(args, format);
	vsnprintf(command, sizeof(command), format, args);
	va_end(args);
	return system(command);
}

static void write_file(const char *path, const char *text)
{
	FILE *file = fopen(path, "we");

	assert_non_null(file);
	fputs(text, file);
	fclose(file);
}

/* A state dir as a complete pause leaves it; the marker's argv names
 * 256 MiB and 2 vCPUs. */
static void make_paused(const char *id, char *dir, size_t dir_len)
{
	char path[512], marker[1024];

	snprintf(dir, dir_len, "%s/%s", state_dir, id);
	assert_int_equal(shell("mkdir -p %s/root", dir), 0);
	snprintf(path, sizeof(path), "%s/root/snapshot", dir);
	write_file(path, "state");
	snprintf(path, sizeof(path), "%s/root/snapshot.mem", dir);
	write_file(path, "memory");
	snprintf(path, sizeof(path), "%s/root/rootfs.ext4", dir);
	write_file(path, ""); /* an empty overlay is a valid disk */
	snprintf(path, sizeof(path), "%s/root", dir);
	assert_int_equal(chown(path, JAIL_UID, JAIL_UID), 0);
	snprintf(marker, sizeof(marker),
		 "{\"version\":1,\"id\":\"%s\",\"uid\":%u,\"jailed\":true,\"argv\":"
		 "[\"/old/warren-vmm\",\"--memory\",\"256\",\"--vcpus\",\"2\",\"--api-socket\","
		 "\"%s/root/vmm.sock\"]}",
		 id, JAIL_UID, dir);
	snprintf(path, sizeof(path), "%s/paused.json", dir);
	write_file(path, marker);
	/* the state file of its last VMM: a pid that is no warren-vmm (ours) */
	snprintf(marker, sizeof(marker),
		 "{\"id\":\"%s\",\"pid\":%d,\"api_socket\":\"%s/root/vmm.sock\","
		 "\"started_ns\":%lld}",
		 id, (int)getpid(), dir, ((long long)time(NULL) - 100) * 1000000000);
	snprintf(path, sizeof(path), "%s/vmm.json", dir);
	write_file(path, marker);
}

static void test_complete_or_not(void **state)
{
	char id[IDS_SANDBOX_ID_LEN + 1], dir[256], path[512], hidden[520], err[512];
	(void)state;

	assert_int_equal(ids__sandbox_id(id), 0);
	make_paused(id, dir, sizeof(dir));
	assert_true(runtime__paused_complete(RUNTIME_VM, id));
	assert_false(runtime__paused_complete(RUNTIME_JAIL, id));
	assert_false(runtime__paused_complete(RUNTIME_VM, "../etc"));
	/* each file missing in turn: not complete, not adopted */
	static const char *const files[] = {"paused.json", "root/snapshot", "root/snapshot.mem",
					    "root/rootfs.ext4"};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		snprintf(hidden, sizeof(hidden), "%s.x", path);
		assert_int_equal(rename(path, hidden), 0);
		assert_false(runtime__paused_complete(RUNTIME_VM, id));
		assert_null(runtime__adopt_paused(RUNTIME_VM, id, NULL, err, sizeof(err)));
		assert_int_equal(rename(hidden, path), 0);
	}
	/* an empty memory file (a pause cut short) */
	snprintf(path, sizeof(path), "%s/root/snapshot.mem", dir);
	write_file(path, "");
	assert_false(runtime__paused_complete(RUNTIME_VM, id));
	write_file(path, "memory");
	/* a VMM started since the pause (a resume cut short): its guest may
	 * have written to the disk, the snapshot no longer matches it */
	snprintf(path, sizeof(path), "%s/vmm.json", dir);
	{
		char text[256];

		snprintf(text, sizeof(text), "{\"id\":\"%s\",\"pid\":1,\"started_ns\":%lld}", id,
			 ((long long)time(NULL) + 5) * 1000000000);
		write_file(path, text);
		assert_false(runtime__paused_complete(RUNTIME_VM, id));
		snprintf(text, sizeof(text), "{\"id\":\"%s\",\"pid\":1,\"started_ns\":1}", id);
		write_file(path, text);
		assert_true(runtime__paused_complete(RUNTIME_VM, id));
	}
	/* markers that are not sane */
	static const char *const bad[] = {
	    "not json",
	    "{\"version\":2,\"id\":\"@\",\"uid\":1,\"argv\":[\"a\",\"b\"]}",
	    "{\"version\":1,\"id\":\"iaaaaaaaaaaaaaaaaaaaa\",\"uid\":1,\"argv\":[\"a\",\"b\"]}",
	    "{\"version\":1,\"id\":\"@\",\"uid\":1,\"argv\":[\"a\"]}",
	    "{\"version\":1,\"id\":\"@\",\"uid\":1,\"argv\":[\"a\",7]}",
	    "{\"version\":1,\"id\":\"@\",\"argv\":[\"a\",\"b\"]}",
	};
	snprintf(path, sizeof(path), "%s/paused.json", dir);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[512];

		const char *at = strchr(bad[i], '@');

		/* '@' stands for the sandbox id */
		if (at)
			snprintf(text, sizeof(text), "%.*s%s%s", (int)(at - bad[i]), bad[i], id,
				 at + 1);
		else
			snprintf(text, sizeof(text), "%s", bad[i]);
		write_file(path, text);
		assert_false(runtime__paused_complete(RUNTIME_VM, id));
	}
	shell("rm -rf %s", dir);
}

static void test_adopt_keep_stop(void **state)
{
	char id[IDS_SANDBOX_ID_LEN + 1], dir[256], path[512], err[512] = "";
	const char *keep[1];
	struct runtime_instance *instance;
	(void)state;

	assert_int_equal(ids__sandbox_id(id), 0);
	keep[0] = id;
	make_paused(id, dir, sizeof(dir));
	/* root/ owned by another uid than the marker's: refused */
	snprintf(path, sizeof(path), "%s/root", dir);
	assert_int_equal(chown(path, JAIL_UID + 1, JAIL_UID + 1), 0);
	assert_null(runtime__adopt_paused(RUNTIME_VM, id, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "not owned"));
	assert_int_equal(chown(path, JAIL_UID, JAIL_UID), 0);
	assert_null(runtime__adopt_paused(RUNTIME_JAIL, id, NULL, err, sizeof(err)));
	/* the restarted worker's reap keeps it */
	assert_int_equal(runtime__reap_orphans(RUNTIME_VM, keep, 1), 0);
	assert_true(runtime__paused_complete(RUNTIME_VM, id));
	instance = runtime__adopt_paused(RUNTIME_VM, id, NULL, err, sizeof(err));
	if (!instance)
		fail_msg("runtime__adopt_paused: %s", err);
	assert_false(runtime__exited(instance, err, sizeof(err))); /* paused, not ended */
	assert_true(runtime__paused_complete(RUNTIME_VM, id));	   /* adopting changes no file */
	runtime__stop(instance);
	assert_int_equal(access(dir, F_OK), -1);
	/* one not kept is removed by the reap */
	make_paused(id, dir, sizeof(dir));
	runtime__reap_orphans(RUNTIME_VM, NULL, 0);
	assert_int_equal(access(dir, F_OK), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_complete_or_not),
	    cmocka_unit_test(test_adopt_keep_stop),
	};
	char vmm[512];
	int failed;

	if (geteuid() != 0) {
		printf("SKIP: needs root (the jail root's owner, cgroups)\n");
		return 77;
	}
	if (!mkdtemp(temp_dir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(state_dir, sizeof(state_dir), "%s/state", temp_dir);
	mkdir(state_dir, 0700);
	snprintf(vmm, sizeof(vmm), "%s/bin/warren-vmm",
		 getenv("WARREN_BUILD_DIR") ? getenv("WARREN_BUILD_DIR") : ".");
	setenv("WARREN_STATE_DIR", state_dir, 1);
	setenv("WARREN_VMM_BINARY", access(vmm, X_OK) ? "/bin/true" : vmm, 1);
	setenv("WARREN_VM_CGROUP_PARENT", "warren-adopt-test", 1);
	failed = cmocka_run_group_tests(tests, NULL, NULL);
	shell("rm -rf %s", temp_dir);
	shell("for h in '' unified memory cpu pids; do rmdir /sys/fs/cgroup/$h/warren-adopt-test "
	      "2>/dev/null; done");
	return failed;
}

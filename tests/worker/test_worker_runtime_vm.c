/* The vm runtime (labels integration vmm worker slow): runtime__start(
 * RUNTIME_VM) in a network namespace holding a tap0 the way a net slot
 * has one (169.254.0.22/30), with the minimal template's rootfs.ext4 and
 * the guest kernel (WARREN_GUEST_KERNEL). Checks that warren-vmm runs in
 * that namespace with tap0 attached, that the guest kernel probes the
 * virtio-blk disk ("[vda]", printed after DRIVER_OK), reads it (block
 * metrics) and mounts it as root ("VFS: Mounted root"), then that
 * a pause (snapshot into the jail, VMM stopped) and a resume (a new VMM
 * restoring it) keep it running, and that
 * a restarted worker adopts a paused VM from its state dir and resumes it
 * (hardware KVM), and that
 * runtime__stop leaves no process and no state dir. On kvm_pvm hosts
 * (docs/host-requirements.md) the guest's user space cannot run: /health is not
 * checked here. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "runtime.h"
#include "settings.h"
#include "warren/vmm_client.h"
#include "warren/ids.h"

#define BOOT_LIMIT_SECONDS 150

static char temp_dir[64] = "/tmp/warren-vmtest-XXXXXX";
static char netns_name[64];
static char netns_path[128];

static double now_seconds(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)now.tv_sec + now.tv_nsec / 1e9;
}

__attribute__((format(printf, 1, 2))) static int shell(const char *format, ...)
{
	char command[4096];
	va_list args;

	va_start(args, format);
	vsnprintf(command, sizeof(command), format, args);
	va_end(args);
	return system(command);
}

/* Also after a failed assertion: kills a VMM left in our state dir. */
static void cleanup(void)
{
	if (getenv("WARREN_STATE_DIR"))
		runtime__reap_orphans(RUNTIME_VM, NULL, 0);
	if (netns_name[0])
		shell("ip netns del %s 2>/dev/null", netns_name);
	if (strchr(temp_dir, 'X') == NULL)
		shell("rm -rf %s", temp_dir);
}

/* Whole file (also /proc files, whose size reads as 0); NULL if absent. */
static char *read_text(const char *path)
{
	FILE *file = fopen(path, "re");
	char *text = NULL;
	size_t used = 0, capacity = 0, n;

	if (!file)
		return NULL;
	do {
		if (capacity - used < 4096) {
			char *grown = realloc(text, capacity + 65536);
			if (!grown)
				break;
			text = grown;
			capacity += 65536;
		}
		n = fread(text + used, 1, capacity - used - 1, file);
		used += n;
	} while (n > 0);
	fclose(file);
	if (text)
		text[used] = 0;
	return text;
}

/* One control-socket request (docs/vmm-api.md, vmm/client); the parsed
 * response, or NULL. */
static json_t *vmm_request(const char *socket_path, const char *request)
{
	static char buffer[VMM_CLIENT_BUFFER_SIZE];

	if (vmm_client__request(socket_path, request, buffer, sizeof(buffer), 10000))
		return NULL;
	return json_loads(buffer, 0, NULL);
}

/* True when pid has a tun fd attached to tap0 (fdinfo "iff:\ttap0"). */
/* The VMM's jail (docs/vmm-design.md): a uid other than 0, seccomp 2, no
 * capabilities, / = the sandbox's root/ dir, a cgroup named after the
 * sandbox. */
static void check_jail(pid_t pid, const char *dir, const char *sandbox_id)
{
	char path[600], *status, *cgroup, *uid;
	struct stat inside, outside;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	status = read_text(path);
	assert_non_null(status);
	uid = strstr(status, "\nUid:\t");
	assert_non_null(uid);
	assert_true(atol(uid + 6) >= 1000);
#ifndef WARREN_VMM_NO_SECCOMP /* sanitizer builds of warren-vmm have no filter */
	assert_non_null(strstr(status, "\nSeccomp:\t2"));
#endif
	assert_non_null(strstr(status, "\nNoNewPrivs:\t1"));
	assert_non_null(strstr(status, "\nCapEff:\t0000000000000000"));
	snprintf(path, sizeof(path), "/proc/%d/root/rootfs.ext4", (int)pid);
	assert_int_equal(stat(path, &inside), 0);
	snprintf(path, sizeof(path), "%s/root/rootfs.ext4", dir);
	assert_int_equal(stat(path, &outside), 0);
	assert_int_equal(inside.st_ino, outside.st_ino);
	assert_int_equal(inside.st_uid, (uid_t)atol(uid + 6));
	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	cgroup = read_text(path);
	assert_non_null(cgroup);
	assert_non_null(strstr(cgroup, sandbox_id));
	printf("warren-vmm jailed: uid %ld, seccomp 2, / = %s/root, cgroup %s\n", atol(uid + 6),
	       dir, sandbox_id);
	free(status);
	free(cgroup);
}

static bool has_tap0(pid_t pid)
{
	char path[128];
	bool found = false;

	for (int fd = 0; fd < 256 && !found; fd++) {
		char *text;

		snprintf(path, sizeof(path), "/proc/%d/fdinfo/%d", (int)pid, fd);
		text = read_text(path);
		if (text && strstr(text, "iff:\ttap0"))
			found = true;
		free(text);
	}
	return found;
}

/* Pause saves the VM into its jail and stops the VMM; resume starts a new
 * VMM that restores it and removes the snapshot. Returns the new VMM's
 * pid. Where the host's KVM is kvm_pvm a snapshot may be refused: then the
 * VM must still run. */
static pid_t check_pause_resume(struct runtime_instance *instance, const char *dir, pid_t pid)
{
	char path[600], memory[610], err[1024] = "";
	json_t *vmm_json, *state;
	double started = now_seconds();
	pid_t restored;
	int rc = runtime__set_paused(instance, true, err, sizeof(err));

	snprintf(path, sizeof(path), "%s/root/snapshot", dir);
	snprintf(memory, sizeof(memory), "%s.mem", path);
	if (rc != 0 && !runtime__host_has_hardware_kvm()) {
		printf("pause refused on this (non-hardware) KVM: %s\n", err);
		assert_int_equal(kill(pid, 0), 0);
		return pid;
	}
	if (rc != 0)
		fail_msg("runtime__set_paused(true): %s", err);
	printf("paused (snapshot, VMM stopped) in %.2f s\n", now_seconds() - started);
	assert_int_equal(kill(pid, 0), -1); /* the VMM is gone */
	assert_int_equal(access(path, R_OK), 0);
	assert_int_equal(access(memory, R_OK), 0);
	assert_false(runtime__exited(instance, err, sizeof(err))); /* stopped on purpose */
	assert_int_equal(runtime__set_paused(instance, true, err, sizeof(err)), 0); /* idempotent */

	started = now_seconds();
	if (runtime__set_paused(instance, false, err, sizeof(err)) != 0)
		fail_msg("runtime__set_paused(false): %s", err);
	printf("resumed (restored) in %.2f s\n", now_seconds() - started);
	assert_int_equal(access(path, F_OK), -1); /* the snapshot files are gone */
	assert_int_equal(access(memory, F_OK), -1);
	snprintf(path, sizeof(path), "%s/vmm.json", dir);
	vmm_json = json_load_file(path, 0, NULL);
	assert_non_null(vmm_json);
	restored = (pid_t)json_integer_value(json_object_get(vmm_json, "pid"));
	json_decref(vmm_json);
	assert_true(restored > 1 && restored != pid);
	assert_true(has_tap0(restored)); /* the slot's tap0 opened again */
	snprintf(path, sizeof(path), "%s/root/vmm.sock", dir);
	state = vmm_request(path, "{\"op\":\"state\"}");
	assert_non_null(state);
	assert_string_equal(json_string_value(json_object_get(state, "state")), "running");
	json_decref(state);
	assert_false(runtime__exited(instance, err, sizeof(err)));
	return restored;
}

static pid_t vm__check_vmm_placement(const char *dir, const char *sandbox_id);

/* A restarted worker (runtime__paused_complete, runtime__adopt_paused):
 * the VM is paused again; its state dir is complete (the marker, the
 * snapshot, memory and disk files) and not complete without the memory
 * file or with a marker of another sandbox; a reap that keeps it leaves
 * it; a second instance adopted from the files resumes in the slot
 * namespace and runs; stopping it removes the state dir. The first
 * instance is then stopped as a worker that died would never do: its
 * files are gone already, which must not fail. */
static void check_restart_adopt(struct runtime_instance *instance, const char *dir,
				const char *sandbox_id)
{
	char path[600], hidden[620], marker[600], err[1024] = "";
	const char *keep[1] = {sandbox_id};
	struct runtime_instance *adopted;
	double started;
	json_t *state, *saved;
	pid_t pid;

	if (runtime__set_paused(instance, true, err, sizeof(err)) != 0) {
		printf("pause refused on this KVM (%s): restart adoption not checked\n", err);
		runtime__stop(instance);
		return;
	}
	snprintf(marker, sizeof(marker), "%s/paused.json", dir);
	assert_int_equal(access(marker, R_OK), 0);
	assert_true(runtime__paused_complete(RUNTIME_VM, sandbox_id));
	assert_false(runtime__paused_complete(RUNTIME_JAIL, sandbox_id));
	/* not complete: the memory file missing, or a marker naming another id */
	snprintf(path, sizeof(path), "%s/root/snapshot.mem", dir);
	snprintf(hidden, sizeof(hidden), "%s.hidden", path);
	assert_int_equal(rename(path, hidden), 0);
	assert_false(runtime__paused_complete(RUNTIME_VM, sandbox_id));
	assert_null(runtime__adopt_paused(RUNTIME_VM, sandbox_id, netns_path, err, sizeof(err)));
	printf("incomplete snapshot refused: %s\n", err);
	assert_int_equal(rename(hidden, path), 0);
	saved = json_load_file(marker, 0, NULL);
	assert_non_null(saved);
	json_object_set_new(saved, "id", json_string("iaaaaaaaaaaaaaaaaaaaa"));
	assert_int_equal(json_dump_file(saved, marker, 0), 0);
	assert_false(runtime__paused_complete(RUNTIME_VM, sandbox_id));
	json_object_set_new(saved, "id", json_string(sandbox_id));
	assert_int_equal(json_dump_file(saved, marker, 0), 0);
	json_decref(saved);
	/* the restarted worker's reap keeps it; it is adopted and resumed */
	assert_int_equal(runtime__reap_orphans(RUNTIME_VM, keep, 1), 0);
	assert_true(runtime__paused_complete(RUNTIME_VM, sandbox_id));
	adopted = runtime__adopt_paused(RUNTIME_VM, sandbox_id, netns_path, err, sizeof(err));
	if (!adopted)
		fail_msg("runtime__adopt_paused: %s", err);
	assert_false(runtime__exited(adopted, err, sizeof(err))); /* paused, not ended */
	started = now_seconds();
	if (runtime__set_paused(adopted, false, err, sizeof(err)) != 0)
		fail_msg("resume of the adopted sandbox: %s", err);
	printf("adopted after a restart and resumed in %.2f s\n", now_seconds() - started);
	assert_int_equal(access(marker, F_OK), -1); /* a resumed VM has no marker */
	pid = vm__check_vmm_placement(dir, sandbox_id);
	snprintf(path, sizeof(path), "%s/root/vmm.sock", dir);
	state = vmm_request(path, "{\"op\":\"state\"}");
	assert_non_null(state);
	assert_string_equal(json_string_value(json_object_get(state, "state")), "running");
	json_decref(state);
	runtime__stop(adopted);
	assert_int_equal(kill(pid, 0), -1);
	assert_int_equal(access(dir, F_OK), -1);
	runtime__stop(instance); /* its files went with the adopted one */
}

/* Points the runtime at a state and templates dir under temp_dir and at
 * build's warren-vmm, builds (or finds cached) the minimal template, and
 * creates the slot namespace (netns_name/netns_path) with a persistent tap0. */
static void vm__prepare_environment(const char *source, const char *build, char *state_dir,
				    size_t state_dir_size)
{
	char templates_dir[128], vmm[512];

	snprintf(state_dir, state_dir_size, "%s/state", temp_dir);
	snprintf(templates_dir, sizeof(templates_dir), "%s/templates", temp_dir);
	snprintf(vmm, sizeof(vmm), "%s/bin/warren-vmm", build);
	setenv("WARREN_STATE_DIR", state_dir, 1);
	setenv("WARREN_TEMPLATES_DIR", templates_dir, 1);
	setenv("WARREN_VMM_BINARY", vmm, 1);
	worker_settings__configure_libraries();

	/* The minimal template (cached by content). */
	assert_int_equal(
	    shell("%s/guest/rootfs/build-template.sh --name minimal --agent %s/bin/warren-agent "
		  "--templates-dir %s >%s/template.log 2>&1",
		  source, build, templates_dir, temp_dir),
	    0);
	/* A namespace with a persistent tap0, as a vm slot has (docs/network.md). */
	snprintf(netns_name, sizeof(netns_name), "wvmtest-%d", (int)getpid());
	snprintf(netns_path, sizeof(netns_path), "/run/netns/%s", netns_name);
	assert_int_equal(
	    shell("ip netns add %1$s && ip -n %1$s tuntap add dev tap0 mode tap vnet_hdr && "
		  "ip -n %1$s addr add 169.254.0.22/30 dev tap0 && ip -n %1$s link set tap0 up",
		  netns_name),
	    0);
}

/* The sandbox's state dir names its VMM (vmm.json): a process group leader
 * in the slot namespace with tap0 attached, jailed. Returns its pid. */
static pid_t vm__check_vmm_placement(const char *dir, const char *sandbox_id)
{
	struct stat namespace_stat, vmm_namespace_stat;
	char path[600];
	json_t *vmm_json;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/vmm.json", dir);
	vmm_json = json_load_file(path, 0, NULL);
	assert_non_null(vmm_json);
	pid = (pid_t)json_integer_value(json_object_get(vmm_json, "pid"));
	json_decref(vmm_json);
	assert_true(pid > 1);
	assert_int_equal(getpgid(pid), pid);
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
	assert_int_equal(stat(path, &vmm_namespace_stat), 0);
	assert_int_equal(stat(netns_path, &namespace_stat), 0);
	assert_int_equal(vmm_namespace_stat.st_ino, namespace_stat.st_ino);
	assert_true(has_tap0(pid));
	printf("warren-vmm pid %d runs in %s with tap0 attached\n", (int)pid, netns_path);
	check_jail(pid, dir, sandbox_id);
	return pid;
}

/* Waits (up to the boot limit from started) until the console shows the
 * disk probed (after DRIVER_OK) and mounted as root; prints those lines. */
static void vm__wait_for_root_mount(const char *dir, double started)
{
	const char *console_markers[] = {" [vda] ",
					 "VFS: Mounted root"}; /* vda: virtio1 after the rng */
	char path[600], *console = NULL;
	double booted_at = 0;

	snprintf(path, sizeof(path), "%s/root/console.log", dir);
	while (now_seconds() - started < BOOT_LIMIT_SECONDS) {
		free(console);
		console = read_text(path);
		if (console && strstr(console, console_markers[0]) &&
		    strstr(console, console_markers[1])) {
			booted_at = now_seconds() - started;
			break;
		}
		sleep(1);
	}
	if (!booted_at)
		printf("console so far:\n%s\n", console ? console : "(none)");
	assert_true(booted_at > 0);
	for (size_t i = 0; i < 2; i++) {
		const char *line = strstr(console, console_markers[i]);
		printf("console: %.*s\n", (int)strcspn(line, "\n"), line);
	}
	{
		const char *net_line = strstr(console, "virtio_net");
		if (net_line)
			printf("console: %.*s\n", (int)strcspn(net_line, "\n"), net_line);
		else
			printf("console: no virtio_net line (the driver prints none at probe)\n");
	}
	printf("root mounted %.1f s after runtime__start\n", booted_at);
	free(console);
}

/* Block metrics over the VMM's control socket: it is running with three
 * devices (rng, block, net) and the guest read its root disk (queues live
 * only after DRIVER_OK). */
static void vm__check_block_reads(const char *dir)
{
	char path[600];
	json_t *metrics;
	char *vmm_state;
	json_int_t reads = 0;

	snprintf(path, sizeof(path), "%s/root/vmm.sock", dir);
	metrics = vmm_request(path, "{\"op\":\"metrics\"}");
	assert_non_null(metrics);
	vmm_state = (char *)json_string_value(json_object_get(metrics, "state"));
	assert_non_null(vmm_state);
	assert_string_equal(vmm_state, "running");
	{
		json_t *devices = json_object_get(metrics, "devices"), *device;
		size_t index;

		assert_int_equal(json_array_size(devices), 3); /* rng, block, net */
		json_array_foreach(devices, index, device)
		{
			json_t *device_metrics = json_object_get(device, "metrics");
			char *dump = json_dumps(device_metrics, JSON_COMPACT);
			printf("device %zu (%s): %s\n", index,
			       json_string_value(json_object_get(device, "type")),
			       dump ? dump : "?");
			free(dump);
			if (!strcmp(json_string_value(json_object_get(device, "type")), "block"))
				reads =
				    json_integer_value(json_object_get(device_metrics, "reads"));
		}
	}
	assert_true(reads > 0);
	json_decref(metrics);
}

static void test_vm_runtime_boots_and_stops(void **state)
{
	const char *source = getenv("WARREN_SOURCE_DIR"), *build = getenv("WARREN_BUILD_DIR");
	char sandbox_id[IDS_SANDBOX_ID_LEN + 1], dir[512], err[1024], state_dir[128];
	struct runtime_instance *instance;
	double started;
	pid_t pid;
	(void)state;

	assert_non_null(source);
	assert_non_null(build);
	vm__prepare_environment(source, build, state_dir, sizeof(state_dir));

	assert_int_equal(ids__sandbox_id(sandbox_id), 0);
	struct runtime_start spec = {
	    .sandbox_id = sandbox_id,
	    .template_id = "minimal",
	    .netns_path = netns_path,
	    .token_hash = "sha256:0000000000000000000000000000000000000000000000000000000000000000",
	    .memory_mib = 256,
	    .vcpus = 1,
	};
	started = now_seconds();
	instance = runtime__start(RUNTIME_VM, &spec, err, sizeof(err));
	if (!instance)
		fail_msg("runtime__start(vm): %s", err);
	printf("runtime__start(vm) returned in %.2f s\n", now_seconds() - started);

	/* The state file names the VMM; it runs in the slot namespace, tap0 attached. */
	snprintf(dir, sizeof(dir), "%s/%s", state_dir, sandbox_id);
	pid = vm__check_vmm_placement(dir, sandbox_id);
	vm__wait_for_root_mount(dir, started);
	vm__check_block_reads(dir);
	printf("note: on a kvm_pvm host guest user space cannot run (docs/host-requirements.md): "
	       "the boot stops after the root mount; /health is not checked\n");
	pid = check_pause_resume(instance, dir, pid);
	if (runtime__host_has_hardware_kvm()) {
		check_restart_adopt(instance, dir, sandbox_id);
		return;
	}

	started = now_seconds();
	runtime__stop(instance);
	printf("runtime__stop took %.2f s\n", now_seconds() - started);
	assert_int_equal(kill(pid, 0), -1);
	assert_int_equal(errno, ESRCH);
	assert_int_equal(access(dir, F_OK), -1);
}

/* A restarted worker: runtime__reap_orphans(RUNTIME_VM) keeps listed ids
 * and kills the VMM of the others, state dir included. */
static void test_vm_orphans_are_reaped(void **state)
{
	char sandbox_id[IDS_SANDBOX_ID_LEN + 1], dir[512], path[600], err[1024];
	const char *keep[1];
	struct runtime_instance *instance;
	json_t *vmm_json;
	pid_t pid;
	(void)state;

	assert_int_equal(ids__sandbox_id(sandbox_id), 0);
	keep[0] = sandbox_id;
	struct runtime_start spec = {
	    .sandbox_id = sandbox_id,
	    .template_id = "minimal",
	    .netns_path = netns_path,
	    .token_hash = NULL,
	    .memory_mib = 128,
	    .vcpus = 1,
	};
	instance = runtime__start(RUNTIME_VM, &spec, err, sizeof(err));
	if (!instance)
		fail_msg("runtime__start(vm): %s", err);
	snprintf(dir, sizeof(dir), "%s/%s", getenv("WARREN_STATE_DIR"), sandbox_id);
	snprintf(path, sizeof(path), "%s/vmm.json", dir);
	vmm_json = json_load_file(path, 0, NULL);
	assert_non_null(vmm_json);
	pid = (pid_t)json_integer_value(json_object_get(vmm_json, "pid"));
	json_decref(vmm_json);
	assert_int_equal(runtime__reap_orphans(RUNTIME_VM, keep, 1), 0);
	assert_int_equal(kill(pid, 0), 0);
	assert_int_equal(runtime__reap_orphans(RUNTIME_VM, NULL, 0), 1);
	assert_int_equal(kill(pid, 0), -1);
	assert_int_equal(access(dir, F_OK), -1);
	printf("orphan warren-vmm %d reaped, state dir removed\n", (int)pid);
	runtime__stop(instance); /* already gone: must not fail */
}

/* A vm sandbox as a template (runtime__export_vm): the running source is
 * paused, its snapshot and disk exported, and it runs again; once the
 * source is gone, a sandbox started from the template restores the guest
 * (its VMM running without a boot). A template whose vm.json or snapshot file is damaged is
 * refused with the reason, nothing left running. */
static void test_vm_snapshot_template(void **state)
{
	char source_id[IDS_SANDBOX_ID_LEN + 1], copy_id[IDS_SANDBOX_ID_LEN + 1];
	char dir[512], template_dir[512], path[700], err[1024] = "";
	struct runtime_instance *source, *copy;
	uint64_t bytes = 0;
	json_t *meta, *metrics;
	double started;
	(void)state;

	assert_int_equal(ids__sandbox_id(source_id), 0);
	assert_int_equal(ids__sandbox_id(copy_id), 0);
	struct runtime_start spec = {.sandbox_id = source_id,
				     .template_id = "minimal",
				     .netns_path = netns_path,
				     .memory_mib = 128,
				     .vcpus = 1};
	started = now_seconds();
	source = runtime__start(RUNTIME_VM, &spec, err, sizeof(err));
	if (!source)
		fail_msg("runtime__start(vm): %s", err);
	snprintf(dir, sizeof(dir), "%s/%s", getenv("WARREN_STATE_DIR"), source_id);
	vm__wait_for_root_mount(dir, started);

	/* the template's dir, with minimal's template.json renamed */
	snprintf(template_dir, sizeof(template_dir), "%s/snaptest", getenv("WARREN_TEMPLATES_DIR"));
	assert_int_equal(mkdir(template_dir, 0755), 0);
	snprintf(path, sizeof(path), "%s/minimal/template.json", getenv("WARREN_TEMPLATES_DIR"));
	meta = json_load_file(path, 0, NULL);
	assert_non_null(meta);
	json_object_set_new(meta, "name", json_string("snaptest"));
	snprintf(path, sizeof(path), "%s/template.json", template_dir);
	assert_int_equal(json_dump_file(meta, path, 0), 0);
	json_decref(meta);

	started = now_seconds();
	if (runtime__export_vm(source, template_dir, &bytes, err, sizeof(err)))
		fail_msg("runtime__export_vm: %s", err);
	printf("exported the running VM in %.2f s: %llu bytes\n", now_seconds() - started,
	       (unsigned long long)bytes);
	assert_true(bytes > 0);
	snprintf(path, sizeof(path), "%s/root/vmm.sock", dir);
	metrics = vmm_request(path, "{\"op\":\"metrics\"}");
	assert_non_null(metrics); /* the source runs again */
	assert_string_equal(json_string_value(json_object_get(metrics, "state")), "running");
	json_decref(metrics);
	snprintf(path, sizeof(path), "%s/vm/vm.json", template_dir);
	meta = json_load_file(path, 0, NULL);
	assert_non_null(meta);
	assert_string_equal(json_string_value(json_object_get(meta, "memory_mib")), "128");
	json_decref(meta);

	/* the source gone (its state dir too): the template stands alone; and
	 * the one tap0 of this namespace is free for the copy */
	runtime__stop(source);
	assert_int_equal(access(dir, F_OK), -1);
	spec.sandbox_id = copy_id;
	spec.template_id = "snaptest";
	spec.memory_mib = 512; /* the snapshot's machine wins: 128 MiB */
	started = now_seconds();
	copy = runtime__start(RUNTIME_VM, &spec, err, sizeof(err));
	if (!copy)
		fail_msg("runtime__start(vm) from the snapshot: %s", err);
	printf("restored from the template in %.2f s\n", now_seconds() - started);
	snprintf(path, sizeof(path), "%s/%s/root/vmm.sock", getenv("WARREN_STATE_DIR"), copy_id);
	metrics = vmm_request(path, "{\"op\":\"metrics\"}");
	assert_non_null(metrics);
	assert_string_equal(json_string_value(json_object_get(metrics, "state")), "running");
	json_decref(metrics);
	snprintf(path, sizeof(path), "%s/%s/root/snapshot.mem", getenv("WARREN_STATE_DIR"),
		 copy_id);
	assert_int_equal(access(path, F_OK), -1); /* mapped, its name gone */
	runtime__stop(copy);

	/* damaged: a truncated state file, then a vm.json of no machine */
	snprintf(path, sizeof(path), "%s/vm/snapshot", template_dir);
	assert_int_equal(truncate(path, 100), 0);
	assert_null(runtime__start(RUNTIME_VM, &spec, err, sizeof(err)));
	printf("a truncated snapshot: %s\n", err);
	assert_non_null(strstr(err, "snapshot"));
	snprintf(path, sizeof(path), "%s/vm/vm.json", template_dir);
	assert_int_equal(shell("echo '{\"version\":1,\"vcpus\":\"0\"}' > %s", path), 0);
	assert_null(runtime__start(RUNTIME_VM, &spec, err, sizeof(err)));
	assert_non_null(strstr(err, "bad vm snapshot"));
	snprintf(path, sizeof(path), "%s/%s", getenv("WARREN_STATE_DIR"), copy_id);
	assert_int_equal(access(path, F_OK), -1); /* nothing left behind */
}

int main(void)
{
	const char *kernel = getenv("WARREN_GUEST_KERNEL");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_vm_runtime_boots_and_stops),
	    cmocka_unit_test(test_vm_orphans_are_reaped),
	    cmocka_unit_test(test_vm_snapshot_template),
	};
	int failed;

	if (!kernel || !*kernel || access(kernel, R_OK)) {
		printf("SKIP: WARREN_GUEST_KERNEL unset or unreadable (scripts/test exports it)\n");
		return 77;
	}
	if (access("/dev/kvm", R_OK | W_OK)) {
		printf("SKIP: no usable /dev/kvm on this host\n");
		return 77;
	}
	if (geteuid() != 0) {
		printf("SKIP: needs root (network namespaces)\n");
		return 77;
	}
	if (!mkdtemp(temp_dir)) {
		perror("mkdtemp");
		return 1;
	}
	failed = cmocka_run_group_tests(tests, NULL, NULL);
	cleanup();
	return failed;
}

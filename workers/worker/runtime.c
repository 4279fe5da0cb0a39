/* runtime: the probe that picks `vm` or `jail`, and the jail backend.
 * docs/host-requirements.md: a host whose /dev/kvm is served by kvm_pvm (no VMX/SVM)
 * boots a Linux kernel but cannot run its user space, so it gets `jail`. */
#include "runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "warren/config.h"
#include "warren/jail.h"
#include "warren/log.h"
#include "warren/runtime_probe.h"
#include "warren/templates.h"

struct runtime_instance {
	enum runtime_kind kind;
	struct jail *jail;
	struct runtime_vm *vm;
	uint32_t vcpus;
};

const char *runtime__name(enum runtime_kind kind)
{
	return kind == RUNTIME_VM ? "vm" : "jail";
}

enum runtime_kind runtime__choose(char *reason, size_t reason_len)
{
	struct runtime_probe_result probe;

	/* The host facts and the `runtime` setting: workers/jail's probe. The
	 * vm runtime additionally needs warren-vmm, a guest kernel and a guest
	 * that can reach its kernel from user space (warren-vmm --probe). */
	runtime__probe(&(struct runtime_probe_paths){.forced = config__get("runtime", NULL)},
		       &probe);
	snprintf(reason, reason_len, "%s", probe.reason);
	if (probe.choice != RUNTIME_PROBE_VM)
		return RUNTIME_JAIL;
	if (!strcmp(config__get("runtime", ""), "vm"))
		return RUNTIME_VM;
	return runtime_vm__available(reason, reason_len) ? RUNTIME_VM : RUNTIME_JAIL;
}

bool runtime__host_has_hardware_kvm(void)
{
	struct runtime_probe_result probe;

	runtime__probe(NULL, &probe);
	return probe.have_vmx_or_svm && !probe.kvm_is_pvm;
}

static struct runtime_instance *runtime__start_jail(const struct runtime_start *spec, char *err,
						    size_t err_len)
{
	struct template_info template_info;
	struct runtime_instance *instance = NULL;
	const char *argv[6];
	char hostname_env[96];
	const char *envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			      "HOME=/root", hostname_env, NULL};
	struct jail_volume volumes[JAIL_VOLUMES_MAX];
	struct jail *jail;

	if (spec->volume_count > JAIL_VOLUMES_MAX) {
		snprintf(err, err_len, "at most %d volumes", JAIL_VOLUMES_MAX);
		return NULL;
	}
	for (size_t i = 0; i < spec->volume_count; i++) {
		volumes[i].image = spec->volumes[i].image;
		volumes[i].path = spec->volumes[i].path;
	}
	if (templates__read(templates__dir(), spec->template_id, &template_info, err, err_len))
		return NULL;
	snprintf(hostname_env, sizeof(hostname_env), "E2B_SANDBOX_ID=%s", spec->sandbox_id);
	jail__agent_argv(spec->token_hash, argv);
	struct jail_config config = {
	    .id = spec->sandbox_id,
	    .rootfs = template_info.rootfs,
	    .netns_path = spec->netns_path,
	    .memory_max_bytes = (uint64_t)spec->memory_mib << 20,
	    .cpu_millicores = spec->vcpus * 1000,
	    .pids_max = (uint32_t)config__get_int("sandbox_pids_max", 1024),
	    /* The writable layer's quota (a sparse per-sandbox ext4 image,
	     * workers/jail/README.md): 10 GiB by default; 0: none. */
	    .disk_max_bytes = (uint64_t)config__get_int("sandbox_disk_max_mb", 10240) << 20,
	    .argv = argv,
	    .envp = envp,
	    .volumes = volumes,
	    .volume_count = spec->volume_count,
	    /* a previous sandbox of the volume may still be tearing down */
	    .volume_wait_ms = 5000,
	};
	jail = jail__start(&config, err, err_len);
	if (!jail)
		return NULL;
	instance = calloc(1, sizeof(*instance));
	if (!instance) {
		jail__destroy(jail);
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	instance->kind = RUNTIME_JAIL;
	instance->jail = jail;
	instance->vcpus = spec->vcpus;
	return instance;
}

struct runtime_instance *runtime__start(enum runtime_kind kind, const struct runtime_start *spec,
					char *err, size_t err_len)
{
	struct runtime_instance *instance;
	struct runtime_vm *vm;

	if (kind == RUNTIME_JAIL)
		return runtime__start_jail(spec, err, err_len);
	if (spec->volume_count) {
		snprintf(err, err_len,
			 "volumes need the jail runtime; the vm runtime has no "
			 "volume disks yet (docs/volumes.md)");
		return NULL;
	}
	vm = runtime_vm__start(spec, err, err_len);
	if (!vm)
		return NULL;
	instance = calloc(1, sizeof(*instance));
	if (!instance) {
		runtime_vm__stop(vm);
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	instance->kind = RUNTIME_VM;
	instance->vm = vm;
	instance->vcpus = spec->vcpus;
	return instance;
}

struct hostname_call {
	int uts_fd;
	const char *hostname;
	int error;
};

/* A short-lived thread: setns moves only the calling thread. */
static void *runtime__hostname_thread(void *opaque)
{
	struct hostname_call *call = opaque;

	if (setns(call->uts_fd, CLONE_NEWUTS) ||
	    sethostname(call->hostname, strlen(call->hostname)))
		call->error = -errno;
	return NULL;
}

int runtime__set_hostname(struct runtime_instance *instance, const char *hostname)
{
	struct hostname_call call = {.uts_fd = -1, .hostname = hostname};
	char path[64];
	pthread_t thread;

	if (!instance || !instance->jail)
		return 0; /* vm: the agent's /init sets it */
	snprintf(path, sizeof(path), "/proc/%d/ns/uts", (int)jail__pid(instance->jail));
	call.uts_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (call.uts_fd < 0)
		return -errno;
	if (pthread_create(&thread, NULL, runtime__hostname_thread, &call))
		call.error = -EAGAIN;
	else
		pthread_join(thread, NULL);
	close(call.uts_fd);
	if (call.error)
		log_warn("sandbox host name %s: %s", hostname, strerror(-call.error));
	return call.error;
}

/* "signal 9" or "status 3" for a wait status. */
static void runtime__describe_status(int status, char *out, size_t out_len)
{
	if (WIFSIGNALED(status))
		snprintf(out, out_len, "signal %d", WTERMSIG(status));
	else
		snprintf(out, out_len, "status %d", WEXITSTATUS(status));
}

bool runtime__exited(struct runtime_instance *instance, char *why, size_t why_len)
{
	char how[32];
	int status = 0;

	if (!instance)
		return false;
	if (instance->vm) {
		if (!runtime_vm__has_exited(instance->vm, &status))
			return false;
		runtime__describe_status(status, how, sizeof(how));
		snprintf(why, why_len, "warren-vmm exited (%s)", how);
		return true;
	}
	if (instance->jail && jail__state(instance->jail, &status) == JAIL_EXITED) {
		runtime__describe_status(status, how, sizeof(how));
		snprintf(why, why_len, "the sandbox's init exited (%s)", how);
		return true;
	}
	return false;
}

void runtime__stop(struct runtime_instance *instance)
{
	if (!instance)
		return;
	if (instance->jail)
		jail__destroy(instance->jail);
	if (instance->vm)
		runtime_vm__stop(instance->vm);
	free(instance);
}

int runtime__template_machine(enum runtime_kind kind, const char *template_dir,
			      uint32_t *memory_mib, uint32_t *vcpus)
{
	return kind == RUNTIME_VM ? runtime_vm__template_machine(template_dir, memory_mib, vcpus)
				  : -1;
}

bool runtime__vm_paused(const struct runtime_instance *instance)
{
	return instance && instance->vm && runtime_vm__paused(instance->vm);
}

int runtime__set_paused(struct runtime_instance *instance, bool paused, char *err, size_t err_len)
{
	int timeout_ms = (int)config__get_int("pause_timeout_ms", 5000);
	int rc;

	if (instance && instance->vm)
		return runtime_vm__set_paused(instance->vm, paused, err, err_len);
	if (!instance || !instance->jail) {
		snprintf(err, err_len, "no sandbox to pause");
		return -ENOTSUP;
	}
	rc = jail__freeze(instance->jail, paused, timeout_ms);
	if (rc == -ENOTSUP)
		snprintf(err, err_len, "this host has no cgroup v2 freezer for jail sandboxes");
	else if (rc == -ETIMEDOUT)
		snprintf(err, err_len, "the sandbox did not %s within %d ms",
			 paused ? "freeze" : "thaw", timeout_ms);
	else if (rc)
		snprintf(err, err_len, "%s failed: %s", paused ? "freezing" : "thawing",
			 strerror(-rc));
	return rc;
}

int runtime__export_vm(struct runtime_instance *instance, const char *dir, uint64_t *bytes,
		       char *err, size_t err_len)
{
	if (!instance || !instance->vm) {
		snprintf(err, err_len, "not a vm sandbox");
		return -ENOTSUP;
	}
	return runtime_vm__export(instance->vm, dir, bytes, err, err_len);
}

int runtime__jail_layer(const struct runtime_instance *instance, char *upper, size_t upper_len,
			unsigned *host_uid)
{
	if (!instance || !instance->jail)
		return -ENOTSUP;
	*host_uid = jail__host_uid(instance->jail);
	return jail__upper_dir(instance->jail, upper, upper_len);
}

int runtime__usage(const struct runtime_instance *instance, struct runtime_usage *out)
{
	struct jail_usage usage;
	int ret;

	memset(out, 0, sizeof(*out));
	if (!instance)
		return -EINVAL;
	if (!instance->jail)
		return -ENOTSUP;
	ret = jail__usage(instance->jail, &usage);
	if (ret)
		return ret;
	out->cpu_count = instance->vcpus;
	out->cpu_usec = usage.cpu_usec;
	out->mem_used_bytes = usage.mem_used_bytes;
	out->mem_cache_bytes = usage.mem_cache_bytes;
	out->mem_total_bytes = usage.mem_limit_bytes;
	out->disk_used_bytes = usage.disk_used_bytes;
	out->disk_total_bytes = usage.disk_total_bytes;
	return 0;
}

int runtime__console_path(const struct runtime_instance *instance, char *out, size_t out_len)
{
	if (!instance)
		return -EINVAL;
	if (!instance->jail)
		return -ENOTSUP;
	return jail__console_path(instance->jail, out, out_len);
}

int runtime__reap_orphans(enum runtime_kind kind, const char *const *keep, size_t count)
{
	char **ids = NULL;
	size_t found = 0;
	int killed = 0;

	if (kind == RUNTIME_VM)
		return runtime_vm__reap_orphans(keep, count);
	if (jail__list_on_host(NULL, NULL, &ids, &found))
		return 0;
	for (size_t i = 0; i < found; i++) {
		bool kept = false;
		for (size_t k = 0; k < count && !kept; k++)
			kept = !strcmp(keep[k], ids[i]);
		if (kept)
			continue;
		if (jail__kill_by_id(NULL, NULL, ids[i]) == 0) {
			log_info("orphan sandbox %s of a previous worker stopped", ids[i]);
			killed++;
		}
	}
	jail__free_ids(ids, found);
	return killed;
}

bool runtime__paused_complete(enum runtime_kind kind, const char *sandbox_id)
{
	return kind == RUNTIME_VM && runtime_vm__paused_complete(sandbox_id);
}

struct runtime_instance *runtime__adopt_paused(enum runtime_kind kind, const char *sandbox_id,
					       const char *netns_path, char *err, size_t err_len)
{
	struct runtime_instance *instance;
	struct runtime_vm *vm;
	uint32_t vcpus = 0;

	if (kind != RUNTIME_VM) {
		snprintf(err, err_len, "a paused jail sandbox does not survive a worker restart");
		return NULL;
	}
	vm = runtime_vm__adopt(sandbox_id, netns_path, &vcpus, err, err_len);
	if (!vm)
		return NULL;
	instance = calloc(1, sizeof(*instance));
	if (!instance) {
		runtime_vm__stop(vm); /* would remove its files: only when out of memory */
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	instance->kind = RUNTIME_VM;
	instance->vm = vm;
	instance->vcpus = vcpus;
	return instance;
}

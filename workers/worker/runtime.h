/* runtime: how the worker starts the inside of a sandbox — `jail` (the
 * agent as a jailed host process in the slot's namespace) or `vm` (the
 * guest under warren-vmm behind the slot's tap0). Both give the worker an
 * agent answering on <address>:49983. ARCHITECTURE.md, "Runtimes". */
#ifndef WARREN_WORKER_RUNTIME_H
#define WARREN_WORKER_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum runtime_kind { RUNTIME_JAIL = 0, RUNTIME_VM };

/* A volume to mount (docs/volumes.md): the image on this host and the
 * path inside the sandbox (validated by the API, again by the jail). */
struct runtime_volume {
	const char *image;
	const char *path;
};

struct runtime_start {
	const char *sandbox_id;
	const char *template_id;
	const char *netns_path; /* the slot's network namespace */
	const char *token_hash; /* "sha256:<hex>" or NULL (secure=false) */
	uint32_t memory_mib;
	uint32_t vcpus;
	const struct runtime_volume *volumes; /* jail only; the vm runtime refuses them */
	size_t volume_count;
};

struct runtime_instance;

/* Decides which runtime this host can run (the probe), unless the setting
 * `runtime` forces one. Writes a human-readable reason. */
enum runtime_kind runtime__choose(char *reason, size_t reason_len);
const char *runtime__name(enum runtime_kind kind);
/* Starts a sandbox; NULL with the reason in err on failure (nothing left
 * behind). The agent is not yet known to be up: poll its /health. */
struct runtime_instance *runtime__start(enum runtime_kind kind, const struct runtime_start *spec,
					char *err, size_t err_len);
/* True when the sandbox ended by itself (the VMM process or the jail's
 * init exited): why gets "warren-vmm exited (signal 9)" and the like.
 * Never blocks; the instance still needs runtime__stop. */
bool runtime__exited(struct runtime_instance *instance, char *why, size_t why_len);
/* Names the sandbox's host name (jail: from the host, in its UTS
 * namespace; vm: the agent's /init does it). 0 or -errno. */
int runtime__set_hostname(struct runtime_instance *instance, const char *hostname);
/* Stops everything of the sandbox and frees the instance. Idempotent. */
void runtime__stop(struct runtime_instance *instance);
/* Pauses (paused=true) or resumes a sandbox. jail: freezes or thaws its
 * cgroup (memory stays resident, processes and files stay on this host).
 * vm: pause saves the VM (warren-vmm snapshot) into its state dir and
 * stops the VMM; resume starts a VMM that restores it. Idempotent; 0 or
 * -errno with the reason in err. */
int runtime__set_paused(struct runtime_instance *instance, bool paused, char *err, size_t err_len);
/* True when a vm sandbox is paused now (saved, no VMM running), as one is
 * left when the resume after its export failed; false for a jail one. */
bool runtime__vm_paused(const struct runtime_instance *instance);
/* The machine a snapshot template restores (vm: its vm/vm.json): 0 with
 * memory and vCPUs, -1 when it names none (a jail snapshot, a boot). */
int runtime__template_machine(enum runtime_kind kind, const char *template_dir,
			      uint32_t *memory_mib, uint32_t *vcpus);
/* A vm sandbox as a template's files in dir (docs/api.md, "Snapshots"):
 * the guest's snapshot (vm/snapshot, vm/snapshot.mem, vm/vm.json) and its
 * disk; a sandbox started from that template restores the guest. A
 * running one is paused for the copy and resumed from it after. *bytes:
 * what the files hold on disk. -ENOTSUP for a jail sandbox, else 0 or
 * -errno with the reason. */
int runtime__export_vm(struct runtime_instance *instance, const char *dir, uint64_t *bytes,
		       char *err, size_t err_len);
/* A jail sandbox's writable layer (jail__upper_dir) and the host uid of
 * its root, for a snapshot of its files. -ENOTSUP for a vm sandbox
 * (runtime__export_vm), else 0 or -errno. */
int runtime__jail_layer(const struct runtime_instance *instance, char *upper, size_t upper_len,
			unsigned *host_uid);

/* What a sandbox uses now (the worker's metrics samples). */
struct runtime_usage {
	uint32_t cpu_count;	 /* vCPUs it was given */
	uint64_t cpu_usec;	 /* CPU time consumed since it started (monotonic) */
	uint64_t mem_used_bytes; /* excluding page cache */
	uint64_t mem_cache_bytes;
	uint64_t mem_total_bytes;		    /* its memory limit */
	uint64_t disk_used_bytes, disk_total_bytes; /* writable layer; 0/0 when unknown */
};

/* Reads the usage of a running sandbox. 0, -ENOTSUP for the vm runtime
 * (not sampled yet), or -errno. */
int runtime__usage(const struct runtime_instance *instance, struct runtime_usage *out);
/* Where the sandbox's console output is (jail: its console.log). 0,
 * -ENOTSUP for the vm runtime, or -errno. */
int runtime__console_path(const struct runtime_instance *instance, char *out, size_t out_len);
/* Kills what is left of sandboxes a previous worker process on this host
 * started, except those in keep (count ids). Returns how many it killed. */
int runtime__reap_orphans(enum runtime_kind kind, const char *const *keep, size_t count);
/* A paused sandbox a previous worker process left (docs/api.md, "Pause
 * and resume"). complete: its state dir holds everything a resume needs
 * (vm: the marker, the snapshot and memory files, the disk; jail: never,
 * its frozen processes do not outlive a restart). adopt: an instance of
 * it, paused, that a resume restores in netns_path; NULL with the reason. */
bool runtime__paused_complete(enum runtime_kind kind, const char *sandbox_id);
struct runtime_instance *runtime__adopt_paused(enum runtime_kind kind, const char *sandbox_id,
					       const char *netns_path, char *err, size_t err_len);

/* ---- the vm backend (runtime_vm.c; runtime.c dispatches to it) ---- */
struct runtime_vm;
/* True when warren-vmm (setting vmm_binary, else next to this binary) and
 * the guest kernel (setting guest_kernel) exist and `warren-vmm --probe`
 * says guest user space can run. The reason says which. */
bool runtime_vm__available(char *reason, size_t reason_len);
/* Copies the template image into <state_dir>/<id>/, starts warren-vmm in
 * spec->netns_path (tap0 there) and waits until it reports "running". */
struct runtime_vm *runtime_vm__start(const struct runtime_start *spec, char *err, size_t err_len);
/* True when warren-vmm exited by itself (then reaped; *status gets its
 * wait status). Never blocks. */
bool runtime_vm__has_exited(struct runtime_vm *vm, int *status);
/* Asks the VMM to exit (bounded), SIGKILLs its group otherwise, removes
 * the state dir, frees vm. */
void runtime_vm__stop(struct runtime_vm *vm);
/* Pause: snapshot (root/snapshot, root/snapshot.mem) and stop the VMM;
 * resume: a new VMM with --restore, then the snapshot files are removed.
 * A failed pause leaves the VM running; a failed resume leaves it paused
 * (its snapshot kept). runtime_vm__stop of a paused one removes the
 * snapshot with the state dir. 0 or -EIO/-ENOMEM with the reason. */
int runtime_vm__set_paused(struct runtime_vm *vm, bool paused, char *err, size_t err_len);
bool runtime_vm__paused(const struct runtime_vm *vm);
/* The machine (memory, vCPUs) a vm snapshot template restores, from its
 * vm/vm.json; 0, or -1 when template_dir holds no valid one. */
int runtime_vm__template_machine(const char *template_dir, uint32_t *memory_mib, uint32_t *vcpus);
/* runtime__export_vm of a vm sandbox (the files: runtime_vm.c). */
int runtime_vm__export(struct runtime_vm *vm, const char *dir, uint64_t *bytes, char *err,
		       size_t err_len);
/* Kills VMMs listed in <state_dir>/<id>/vmm.json for ids not in keep. */
int runtime_vm__reap_orphans(const char *const *keep, size_t count);
/* A pause writes <state_dir>/<id>/paused.json once its snapshot is
 * complete and the VMM gone (a resume removes it first). paused_complete:
 * the marker names id, the snapshot, memory and disk files are there, and
 * no VMM was started since the marker (a resume cut short may have
 * written to the disk).
 * adopt: a paused runtime_vm from them (a VMM the marker's dir still runs
 * is killed first; a new cgroup; *vcpus from its command line), or NULL
 * with the reason. */
bool runtime_vm__paused_complete(const char *id);
struct runtime_vm *runtime_vm__adopt(const char *id, const char *netns_path, uint32_t *vcpus,
				     char *err, size_t err_len);
/* True when the host has VMX/SVM and KVM is not kvm_pvm (runtime__probe's
 * facts): the `host` CPU profile can be used. */
bool runtime__host_has_hardware_kvm(void);
/* Where warren-vmm is: 0 with the path in out, or -ENOENT. */
int runtime_vm__find_vmm(char *out, size_t out_len);

#endif

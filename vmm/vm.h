/* vm: one KVM virtual machine: guest memory (memfd), in-kernel irqchip and
 * PIT, legacy devices (COM1, i8042 reset, debug-exit, boot marker, CMOS,
 * test register), virtio devices from the configuration, and one thread
 * per vCPU that runs KVM_RUN and dispatches MMIO/PIO exits.
 *
 * Fixed I/O ports (documented in docs/vmm-api.md):
 *   0x3f8-0x3ff COM1 (IRQ 4)     0x60/0x64 i8042 (0xfe to 0x64: reset)
 *   0x3f0 boot marker (any write records ns since process start)
 *   0x501 debug exit (a byte write stops the VM with that code)
 *   0x508-0x50f test register (reads return the complement of the last
 *               write), mirrored at MMIO VM_TEST_MMIO_BASE
 *   0x70/0x71 CMOS (reads 0), 0x80 POST (ignored) */
#ifndef WARREN_VMM_VM_H
#define WARREN_VMM_VM_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "console.h"
#include "cpuid.h"
#include "guest_memory.h"
#include "mmio_bus.h"
#include "serial.h"

struct event_loop;
struct snapshot_state;

#define VM_PORT_BOOT_MARKER	0x3f0
#define VM_PORT_DEBUG_EXIT	0x501
#define VM_PORT_TEST		0x508
#define VM_TEST_MMIO_BASE	0xfeb00000ull
#define VM_MAX_VCPUS		64
#define VM_MAX_MEMORY_MIB	(256u * 1024u)
#define VM_MAX_BOOT_MARKERS	16
#define VM_TSS_ADDRESS		0xfffbd000ull
#define VM_IDENTITY_MAP_ADDRESS 0xfffbc000ull

struct vm_config {
	char *kernel;
	char *initrd;	    /* NULL: none */
	char *command_line; /* NULL: VM_DEFAULT_COMMAND_LINE */
	char *console;	    /* NULL: ring only; "-": stdout; else a file */
	uint32_t vcpus;
	uint64_t memory_mib;
	enum cpu_profile cpu_profile;
	uint32_t io_poll_us; /* event-loop busy-poll window before sleeping, 0: none */
	json_t *devices;     /* array (owned reference) or NULL */
};

#define VM_MAX_IO_POLL_US 1000

#define VM_DEFAULT_COMMAND_LINE                                                                    \
	"console=ttyS0 noxsave clearcpuid=smap,smep,popcnt i8042.noaux i8042.nokbd "               \
	"tsc=reliable reboot=k panic=-1"

/* Fills config from a JSON object {kernel, initrd?, cmdline?, vcpus?,
 * memory_mib?, cpu_profile?, io_poll_us?, console?, devices?}. Returns 0 or -EINVAL with
 * a reason in error (the config is then left empty). */
int vm_config__from_json(struct vm_config *config, const json_t *object, char *error,
			 size_t error_size);
void vm_config__init(struct vm_config *config);
void vm_config__free(struct vm_config *config);

enum vm_state {
	VM_STATE_EMPTY = 0, /* not configured */
	VM_STATE_CONFIGURED,
	VM_STATE_RUNNING,
	VM_STATE_PAUSED,
	VM_STATE_STOPPED,
};

enum vm_exit_reason {
	VM_EXIT_NONE = 0,
	VM_EXIT_DEBUG,		/* guest wrote the debug-exit port */
	VM_EXIT_RESET,		/* i8042 reset / KVM system reset */
	VM_EXIT_SHUTDOWN,	/* triple fault (KVM_EXIT_SHUTDOWN) or system off */
	VM_EXIT_WATCHDOG,	/* --timeout-ms elapsed */
	VM_EXIT_STOPPED,	/* stop request (control socket, signal) */
	VM_EXIT_INTERNAL_ERROR, /* KVM internal error / entry failure */
	VM_EXIT_VMM_ERROR,	/* a KVM ioctl failed */
};

/* Counted vCPU exits, by KVM exit reason. */
enum vm_exit_counter {
	VM_COUNT_IO = 0,
	VM_COUNT_IO_UNHANDLED,
	VM_COUNT_MMIO,
	VM_COUNT_MMIO_UNHANDLED,
	VM_COUNT_HLT,
	VM_COUNT_SHUTDOWN,
	VM_COUNT_INTR,
	VM_COUNT_SYSTEM_EVENT,
	VM_COUNT_INTERNAL_ERROR,
	VM_COUNT_FAIL_ENTRY,
	VM_COUNT_OTHER,
	VM_COUNT_MAX,
};

struct vcpu {
	struct vm *vm;
	uint32_t index;
	int fd;
	struct kvm_run *run;
	size_t run_size;
	pthread_t thread;
	bool thread_started;
};

struct vm {
	struct vm_config config;
	struct event_loop *loop;
	int kvm_fd;
	int vm_fd;
	struct guest_memory memory;
	struct mmio_bus *bus;
	struct console console;
	bool console_ready;
	struct serial serial;
	struct vcpu vcpus[VM_MAX_VCPUS];
	uint32_t vcpu_count;
	/* Set before vm__start by whoever wires the VMM (main.c: vmm/virtio's
	 * virtio_device_types): the types the config's "devices" may name,
	 * NULL-name terminated. NULL: a VM without devices. */
	const struct vmm_device_type *device_types;
	struct vmm_device devices[MMIO_BUS_VIRTIO_MAX_DEVICES];
	uint32_t device_count;
	uint64_t test_register;
	pthread_mutex_t test_lock;

	pthread_mutex_t lock; /* state, pause handshake */
	pthread_cond_t cond;
	_Atomic int state;
	_Atomic int exit_reason;
	int exit_code; /* debug-exit value */
	char exit_detail[128];
	atomic_bool stopping;
	atomic_bool pause_requested;
	uint32_t paused_vcpus;
	uint32_t running_vcpus;
	bool stop_handled;

	_Atomic uint64_t exits[VM_COUNT_MAX];
	uint64_t start_ns;			       /* monotonic, when vm__start began */
	uint64_t boot_markers_ns[VM_MAX_BOOT_MARKERS]; /* since process start */
	_Atomic uint32_t boot_marker_count;
	bool verbose;

	/* Optional, set before vm__start: called on the starting thread once
	 * the VM is set up and every vCPU thread exists, each having dropped
	 * its capabilities and waiting before its first KVM_RUN. The VMM locks
	 * itself down here (no_new_privs, capabilities, seccomp). Non-zero: the
	 * start fails with the reason in error and the VM stops (exit reason
	 * vmm-error) without running one guest instruction. */
	int (*on_ready)(struct vm *vm, void *opaque, char *error, size_t error_size);
	void *on_ready_opaque;

	/* Set by vm__prepare_restore: vm__start builds the VM from this
	 * snapshot instead of booting the kernel. Owned by the VM. */
	struct snapshot_state *restore;
	char *restore_memory_path;

	/* Called on the loop thread once the VM stopped (all vCPUs joined). */
	void (*on_stop)(struct vm *vm, void *opaque);
	void *on_stop_opaque;
};

/* Monotonic ns of process start (recorded by a constructor). */
uint64_t vm__process_start_ns(void);

/* Prepares an empty VM bound to `loop` (not yet configured). */
void vm__init(struct vm *vm, struct event_loop *loop);
/* Takes ownership of *config (left empty). Only in EMPTY/CONFIGURED/STOPPED
 * states (a stopped VM is torn down first). Returns 0 or -EBUSY. */
int vm__configure(struct vm *vm, struct vm_config *config);
/* Creates the VM from its configuration and starts the vCPUs. Returns 0 or
 * -errno with a reason in error. */
int vm__start(struct vm *vm, char *error, size_t error_size);
/* Stops all vCPUs with `reason` (first reason wins). Any thread. */
void vm__request_stop(struct vm *vm, enum vm_exit_reason reason, int code, const char *detail);
/* Pause/resume the vCPUs (loop thread). Returns 0, -EINVAL if not running/paused. */
int vm__pause(struct vm *vm);
int vm__resume(struct vm *vm);
/* Saves a paused VM to the state file `path` and its guest RAM to
 * "<path>.mem" (sparse; see snapshot.h). The VM stays paused. *info: a new
 * JSON object with sizes and times. 0, -EINVAL (not paused), -EBUSY (a
 * device has requests in flight: retry) or -errno, with a reason. Loop
 * thread. */
int vm__snapshot(struct vm *vm, const char *path, json_t **info, char *error, size_t error_size);
/* Reads and checks the snapshot at `path` against the configured VM
 * (vCPUs, memory, CPU profile, device types in order); the next vm__start
 * then restores it (guest RAM mapped private from "<path>.mem", vCPU,
 * VM and device state set) instead of booting. Only when configured.
 * 0 or -errno with a reason. */
int vm__prepare_restore(struct vm *vm, const char *path, char *error, size_t error_size);
/* New JSON array with each vCPU's rip, rsp, rflags, cr0, cr3, cs (for
 * debugging a hung guest). Only while paused (the vCPU threads are parked);
 * NULL otherwise. Loop thread. */
json_t *vm__registers_json(struct vm *vm);
/* Frees everything (joins vCPU threads first). */
void vm__destroy(struct vm *vm);

const char *vm__state_name(enum vm_state state);
const char *vm__exit_reason_name(enum vm_exit_reason reason);
/* New JSON objects for the control socket. */
json_t *vm__state_json(struct vm *vm);
json_t *vm__metrics_json(struct vm *vm);

/* CLI exit status for how the VM stopped: the debug-exit code (0-99,
 * larger codes become 99), 100 reset, 101 shutdown (triple fault), 102
 * watchdog, 103 stopped, 104 internal error, 125 VMM error. */
int vm__exit_status(const struct vm *vm);

#endif

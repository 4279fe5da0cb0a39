/* runtime_probe: which runtime this host can run, `vm` or `jail` (workers/jail/README.md:
 * "The worker picks vm or jail with a probe at start"; docs/host-requirements.md). */
#ifndef WARREN_RUNTIME_PROBE_H
#define WARREN_RUNTIME_PROBE_H

#include <stdbool.h>

enum runtime_probe_choice { RUNTIME_PROBE_JAIL = 0, RUNTIME_PROBE_VM };

struct runtime_probe_result {
	enum runtime_probe_choice choice;
	bool have_dev_kvm;    /* /dev/kvm opens read-write */
	bool have_vmx_or_svm; /* the CPU flags in /proc/cpuinfo */
	bool kvm_is_pvm;      /* /sys/module/kvm_pvm: the nested kvm-pvm module */
	char reason[256];     /* human readable, for the worker's start log */
};

/* Probe inputs, so tests can point them at fake files; NULL fields take
 * the real paths (/dev/kvm, /proc/cpuinfo, /sys/module/kvm_pvm). forced is
 * the operator's choice (the setting `runtime`): "vm" or "jail" force it,
 * NULL or anything else lets the probe decide. */
struct runtime_probe_paths {
	const char *dev_kvm;
	const char *cpuinfo;
	const char *kvm_pvm_module;
	const char *forced;
};

/* Decides vm or jail: vm needs /dev/kvm, vmx or svm in /proc/cpuinfo and
 * not the kvm_pvm module (it cannot run a Linux guest's user space).
 * paths->forced (vm|jail) forces the choice; the reason says so.
 * Extension point: the VMM room adds a guest SYSCALL probe (a CPL3 guest
 * that must reach its kernel) as a further check before RUNTIME_PROBE_VM. */
void runtime__probe(const struct runtime_probe_paths *paths, struct runtime_probe_result *out);

const char *runtime__probe_choice_name(enum runtime_probe_choice choice);

#endif

/* runtime_probe: vm or jail (warren/runtime_probe.h). */
#include "warren/runtime_probe.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* True when a "flags" line of cpuinfo lists vmx or svm as a whole word. */
static bool cpuinfo_has_virt(const char *path)
{
	char line[8192];
	bool found = false;
	FILE *f = fopen(path, "re");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "flags", 5) != 0)
			continue;
		for (char *word = strtok(strchr(line, ':') ? strchr(line, ':') + 1 : line, " \t\n");
		     word; word = strtok(NULL, " \t\n"))
			if (!strcmp(word, "vmx") || !strcmp(word, "svm"))
				found = true;
	}
	fclose(f);
	return found;
}

const char *runtime__probe_choice_name(enum runtime_probe_choice choice)
{
	return choice == RUNTIME_PROBE_VM ? "vm" : "jail";
}

void runtime__probe(const struct runtime_probe_paths *paths, struct runtime_probe_result *out)
{
	const char *dev_kvm = paths && paths->dev_kvm ? paths->dev_kvm : "/dev/kvm";
	const char *cpuinfo = paths && paths->cpuinfo ? paths->cpuinfo : "/proc/cpuinfo";
	const char *pvm =
	    paths && paths->kvm_pvm_module ? paths->kvm_pvm_module : "/sys/module/kvm_pvm";
	const char *forced = paths && paths->forced ? paths->forced : "";
	int fd;

	memset(out, 0, sizeof(*out));
	fd = open(dev_kvm, O_RDWR | O_CLOEXEC);
	out->have_dev_kvm = fd >= 0;
	if (fd >= 0)
		close(fd);
	out->have_vmx_or_svm = cpuinfo_has_virt(cpuinfo);
	out->kvm_is_pvm = access(pvm, F_OK) == 0;

	if (!strcmp(forced, "vm") || !strcmp(forced, "jail")) {
		out->choice = !strcmp(forced, "vm") ? RUNTIME_PROBE_VM : RUNTIME_PROBE_JAIL;
		snprintf(
		    out->reason, sizeof(out->reason),
		    "forced by setting runtime=%s (probe: /dev/kvm %s, vmx/svm %s, kvm_pvm %s)",
		    forced, out->have_dev_kvm ? "yes" : "no", out->have_vmx_or_svm ? "yes" : "no",
		    out->kvm_is_pvm ? "yes" : "no");
		return;
	}
	out->choice = RUNTIME_PROBE_JAIL;
	if (!out->have_dev_kvm)
		snprintf(out->reason, sizeof(out->reason), "jail: %s cannot be opened", dev_kvm);
	else if (out->kvm_is_pvm)
		snprintf(out->reason, sizeof(out->reason),
			 "jail: KVM is the kvm_pvm module (nested, cannot run a Linux guest's "
			 "user space; docs/host-requirements.md)");
	else if (!out->have_vmx_or_svm)
		snprintf(out->reason, sizeof(out->reason),
			 "jail: no vmx/svm flag in %s (no hardware virtualization)", cpuinfo);
	else {
		/* Extension point: the VMM's guest SYSCALL probe goes here. */
		out->choice = RUNTIME_PROBE_VM;
		snprintf(out->reason, sizeof(out->reason),
			 "vm: /dev/kvm with hardware virtualization (vmx/svm), not kvm_pvm");
	}
}

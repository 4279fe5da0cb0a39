/* cpuid: the CPUID a guest sees, built from KVM_GET_SUPPORTED_CPUID and
 * filtered through a named CPU profile.
 *
 *  baseline: hides XSAVE/OSXSAVE and everything that needs it (AVX, AVX2,
 *            AVX-512, FMA, F16C, PKU, leaf 0xd), SMEP, SMAP, POPCNT/ABM and
 *            reports vendor GenuineIntel. This is what kvm_pvm hosts need
 *            (docs/host-requirements.md: their CPL0 emulator fails on XSAVE, STAC/CLAC,
 *            POPCNT; an AMD vendor string makes Linux run FNCLEX). It also
 *            hides the KVM paravirt features whose guest side makes
 *            hypercalls (PV unhalt, send-IPI, sched-yield, map-GPA-range):
 *            hypercalls never return there.
 *  host:     everything KVM supports. */
#ifndef WARREN_VMM_CPUID_H
#define WARREN_VMM_CPUID_H

#include <stdbool.h>
#include <stdint.h>

#include <linux/kvm.h>

enum cpu_profile {
	CPU_PROFILE_BASELINE = 0,
	CPU_PROFILE_HOST = 1,
};

/* Parses "baseline" or "host". Returns false for anything else. */
bool cpuid__parse_profile(const char *name, enum cpu_profile *profile);
const char *cpuid__profile_name(enum cpu_profile profile);

/* Rewrites entries[0..count) in place for vCPU `vcpu_index` of `vcpu_count`:
 * applies `profile`, sets the APIC ids (leaf 1 EBX, leaf 0xb/0x1f EDX) and
 * the hypervisor bit. Leaves it removes get all registers zeroed. */
void cpuid__apply_profile(struct kvm_cpuid_entry2 *entries, uint32_t count,
			  enum cpu_profile profile, uint32_t vcpu_index, uint32_t vcpu_count);

#endif

/* cpuid: CPU profiles (see cpuid.h). Bit positions: Intel SDM vol. 2A,
 * CPUID instruction, tables 3-10/3-11 and leaf 07H. */
#include "cpuid.h"

#include <string.h>

#define BIT(n) (1u << (n))

/* leaf 1 ECX */
#define CPUID1_ECX_FMA	      BIT(12)
#define CPUID1_ECX_POPCNT     BIT(23)
#define CPUID1_ECX_XSAVE      BIT(26)
#define CPUID1_ECX_OSXSAVE    BIT(27)
#define CPUID1_ECX_AVX	      BIT(28)
#define CPUID1_ECX_F16C	      BIT(29)
#define CPUID1_ECX_HYPERVISOR BIT(31)
/* leaf 7.0 EBX */
#define CPUID7_EBX_AVX2 BIT(5)
#define CPUID7_EBX_SMEP BIT(7)
#define CPUID7_EBX_SMAP BIT(20)
#define CPUID7_EBX_AVX512                                                                          \
	(BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31))
/* leaf 7.0 ECX */
#define CPUID7_ECX_AVX512 (BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14))
#define CPUID7_ECX_PKU	  (BIT(3) | BIT(4))
#define CPUID7_ECX_VAES	  (BIT(9) | BIT(10)) /* VAES, VPCLMULQDQ: AVX encodings */
/* leaf 7.0 EDX */
#define CPUID7_EDX_AVX512 (BIT(2) | BIT(3) | BIT(8) | BIT(23))
#define CPUID7_EDX_AMX	  (BIT(22) | BIT(24) | BIT(25))
/* leaf 7.1 EAX */
#define CPUID71_EAX_AVX (BIT(4) | BIT(5)) /* AVX-VNNI, AVX512_BF16 */
/* leaf 0x40000001 EAX (KVM paravirt features, Documentation/virt/kvm/x86/cpuid.rst):
 * the ones whose guest side issues hypercalls, which never return on kvm_pvm
 * (an AP's PV send-IPI hung SMP bring-up) */
#define KVM_FEATURE_PV_UNHALT	     BIT(7)
#define KVM_FEATURE_PV_SEND_IPI	     BIT(11)
#define KVM_FEATURE_PV_SCHED_YIELD   BIT(13)
#define KVM_FEATURE_HC_MAP_GPA_RANGE BIT(16)
#define KVM_FEATURES_HYPERCALLS                                                                    \
	(KVM_FEATURE_PV_UNHALT | KVM_FEATURE_PV_SEND_IPI | KVM_FEATURE_PV_SCHED_YIELD |            \
	 KVM_FEATURE_HC_MAP_GPA_RANGE)
/* leaf 0x80000001 ECX */
#define CPUID81_ECX_ABM BIT(5)

bool cpuid__parse_profile(const char *name, enum cpu_profile *profile)
{
	if (name == NULL)
		return false;
	if (strcmp(name, "baseline") == 0) {
		*profile = CPU_PROFILE_BASELINE;
		return true;
	}
	if (strcmp(name, "host") == 0) {
		*profile = CPU_PROFILE_HOST;
		return true;
	}
	return false;
}

const char *cpuid__profile_name(enum cpu_profile profile)
{
	return profile == CPU_PROFILE_HOST ? "host" : "baseline";
}

static void cpuid__apply_baseline(struct kvm_cpuid_entry2 *entry)
{
	switch (entry->function) {
	case 0: /* vendor "GenuineIntel" in EBX, EDX, ECX */
		memcpy(&entry->ebx, "Genu", 4);
		memcpy(&entry->edx, "ineI", 4);
		memcpy(&entry->ecx, "ntel", 4);
		break;
	case 1:
		entry->ecx &= ~(CPUID1_ECX_FMA | CPUID1_ECX_POPCNT | CPUID1_ECX_XSAVE |
				CPUID1_ECX_OSXSAVE | CPUID1_ECX_AVX | CPUID1_ECX_F16C);
		break;
	case 7:
		if (entry->index == 0) {
			entry->ebx &= ~(CPUID7_EBX_AVX2 | CPUID7_EBX_SMEP | CPUID7_EBX_SMAP |
					CPUID7_EBX_AVX512);
			entry->ecx &= ~(CPUID7_ECX_AVX512 | CPUID7_ECX_PKU | CPUID7_ECX_VAES);
			entry->edx &= ~(CPUID7_EDX_AVX512 | CPUID7_EDX_AMX);
		} else if (entry->index == 1) {
			entry->eax &= ~CPUID71_EAX_AVX;
		}
		break;
	case 0xd: /* XSAVE state enumeration: gone with XSAVE */
		entry->eax = entry->ebx = entry->ecx = entry->edx = 0;
		break;
	case 0x40000001:
		entry->eax &= ~KVM_FEATURES_HYPERCALLS;
		break;
	case 0x80000001:
		entry->ecx &= ~CPUID81_ECX_ABM;
		break;
	default:
		break;
	}
}

void cpuid__apply_profile(struct kvm_cpuid_entry2 *entries, uint32_t count,
			  enum cpu_profile profile, uint32_t vcpu_index, uint32_t vcpu_count)
{
	for (uint32_t i = 0; i < count; i++) {
		struct kvm_cpuid_entry2 *entry = &entries[i];

		if (profile == CPU_PROFILE_BASELINE)
			cpuid__apply_baseline(entry);
		switch (entry->function) {
		case 1:
			/* EBX[31:24] initial APIC id, EBX[23:16] logical processors */
			entry->ebx = (entry->ebx & 0x0000ffffu) | (vcpu_index << 24) |
				     ((vcpu_count & 0xffu) << 16);
			entry->ecx |= CPUID1_ECX_HYPERVISOR;
			break;
		case 0xb:
		case 0x1f:
			entry->edx = vcpu_index; /* x2APIC id */
			break;
		default:
			break;
		}
	}
}

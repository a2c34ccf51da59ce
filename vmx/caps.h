#ifndef VMX_CAPS_H
#define VMX_CAPS_H
#include <stdbool.h>
#include <stdint.h>

struct vmx_caps {
    bool cpuid_vmx;      /* CPUID.1:ECX.VMX[bit 5] */
    bool usable;         /* VMX can be turned on */
    char vendor[13];
    uint64_t feature_control;
    bool fc_locked_by_us;
    uint64_t basic, pinbased, procbased, procbased2, exit, entry, misc;
    uint64_t ept_vpid;
    bool true_ctls;
    bool ept, vpid, unrestricted, ept_ad, pml, preemption_timer, ept_wb,
        ept_4level, ept_2m, ept_1g, invept, invept_single, invept_all, invvpid;
    const char *why_not; /* reason when !usable */
};

/* Reads CPUID and the capability MSRs, sets and locks IA32_FEATURE_CONTROL
 * when the firmware left it unlocked, and prints the capability report.
 * Needs the hypervisor's IDT (it uses rdmsr_safe). */
void vmx_caps_probe(struct vmx_caps *c);
#endif

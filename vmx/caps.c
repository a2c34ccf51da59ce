/* VMX capability discovery (SDM Vol. 3C, appendix A). Nothing is assumed:
 * every feature the later code uses is read from the capability MSRs. */
#include "vmx/caps.h"
#include "arch/cpu.h"
#include "arch/msr.h"
#include "lib/log.h"
#include "lib/string.h"

/* Allowed-1 settings are the high 32 bits of a control capability MSR. */
#define ALLOWED1(msr, bit) ((((msr) >> 32) >> (bit)) & 1)

#define PROCBASED_ACTIVATE_SECONDARY 31
#define PROC2_ENABLE_EPT 1
#define PROC2_ENABLE_VPID 5
#define PROC2_UNRESTRICTED_GUEST 7
#define PROC2_ENABLE_PML 17
#define PIN_PREEMPTION_TIMER 6

/* IA32_VMX_EPT_VPID_CAP bits (SDM A.10). */
#define EPT_CAP_4LEVEL (1ULL << 6)
#define EPT_CAP_WB (1ULL << 14)
#define EPT_CAP_2M (1ULL << 16)
#define EPT_CAP_1G (1ULL << 17)
#define EPT_CAP_INVEPT (1ULL << 20)
#define EPT_CAP_AD (1ULL << 21)
#define EPT_CAP_INVEPT_SINGLE (1ULL << 25)
#define EPT_CAP_INVEPT_ALL (1ULL << 26)
#define EPT_CAP_INVVPID (1ULL << 32)

#define BASIC_TRUE_CTLS (1ULL << 55)

static const char *yn(bool b)
{
    return b ? "yes" : "no";
}

void vmx_caps_probe(struct vmx_caps *c)
{
    uint32_t a, b, cx, d;
    memset(c, 0, sizeof(*c));
    cpuid(0, 0, &a, &b, &cx, &d);
    memcpy(c->vendor, &b, 4);
    memcpy(c->vendor + 4, &d, 4);
    memcpy(c->vendor + 8, &cx, 4);
    cpuid(1, 0, &a, &b, &cx, &d);
    c->cpuid_vmx = (cx >> 5) & 1;
    pr_info(LS_VMX, "CPU vendor %s, family/model/stepping %#x", c->vendor, a);

    if (!c->cpuid_vmx) {
        c->why_not = "the CPU does not report VMX (CPUID.1:ECX bit 5 is 0)";
        goto absent;
    }
    if (rdmsr_safe(MSR_IA32_FEATURE_CONTROL, &c->feature_control)) {
        c->why_not = "IA32_FEATURE_CONTROL cannot be read";
        goto absent;
    }
    if (!(c->feature_control & FEATURE_CONTROL_LOCK)) {
        /* Unlocked (Bochs leaves it at 0): enable VMX outside SMX and lock,
         * as firmware normally does (SDM Vol. 3C 24.7). */
        uint64_t v = c->feature_control | FEATURE_CONTROL_LOCK |
                     FEATURE_CONTROL_VMX_OUTSIDE_SMX;
        if (wrmsr_safe(MSR_IA32_FEATURE_CONTROL, v) == 0 &&
            rdmsr_safe(MSR_IA32_FEATURE_CONTROL, &c->feature_control) == 0)
            c->fc_locked_by_us = true;
    }
    pr_info(LS_VMX, "IA32_FEATURE_CONTROL = %#llx (%s%s)",
            (unsigned long long)c->feature_control,
            (c->feature_control & FEATURE_CONTROL_LOCK) ? "locked" : "unlocked",
            c->fc_locked_by_us ? ", set and locked by the hypervisor"
                               : ", as the firmware left it");
    if (!(c->feature_control & FEATURE_CONTROL_VMX_OUTSIDE_SMX)) {
        c->why_not = "the firmware locked IA32_FEATURE_CONTROL with VMX disabled "
                     "(enable VT-x in the firmware setup)";
        goto absent;
    }
    if (rdmsr_safe(MSR_IA32_VMX_BASIC, &c->basic) || c->basic == 0) {
        c->why_not = "CPUID reports VMX but IA32_VMX_BASIC reads 0 "
                     "(an emulator without VMX, e.g. QEMU TCG)";
        goto absent;
    }
    c->true_ctls = c->basic & BASIC_TRUE_CTLS;
    rdmsr_safe(c->true_ctls ? MSR_IA32_VMX_TRUE_PINBASED_CTLS : MSR_IA32_VMX_PINBASED_CTLS,
               &c->pinbased);
    rdmsr_safe(c->true_ctls ? MSR_IA32_VMX_TRUE_PROCBASED_CTLS
                            : MSR_IA32_VMX_PROCBASED_CTLS,
               &c->procbased);
    rdmsr_safe(c->true_ctls ? MSR_IA32_VMX_TRUE_EXIT_CTLS : MSR_IA32_VMX_EXIT_CTLS,
               &c->exit);
    rdmsr_safe(c->true_ctls ? MSR_IA32_VMX_TRUE_ENTRY_CTLS : MSR_IA32_VMX_ENTRY_CTLS,
               &c->entry);
    rdmsr_safe(MSR_IA32_VMX_MISC, &c->misc);
    if (ALLOWED1(c->procbased, PROCBASED_ACTIVATE_SECONDARY))
        rdmsr_safe(MSR_IA32_VMX_PROCBASED_CTLS2, &c->procbased2);
    c->ept = ALLOWED1(c->procbased2, PROC2_ENABLE_EPT);
    c->vpid = ALLOWED1(c->procbased2, PROC2_ENABLE_VPID);
    c->unrestricted = ALLOWED1(c->procbased2, PROC2_UNRESTRICTED_GUEST);
    c->pml = ALLOWED1(c->procbased2, PROC2_ENABLE_PML);
    c->preemption_timer = ALLOWED1(c->pinbased, PIN_PREEMPTION_TIMER);
    if (c->ept || c->vpid)
        rdmsr_safe(MSR_IA32_VMX_EPT_VPID_CAP, &c->ept_vpid);
    c->ept_4level = c->ept_vpid & EPT_CAP_4LEVEL;
    c->ept_wb = c->ept_vpid & EPT_CAP_WB;
    c->ept_2m = c->ept_vpid & EPT_CAP_2M;
    c->ept_1g = c->ept_vpid & EPT_CAP_1G;
    c->invept = c->ept_vpid & EPT_CAP_INVEPT;
    c->ept_ad = c->ept_vpid & EPT_CAP_AD;
    c->invept_single = c->ept_vpid & EPT_CAP_INVEPT_SINGLE;
    c->invept_all = c->ept_vpid & EPT_CAP_INVEPT_ALL;
    c->invvpid = c->ept_vpid & EPT_CAP_INVVPID;

    pr_info(LS_VMX, "VMX capability MSRs: basic=%#llx pin=%#llx proc=%#llx "
                    "proc2=%#llx exit=%#llx entry=%#llx misc=%#llx ept_vpid=%#llx%s",
            (unsigned long long)c->basic, (unsigned long long)c->pinbased,
            (unsigned long long)c->procbased, (unsigned long long)c->procbased2,
            (unsigned long long)c->exit, (unsigned long long)c->entry,
            (unsigned long long)c->misc, (unsigned long long)c->ept_vpid,
            c->true_ctls ? " (TRUE controls)" : "");
    pr_info(LS_VMX, "VMX: present, VMCS revision %#llx, EPT %s (4-level %s, WB %s, "
                    "2M %s, 1G %s, A/D %s, INVEPT single %s all %s), VPID %s "
                    "(INVVPID %s), unrestricted guest %s, PML %s, preemption timer %s",
            (unsigned long long)(c->basic & 0x7fffffff), yn(c->ept), yn(c->ept_4level),
            yn(c->ept_wb), yn(c->ept_2m), yn(c->ept_1g), yn(c->ept_ad),
            yn(c->invept_single), yn(c->invept_all), yn(c->vpid), yn(c->invvpid),
            yn(c->unrestricted), yn(c->pml), yn(c->preemption_timer));

    if (!c->ept || !c->ept_4level || !c->ept_wb) {
        c->why_not = "VMX lacks EPT with a 4-level walk and write-back memory type";
        goto absent;
    }
    if (!c->unrestricted) {
        c->why_not = "VMX lacks unrestricted guest";
        goto absent;
    }
    c->usable = true;
    return;
absent:
    pr_warn(LS_VMX, "VMX: absent: %s. Guests cannot run on this machine; "
                    "only what needs no VMX will run.", c->why_not);
}

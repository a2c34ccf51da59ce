/* What a guest sees of the CPU. CPUID passes the host's answers through a
 * whitelist: VMX, the local APIC, x2APIC, XSAVE/AVX (so that one FXSAVE
 * area per VM holds all its FPU state), MTRR, MCE and PMU are hidden; leaf
 * 0x15 reports the TSC rate the hypervisor measured (under Bochs a guest
 * cannot calibrate against the PIT in time); the hypervisor bit and leaf
 * 0x40000000 say who we are, 0x40000001 the hypercall ABI's version and
 * features. MSRs: the syscall and segment-base MSRs pass through
 * (switched between VMs by vmx/sched.c), a few are emulated, and the rest
 * raise #GP in the guest, each reported once (the first VM_MSR_REMEMBERED;
 * past them through the VM's log rate limit). */
#include "arch/cpu.h"
#include "arch/tsc.h"
#include "arch/msr.h"
#include "lib/log.h"
#include "lib/string.h"
#include "mm/balloon.h"
#include "vmx/vmx.h"

#define HV_CPUID_BASE 0x40000000u
#define HV_CPUID_MAX 0x40000001u
#define HV_SIGNATURE "OvercommitHV" /* 12 bytes in EBX, ECX, EDX */

/* CPUID.1:ECX */
#define C1_SSE3 (1u << 0)
#define C1_PCLMUL (1u << 1)
#define C1_SSSE3 (1u << 9)
#define C1_CX16 (1u << 13)
#define C1_SSE41 (1u << 19)
#define C1_SSE42 (1u << 20)
#define C1_MOVBE (1u << 22)
#define C1_POPCNT (1u << 23)
#define C1_AES (1u << 25)
#define C1_RDRAND (1u << 30)
#define C1_HYPERVISOR (1u << 31)
/* CPUID.1:EDX */
#define D1_FPU (1u << 0)
#define D1_VME (1u << 1)
#define D1_DE (1u << 2)
#define D1_PSE (1u << 3)
#define D1_TSC (1u << 4)
#define D1_MSR (1u << 5)
#define D1_PAE (1u << 6)
#define D1_CX8 (1u << 8)
#define D1_SEP (1u << 11)
#define D1_PGE (1u << 13)
#define D1_CMOV (1u << 15)
#define D1_PAT (1u << 16)
#define D1_PSE36 (1u << 17)
#define D1_CLFSH (1u << 19)
#define D1_MMX (1u << 23)
#define D1_FXSR (1u << 24)
#define D1_SSE (1u << 25)
#define D1_SSE2 (1u << 26)

static const uint32_t leaf1_ecx_ok = C1_SSE3 | C1_PCLMUL | C1_SSSE3 | C1_CX16 | C1_SSE41 |
                                     C1_SSE42 | C1_MOVBE | C1_POPCNT | C1_AES | C1_RDRAND;
static const uint32_t leaf1_edx_ok = D1_FPU | D1_VME | D1_DE | D1_PSE | D1_TSC | D1_MSR |
                                     D1_PAE | D1_CX8 | D1_SEP | D1_PGE | D1_CMOV | D1_PAT |
                                     D1_PSE36 | D1_CLFSH | D1_MMX | D1_FXSR | D1_SSE |
                                     D1_SSE2;
/* CPUID.7.0:EBX: FSGSBASE, BMI1, SMEP, BMI2, ERMS, RDSEED, ADX, SMAP, CLFLUSHOPT. */
static const uint32_t leaf7_ebx_ok = (1u << 0) | (1u << 3) | (1u << 7) | (1u << 8) |
                                     (1u << 9) | (1u << 18) | (1u << 19) | (1u << 20) |
                                     (1u << 23);
/* CPUID.80000001: ECX LAHF/SAHF, LZCNT, PREFETCHW; EDX SYSCALL, NX, 1G pages, LM. */
static const uint32_t ext1_ecx_ok = (1u << 0) | (1u << 5) | (1u << 8);
static const uint32_t ext1_edx_ok = (1u << 11) | (1u << 20) | (1u << 26) | (1u << 29);

void policy_cpuid(struct vm *vm, uint32_t leaf, uint32_t sub, uint32_t r[4])
{
    (void)vm;
    uint32_t max_basic, b, c, d;
    cpuid(0, 0, &max_basic, &b, &c, &d);
    if (leaf >= HV_CPUID_BASE && leaf <= HV_CPUID_BASE + 0xff) {
        memset(r, 0, 16);
        if (leaf == HV_CPUID_BASE) {
            r[0] = HV_CPUID_MAX;
            memcpy(&r[1], HV_SIGNATURE, 4);
            memcpy(&r[2], HV_SIGNATURE + 4, 4);
            memcpy(&r[3], HV_SIGNATURE + 8, 4);
        } else if (leaf == HV_CPUID_MAX) {
            r[0] = HC_ABI_VERSION; /* docs/hypercall.md */
            r[1] = HC_FEATURES;
        }
        return;
    }
    cpuid(leaf, sub, &r[0], &r[1], &r[2], &r[3]);
    if ((leaf > 0x15 && leaf < 0x80000000) || (leaf > max_basic && leaf < 0x15)) {
        memset(r, 0, 16);
        return;
    }
    switch (leaf) {
    case 0:
        r[0] = 0x15; /* leaves up to the TSC leaf; unknown ones read zero */
        break;
    case 1:
        r[1] = (r[1] & 0x0000ffffu) | (1u << 16); /* APIC id 0, one logical CPU */
        r[2] = (r[2] & leaf1_ecx_ok) | C1_HYPERVISOR;
        r[3] &= leaf1_edx_ok;
        break;
    case 2:
    case 4:
        if (leaf == 4)
            r[0] &= 0x3ff; /* one core, one thread per cache */
        break;
    case 7:
        if (sub == 0) {
            r[0] = 0;
            r[1] &= leaf7_ebx_ok;
            r[2] = r[3] = 0;
        } else {
            memset(r, 0, 16);
        }
        break;
    case 0x80000000:
        if (r[0] > 0x80000008)
            r[0] = 0x80000008;
        break;
    case 0x80000001:
        r[0] = r[1] = 0;
        r[2] &= ext1_ecx_ok;
        r[3] &= ext1_edx_ok;
        break;
    case 0x80000002:
    case 0x80000003:
    case 0x80000004:
    case 0x80000008:
        break; /* brand string, address sizes */
    case 0x80000007:
        r[0] = r[1] = r[2] = 0;
        r[3] &= 1u << 8; /* invariant TSC */
        break;
    case 0x15:
        /* TSC = crystal * EBX / EAX; the "crystal" is the TSC itself. */
        r[0] = 1;
        r[1] = 1;
        r[2] = (uint32_t)(tsc_hz() > 0xffffffffULL ? 0 : tsc_hz());
        r[3] = 0;
        break;
    default:
        memset(r, 0, 16); /* 3, 5, 6, 8-0x14, 0x80000005/6: nothing to offer */
        break;
    }
}

/* MSRs the guest reads and writes directly. */
static const uint32_t passthrough[] = {
    MSR_FS_BASE, MSR_GS_BASE, 0xc0000102 /* KERNEL_GS_BASE */,
    0xc0000081 /* STAR */, 0xc0000082 /* LSTAR */, 0xc0000083 /* CSTAR */,
    0xc0000084 /* SFMASK */, 0x174, 0x175, 0x176 /* SYSENTER_CS/ESP/EIP: in the VMCS */,
};

static void bitmap_clear(uint8_t *bm, uint32_t msr)
{
    /* Read bitmap low 0..1K, high 1K..2K; write bitmaps at +2K (SDM 25.6.9). */
    uint32_t base = msr >= 0xc0000000 ? 1024 : 0;
    uint32_t idx = msr & 0x1fff;
    bm[base + idx / 8] &= (uint8_t)~(1u << (idx % 8));
    bm[2048 + base + idx / 8] &= (uint8_t)~(1u << (idx % 8));
}

void policy_msr_bitmap(uint8_t *bm)
{
    memset(bm, 0xff, 4096);
    for (unsigned i = 0; i < sizeof(passthrough) / sizeof(passthrough[0]); i++)
        bitmap_clear(bm, passthrough[i]);
}

#define MSR_IA32_TSC 0x10
#define MSR_IA32_UCODE_REV 0x8b
#define MSR_IA32_MISC_ENABLE 0x1a0
#define MSR_IA32_DEBUGCTL 0x1d9
#define MSR_IA32_CR_PAT 0x277
#define EFER_SCE (1ULL << 0)
#define EFER_LMA (1ULL << 10)

const char *const vm_log_kind_name[VM_LOG_KINDS] = {
    [VLOG_MSR] = "unknown MSR",
    [VLOG_IO] = "unclaimed I/O port",
};

/* An MSR access answered with #GP. The first VM_MSR_REMEMBERED distinct
 * (MSR, direction) pairs are reported once each; a guest probing more goes
 * through the VM's rate limit, so no count of MSRs makes it a line per
 * exit. */
static void report_gp(struct vm *vm, uint32_t msr, bool write, uint64_t val)
{
    uint64_t key = (uint64_t)write << 32 | msr;
    vm->msr_gp++;
    for (int i = 0; i < vm->nmsr_logged; i++)
        if (vm->msr_gp_logged[i] == key)
            return;
    bool remembered = vm->nmsr_logged < VM_MSR_REMEMBERED;
    if (!log_limit_pass(&vm->log[VLOG_MSR], LS_VMX, LOG_INFO, vm->name,
                        vm_log_kind_name[VLOG_MSR]))
        return; /* not remembered either: a later access may still be reported */
    if (remembered)
        vm->msr_gp_logged[vm->nmsr_logged++] = key;
    const char *how = remembered ? "reported once" : "rate-limited";
    if (write)
        pr_info(LS_VMX, "vm %s: WRMSR %#x = %#llx not emulated: #GP (%s)", vm->name, msr,
                (unsigned long long)val, how);
    else
        pr_info(LS_VMX, "vm %s: RDMSR %#x not emulated: #GP (%s)", vm->name, msr, how);
}

int policy_rdmsr(struct vm *vm, uint32_t msr, uint64_t *val)
{
    switch (msr) {
    case MSR_IA32_TSC:
        *val = rdtsc() + vm->tsc_offset;
        return 0;
    case MSR_IA32_FEATURE_CONTROL:
        *val = FEATURE_CONTROL_LOCK; /* locked, VMX off */
        return 0;
    case MSR_IA32_UCODE_REV:
        *val = 0;
        return 0;
    case MSR_IA32_MISC_ENABLE:
        *val = 1; /* fast strings */
        return 0;
    case MSR_EFER:
        *val = vmread(GUEST_IA32_EFER);
        return 0;
    case MSR_IA32_CR_PAT:
        *val = vmread(GUEST_IA32_PAT);
        return 0;
    case MSR_IA32_DEBUGCTL:
        *val = 0;
        return 0;
    default:
        report_gp(vm, msr, false, 0);
        return -1;
    }
}

int policy_wrmsr(struct vm *vm, uint32_t msr, uint64_t val)
{
    switch (msr) {
    case MSR_IA32_UCODE_REV:
    case MSR_IA32_MISC_ENABLE:
        return 0; /* ignored, as real CPUs mostly do */
    case MSR_IA32_DEBUGCTL:
        return val ? -1 : 0;
    case MSR_EFER: {
        /* SCE, LME, NXE are the guest's; LMA follows LME and paging. */
        uint64_t allowed = EFER_SCE | EFER_LME | EFER_NXE;
        if (val & ~(allowed | EFER_LMA))
            return -1;
        uint64_t cr0 = vmread(GUEST_CR0);
        bool lma = (val & EFER_LME) && (cr0 & CR0_PG);
        val = (val & allowed) | (lma ? EFER_LMA : 0);
        vmwrite(GUEST_IA32_EFER, val);
        struct vcpu *v = &vm->vcpu;
        v->entry_ctls = lma ? v->entry_ctls | ENTRY_IA32E_MODE_GUEST
                            : v->entry_ctls & ~ENTRY_IA32E_MODE_GUEST;
        vmwrite(VM_ENTRY_CONTROLS, v->entry_ctls);
        return 0;
    }
    case MSR_IA32_CR_PAT:
        /* Every byte must be a valid memory type (0, 1, 4, 5, 6, 7). */
        for (int i = 0; i < 8; i++) {
            uint8_t t = (uint8_t)(val >> (8 * i));
            if (t > 7 || t == 2 || t == 3)
                return -1;
        }
        vmwrite(GUEST_IA32_PAT, val);
        return 0;
    default:
        report_gp(vm, msr, true, val);
        return -1;
    }
}

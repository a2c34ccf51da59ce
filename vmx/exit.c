/* VM-exit dispatch: a table indexed by basic exit reason. Handlers decode
 * the exit and return what happens next; they never decide memory policy
 * (that is mm/'s job) and never stop the hypervisor for a guest's doing. */
#include "vmx/exit.h"
#include "arch/cpu.h"
#include "lib/log.h"
#include "vmx/vmx.h"

typedef enum exit_action (*exit_handler)(struct vm *vm, uint64_t qual);

#define RFLAGS_IF (1ULL << 9)

static const char *const reason_names[EXIT_REASON_COUNT] = {
    [EXIT_REASON_EXCEPTION_NMI] = "exception/NMI",
    [EXIT_REASON_EXTERNAL_INTERRUPT] = "external interrupt",
    [EXIT_REASON_TRIPLE_FAULT] = "triple fault",
    [EXIT_REASON_INIT_SIGNAL] = "INIT",
    [EXIT_REASON_SIPI] = "SIPI",
    [EXIT_REASON_INTERRUPT_WINDOW] = "interrupt window",
    [EXIT_REASON_NMI_WINDOW] = "NMI window",
    [EXIT_REASON_TASK_SWITCH] = "task switch",
    [EXIT_REASON_CPUID] = "CPUID",
    [EXIT_REASON_GETSEC] = "GETSEC",
    [EXIT_REASON_HLT] = "HLT",
    [EXIT_REASON_INVD] = "INVD",
    [EXIT_REASON_INVLPG] = "INVLPG",
    [EXIT_REASON_RDPMC] = "RDPMC",
    [EXIT_REASON_RDTSC] = "RDTSC",
    [EXIT_REASON_RSM] = "RSM",
    [EXIT_REASON_VMCALL] = "VMCALL",
    [EXIT_REASON_VMCLEAR] = "VMCLEAR",
    [EXIT_REASON_VMLAUNCH] = "VMLAUNCH",
    [EXIT_REASON_VMPTRLD] = "VMPTRLD",
    [EXIT_REASON_VMPTRST] = "VMPTRST",
    [EXIT_REASON_VMREAD] = "VMREAD",
    [EXIT_REASON_VMRESUME] = "VMRESUME",
    [EXIT_REASON_VMWRITE] = "VMWRITE",
    [EXIT_REASON_VMOFF] = "VMXOFF",
    [EXIT_REASON_VMON] = "VMXON",
    [EXIT_REASON_CR_ACCESS] = "CR access",
    [EXIT_REASON_DR_ACCESS] = "DR access",
    [EXIT_REASON_IO_INSTRUCTION] = "I/O instruction",
    [EXIT_REASON_MSR_READ] = "RDMSR",
    [EXIT_REASON_MSR_WRITE] = "WRMSR",
    [EXIT_REASON_INVALID_STATE] = "entry failure: invalid guest state",
    [EXIT_REASON_MSR_LOADING] = "entry failure: MSR loading",
    [EXIT_REASON_MWAIT] = "MWAIT",
    [EXIT_REASON_MONITOR_TRAP] = "monitor trap flag",
    [EXIT_REASON_MONITOR] = "MONITOR",
    [EXIT_REASON_PAUSE] = "PAUSE",
    [EXIT_REASON_MCE_DURING_ENTRY] = "entry failure: machine check",
    [EXIT_REASON_TPR_BELOW_THRESHOLD] = "TPR below threshold",
    [EXIT_REASON_APIC_ACCESS] = "APIC access",
    [EXIT_REASON_EOI_INDUCED] = "EOI induced",
    [EXIT_REASON_GDTR_IDTR] = "GDTR/IDTR access",
    [EXIT_REASON_LDTR_TR] = "LDTR/TR access",
    [EXIT_REASON_EPT_VIOLATION] = "EPT violation",
    [EXIT_REASON_EPT_MISCONFIG] = "EPT misconfiguration",
    [EXIT_REASON_INVEPT] = "INVEPT",
    [EXIT_REASON_RDTSCP] = "RDTSCP",
    [EXIT_REASON_PREEMPTION_TIMER] = "preemption timer",
    [EXIT_REASON_INVVPID] = "INVVPID",
    [EXIT_REASON_WBINVD] = "WBINVD",
    [EXIT_REASON_XSETBV] = "XSETBV",
    [EXIT_REASON_APIC_WRITE] = "APIC write",
    [EXIT_REASON_RDRAND] = "RDRAND",
    [EXIT_REASON_INVPCID] = "INVPCID",
    [EXIT_REASON_VMFUNC] = "VMFUNC",
    [EXIT_REASON_ENCLS] = "ENCLS",
    [EXIT_REASON_RDSEED] = "RDSEED",
    [EXIT_REASON_PML_FULL] = "PML full",
    [EXIT_REASON_XSAVES] = "XSAVES",
    [EXIT_REASON_XRSTORS] = "XRSTORS",
};

const char *exit_reason_name(uint32_t reason)
{
    if (reason < EXIT_REASON_COUNT && reason_names[reason])
        return reason_names[reason];
    return "unknown";
}

/* Moves past the exiting instruction. Its completion also ends any
 * blocking by STI or MOV SS (SDM 25.4.2). */
static void skip_instruction(void)
{
    vmwrite(GUEST_RIP, vmread(GUEST_RIP) + vmread(VM_EXIT_INSTRUCTION_LEN));
    uint64_t intr = vmread(GUEST_INTERRUPTIBILITY_INFO);
    if (intr & (INTERRUPTIBILITY_STI | INTERRUPTIBILITY_MOV_SS))
        vmwrite(GUEST_INTERRUPTIBILITY_INFO,
                intr & ~(uint64_t)(INTERRUPTIBILITY_STI | INTERRUPTIBILITY_MOV_SS));
}

static uint64_t *gpr(struct vm *vm, unsigned n)
{
    return &vm->vcpu.regs.gpr[n & 15];
}

static enum exit_action h_cpuid(struct vm *vm, uint64_t qual)
{
    struct guest_regs *r = &vm->vcpu.regs;
    uint32_t out[4];
    policy_cpuid(vm, (uint32_t)r->rax, (uint32_t)r->rcx, out);
    r->rax = out[0];
    r->rbx = out[1];
    r->rcx = out[2];
    r->rdx = out[3];
    skip_instruction();
    return EXIT_RESUME;
}

/* A hypercall (docs/hypercall.md). VMCALL exits at any privilege level;
 * the CPL is SS.DPL (access-rights bits 6:5), and mm/balloon.c refuses
 * anything but 0. */
static enum exit_action h_vmcall(struct vm *vm, uint64_t qual)
{
    (void)qual;
    struct guest_regs *g = &vm->vcpu.regs;
    struct hc_regs r = { .rax = g->rax, .rbx = g->rbx, .rcx = g->rcx, .rdx = g->rdx };
    uint64_t fn = r.rax;
    unsigned cpl = (unsigned)(vmread(GUEST_SS_AR_BYTES) >> 5) & 3;
    uint64_t t0 = rdtsc();
    hc_dispatch(&vm->p2m, &vm->balloon, cpl, &r);
    if (fn < HC_FUNCTION_COUNT)
        vm->balloon.cycles[fn] += rdtsc() - t0;
    /* A refusal is reported (rate-limited) by hc_dispatch itself. */
    g->rax = r.rax;
    g->rbx = r.rbx;
    g->rcx = r.rcx;
    g->rdx = r.rdx;
    skip_instruction();
    return EXIT_RESUME;
}

static enum exit_action h_hlt(struct vm *vm, uint64_t qual)
{
    skip_instruction();
    if (!(vmread(GUEST_RFLAGS) & RFLAGS_IF)) {
        vm_stop(vm, false, "power-off (HLT with interrupts disabled)");
        return EXIT_STOP;
    }
    return EXIT_HALT;
}

static enum exit_action h_io(struct vm *vm, uint64_t qual)
{
    uint16_t port = IO_QUAL_PORT(qual);
    int size = (int)IO_QUAL_SIZE(qual);
    bool in = IO_QUAL_IN(qual);
    if (IO_QUAL_STRING(qual)) {
        vm_stop(vm, true, "string I/O (%s%s port %#x) is not emulated",
                IO_QUAL_REP(qual) ? "rep " : "", in ? "ins" : "outs", port);
        vmx_dump_guest(vm);
        return EXIT_STOP;
    }
    struct guest_regs *r = &vm->vcpu.regs;
    uint32_t mask = size == 4 ? 0xffffffffu : (1u << (8 * size)) - 1;
    uint32_t val = (uint32_t)r->rax & mask;
    uint64_t now = rdtsc() + vm->tsc_offset;
    if (!platform_io(&vm->dev, port, size, in, &val, now, vm->dev.pit.tsc_hz))
        pr_limited(&vm->log[VLOG_IO], LS_VMX, LOG_DEBUG, vm->name, vm_log_kind_name[VLOG_IO],
                   "vm %s: %s of unclaimed port %#x", vm->name, in ? "read" : "write", port);
    if (in) {
        val &= mask;
        /* A 32-bit IN zero-extends into RAX; 8/16-bit ones merge. */
        r->rax = size == 4 ? val : (r->rax & ~(uint64_t)mask) | val;
    }
    skip_instruction();
    if (vm->dev.reset_requested) {
        vm_stop(vm, false, "reset requested by the guest (port %#x)", port);
        return EXIT_STOP;
    }
    return EXIT_RESUME;
}

static enum exit_action h_rdmsr(struct vm *vm, uint64_t qual)
{
    struct guest_regs *r = &vm->vcpu.regs;
    uint64_t v;
    if (policy_rdmsr(vm, (uint32_t)r->rcx, &v))
        return EXIT_INJECT_GP;
    r->rax = (uint32_t)v;
    r->rdx = v >> 32;
    skip_instruction();
    return EXIT_RESUME;
}

static enum exit_action h_wrmsr(struct vm *vm, uint64_t qual)
{
    struct guest_regs *r = &vm->vcpu.regs;
    uint64_t v = (r->rdx << 32) | (uint32_t)r->rax;
    if (policy_wrmsr(vm, (uint32_t)r->rcx, v))
        return EXIT_INJECT_GP;
    skip_instruction();
    return EXIT_RESUME;
}

/* MOV to CR0/CR4 touching bits the hypervisor owns (guest/host masks). The
 * guest sees its own value in the read shadow; the real register keeps the
 * bits VMX operation requires. */
static enum exit_action h_cr(struct vm *vm, uint64_t qual)
{
    struct vcpu *v = &vm->vcpu;
    unsigned cr = CR_QUAL_NUM(qual), type = CR_QUAL_TYPE(qual);
    if (type != 0) {
        vm_stop(vm, true, "unexpected CR%u access type %u", cr, type);
        vmx_dump_guest(vm);
        return EXIT_STOP;
    }
    uint64_t val = CR_QUAL_GPR(qual) == GREG_RSP ? vmread(GUEST_RSP) : *gpr(vm, CR_QUAL_GPR(qual));
    if (cr == 0) {
        uint64_t old = vmread(GUEST_CR0);
        uint64_t real = (val | v->cr0_fixed0) & v->cr0_fixed1;
        vmwrite(CR0_READ_SHADOW, val);
        vmwrite(GUEST_CR0, real);
        if ((old ^ real) & CR0_PG) {
            uint64_t efer = vmread(GUEST_IA32_EFER);
            bool lma = (efer & EFER_LME) && (real & CR0_PG);
            efer = lma ? efer | (1ULL << 10) : efer & ~(1ULL << 10);
            vmwrite(GUEST_IA32_EFER, efer);
            v->entry_ctls = lma ? v->entry_ctls | ENTRY_IA32E_MODE_GUEST
                                : v->entry_ctls & ~ENTRY_IA32E_MODE_GUEST;
            vmwrite(VM_ENTRY_CONTROLS, v->entry_ctls);
        }
    } else if (cr == 4) {
        if (val & (CR4_VMXE | CR4_GUEST_HIDDEN))
            return EXIT_INJECT_GP; /* no nested VMX, XSAVE or PKU (vmcs.h) */
        vmwrite(CR4_READ_SHADOW, val);
        vmwrite(GUEST_CR4, (val | v->cr4_fixed0) & v->cr4_fixed1);
    } else {
        vm_stop(vm, true, "unexpected write to CR%u", cr);
        vmx_dump_guest(vm);
        return EXIT_STOP;
    }
    skip_instruction();
    return EXIT_RESUME;
}

static enum exit_action h_skip(struct vm *vm, uint64_t qual)
{
    skip_instruction(); /* INVD, WBINVD: caches are coherent under EPT */
    return EXIT_RESUME;
}

static enum exit_action h_ud(struct vm *vm, uint64_t qual)
{
    return EXIT_INJECT_UD; /* VMX instructions, MONITOR/MWAIT: not offered */
}

static enum exit_action h_gp(struct vm *vm, uint64_t qual)
{
    return EXIT_INJECT_GP; /* XSETBV: XSAVE is not offered; RDPMC: nor is a PMU */
}

static enum exit_action h_resume(struct vm *vm, uint64_t qual)
{
    return EXIT_RESUME; /* host NMI or interrupt: nothing for the guest */
}

static enum exit_action h_intr_window(struct vm *vm, uint64_t qual)
{
    vmx_set_intr_window(vm, false); /* the run loop injects now */
    return EXIT_RESUME;
}

static enum exit_action h_preempt(struct vm *vm, uint64_t qual)
{
    return EXIT_YIELD;
}

static enum exit_action h_triple(struct vm *vm, uint64_t qual)
{
    vm_stop(vm, true, "triple fault at RIP %#llx", (unsigned long long)vmread(GUEST_RIP));
    vmx_dump_guest(vm);
    return EXIT_STOP;
}

/* The p2m decides: populate, wait for memory, or refuse. */
static enum exit_action h_ept_violation(struct vm *vm, uint64_t qual)
{
    uint64_t gpa = vmread(GUEST_PHYSICAL_ADDRESS);
    switch (p2m_fault(&vm->p2m, gpa, (unsigned)(qual & 7))) {
    case P2M_OK:
        return EXIT_RESUME;
    case P2M_WAIT:
        return EXIT_WAIT_MEM;
    case P2M_CORRUPT:
        /* p2m reported which page and why; its data cannot be invented. */
        vm_stop(vm, true, "guest-physical %#llx: its stored copy is lost or corrupt (see above)",
                (unsigned long long)gpa);
        return EXIT_STOP;
    case P2M_FAIL:
        break;
    }
    vm_stop(vm, true, "%s of guest-physical %#llx outside guest RAM (%llu MiB) at RIP %#llx",
            (qual & EPT_QUAL_FETCH) ? "instruction fetch" : (qual & EPT_QUAL_WRITE) ? "write" : "read",
            (unsigned long long)gpa, (unsigned long long)(vm->mem_bytes >> 20),
            (unsigned long long)vmread(GUEST_RIP));
    vmx_dump_guest(vm);
    return EXIT_STOP;
}

/* Only the hypervisor writes EPT entries: a misconfigured one is its own
 * bug, and whatever made it may have damaged other VMs' tables too. Not a
 * VM stop but a panic, with what is needed to find the bug: the GPA, the
 * walk with the faulty entry named, and the guest's state. */
static enum exit_action h_ept_misconfig(struct vm *vm, uint64_t qual)
{
    uint64_t gpa = vmread(GUEST_PHYSICAL_ADDRESS);
    log_raw("\n*** PANIC: vm %s: EPT misconfiguration at guest-physical %#llx "
            "(exit qualification %#llx, RIP %#llx): the hypervisor wrote a bad EPT entry\n",
            vm->name, (unsigned long long)gpa, (unsigned long long)qual,
            (unsigned long long)vmread(GUEST_RIP));
    vmx_dump_guest(vm); /* ends with the EPT walk of gpa */
    log_raw("*** PANIC: halted\n");
    halt_forever();
}

static enum exit_action h_fatal(struct vm *vm, uint64_t qual)
{
    uint32_t reason = (uint32_t)vmread(VM_EXIT_REASON);
    vm_stop(vm, true, "%s (exit reason %u, qualification %#llx)",
            exit_reason_name(reason & 0xffff), reason & 0xffff, (unsigned long long)qual);
    vmx_dump_guest(vm);
    return EXIT_STOP;
}

static const exit_handler handlers[EXIT_REASON_COUNT] = {
    [EXIT_REASON_EXCEPTION_NMI] = h_resume,
    [EXIT_REASON_EXTERNAL_INTERRUPT] = h_resume,
    [EXIT_REASON_TRIPLE_FAULT] = h_triple,
    [EXIT_REASON_INIT_SIGNAL] = h_fatal,
    [EXIT_REASON_INTERRUPT_WINDOW] = h_intr_window,
    [EXIT_REASON_CPUID] = h_cpuid,
    [EXIT_REASON_HLT] = h_hlt,
    [EXIT_REASON_INVD] = h_skip,
    [EXIT_REASON_WBINVD] = h_skip,
    [EXIT_REASON_VMCALL] = h_vmcall,
    [EXIT_REASON_VMCLEAR] = h_ud,
    [EXIT_REASON_VMLAUNCH] = h_ud,
    [EXIT_REASON_VMPTRLD] = h_ud,
    [EXIT_REASON_VMPTRST] = h_ud,
    [EXIT_REASON_VMREAD] = h_ud,
    [EXIT_REASON_VMRESUME] = h_ud,
    [EXIT_REASON_VMWRITE] = h_ud,
    [EXIT_REASON_VMOFF] = h_ud,
    [EXIT_REASON_VMON] = h_ud,
    [EXIT_REASON_INVEPT] = h_ud,
    [EXIT_REASON_INVVPID] = h_ud,
    [EXIT_REASON_MWAIT] = h_ud,
    [EXIT_REASON_MONITOR] = h_ud,
    [EXIT_REASON_GETSEC] = h_ud,
    [EXIT_REASON_XSETBV] = h_gp,
    [EXIT_REASON_RDPMC] = h_gp,
    [EXIT_REASON_CR_ACCESS] = h_cr,
    [EXIT_REASON_IO_INSTRUCTION] = h_io,
    [EXIT_REASON_MSR_READ] = h_rdmsr,
    [EXIT_REASON_MSR_WRITE] = h_wrmsr,
    [EXIT_REASON_EPT_VIOLATION] = h_ept_violation,
    [EXIT_REASON_EPT_MISCONFIG] = h_ept_misconfig,
    [EXIT_REASON_PREEMPTION_TIMER] = h_preempt,
};

enum exit_action exit_dispatch(struct vm *vm, uint32_t reason)
{
    uint32_t basic = reason & 0xffff;
    uint64_t qual = vmread(EXIT_QUALIFICATION);
    if (basic < EXIT_REASON_COUNT) {
        vm->stats.exits[basic]++;
        if (handlers[basic] && !(reason & EXIT_REASON_FAILED_VMENTRY))
            return handlers[basic](vm, qual);
    }
    return h_fatal(vm, qual); /* entry failures and exits nobody handles */
}

/* The run loop. VMs share the CPU round-robin in slices of SLICE_US; the
 * VMX-preemption timer ends a slice, or fires earlier when the VM's PIT is
 * due. A halted vCPU gives up its slice until an interrupt is pending for
 * it. Between VMs, the FPU/SSE image, the pass-through syscall MSRs, the
 * debug registers DR0-DR3/DR6 and CR8 are switched (the core itself never
 * touches any of them). */
#include "vmx/sched.h"
#include "arch/cpu.h"
#include "arch/msr.h"
#include "arch/tsc.h"
#include "lib/log.h"
#include "lib/string.h"
#include "drivers/serial.h"
#include "mm/policy_alloc.h"
#include "mm/balloon.h"
#include "mm/console.h"
#include "mm/mm.h"
#include "mm/share.h"
#include "mm/swap.h"
#include "vmx/exit.h"
#include "vmx/vmx.h"

#define RFLAGS_IF (1ULL << 9)
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SFMASK 0xc0000084
#define MSR_KERNEL_GS_BASE 0xc0000102

static uint64_t rdtsc_now(void)
{
    return rdtsc();
}

static struct vm *loaded; /* whose VMCS, FPU and MSRs are on the CPU */
static unsigned preempt_shift;

void sched_vcpu_init(struct vm *vm)
{
    uint8_t *fx = vm->vcpu.fxsave;
    memset(fx, 0, sizeof(vm->vcpu.fxsave));
    /* FNINIT state: FCW 0x37f; MXCSR 0x1f80 with its mask. */
    fx[0] = 0x7f;
    fx[1] = 0x03;
    uint32_t mxcsr = 0x1f80, mask = 0xffff;
    memcpy(fx + 24, &mxcsr, 4);
    memcpy(fx + 28, &mask, 4);
    /* Reset values: no breakpoints, DR6 with its reserved ones, TPR 0. */
    memset(&vm->vcpu.dbg, 0, sizeof(vm->vcpu.dbg));
    vm->vcpu.dbg.dr6 = 0xffff0ff0;
}

#define DR_ACCESSORS(n)                                                      \
    static inline uint64_t read_dr##n(void)                                  \
    {                                                                        \
        uint64_t v;                                                          \
        __asm__ volatile("mov %%db" #n ", %0" : "=r"(v));                    \
        return v;                                                            \
    }                                                                        \
    static inline void write_dr##n(uint64_t v)                               \
    {                                                                        \
        __asm__ volatile("mov %0, %%db" #n : : "r"(v));                      \
    }
DR_ACCESSORS(0)
DR_ACCESSORS(1)
DR_ACCESSORS(2)
DR_ACCESSORS(3)
DR_ACCESSORS(6)

static inline uint64_t read_cr8(void)
{
    uint64_t v;
    __asm__ volatile("mov %%cr8, %0" : "=r"(v));
    return v;
}

static inline void write_cr8(uint64_t v)
{
    __asm__ volatile("mov %0, %%cr8" : : "r"(v) : "memory");
}

/* Which guest state lives where (README, "Isolation"): the VMCS holds
 * what VM entry and exit switch (CR0/3/4, DR7, DEBUGCTL, segments, GDTR/
 * IDTR, SYSENTER, FS/GS base, EFER, PAT, RSP/RIP/RFLAGS); entry.S the
 * general registers and CR2; this function what the guest reaches without
 * exits and the CPU does not switch: FPU/SSE, the syscall MSRs and
 * KERNEL_GS_BASE, DR0-DR3, DR6 and CR8. Switching costs a few register
 * moves per change of VM; intercepting MOV DR instead would cost an exit
 * per access and still leave the values in the hardware between VMs. */
static void switch_to(struct vm *next)
{
    if (loaded == next)
        return;
    if (loaded && loaded->state != VM_STOPPED) {
        struct guest_msrs *m = &loaded->vcpu.msrs;
        struct guest_dbg *d = &loaded->vcpu.dbg;
        __asm__ volatile("fxsave64 %0" : "=m"(loaded->vcpu.fxsave));
        m->star = rdmsr(MSR_STAR);
        m->lstar = rdmsr(MSR_LSTAR);
        m->cstar = rdmsr(MSR_CSTAR);
        m->sfmask = rdmsr(MSR_SFMASK);
        m->kernel_gs_base = rdmsr(MSR_KERNEL_GS_BASE);
        d->dr[0] = read_dr0();
        d->dr[1] = read_dr1();
        d->dr[2] = read_dr2();
        d->dr[3] = read_dr3();
        d->dr6 = read_dr6();
        d->cr8 = read_cr8();
    }
    struct guest_msrs *m = &next->vcpu.msrs;
    struct guest_dbg *d = &next->vcpu.dbg;
    /* Breakpoints stay inert in the hypervisor: every VM exit sets DR7 to
     * 0x400, and DR7 is loaded from the VMCS on entry. */
    write_dr0(d->dr[0]);
    write_dr1(d->dr[1]);
    write_dr2(d->dr[2]);
    write_dr3(d->dr[3]);
    write_dr6(d->dr6);
    write_cr8(d->cr8);
    __asm__ volatile("fxrstor64 %0" : : "m"(next->vcpu.fxsave));
    wrmsr(MSR_STAR, m->star);
    wrmsr(MSR_LSTAR, m->lstar);
    wrmsr(MSR_CSTAR, m->cstar);
    wrmsr(MSR_SFMASK, m->sfmask);
    wrmsr(MSR_KERNEL_GS_BASE, m->kernel_gs_base);
    vmx_vm_load(next);
    loaded = next;
}

/* Re-delivers an event whose delivery a VM exit interrupted (SDM 27.2.4). */
static void reinject_vectoring(void)
{
    uint32_t info = (uint32_t)vmread(IDT_VECTORING_INFO_FIELD);
    if (!(info & INTR_INFO_VALID))
        return;
    vmwrite(VM_ENTRY_INTR_INFO_FIELD, info & ~(1u << 12));
    if (info & INTR_INFO_DELIVER_CODE)
        vmwrite(VM_ENTRY_EXCEPTION_ERROR_CODE, vmread(IDT_VECTORING_ERROR_CODE));
    uint32_t type = info & INTR_TYPE_MASK;
    if (type == INTR_TYPE_SW_INTR || type == INTR_TYPE_SW_EXCEPTION || type == (5u << 8))
        vmwrite(VM_ENTRY_INSTRUCTION_LEN, vmread(VM_EXIT_INSTRUCTION_LEN));
}

/* Injects the PIC's interrupt if the guest can take it now, otherwise asks
 * for an exit as soon as it can. */
static void deliver_interrupts(struct vm *vm)
{
    /* VM exits clear the valid bit: if it is set, an event is already
     * queued for this entry (re-injection, #GP, #UD). */
    bool event_pending = vmread(VM_ENTRY_INTR_INFO_FIELD) & INTR_INFO_VALID;
    if (pic_pending_vector(&vm->dev.pic) < 0) {
        vmx_set_intr_window(vm, false);
        return;
    }
    uint64_t intr = vmread(GUEST_INTERRUPTIBILITY_INFO);
    bool open = (vmread(GUEST_RFLAGS) & RFLAGS_IF) &&
                !(intr & (INTERRUPTIBILITY_STI | INTERRUPTIBILITY_MOV_SS));
    if (event_pending || !open) {
        vmx_set_intr_window(vm, true);
        return;
    }
    int vec = pic_ack(&vm->dev.pic);
    if (vec < 0)
        return;
    vmwrite(VM_ENTRY_INTR_INFO_FIELD, INTR_INFO_VALID | INTR_TYPE_EXT_INTR | (uint32_t)vec);
    vm->stats.injected_irqs++;
    vmx_set_intr_window(vm, pic_pending_vector(&vm->dev.pic) >= 0);
}

/* Runs vm until its slice ends, it halts or it stops. */
static void run_slice(struct vm *vm)
{
    switch_to(vm);
    uint64_t slice_end = rdtsc() + tsc_hz() / 1000000 * SLICE_US;
    uint64_t ept_exit_at = 0; /* an EPT violation is being handled since */
    for (;;) {
        uint64_t t0 = rdtsc();
        platform_update_irqs(&vm->dev, t0 + vm->tsc_offset);
        deliver_interrupts(vm);
        uint64_t deadline = slice_end;
        uint64_t pit = pit_next_deadline(&vm->dev.pit);
        if (pit != UINT64_MAX && pit - vm->tsc_offset < deadline)
            deadline = pit - vm->tsc_offset;
        uint64_t ticks = deadline > t0 ? (deadline - t0) >> preempt_shift : 0;
        vmwrite(VMX_PREEMPTION_TIMER_VALUE, ticks > 0xffffffffULL ? 0xffffffffULL : ticks);
        if (!vm->first_entry_tsc)
            vm->first_entry_tsc = t0;

        uint64_t t1 = rdtsc();
        vm->stats.tsc_hv += t1 - t0;
        if (ept_exit_at) {
            vm->stats.ept_exits++;
            vm->stats.ept_exit_cycles += t1 - ept_exit_at;
            ept_exit_at = 0;
        }
        if (vmx_vm_enter(vm))
            return;
        uint64_t t2 = rdtsc();
        vm->stats.tsc_guest += t2 - t1;
        vm->stats.exits_total++;

        uint32_t reason = (uint32_t)vmread(VM_EXIT_REASON);
        if (reason == EXIT_REASON_EPT_VIOLATION)
            ept_exit_at = t2;
        reinject_vectoring();
        enum exit_action a = exit_dispatch(vm, reason);
        switch (a) {
        case EXIT_RESUME:
            break;
        case EXIT_INJECT_GP:
            vmx_inject_exception(vm, 13, true, 0);
            break;
        case EXIT_INJECT_UD:
            vmx_inject_exception(vm, 6, false, 0);
            break;
        case EXIT_HALT:
            vm->state = VM_HALTED;
            break;
        case EXIT_WAIT_MEM:
            /* The faulting instruction runs again when the VM is retried;
             * a queued re-injection stays in this VM's VMCS meanwhile. */
            vm->state = VM_WAITING;
            vm->wait_since = rdtsc();
            vm->wait_free = frame_free_count();
            break;
        case EXIT_YIELD:
        case EXIT_STOP:
            break;
        }
        vm->stats.tsc_hv += rdtsc() - t2;
        if (vm->state != VM_RUNNABLE)
            return; /* a wait or stop: not a completed fault, not counted */
        if (a == EXIT_YIELD && rdtsc() >= slice_end)
            return;
    }
}

static void print_summary(struct vm *vms, int n)
{
    pr_info(LS_HV, "---- summary: %d VM%s ----", n, n == 1 ? "" : "s");
    for (int i = 0; i < n; i++) {
        struct vm *vm = &vms[i];
        struct vm_stats *s = &vm->stats;
        uint64_t total = s->tsc_guest + s->tsc_hv;
        uint64_t permille = total ? s->tsc_hv * 1000 / total : 0;
        pr_info(LS_HV, "vm %s: %s: %s", vm->name, vm->failed ? "FAILED" : "stopped",
                vm->stop_reason);
        pr_info(LS_HV, "vm %s: %llu exits, %llu interrupts injected, console %llu bytes; "
                       "tsc guest %llu, hypervisor %llu (%llu.%llu%%)",
                vm->name, (unsigned long long)s->exits_total,
                (unsigned long long)s->injected_irqs,
                (unsigned long long)vm->dev.uart.bytes_out, (unsigned long long)s->tsc_guest,
                (unsigned long long)s->tsc_hv, (unsigned long long)(permille / 10),
                (unsigned long long)(permille % 10));
        /* Exit handling outside p2m_fault (decode, dispatch, scheduling,
         * re-entry), averaged over every EPT exit; the fault kinds' own
         * paths are measured inside p2m_fault. */
        uint64_t outside = s->ept_exits && s->ept_exit_cycles > vm->p2m.st.fault_cycles
                               ? (s->ept_exit_cycles - vm->p2m.st.fault_cycles) / s->ept_exits
                               : 0;
        if (s->ept_exits && vm->p2m.st.faults[PF_DEMAND_ZERO]) {
            /* Split: zeroing, and p2m/EPT work (reclaim included when a
             * limit or the watermark made the fault run it). */
            uint64_t n = vm->p2m.st.faults[PF_DEMAND_ZERO];
            uint64_t zero = vm->p2m.st.dz_zero_cycles / n;
            uint64_t p2m = (vm->p2m.st.dz_cycles - vm->p2m.st.dz_zero_cycles) / n;
            pr_info(LS_HV, "vm %s: fault cost: %llu EPT-violation exits, %llu demand-zero; "
                           "per fault %llu cycles: exit handling %llu, p2m/EPT %llu, "
                           "zeroing %llu",
                    vm->name, (unsigned long long)s->ept_exits, (unsigned long long)n,
                    (unsigned long long)(outside + p2m + zero), (unsigned long long)outside,
                    (unsigned long long)p2m, (unsigned long long)zero);
        }
        uint64_t ndc = vm->p2m.st.faults[PF_DECOMPRESS];
        if (s->ept_exits && ndc) {
            /* The decompression path itself; frame allocation (which may
             * run reclaim for other pages) is shown apart. */
            const struct p2m_stats *ps = &vm->p2m.st;
            uint64_t path = ps->dc_cycles / ndc, lz4 = ps->dc_lz4_cycles / ndc;
            uint64_t check = ps->dc_check_cycles / ndc;
            uint64_t ncmp = ps->compressed + ps->incompressible;
            pr_info(LS_HV, "vm %s: decompression fault cost: %llu faults; per fault %llu cycles: "
                           "exit handling %llu, LZ4 %llu, checksum %llu, pool/p2m/EPT %llu; "
                           "frame allocation with reclaim %llu more; compression %llu cycles "
                           "per attempt",
                    vm->name, (unsigned long long)ndc, (unsigned long long)(outside + path),
                    (unsigned long long)outside, (unsigned long long)lz4,
                    (unsigned long long)check, (unsigned long long)(path - lz4 - check),
                    (unsigned long long)(ps->dc_alloc_cycles / ndc),
                    (unsigned long long)(ncmp ? ps->cmp_cycles / ncmp : 0));
        }
        uint64_t nsi = vm->p2m.st.faults[PF_SWAPIN];
        if (s->ept_exits && nsi) {
            /* The swap-in path: the device read, then check, LZ4 for a pool
             * object and the p2m/EPT work; frame allocation apart. */
            const struct p2m_stats *ps = &vm->p2m.st;
            uint64_t path = ps->si_cycles / nsi, io = ps->si_io_cycles / nsi;
            pr_info(LS_HV, "vm %s: swap-in fault cost: %llu faults; per fault %llu cycles: "
                           "exit handling %llu, device read %llu, check/LZ4/p2m/EPT %llu; "
                           "frame allocation with reclaim %llu more",
                    vm->name, (unsigned long long)nsi, (unsigned long long)(outside + path),
                    (unsigned long long)outside, (unsigned long long)io,
                    (unsigned long long)(path - io),
                    (unsigned long long)(ps->si_alloc_cycles / nsi));
        }
        /* What the rate limits kept off the serial line (lib/log.h). */
        if (vm->msr_gp)
            pr_info(LS_HV, "vm %s: %llu MSR accesses answered with #GP (%d MSRs remembered)",
                    vm->name, (unsigned long long)vm->msr_gp, vm->nmsr_logged);
        for (int k = 0; k < VM_LOG_KINDS; k++)
            log_limit_report(&vm->log[k], LS_HV, vm->name, vm_log_kind_name[k]);
        log_limit_report(&vm->balloon.log, LS_HV, vm->name, HC_LOG_KIND);
        for (uint32_t r = 0; r < EXIT_REASON_COUNT; r++)
            if (s->exits[r])
                pr_info(LS_HV, "vm %s:   exit %-2u %-22s %llu", vm->name, r,
                        exit_reason_name(r), (unsigned long long)s->exits[r]);
    }
}

/* Periodic work between slices: console input, accessed/dirty sweeps, pool
 * compaction, the balloon policy and the stats line. */
static void periodic(struct vm *vms, int n, const struct sched_params *sp, uint64_t now,
                     uint64_t *next_stats)
{
    uint64_t sweep_ticks = tsc_hz() / 1000 * sp->sweep_ms;
    for (int i = 0; i < n; i++) {
        struct vm *vm = &vms[i];
        if (vm->state == VM_STOPPED || !vm->p2m_live)
            continue;
        /* A round starts every sweep_ms and goes on in bounded steps, one
         * per call, until it has visited the VM's touched memory. */
        if (!vm->p2m.sweep.active && now - vm->last_sweep >= sweep_ticks)
            vm->last_sweep = now;
        else if (!vm->p2m.sweep.active)
            continue;
        p2m_sweep_step(&vm->p2m, P2M_SWEEP_STEP);
    }
    /* Console: a few bytes per call (the UART holds what is not read). */
    for (int i = 0; i < 16; i++) {
        int c = serial_getc();
        if (c < 0)
            break;
        console_input(c);
    }
    mm_periodic();
    static uint64_t last_policy;
    if (now - last_policy >= tsc_hz() / 1000 * BALLOON_TICK_MS) {
        balloon_policy_tick();
        policy_alloc_tick(now, tsc_hz() / 1000); /* helper D: shares, sampling, tuning */
        last_policy = now;
    }
    static uint64_t last_share;
    uint64_t share_ticks = tsc_hz() / 1000 * sp->share_ms;
    if (now - last_share >= share_ticks) {
        share_tick(share_ticks * sp->share_cpu / 100); /* at most share_cpu % of the CPU */
        last_share = now;
    }
    if (sp->stats_interval && now >= *next_stats) {
        mm_print_stats();
        *next_stats = now + tsc_hz() * sp->stats_interval;
    }
}

/* A waiting VM is retried once frames were freed; one that waited too long
 * with nothing freed is stopped (out of memory), never the hypervisor. */
static void check_waiting(struct vm *vm, const struct sched_params *sp, uint64_t now)
{
    /* Faults reclaim in bounded passes; a waiter gets a pass over all pages
     * of every VM before anyone is declared out of memory. */
    static uint64_t last_full;
    if (frame_free_count() == vm->wait_free && now - last_full > tsc_hz() / 10) {
        mm_reclaim_for_waiters(); /* at most every 100 ms: a full pass is long */
        last_full = now;
    }
    if (frame_free_count() != vm->wait_free) {
        vm->state = VM_RUNNABLE;
        return;
    }
    if (now - vm->wait_since > tsc_hz() / 1000 * sp->wait_limit_ms)
        vm_stop(vm, true, "out of memory: waited %u ms for a frame and nothing could be "
                          "reclaimed (resident %llu frames, limit %llu%s)",
                sp->wait_limit_ms, (unsigned long long)vm->p2m.count[P2M_RESIDENT],
                (unsigned long long)vm->p2m.limit, swap_full() ? ", swap full" : "");
}

int sched_run(struct vm *vms, int n, const struct sched_params *sp)
{
    uint64_t next_stats = rdtsc() + tsc_hz() * sp->stats_interval;
    log_set_clock(rdtsc_now, tsc_hz()); /* the log rate limits refill by the TSC */
    uint64_t misc = rdmsr(MSR_IA32_VMX_MISC);
    preempt_shift = misc & 0x1f; /* timer ticks every 2^shift TSC ticks */
    unsigned next = 0;
    for (;;) {
        int alive = 0;
        struct vm *pick = NULL;
        uint64_t now = rdtsc();
        uint64_t wake = UINT64_MAX;
        for (int k = 0; k < n; k++) {
            struct vm *vm = &vms[(next + (unsigned)k) % (unsigned)n];
            if (vm->state == VM_STOPPED)
                continue;
            alive++;
            if (vm->state == VM_WAITING) {
                check_waiting(vm, sp, now);
                if (vm->state == VM_WAITING) {
                    uint64_t d = vm->wait_since + tsc_hz() / 1000 * sp->wait_limit_ms;
                    if (d < wake)
                        wake = d;
                }
            }
            if (vm->state == VM_HALTED) {
                platform_update_irqs(&vm->dev, now + vm->tsc_offset);
                if (pic_pending_vector(&vm->dev.pic) >= 0)
                    vm->state = VM_RUNNABLE;
                uint64_t d = pit_next_deadline(&vm->dev.pit);
                if (d != UINT64_MAX && d - vm->tsc_offset < wake)
                    wake = d - vm->tsc_offset;
            }
            if (vm->state == VM_RUNNABLE && !pick)
                pick = vm;
        }
        if (!alive)
            break;
        if (!pick) {
            if (wake == UINT64_MAX) {
                /* Everyone sleeps and no timer can wake anyone. */
                for (int k = 0; k < n; k++)
                    if (vms[k].state == VM_HALTED)
                        vm_stop(&vms[k], true, "halted with no interrupt source armed");
                continue;
            }
            /* Idle: the share scanner may have the CPU until the next
             * timer (its budget only limits it while guests run). */
            share_idle(wake);
            while (rdtsc() < wake)
                pause();
            periodic(vms, n, sp, rdtsc(), &next_stats);
            continue;
        }
        next = (unsigned)(pick - vms + 1) % (unsigned)n;
        run_slice(pick);
        periodic(vms, n, sp, rdtsc(), &next_stats);
    }
    print_summary(vms, n);
    mm_print_stats();
    int failed = 0;
    for (int i = 0; i < n; i++)
        failed += vms[i].failed;
    return failed;
}

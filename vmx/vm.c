/* VM creation from the configuration: memory, EPT, VMCS, kernel loading
 * and the guest platform. */
#include "vmx/vm.h"
#include "arch/cpu.h"
#include "arch/tsc.h"
#include "lib/fmt.h"
#include "lib/log.h"
#include "lib/string.h"
#include "mm/policy_alloc.h"
#include "mm/dump.h"
#include "mm/ept.h"
#include "mm/mm.h"
#include "mm/mm_backend.h"
#include "mm/stats_json.h"
#include "mm/policy_admit.h"
#include "mm/trace.h"
#include "vmx/linux.h"
#include "vmx/sched.h"
#include "vmx/vmx.h"

/* Hypercalls and the guest's last statistics report, when it made any. */
static void balloon_print(const struct vm *vm)
{
    const struct balloon_stats *b = &vm->balloon;
    uint64_t calls = 0;
    for (int i = 0; i < HC_FUNCTION_COUNT; i++)
        calls += b->calls[i];
    if (!calls)
        return;
    /* Handler cost: per call and per page of the batch calls (the VM
     * exit and entry around them are in the exit statistics). */
    uint64_t ni = b->calls[HC_BALLOON_INFLATE], nd = b->calls[HC_BALLOON_DEFLATE];
    uint64_t pi = vm->p2m.st.balloon_inflated, pd = vm->p2m.st.balloon_deflated;
    pr_info(LS_VMX, "vm %s: hypercall cost in the handler: inflate %llu cycles per call, %llu "
                    "per page; deflate %llu per call, %llu per page; target %llu per call",
            vm->name, (unsigned long long)(ni ? b->cycles[HC_BALLOON_INFLATE] / ni : 0),
            (unsigned long long)(pi ? b->cycles[HC_BALLOON_INFLATE] / pi : 0),
            (unsigned long long)(nd ? b->cycles[HC_BALLOON_DEFLATE] / nd : 0),
            (unsigned long long)(pd ? b->cycles[HC_BALLOON_DEFLATE] / pd : 0),
            (unsigned long long)(b->calls[HC_BALLOON_TARGET]
                                     ? b->cycles[HC_BALLOON_TARGET] / b->calls[HC_BALLOON_TARGET]
                                     : 0));
    pr_info(LS_VMX, "vm %s: hypercalls %llu (inflate %llu deflate %llu target %llu stats %llu), "
                    "rejected %llu; guest reported free %llu available %llu pages, swap in %llu "
                    "out %llu, major faults %llu",
            vm->name, (unsigned long long)calls,
            (unsigned long long)b->calls[HC_BALLOON_INFLATE],
            (unsigned long long)b->calls[HC_BALLOON_DEFLATE],
            (unsigned long long)b->calls[HC_BALLOON_TARGET],
            (unsigned long long)b->calls[HC_REPORT_STATS], (unsigned long long)b->rejected,
            (unsigned long long)b->guest.free, (unsigned long long)b->guest.available,
            (unsigned long long)b->guest.swap_in, (unsigned long long)b->guest.swap_out,
            (unsigned long long)b->guest.major_faults);
}

void vm_stop(struct vm *vm, bool failed, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fmt_vsnprintf(vm->stop_reason, sizeof(vm->stop_reason), fmt, ap);
    va_end(ap);
    uart_flush_line(&vm->dev.uart, vm->name);
    vm->state = VM_STOPPED;
    vm->failed = failed;
    if (failed)
        pr_err(LS_VMX, "vm %s stopped: %s", vm->name, vm->stop_reason);
    else
        pr_info(LS_VMX, "vm %s stopped: %s", vm->name, vm->stop_reason);
    /* Its memory goes back to the machine at once: others may be waiting. */
    if (vm->p2m_live) {
        if (vm->dump_pages)
            mm_dump_pages(&vm->p2m, vm->dump_pages);
        mm_print_vm(&vm->p2m);
        stats_emit_vm_stop(&vm->p2m);
        trace_dump(&vm->p2m, "stop", NULL, NULL); /* nothing when tracing is off */
        balloon_print(vm);
        mm_unregister(&vm->p2m);
        p2m_destroy(&vm->p2m);
        vm->p2m_live = false;
    }
}

int vm_create(struct vm *vm, int id, const struct vm_config *vc, const struct boot_vm *files,
              const struct vmx_caps *caps)
{
    char err[192];
    char sz[16];
    memset(vm, 0, sizeof(*vm));
    vm->id = id;
    memcpy(vm->name, vc->name, sizeof(vm->name));
    /* With max_memory the guest's memory map shows max_memory; it boots
     * held to memory (mm/policy_admit.c). */
    vm->mem_bytes = vc->max_memory ? vc->max_memory : vc->memory;

    /* Refuse a bad kernel before taking any memory for it. */
    if (linux_check(files->kernel.data, files->kernel.size, vc->memory, err, sizeof(err))) {
        vm_stop(vm, true, "kernel %s refused: %s", vc->kernel, err);
        return -1;
    }
    /* Guest RAM starts unpopulated: frames come on first touch. */
    if (p2m_init(&vm->p2m, (uint16_t)(id + 1), vm->name, vm->mem_bytes >> PAGE_SHIFT,
                 vc->reserve >> PAGE_SHIFT, vc->limit >> PAGE_SHIFT, caps->ept_ad)) {
        vm_stop(vm, true, "no machine memory for the p2m of %s of guest RAM",
                fmt_size(sz, sizeof(sz), vm->mem_bytes));
        return -1;
    }
    if (vc->max_memory)
        policy_resize_init(&vm->p2m, vc->memory >> PAGE_SHIFT);
    if (mm_register(&vm->p2m)) {
        p2m_destroy(&vm->p2m);
        vm_stop(vm, true, "not admitted: %s", policy_admit_reason());
        return -1;
    }
    vm->p2m_live = true;
    vm->p2m.compress = vc->compress;
    vm->p2m.share = vc->share;
    vm->p2m.shares = policy_alloc_shares(vm->p2m.ngfn, vc->shares_per_mib, vc->shares_abs);
    balloon_set_target(&vm->p2m, vc->balloon >> PAGE_SHIFT); /* the guest driver polls it */
    if (vc->share_salt_set)
        vm->p2m.salt = vc->share_salt; /* else p2m_init's: this VM's own */
    vm->dump_pages = vc->dump_pages;
    struct linux_entry e;
    if (linux_load(vm, files->kernel.data, files->kernel.size, files->initrd.data,
                   files->initrd.size, vc->cmdline, &e, err, sizeof(err))) {
        vm_stop(vm, true, "cannot load kernel %s: %s", vc->kernel, err);
        return -1;
    }
    /* Guest TSC = host TSC (offset 0): every VM sees wall-clock time, and
     * in Bochs a guest's RDTSC reads instructions since power-on, which
     * makes guest-side timestamps directly comparable with the host's. */
    vm->tsc_offset = 0;
    if (vmx_vm_setup(vm, caps)) {
        vm_stop(vm, true, "VMCS set-up failed");
        return -1;
    }
    vmwrite(GUEST_RIP, e.rip);
    vmwrite(GUEST_RSP, e.rsp);
    vmwrite(GUEST_CR3, e.cr3);
    vmwrite(GUEST_GDTR_BASE, e.gdt_base);
    vmwrite(GUEST_GDTR_LIMIT, e.gdt_limit);
    vm->vcpu.regs.rsi = e.rsi;
    mm_invept(vm->p2m.eptp);
    platform_init(&vm->dev, vm->name, tsc_hz(), 0);
    sched_vcpu_init(vm);
    vm->state = VM_RUNNABLE;
    pr_info(LS_VMX, "vm %s: %s RAM (reserve %llu, limit %llu frames), Linux boot protocol "
                    "%u.%02u, kernel at %#llx, initrd at %#llx (%llu bytes), entry %#llx",
            vm->name, fmt_size(sz, sizeof(sz), vm->mem_bytes),
            (unsigned long long)vm->p2m.reserve, (unsigned long long)vm->p2m.limit,
            e.protocol >> 8,
            e.protocol & 0xff, (unsigned long long)e.load_addr,
            (unsigned long long)e.initrd_addr, (unsigned long long)files->initrd.size,
            (unsigned long long)e.rip);
    if (vm->p2m.rs.on) {
        char sz2[16];
        pr_info(LS_VMX, "vm %s: resizable: its memory map shows %s, it runs at %s (limit %llu "
                        "pages, balloon target %llu pages); 'mem %s SIZE' moves it",
                vm->name, fmt_size(sz, sizeof(sz), vm->mem_bytes),
                fmt_size(sz2, sizeof(sz2), vm->p2m.rs.size * PAGE_SIZE),
                (unsigned long long)vm->p2m.limit, (unsigned long long)vm->p2m.bl.target,
                vm->name);
    }
    return 0;
}

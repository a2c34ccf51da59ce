/* VM creation from the configuration: memory, EPT, VMCS, kernel loading
 * and the guest platform. */
#include "vmx/vm.h"
#include "arch/cpu.h"
#include "arch/tsc.h"
#include "lib/fmt.h"
#include "lib/log.h"
#include "lib/string.h"
#include "mm/mm_backend.h"
#include "vmx/linux.h"
#include "vmx/sched.h"
#include "vmx/vmx.h"

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
}

/* Guest RAM, fully populated in version 1 (demand paging replaces this). */
static int populate(struct vm *vm)
{
    vm->nframes = vm->mem_bytes >> PAGE_SHIFT;
    vm->gfn_mfn_frames = (vm->nframes * sizeof(uint32_t) + PAGE_SIZE - 1) >> PAGE_SHIFT;
    mfn_t map = frame_alloc_contig(vm->gfn_mfn_frames, 1, FS_HV, 0);
    if (map == MFN_INVALID)
        return -1;
    vm->gfn_mfn = mm_phys_to_virt(map << PAGE_SHIFT);
    for (uint64_t gfn = 0; gfn < vm->nframes; gfn++) {
        mfn_t m = frame_alloc(FS_VM, (uint16_t)(vm->id + 1));
        if (m == MFN_INVALID) {
            /* Give back what this VM took: another VM may still fit. */
            for (uint64_t g = 0; g < gfn; g++)
                frame_free(vm->gfn_mfn[g]);
            frame_free_contig(map, vm->gfn_mfn_frames);
            vm->gfn_mfn = NULL;
            return -1;
        }
        frame_get(m)->gfn = gfn;
        vm->gfn_mfn[gfn] = (uint32_t)m;
    }
    return 0;
}

int vm_create(struct vm *vm, int id, const struct vm_config *vc, const struct boot_vm *files,
              const struct vmx_caps *caps)
{
    char err[192];
    char sz[16];
    memset(vm, 0, sizeof(*vm));
    vm->id = id;
    memcpy(vm->name, vc->name, sizeof(vm->name));
    vm->mem_bytes = vc->memory;
    vm->ept_root = MFN_INVALID;

    /* Refuse a bad kernel before taking any memory for it. */
    if (linux_check(files->kernel.data, files->kernel.size, vc->memory, err, sizeof(err))) {
        vm_stop(vm, true, "kernel %s refused: %s", vc->kernel, err);
        return -1;
    }
    if (populate(vm)) {
        vm_stop(vm, true, "not enough machine memory for %s of guest RAM (%s free)",
                fmt_size(sz, sizeof(sz), vc->memory),
                fmt_size((char[16]){ 0 }, 16, frame_free_count() * PAGE_SIZE));
        return -1;
    }
    if (ept_build(vm)) {
        vm_stop(vm, true, "out of memory for EPT tables");
        return -1;
    }
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
    vmx_invept(vm);
    platform_init(&vm->dev, vm->name, tsc_hz(), 0);
    sched_vcpu_init(vm);
    vm->state = VM_RUNNABLE;
    pr_info(LS_VMX, "vm %s: %s RAM, Linux boot protocol %u.%02u, kernel at %#llx, "
                    "initrd at %#llx (%llu bytes), entry %#llx",
            vm->name, fmt_size(sz, sizeof(sz), vm->mem_bytes), e.protocol >> 8,
            e.protocol & 0xff, (unsigned long long)e.load_addr,
            (unsigned long long)e.initrd_addr, (unsigned long long)files->initrd.size,
            (unsigned long long)e.rip);
    return 0;
}

/* VMXON, the VMCS of each VM, and VM entry. Every control is computed from
 * the capability MSRs (the TRUE ones where the CPU has them): the bits the
 * hypervisor needs are requested, the CPU's must-be-one bits are added, and
 * a missing required bit is an error naming it (SDM Vol. 3C, A.3-A.5). */
#include "vmx/vmx.h"
#include "arch/cpu.h"
#include "arch/desc.h"
#include "arch/msr.h"
#include "lib/log.h"
#include "lib/string.h"
#include "mm/ept.h"
#include "mm/mm_backend.h"
#include "vmx/ept_dump.h"
#include "vmx/event.h"

extern char vmx_exit_point[];
int vmx_enter(struct guest_regs *regs, int launched);

static struct vmx_caps caps;
static mfn_t vmxon_region = MFN_INVALID;
static uint32_t revision;

static void *frame_ptr(mfn_t m)
{
    return mm_phys_to_virt(m << PAGE_SHIFT);
}

static int insn_vmxon(uint64_t pa)
{
    uint8_t fail;
    __asm__ volatile("vmxon %1; setna %0" : "=q"(fail) : "m"(pa) : "cc", "memory");
    return fail ? -1 : 0;
}

static int insn_vmclear(uint64_t pa)
{
    uint8_t fail;
    __asm__ volatile("vmclear %1; setna %0" : "=q"(fail) : "m"(pa) : "cc", "memory");
    return fail ? -1 : 0;
}

static int insn_vmptrld(uint64_t pa)
{
    uint8_t fail;
    __asm__ volatile("vmptrld %1; setna %0" : "=q"(fail) : "m"(pa) : "cc", "memory");
    return fail ? -1 : 0;
}

void vmwrite(enum vmcs_field f, uint64_t v)
{
    uint8_t fail;
    __asm__ volatile("vmwrite %2, %1; setna %0"
                     : "=q"(fail)
                     : "r"((uint64_t)f), "rm"(v)
                     : "cc");
    if (fail) {
        pr_err(LS_VMX, "VMWRITE of field %#x = %#llx failed (VM-instruction error %llu)",
               f, (unsigned long long)v, (unsigned long long)vmread(VM_INSTRUCTION_ERROR));
        mm_panic(__FILE__, __LINE__, "VMWRITE failed");
    }
}

static bool vmx_active; /* after VMXON */

/* mm/ asks for this after it reduced EPT permissions (mm/ept.h). Before
 * VMXON (the swap self-test drives a p2m with no VM behind it) no EPT
 * translation can be cached, and INVEPT would fault. */
void mm_invept(uint64_t eptp)
{
    if (!vmx_active)
        return;
    struct {
        uint64_t eptp, reserved;
    } desc = { eptp, 0 };
    uint64_t type = caps.invept_single ? 1 : 2; /* single-context, else global */
    __asm__ volatile("invept %0, %1" : : "m"(desc), "r"(type) : "cc", "memory");
}

/* Requested | must-be-one, limited to may-be-one. */
static int adjust(uint64_t cap, uint32_t want, uint32_t need, const char *what,
                  uint32_t *out)
{
    uint32_t allowed0 = (uint32_t)cap, allowed1 = (uint32_t)(cap >> 32);
    uint32_t v = (want | allowed0) & allowed1;
    if ((v & need) != need) {
        pr_err(LS_VMX, "%s controls: required bits %#x not supported (may-be-one %#x)",
               what, need & ~v, allowed1);
        return -1;
    }
    *out = v;
    return 0;
}

int vmx_on(const struct vmx_caps *c)
{
    caps = *c;
    revision = (uint32_t)(caps.basic & 0x7fffffff);
    uint64_t cr0 = read_cr0(), cr4 = read_cr4() | CR4_VMXE;
    cr0 = (cr0 | rdmsr(MSR_IA32_VMX_CR0_FIXED0)) & rdmsr(MSR_IA32_VMX_CR0_FIXED1);
    cr4 = (cr4 | rdmsr(MSR_IA32_VMX_CR4_FIXED0)) & rdmsr(MSR_IA32_VMX_CR4_FIXED1);
    write_cr0(cr0);
    write_cr4(cr4);
    vmxon_region = frame_alloc(FS_HV, 0);
    if (vmxon_region == MFN_INVALID)
        return -1;
    *(uint32_t *)frame_ptr(vmxon_region) = revision;
    if (insn_vmxon(vmxon_region << PAGE_SHIFT)) {
        pr_err(LS_VMX, "VMXON failed (CR0 %#llx CR4 %#llx)", (unsigned long long)cr0,
               (unsigned long long)cr4);
        return -1;
    }
    vmx_active = true;
    pr_info(LS_VMX, "VMXON ok: VMCS revision %#x, CR0 %#llx, CR4 %#llx", revision,
            (unsigned long long)cr0, (unsigned long long)cr4);
    return 0;
}

int vmx_vm_load(struct vm *vm)
{
    if (insn_vmptrld(vm->vcpu.vmcs << PAGE_SHIFT)) {
        pr_err(LS_VMX, "vm %s: VMPTRLD failed", vm->name);
        return -1;
    }
    return 0;
}

static void setup_host_state(void)
{
    vmwrite(HOST_CR0, read_cr0());
    vmwrite(HOST_CR3, read_cr3());
    vmwrite(HOST_CR4, read_cr4());
    vmwrite(HOST_CS_SELECTOR, SEL_CODE64);
    vmwrite(HOST_SS_SELECTOR, SEL_DATA);
    vmwrite(HOST_DS_SELECTOR, SEL_DATA);
    vmwrite(HOST_ES_SELECTOR, SEL_DATA);
    vmwrite(HOST_FS_SELECTOR, 0);
    vmwrite(HOST_GS_SELECTOR, 0);
    vmwrite(HOST_TR_SELECTOR, SEL_TSS);
    vmwrite(HOST_FS_BASE, 0);
    vmwrite(HOST_GS_BASE, 0);
    vmwrite(HOST_TR_BASE, desc_tss_base());
    vmwrite(HOST_GDTR_BASE, desc_gdt_base());
    vmwrite(HOST_IDTR_BASE, desc_idt_base());
    vmwrite(HOST_IA32_SYSENTER_CS, 0);
    vmwrite(HOST_IA32_SYSENTER_ESP, 0);
    vmwrite(HOST_IA32_SYSENTER_EIP, 0);
    vmwrite(HOST_IA32_EFER, rdmsr(MSR_EFER));
    vmwrite(HOST_IA32_PAT, rdmsr(MSR_IA32_PAT));
    vmwrite(HOST_RIP, (uint64_t)vmx_exit_point);
}

/* The state the Linux 64-bit boot protocol asks for: long mode, paging on,
 * flat 64-bit code at selector 0x10 and data at 0x18, interrupts off. The
 * loader then sets RIP, RSI, CR3 and the GDT base. */
static void setup_guest_state(struct vm *vm)
{
    struct vcpu *v = &vm->vcpu;
    uint64_t fixed0 = rdmsr(MSR_IA32_VMX_CR0_FIXED0), fixed1 = rdmsr(MSR_IA32_VMX_CR0_FIXED1);
    uint64_t f4_0 = rdmsr(MSR_IA32_VMX_CR4_FIXED0), f4_1 = rdmsr(MSR_IA32_VMX_CR4_FIXED1);
    /* With unrestricted guest, PE and PG are the guest's business. */
    uint64_t cr0_forced = fixed0 & ~(caps.unrestricted ? (CR0_PE | CR0_PG) : 0);
    uint64_t guest_cr0 = 0x80050033ULL; /* PG AM WP NE ET MP PE */
    uint64_t guest_cr4 = CR4_PAE;
    v->cr0_fixed0 = cr0_forced;
    v->cr0_fixed1 = fixed1;
    v->cr4_fixed0 = f4_0;
    v->cr4_fixed1 = f4_1 & ~CR4_GUEST_HIDDEN;
    v->cr0_mask = cr0_forced | ~fixed1;
    v->cr4_mask = f4_0 | ~v->cr4_fixed1;
    vmwrite(CR0_GUEST_HOST_MASK, v->cr0_mask);
    vmwrite(CR4_GUEST_HOST_MASK, v->cr4_mask);
    vmwrite(CR0_READ_SHADOW, guest_cr0);
    vmwrite(CR4_READ_SHADOW, guest_cr4);
    vmwrite(GUEST_CR0, (guest_cr0 | cr0_forced) & fixed1);
    vmwrite(GUEST_CR4, (guest_cr4 | f4_0) & v->cr4_fixed1);
    vmwrite(GUEST_CR3, 0);
    vmwrite(GUEST_IA32_EFER, EFER_LME | (1ULL << 10) /* LMA */);
    vmwrite(GUEST_IA32_PAT, 0x0007040600070406ULL);
    vmwrite(GUEST_IA32_DEBUGCTL, 0);
    vmwrite(GUEST_DR7, 0x400);

    static const enum vmcs_field sel[] = { GUEST_ES_SELECTOR, GUEST_SS_SELECTOR,
                                           GUEST_DS_SELECTOR, GUEST_FS_SELECTOR,
                                           GUEST_GS_SELECTOR };
    for (unsigned i = 0; i < 5; i++) {
        enum vmcs_field s = sel[i];
        unsigned idx = (s - GUEST_ES_SELECTOR) / 2;
        vmwrite(s, 0x18);
        vmwrite(GUEST_ES_LIMIT + 2 * idx, 0xffffffff);
        vmwrite(GUEST_ES_AR_BYTES + 2 * idx, 0xc093); /* data RW, G, D/B */
        vmwrite(GUEST_ES_BASE + 2 * idx, 0);
    }
    vmwrite(GUEST_CS_SELECTOR, 0x10);
    vmwrite(GUEST_CS_LIMIT, 0xffffffff);
    vmwrite(GUEST_CS_AR_BYTES, 0xa09b); /* code XR accessed, L, G */
    vmwrite(GUEST_CS_BASE, 0);
    vmwrite(GUEST_TR_SELECTOR, 0);
    vmwrite(GUEST_TR_LIMIT, 0x67);
    vmwrite(GUEST_TR_AR_BYTES, 0x008b); /* busy 64-bit TSS */
    vmwrite(GUEST_TR_BASE, 0);
    vmwrite(GUEST_LDTR_SELECTOR, 0);
    vmwrite(GUEST_LDTR_LIMIT, 0);
    vmwrite(GUEST_LDTR_AR_BYTES, AR_UNUSABLE);
    vmwrite(GUEST_LDTR_BASE, 0);
    vmwrite(GUEST_GDTR_BASE, 0);
    vmwrite(GUEST_GDTR_LIMIT, 0);
    vmwrite(GUEST_IDTR_BASE, 0);
    vmwrite(GUEST_IDTR_LIMIT, 0);
    vmwrite(GUEST_RFLAGS, 0x2);
    vmwrite(GUEST_RSP, 0);
    vmwrite(GUEST_RIP, 0);
    vmwrite(GUEST_SYSENTER_CS, 0);
    vmwrite(GUEST_SYSENTER_ESP, 0);
    vmwrite(GUEST_SYSENTER_EIP, 0);
    vmwrite(GUEST_INTERRUPTIBILITY_INFO, 0);
    vmwrite(GUEST_ACTIVITY_STATE, 0);
    vmwrite(GUEST_PENDING_DBG_EXCEPTIONS, 0);
    vmwrite(VMCS_LINK_POINTER, ~0ULL);
    memset(&v->regs, 0, sizeof(v->regs));
}

int vmx_vm_setup(struct vm *vm, const struct vmx_caps *c)
{
    struct vcpu *v = &vm->vcpu;
    v->vm = vm;
    v->vmcs = frame_alloc(FS_HV, 0);
    vm->io_bitmap[0] = frame_alloc(FS_HV, 0);
    vm->io_bitmap[1] = frame_alloc(FS_HV, 0);
    vm->msr_bitmap = frame_alloc(FS_HV, 0);
    if (v->vmcs == MFN_INVALID || vm->io_bitmap[0] == MFN_INVALID ||
        vm->io_bitmap[1] == MFN_INVALID || vm->msr_bitmap == MFN_INVALID) {
        pr_err(LS_VMX, "vm %s: out of memory for the VMCS and bitmaps", vm->name);
        return -1;
    }
    *(uint32_t *)frame_ptr(v->vmcs) = revision;
    if (insn_vmclear(v->vmcs << PAGE_SHIFT) || vmx_vm_load(vm)) {
        pr_err(LS_VMX, "vm %s: VMCLEAR/VMPTRLD failed", vm->name);
        return -1;
    }
    /* Every port exits: the whole platform is emulated. */
    memset(frame_ptr(vm->io_bitmap[0]), 0xff, PAGE_SIZE);
    memset(frame_ptr(vm->io_bitmap[1]), 0xff, PAGE_SIZE);
    policy_msr_bitmap(frame_ptr(vm->msr_bitmap));

    uint32_t pin, cpu, sec, ex, en;
    if (adjust(c->pinbased, PIN_EXTERNAL_INTERRUPT_EXITING | PIN_NMI_EXITING |
                                PIN_PREEMPTION_TIMER,
               PIN_EXTERNAL_INTERRUPT_EXITING | PIN_NMI_EXITING | PIN_PREEMPTION_TIMER,
               "pin-based", &pin) ||
        adjust(c->procbased, CPU_HLT_EXITING | CPU_USE_IO_BITMAPS | CPU_USE_MSR_BITMAPS |
                                 CPU_ACTIVATE_SECONDARY | CPU_USE_TSC_OFFSETTING |
                                 CPU_MWAIT_EXITING | CPU_MONITOR_EXITING | CPU_RDPMC_EXITING,
               CPU_HLT_EXITING | CPU_USE_IO_BITMAPS | CPU_USE_MSR_BITMAPS |
                   CPU_ACTIVATE_SECONDARY | CPU_USE_TSC_OFFSETTING,
               "processor-based", &cpu) ||
        adjust(c->procbased2, SEC_ENABLE_EPT | SEC_ENABLE_VPID | SEC_UNRESTRICTED_GUEST,
               SEC_ENABLE_EPT, "secondary", &sec) ||
        /* Debug controls: DR7 and IA32_DEBUGCTL are the guest's, in its
         * VMCS (without them a TRUE-controls CPU leaves the guest DR7 at
         * the 0x400 every exit writes, and its breakpoints vanish). */
        adjust(c->exit, EXIT_HOST_ADDR_SPACE_SIZE | EXIT_SAVE_IA32_EFER |
                            EXIT_LOAD_IA32_EFER | EXIT_SAVE_IA32_PAT | EXIT_LOAD_IA32_PAT |
                            EXIT_ACK_INTR_ON_EXIT | EXIT_SAVE_DEBUG_CONTROLS,
               EXIT_HOST_ADDR_SPACE_SIZE | EXIT_SAVE_IA32_EFER | EXIT_LOAD_IA32_EFER |
                   EXIT_SAVE_IA32_PAT | EXIT_LOAD_IA32_PAT | EXIT_SAVE_DEBUG_CONTROLS,
               "VM-exit", &ex) ||
        adjust(c->entry, ENTRY_IA32E_MODE_GUEST | ENTRY_LOAD_IA32_EFER | ENTRY_LOAD_IA32_PAT |
                             ENTRY_LOAD_DEBUG_CONTROLS,
               ENTRY_IA32E_MODE_GUEST | ENTRY_LOAD_IA32_EFER | ENTRY_LOAD_IA32_PAT |
                   ENTRY_LOAD_DEBUG_CONTROLS,
               "VM-entry", &en))
        return -1;
    /* The TRUE MSRs let CR3 accesses run without exits under EPT. */
    if (cpu & (CPU_CR3_LOAD_EXITING | CPU_CR3_STORE_EXITING))
        pr_warn(LS_VMX, "vm %s: CPU forces CR3-access exiting", vm->name);
    v->cpu_ctls = cpu;
    v->entry_ctls = en;
    vmwrite(PIN_BASED_VM_EXEC_CONTROL, pin);
    vmwrite(CPU_BASED_VM_EXEC_CONTROL, cpu);
    vmwrite(SECONDARY_VM_EXEC_CONTROL, sec);
    vmwrite(VM_EXIT_CONTROLS, ex);
    vmwrite(VM_ENTRY_CONTROLS, en);
    vmwrite(EXCEPTION_BITMAP, 0);
    vmwrite(PAGE_FAULT_ERROR_CODE_MASK, 0);
    vmwrite(PAGE_FAULT_ERROR_CODE_MATCH, 0);
    vmwrite(CR3_TARGET_COUNT, 0);
    vmwrite(VM_EXIT_MSR_STORE_COUNT, 0);
    vmwrite(VM_EXIT_MSR_LOAD_COUNT, 0);
    vmwrite(VM_ENTRY_MSR_LOAD_COUNT, 0);
    vmwrite(VM_ENTRY_INTR_INFO_FIELD, 0);
    vmwrite(IO_BITMAP_A, vm->io_bitmap[0] << PAGE_SHIFT);
    vmwrite(IO_BITMAP_B, vm->io_bitmap[1] << PAGE_SHIFT);
    vmwrite(MSR_BITMAP, vm->msr_bitmap << PAGE_SHIFT);
    if (sec & SEC_ENABLE_VPID)
        vmwrite(VIRTUAL_PROCESSOR_ID, (uint64_t)vm->id + 1);
    vmwrite(EPT_POINTER, vm->p2m.eptp);
    vmwrite(TSC_OFFSET, vm->tsc_offset);

    setup_host_state();
    setup_guest_state(vm);
    pr_info(LS_VMX, "vm %s: VMCS ready (pin %#x, cpu %#x, secondary %#x, exit %#x, entry %#x)",
            vm->name, pin, cpu, sec, ex, en);
    return 0;
}

int vmx_vm_enter(struct vm *vm)
{
    struct vcpu *v = &vm->vcpu;
    int rc = vmx_enter(&v->regs, v->launched);
    if (rc) {
        uint64_t err = rc == 2 ? vmread(VM_INSTRUCTION_ERROR) : 0;
        vm_stop(vm, true, "%s failed: %s (VM-instruction error %llu)",
                v->launched ? "VMRESUME" : "VMLAUNCH",
                rc == 2 ? "VMfailValid" : "VMfailInvalid", (unsigned long long)err);
        vmx_dump_guest(vm);
        return -1;
    }
    v->launched = true;
    return 0;
}

void vmx_inject_exception(struct vm *vm, uint8_t vector, bool has_error, uint32_t error)
{
    (void)vm;
    uint32_t info = vmx_exception_info(vector, has_error, vmread(GUEST_CR0));
    vmwrite(VM_ENTRY_INTR_INFO_FIELD, info);
    if (info & INTR_INFO_DELIVER_CODE)
        vmwrite(VM_ENTRY_EXCEPTION_ERROR_CODE, error);
}

void vmx_set_intr_window(struct vm *vm, bool on)
{
    struct vcpu *v = &vm->vcpu;
    uint32_t want = on ? v->cpu_ctls | CPU_INTR_WINDOW_EXITING
                       : v->cpu_ctls & ~CPU_INTR_WINDOW_EXITING;
    if (want != v->cpu_ctls) {
        v->cpu_ctls = want;
        vmwrite(CPU_BASED_VM_EXEC_CONTROL, want);
    }
}

static const char *const seg_names[] = { "ES", "CS", "SS", "DS", "FS", "GS", "LDTR", "TR" };

void vmx_dump_guest(struct vm *vm)
{
    struct guest_regs *r = &vm->vcpu.regs;
    log_raw("---- vm %s: guest state ----\n", vm->name);
    log_raw("exit reason %#llx (%s) qualification %#llx instruction length %llu\n",
            (unsigned long long)vmread(VM_EXIT_REASON),
            exit_reason_name((uint32_t)vmread(VM_EXIT_REASON) & 0xffff),
            (unsigned long long)vmread(EXIT_QUALIFICATION),
            (unsigned long long)vmread(VM_EXIT_INSTRUCTION_LEN));
    log_raw("RIP %016llx RSP %016llx RFLAGS %016llx\n", (unsigned long long)vmread(GUEST_RIP),
            (unsigned long long)vmread(GUEST_RSP), (unsigned long long)vmread(GUEST_RFLAGS));
    log_raw("CR0 %016llx (shadow %llx) CR3 %016llx CR4 %016llx (shadow %llx)\n",
            (unsigned long long)vmread(GUEST_CR0), (unsigned long long)vmread(CR0_READ_SHADOW),
            (unsigned long long)vmread(GUEST_CR3), (unsigned long long)vmread(GUEST_CR4),
            (unsigned long long)vmread(CR4_READ_SHADOW));
    log_raw("EFER %016llx PAT %016llx interruptibility %#llx activity %llu\n",
            (unsigned long long)vmread(GUEST_IA32_EFER), (unsigned long long)vmread(GUEST_IA32_PAT),
            (unsigned long long)vmread(GUEST_INTERRUPTIBILITY_INFO),
            (unsigned long long)vmread(GUEST_ACTIVITY_STATE));
    log_raw("RAX %016llx RBX %016llx RCX %016llx RDX %016llx\n", (unsigned long long)r->rax,
            (unsigned long long)r->rbx, (unsigned long long)r->rcx, (unsigned long long)r->rdx);
    log_raw("RSI %016llx RDI %016llx RBP %016llx CR2 %016llx\n", (unsigned long long)r->rsi,
            (unsigned long long)r->rdi, (unsigned long long)r->rbp, (unsigned long long)r->cr2);
    log_raw("R8  %016llx R9  %016llx R10 %016llx R11 %016llx\n", (unsigned long long)r->r8,
            (unsigned long long)r->r9, (unsigned long long)r->r10, (unsigned long long)r->r11);
    log_raw("R12 %016llx R13 %016llx R14 %016llx R15 %016llx\n", (unsigned long long)r->r12,
            (unsigned long long)r->r13, (unsigned long long)r->r14, (unsigned long long)r->r15);
    for (int i = 0; i < 8; i++) {
        log_raw("%-4s sel %04llx base %016llx limit %08llx ar %05llx\n", seg_names[i],
                (unsigned long long)vmread(GUEST_ES_SELECTOR + 2 * i),
                (unsigned long long)vmread(GUEST_ES_BASE + 2 * i),
                (unsigned long long)vmread(GUEST_ES_LIMIT + 2 * i),
                (unsigned long long)vmread(GUEST_ES_AR_BYTES + 2 * i));
    }
    log_raw("GDTR %016llx/%llx IDTR %016llx/%llx\n", (unsigned long long)vmread(GUEST_GDTR_BASE),
            (unsigned long long)vmread(GUEST_GDTR_LIMIT), (unsigned long long)vmread(GUEST_IDTR_BASE),
            (unsigned long long)vmread(GUEST_IDTR_LIMIT));
    log_raw("IDT-vectoring info %#llx exit interruption info %#llx entry interruption info %#llx\n",
            (unsigned long long)vmread(IDT_VECTORING_INFO_FIELD),
            (unsigned long long)vmread(VM_EXIT_INTR_INFO),
            (unsigned long long)vmread(VM_ENTRY_INTR_INFO_FIELD));
    log_raw("guest-physical address %#llx linear address %#llx\n",
            (unsigned long long)vmread(GUEST_PHYSICAL_ADDRESS),
            (unsigned long long)vmread(GUEST_LINEAR_ADDRESS));
    if (vm->p2m_live)
        vmx_dump_ept_walk(vm, vmread(GUEST_PHYSICAL_ADDRESS));
}

int vmx_dump_ept_walk(struct vm *vm, uint64_t gpa)
{
    static char walk[1024];
    struct ept_walk_caps c = { 0 };
    uint32_t a, b, cx, d;
    cpuid(0x80000000, 0, &a, &b, &cx, &d);
    if (a >= 0x80000008) {
        cpuid(0x80000008, 0, &a, &b, &cx, &d);
        c.maxphyaddr = a & 0xff;
    }
    uint64_t cap = 0;
    rdmsr_safe(MSR_IA32_VMX_EPT_VPID_CAP, &cap);
    c.exec_only = cap & (1ULL << 0);
    c.page_2m = cap & (1ULL << 16);
    c.page_1g = cap & (1ULL << 17);
    int bad = ept_format_walk(vm->p2m.ept_root, gpa, &c, walk, sizeof(walk));
    log_raw("EPTP %#llx, MAXPHYADDR %u\n%s", (unsigned long long)vm->p2m.eptp, c.maxphyaddr,
            walk);
    return bad;
}

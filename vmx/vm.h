/* A VM and its single vCPU (guest platform version 1). */
#ifndef VMX_VM_H
#define VMX_VM_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/log.h"
#include "mm/frame.h"
#include "mm/balloon.h"
#include "mm/p2m.h"
#include "vmx/devices.h"
#include "vmx/regs.h"
#include "vmx/vmcs.h"

#define MAX_VMS 8
#define VM_MSR_REMEMBERED 32

/* Kinds of guest-triggerable log messages with a rate limit of their own
 * in each VM (lib/log.h). The hypercall refusals' bucket is in
 * struct balloon_stats (mm/balloon.c prints them). */
enum vm_log_kind { VLOG_MSR, VLOG_IO, VM_LOG_KINDS };
extern const char *const vm_log_kind_name[VM_LOG_KINDS];

struct guest_regs {
    union {
        uint64_t gpr[GREG_COUNT]; /* indexed by the SDM's register number */
        struct {
            uint64_t rax, rcx, rdx, rbx, rsp_unused, rbp, rsi, rdi;
            uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
        };
    };
    uint64_t cr2;
};
_Static_assert(offsetof(struct guest_regs, rax) == GREGS_OFF(GREG_RAX), "entry.S");
_Static_assert(offsetof(struct guest_regs, rdi) == GREGS_OFF(GREG_RDI), "entry.S");
_Static_assert(offsetof(struct guest_regs, r15) == GREGS_OFF(GREG_R15), "entry.S");
_Static_assert(offsetof(struct guest_regs, cr2) == GREGS_CR2, "entry.S");
_Static_assert(sizeof(struct guest_regs) == GREGS_SIZE, "entry.S");

enum vm_state {
    VM_RUNNABLE,
    VM_HALTED,   /* HLT: sleeps until an interrupt is pending */
    VM_WAITING,  /* an EPT violation found no frame: retried when memory frees up */
    VM_STOPPED,
};

/* MSRs the guest uses directly (MSR bitmap pass-through) that the CPU does
 * not switch on VM entry/exit: saved and restored when VMs change. */
struct guest_msrs {
    uint64_t star, lstar, cstar, sfmask, kernel_gs_base;
};

/* Registers the guest reaches without an exit that no VMCS field holds:
 * the breakpoint addresses and status (DR7 is in the VMCS), and CR8 (the
 * TPR: MOV CR8 does not exit). Saved and restored when VMs change. */
struct guest_dbg {
    uint64_t dr[4], dr6, cr8;
};

struct vcpu {
    struct guest_regs regs;   /* first: entry.S gets a pointer to it */
    struct vm *vm;
    mfn_t vmcs;
    bool launched;
    uint32_t cpu_ctls;        /* current primary controls */
    uint32_t entry_ctls;
    uint64_t cr0_mask, cr4_mask;       /* bits owned by the hypervisor */
    uint64_t cr0_fixed0, cr0_fixed1;   /* real CR0 = (guest | fixed0) & fixed1 */
    uint64_t cr4_fixed0, cr4_fixed1;
    uint8_t fxsave[512] __attribute__((aligned(64)));
    struct guest_msrs msrs;
    struct guest_dbg dbg;
};

struct vm_stats {
    uint64_t exits[EXIT_REASON_COUNT];
    uint64_t exits_total;
    uint64_t tsc_guest, tsc_hv;  /* ticks in VMX non-root vs. root for this VM */
    uint64_t injected_irqs;
    uint64_t ept_exits, ept_exit_cycles; /* EPT violations: exit to next entry */
    uint64_t io_exits_by_dev[8];
};

struct vm {
    int id;                   /* 0-based; VPID is id + 1 */
    char name[16];
    enum vm_state state;
    char stop_reason[192]; /* as long as a loader's error with its context */
    bool failed;              /* stopped by an error rather than a power-off */
    uint64_t mem_bytes;
    struct p2m p2m;           /* guest-physical memory: the truth; EPT caches it */
    struct balloon_stats balloon; /* hypercalls and the guest's last report */
    bool p2m_live;
    uint64_t wait_since;      /* TSC when VM_WAITING began */
    uint64_t wait_free;       /* free frames then */
    uint64_t last_sweep;      /* TSC of the last accessed/dirty sweep */
    uint32_t dump_pages;      /* debug: pages to print when it stops */
    mfn_t io_bitmap[2], msr_bitmap;
    struct vcpu vcpu;
    struct platform dev;      /* the guest-visible devices */
    struct vm_stats stats;
    uint64_t tsc_offset;
    uint64_t first_entry_tsc;
    /* Unknown MSRs: each of the first VM_MSR_REMEMBERED is reported once;
     * beyond them every report goes through the rate limit. */
    uint64_t msr_gp_logged[VM_MSR_REMEMBERED];
    int nmsr_logged;
    uint64_t msr_gp;          /* RDMSR/WRMSR answered with #GP */
    struct log_limit log[VM_LOG_KINDS]; /* guest-triggerable messages, per kind */
};

/* Guest-physical access for the loader and device models (bounds-checked:
 * NULL outside guest RAM). */
void *vm_gpa_ptr(struct vm *vm, uint64_t gpa);
int vm_copy_to_guest(struct vm *vm, uint64_t gpa, const void *src, uint64_t len);

/* Stops a VM (its vCPU never runs again); the reason is printed and kept
 * for the summary. */
void vm_stop(struct vm *vm, bool failed, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#endif

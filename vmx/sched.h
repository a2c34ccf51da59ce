/* Running the VMs: one physical CPU shared by time slices. */
#ifndef VMX_SCHED_H
#define VMX_SCHED_H
#include "boot/bootinfo.h"
#include "vmx/caps.h"
#include "vmx/vm.h"

#define SLICE_US 10000 /* 10 ms */

int vm_create(struct vm *vm, int id, const struct vm_config *vc, const struct boot_vm *files,
              const struct vmx_caps *caps);
/* Per-vCPU state the scheduler owns (FPU image). */
void sched_vcpu_init(struct vm *vm);
struct sched_params {
    uint32_t sweep_ms;        /* accessed/dirty sweep period per VM */
    uint32_t share_ms;        /* share scanner tick period */
    uint32_t share_cpu;       /* most of the CPU it may take while guests run, % */
    uint32_t stats_interval;  /* seconds between "[mm]" stats lines (0: off) */
    uint32_t wait_limit_ms;   /* a VM waiting this long for memory is stopped */
};

/* Runs all runnable VMs until every one has stopped; prints the summary.
 * Returns the number of VMs that stopped with a failure. */
int sched_run(struct vm *vms, int n, const struct sched_params *sp);
#endif

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
/* Runs all runnable VMs until every one has stopped; prints the summary.
 * Returns the number of VMs that stopped with a failure. */
int sched_run(struct vm *vms, int n);
#endif

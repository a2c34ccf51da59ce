#ifndef VMX_EXIT_H
#define VMX_EXIT_H
#include "vmx/vm.h"

/* What happens after an exit handler ran. */
enum exit_action {
    EXIT_RESUME,    /* enter the guest again */
    EXIT_INJECT_GP, /* resume with #GP(0) at the same instruction */
    EXIT_INJECT_UD, /* resume with #UD */
    EXIT_HALT,      /* the vCPU sleeps until its next interrupt */
    EXIT_YIELD,     /* the time slice is over or a timer is due */
    EXIT_STOP,      /* the VM has been stopped (vm_stop was called) */
    EXIT_WAIT_MEM,  /* no frame for the faulting page yet: retry later */
};

/* Decodes the current VM exit of vm and runs its handler. */
enum exit_action exit_dispatch(struct vm *vm, uint32_t reason);
#endif

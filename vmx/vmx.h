/* VMX instructions and VM set-up. */
#ifndef VMX_VMX_H
#define VMX_VMX_H
#include <stdbool.h>
#include <stdint.h>

#include "vmx/caps.h"
#include "vmx/vm.h"
#include "vmx/vmcs.h"

static inline uint64_t vmread(enum vmcs_field f)
{
    uint64_t v;
    __asm__ volatile("vmread %1, %0" : "=rm"(v) : "r"((uint64_t)f) : "cc");
    return v;
}

/* VMWRITE; a failure is a hypervisor bug (bad field or no current VMCS). */
void vmwrite(enum vmcs_field f, uint64_t v);

/* Turns VMX on (CR4.VMXE, fixed CR0/CR4 bits, VMXON). */
int vmx_on(const struct vmx_caps *caps);
/* Creates the VMCS, bitmaps and EPT of a VM whose memory is already
 * populated, and sets the guest state for the loader to fill in. */
int vmx_vm_setup(struct vm *vm, const struct vmx_caps *caps);
/* Makes vm's VMCS current on this CPU. */
int vmx_vm_load(struct vm *vm);
/* Enters the guest until the next VM exit. Returns 0, or -1 when the entry
 * instruction failed (the VM-instruction error is reported). */
int vmx_vm_enter(struct vm *vm);


/* Full state dump of the current VMCS (stop reports), with the EPT walk
 * of the exit's guest-physical address. */
void vmx_dump_guest(struct vm *vm);
/* Prints the EPT walk of gpa with the processor's verdict on each entry
 * (vmx/ept_dump.h). Returns the level of a misconfigured entry, or 0. */
int vmx_dump_ept_walk(struct vm *vm, uint64_t gpa);

/* Event injection for the next entry. has_error: the exception has an
 * error code (#GP); it is delivered only in protected mode, as the CPU
 * does (vmx/event.h). */
void vmx_inject_exception(struct vm *vm, uint8_t vector, bool has_error, uint32_t error);
void vmx_set_intr_window(struct vm *vm, bool on);

/* Guest CPUID and MSR policy (vmx/policy.c). */
void policy_cpuid(struct vm *vm, uint32_t leaf, uint32_t sub, uint32_t r[4]);
/* 0 on success, -1 to inject #GP. */
int policy_rdmsr(struct vm *vm, uint32_t msr, uint64_t *val);
int policy_wrmsr(struct vm *vm, uint32_t msr, uint64_t val);
void policy_msr_bitmap(uint8_t *bitmap);
#endif

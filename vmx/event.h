/* Event injection: the VM-entry interruption-information word, apart from
 * the VMWRITE so that the host tests can check it (tests/host/test_vmx.c). */
#ifndef VMX_EVENT_H
#define VMX_EVENT_H
#include <stdbool.h>
#include <stdint.h>

#include "vmx/vmcs.h"

#define EVENT_CR0_PE (1ULL << 0)

/* A hardware exception for the next entry. The deliver-error-code bit
 * says the CPU pushes an error code while delivering it. Outside
 * protected mode (CR0.PE = 0, possible with unrestricted guest) no
 * exception pushes one, and VM entry checks that the bit is clear then
 * (SDM Vol. 3C, checks on the VM-entry control fields): a real-mode #GP with the bit set would make the
 * entry fail instead of reaching the guest. */
static inline uint32_t vmx_exception_info(uint8_t vector, bool has_error, uint64_t guest_cr0)
{
    bool deliver = has_error && (guest_cr0 & EVENT_CR0_PE);
    return INTR_INFO_VALID | INTR_TYPE_HW_EXCEPTION | vector |
           (deliver ? INTR_INFO_DELIVER_CODE : 0);
}
#endif

/* GDT, TSS and IDT of the hypervisor, and the exception path. */
#ifndef ARCH_DESC_H
#define ARCH_DESC_H
#include <stdint.h>

#define SEL_CODE64 0x08
#define SEL_DATA 0x10
#define SEL_TSS 0x18

/* IST slots (1-based in the IDT entry). */
#define IST_NMI 1
#define IST_DF 2
#define IST_MC 3

/* Saved by arch/isr.S in this order; the layout is pinned by the
 * _Static_asserts in arch/exception.c next to the offsets isr.S uses. */
struct exc_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error;
    uint64_t rip, cs, rflags, rsp, ss; /* pushed by the CPU */
};

void desc_init(void);          /* load GDT, TSS, IDT */
/* Bases the VMCS host-state area needs (SDM 25.5). */
uint64_t desc_gdt_base(void);
uint64_t desc_idt_base(void);
uint64_t desc_tss_base(void);
void exception_dispatch(struct exc_frame *f); /* called from isr.S */

/* Stack bounds the stack walker trusts. */
void stack_register(uint64_t lo, uint64_t hi);
void stack_trace(uint64_t rbp, uint64_t rip);

/* Image bounds, for printing addresses as hv.efi+offset. */
void image_set_bounds(uint64_t base, uint64_t size);
#endif

/* desc_load(gdtr, idtr): load the GDT, reload every segment register with
 * the new selectors (CS through a far return), load TR and the IDT. */
    .text
    .code64
    .globl desc_load
desc_load:
    lgdt (%rdi)
    lidt (%rsi)
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    popq %rax               /* return address */
    pushq $0x08
    pushq %rax
    lretq

    .globl tss_load
tss_load:
    ltr %di
    ret

    .section .note.GNU-stack, "", @progbits

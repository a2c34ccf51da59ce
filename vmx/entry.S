/* int vmx_enter(struct guest_regs *regs, int launched)
 *
 * Loads the guest's general registers and CR2 from *regs, then VMLAUNCH
 * (launched == 0) or VMRESUME. On a VM exit the CPU comes back at
 * vmx_exit_point with the stack pointer written to HOST_RSP here, where the
 * regs pointer sits on top; the guest registers are stored back and the
 * call returns 0. If the instruction itself fails (VMfailValid or
 * VMfailInvalid) it falls through and returns 1 (invalid) or 2 (valid: the
 * VM-instruction error field says why). */
#include "vmx/regs.h"

#define VMCS_HOST_RSP 0x6c14

    .text
    .code64
    .globl vmx_enter, vmx_exit_point
vmx_enter:
    pushq %rbp
    movq %rsp, %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    pushq %rdi                      /* regs pointer: found again on exit */
    movq $VMCS_HOST_RSP, %rax
    vmwrite %rsp, %rax
    jbe .Lfail_write

    movq GREGS_CR2(%rdi), %rax
    movq %rax, %cr2
    movl %esi, %eax                 /* launched? decided before regs load */
    testl %eax, %eax
    movq GREGS_OFF(GREG_RAX)(%rdi), %rax
    movq GREGS_OFF(GREG_RCX)(%rdi), %rcx
    movq GREGS_OFF(GREG_RDX)(%rdi), %rdx
    movq GREGS_OFF(GREG_RBX)(%rdi), %rbx
    movq GREGS_OFF(GREG_RBP)(%rdi), %rbp
    movq GREGS_OFF(GREG_RSI)(%rdi), %rsi
    movq GREGS_OFF(8)(%rdi), %r8
    movq GREGS_OFF(9)(%rdi), %r9
    movq GREGS_OFF(10)(%rdi), %r10
    movq GREGS_OFF(11)(%rdi), %r11
    movq GREGS_OFF(12)(%rdi), %r12
    movq GREGS_OFF(13)(%rdi), %r13
    movq GREGS_OFF(14)(%rdi), %r14
    movq GREGS_OFF(15)(%rdi), %r15
    movq GREGS_OFF(GREG_RDI)(%rdi), %rdi   /* last: it held the pointer */
    jnz .Lresume                    /* flags from the test above survive movs */
    vmlaunch
    jmp .Lfailed
.Lresume:
    vmresume
.Lfailed:
    /* VMfailInvalid sets CF, VMfailValid sets ZF. */
    movl $1, %eax
    jc .Lout
    movl $2, %eax
    jmp .Lout
.Lfail_write:
    movl $1, %eax
.Lout:
    popq %rdi
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret

vmx_exit_point:
    /* Stack: [rsp] = regs pointer. Every GPR but RSP is the guest's. */
    pushq %rdi
    movq 8(%rsp), %rdi
    movq %rax, GREGS_OFF(GREG_RAX)(%rdi)
    movq %rcx, GREGS_OFF(GREG_RCX)(%rdi)
    movq %rdx, GREGS_OFF(GREG_RDX)(%rdi)
    movq %rbx, GREGS_OFF(GREG_RBX)(%rdi)
    movq %rbp, GREGS_OFF(GREG_RBP)(%rdi)
    movq %rsi, GREGS_OFF(GREG_RSI)(%rdi)
    movq %r8, GREGS_OFF(8)(%rdi)
    movq %r9, GREGS_OFF(9)(%rdi)
    movq %r10, GREGS_OFF(10)(%rdi)
    movq %r11, GREGS_OFF(11)(%rdi)
    movq %r12, GREGS_OFF(12)(%rdi)
    movq %r13, GREGS_OFF(13)(%rdi)
    movq %r14, GREGS_OFF(14)(%rdi)
    movq %r15, GREGS_OFF(15)(%rdi)
    popq %rax                       /* the guest's RDI */
    movq %rax, GREGS_OFF(GREG_RDI)(%rdi)
    movq %cr2, %rax
    movq %rax, GREGS_CR2(%rdi)
    xorl %eax, %eax
    jmp .Lout

    .section .note.GNU-stack, "", @progbits

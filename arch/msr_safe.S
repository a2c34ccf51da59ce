/* rdmsr_safe(msr, *val) / wrmsr_safe(msr, val): the #GP handler recognises
 * the faulting instruction's address (see fixup_table in arch/exception.c),
 * resumes at the matching fixup label and the call returns -1. */
    .text
    .code64
    .globl rdmsr_safe, rdmsr_safe_insn, rdmsr_safe_fixup
rdmsr_safe:
    movl %edi, %ecx
rdmsr_safe_insn:
    rdmsr
    shlq $32, %rdx
    movl %eax, %eax
    orq %rdx, %rax
    movq %rax, (%rsi)
    xorl %eax, %eax
    ret
rdmsr_safe_fixup:
    movl $-1, %eax
    ret

    .globl wrmsr_safe, wrmsr_safe_insn, wrmsr_safe_fixup
wrmsr_safe:
    movl %edi, %ecx
    movl %esi, %eax
    movq %rsi, %rdx
    shrq $32, %rdx
wrmsr_safe_insn:
    wrmsr
    xorl %eax, %eax
    ret
wrmsr_safe_fixup:
    movl $-1, %eax
    ret

    .section .note.GNU-stack, "", @progbits

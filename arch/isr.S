/* Exception and interrupt entry stubs. Each stub is 16 bytes so the IDT can
 * be filled as isr_stubs + 16 * vector. Stubs of vectors without a CPU error
 * code push a zero so that every frame has the same shape (struct exc_frame
 * in arch/desc.h). */
#define HAS_ERROR(v) ((v) == 8 || ((v) >= 10 && (v) <= 14) || (v) == 17 || (v) == 21 || (v) == 29 || (v) == 30)

    .text
    .code64
    .balign 16
    .globl isr_stubs
isr_stubs:
    vec = 0
    .rept 256
    .balign 16
    .if HAS_ERROR(vec) == 0
    pushq $0
    .endif
    pushq $vec
    jmp isr_common
    vec = vec + 1
    .endr

isr_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    cld
    movq %rsp, %rdi
    /* Align the stack for the C handler; keep the frame pointer in rbx. */
    movq %rsp, %rbx
    andq $-16, %rsp
    call exception_dispatch
    movq %rbx, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp          /* vector, error */
    iretq

    .section .note.GNU-stack, "", @progbits

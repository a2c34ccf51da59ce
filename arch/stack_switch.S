/* stack_switch(top, fn, arg): run fn(arg) on a new stack; fn never returns.
 * Used to leave the firmware's stack, which lives in boot-services memory
 * that the frame allocator reclaims. */
    .text
    .code64
    .globl stack_switch
stack_switch:
    movq %rdi, %rsp
    xorl %ebp, %ebp          /* end of the frame-pointer chain */
    movq %rdx, %rdi
    pushq $0                 /* fake return address keeps the ABI alignment */
    jmp *%rsi

    .section .note.GNU-stack, "", @progbits

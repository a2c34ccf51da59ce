/* The guest register area saved and restored by vmx/entry.S. Shared with
 * the assembly: the offsets below are the only place they are written
 * down, and the _Static_asserts in vmx/vm.h tie the C struct to them. */
#ifndef VMX_REGS_H
#define VMX_REGS_H

/* Register numbers as the SDM encodes them in exit qualifications. */
#define GREG_RAX 0
#define GREG_RCX 1
#define GREG_RDX 2
#define GREG_RBX 3
#define GREG_RSP 4 /* not saved here: the VMCS holds the guest RSP */
#define GREG_RBP 5
#define GREG_RSI 6
#define GREG_RDI 7
#define GREG_R8 8
#define GREG_R15 15
#define GREG_COUNT 16

#define GREGS_OFF(n) ((n)*8)
#define GREGS_CR2 (16 * 8)
#define GREGS_SIZE (17 * 8)
#endif

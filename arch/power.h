#ifndef ARCH_POWER_H
#define ARCH_POWER_H
#include <stdint.h>

#define POWER_OK 0
#define POWER_FAIL 1

/* Ends the machine: QEMU's isa-debug-exit (exit status (code*2+1)|0x20, see
 * README), Bochs' shutdown port, then ACPI S5 from the FADT; halts if all
 * fail. */
__attribute__((noreturn)) void power_off(int status);
#endif

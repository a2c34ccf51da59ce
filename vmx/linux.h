/* Linux x86 boot protocol, 64-bit entry (Documentation/arch/x86/boot.rst):
 * the bzImage's protected-mode kernel, boot_params ("zero page") with an
 * e820 map, the command line and the initrd are placed in guest memory,
 * and the vCPU starts at startup_64 in long mode. */
#ifndef VMX_LINUX_H
#define VMX_LINUX_H
#include <stddef.h>
#include <stdint.h>

struct vm;

/* Guest-physical layout below 1 MiB chosen by the loader. */
#define LINUX_BOOT_PARAMS 0x7000ULL
#define LINUX_GDT 0x8000ULL
#define LINUX_PML4 0x9000ULL     /* + PDPT at 0xa000, four PDs at 0xb000.. */
#define LINUX_CMDLINE 0x20000ULL
#define LINUX_STACK 0x6ff0ULL

struct linux_entry {
    uint64_t rip, rsi, rsp, cr3, gdt_base;
    uint16_t gdt_limit;
    uint64_t load_addr, initrd_addr;
    uint16_t protocol;
};

/* Checks the bzImage and returns 0, or -1 with a reason in err. */
int linux_check(const void *kernel, uint64_t size, uint64_t mem_bytes, char *err,
                size_t errlen);
/* Places everything in guest memory; fills *e with the entry state. */
int linux_load(struct vm *vm, const void *kernel, uint64_t ksize, const void *initrd,
               uint64_t isize, const char *cmdline, struct linux_entry *e, char *err,
               size_t errlen);
#endif

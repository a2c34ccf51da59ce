#ifndef ARCH_MEMORY_H
#define ARCH_MEMORY_H
#include <stdint.h>

#include "boot/bootinfo.h"

/* Builds the frame table from the firmware's memory map (boot-services
 * memory stays marked until memory_reclaim_boot). */
int memory_init(const struct boot_info *bi);
/* Builds and loads the hypervisor's page tables: an identity direct map of
 * all RAM and MMIO below max(4 GiB, top of memory) with 2 MiB pages, NX on
 * all data, and the image mapped with 4 KiB pages, W^X. */
int paging_init(const struct boot_info *bi);
/* Returns boot-services memory to the allocator; call only once nothing
 * firmware-owned (stack, GDT, IDT, page tables) is in use. */
uint64_t memory_reclaim_boot(const struct boot_info *bi);
void memory_print_map(const struct boot_info *bi);
uint64_t memory_top(void);
#endif

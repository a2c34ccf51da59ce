/* One 4-level page-table walker for the host's paging structures and for
 * EPT (mm/ept.h's pt_fmt_ept, used by mm/p2m.c): the formats differ only in
 * which bits mean "present", "large page" and the flags a non-leaf entry
 * carries, so those are parameters. */
#ifndef ARCH_PT_H
#define ARCH_PT_H
#include <stdbool.h>
#include <stdint.h>

#include "mm/frame.h"

#define PT_ADDR_MASK 0x000ffffffffff000ULL
#define PT_LEVELS 4
#define PT_LEVEL_4K 1
#define PT_LEVEL_2M 2
#define PT_LEVEL_1G 3

struct pt_fmt {
    const char *name;
    uint64_t present;     /* an entry with any of these bits is present */
    uint64_t large;       /* the page-size bit in level 2/3 entries */
    uint64_t table_flags; /* flags of an entry pointing to a table */
    int max_leaf_level;   /* largest page level the hardware supports */
};

extern const struct pt_fmt pt_fmt_host;

/* Entry for va at the given level, creating tables (from the frame
 * allocator, state FS_PAGETABLE) and splitting larger pages on the way when
 * alloc is true. NULL when absent (alloc false) or out of frames. */
uint64_t *pt_entry(const struct pt_fmt *f, mfn_t root, uint64_t va, int level,
                   bool alloc);
/* Maps [va, va+size) to [pa, pa+size) with pages of the given level (size and
 * both addresses aligned to it). Returns 0 or -1 when out of frames. */
int pt_map(const struct pt_fmt *f, mfn_t root, uint64_t va, uint64_t pa,
           uint64_t size, uint64_t leaf_flags, int level);
/* Walks va and prints every level's entry (debug and crash dumps). */
void pt_dump_walk(const struct pt_fmt *f, mfn_t root, uint64_t va);
#endif

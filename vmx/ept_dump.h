/* The EPT walk of one guest-physical address, formatted for a crash dump
 * with the hardware's verdict on each entry: the diagnosis of an EPT
 * misconfiguration exit, which is always a hypervisor bug (guests cannot
 * write EPT entries). Pure functions over the tables in machine memory,
 * so that the host tests check them (tests/host/test_vmx.c). */
#ifndef VMX_EPT_DUMP_H
#define VMX_EPT_DUMP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mm/frame.h"

/* What the processor supports, which decides what it calls misconfigured. */
struct ept_walk_caps {
    unsigned maxphyaddr; /* CPUID 0x80000008 EAX[7:0] */
    bool exec_only;      /* IA32_VMX_EPT_VPID_CAP bit 0 */
    bool page_2m;        /* bit 16 */
    bool page_1g;        /* bit 17 */
};

/* Why the processor would call entry e at level (4: PML4E, 3: PDPTE,
 * 2: PDE, 1: PTE) an EPT misconfiguration, or NULL if it would not
 * (SDM Vol. 3C, "EPT Misconfigurations"). A not-present entry (bits 2:0
 * clear) is never misconfigured. */
const char *ept_entry_misconfig(uint64_t e, int level, const struct ept_walk_caps *c);

/* Writes the walk of gpa from the EPT whose PML4 is root into buf (NUL
 * terminated, cut to len): a header line, then one line per level with the
 * entry's address, its value and what it is, down to the leaf, a
 * not-present or misconfigured entry, or a table pointer that does not
 * name an EPT table frame (not followed: a dump must not fault). Returns
 * the level of the first misconfigured entry, or 0 if there is none. */
int ept_format_walk(mfn_t root, uint64_t gpa, const struct ept_walk_caps *c, char *buf,
                    size_t len);
#endif

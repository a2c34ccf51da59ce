/* Extended page tables through the shared walker (arch/pt.c): only the
 * entry format differs from host paging (SDM Vol. 3C 29.3.2). Version 1
 * maps every GFN of guest RAM to its frame up front; the demand-paging
 * issue replaces this with faults served by mm/. */
#include "arch/pt.h"
#include "lib/log.h"
#include "mm/mm_backend.h"
#include "vmx/vmx.h"

#define EPT_R (1ULL << 0)
#define EPT_W (1ULL << 1)
#define EPT_X (1ULL << 2)
#define EPT_MT_WB (6ULL << 3)
#define EPT_LARGE (1ULL << 7)
/* EPTP: write-back paging structures, 4-level walk (SDM 25.6.11). */
#define EPTP_WB 6ULL
#define EPTP_WALK4 (3ULL << 3)

static const struct pt_fmt pt_fmt_ept = {
    .name = "EPT",
    .present = EPT_R | EPT_W | EPT_X,
    .large = EPT_LARGE,
    .table_flags = EPT_R | EPT_W | EPT_X,
    .max_leaf_level = PT_LEVEL_2M,
};

int ept_build(struct vm *vm)
{
    vm->ept_root = frame_alloc(FS_PAGETABLE, 0);
    if (vm->ept_root == MFN_INVALID)
        return -1;
    for (uint64_t gfn = 0; gfn < vm->nframes; gfn++) {
        if (pt_map(&pt_fmt_ept, vm->ept_root, gfn << PAGE_SHIFT,
                   (uint64_t)vm->gfn_mfn[gfn] << PAGE_SHIFT, PAGE_SIZE,
                   EPT_R | EPT_W | EPT_X | EPT_MT_WB, PT_LEVEL_4K))
            return -1;
    }
    vm->eptp = (vm->ept_root << PAGE_SHIFT) | EPTP_WB | EPTP_WALK4;
    return 0;
}

void ept_dump_walk(struct vm *vm, uint64_t gpa)
{
    if (vm->ept_root != MFN_INVALID && vm->ept_root)
        pt_dump_walk(&pt_fmt_ept, vm->ept_root, gpa);
}

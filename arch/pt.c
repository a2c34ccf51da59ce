#include "arch/pt.h"
#include "lib/log.h"
#include "mm/mm_backend.h"

/* Host paging (SDM Vol. 3A 4.5): P, RW, PS, NX. */
#define X86_P (1ULL << 0)
#define X86_RW (1ULL << 1)
#define X86_PS (1ULL << 7)

const struct pt_fmt pt_fmt_host = {
    .name = "host",
    .present = X86_P,
    .large = X86_PS,
    .table_flags = X86_P | X86_RW, /* leaves decide the real permissions */
    .max_leaf_level = PT_LEVEL_1G,
};

static unsigned idx(uint64_t va, int level)
{
    return (unsigned)(va >> (12 + 9 * (level - 1))) & 511;
}

static uint64_t level_size(int level)
{
    return 1ULL << (12 + 9 * (level - 1));
}

static uint64_t *table(uint64_t entry)
{
    return mm_phys_to_virt(entry & PT_ADDR_MASK);
}

/* Replaces the large leaf *e (at level) by a table of 512 smaller leaves
 * with the same translation and flags, so that a part of it can change. */
static int split(const struct pt_fmt *f, uint64_t *e, int level)
{
    mfn_t m = frame_alloc(FS_PAGETABLE, 0);
    if (m == MFN_INVALID)
        return -1;
    uint64_t *t = mm_phys_to_virt(m << PAGE_SHIFT);
    uint64_t flags = *e & ~PT_ADDR_MASK;
    uint64_t base = *e & PT_ADDR_MASK & ~(level_size(level) - 1);
    if (level - 1 == PT_LEVEL_4K)
        flags &= ~f->large;
    for (unsigned i = 0; i < 512; i++)
        t[i] = (base + i * level_size(level - 1)) | flags;
    *e = (m << PAGE_SHIFT) | f->table_flags;
    return 0;
}

uint64_t *pt_entry(const struct pt_fmt *f, mfn_t root, uint64_t va, int level,
                   bool alloc)
{
    uint64_t *t = mm_phys_to_virt(root << PAGE_SHIFT);
    for (int l = PT_LEVELS; l > level; l--) {
        uint64_t *e = &t[idx(va, l)];
        if (!(*e & f->present)) {
            if (!alloc)
                return NULL;
            mfn_t m = frame_alloc(FS_PAGETABLE, 0);
            if (m == MFN_INVALID)
                return NULL;
            *e = (m << PAGE_SHIFT) | f->table_flags;
        } else if (l <= PT_LEVEL_1G && (*e & f->large)) {
            if (!alloc || split(f, e, l))
                return NULL;
        }
        t = table(*e);
    }
    return &t[idx(va, level)];
}

int pt_map(const struct pt_fmt *f, mfn_t root, uint64_t va, uint64_t pa,
           uint64_t size, uint64_t leaf_flags, int level)
{
    uint64_t step = level_size(level);
    MM_ASSERT(level >= PT_LEVEL_4K && level <= f->max_leaf_level);
    MM_ASSERT(!(va & (step - 1)) && !(pa & (step - 1)) && !(size & (step - 1)));
    if (level > PT_LEVEL_4K)
        leaf_flags |= f->large;
    for (uint64_t off = 0; off < size; off += step) {
        uint64_t *e = pt_entry(f, root, va + off, level, true);
        if (!e)
            return -1;
        /* Mapping over a table would leak it: callers map large first. */
        MM_ASSERT(level == PT_LEVEL_4K || !(*e & f->present) || (*e & f->large));
        *e = ((pa + off) & PT_ADDR_MASK) | leaf_flags;
    }
    return 0;
}

void pt_dump_walk(const struct pt_fmt *f, mfn_t root, uint64_t va)
{
    uint64_t *t = mm_phys_to_virt(root << PAGE_SHIFT);
    log_raw("%s walk of %#llx (root %#llx):\n", f->name, (unsigned long long)va,
            (unsigned long long)(root << PAGE_SHIFT));
    for (int l = PT_LEVELS; l >= PT_LEVEL_4K; l--) {
        uint64_t e = t[idx(va, l)];
        log_raw("  L%d[%3u] = %016llx\n", l, idx(va, l), (unsigned long long)e);
        if (!(e & f->present) || l == PT_LEVEL_4K ||
            (l <= PT_LEVEL_1G && (e & f->large)))
            break;
        t = table(e);
    }
}

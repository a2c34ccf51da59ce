/* The p2m's metadata, sized by what the guest touched rather than by what
 * it was configured with: the sparse map of entries and the EPT tables.
 * Both are charged to the VM (p->meta) and enforced with its limit and the
 * machine's watermark (mm_meta_frame); both shrink again when a region
 * empties (p2m_trim, the sweep). A 1 TiB VM that touches a few thousand
 * pages costs a few thousand frames of metadata plus a top directory of
 * 8 bytes per 512 MiB configured. */
#include "lib/string.h"
#include "mm/ept.h"
#include "mm/mm.h"
#include "mm/mm_backend.h"
#include "mm/p2m_internal.h"

#define LINK_PRESENT 1ULL

static uint64_t *frame_words(uint64_t link)
{
    return mm_phys_to_virt(link & PT_ADDR_MASK);
}

static unsigned dir_index(uint64_t gfn)
{
    return (unsigned)(gfn >> P2M_CHUNK_SHIFT) & (P2M_DIR_CHUNKS - 1);
}

struct p2m_entry *map_find(const struct p2m *p, uint64_t gfn)
{
    uint64_t d = p->map[gfn >> P2M_DIR_SHIFT];
    if (!d)
        return NULL;
    uint64_t c = frame_words(d)[dir_index(gfn)];
    if (!c)
        return NULL;
    return (struct p2m_entry *)frame_words(c) + (gfn & (P2M_CHUNK_ENTRIES - 1));
}

const struct p2m_entry *p2m_peek(const struct p2m *p, uint64_t gfn)
{
    static const struct p2m_entry none; /* unpopulated, no flags */
    if (gfn >= p->ngfn || !p->map)
        return &none;
    const struct p2m_entry *e = map_find(p, gfn);
    return e ? e : &none;
}

struct p2m_entry *p2m_entry_rw(struct p2m *p, uint64_t gfn)
{
    return gfn < p->ngfn && p->map ? map_find(p, gfn) : NULL;
}

uint64_t p2m_next_touched(const struct p2m *p, uint64_t gfn)
{
    return p->map ? map_next(p, gfn) : p->ngfn;
}

/* A frame of metadata for p, linked as *link. */
static bool meta_link(struct p2m *p, uint64_t *link, enum frame_state s)
{
    mfn_t m = mm_meta_frame(p, s);
    if (m == MFN_INVALID)
        return false;
    frame_get(m)->refcount = 0; /* nothing in it yet */
    *link = (m << PAGE_SHIFT) | LINK_PRESENT;
    return true;
}

static void meta_free(struct p2m *p, uint64_t link)
{
    frame_free((link & PT_ADDR_MASK) >> PAGE_SHIFT);
    p->meta--;
}

struct p2m_entry *map_slot(struct p2m *p, uint64_t gfn)
{
    struct p2m_entry *e = map_find(p, gfn);
    if (e)
        return e;
    uint64_t *d = &p->map[gfn >> P2M_DIR_SHIFT];
    /* mm_meta_frame may reclaim from this VM; reclaim leaves the region of
     * the page being faulted (busy_gfn) alone, so *d survives. */
    if (!*d) {
        if (!meta_link(p, d, FS_HV))
            return NULL;
        p->st.map_dirs++;
    }
    uint64_t *c = &frame_words(*d)[dir_index(gfn)];
    if (!*c) {
        if (!meta_link(p, c, FS_HV))
            return NULL; /* the empty directory goes at the next trim */
        frame_get((*d & PT_ADDR_MASK) >> PAGE_SHIFT)->refcount++;
        p->st.map_chunks++;
    }
    return (struct p2m_entry *)frame_words(*c) + (gfn & (P2M_CHUNK_ENTRIES - 1));
}

void map_count(struct p2m *p, uint64_t gfn, int delta)
{
    uint64_t c = frame_words(p->map[gfn >> P2M_DIR_SHIFT])[dir_index(gfn)];
    struct frame *f = frame_get((c & PT_ADDR_MASK) >> PAGE_SHIFT);
    MM_ASSERT(delta > 0 || f->refcount > 0);
    f->refcount += (uint32_t)delta;
}

uint64_t map_next(const struct p2m *p, uint64_t gfn)
{
    while (gfn < p->ngfn) {
        uint64_t d = p->map[gfn >> P2M_DIR_SHIFT];
        if (!d) {
            gfn = (gfn | (P2M_DIR_GFNS - 1)) + 1;
            continue;
        }
        if (frame_words(d)[dir_index(gfn)])
            return gfn;
        gfn = (gfn | (P2M_CHUNK_ENTRIES - 1)) + 1;
    }
    return p->ngfn;
}

void map_destroy(struct p2m *p)
{
    for (uint64_t i = 0; i < p->map_top; i++) {
        if (!p->map[i])
            continue;
        uint64_t *dir = frame_words(p->map[i]);
        for (unsigned j = 0; j < P2M_DIR_CHUNKS; j++)
            if (dir[j])
                meta_free(p, dir[j]);
        meta_free(p, p->map[i]);
        p->map[i] = 0;
    }
}

/* ---- EPT ---- */

static unsigned ept_index(uint64_t gfn, int level)
{
    return (unsigned)(gfn >> (9 * (level - 1))) & 511;
}

static struct frame *table_frame(uint64_t entry)
{
    return frame_get((entry & PT_ADDR_MASK) >> PAGE_SHIFT);
}

uint64_t *ept_leaf(struct p2m *p, uint64_t gfn)
{
    uint64_t *t = mm_phys_to_virt(p->ept_root << PAGE_SHIFT);
    for (int l = 4; l > 1; l--) {
        uint64_t e = t[ept_index(gfn, l)];
        if (!(e & EPT_RWX))
            return NULL;
        t = frame_words(e);
    }
    return &t[ept_index(gfn, 1)];
}

/* The level-1 table of gfn, created with any table above it (charged
 * frames). NULL when a frame could not be had. */
static uint64_t *ept_table(struct p2m *p, uint64_t gfn, struct frame **tfp)
{
    uint64_t *t = mm_phys_to_virt(p->ept_root << PAGE_SHIFT);
    struct frame *tf = frame_get(p->ept_root);
    for (int l = 4; l > 1; l--) {
        uint64_t *e = &t[ept_index(gfn, l)];
        if (!(*e & EPT_RWX)) {
            /* Reclaim inside mm_meta_frame leaves busy_gfn's path alone,
             * and only the faulting page creates tables, so t stays
             * linked. */
            mfn_t m = mm_meta_frame(p, FS_PAGETABLE);
            if (m == MFN_INVALID)
                return NULL;
            frame_get(m)->refcount = 0;
            *e = (m << PAGE_SHIFT) | EPT_RWX;
            tf->refcount++;
            p->st.ept_tables++;
        }
        tf = table_frame(*e);
        t = frame_words(*e);
    }
    *tfp = tf;
    return t;
}

int ept_path(struct p2m *p, uint64_t gfn)
{
    struct frame *tf;
    return ept_table(p, gfn, &tf) ? 0 : -1;
}

void ept_set_slot(struct p2m *p, uint64_t *slot, struct frame *tf, mfn_t mfn, uint64_t perms)
{
    if (*slot & EPT_RWX)
        p->flush_pending = true; /* replacing a translation */
    else
        tf->refcount++;
    *slot = (mfn << PAGE_SHIFT) | perms | EPT_MT_WB;
}

int ept_set(struct p2m *p, uint64_t gfn, mfn_t mfn, uint64_t perms)
{
    struct frame *tf;
    uint64_t *t = ept_table(p, gfn, &tf);
    if (!t)
        return -1;
    ept_set_slot(p, &t[ept_index(gfn, 1)], tf, mfn, perms);
    return 0;
}

uint64_t *ept_slot(struct p2m *p, uint64_t gfn, struct frame **tf)
{
    uint64_t *t = mm_phys_to_virt(p->ept_root << PAGE_SHIFT), e = 0;
    for (int l = 4; l > 1; l--) {
        e = t[ept_index(gfn, l)];
        if (!(e & EPT_RWX))
            return NULL;
        t = frame_words(e);
    }
    *tf = table_frame(e);
    return &t[ept_index(gfn, 1)];
}

void ept_clear(struct p2m *p, uint64_t gfn)
{
    uint64_t *t = mm_phys_to_virt(p->ept_root << PAGE_SHIFT);
    struct frame *tf = NULL;
    for (int l = 4; l > 1; l--) {
        uint64_t e = t[ept_index(gfn, l)];
        if (!(e & EPT_RWX))
            return;
        tf = table_frame(e);
        t = frame_words(e);
    }
    uint64_t *e = &t[ept_index(gfn, 1)];
    if (*e & EPT_RWX) {
        *e = 0;
        MM_ASSERT(tf->refcount > 0);
        tf->refcount--;
        p->flush_pending = true;
    }
}

void ept_put(struct p2m *p, uint64_t gfn, uint64_t leaf)
{
    struct frame *tf;
    uint64_t *t = ept_table(p, gfn, &tf);
    MM_ASSERT(t); /* the table is still there: only trims free tables */
    uint64_t *e = &t[ept_index(gfn, 1)];
    if ((*e & EPT_RWX) && !(leaf & EPT_RWX))
        tf->refcount--;
    else if (!(*e & EPT_RWX) && (leaf & EPT_RWX))
        tf->refcount++;
    *e = leaf;
}

static void queue_free(struct p2m *p, uint64_t link)
{
    p->trim[p->ntrim++] = (link & PT_ADDR_MASK) >> PAGE_SHIFT;
    p->flush_pending = true;
}

/* Is the region of 2^shift GFNs around gfn the busy page's? */
static bool busy_region(const struct p2m *p, uint64_t gfn, unsigned shift)
{
    return p->busy_gfn != UINT64_MAX && (p->busy_gfn >> shift) == (gfn >> shift);
}

void p2m_trim(struct p2m *p, uint64_t gfn)
{
    if (gfn >= p->ngfn)
        return;
    /* EPT: empty tables from level 1 up, each unlinked from its parent. */
    uint64_t *path[4];
    uint64_t *t = mm_phys_to_virt(p->ept_root << PAGE_SHIFT);
    int depth = 0;
    for (int l = 4; l > 1; l--) {
        uint64_t *e = &t[ept_index(gfn, l)];
        if (!(*e & EPT_RWX))
            break;
        path[depth++] = e;
        t = frame_words(*e);
    }
    if (depth == 3) {
        for (int k = depth - 1; k >= 0; k--) {
            /* path[k] links a table of level 3 - k; it covers 2^(9 * (3 - k)) GFNs. */
            unsigned shift = 9u * (unsigned)(3 - k);
            if (table_frame(*path[k])->refcount || busy_region(p, gfn, shift))
                break;
            if (p->ntrim >= P2M_TRIM_MAX)
                p2m_flush(p); /* frees the queue: trimming never skips a table */
            queue_free(p, *path[k]);
            *path[k] = 0;
            p->st.ept_tables--;
            struct frame *parent = k ? table_frame(*path[k - 1]) : frame_get(p->ept_root);
            parent->refcount--;
        }
    }
    /* The map: an empty chunk, then an empty directory. Nobody holds an
     * entry pointer across a trim (callers trim at the end of their work;
     * the faulting page's chunk is never trimmed). */
    uint64_t *d = &p->map[gfn >> P2M_DIR_SHIFT];
    if (!*d || busy_region(p, gfn, P2M_CHUNK_SHIFT))
        return;
    uint64_t *c = &frame_words(*d)[dir_index(gfn)];
    if (*c && !table_frame(*c)->refcount) {
        meta_free(p, *c);
        *c = 0;
        table_frame(*d)->refcount--;
        p->st.map_chunks--;
    }
    if (!table_frame(*d)->refcount && !busy_region(p, gfn, P2M_DIR_SHIFT)) {
        meta_free(p, *d);
        *d = 0;
        p->st.map_dirs--;
    }
}

static void free_tables(struct p2m *p, uint64_t *t, int level)
{
    if (level == 1)
        return;
    for (int i = 0; i < 512; i++) {
        if (!(t[i] & EPT_RWX))
            continue;
        free_tables(p, frame_words(t[i]), level - 1);
        frame_free((t[i] & PT_ADDR_MASK) >> PAGE_SHIFT);
        p->meta--;
        t[i] = 0;
    }
}

void ept_destroy(struct p2m *p)
{
    free_tables(p, mm_phys_to_virt(p->ept_root << PAGE_SHIFT), 4);
    p->st.ept_tables = 0;
}

unsigned map_chunk_count(const struct p2m *p, uint64_t gfn)
{
    uint64_t c = frame_words(p->map[gfn >> P2M_DIR_SHIFT])[dir_index(gfn)];
    return frame_get((c & PT_ADDR_MASK) >> PAGE_SHIFT)->refcount;
}

static void census_tables(struct p2m *p, uint64_t *t, int level, uint64_t base,
                          struct map_census *mc)
{
    for (unsigned i = 0; i < 512; i++) {
        if (!(t[i] & EPT_RWX))
            continue;
        uint64_t gfn = base | ((uint64_t)i << (9 * (level - 1)));
        if (level == 1) {
            const struct p2m_entry *e = gfn < p->ngfn ? map_find(p, gfn) : NULL;
            if (!e || (e->state != P2M_RESIDENT && e->state != P2M_SHARED))
                mc->stray_leaves++;
            continue;
        }
        uint64_t *child = frame_words(t[i]);
        unsigned present = 0;
        for (unsigned j = 0; j < 512; j++)
            present += (child[j] & EPT_RWX) != 0;
        if (table_frame(t[i])->refcount != present)
            mc->bad_counts++;
        mc->tables++;
        census_tables(p, child, level - 1, gfn, mc);
    }
}

void map_census(struct p2m *p, struct map_census *mc)
{
    memset(mc, 0, sizeof(*mc));
    for (uint64_t i = 0; i < p->map_top; i++) {
        if (!p->map[i])
            continue;
        mc->dirs++;
        uint64_t *dir = frame_words(p->map[i]);
        unsigned present = 0;
        for (unsigned j = 0; j < P2M_DIR_CHUNKS; j++)
            present += dir[j] != 0;
        mc->chunks += present;
        if (table_frame(p->map[i])->refcount != present)
            mc->bad_counts++;
    }
    uint64_t *root = mm_phys_to_virt(p->ept_root << PAGE_SHIFT);
    unsigned present = 0;
    for (unsigned j = 0; j < 512; j++)
        present += (root[j] & EPT_RWX) != 0;
    if (frame_get(p->ept_root)->refcount != present)
        mc->bad_counts++;
    census_tables(p, root, 4, 0, mc);
}

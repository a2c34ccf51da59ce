/* The p2m transitions. The rule: EPT maps a GFN only when its p2m state is
 * RESIDENT (or SHARED, read-only), and always to the frame the p2m names;
 * a frame in FS_VM state belongs to exactly one (owner, gfn). */
#include "mm/p2m.h"
#include "lib/log.h"
#include "lib/string.h"
#include "mm/compress.h"
#include "mm/ept.h"
#include "mm/hash.h"
#include "mm/mm.h"
#include "mm/mm_backend.h"
#include "mm/share.h"
#include "mm/swap.h"
#include "mm/zpool.h"

static const char *const state_names[P2M_STATE_COUNT] = {
    [P2M_UNPOPULATED] = "unpopulated", [P2M_RESIDENT] = "resident",
    [P2M_SHARED] = "shared",           [P2M_FILLED] = "filled",
    [P2M_COMPRESSED] = "compressed",   [P2M_SWAPPED] = "swapped",
    [P2M_BALLOONED] = "ballooned",     [P2M_MMIO] = "mmio",
};
static const char *const fault_names[PF_KIND_COUNT] = {
    [PF_DEMAND_ZERO] = "demand-zero", [PF_REFILL] = "refill", [PF_DECOMPRESS] = "decompress",
    [PF_COW] = "copy-on-write",      [PF_SWAPIN] = "swap-in",
    [PF_SPURIOUS] = "spurious",       [PF_OUTSIDE] = "outside-ram",
    [PF_MMIO] = "mmio",
};

static struct {
    unsigned max_len; /* largest compressed size the pool stores */
    bool checksum;    /* entries carry an XXH32 of the page */
} pool = { 2048, false };

void p2m_set_pool_params(unsigned max_len, bool checksum)
{
    pool.max_len = max_len < 64 ? 64 : max_len > ZP_MAX_DATA ? ZP_MAX_DATA : max_len;
    pool.checksum = checksum;
}

unsigned p2m_pool_max_len(void)
{
    return pool.max_len;
}

const char *p2m_state_name(enum p2m_state s)
{
    return (unsigned)s < P2M_STATE_COUNT ? state_names[s] : "?";
}

const char *p2m_fault_name(enum p2m_fault_kind k)
{
    return (unsigned)k < PF_KIND_COUNT ? fault_names[k] : "?";
}

const struct pt_fmt pt_fmt_ept = {
    .name = "EPT",
    .present = EPT_RWX,
    .large = EPT_LARGE,
    .table_flags = EPT_RWX,
    .max_leaf_level = PT_LEVEL_2M,
};

int p2m_init(struct p2m *p, uint16_t owner, const char *name, uint64_t ngfn,
             uint64_t reserve, uint64_t limit, bool ad)
{
    memset(p, 0, sizeof(*p));
    p->owner = owner;
    for (int i = 0; i < 15 && name[i]; i++)
        p->name[i] = name[i];
    p->ngfn = ngfn;
    p->reserve = reserve < ngfn ? reserve : ngfn;
    p->limit = limit && limit < ngfn ? limit : ngfn;
    p->ad = ad;
    p->compress = true; /* takes effect when the pool is on */
    p->share = true;    /* takes effect when the scanner is on */
    p->salt = 0x5a17000000000000ULL | owner; /* its own: intra-VM sharing only */
    p->map_frames = (ngfn * sizeof(struct p2m_entry) + PAGE_SIZE - 1) >> PAGE_SHIFT;
    p->map_first = frame_alloc_contig(p->map_frames, 1, FS_HV, 0);
    if (p->map_first == MFN_INVALID)
        return -1;
    p->map = mm_phys_to_virt(p->map_first << PAGE_SHIFT); /* zeroed: all unpopulated */
    p->ept_root = frame_alloc(FS_PAGETABLE, 0);
    if (p->ept_root == MFN_INVALID) {
        frame_free_contig(p->map_first, p->map_frames);
        return -1;
    }
    p->eptp = (p->ept_root << PAGE_SHIFT) | EPTP_WB | EPTP_WALK4 | (ad ? EPTP_AD : 0);
    p->count[P2M_UNPOPULATED] = ngfn;
    p->busy_gfn = UINT64_MAX;
    return 0;
}

void p2m_flush(struct p2m *p)
{
    if (!p->flush_pending)
        return;
    mm_invept(p->eptp);
    p->flush_pending = false;
    p->st.invept++;
}

static void set_state(struct p2m *p, struct p2m_entry *e, enum p2m_state s, uint64_t payload)
{
    if (e->flags & P2M_F_INCOMPRESSIBLE) {
        /* The flag describes resident content only. */
        e->flags &= (uint8_t)~P2M_F_INCOMPRESSIBLE;
        p->st.incompressible_now--;
    }
    if (e->flags & P2M_F_HASHED) {
        e->flags &= (uint8_t)~P2M_F_HASHED;
        e->aux = 0;
    }
    if (e->flags & P2M_F_SWAPCACHE) {
        /* The swap copy survives only as the page's new home (a clean page
         * dropped); any other transition frees it. */
        if (s != P2M_SWAPPED || SWAP_LOC_SLOT(payload) != e->aux)
            swap_free(SWAP_LOC(e->aux, PAGE_SIZE, 0));
        e->flags &= (uint8_t)~P2M_F_SWAPCACHE;
        e->aux = 0;
        p->swap_cached--;
    }
    p->count[e->state]--;
    p->count[s]++;
    e->state = (uint8_t)s;
    e->payload = payload;
}

/* Frees every EPT table below t, a table of the given level (4 = PML4).
 * Level-1 tables hold leaves only: the frames they map belong to the p2m
 * states and are freed through them. */
static void free_subtables(uint64_t *t, int level)
{
    if (level == 1)
        return;
    for (int i = 0; i < 512; i++) {
        if (!(t[i] & EPT_RWX) || (t[i] & EPT_LARGE))
            continue;
        uint64_t child = t[i] & PT_ADDR_MASK;
        free_subtables(mm_phys_to_virt(child), level - 1);
        frame_free(child >> PAGE_SHIFT);
    }
}

/* One mapping of shared frame m goes away; the last one frees it. */
static void drop_shared_ref(struct p2m *p, mfn_t m)
{
    struct frame *f = frame_get(m);
    MM_ASSERT(f->state == FS_SHARED && f->refcount > 0);
    f->refcount--;
    share_charge(p, m, -1);
    if (f->refcount == 0) {
        share_forget(m, share_hash(mm_phys_to_virt(m << PAGE_SHIFT), p->salt), p->salt);
        frame_free(m);
    }
}

void p2m_destroy(struct p2m *p)
{
    if (!p->map)
        return;
    for (uint64_t gfn = 0; gfn < p->ngfn; gfn++) {
        struct p2m_entry *e = &p->map[gfn];
        if (e->state == P2M_RESIDENT) {
            frame_free(e->payload);
            set_state(p, e, P2M_UNPOPULATED, 0);
        } else if (e->state == P2M_COMPRESSED && (e->flags & P2M_F_SHARED_OBJ)) {
            share_zobj_put((uint32_t)e->payload);
            e->flags &= (uint8_t)~P2M_F_SHARED_OBJ;
            p->shared_obj--;
            set_state(p, e, P2M_UNPOPULATED, 0);
        } else if (e->state == P2M_COMPRESSED) {
            zpool_free(e->payload);
            p->st.pool_bytes -= e->aux;
            set_state(p, e, P2M_UNPOPULATED, 0);
        } else if (e->state == P2M_SHARED) {
            drop_shared_ref(p, e->payload);
            set_state(p, e, P2M_UNPOPULATED, 0);
        } else if (e->state == P2M_SWAPPED) {
            swap_free(e->payload);
            set_state(p, e, P2M_UNPOPULATED, 0);
        }
    }
    free_subtables(mm_phys_to_virt(p->ept_root << PAGE_SHIFT), 4);
    frame_free(p->ept_root);
    frame_free_contig(p->map_first, p->map_frames);
    p->map = NULL;
    p->flush_pending = true;
    p2m_flush(p);
}

static int ept_set(struct p2m *p, uint64_t gfn, mfn_t mfn, uint64_t perms)
{
    uint64_t *e = pt_entry(&pt_fmt_ept, p->ept_root, gfn << PAGE_SHIFT, PT_LEVEL_4K, true);
    if (!e)
        return -1;
    if (*e & EPT_RWX)
        p->flush_pending = true; /* replacing a translation */
    *e = (mfn << PAGE_SHIFT) | perms | EPT_MT_WB;
    return 0;
}

static void ept_clear(struct p2m *p, uint64_t gfn)
{
    uint64_t *e = pt_entry(&pt_fmt_ept, p->ept_root, gfn << PAGE_SHIFT, PT_LEVEL_4K, false);
    if (e && (*e & EPT_RWX)) {
        *e = 0;
        p->flush_pending = true;
    }
}

static uint64_t *ept_leaf(struct p2m *p, uint64_t gfn)
{
    return pt_entry(&pt_fmt_ept, p->ept_root, gfn << PAGE_SHIFT, PT_LEVEL_4K, false);
}

/* Decodes gfn's pool object into dst (one page). Returns NULL, or what is
 * wrong with the stored copy. The object stays in the pool. */
static const char *decompress_into(struct p2m *p, uint64_t gfn, const struct p2m_entry *e,
                                   void *dst)
{
    static uint8_t buf[ZP_MAX_DATA];
    uint32_t check;
    if (zpool_load(e->payload, p->owner, gfn, e->aux, buf, &check))
        return "pool header does not match the page";
    uint64_t t0 = mm_now();
    int bad = cmp_decompress_page(buf, (int)e->aux, dst);
    p->st.dc_lz4_cycles += mm_now() - t0;
    if (bad)
        return "LZ4 data does not decode to one page";
    if (pool.checksum) {
        t0 = mm_now();
        bool bad_sum = hash32(dst, PAGE_SIZE, 0) != check;
        p->st.dc_check_cycles += mm_now() - t0;
        if (bad_sum)
            return "checksum mismatch";
    }
    return NULL;
}

static void report_corrupt(struct p2m *p, uint64_t gfn, const char *why)
{
    p->st.corrupt++;
    pr_err(LS_MM, "vm %s: compressed copy of gfn %#llx is corrupt (%s, %u bytes, handle "
                  "%#llx); the VM must stop: its data cannot be recovered",
           p->name, (unsigned long long)gfn, why, p->map[gfn].aux,
           (unsigned long long)p->map[gfn].payload);
}

static uint64_t last_alloc_cycles; /* mm_frame_for inside the last make_resident */

/* Gives gfn a frame holding its current content and maps it. */
static enum p2m_result make_resident(struct p2m *p, uint64_t gfn)
{
    struct p2m_entry *e = &p->map[gfn];
    uint64_t t0 = mm_now();
    mfn_t m = mm_frame_for(p);
    last_alloc_cycles = mm_now() - t0;
    if (m == MFN_INVALID)
        return P2M_WAIT;
    /* Read e only now: reclaim inside mm_frame_for may have compacted the
     * pool and moved this page's object. */
    if (e->state == P2M_FILLED && e->payload) {
        uint64_t *w = mm_phys_to_virt(m << PAGE_SHIFT);
        for (int i = 0; i < 512; i++)
            w[i] = e->payload;
    } else if (e->state == P2M_COMPRESSED) {
        const char *why = decompress_into(p, gfn, e, mm_phys_to_virt(m << PAGE_SHIFT));
        if (why) {
            report_corrupt(p, gfn, why);
            frame_free(m);
            return P2M_CORRUPT;
        }
    }
    if (ept_set(p, gfn, m, EPT_RWX)) {
        frame_free(m);
        return P2M_WAIT; /* no frame for an EPT table: wait like any other */
    }
    if (e->state == P2M_COMPRESSED) {
        zpool_free(e->payload);
        p->st.pool_bytes -= e->aux;
        e->aux = 0;
    }
    struct frame *f = frame_get(m);
    f->gfn = gfn;
    set_state(p, e, P2M_RESIDENT, m);
    e->age = 0;
    if (p->count[P2M_RESIDENT] > p->st.peak_resident)
        p->st.peak_resident = p->count[P2M_RESIDENT];
    return P2M_OK;
}

static enum p2m_result fault(struct p2m *p, uint64_t gpa, unsigned access);

/* Decodes shared object z (share.c) into frame m; NULL or what is wrong. */
static const char *decode_object(uint32_t idx, const struct share_zobj *z, mfn_t m)
{
    static uint8_t buf[ZP_MAX_DATA];
    uint32_t check;
    unsigned len = (unsigned)(z->handle >> 48);
    void *page = mm_phys_to_virt(m << PAGE_SHIFT);
    if (zpool_load(z->handle, 0, idx, len, buf, &check))
        return "pool header does not match the shared object";
    if (cmp_decompress_page(buf, (int)len, page))
        return "LZ4 data does not decode to one page";
    if (share_hash(page, z->salt) != z->hash)
        return "content does not match the shared frame's hash";
    return NULL;
}

/* A GFN whose shared frame was reclaimed as a whole: join the frame the
 * object was decoded into, or decode it (once) into a new shared frame. */
static enum p2m_result shared_object_fault(struct p2m *p, uint64_t gfn, struct p2m_entry *e)
{
    uint32_t idx = (uint32_t)e->payload;
    struct share_zobj z;
    MM_ASSERT(share_zobj_get(idx, &z));
    mfn_t m = z.mfn;
    bool fresh = m == MFN_INVALID;
    if (!fresh && !mm_charge_room(p))
        return P2M_WAIT; /* joining adds to its charge */
    if (fresh) {
        m = mm_frame_for(p);
        if (m == MFN_INVALID)
            return P2M_WAIT;
        /* Read the object again: compaction inside mm_frame_for's reclaim
         * may have moved it. */
        MM_ASSERT(share_zobj_get(idx, &z));
        const char *why = decode_object(idx, &z, m);
        if (why) {
            frame_free(m);
            p->st.corrupt++;
            pr_err(LS_MM, "vm %s: shared compressed copy of gfn %#llx (object %u) is corrupt "
                          "(%s); the VM must stop: its data cannot be recovered",
                   p->name, (unsigned long long)gfn, idx, why);
            return P2M_CORRUPT;
        }
        frame_retype(m, FS_SHARED, 0);
        frame_get(m)->refcount = 0;
        frame_get(m)->gfn = 0;
        if (!share_zobj_adopt(idx, m)) {
            /* No room to share it: this GFN keeps the copy privately. */
            frame_retype(m, FS_VM, p->owner);
            frame_get(m)->refcount = 1;
            frame_get(m)->gfn = gfn;
            ept_set(p, gfn, m, EPT_RWX); /* the table survived the unmap */
            e->flags &= (uint8_t)~P2M_F_SHARED_OBJ;
            p->shared_obj--;
            set_state(p, e, P2M_RESIDENT, m);
            share_zobj_put(idx);
            p->st.faults[PF_DECOMPRESS]++;
            return P2M_OK;
        }
    }
    ept_set(p, gfn, m, EPT_R | EPT_X); /* the table survived the unmap */
    frame_get(m)->refcount++;
    share_charge(p, m, +1);
    e->flags &= (uint8_t)~P2M_F_SHARED_OBJ;
    p->shared_obj--;
    set_state(p, e, P2M_SHARED, m);
    share_zobj_put(idx);
    p->st.faults[PF_DECOMPRESS]++;
    return P2M_OK;
}

/* An EPT violation on a shared page. Reads and fetches are allowed by the
 * read-only mapping, so they mean a stale translation. A write gets a
 * private copy, or the frame itself when this is its last mapping; either
 * way the page becomes RESIDENT and counts against the VM's limit. */
static enum p2m_result cow(struct p2m *p, uint64_t gfn, struct p2m_entry *e, unsigned access)
{
    mfn_t s = e->payload;
    struct frame *f = frame_get(s);
    if (!(access & P2M_ACCESS_W)) {
        if (ept_set(p, gfn, s, EPT_R | EPT_X))
            return P2M_WAIT;
        p->flush_pending = true;
        p2m_flush(p);
        p->st.faults[PF_SPURIOUS]++;
        return P2M_OK;
    }
    if (f->refcount == 1) {
        if (!mm_resident_room(p))
            return P2M_WAIT;
        /* Its whole charge moves from shared to private: unchanged. */
        f->refcount = 0;
        share_charge(p, s, -1);
        share_forget(s, share_hash(mm_phys_to_virt(s << PAGE_SHIFT), p->salt), p->salt);
        f->refcount = 1;
        frame_retype(s, FS_VM, p->owner);
        f->gfn = gfn;
        ept_set(p, gfn, s, EPT_RWX); /* the leaf exists: no allocation */
        set_state(p, e, P2M_RESIDENT, s);
        p->st.cow_last++;
    } else {
        mfn_t m = mm_frame_for(p);
        if (m == MFN_INVALID)
            return P2M_WAIT;
        memcpy(mm_phys_to_virt(m << PAGE_SHIFT), mm_phys_to_virt(s << PAGE_SHIFT), PAGE_SIZE);
        if (ept_set(p, gfn, m, EPT_RWX)) {
            frame_free(m);
            return P2M_WAIT;
        }
        frame_get(m)->gfn = gfn;
        f->refcount--;
        share_charge(p, s, -1);
        set_state(p, e, P2M_RESIDENT, m);
        p->st.cow_copies++;
    }
    p2m_flush(p); /* the read-only translation must go before the guest retries */
    e->age = 0;
    p->st.faults[PF_COW]++;
    if (p->count[P2M_RESIDENT] > p->st.peak_resident)
        p->st.peak_resident = p->count[P2M_RESIDENT];
    return P2M_OK;
}

/* A write to a swap-cached page (or the hypervisor taking a pointer to
 * it): the copy on the device is stale from now on. Frees it and gives
 * write permission back in place (adding a permission needs no flush). */
static void drop_swap_copy(struct p2m *p, uint64_t gfn, struct p2m_entry *e)
{
    if (!(e->flags & P2M_F_SWAPCACHE))
        return;
    swap_free(SWAP_LOC(e->aux, PAGE_SIZE, 0));
    e->flags &= (uint8_t)~P2M_F_SWAPCACHE;
    e->aux = 0;
    p->swap_cached--;
    p->st.swap_cache_freed++;
    uint64_t *l = ept_leaf(p, gfn);
    if (l && (*l & PT_ADDR_MASK) == e->payload << PAGE_SHIFT)
        *l |= EPT_W;
    else
        ept_set(p, gfn, e->payload, EPT_RWX);
}

/* Brings a swapped page back: a frame, one read, the check against the
 * value kept in the p2m, LZ4 for a pool object. A whole page read for a
 * read or fetch keeps its swap copy (mapped read-only, P2M_F_SWAPCACHE),
 * so that reclaim can drop it again without a write while it stays clean.
 * A read error or a check mismatch stops the VM: its data cannot be
 * invented and wrong data is never mapped. */
static enum p2m_result swap_in(struct p2m *p, uint64_t gfn, unsigned access)
{
    struct p2m_entry *e = &p->map[gfn];
    uint64_t t0 = mm_now();
    mfn_t m = mm_frame_for(p);
    uint64_t t1 = mm_now();
    last_alloc_cycles = t1 - t0;
    if (m == MFN_INVALID)
        return P2M_WAIT;
    uint64_t loc = e->payload;
    unsigned len = SWAP_LOC_LEN(loc);
    void *page = mm_phys_to_virt(m << PAGE_SHIFT);
    const void *data = swap_read(loc, page);
    uint64_t t2 = mm_now();
    const char *why = NULL;
    if (!data) {
        why = "the swap device reported a read error";
        p->st.swap_read_errors++;
    } else if (swap_check(data, len, p->owner, gfn) != e->aux) {
        why = "the data read back does not match its check value";
        swap_note_check_error();
        p->st.swap_corrupt++;
    } else if (SWAP_LOC_LZ4(loc) && cmp_decompress_page(data, (int)len, page)) {
        why = "LZ4 data read back does not decode to one page";
        p->st.swap_corrupt++;
    }
    if (why) {
        frame_free(m);
        pr_err(LS_MM, "vm %s: swapped page gfn %#llx (slot %llu, %u bytes%s) cannot be read "
                      "back: %s; the VM must stop: its data cannot be recovered",
               p->name, (unsigned long long)gfn, (unsigned long long)SWAP_LOC_SLOT(loc), len,
               SWAP_LOC_LZ4(loc) ? ", LZ4" : "", why);
        return P2M_CORRUPT;
    }
    bool keep = !SWAP_LOC_LZ4(loc) && !(access & P2M_ACCESS_W) &&
                SWAP_LOC_SLOT(loc) <= UINT32_MAX;
    if (ept_set(p, gfn, m, keep ? EPT_R | EPT_X : EPT_RWX)) {
        frame_free(m);
        return P2M_WAIT;
    }
    frame_get(m)->gfn = gfn;
    if (!keep)
        swap_free(loc);
    set_state(p, e, P2M_RESIDENT, m);
    if (keep) {
        e->flags |= P2M_F_SWAPCACHE;
        e->aux = (uint32_t)SWAP_LOC_SLOT(loc);
        p->swap_cached++;
    }
    e->age = 0;
    if (p->count[P2M_RESIDENT] > p->st.peak_resident)
        p->st.peak_resident = p->count[P2M_RESIDENT];
    p->st.faults[PF_SWAPIN]++;
    p->st.si_cycles += mm_now() - t1;
    p->st.si_io_cycles += t2 - t1;
    p->st.si_alloc_cycles += t1 - t0;
    return P2M_OK;
}

enum p2m_result p2m_fault(struct p2m *p, uint64_t gpa, unsigned access)
{
    uint64_t t0 = mm_now();
    /* The frame this fault asks for may come from reclaim, which must not
     * write this page's own pool object back to swap (or reclaim its
     * shared frame) under the fault's feet. */
    p->busy_gfn = gpa >> PAGE_SHIFT;
    enum p2m_result r = fault(p, gpa, access);
    p->busy_gfn = UINT64_MAX;
    p->st.fault_cycles += mm_now() - t0;
    return r;
}

static enum p2m_result fault(struct p2m *p, uint64_t gpa, unsigned access)
{
    uint64_t gfn = gpa >> PAGE_SHIFT;
    if (gfn >= p->ngfn) {
        p->st.faults[PF_OUTSIDE]++;
        return P2M_FAIL;
    }
    struct p2m_entry *e = &p->map[gfn];
    switch (e->state) {
    case P2M_UNPOPULATED: {
        uint64_t t0 = mm_now(), z0 = frame_zero_cycles();
        enum p2m_result r = make_resident(p, gfn);
        if (r == P2M_OK) {
            p->st.faults[PF_DEMAND_ZERO]++;
            p->st.dz_zero_cycles += frame_zero_cycles() - z0;
            p->st.dz_cycles += mm_now() - t0;
        }
        return r;
    }
    case P2M_FILLED:
    case P2M_BALLOONED: {
        bool ballooned = e->state == P2M_BALLOONED;
        enum p2m_result r = make_resident(p, gfn);
        if (r == P2M_OK) {
            p->st.faults[PF_REFILL]++;
            p->st.balloon_touched += ballooned; /* the guest broke its promise */
        }
        return r;
    }
    case P2M_RESIDENT: {
        if ((e->flags & P2M_F_SWAPCACHE) && (access & P2M_ACCESS_W)) {
            drop_swap_copy(p, gfn, e); /* the first write after a swap-in */
            return P2M_OK;
        }
        /* Mapped already: the CPU used a stale translation. Make sure the
         * leaf is right and flush. */
        uint64_t perms = e->flags & P2M_F_SWAPCACHE ? EPT_R | EPT_X : EPT_RWX;
        uint64_t *l = ept_leaf(p, gfn);
        if (!l || (*l & PT_ADDR_MASK) != e->payload << PAGE_SHIFT || (*l & EPT_RWX) != perms) {
            if (ept_set(p, gfn, e->payload, perms))
                return P2M_WAIT;
        }
        p->flush_pending = true;
        p2m_flush(p);
        p->st.faults[PF_SPURIOUS]++;
        return P2M_OK;
    }
    case P2M_COMPRESSED: {
        if (e->flags & P2M_F_SHARED_OBJ)
            return shared_object_fault(p, gfn, e);
        uint64_t t0 = mm_now();
        enum p2m_result r = make_resident(p, gfn);
        if (r == P2M_OK) {
            p->st.faults[PF_DECOMPRESS]++;
            p->st.dc_cycles += mm_now() - t0 - last_alloc_cycles;
            p->st.dc_alloc_cycles += last_alloc_cycles;
        }
        return r;
    }
    case P2M_SHARED:
        return cow(p, gfn, e, access);
    case P2M_SWAPPED:
        return swap_in(p, gfn, access);
    case P2M_MMIO:
        p->st.faults[PF_MMIO]++;
        return P2M_FAIL;
    default:
        mm_panic(__FILE__, __LINE__, "p2m state without a fault handler");
    }
}

static void *gfn_ptr(struct p2m *p, uint64_t gfn, bool populate);

void *p2m_gfn_ptr(struct p2m *p, uint64_t gfn, bool populate)
{
    p->busy_gfn = gfn; /* as in p2m_fault */
    void *ptr = gfn_ptr(p, gfn, populate);
    p->busy_gfn = UINT64_MAX;
    return ptr;
}

static void *gfn_ptr(struct p2m *p, uint64_t gfn, bool populate)
{
    if (gfn >= p->ngfn)
        return NULL;
    struct p2m_entry *e = &p->map[gfn];
    if (e->state == P2M_COMPRESSED && (e->flags & P2M_F_SHARED_OBJ) && populate &&
        shared_object_fault(p, gfn, e) != P2M_OK)
        return NULL;
    if (e->state == P2M_SHARED && populate) {
        /* The hypervisor may write through the pointer: break the share. */
        if (cow(p, gfn, e, P2M_ACCESS_W) != P2M_OK)
            return NULL;
    }
    if (e->state == P2M_SWAPPED && populate && swap_in(p, gfn, P2M_ACCESS_W) != P2M_OK)
        return NULL;
    if (e->state == P2M_RESIDENT)
        drop_swap_copy(p, gfn, e); /* it may be written through the pointer */
    if (e->state != P2M_RESIDENT) {
        if (!populate || (e->state != P2M_UNPOPULATED && e->state != P2M_FILLED &&
                          e->state != P2M_COMPRESSED))
            return NULL;
        if (make_resident(p, gfn) != P2M_OK)
            return NULL;
    }
    return mm_phys_to_virt(e->payload << PAGE_SHIFT);
}

/* Is every 64-bit word of the page equal (to *v)? Most pages that are not
 * same-filled show it early: test a chunk at a time and stop at the first
 * difference. */
static bool page_filled(mfn_t m, uint64_t *v)
{
    const uint64_t *w = mm_phys_to_virt(m << PAGE_SHIFT);
    uint64_t x = w[0];
    for (int i = 0; i < 512; i += 8)
        if ((w[i] ^ x) | (w[i + 1] ^ x) | (w[i + 2] ^ x) | (w[i + 3] ^ x) | (w[i + 4] ^ x) |
            (w[i + 5] ^ x) | (w[i + 6] ^ x) | (w[i + 7] ^ x))
            return false;
    *v = x;
    return true;
}

enum compress_outcome { CO_STORED, CO_INCOMPRESSIBLE, CO_REFUSED };

/* Compresses the unmapped resident page gfn into the pool and frees its
 * frame; on failure the page stays resident (the caller maps it again). */
static enum compress_outcome compress_one(struct p2m *p, uint64_t gfn, struct p2m_entry *e)
{
    static uint8_t buf[ZP_MAX_DATA];
    const void *page = mm_phys_to_virt(e->payload << PAGE_SHIFT);
    uint64_t t0 = mm_now();
    int len = cmp_compress_page(page, buf, (int)pool.max_len);
    p->st.cmp_cycles += mm_now() - t0;
    if (len <= 0) {
        e->flags |= P2M_F_INCOMPRESSIBLE;
        p->st.incompressible++;
        p->st.incompressible_now++;
        return CO_INCOMPRESSIBLE;
    }
    uint32_t check = pool.checksum ? hash32(page, PAGE_SIZE, 0) : 0;
    uint64_t h;
    enum zpool_store_result r = zpool_store(buf, (unsigned)len, p->owner, gfn, check, &h);
    if (r == ZP_FULL && zpool_wasted_frames()) {
        zpool_compact(MM_COMPACT_MOVES);
        r = zpool_store(buf, (unsigned)len, p->owner, gfn, check, &h);
    }
    if (r != ZP_STORED) {
        p->st.pool_refused++;
        return CO_REFUSED;
    }
    frame_free(e->payload);
    set_state(p, e, P2M_COMPRESSED, h);
    e->aux = (uint32_t)len;
    e->age = 0; /* swap write-back takes entries the hand meets again */
    p->st.compressed++;
    p->st.pool_bytes += (uint64_t)len;
    return CO_STORED;
}

#define WRITEBACK_BATCH 32 /* pool objects written back to swap per batch */

/* Unmapped, flushed pages of gfns[0..n) go to swap as whole pages, one
 * write per staging area. A page whose write fails is mapped again (it
 * stays resident; swap backs off and reclaim tries it later). Returns the
 * frames freed. */
static uint64_t swap_out_pages(struct p2m *p, const uint64_t *gfns, unsigned n)
{
    uint64_t freed = 0, loc[SWAP_STAGE_OBJECTS];
    uint32_t check[SWAP_STAGE_OBJECTS];
    for (unsigned i = 0; i < n;) {
        unsigned k = 0;
        if (swap_can_write()) {
            while (i + k < n && k < SWAP_STAGE_OBJECTS) {
                const void *page = mm_phys_to_virt(p->map[gfns[i + k]].payload << PAGE_SHIFT);
                if (!swap_stage(page, PAGE_SIZE, false))
                    break;
                check[k] = swap_check(page, PAGE_SIZE, p->owner, gfns[i + k]);
                k++;
            }
        }
        unsigned done = 0;
        enum swap_result r = k ? swap_commit(loc, &done) : SWAP_OFF;
        for (unsigned j = 0; j < done; j++, i++) {
            struct p2m_entry *e = &p->map[gfns[i]];
            frame_free(e->payload);
            set_state(p, e, P2M_SWAPPED, loc[j]);
            e->aux = check[j];
            p->st.swap_out++;
            freed++;
        }
        if (r != SWAP_OK) {
            /* Full, or the write failed: the rest stays resident. */
            for (; i < n; i++) {
                ept_set(p, gfns[i], p->map[gfns[i]].payload, EPT_RWX);
                if (r == SWAP_EIO)
                    p->st.swap_kept++;
            }
            break;
        }
    }
    return freed;
}

/* The pool's coldest objects (gfns[0..n), compressed) are written back to
 * swap as they are, LZ4 bytes and all, and leave the pool. On an error
 * they stay in the pool. */
static void swap_out_objects(struct p2m *p, const uint64_t *gfns, unsigned n)
{
    static uint8_t buf[ZP_MAX_DATA];
    uint64_t loc[SWAP_STAGE_OBJECTS], which[SWAP_STAGE_OBJECTS];
    uint32_t check[SWAP_STAGE_OBJECTS];
    unsigned k = 0;
    if (!swap_can_write())
        return; /* the page writes of this batch just failed or filled it */
    for (unsigned i = 0; i < n && k < SWAP_STAGE_OBJECTS; i++) {
        struct p2m_entry *e = &p->map[gfns[i]];
        uint32_t sum;
        /* A damaged object is left for its fault to report. */
        if (zpool_load(e->payload, p->owner, gfns[i], e->aux, buf, &sum))
            continue;
        if (!swap_stage(buf, e->aux, true))
            break;
        check[k] = swap_check(buf, e->aux, p->owner, gfns[i]);
        which[k++] = gfns[i];
    }
    unsigned done = 0;
    if (k)
        swap_commit(loc, &done);
    for (unsigned j = 0; j < done; j++) {
        struct p2m_entry *e = &p->map[which[j]];
        zpool_free(e->payload);
        p->st.pool_bytes -= e->aux;
        set_state(p, e, P2M_SWAPPED, loc[j]);
        e->aux = check[j];
        p->st.swap_out_lz4++;
    }
}

/* Is the pool nearly full (or did it just refuse a page), so that its
 * coldest entries should make room by going to swap? */
static bool pool_pressed(bool pool_room)
{
    if (!zpool_enabled())
        return false;
    if (!pool_room)
        return true;
    struct zpool_stats z;
    zpool_get_stats(&z);
    return z.frames * 16 >= z.cap_frames * 15;
}

/* One batch of p2m_reclaim: picks up to MM_RECLAIM_BATCH candidates from
 * the clock hand (at most *budget GFNs visited), unmaps them, flushes once,
 * then sends each down the chain: same-filled -> value; clean swap copy ->
 * dropped; compressible -> pool; otherwise -> swap. Compressed entries the
 * hand meets a second time are the pool's coldest: under pool pressure
 * they are written back to swap. Returns frames freed. */
static uint64_t reclaim_batch(struct p2m *p, uint64_t *budget, bool *pool_room)
{
    uint64_t cand[MM_RECLAIM_BATCH], out[MM_RECLAIM_BATCH], wb[WRITEBACK_BATCH];
    unsigned n = 0, nout = 0, nwb = 0;
    bool compress = *pool_room;
    bool swap = swap_can_write();
    /* Never past a full turn in one batch: a GFN must not be a candidate
     * twice. */
    for (uint64_t visited = 0; *budget && n < MM_RECLAIM_BATCH && visited < p->ngfn; visited++) {
        (*budget)--;
        uint64_t gfn = p->hand;
        p->hand = p->hand + 1 < p->ngfn ? p->hand + 1 : 0;
        struct p2m_entry *e = &p->map[gfn];
        if (e->state == P2M_COMPRESSED && !(e->flags & P2M_F_SHARED_OBJ)) {
            if (swap && e->age >= 1 && nwb < WRITEBACK_BATCH && gfn != p->busy_gfn)
                wb[nwb++] = gfn; /* written back below if the pool is pressed */
            else if (e->age < 0xffff)
                e->age++; /* the hand passed it once more, untouched */
            continue;
        }
        if (e->state != P2M_RESIDENT)
            continue;
        p->st.scanned++;
        uint64_t v;
        if (!page_filled(e->payload, &v)) {
            /* Not free to drop: only cold pages are worth compressing or
             * swapping, and a clean swap copy can always be dropped. */
            if (!compress && !swap && !(e->flags & P2M_F_SWAPCACHE))
                continue;
            uint64_t *l = ept_leaf(p, gfn);
            if (e->flags & P2M_F_INCOMPRESSIBLE) {
                if (l && (*l & EPT_D)) {
                    e->flags &= (uint8_t)~P2M_F_INCOMPRESSIBLE; /* written: try LZ4 again */
                    p->st.incompressible_now--;
                } else if (!swap) {
                    continue; /* unchanged since LZ4 gave up on it: only swap takes it */
                }
            }
            if (p->ad && l && (*l & EPT_A)) {
                *l &= ~EPT_A; /* second chance; flushed below with the unmaps */
                p->flush_pending = true;
                p->st.cold_skipped++;
                continue;
            }
        }
        /* Unmap first: once the flush below is done no vCPU can write it. */
        ept_clear(p, gfn);
        cand[n++] = gfn;
    }
    p2m_flush(p);
    uint64_t freed = 0;
    for (unsigned i = 0; i < n; i++) {
        struct p2m_entry *e = &p->map[cand[i]];
        uint64_t v;
        /* Decide on the content as it is after the flush: a write between
         * the first look and the unmap (another CPU, later) counts. */
        if (page_filled(e->payload, &v)) {
            frame_free(e->payload);
            set_state(p, e, v ? P2M_FILLED : P2M_UNPOPULATED, v);
            if (v)
                p->st.filled++;
            else
                p->st.zero_reclaimed++;
            freed++;
            continue;
        }
        if (e->flags & P2M_F_SWAPCACHE) {
            /* Clean since it came back: the copy on swap is still its
             * content. No write. */
            const void *page = mm_phys_to_virt(e->payload << PAGE_SHIFT);
            uint32_t check = swap_check(page, PAGE_SIZE, p->owner, cand[i]);
            frame_free(e->payload);
            set_state(p, e, P2M_SWAPPED, SWAP_LOC(e->aux, PAGE_SIZE, 0));
            e->aux = check;
            p->st.swap_dropped++;
            freed++;
            continue;
        }
        if (*pool_room && !(e->flags & P2M_F_INCOMPRESSIBLE)) {
            enum compress_outcome o = compress_one(p, cand[i], e);
            if (o == CO_STORED) {
                freed++;
                continue;
            }
            if (o == CO_REFUSED)
                *pool_room = false; /* full: the rest goes to swap or stays */
        }
        if (swap) {
            out[nout++] = cand[i];
            continue;
        }
        ept_set(p, cand[i], e->payload, EPT_RWX);
    }
    if (nout)
        freed += swap_out_pages(p, out, nout);
    /* A refusal in this batch, or a pool nearly at its cap: make room. */
    if (nwb && pool_pressed(*pool_room))
        swap_out_objects(p, wb, nwb);
    return freed;
}

uint64_t p2m_reclaim(struct p2m *p, uint64_t want, uint64_t max_scan)
{
    if (!p->count[P2M_RESIDENT] || !p->map)
        return 0;
    p->st.reclaim_scans++;
    bool pool_room = p->compress && zpool_enabled();
    /* A full turn of the clock at most, plus one more so that pages given
     * a second chance at the start can be taken at the end. */
    uint64_t budget = max_scan < 2 * p->ngfn ? max_scan : 2 * p->ngfn, freed = 0;
    /* Batches until enough is freed: a batch can free nothing (every
     * candidate incompressible) while the clock has more to offer. */
    while (freed < want && budget)
        freed += reclaim_batch(p, &budget, &pool_room);
    return freed;
}

/* Checks a balloon batch: every GFN in RAM, not MMIO, in (deflate) or not
 * in (inflate) the BALLOONED state, none twice (a transient mark). */
static int balloon_check(struct p2m *p, const uint64_t *gfns, unsigned n, bool inflate,
                         unsigned *bad)
{
    unsigned i = 0;
    for (; i < n; i++) {
        uint64_t g = gfns[i];
        if (g >= p->ngfn)
            break;
        struct p2m_entry *e = &p->map[g];
        if (e->state == P2M_MMIO || (e->state == P2M_BALLOONED) != !inflate ||
            (e->flags & P2M_F_MARK))
            break;
        e->flags |= P2M_F_MARK;
    }
    for (unsigned k = 0; k < i; k++)
        p->map[gfns[k]].flags &= (uint8_t)~P2M_F_MARK;
    if (i == n)
        return 0;
    *bad = i;
    return -1;
}

int p2m_balloon_inflate(struct p2m *p, const uint64_t *gfns, unsigned n, unsigned *bad)
{
    if (balloon_check(p, gfns, n, true, bad))
        return -1;
    /* Unmap every mapped one, flush once, then free what they held. */
    for (unsigned i = 0; i < n; i++) {
        enum p2m_state st = (enum p2m_state)p->map[gfns[i]].state;
        if (st == P2M_RESIDENT || st == P2M_SHARED)
            ept_clear(p, gfns[i]);
    }
    p2m_flush(p);
    for (unsigned i = 0; i < n; i++) {
        struct p2m_entry *e = &p->map[gfns[i]];
        bool freed = true;
        switch (e->state) {
        case P2M_RESIDENT:
            frame_free(e->payload); /* zeroed again before anyone gets it */
            break;
        case P2M_SHARED:
            drop_shared_ref(p, e->payload);
            break;
        case P2M_COMPRESSED:
            if (e->flags & P2M_F_SHARED_OBJ) {
                share_zobj_put((uint32_t)e->payload);
                e->flags &= (uint8_t)~P2M_F_SHARED_OBJ;
                p->shared_obj--;
            } else {
                zpool_free(e->payload);
                p->st.pool_bytes -= e->aux;
            }
            break;
        case P2M_SWAPPED:
            swap_free(e->payload);
            break;
        default:
            freed = false; /* unpopulated or same-filled: nothing held */
            break;
        }
        set_state(p, e, P2M_BALLOONED, 0);
        e->aux = 0;
        p->st.balloon_freed += freed;
    }
    p->st.balloon_inflated += n;
    return 0;
}

int p2m_balloon_deflate(struct p2m *p, const uint64_t *gfns, unsigned n, unsigned *bad)
{
    if (balloon_check(p, gfns, n, false, bad))
        return -1;
    for (unsigned i = 0; i < n; i++)
        set_state(p, &p->map[gfns[i]], P2M_UNPOPULATED, 0);
    p->st.balloon_deflated += n;
    return 0;
}

bool p2m_pool_relocated(struct p2m *p, uint64_t gfn, uint64_t old_handle, uint64_t new_handle)
{
    if (gfn >= p->ngfn || !p->map || p->map[gfn].state != P2M_COMPRESSED ||
        p->map[gfn].payload != old_handle)
        return false;
    p->map[gfn].payload = new_handle;
    return true;
}

bool p2m_share_protect(struct p2m *p, uint64_t gfn)
{
    if (gfn >= p->ngfn || p->map[gfn].state != P2M_RESIDENT)
        return false;
    drop_swap_copy(p, gfn, &p->map[gfn]); /* a shared frame has no swap copy */
    uint64_t *l = ept_leaf(p, gfn);
    if (l && (*l & EPT_W)) {
        *l &= ~EPT_W;
        p->flush_pending = true;
    }
    p2m_flush(p);
    return true;
}

void p2m_share_unprotect(struct p2m *p, uint64_t gfn)
{
    struct p2m_entry *e = &p->map[gfn];
    MM_ASSERT(e->state == P2M_RESIDENT);
    uint64_t *l = ept_leaf(p, gfn);
    /* Give write back in place: rewriting the leaf would lose its accessed
     * and dirty bits, which reclaim's clock relies on. Adding a permission
     * needs no INVEPT. */
    if (l && (*l & PT_ADDR_MASK) == e->payload << PAGE_SHIFT)
        *l |= EPT_W;
    else
        ept_set(p, gfn, e->payload, EPT_RWX);
}

mfn_t p2m_share_promote(struct p2m *p, uint64_t gfn)
{
    struct p2m_entry *e = &p->map[gfn];
    MM_ASSERT(e->state == P2M_RESIDENT);
    mfn_t m = e->payload;
    struct frame *f = frame_get(m);
    frame_retype(m, FS_SHARED, 0);
    f->refcount = 1;
    f->gfn = 0;
    set_state(p, e, P2M_SHARED, m);
    ept_set(p, gfn, m, EPT_R | EPT_X);
    return m;
}

void p2m_share_join(struct p2m *p, uint64_t gfn, mfn_t m)
{
    struct p2m_entry *e = &p->map[gfn];
    MM_ASSERT(e->state == P2M_RESIDENT && frame_get(m)->state == FS_SHARED);
    mfn_t old = e->payload;
    ept_set(p, gfn, m, EPT_R | EPT_X); /* a read-only leaf to another frame */
    p2m_flush(p);                        /* before the private frame is freed */
    frame_free(old);
    frame_get(m)->refcount++;
    share_charge(p, m, +1);
    set_state(p, e, P2M_SHARED, m);
    p->st.share_merged++;
}

bool p2m_share_test_clear_accessed(struct p2m *p, uint64_t gfn)
{
    uint64_t *l = ept_leaf(p, gfn);
    if (!l || !(*l & EPT_A))
        return false;
    *l &= ~EPT_A;
    p->flush_pending = true;
    return true;
}

void p2m_share_to_object(struct p2m *p, uint64_t gfn, uint32_t idx)
{
    struct p2m_entry *e = &p->map[gfn];
    MM_ASSERT(e->state == P2M_SHARED);
    ept_clear(p, gfn);
    set_state(p, e, P2M_COMPRESSED, idx);
    e->flags |= P2M_F_SHARED_OBJ;
    e->aux = 0;
    p->shared_obj++;
}

bool p2m_share_fill(struct p2m *p, uint64_t gfn)
{
    struct p2m_entry *e = &p->map[gfn];
    uint64_t v;
    if (e->state != P2M_RESIDENT || !page_filled(e->payload, &v))
        return false;
    uint64_t *l = ept_leaf(p, gfn), old = l ? *l : 0;
    ept_clear(p, gfn);
    p2m_flush(p);
    if (!page_filled(e->payload, &v)) { /* changed before the unmap took */
        if (l && old)
            *l = old; /* as it was, accessed and dirty bits included */
        else
            ept_set(p, gfn, e->payload, EPT_RWX);
        return false;
    }
    frame_free(e->payload);
    set_state(p, e, v ? P2M_FILLED : P2M_UNPOPULATED, v);
    p->st.share_zero++;
    return true;
}

int p2m_read_page(struct p2m *p, uint64_t gfn, void *buf)
{
    if (gfn >= p->ngfn || !p->map)
        return -1;
    struct p2m_entry *e = &p->map[gfn];
    uint64_t *w = buf;
    switch (e->state) {
    case P2M_UNPOPULATED:
    case P2M_BALLOONED:
        memset(buf, 0, PAGE_SIZE);
        return 0;
    case P2M_FILLED:
        for (int i = 0; i < 512; i++)
            w[i] = e->payload;
        return 0;
    case P2M_RESIDENT:
    case P2M_SHARED:
        memcpy(buf, mm_phys_to_virt(e->payload << PAGE_SHIFT), PAGE_SIZE);
        return 0;
    case P2M_COMPRESSED:
        if (e->flags & P2M_F_SHARED_OBJ) {
            struct share_zobj z;
            if (!share_zobj_get((uint32_t)e->payload, &z))
                return -1;
            if (z.mfn != MFN_INVALID) {
                memcpy(buf, mm_phys_to_virt(z.mfn << PAGE_SHIFT), PAGE_SIZE);
                return 0;
            }
            static uint8_t zbuf[ZP_MAX_DATA];
            uint32_t check;
            unsigned len = (unsigned)(z.handle >> 48);
            if (zpool_load(z.handle, 0, e->payload, len, zbuf, &check) ||
                cmp_decompress_page(zbuf, (int)len, buf))
                return -1;
            return share_hash(buf, z.salt) == z.hash ? 0 : -1;
        }
        return decompress_into(p, gfn, e, buf) ? -1 : 0;
    case P2M_SWAPPED: {
        const void *data = swap_read(e->payload, buf);
        unsigned len = SWAP_LOC_LEN(e->payload);
        if (!data || swap_check(data, len, p->owner, gfn) != e->aux)
            return -1;
        if (SWAP_LOC_LZ4(e->payload))
            return cmp_decompress_page(data, (int)len, buf) ? -1 : 0;
        return 0;
    }
    default:
        return -1;
    }
}

void p2m_sweep(struct p2m *p)
{
    if (!p->ad || !p->map)
        return;
    uint64_t accessed = 0, dirty = 0, idle = 0;
    for (uint64_t gfn = 0; gfn < p->ngfn; gfn++) {
        struct p2m_entry *e = &p->map[gfn];
        if (e->state != P2M_RESIDENT)
            continue;
        uint64_t *l = ept_leaf(p, gfn);
        if (!l)
            continue;
        if (*l & EPT_A) {
            accessed++;
            e->age = 0;
        } else if (e->age < 0xffff) {
            e->age++;
        }
        idle += e->age >= P2M_IDLE_SWEEPS;
        if (*l & EPT_D) {
            dirty++;
            if (e->flags & P2M_F_INCOMPRESSIBLE) {
                /* Written since LZ4 gave up on it: worth another try. */
                e->flags &= (uint8_t)~P2M_F_INCOMPRESSIBLE;
                p->st.incompressible_now--;
            }
        }
        if (*l & (EPT_A | EPT_D)) {
            *l &= ~(EPT_A | EPT_D);
            p->flush_pending = true; /* else cached translations never set A again */
        }
    }
    p2m_flush(p);
    p->st.sweeps++;
    p->st.last_accessed = accessed;
    p->st.last_dirty = dirty;
    p->st.idle_pages = idle;
    /* EWMA with weight 1/4 for the newest sample. */
    p->st.ws_pages = p->st.sweeps == 1 ? accessed : (p->st.ws_pages * 3 + accessed) / 4;
}

uint64_t p2m_check(struct p2m *p)
{
    uint64_t bad = 0, count[P2M_STATE_COUNT] = { 0 }, pool_bytes = 0, incompressible = 0,
             shared_obj = 0, swap_cached = 0;
#define CHECK(c, ...)                                                         \
    do {                                                                      \
        if (!(c)) {                                                           \
            if (bad++ < 8)                                                    \
                pr_err(LS_MM, "p2m check: " __VA_ARGS__);                  \
        }                                                                     \
    } while (0)
    for (uint64_t gfn = 0; gfn < p->ngfn; gfn++) {
        struct p2m_entry *e = &p->map[gfn];
        CHECK(e->state < P2M_STATE_COUNT, "%s gfn %#llx bad state %u", p->name,
              (unsigned long long)gfn, e->state);
        if (e->state >= P2M_STATE_COUNT)
            continue;
        count[e->state]++;
        if (e->flags & P2M_F_INCOMPRESSIBLE)
            incompressible++;
        uint64_t *l = ept_leaf(p, gfn);
        uint64_t leaf = l ? *l : 0;
        if (e->state == P2M_RESIDENT) {
            struct frame *f = frame_get(e->payload);
            CHECK(f->state == FS_VM && f->owner == p->owner && f->gfn == gfn &&
                      f->refcount == 1,
                  "%s gfn %#llx -> frame %#llx owned by (%s, %u, gfn %#llx)", p->name,
                  (unsigned long long)gfn, (unsigned long long)e->payload,
                  frame_state_name(f->state), f->owner, (unsigned long long)f->gfn);
            /* A page with a valid swap copy is mapped read-only until written. */
            bool cached = e->flags & P2M_F_SWAPCACHE;
            swap_cached += cached;
            CHECK((leaf & PT_ADDR_MASK) == e->payload << PAGE_SHIFT &&
                      (leaf & EPT_RWX) == (cached ? EPT_R | EPT_X : EPT_RWX),
                  "%s gfn %#llx resident at %#llx but EPT leaf is %#llx", p->name,
                  (unsigned long long)gfn, (unsigned long long)e->payload,
                  (unsigned long long)leaf);
            CHECK(!cached || (!(e->flags & P2M_F_HASHED) &&
                              swap_loc_valid(SWAP_LOC(e->aux, PAGE_SIZE, 0))),
                  "%s gfn %#llx swap-cached at slot %u, which is not allocated", p->name,
                  (unsigned long long)gfn, e->aux);
        } else if (e->state == P2M_SHARED) {
            struct frame *f = frame_get(e->payload);
            CHECK(f->state == FS_SHARED && f->refcount >= 1,
                  "%s gfn %#llx shared on frame %#llx which is %s (refcount %u)", p->name,
                  (unsigned long long)gfn, (unsigned long long)e->payload,
                  frame_state_name(f->state), f->refcount);
            CHECK((leaf & PT_ADDR_MASK) == e->payload << PAGE_SHIFT &&
                      (leaf & EPT_RWX) == (EPT_R | EPT_X),
                  "%s gfn %#llx shared at %#llx but EPT leaf is %#llx", p->name,
                  (unsigned long long)gfn, (unsigned long long)e->payload,
                  (unsigned long long)leaf);
            CHECK(!(e->flags & (P2M_F_INCOMPRESSIBLE | P2M_F_HASHED)),
                  "%s gfn %#llx shared with resident-only flags %#x", p->name,
                  (unsigned long long)gfn, e->flags);
        } else {
            struct share_zobj z;
            if (e->state == P2M_COMPRESSED && (e->flags & P2M_F_SHARED_OBJ)) {
                shared_obj++;
                CHECK(share_zobj_get((uint32_t)e->payload, &z), "%s gfn %#llx names shared "
                      "object %llu, which does not exist", p->name, (unsigned long long)gfn,
                      (unsigned long long)e->payload);
            } else if (e->state == P2M_COMPRESSED) {
                pool_bytes += e->aux;
                CHECK(zpool_check_object(e->payload, p->owner, gfn, e->aux),
                      "%s gfn %#llx compressed as handle %#llx (%u bytes) but the pool "
                      "holds no such object", p->name, (unsigned long long)gfn,
                      (unsigned long long)e->payload, e->aux);
            }
            CHECK(e->state != P2M_SWAPPED || swap_loc_valid(e->payload), "%s gfn %#llx swapped "
                  "to %#llx, slots not allocated", p->name, (unsigned long long)gfn,
                  (unsigned long long)e->payload);
            CHECK(!(e->flags & (P2M_F_INCOMPRESSIBLE | P2M_F_SWAPCACHE)), "%s gfn %#llx is %s "
                  "but has resident-only flags %#x", p->name, (unsigned long long)gfn,
                  p2m_state_name(e->state), e->flags);
            CHECK(e->state == P2M_COMPRESSED || !(e->flags & P2M_F_SHARED_OBJ),
                  "%s gfn %#llx is %s but flagged as naming a shared object", p->name,
                  (unsigned long long)gfn, p2m_state_name(e->state));
            CHECK(!(leaf & EPT_RWX), "%s gfn %#llx is %s but EPT maps it (%#llx)", p->name,
                  (unsigned long long)gfn, p2m_state_name(e->state),
                  (unsigned long long)leaf);
        }
    }
    for (int s = 0; s < P2M_STATE_COUNT; s++)
        CHECK(count[s] == p->count[s], "%s: %llu %s pages counted as %llu", p->name,
              (unsigned long long)count[s], p2m_state_name((enum p2m_state)s),
              (unsigned long long)p->count[s]);
    CHECK(swap_cached == p->swap_cached, "%s: %llu swap-cached pages counted as %llu", p->name,
          (unsigned long long)swap_cached, (unsigned long long)p->swap_cached);
    CHECK(shared_obj == p->shared_obj, "%s: %llu GFNs name shared objects, counted as %llu",
          p->name, (unsigned long long)shared_obj, (unsigned long long)p->shared_obj);
    CHECK(pool_bytes == p->st.pool_bytes, "%s: %llu pool bytes counted as %llu", p->name,
          (unsigned long long)pool_bytes, (unsigned long long)p->st.pool_bytes);
    CHECK(incompressible == p->st.incompressible_now, "%s: %llu pages flagged incompressible, "
          "counted as %llu", p->name, (unsigned long long)incompressible,
          (unsigned long long)p->st.incompressible_now);
    CHECK(p->count[P2M_RESIDENT] <= p->limit, "%s: %llu resident above limit %llu", p->name,
          (unsigned long long)p->count[P2M_RESIDENT], (unsigned long long)p->limit);
#undef CHECK
    return bad;
}

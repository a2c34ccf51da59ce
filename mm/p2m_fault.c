/* The p2m's fault paths: an EPT violation (or the hypervisor's own access
 * to a guest page) brings the page to RESIDENT, or SHARED read-only, from
 * whatever state it is in: demand-zero, refill of a same-filled or
 * ballooned page, decompression (a private or a shared pool object),
 * copy-on-write, swap-in. Every frame and metadata frame comes through
 * mm_frame_for / mm_meta_frame, so limits and the watermark hold. */
#include "mm/p2m.h"
#include "lib/log.h"
#include "lib/string.h"
#include "mm/compress.h"
#include "mm/ept.h"
#include "mm/hash.h"
#include "mm/mm.h"
#include "mm/policy.h"
#include "mm/mm_backend.h"
#include "mm/p2m_internal.h"
#include "mm/share.h"
#include "mm/swap.h"
#include "mm/trace.h"
#include "mm/zpool.h"

static void report_corrupt(struct p2m *p, uint64_t gfn, const char *why)
{
    p->st.corrupt++;
    pr_err(LS_MM, "vm %s: compressed copy of gfn %#llx is corrupt (%s, %u bytes, handle "
                  "%#llx); the VM must stop: its data cannot be recovered",
           p->name, (unsigned long long)gfn, why, map_find(p, gfn)->aux,
           (unsigned long long)map_find(p, gfn)->payload);
}

static uint64_t last_alloc_cycles; /* mm_frame_for inside the last make_resident */

/* The leaf slot fault_prepare found for (slot_p, slot_gfn): make_resident
 * writes it without walking the EPT again (ept_slot, p2m_internal.h). */
static struct {
    struct p2m *p;
    uint64_t gfn;
    uint64_t *slot;
    struct frame *tf;
} fs_slot;

/* The kind of the fault p2m_fault is handling, as counted (-1: none yet):
 * p2m_fault hands it to the policy's accounting, which would otherwise
 * compare every kind's counter before and after. */
static int fault_kind = -1;

static void counted(struct p2m *p, int kind)
{
    p->st.faults[kind]++;
    fault_kind = kind;
}

/* The bookkeeping of every edge into RESIDENT: the frame's back-pointer,
 * the state, a fresh age, the peak. */
static void become_resident(struct p2m *p, uint64_t gfn, struct p2m_entry *e, mfn_t m)
{
    frame_get(m)->gfn = gfn;
    p2m_set_state(p, gfn, e, P2M_RESIDENT, m);
    e->age = 0;
    if (p->count[P2M_RESIDENT] > p->st.peak_resident)
        p->st.peak_resident = p->count[P2M_RESIDENT];
}

/* Gives gfn a frame holding its current content and maps it; e is its
 * entry, made by the caller (fault_prepare). */
static enum p2m_result make_resident(struct p2m *p, uint64_t gfn, struct p2m_entry *e)
{
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
        const char *why = p2m_decompress_into(p, gfn, e, mm_phys_to_virt(m << PAGE_SHIFT));
        if (why) {
            report_corrupt(p, gfn, why);
            frame_free(m);
            return P2M_CORRUPT;
        }
    }
    if (fs_slot.p == p && fs_slot.gfn == gfn) {
        ept_set_slot(p, fs_slot.slot, fs_slot.tf, m, EPT_RWX);
    } else if (ept_set(p, gfn, m, EPT_RWX)) {
        frame_free(m);
        return P2M_WAIT; /* no frame for an EPT table: wait like any other */
    }
    if (e->state != P2M_UNPOPULATED)
        p2m_release(p, e); /* the pool object, now copied out */
    e->aux = 0;
    become_resident(p, gfn, e, m);
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
            ept_set(p, gfn, m, EPT_RWX); /* fault_prepare made the table */
            p2m_release(p, e); /* its reference to the object */
            become_resident(p, gfn, e, m);
            counted(p, PF_DECOMPRESS);
            return P2M_OK;
        }
    }
    ept_set(p, gfn, m, EPT_R | EPT_X); /* fault_prepare made the table */
    frame_get(m)->refcount++;
    share_charge(p, m, +1);
    e->flags &= (uint8_t)~P2M_F_SHARED_OBJ;
    p->shared_obj--;
    p2m_set_state(p, gfn, e, P2M_SHARED, m);
    share_zobj_put(idx);
    counted(p, PF_DECOMPRESS);
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
        counted(p, PF_SPURIOUS);
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
        ept_set(p, gfn, s, EPT_RWX); /* the leaf exists: no allocation */
        become_resident(p, gfn, e, s);
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
        f->refcount--;
        share_charge(p, s, -1);
        become_resident(p, gfn, e, m);
        p->st.cow_copies++;
    }
    p2m_flush(p); /* the read-only translation must go before the guest retries */
    counted(p, PF_COW);
    return P2M_OK;
}

/* A write to a swap-cached page (or the hypervisor taking a pointer to
 * it): the copy on the device is stale from now on. Frees it and gives
 * write permission back in place (adding a permission needs no flush). */
void p2m_drop_swap_copy(struct p2m *p, uint64_t gfn, struct p2m_entry *e)
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
    struct p2m_entry *e = map_find(p, gfn);
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
        if (!data && swap_read_lost())
            swap_quarantine(m); /* the device may still write into it */
        else
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
    if (!keep)
        p2m_release(p, e); /* the slots */
    uint8_t tc = trace_cause_enter(p, TC_SWAP);
    become_resident(p, gfn, e, m);
    trace_cause_leave(p, tc);
    if (keep) {
        e->flags |= P2M_F_SWAPCACHE;
        e->aux = (uint32_t)SWAP_LOC_SLOT(loc);
        p->swap_cached++;
    }
    counted(p, PF_SWAPIN);
    p->st.si_cycles += mm_now() - t1;
    p->st.si_io_cycles += t2 - t1;
    p->st.si_alloc_cycles += t1 - t0;
    return P2M_OK;
}

enum p2m_result p2m_fault(struct p2m *p, uint64_t gpa, unsigned access)
{
    uint64_t t0 = mm_now();
    fault_kind = -1;
    p->direct_reclaim = false;
    /* The frame this fault asks for may come from reclaim, which must not
     * write this page's own pool object back to swap (or reclaim its
     * shared frame) under the fault's feet. */
    p->busy_gfn = gpa >> PAGE_SHIFT;
    uint8_t tc = trace_cause_enter(p, TC_FAULT);
    enum p2m_result r = fault(p, gpa, access);
    trace_cause_leave(p, tc);
    p->busy_gfn = UINT64_MAX;
    fs_slot.p = NULL; /* the table may be trimmed from now on */
    uint64_t dt = mm_now() - t0;
    p->st.fault_cycles += dt;
    if (fault_kind >= 0) /* a fault that was counted: direct reclaim and the histogram */
        policy_fault_done(p, fault_kind, dt);
    return r;
}

/* Everything a fault on gfn may need besides the page's own frame: its map
 * chunk and the EPT tables above its leaf, charged to the VM. Taken
 * first, so that a mapping never fails half-way; reclaim run for them
 * leaves this region alone (busy_gfn). NULL: wait. */
static struct p2m_entry *fault_prepare(struct p2m *p, uint64_t gfn)
{
    struct p2m_entry *e = map_find(p, gfn);
    if (e && e->state == P2M_MMIO)
        return e;
    if (!e && !(e = map_slot(p, gfn)))
        return NULL;
    fs_slot.p = NULL;
    uint64_t *slot = ept_slot(p, gfn, &fs_slot.tf);
    if (!slot) {
        if (ept_path(p, gfn))
            return NULL;
        slot = ept_slot(p, gfn, &fs_slot.tf);
    }
    fs_slot.p = p;
    fs_slot.gfn = gfn;
    fs_slot.slot = slot;
    return e;
}

static enum p2m_result fault(struct p2m *p, uint64_t gpa, unsigned access)
{
    uint64_t gfn = gpa >> PAGE_SHIFT;
    if (gfn >= p->ngfn) {
        counted(p, PF_OUTSIDE);
        return P2M_FAIL;
    }
    struct p2m_entry *e = fault_prepare(p, gfn);
    if (!e) {
        p->st.waits_meta++;
        return P2M_WAIT;
    }
    switch (e->state) {
    case P2M_UNPOPULATED: {
        uint64_t t0 = mm_now(), z0 = frame_zero_cycles();
        enum p2m_result r = make_resident(p, gfn, e);
        if (r == P2M_OK) {
            counted(p, PF_DEMAND_ZERO);
            p->st.dz_zero_cycles += frame_zero_cycles() - z0;
            p->st.dz_cycles += mm_now() - t0;
        }
        return r;
    }
    case P2M_FILLED:
    case P2M_BALLOONED: {
        bool ballooned = e->state == P2M_BALLOONED;
        enum p2m_result r = make_resident(p, gfn, e);
        if (r == P2M_OK) {
            counted(p, PF_REFILL);
            p->st.balloon_touched += ballooned; /* the guest broke its promise */
        }
        return r;
    }
    case P2M_RESIDENT: {
        if (e->flags & P2M_F_SAMPLED) {
            /* In the working-set sample: the access counts as a touch and
             * the permissions come back (mm/p2m_sample.c); not a fault
             * kind. A write to a swap-cached page is never sampled. */
            p2m_sample_touch(p, gfn, e);
            return P2M_OK;
        }
        if ((e->flags & P2M_F_SWAPCACHE) && (access & P2M_ACCESS_W)) {
            p2m_drop_swap_copy(p, gfn, e); /* the first write after a swap-in */
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
        counted(p, PF_SPURIOUS);
        return P2M_OK;
    }
    case P2M_COMPRESSED: {
        if (e->flags & P2M_F_SHARED_OBJ)
            return shared_object_fault(p, gfn, e);
        uint64_t t0 = mm_now();
        enum p2m_result r = make_resident(p, gfn, e);
        if (r == P2M_OK) {
            counted(p, PF_DECOMPRESS);
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
        counted(p, PF_MMIO);
        return P2M_FAIL;
    default:
        mm_panic(__FILE__, __LINE__, "p2m state without a fault handler");
    }
}

static void *gfn_ptr(struct p2m *p, uint64_t gfn, bool populate);

void *p2m_gfn_ptr(struct p2m *p, uint64_t gfn, bool populate)
{
    p->busy_gfn = gfn; /* as in p2m_fault */
    uint8_t tc = trace_cause_enter(p, TC_LOAD);
    void *ptr = gfn_ptr(p, gfn, populate);
    trace_cause_leave(p, tc);
    p->busy_gfn = UINT64_MAX;
    fs_slot.p = NULL;
    return ptr;
}

static void *gfn_ptr(struct p2m *p, uint64_t gfn, bool populate)
{
    if (gfn >= p->ngfn)
        return NULL;
    struct p2m_entry *e = populate ? fault_prepare(p, gfn) : map_find(p, gfn);
    if (!e)
        return NULL;
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
        p2m_drop_swap_copy(p, gfn, e); /* it may be written through the pointer */
    if (e->state != P2M_RESIDENT) {
        if (!populate || (e->state != P2M_UNPOPULATED && e->state != P2M_FILLED &&
                          e->state != P2M_COMPRESSED))
            return NULL;
        if (make_resident(p, gfn, e) != P2M_OK)
            return NULL;
    }
    return mm_phys_to_virt(e->payload << PAGE_SHIFT);
}

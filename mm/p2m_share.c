/* The p2m's sharing edges, for the scanner and shared-frame reclaim
 * (mm/share.c): write-protect for comparison, promote to a shared frame,
 * join one, return a same-filled page as a value, name a shared pool
 * object. */
#include "mm/p2m.h"
#include "lib/log.h"
#include "lib/string.h"
#include "mm/compress.h"
#include "mm/ept.h"
#include "mm/hash.h"
#include "mm/mm.h"
#include "mm/mm_backend.h"
#include "mm/p2m_internal.h"
#include "mm/share.h"
#include "mm/swap.h"
#include "mm/trace.h"
#include "mm/zpool.h"

/* Every edge this file takes, marked as the share mechanism's for the trace. */
static void share_set_state(struct p2m *p, uint64_t gfn, struct p2m_entry *e,
                            enum p2m_state s, uint64_t payload)
{
    uint8_t tc = trace_cause_enter(p, TC_SHARE);
    p2m_set_state(p, gfn, e, s, payload);
    trace_cause_leave(p, tc);
}

bool p2m_share_protect(struct p2m *p, uint64_t gfn)
{
    if (gfn >= p->ngfn || p2m_peek(p, gfn)->state != P2M_RESIDENT ||
        (p2m_peek(p, gfn)->flags & P2M_F_SAMPLED))
        return false; /* sampled: its permissions belong to the sample this period */
    p2m_drop_swap_copy(p, gfn, map_find(p, gfn)); /* a shared frame has no swap copy */
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
    struct p2m_entry *e = map_find(p, gfn);
    MM_ASSERT(e && e->state == P2M_RESIDENT);
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
    struct p2m_entry *e = map_find(p, gfn);
    MM_ASSERT(e && e->state == P2M_RESIDENT);
    mfn_t m = e->payload;
    struct frame *f = frame_get(m);
    frame_retype(m, FS_SHARED, 0);
    f->refcount = 1;
    f->gfn = 0;
    share_set_state(p, gfn, e, P2M_SHARED, m);
    ept_set(p, gfn, m, EPT_R | EPT_X);
    return m;
}

void p2m_share_join(struct p2m *p, uint64_t gfn, mfn_t m)
{
    struct p2m_entry *e = map_find(p, gfn);
    MM_ASSERT(e && e->state == P2M_RESIDENT && frame_get(m)->state == FS_SHARED);
    mfn_t old = e->payload;
    ept_set(p, gfn, m, EPT_R | EPT_X); /* a read-only leaf to another frame */
    p2m_flush(p);                        /* before the private frame is freed */
    frame_free(old);
    frame_get(m)->refcount++;
    share_charge(p, m, +1);
    share_set_state(p, gfn, e, P2M_SHARED, m);
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
    struct p2m_entry *e = map_find(p, gfn);
    MM_ASSERT(e && e->state == P2M_SHARED);
    ept_clear(p, gfn);
    share_set_state(p, gfn, e, P2M_COMPRESSED, idx);
    e->flags |= P2M_F_SHARED_OBJ;
    e->aux = 0;
    p->shared_obj++;
}

bool p2m_share_fill(struct p2m *p, uint64_t gfn)
{
    struct p2m_entry *e = map_find(p, gfn);
    uint64_t v;
    if (!e || e->state != P2M_RESIDENT)
        return false;
    /* Seven words spread over the page rule out almost every page that is
     * not same-filled; the whole page is read once, after the unmap (a
     * write after that one read would fault), not once before it and
     * again after (1,200 instructions a page saved on every zero page the
     * scanner returns). */
    const uint64_t *w = mm_phys_to_virt(e->payload << PAGE_SHIFT);
    if (w[1] != w[0] || w[64] != w[0] || w[128] != w[0] || w[256] != w[0] || w[384] != w[0] ||
        w[511] != w[0])
        return false;
    uint64_t *l = ept_leaf(p, gfn), old = l ? *l : 0;
    ept_clear(p, gfn);
    p2m_flush(p);
    if (!p2m_page_filled(e->payload, &v)) { /* not filled after all, or changed before the unmap */
        if (l && old)
            ept_put(p, gfn, old); /* as it was, accessed and dirty bits included */
        else
            ept_set(p, gfn, e->payload, EPT_RWX);
        return false;
    }
    frame_free(e->payload);
    share_set_state(p, gfn, e, v ? P2M_FILLED : P2M_UNPOPULATED, v);
    p->st.share_zero++;
    return true;
}

/* The p2m's balloon edges (mm/balloon.c takes the hypercalls): a batch of
 * GFNs the guest gives up (any state -> BALLOONED, what it held freed) or
 * takes back (BALLOONED -> UNPOPULATED), checked whole first. An entry
 * already in the state asked for (inflating a ballooned GFN, deflating
 * one that is not ballooned, say because the guest touched it and got a
 * zero page back) is left alone and counted: the guest's view and ours
 * already agree there, and refusing it would refuse the whole batch. */
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

/* Every edge this file takes, marked as the balloon mechanism's for the trace. */
static void balloon_set_state(struct p2m *p, uint64_t gfn, struct p2m_entry *e,
                              enum p2m_state s, uint64_t payload)
{
    uint8_t tc = trace_cause_enter(p, TC_BALLOON);
    p2m_set_state(p, gfn, e, s, payload);
    trace_cause_leave(p, tc);
}

/* Is gfn already where the batch would put it? (A GFN without a map slot
 * was never touched: unpopulated, so not ballooned.) */
static bool balloon_noop(const struct p2m_entry *e, bool inflate)
{
    return (e && e->state == P2M_BALLOONED) == inflate;
}

/* Checks a balloon batch: every GFN in RAM, not MMIO, none twice (a
 * transient mark; a GFN without a map slot, possible in a deflate only,
 * cannot be marked and is found twice by a scan of what came before).
 * Returns how many entries are already in the state asked for, or -1
 * with the index of the first bad entry in *bad. */
static int balloon_check(struct p2m *p, const uint64_t *gfns, unsigned n, bool inflate,
                         unsigned *bad)
{
    unsigned i = 0, noop = 0;
    for (; i < n; i++) {
        uint64_t g = gfns[i];
        if (g >= p->ngfn)
            break;
        struct p2m_entry *e = map_find(p, g); /* inflate made every slot */
        if (e && (e->state == P2M_MMIO || (e->flags & P2M_F_MARK)))
            break;
        if (!e) {
            bool twice = false;
            for (unsigned k = 0; k < i && !twice; k++)
                twice = gfns[k] == g;
            if (twice)
                break;
        } else {
            e->flags |= P2M_F_MARK;
        }
        noop += balloon_noop(e, inflate);
    }
    for (unsigned k = 0; k < i; k++) {
        struct p2m_entry *e = map_find(p, gfns[k]);
        if (e)
            e->flags &= (uint8_t)~P2M_F_MARK;
    }
    if (i == n)
        return (int)noop;
    *bad = i;
    return -1;
}

int p2m_balloon_inflate(struct p2m *p, const uint64_t *gfns, unsigned n, unsigned *bad)
{
    /* A GFN never touched needs its map chunk to be recorded as
     * ballooned: charged frames, which may not be had now. Chunks made
     * for a batch that is refused are empty and go at the next trim. */
    for (unsigned i = 0; i < n; i++) {
        if (gfns[i] < p->ngfn && !map_slot(p, gfns[i])) {
            *bad = i;
            return -2;
        }
    }
    int noop = balloon_check(p, gfns, n, true, bad);
    if (noop < 0)
        return -1;
    /* Unmap every mapped one, flush once, then free what they held. */
    for (unsigned i = 0; i < n; i++) {
        enum p2m_state st = (enum p2m_state)map_find(p, gfns[i])->state;
        if (st == P2M_RESIDENT || st == P2M_SHARED)
            ept_clear(p, gfns[i]);
    }
    p2m_flush(p);
    for (unsigned i = 0; i < n; i++) {
        struct p2m_entry *e = map_find(p, gfns[i]);
        if (e->state == P2M_BALLOONED)
            continue; /* already given up */
        bool freed = p2m_release(p, e); /* a frame is zeroed again before reuse */
        balloon_set_state(p, gfns[i], e, P2M_BALLOONED, 0);
        e->aux = 0;
        p->st.balloon_freed += freed;
    }
    for (unsigned i = 0; i < n; i++)
        p2m_trim(p, gfns[i]); /* EPT tables left empty */
    p2m_flush(p);
    p->st.balloon_inflated += n - (unsigned)noop;
    return noop;
}

int p2m_balloon_deflate(struct p2m *p, const uint64_t *gfns, unsigned n, unsigned *bad)
{
    int noop = balloon_check(p, gfns, n, false, bad);
    if (noop < 0)
        return -1;
    for (unsigned i = 0; i < n; i++) {
        struct p2m_entry *e = map_find(p, gfns[i]);
        if (!balloon_noop(e, false))
            balloon_set_state(p, gfns[i], e, P2M_UNPOPULATED, 0);
    }
    for (unsigned i = 0; i < n; i++)
        p2m_trim(p, gfns[i]); /* map chunks left empty */
    p2m_flush(p);
    p->st.balloon_deflated += n - (unsigned)noop;
    return noop;
}

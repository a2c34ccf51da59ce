/* The p2m's balloon edges (mm/balloon.c takes the hypercalls): a batch of
 * GFNs the guest gives up (any state -> BALLOONED, what it held freed) or
 * takes back (BALLOONED -> UNPOPULATED), checked whole first. */
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
#include "mm/zpool.h"

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
        struct p2m_entry *e = map_find(p, g); /* inflate made every slot */
        if (!e || e->state == P2M_MMIO || (e->state == P2M_BALLOONED) != !inflate ||
            (e->flags & P2M_F_MARK))
            break;
        e->flags |= P2M_F_MARK;
    }
    for (unsigned k = 0; k < i; k++)
        map_find(p, gfns[k])->flags &= (uint8_t)~P2M_F_MARK;
    if (i == n)
        return 0;
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
    if (balloon_check(p, gfns, n, true, bad))
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
        bool freed = p2m_release(p, e); /* a frame is zeroed again before reuse */
        p2m_set_state(p, gfns[i], e, P2M_BALLOONED, 0);
        e->aux = 0;
        p->st.balloon_freed += freed;
    }
    for (unsigned i = 0; i < n; i++)
        p2m_trim(p, gfns[i]); /* EPT tables left empty */
    p2m_flush(p);
    p->st.balloon_inflated += n;
    return 0;
}

int p2m_balloon_deflate(struct p2m *p, const uint64_t *gfns, unsigned n, unsigned *bad)
{
    if (balloon_check(p, gfns, n, false, bad))
        return -1;
    for (unsigned i = 0; i < n; i++)
        p2m_set_state(p, gfns[i], map_find(p, gfns[i]), P2M_UNPOPULATED, 0);
    for (unsigned i = 0; i < n; i++)
        p2m_trim(p, gfns[i]); /* map chunks left empty */
    p2m_flush(p);
    p->st.balloon_deflated += n;
    return 0;
}

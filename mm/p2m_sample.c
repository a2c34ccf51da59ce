/* Working-set estimation by statistical sampling, as ESX does it
 * (Waldspurger, OSDI'02, 5.3): each period a small random set of resident
 * pages loses its EPT permissions while keeping its frame, its content and
 * the leaf's accessed/dirty bits; the guest's next access to one takes an
 * EPT violation that gives the permissions back and counts a touch. The
 * fraction of the sample touched in a period estimates the fraction of the
 * VM's memory that is active; a fast and a slow moving average of it are
 * kept and the larger is used, so that the estimate rises quickly when a
 * VM starts using its memory and falls slowly when it stops.
 *
 * A sampled page is still RESIDENT with its frame: nothing is freed,
 * nothing is copied, so no data can be lost. The rest of the p2m treats
 * it as follows: reclaim leaves it for the period (it is one of at most
 * P2M_SAMPLE_MAX pages); the share scanner cannot write-protect it
 * (p2m_share_protect refuses) and tries again on its next visit; a write
 * that drops a swap copy leaves the leaf alone (the permissions that come
 * back are the page's normal ones); the sweep harvests its A/D bits as for
 * any page; a transition out of RESIDENT (balloon, destroy) drops the flag.
 * A touch is counted in p2m_sample.touches, not as a fault kind. */
#include "mm/p2m.h"
#include "lib/log.h"
#include "mm/ept.h"
#include "mm/mm_backend.h"
#include "mm/p2m_internal.h"

/* Map entries looked at, per page wanted, before a period gives up. */
#define SAMPLE_PROBES 64

static uint64_t rnd(struct p2m *p)
{
    uint64_t x = p->smp.rng;
    if (!x)
        x = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)p->owner << 32) ^ p->ngfn;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p->smp.rng = x;
    return x;
}

void p2m_sample_forget(struct p2m *p, struct p2m_entry *e)
{
    if (!(e->flags & P2M_F_SAMPLED))
        return;
    e->flags &= (uint8_t)~P2M_F_SAMPLED;
    MM_ASSERT(p->smp.live > 0);
    p->smp.live--;
    p->smp.dropped++;
}

/* Gives the leaf its permissions back in place, keeping A/D bits (adding
 * a permission needs no INVEPT). A leaf that is gone (every other page of
 * its table left and the table was trimmed) is mapped again, which may
 * take a table frame; without one the page stays sampled (false) and is
 * carried into the next period. */
static bool restore(struct p2m *p, uint64_t gfn, struct p2m_entry *e)
{
    uint64_t *l = ept_leaf(p, gfn);
    if (l && (*l & PT_ADDR_MASK) == e->payload << PAGE_SHIFT) {
        ept_put(p, gfn, (*l & ~EPT_RWX) | p2m_resident_perms(e));
    } else {
        uint64_t busy = p->busy_gfn;
        p->busy_gfn = gfn; /* reclaim for the table leaves this region alone */
        int r = ept_set(p, gfn, e->payload, p2m_resident_perms(e));
        p->busy_gfn = busy;
        e = map_find(p, gfn);
        if (r)
            return false;
    }
    e->flags &= (uint8_t)~P2M_F_SAMPLED;
    p->smp.live--;
    return true;
}

void p2m_sample_touch(struct p2m *p, uint64_t gfn, struct p2m_entry *e)
{
    MM_ASSERT(e->state == P2M_RESIDENT && (e->flags & P2M_F_SAMPLED));
    uint64_t *l = ept_leaf(p, gfn);
    if (l && (*l & PT_ADDR_MASK) == e->payload << PAGE_SHIFT)
        ept_put(p, gfn, (*l & ~EPT_RWX) | p2m_resident_perms(e));
    else
        ept_set(p, gfn, e->payload, p2m_resident_perms(e)); /* fault_prepare made the table */
    e->flags &= (uint8_t)~P2M_F_SAMPLED;
    p->smp.live--;
    p->smp.touched++;
    p->smp.touches++;
}

/* Ends the period under way: untouched pages are unsampled, the fraction
 * touched updates the averages. */
static void period_end(struct p2m *p)
{
    struct p2m_sample *s = &p->smp;
    unsigned n = s->n, kept = 0;
    for (unsigned i = 0; i < n; i++) {
        struct p2m_entry *e = map_find(p, s->gfn[i]);
        if (e && e->state == P2M_RESIDENT && (e->flags & P2M_F_SAMPLED) &&
            !restore(p, s->gfn[i], e))
            s->gfn[kept++] = s->gfn[i]; /* still sampled: part of the next period */
    }
    s->n = kept;
    if (!n)
        return;
    uint64_t t = s->touched < n ? s->touched : n;
    uint32_t pm = (uint32_t)(t * 1000 / n);
    s->last_pm = pm;
    if (!s->periods) {
        s->fast_pm = s->slow_pm = pm;
    } else {
        s->fast_pm = (s->fast_pm + pm + 1) / 2;
        s->slow_pm = (s->slow_pm * 7 + pm + 4) / 8;
    }
    s->periods++;
    s->touched = 0;
}

void p2m_sample_stop(struct p2m *p)
{
    if (p->map)
        period_end(p);
}

void p2m_sample_period(struct p2m *p, unsigned want)
{
    struct p2m_sample *s = &p->smp;
    if (!p->map)
        return;
    period_end(p);
    uint64_t resident = p->count[P2M_RESIDENT];
    if (want > P2M_SAMPLE_MAX)
        want = P2M_SAMPLE_MAX;
    if (want > resident / 4)
        want = (unsigned)(resident / 4);
    uint64_t budget = (uint64_t)want * SAMPLE_PROBES;
    while (s->n < want && budget) {
        /* A random GFN, then forward to the first resident page that can
         * be sampled (sparse maps: skip absent chunks in one step). */
        uint64_t gfn = rnd(p) % p->ngfn;
        for (unsigned k = 0; k < SAMPLE_PROBES && budget; k++) {
            budget--;
            struct p2m_entry *e = map_find(p, gfn);
            if (!e) {
                gfn = map_next(p, gfn);
                if (gfn >= p->ngfn)
                    gfn = 0; /* wrap: the low GFNs are as likely */
                continue;
            }
            if (e->state == P2M_RESIDENT &&
                !(e->flags & (P2M_F_SAMPLED | P2M_F_SWAPCACHE)) && gfn != p->busy_gfn) {
                uint64_t *l = ept_leaf(p, gfn);
                if (l && (*l & PT_ADDR_MASK) == e->payload << PAGE_SHIFT && (*l & EPT_RWX)) {
                    ept_put(p, gfn, *l & ~EPT_RWX);
                    p->flush_pending = true;
                    e->flags |= P2M_F_SAMPLED;
                    s->live++;
                    s->gfn[s->n++] = gfn;
                    s->marked++;
                    break;
                }
            }
            if (++gfn >= p->ngfn)
                gfn = 0;
        }
    }
    p2m_flush(p); /* the removed permissions must not linger in the TLB */
}

uint32_t p2m_sample_active_pm(const struct p2m *p)
{
    if (!p->smp.periods)
        return 1000;
    return p->smp.fast_pm > p->smp.slow_pm ? p->smp.fast_pm : p->smp.slow_pm;
}

uint64_t p2m_sample_active_pages(const struct p2m *p)
{
    return p->count[P2M_RESIDENT] * p2m_sample_active_pm(p) / 1000;
}

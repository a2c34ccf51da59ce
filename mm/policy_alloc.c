/* Allocation targets from shares, reservations, limits and the idle tax;
 * the sampling periods; the self-tuning of compression and sharing
 * (mm/policy_alloc.h). Decisions only: the mechanisms (p2m sampling,
 * reclaim, the share scanner) take the orders through p2m fields
 * (compress_paused, share_every) and calls. */
#include "mm/policy_alloc.h"
#include "lib/fmt.h"
#include "lib/log.h"
#include "mm/mm.h"
#include "mm/mm_backend.h"
#include "mm/share.h"

typedef unsigned __int128 u128;

static struct {
    unsigned tax;
    unsigned sample_pages;
    unsigned period_ms;
    uint64_t last_period;      /* TSC of the last sampling period's end */
    bool started;
    struct policy_tune_stats st;
} pa = { ALLOC_IDLE_TAX_DEFAULT, ALLOC_SAMPLE_PAGES_DEFAULT, ALLOC_SAMPLE_PERIOD_DEFAULT, 0,
         false, { 0 } };

uint64_t policy_alloc_shares(uint64_t ngfn, unsigned per_mib, uint64_t absolute)
{
    if (absolute)
        return absolute;
    uint64_t mib = (ngfn + 255) / 256;
    uint64_t s = mib * (per_mib ? per_mib : ALLOC_SHARES_NORMAL);
    return s ? s : 1;
}

void policy_alloc_configure(unsigned idle_tax, unsigned sample_pages, unsigned period_ms)
{
    pa.tax = idle_tax > ALLOC_IDLE_TAX_MAX ? ALLOC_IDLE_TAX_MAX : idle_tax;
    pa.sample_pages = sample_pages > P2M_SAMPLE_MAX ? P2M_SAMPLE_MAX : sample_pages;
    pa.period_ms = period_ms < ALLOC_SAMPLE_PERIOD_MIN ? ALLOC_SAMPLE_PERIOD_MIN : period_ms;
}

unsigned policy_alloc_idle_tax(void)
{
    return pa.tax;
}

/* 1000 * (100 - tax) * (f + k (1 - f)) with k = 100 / (100 - tax), f in
 * per mille: the cost of a page, active ones at 1, idle ones at k, scaled
 * to an integer. Between 1000 (100 - tax) (all active) and 100000. */
static uint64_t cost(uint32_t active_pm, unsigned tax)
{
    uint64_t f = active_pm > 1000 ? 1000 : active_pm;
    return f * (100 - tax) + 100 * (1000 - f);
}

int policy_alloc_rho_cmp(const struct alloc_client *a, const struct alloc_client *b,
                         unsigned tax)
{
    if (!a->pages || !b->pages)
        return a->pages == b->pages ? 0 : a->pages ? -1 : 1;
    /* rho_a < rho_b  <=>  S_a P_b c_b < S_b P_a c_a (at most 2^40 * 2^40 * 2^17) */
    u128 l = (u128)a->shares * b->pages * cost(b->active_pm, tax);
    u128 r = (u128)b->shares * a->pages * cost(a->active_pm, tax);
    return l < r ? -1 : l > r ? 1 : 0;
}

uint64_t policy_alloc_rho_milli(const struct alloc_client *c, unsigned tax)
{
    if (!c->pages)
        return UINT64_MAX;
    /* S / (P c) * 1000 pages, c = cost / (1000 (100 - tax)) */
    u128 num = (u128)c->shares * 1000 * 1000 * (100 - tax);
    u128 den = (u128)c->pages * cost(c->active_pm, tax);
    /* Both fit in 64 bits for any configuration the parser accepts; stay
     * exact by shifting both down together otherwise. */
    while (num >> 63 || den >> 63) {
        num >>= 1;
        den >>= 1;
    }
    return den ? (uint64_t)num / (uint64_t)den : UINT64_MAX;
}

void policy_alloc_targets(struct alloc_client *c, int n, uint64_t total, unsigned tax)
{
    /* Weights w = S / cost, so that target = total_free * w / sum(w) gives
     * every free client the same rho. Fixed point with 2^20. */
    uint64_t w[MM_MAX_VMS * 4];
    bool fixed[MM_MAX_VMS * 4] = { false };
    if (n > MM_MAX_VMS * 4)
        n = MM_MAX_VMS * 4;
    for (int i = 0; i < n; i++) {
        uint64_t hi = c[i].limit > c[i].reserve ? c[i].limit : c[i].reserve;
        c[i].limit = hi;
        uint64_t sh = c[i].shares < ALLOC_SHARES_MAX ? c[i].shares : ALLOC_SHARES_MAX;
        w[i] = (sh << 20) / cost(c[i].active_pm, tax);
        if (!w[i])
            w[i] = 1;
        c[i].target = c[i].reserve;
    }
    uint64_t left = total < (1ULL << 36) ? total : 1ULL << 36;
    /* Every pass fixes at least one client at a bound, or ends. */
    for (int pass = 0; pass <= n; pass++) {
        u128 W = 0;
        for (int i = 0; i < n; i++)
            if (!fixed[i])
                W += w[i];
        if (!W)
            break;
        int shift = 0;
        while ((W >> shift) > (1ULL << 26)) /* left * w fits in 64 bits */
            shift++;
        uint64_t Ws = (uint64_t)(W >> shift);
        if (!Ws)
            Ws = 1;
        bool low = false, high = false;
        for (int i = 0; i < n; i++) {
            if (fixed[i])
                continue;
            uint64_t t = left * (w[i] >> shift) / Ws;
            c[i].target = t;
            low |= t < c[i].reserve;
            high |= t > c[i].limit;
        }
        if (!low && !high)
            break;
        /* Raise clients below their reservation first (that leaves less
         * for the rest); otherwise cap those above their limit (that
         * leaves more). */
        for (int i = 0; i < n; i++) {
            if (fixed[i])
                continue;
            uint64_t b = low ? c[i].reserve : c[i].limit;
            if (low ? c[i].target < b : c[i].target > b) {
                fixed[i] = true;
                c[i].target = b;
                left = left > b ? left - b : 0;
            }
        }
    }
    for (int i = 0; i < n; i++) {
        if (c[i].target < c[i].reserve)
            c[i].target = c[i].reserve;
        if (c[i].target > c[i].limit)
            c[i].target = c[i].limit;
    }
}

uint32_t policy_alloc_active_pm(const struct p2m *p)
{
    if (pa.sample_pages)
        return p2m_sample_active_pm(p);
    if (p->ad && p->st.sweeps && p->count[P2M_RESIDENT])
        return (uint32_t)(p->st.ws_pages >= p->count[P2M_RESIDENT]
                              ? 1000
                              : p->st.ws_pages * 1000 / p->count[P2M_RESIDENT]);
    return 1000;
}

static void client_of(const struct p2m *p, struct alloc_client *c)
{
    c->shares = p->shares ? p->shares : policy_alloc_shares(p->ngfn, 0, 0);
    if (c->shares > ALLOC_SHARES_MAX)
        c->shares = ALLOC_SHARES_MAX;
    c->pages = mm_charged(p);
    c->reserve = p->reserve;
    c->limit = p->limit < p->ngfn ? p->limit : p->ngfn;
    c->active_pm = policy_alloc_active_pm(p);
    c->target = 0;
}

void policy_alloc_update(void)
{
    struct alloc_client c[MM_MAX_VMS];
    int n = mm_vm_count();
    uint64_t held = 0;
    for (int i = 0; i < n; i++) {
        client_of(mm_vm_at(i), &c[i]);
        held += c[i].pages;
    }
    /* What guests can have: what they hold plus what is free above the
     * watermark. */
    uint64_t free = frame_free_count(), wm = mm_watermark();
    uint64_t total = held + (free > wm ? free - wm : 0);
    policy_alloc_targets(c, n, total, pa.tax);
    for (int i = 0; i < n; i++)
        mm_vm_at(i)->alloc_target = c[i].target;
    pa.st.updates++;
}

uint64_t policy_alloc_target(const struct p2m *p)
{
    return p->alloc_target;
}

struct p2m *policy_alloc_victim_skip(const bool *skip)
{
    struct p2m *best = NULL;
    struct alloc_client bc = { 0 };
    for (int i = 0; i < mm_vm_count(); i++) {
        struct p2m *q = mm_vm_at(i);
        if (skip && skip[i])
            continue;
        struct alloc_client c;
        client_of(q, &c);
        if (c.pages <= c.reserve || !q->count[P2M_RESIDENT])
            continue; /* its reservation is never reclaimed; nothing private to take */
        if (!best || policy_alloc_rho_cmp(&c, &bc, pa.tax) < 0) {
            best = q;
            bc = c;
        }
    }
    return best;
}

struct p2m *policy_alloc_victim(void)
{
    return policy_alloc_victim_skip(NULL);
}

/* ---- self-tuning ---- */

/* What the tuner remembers of one VM between ticks. */
struct tune_rec {
    const struct p2m *p;
    uint64_t cmp0, inc0, bytes0;  /* compression window start */
    uint64_t changes0, need;      /* while paused: change count at the pause, pages wanted */
    uint64_t sweeps0, dirty;      /* sweeps seen, dirty pages summed over them */
    uint64_t round0, merged0;     /* scanner rounds / merges at the last judgement */
};
static struct tune_rec recs[MM_MAX_VMS];

void policy_alloc_reset(void)
{
    for (int i = 0; i < MM_MAX_VMS; i++)
        recs[i].p = NULL;
}

static struct tune_rec *rec_of(const struct p2m *p)
{
    struct tune_rec *free = NULL;
    for (int i = 0; i < MM_MAX_VMS; i++) {
        if (recs[i].p == p)
            return &recs[i];
        /* A slot whose VM is no longer registered can be reused. */
        bool live = false;
        for (int j = 0; j < mm_vm_count() && recs[i].p; j++)
            live |= mm_vm_at(j) == recs[i].p;
        if (!free && !live)
            free = &recs[i];
    }
    if (!free)
        return NULL;
    *free = (struct tune_rec){ .p = p,
                               .cmp0 = p->st.compressed,
                               .inc0 = p->st.incompressible,
                               .bytes0 = p->cmp_bytes,
                               .sweeps0 = p->st.sweeps,
                               .merged0 = p->st.share_merged + p->st.share_zero };
    struct share_stats ss;
    share_get_stats(&ss);
    free->round0 = ss.rounds;
    return free;
}

/* Content changes since the pause: new pages (demand-zero, refill),
 * pages brought back (decompression, swap-in), private copies of shared
 * pages, and pages the sweeps found dirty. */
static uint64_t changes(const struct p2m *p, const struct tune_rec *r)
{
    const uint64_t *f = p->st.faults;
    return f[PF_DEMAND_ZERO] + f[PF_REFILL] + f[PF_DECOMPRESS] + f[PF_COW] + f[PF_SWAPIN] +
           r->dirty;
}

static void tune_compress(struct p2m *p, struct tune_rec *r)
{
    if (p->compress_paused) {
        uint64_t changed = changes(p, r) - r->changes0;
        if (changed < r->need)
            return;
        p->compress_paused = false;
        pa.st.compress_resumed++;
        pr_info(LS_MM, "vm %s: tune: compression resumed: %llu pages changed since it was "
                       "paused (wanted %llu)",
                p->name, (unsigned long long)changed, (unsigned long long)r->need);
        r->cmp0 = p->st.compressed;
        r->inc0 = p->st.incompressible;
        r->bytes0 = p->cmp_bytes;
        return;
    }
    uint64_t stored = p->st.compressed - r->cmp0, failed = p->st.incompressible - r->inc0;
    if (stored + failed < TUNE_CMP_WINDOW)
        return;
    /* A failed attempt produced nothing smaller than the page: 1:1. */
    uint64_t in = (stored + failed) * PAGE_SIZE;
    uint64_t out = p->cmp_bytes - r->bytes0 + failed * PAGE_SIZE;
    uint64_t ratio = out ? in * 100 / out : 100;
    r->cmp0 = p->st.compressed;
    r->inc0 = p->st.incompressible;
    r->bytes0 = p->cmp_bytes;
    if (ratio >= TUNE_CMP_RATIO_MIN)
        return;
    p->compress_paused = true;
    r->changes0 = changes(p, r);
    r->need = p->count[P2M_RESIDENT] / TUNE_CHANGE_DIV;
    if (r->need < TUNE_CHANGE_MIN)
        r->need = TUNE_CHANGE_MIN;
    pa.st.compress_paused++;
    pr_info(LS_MM, "vm %s: tune: compression paused: the last %llu attempts reached %llu.%02llu:1 "
                   "(%llu stored, %llu incompressible; below 1.5:1); retried after %llu pages "
                   "change",
            p->name, (unsigned long long)(stored + failed), (unsigned long long)(ratio / 100),
            (unsigned long long)(ratio % 100), (unsigned long long)stored,
            (unsigned long long)failed, (unsigned long long)r->need);
}

/* KSM's advisor, per VM: after every round in which the scanner visited
 * it, a VM that yielded merges (at least 1% of its pages) is scanned more
 * often (every round at best); one that yielded none while less than 15%
 * of its pages are shared, less often (every TUNE_SHARE_EVERY_MAX rounds
 * at worst). */
static void tune_share(struct p2m *p, struct tune_rec *r)
{
    if (!share_enabled() || !p->share)
        return;
    struct share_stats ss;
    share_get_stats(&ss);
    unsigned every = p->share_every ? p->share_every : 1;
    if (ss.rounds < r->round0 + every)
        return; /* not yet a round in which it was visited */
    uint64_t merged = p->st.share_merged + p->st.share_zero;
    uint64_t yield = merged - r->merged0;
    uint64_t pages = p->count[P2M_RESIDENT] + p->count[P2M_SHARED];
    r->round0 = ss.rounds;
    r->merged0 = merged;
    unsigned next = every;
    if (yield && yield * 100 >= pages && every > 1)
        next = every / 2;
    else if (!yield && p->count[P2M_SHARED] * 100 < pages * TUNE_SHARE_LOW_PCT &&
             every < TUNE_SHARE_EVERY_MAX)
        next = every * 2;
    if (next == every)
        return;
    p->share_every = (uint8_t)next;
    if (next > every)
        pa.st.share_slower++;
    else
        pa.st.share_faster++;
    pr_info(LS_MM, "vm %s: tune: share scanner now visits it every %u round%s (%llu merges in "
                   "its last round, %llu of %llu pages shared)",
            p->name, next, next == 1 ? "" : "s", (unsigned long long)yield,
            (unsigned long long)p->count[P2M_SHARED], (unsigned long long)pages);
}

void policy_tune(void)
{
    for (int i = 0; i < mm_vm_count(); i++) {
        struct p2m *p = mm_vm_at(i);
        struct tune_rec *r = rec_of(p);
        if (!r)
            continue;
        if (p->st.sweeps != r->sweeps0) {
            r->dirty += p->st.last_dirty; /* the latest round's; rounds in between are lost */
            r->sweeps0 = p->st.sweeps;
        }
        tune_compress(p, r);
        tune_share(p, r);
    }
}

void policy_alloc_tick(uint64_t now, uint64_t ticks_per_ms)
{
    if (!pa.started) {
        pa.started = true;
        pa.last_period = now;
    }
    if (now - pa.last_period >= ticks_per_ms * pa.period_ms) {
        pa.last_period = now;
        pa.st.periods++;
        for (int i = 0; i < mm_vm_count(); i++) {
            struct p2m *p = mm_vm_at(i);
            if (pa.sample_pages)
                p2m_sample_period(p, pa.sample_pages);
            else
                p2m_sample_stop(p);
        }
    }
    policy_alloc_update();
    policy_tune();
}

void policy_alloc_get_stats(struct policy_tune_stats *s)
{
    *s = pa.st;
}

void policy_alloc_print_vm(const struct p2m *p)
{
    struct alloc_client c;
    client_of(p, &c);
    uint64_t rho = policy_alloc_rho_milli(&c, pa.tax);
    pr_info(LS_MM, "vm %s: alloc: shares %llu, charged %llu frames, target %llu, rho %llu per "
                   "1000 pages (idle tax %u%%); working set: sweep %llu pages, sampled %llu "
                   "pages (active %u.%u%%, fast %u slow %u per mille, %llu periods, %llu touches "
                   "of %llu sampled); tune: compression %s, share scan every %u round%s",
            p->name, (unsigned long long)c.shares, (unsigned long long)c.pages,
            (unsigned long long)p->alloc_target,
            rho == UINT64_MAX ? 0ULL : (unsigned long long)rho, pa.tax,
            (unsigned long long)p->st.ws_pages,
            (unsigned long long)p2m_sample_active_pages(p), c.active_pm / 10, c.active_pm % 10,
            p->smp.fast_pm, p->smp.slow_pm, (unsigned long long)p->smp.periods,
            (unsigned long long)p->smp.touches, (unsigned long long)p->smp.marked,
            p->compress_paused ? "paused" : "on", p->share_every ? p->share_every : 1,
            p->share_every > 1 ? "s" : "");
}

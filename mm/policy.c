/* The memory policy (mm/policy.h): machine memory states, the techniques
 * each enables, background reclaim under its CPU budget, the victim and
 * technique of machine reclaim, the verdict on waiting vCPUs and the
 * per-fault accounting. The balloon's part is mm/policy_balloon.c. */
#include "mm/policy.h"
#include "mm/policy_alloc.h"
#include "lib/fmt.h"
#include "lib/log.h"
#include "mm/balloon.h"
#include "mm/frame.h"
#include "mm/mm.h"
#include "mm/mm_backend.h"
#include "mm/share.h"
#include "mm/swap.h"
#include "mm/zpool.h"

static uint64_t min_free_set, low_mark_set; /* frames; 0: default */
static enum mem_state state = MS_HIGH;
static bool state_known;
static unsigned started;                    /* techniques ordered since the last change */
static struct policy_stats st;
static uint64_t clock_hz;
static uint32_t share_ms = 20, share_cpu = 5, reclaim_cpu = POLICY_RECLAIM_CPU_DEFAULT;

static const char *const state_names[MS_COUNT] = { "high", "clear", "soft", "hard", "low" };
static const char *const tech_names[PT_COUNT] = {
    "sharing", "faster sharing", "balloon", "same-filled reclaim", "compression", "swap",
    "direct reclaim",
};
/* Each state's techniques: a worse state adds to the better one's. */
static const unsigned techs[MS_COUNT] = {
    [MS_HIGH] = PT_SHARE,
    [MS_CLEAR] = PT_SHARE | PT_SHARE_FAST,
    [MS_SOFT] = PT_SHARE | PT_SHARE_FAST | PT_BALLOON | PT_FILLED,
    [MS_HARD] = PT_SHARE | PT_SHARE_FAST | PT_BALLOON | PT_FILLED | PT_COMPRESS | PT_SWAP,
    [MS_LOW] = PT_SHARE | PT_SHARE_FAST | PT_BALLOON | PT_FILLED | PT_COMPRESS | PT_SWAP |
               PT_DIRECT,
};

const char *policy_state_name(enum mem_state s)
{
    return (unsigned)s < MS_COUNT ? state_names[s] : "?";
}

const char *policy_tech_name(unsigned i)
{
    return i < PT_COUNT ? tech_names[i] : "?";
}

unsigned policy_techniques(enum mem_state s)
{
    return (unsigned)s < MS_COUNT ? techs[s] : 0;
}

enum mem_state policy_state(void)
{
    return state;
}

bool policy_allows(unsigned t)
{
    return (techs[state] & t) == t;
}

/* ---- min_free and the thresholds ------------------------------------------ */

uint64_t policy_scale_min_free(uint64_t frames)
{
    const uint64_t gib = (1ULL << 30) / PAGE_SIZE;
    static const struct {
        uint64_t gibs;
        unsigned pct;
    } tier[] = { { 4, 6 }, { 8, 4 }, { 16, 2 }, { 0, 1 } }; /* 0: the rest */
    uint64_t left = frames, hundredths = 0;
    for (unsigned i = 0; i < sizeof(tier) / sizeof(tier[0]) && left; i++) {
        uint64_t take = tier[i].gibs && left > tier[i].gibs * gib ? tier[i].gibs * gib : left;
        hundredths += take * tier[i].pct;
        left -= take;
    }
    return hundredths / 100 ? hundredths / 100 : 1;
}

void policy_set_min_free(uint64_t frames)
{
    min_free_set = frames;
}

uint64_t policy_min_free(void)
{
    if (min_free_set)
        return min_free_set;
    if (low_mark_set) /* the low state then starts at the low mark */
        return (low_mark_set * 100 + 31) / 32;
    struct frame_stats fs;
    frame_get_stats(&fs);
    return policy_scale_min_free(fs.frames);
}

void policy_set_low_mark(uint64_t frames)
{
    low_mark_set = frames;
}

uint64_t policy_low_mark(void)
{
    if (low_mark_set)
        return low_mark_set;
    uint64_t l = policy_min_free() * 32 / 100;
    return l ? l : 1;
}

uint64_t policy_threshold(enum mem_state s)
{
    uint64_t m = policy_min_free(), low = policy_low_mark();
    uint64_t soft = m * 64 / 100 > low ? m * 64 / 100 : low;
    uint64_t clear = m > soft ? m : soft;
    switch (s) {
    case MS_HIGH:
        return 4 * clear;
    case MS_CLEAR:
        return clear;
    case MS_SOFT:
        return soft;
    case MS_HARD:
        return low;
    default:
        return 0;
    }
}

uint64_t policy_free(void)
{
    uint64_t free = frame_free_count(), owed = mm_owed_reservations();
    return free > owed ? free - owed : 0;
}

/* ---- states ------------------------------------------------------------------- */

/* What each VM and the reclaimers had at the last change, for the cause. */
static struct {
    uint16_t owner[MM_MAX_VMS];
    uint64_t charge[MM_MAX_VMS];
    int n;
    uint64_t bg, direct, balloon;
} snap;

static uint64_t balloon_freed_all(void)
{
    uint64_t sum = 0;
    for (int i = 0; i < mm_vm_count(); i++)
        sum += mm_vm_at(i)->st.balloon_freed;
    return sum;
}

static void take_snapshot(void)
{
    struct mm_stats ms;
    mm_get_stats(&ms);
    snap.n = mm_vm_count() < MM_MAX_VMS ? mm_vm_count() : MM_MAX_VMS;
    for (int i = 0; i < snap.n; i++) {
        snap.owner[i] = mm_vm_at(i)->owner;
        snap.charge[i] = p2m_charge(mm_vm_at(i));
    }
    snap.bg = st.bg_freed;
    snap.direct = ms.reclaimed;
    snap.balloon = balloon_freed_all();
}

static uint64_t charge_then(uint16_t owner)
{
    for (int i = 0; i < snap.n; i++)
        if (snap.owner[i] == owner)
            return snap.charge[i];
    return 0; /* a VM that came since */
}

static void describe_cause(char *buf, size_t n, bool worse)
{
    if (worse) {
        struct p2m *who = NULL;
        uint64_t most = 0;
        for (int i = 0; i < mm_vm_count(); i++) {
            struct p2m *p = mm_vm_at(i);
            uint64_t then = charge_then(p->owner), now = p2m_charge(p);
            if (now > then && now - then > most) {
                most = now - then;
                who = p;
            }
        }
        if (who)
            fmt_snprintf(buf, n, "vm %s grew by %llu frames", who->name,
                         (unsigned long long)most);
        else
            fmt_snprintf(buf, n, "frames taken outside the VMs (pool, tables)");
        return;
    }
    struct mm_stats ms;
    mm_get_stats(&ms);
    uint64_t bg = st.bg_freed - snap.bg, direct = ms.reclaimed - snap.direct;
    uint64_t bl = balloon_freed_all() - snap.balloon;
    if (bg || direct || bl)
        fmt_snprintf(buf, n, "background reclaim freed %llu frames, direct reclaim %llu, "
                             "balloons %llu",
                     (unsigned long long)bg, (unsigned long long)direct, (unsigned long long)bl);
    else
        fmt_snprintf(buf, n, "frames given back (a VM stopped or shrank)");
}

/* Low begins at the low mark itself: with free at the mark, the next
 * frame beyond a reservation would take it under (mm.c refuses it and
 * reclaims directly), so the state must already allow direct reclaim. */
static bool at_least(uint64_t f, enum mem_state s)
{
    uint64_t t = policy_threshold(s);
    return s == MS_HARD ? f > t : f >= t;
}

uint64_t policy_hyst(enum mem_state s)
{
    uint64_t base = POLICY_HYST(policy_min_free());
    uint64_t rel = s < MS_LOW ? policy_threshold(s) / 4 : 0;
    return rel > base ? rel : base;
}

static enum mem_state raw_state(uint64_t f)
{
    for (int s = MS_HIGH; s < MS_LOW; s++)
        if (at_least(f, (enum mem_state)s))
            return (enum mem_state)s;
    return MS_LOW;
}

static void change(enum mem_state to, uint64_t f)
{
    char cause[128], a[16], b[16], c[16];
    enum mem_state from = state;
    bool worse = to > from;
    describe_cause(cause, sizeof(cause), worse);
    /* The threshold crossed: entering a worse state, its upper one; a
     * better state, its lower one plus the hysteresis. */
    uint64_t mark = worse ? policy_threshold((enum mem_state)(to - 1))
                          : policy_threshold(to) + policy_hyst(to);
    pr_info(LS_MM, "memory state %s -> %s: free %s (%s %s; min_free %s), cause: %s",
            policy_state_name(from), policy_state_name(to), fmt_size(a, sizeof(a), f * PAGE_SIZE),
            worse ? "below" : "at least", fmt_size(b, sizeof(b), mark * PAGE_SIZE),
            fmt_size(c, sizeof(c), policy_min_free() * PAGE_SIZE), cause);
    state = to;
    st.transitions++;
    st.entered[to]++;
    started = 0;
    take_snapshot();
}

enum mem_state policy_update(void)
{
    uint64_t f = policy_free();
    enum mem_state r = raw_state(f);
    if (!state_known) {
        state_known = true;
        state = r;
        st.entered[r]++;
        take_snapshot();
        return state;
    }
    if (r > state) {
        /* Worse: at once, straight to where free memory is. */
        change(r, f);
    } else if (r < state) {
        /* Better: only as far as free memory clears each threshold by the
         * hysteresis margin. */
        enum mem_state to = state;
        while (to > MS_HIGH && f >= policy_threshold((enum mem_state)(to - 1)) +
                                        policy_hyst((enum mem_state)(to - 1)))
            to = (enum mem_state)(to - 1);
        /* Inside the pressure band a reclaim episode keeps its techniques
         * until background reclaim has reached its target (clear + its
         * margin); only low gives way to hard before that. */
        if (to >= MS_SOFT && to < state)
            to = state == MS_LOW ? MS_HARD : state;
        if (to != state)
            change(to, f);
    }
    return state;
}

static unsigned bit_index(unsigned t)
{
    unsigned i = 0;
    while (i < PT_COUNT && !(t & (1u << i)))
        i++;
    return i;
}

bool policy_order(unsigned t)
{
    unsigned i = bit_index(t);
    if (i >= PT_COUNT)
        return false;
    if (!(techs[state] & t)) {
        st.tech_denied[i]++;
        return false;
    }
    st.tech_runs[i]++;
    /* Says when a technique beyond the base rate's sharing starts, once
     * per state entered. */
    if (!(started & t) && t != PT_SHARE) {
        char a[16];
        pr_info(LS_MM, "policy: %s starts in state %s (free %s)", tech_names[i],
                policy_state_name(state), fmt_size(a, sizeof(a), policy_free() * PAGE_SIZE));
    }
    started |= t;
    return true;
}

void policy_get_stats(struct policy_stats *s)
{
    *s = st;
}

/* ---- configuration -------------------------------------------------------------- */

void policy_configure(uint32_t sms, uint32_t scpu, uint32_t rcpu)
{
    share_ms = sms ? sms : 20;
    share_cpu = scpu;
    reclaim_cpu = rcpu > 100 ? 100 : rcpu;
}

void policy_set_clock(uint64_t hz)
{
    clock_hz = hz;
}

/* ---- victims and machine reclaim ----------------------------------------------- */

struct p2m *policy_pick_victim(uint32_t tried, int *index)
{
    /* Who gives first: the VM with the lowest shares-per-page ratio, idle
     * pages taxed (mm/policy_alloc.c: Waldspurger's min-funding
     * revocation), among those charged above their reservation. */
    bool skip[MM_MAX_VMS] = { false };
    for (int i = 0; i < mm_vm_count() && i < MM_MAX_VMS; i++)
        skip[i] = (tried >> i) & 1;
    struct p2m *v = policy_alloc_victim_skip(skip);
    int best = -1;
    for (int i = 0; v && i < mm_vm_count(); i++)
        if (mm_vm_at(i) == v)
            best = i;
    /* Nobody above its reservation with private pages by that rule: the
     * VM furthest above its reservation (resident pages only). */
    uint64_t best_excess = 0;
    for (int i = 0; best < 0 && i < mm_vm_count() && i < 32; i++) {
        const struct p2m *q = mm_vm_at(i);
        uint64_t r = q->count[P2M_RESIDENT];
        uint64_t excess = r > q->reserve ? r - q->reserve : 0;
        if (!(tried & (1u << i)) && excess > best_excess) {
            best = i;
            best_excess = excess;
        }
    }
    if (index)
        *index = best;
    return best < 0 ? NULL : mm_vm_at(best);
}

uint64_t policy_reclaim_vm(struct p2m *v, uint64_t want, uint64_t max_scan, unsigned rt,
                           bool direct)
{
    unsigned paused = v->compress_paused ? rt & P2M_RT_COMPRESS : 0;
    uint64_t got = p2m_reclaim_with(v, want, max_scan, rt & ~paused);
    if (got < want && paused && direct) {
        uint64_t more = p2m_reclaim_with(v, want - got, max_scan, rt);
        if (more)
            st.pause_overrides++;
        got += more;
    }
    return got;
}

uint64_t policy_reclaim_machine(uint64_t want, uint64_t max_scan, unsigned rt)
{
    uint64_t got = 0;
    uint32_t tried = 0;
    int i;
    struct p2m *v;
    while (got < want && (v = policy_pick_victim(tried, &i))) {
        tried |= 1u << i;
        got += policy_reclaim_vm(v, want - got, max_scan, rt, true);
    }
    /* Shared frames are charged to no VM: the machine compresses them,
     * each as a whole, when private pages did not free enough. */
    if (got < want && (rt & P2M_RT_COMPRESS))
        got += share_reclaim(want - got);
    return got;
}

/* ---- background reclaim ---------------------------------------------------------- */

uint64_t policy_limit_headroom(const struct p2m *p)
{
    uint64_t h = p->limit / 16;
    return h > 2 * MM_RECLAIM_BATCH ? h : 2 * MM_RECLAIM_BATCH;
}

/* Frames p may still take under its limit (UINT64_MAX: no limit). */
static uint64_t limit_room(const struct p2m *p)
{
    if (!p->limited)
        return UINT64_MAX;
    uint64_t c = p2m_guest_charge(p);
    return c < p->limit ? p->limit - c : 0;
}

static bool machine_short(void)
{
    return policy_free() < policy_threshold(MS_CLEAR) + policy_hyst(MS_CLEAR);
}

static bool background_needed(void)
{
    for (int i = 0; i < mm_vm_count(); i++) {
        const struct p2m *p = mm_vm_at(i);
        if (limit_room(p) < policy_limit_headroom(p) && p->count[P2M_RESIDENT])
            return true;
    }
    return policy_techniques(state) & PT_FILLED && machine_short();
}

/* The balloon is working on v: its driver listens and has not yet given
 * what it was asked for. Compression and swap take it last. */
static bool balloon_busy(const struct p2m *v)
{
    return v->bl.polls && v->bl.policy && v->bl.target > balloon_guest_held(v);
}

uint64_t policy_background(uint64_t max_cycles)
{
    uint64_t t0 = mm_now(), freed = 0;
    st.bg_runs++;
    /* VMs near their limit: every technique, whatever the machine's state
     * (a limit is the VM's own contract). */
    for (int i = 0; i < mm_vm_count(); i++) {
        struct p2m *p = mm_vm_at(i);
        uint64_t h = policy_limit_headroom(p);
        while (limit_room(p) < h + h / 2 && mm_now() - t0 < max_cycles) {
            uint64_t want = h + h / 2 - limit_room(p);
            uint64_t got = policy_reclaim_vm(p, want < MM_RECLAIM_BATCH ? want : MM_RECLAIM_BATCH,
                                             MM_RECLAIM_SCAN, P2M_RT_ALL, false);
            freed += got;
            st.bg_freed += got;
            st.bg_limit_freed += got;
            if (!got)
                break;
        }
    }
    /* The machine: back above the clear threshold plus the hysteresis,
     * with what the state allows, cheapest first. The balloon is asked by
     * its own tick; VMs whose balloon is at work are compressed last. */
    enum mem_state s = policy_update();
    unsigned allowed = policy_techniques(s);
    if (allowed & PT_FILLED && machine_short()) {
        unsigned rt = P2M_RT_FILLED;
        policy_order(PT_FILLED);
        if (allowed & PT_COMPRESS && zpool_enabled() && policy_order(PT_COMPRESS))
            rt |= P2M_RT_COMPRESS;
        if (allowed & PT_SWAP && swap_enabled() && policy_order(PT_SWAP))
            rt |= P2M_RT_SWAP;
        uint32_t tried = 0;
        for (int pass = 0; pass < 2 && machine_short() && mm_now() - t0 < max_cycles; pass++) {
            int i;
            struct p2m *v;
            while (machine_short() && mm_now() - t0 < max_cycles &&
                   (v = policy_pick_victim(tried, &i))) {
                if (!pass && rt != P2M_RT_FILLED && balloon_busy(v)) {
                    tried |= 1u << i;
                    continue;
                }
                uint64_t want = policy_threshold(MS_CLEAR) + policy_hyst(MS_CLEAR) -
                                policy_free();
                uint64_t got = policy_reclaim_vm(v, want < MM_RECLAIM_BATCH ? want : MM_RECLAIM_BATCH,
                                                 MM_RECLAIM_SCAN, rt, false);
                freed += got;
                st.bg_freed += got;
                if (!got)
                    tried |= 1u << i; /* nothing more there with these techniques */
            }
            tried = 0;
        }
        if (machine_short() && rt & P2M_RT_COMPRESS && mm_now() - t0 < max_cycles) {
            uint64_t got = share_reclaim(MM_RECLAIM_BATCH);
            freed += got;
            st.bg_freed += got;
        }
    }
    st.bg_cycles += mm_now() - t0;
    policy_update();
    return freed;
}

/* ---- the scheduler's calls ---------------------------------------------------------- */

void policy_tick(uint64_t now)
{
    static uint64_t last, credit, last_balloon, last_share;
    st.ticks++;
    mm_periodic();
    uint64_t ms = clock_hz >= 1000 ? clock_hz / 1000 : 1;
    policy_update();
    if (now - last_balloon >= ms * BALLOON_TICK_MS) {
        balloon_policy_tick();
        policy_alloc_tick(now, ms); /* targets, working-set samples, self-tuning */
        last_balloon = now;
    }
    uint64_t share_ticks = ms * share_ms;
    if (now - last_share >= share_ticks) {
        /* At most share_cpu % of the CPU, twice that where faster sharing
         * is allowed. */
        policy_order(PT_SHARE);
        share_tick(share_ticks * share_cpu / 100);
        st.share_ticks++;
        if (techs[state] & PT_SHARE_FAST && policy_order(PT_SHARE_FAST)) {
            share_tick(share_ticks * share_cpu / 100);
            st.share_ticks++;
        }
        last_share = now;
    }
    /* Background reclaim: a credit of reclaim_cpu % of the time since the
     * last tick, at most a quarter second's worth. */
    if (last && now > last)
        credit += (now - last) * reclaim_cpu / 100;
    last = now;
    uint64_t cap = ms * 250 * reclaim_cpu / 100;
    if (credit > cap)
        credit = cap;
    if (reclaim_cpu && credit && background_needed()) {
        uint64_t t0 = mm_now();
        policy_background(credit);
        uint64_t spent = mm_now() - t0;
        credit = spent < credit ? credit - spent : 0;
    }
}

void policy_idle(uint64_t deadline)
{
    /* The CPU is free: reclaim ahead of demand as long as there is need
     * (each run bounded by the deadline), then let the scanner have it. */
    while (reclaim_cpu && mm_now() < deadline && background_needed())
        if (!policy_background(deadline - mm_now()))
            break;
    share_idle(deadline);
}

enum policy_wait policy_waiter(struct p2m *p, uint64_t wait_since, uint64_t wait_free,
                               uint64_t now, uint64_t limit_ms, char *why, size_t whylen)
{
    /* Faults reclaim in bounded passes; a waiter gets a pass over all pages
     * of every VM (at most every 100 ms: a full pass is long) before anyone
     * is declared out of memory. */
    static uint64_t last_full;
    if (frame_free_count() == wait_free && now - last_full > clock_hz / 10) {
        mm_reclaim_for_waiters();
        st.waiter_passes++;
        last_full = now;
    }
    if (frame_free_count() != wait_free)
        return PW_RUN;
    if (now - wait_since > clock_hz / 1000 * limit_ms) {
        fmt_snprintf(why, whylen, "out of memory: waited %llu ms for a frame and nothing could "
                                  "be reclaimed (resident %llu frames, limit %llu%s; memory "
                                  "state %s)",
                     (unsigned long long)limit_ms, (unsigned long long)p->count[P2M_RESIDENT],
                     (unsigned long long)p->limit, swap_full() ? ", swap full" : "",
                     policy_state_name(state));
        return PW_STOP;
    }
    return PW_WAIT;
}

/* ---- fault accounting ------------------------------------------------------------- */

static unsigned bucket_of(uint64_t cycles)
{
    unsigned b = cycles ? 64u - (unsigned)__builtin_clzll(cycles) : 0;
    return b < P2M_COST_BUCKETS ? b : P2M_COST_BUCKETS - 1;
}

void policy_fault_done(struct p2m *p, int kind, uint64_t cycles)
{
    if (kind < 0 || kind >= PF_KIND_COUNT)
        return;
    p->st.cost_hist[kind][bucket_of(cycles)]++;
    if (p->direct_reclaim)
        p->st.direct[kind]++;
}

uint64_t policy_cost_percentile(const struct p2m *p, int kind, unsigned pct)
{
    if (kind < 0 || kind >= PF_KIND_COUNT || !pct)
        return 0;
    const uint64_t *h = p->st.cost_hist[kind];
    uint64_t total = 0;
    for (int b = 0; b < P2M_COST_BUCKETS; b++)
        total += h[b];
    if (!total)
        return 0;
    uint64_t rank = (total * (pct > 100 ? 100 : pct) + 99) / 100, cum = 0;
    for (int b = 0; b < P2M_COST_BUCKETS; b++) {
        if (cum + h[b] >= rank && h[b]) {
            uint64_t lo = b ? 1ULL << (b - 1) : 0, hi = b ? 1ULL << b : 1;
            return lo + (hi - lo) * (rank - cum) / h[b];
        }
        cum += h[b];
    }
    return 0;
}

static const char *const kind_names[PF_KIND_COUNT] = {
    "demand-zero", "refill", "decompress", "copy-on-write", "swap-in", "spurious", "outside",
    "mmio",
};

void policy_print_vm(struct p2m *p)
{
    char line[512];
    size_t n = 0;
    for (int k = 0; k < PF_KIND_COUNT && n < sizeof(line); k++) {
        uint64_t total = 0;
        for (int b = 0; b < P2M_COST_BUCKETS; b++)
            total += p->st.cost_hist[k][b];
        if (!total)
            continue;
        n += (size_t)fmt_snprintf(line + n, sizeof(line) - n, "%s%s %llu/%llu p50 %llu p99 %llu",
                                  n ? "; " : "", kind_names[k],
                                  (unsigned long long)p->st.direct[k],
                                  (unsigned long long)total,
                                  (unsigned long long)policy_cost_percentile(p, k, 50),
                                  (unsigned long long)policy_cost_percentile(p, k, 99));
    }
    if (n)
        pr_info(LS_MM, "vm %s: direct reclaim/faults and cost in cycles by kind: %s", p->name,
                line);
}

void policy_print(void)
{
    char a[16], b[16], c[16], d[16], e[16];
    pr_info(LS_MM, "policy: state %s, min_free %s (high >= %s, clear >= %s, soft >= %s, hard >= "
                   "%s), %llu transitions; background reclaim (%u%% of the CPU) %llu runs freed "
                   "%llu frames (%llu under limits) in %llu cycles; techniques denied %llu; "
                   "paused compression used by direct reclaim %llu times",
            policy_state_name(state), fmt_size(a, sizeof(a), policy_min_free() * PAGE_SIZE),
            fmt_size(b, sizeof(b), policy_threshold(MS_HIGH) * PAGE_SIZE),
            fmt_size(c, sizeof(c), policy_threshold(MS_CLEAR) * PAGE_SIZE),
            fmt_size(d, sizeof(d), policy_threshold(MS_SOFT) * PAGE_SIZE),
            fmt_size(e, sizeof(e), policy_threshold(MS_HARD) * PAGE_SIZE),
            (unsigned long long)st.transitions, reclaim_cpu, (unsigned long long)st.bg_runs,
            (unsigned long long)st.bg_freed, (unsigned long long)st.bg_limit_freed,
            (unsigned long long)st.bg_cycles,
            (unsigned long long)(st.tech_denied[0] + st.tech_denied[1] + st.tech_denied[2] +
                                 st.tech_denied[3] + st.tech_denied[4] + st.tech_denied[5] +
                                 st.tech_denied[6]),
            (unsigned long long)st.pause_overrides);
}

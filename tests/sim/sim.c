/* The deterministic memory-manager simulator.
 *
 *   sim [--seed S] [--accesses N] [--check-every K] [--frames F] [--vms N]
 *       [--gfns G] [--ws W] [--limit L] [--scan K] [--quiet]
 *
 * Four VMs, one per access pattern (sequential, uniform, zipf, phase
 * change), overcommit a machine several times over; limits force zero-page
 * reclaim. Every access goes through the modelled EPT and every read is
 * checked; after every access the local invariants (accounting, the
 * touched page's p2m/EPT/frame/content) are checked, and every K accesses
 * all of them over every GFN. A failure prints the seed that reproduces it.
 * The work of every single fault (model.h: sim_fault_work) is counted and
 * the largest must stay under a bound derived from the reclaim budgets:
 * mm/ runs faults in VM-exit context. The options change the machine
 * (frames), the number of VMs (the four patterns repeat), their size,
 * working set and limit, and the scanner's pages per 500 steps. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mm/mm.h"
#include "mm/policy.h"
#include "mm/policy_alloc.h"
#include "mm/share.h"
#include "mm/swap.h"
#include "mm/zpool.h"
#include "tests/sim/model.h"

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dULL;
}

static double rnd01(void)
{
    return (double)(rnd() >> 11) / (double)(1ULL << 53);
}

enum pattern { PAT_SEQUENTIAL, PAT_UNIFORM, PAT_ZIPF, PAT_PHASE, PAT_COUNT };
static const char *const pattern_names[] = { "sequential", "uniform", "zipf", "phase" };

struct guest {
    int vm;
    enum pattern pat;
    uint64_t ngfn, ws;  /* pages, working-set size */
    uint64_t cursor;    /* sequential position / phase base */
    double *zipf_cdf;
    uint64_t phase_len, in_phase;
};

static uint64_t pick_gfn(struct guest *g)
{
    switch (g->pat) {
    case PAT_SEQUENTIAL:
        g->cursor = (g->cursor + 1) % g->ws;
        return g->cursor;
    case PAT_UNIFORM:
        return rnd() % g->ws;
    case PAT_ZIPF: {
        double u = rnd01();
        uint64_t lo = 0, hi = g->ws - 1;
        while (lo < hi) {
            uint64_t mid = (lo + hi) / 2;
            if (g->zipf_cdf[mid] < u)
                lo = mid + 1;
            else
                hi = mid;
        }
        /* Spread hot pages over the space instead of packing them at 0. */
        return (lo * 2654435761ULL) % g->ngfn;
    }
    default:
        if (++g->in_phase >= g->phase_len) {
            g->in_phase = 0;
            g->cursor = (g->cursor + g->ws / 2) % g->ngfn; /* half the set changes */
        }
        return (g->cursor + rnd() % g->ws) % g->ngfn;
    }
}

static enum sim_op pick_op(void)
{
    uint64_t r = rnd() % 100;
    return r < 40 ? OP_READ : r < 88 ? OP_WRITE_TAG : OP_WRITE_ZERO;
}

/* The balloon, as a guest driver would drive it: a batch of distinct
 * GFNs of the working set given up (they read as zero from then on), then
 * on the next turn the ones still ballooned taken back. */
enum { BALLOON_BATCH = 16 };
struct balloon_state {
    uint64_t gfns[BALLOON_BATCH];
    unsigned n;
    uint64_t refused;
};

static void balloon_turn(struct guest *g, struct balloon_state *b)
{
    struct sim_vm *v = &sim->vm[g->vm];
    struct p2m *p = &v->p2m;
    unsigned bad;
    if (b->n) {
        uint64_t back[BALLOON_BATCH];
        unsigned k = 0;
        for (unsigned i = 0; i < b->n; i++)
            if (p2m_peek(p, b->gfns[i])->state == P2M_BALLOONED)
                back[k++] = b->gfns[i];
        if (k && p2m_balloon_deflate(p, back, k, &bad))
            b->refused++;
        b->n = 0;
        return;
    }
    for (unsigned tries = 0; b->n < BALLOON_BATCH && tries < 4 * BALLOON_BATCH; tries++) {
        uint64_t gfn = rnd() % g->ws, dup = 0;
        for (unsigned i = 0; i < b->n; i++)
            dup |= b->gfns[i] == gfn;
        if (!dup && p2m_peek(p, gfn)->state != P2M_BALLOONED)
            b->gfns[b->n++] = gfn;
    }
    if (p2m_balloon_inflate(p, b->gfns, b->n, &bad)) {
        b->refused++;
        b->n = 0;
        return;
    }
    for (unsigned i = 0; i < b->n; i++)
        v->gen[b->gfns[i]] = 0; /* given up: reads as zero */
}

/* Floors: a run must show every mechanism at work, at least so many per
 * million accesses, so that a change silently disabling one fails. The
 * rates are about a fifth of the lowest of the three standard runs (make
 * test: seed 1 with 10M accesses, seed 7 with 1M under ASan, the 8-VM run
 * with 400K); shared frames reclaimed whole are rare in the 8-VM run (a
 * pass walks 2 x 524,288 GFNs at 4096 a call), so theirs is 1 per million,
 * at least 1. */
/* The policy's invariants after one of its runs: the state is where free
 * memory puts it, give or take the hysteresis (a worse state is entered at
 * once, a better one only past its margin, soft and hard only for clear); no technique was ordered in a
 * state that does not allow it; the machine's background reclaim took no
 * VM below its reservation (before[] = residents before the run). */
static uint64_t policy_violations(const uint64_t *before, int n)
{
    uint64_t bad = 0, f = policy_free();
    enum mem_state s = policy_state();
    if (s < MS_LOW && (s == MS_HARD ? f <= policy_threshold(s) : f < policy_threshold(s)))
        bad++, fprintf(stderr, "sim: policy: state %s with free %llu below its threshold\n",
                       policy_state_name(s), (unsigned long long)f);
    /* The state it must have climbed to: soft and hard are left only for
     * clear (one reclaim episode), the others for the next better one. */
    enum mem_state up = s == MS_SOFT || s == MS_HARD ? MS_CLEAR : (enum mem_state)(s - 1);
    if (s > MS_HIGH && f >= policy_threshold(up) + policy_hyst(up))
        bad++, fprintf(stderr, "sim: policy: state %s with free %llu past the better one's margin\n",
                       policy_state_name(s), (unsigned long long)f);
    struct policy_stats ps;
    policy_get_stats(&ps);
    for (int t = 0; t < PT_COUNT; t++)
        if (ps.tech_denied[t])
            bad++, fprintf(stderr, "sim: policy: %s ordered in a state without it\n",
                           policy_tech_name((unsigned)t));
    for (int i = 0; i < n; i++) {
        const struct p2m *p = &sim->vm[i].p2m;
        if (sim->vm[i].live && before[i] <= p->reserve && p->count[P2M_RESIDENT] < before[i])
            bad++, fprintf(stderr, "sim: policy: vm %s reclaimed below its reservation\n", p->name);
        if (sim->vm[i].live && p->limited && p2m_guest_charge(p) > p->limit)
            bad++, fprintf(stderr, "sim: policy: vm %s above its limit\n", p->name);
    }
    sim->c.violations += bad;
    return bad;
}

/* Takes machine frames away (as the hypervisor's own use would) in phases
 * that walk free memory down through the states, then gives them back:
 * phase k % 6 eats down to 80%, 50%, 25%, 10% of min_free, or returns
 * everything. Background reclaim then has to bring free memory back. */
static mfn_t *eaten;
static uint64_t neaten;

static void squeeze(uint64_t phase)
{
    static const unsigned pct[6] = { 0, 80, 50, 25, 10, 0 };
    unsigned k = (unsigned)(phase % 6);
    if (!pct[k]) {
        while (neaten)
            frame_free(eaten[--neaten]);
        return;
    }
    uint64_t target = policy_min_free() * pct[k] / 100;
    while (frame_free_count() > target && neaten < sim->frames) {
        mfn_t m = frame_alloc(FS_HV, 0);
        if (m == MFN_INVALID)
            break;
        eaten[neaten++] = m;
    }
}

struct floor {
    const char *what;
    uint64_t got;
    double per_million;
};

static int check_floors(const struct floor *f, unsigned n, uint64_t accesses)
{
    int bad = 0;
    for (unsigned i = 0; i < n; i++) {
        uint64_t min = (uint64_t)(f[i].per_million * (double)accesses / 1e6);
        if (min < 1)
            min = 1;
        bool ok = f[i].got >= min;
        printf("sim: floor: %-24s %10llu (at least %llu)%s\n", f[i].what,
               (unsigned long long)f[i].got, (unsigned long long)min, ok ? "" : "  BELOW");
        bad += !ok;
    }
    return bad;
}

int main(int argc, char **argv)
{
    uint64_t seed = 1, accesses = 10000000, check_every = 250000;
    bool edges_optional = false; /* a run sized for another purpose need not take every edge */
    /* The machine and its guests (defaults: the standard run). */
    uint64_t machine_frames = 8192, ngfn = 3072, ws_pages = 0, limit = 1400, scan_pages = 128;
    int nguests = PAT_COUNT;
    int quiet = 0;
    if (argc > 1 && !strcmp(argv[1], "--bench-zero")) {
        /* Baseline for make bench-fault: zeroing 4 KiB pages. */
        enum { N = 4096 };
        uint8_t *buf = aligned_alloc(4096, (size_t)N * 4096);
        clock_t c0 = clock();
        uint64_t pages = 0;
        while (clock() - c0 < CLOCKS_PER_SEC / 2) {
            for (int i = 0; i < N; i++)
                memset(buf + (size_t)i * 4096, 0, 4096);
            __asm__ volatile("" : : "r"(buf) : "memory");
            pages += N;
        }
        double secs = (double)(clock() - c0) / CLOCKS_PER_SEC;
        printf("zero: %.0f pages/s\n", (double)pages / secs);
        free(buf);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--accesses") && i + 1 < argc)
            accesses = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--check-every") && i + 1 < argc)
            check_every = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--frames") && i + 1 < argc)
            machine_frames = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--vms") && i + 1 < argc)
            nguests = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--gfns") && i + 1 < argc)
            ngfn = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--ws") && i + 1 < argc)
            ws_pages = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--limit") && i + 1 < argc)
            limit = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--scan") && i + 1 < argc)
            scan_pages = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--quiet"))
            quiet = 1;
        else if (!strcmp(argv[i], "--edges-optional"))
            edges_optional = true;
        else {
            fprintf(stderr, "usage: %s [--seed S] [--accesses N] [--check-every K] [--frames F] "
                            "[--vms N] [--gfns G] [--ws W] [--limit L] [--scan K] "
                            "[--quiet] [--edges-optional]\n",
                    argv[0]);
            return 2;
        }
    }
    if (nguests < 1 || nguests > SIM_MAX_VMS || !ngfn || machine_frames < 1024) {
        fprintf(stderr, "sim: --vms must be 1..%d, --gfns non-zero, --frames at least 1024\n",
                SIM_MAX_VMS);
        return 2;
    }
    if (!ws_pages || ws_pages > ngfn)
        ws_pages = ngfn * 3 / 4;
    rng_state = seed * 0x9e3779b97f4a7c15ULL + 1;

    /* By default 32 MiB of machine memory, four VMs of 12 MiB each: 1.5x
     * overcommitted; limits below the working sets keep zero-page reclaim
     * busy. With --vms N the patterns repeat in that order. */
    sim_init(machine_frames);
    /* States within reach of this machine: min_free an eighth of it. */
    policy_set_min_free(machine_frames / 8);
    eaten = calloc(machine_frames, sizeof(*eaten));
    struct guest g[SIM_MAX_VMS];
    for (int i = 0; i < nguests; i++) {
        memset(&g[i], 0, sizeof(g[i]));
        g[i].pat = (enum pattern)(i % PAT_COUNT);
        g[i].ngfn = ngfn;
        g[i].ws = ws_pages;
        g[i].phase_len = 20000;
        /* Limits below the working sets force reclaim of the zero pages. */
        g[i].vm = sim_add_vm(ngfn, 128, limit, i % 2 == 0);
        if (g[i].vm < 0) {
            fprintf(stderr, "sim: cannot create VM %d\n", i);
            return 1;
        }
        /* Compression for the first two VMs (the others reclaim same-filled
         * pages only: the zipf VM's cold pages stay resident long enough to
         * be merged). Sharing: the first two VMs have one salt (they may
         * share frames), the third its own (intra-VM only), the fourth
         * none. */
        struct p2m *pp = &sim->vm[g[i].vm].p2m;
        pp->compress = g[i].pat == PAT_SEQUENTIAL || g[i].pat == PAT_UNIFORM;
        pp->share = g[i].pat != PAT_PHASE;
        if (g[i].pat == PAT_SEQUENTIAL || g[i].pat == PAT_UNIFORM)
            pp->salt = 7;
        if (g[i].pat == PAT_ZIPF) {
            g[i].zipf_cdf = malloc(g[i].ws * sizeof(double));
            double sum = 0;
            for (uint64_t k = 0; k < g[i].ws; k++)
                sum += 1.0 / (double)(k + 1);
            double acc = 0;
            for (uint64_t k = 0; k < g[i].ws; k++) {
                acc += 1.0 / (double)(k + 1) / sum;
                g[i].zipf_cdf[k] = acc;
            }
        }
    }

    struct balloon_state bl[SIM_MAX_VMS];
    memset(bl, 0, sizeof(bl));
    clock_t t0 = clock();
    uint64_t step = 0, stuck = 0;
    while (sim->c.accesses < accesses) {
        struct guest *gg = &g[step++ % (uint64_t)nguests];
        uint64_t gfn = pick_gfn(gg);
        if (!sim_access(gg->vm, gfn, pick_op())) {
            /* Waiting for memory: this vCPU does nothing this turn. Others
             * keep running; all of them stuck for long is a liveness bug. */
            if (++stuck > 100000) {
                fprintf(stderr, "sim: seed %llu: every VM waits for memory (deadlock)\n",
                        (unsigned long long)seed);
                return 1;
            }
            continue;
        }
        stuck = 0;
        sim_check_local(gg->vm, gfn);
        if (step % 50000 == 0) {
            for (int i = 0; i < nguests; i++)
                p2m_sweep(&sim->vm[g[i].vm].p2m);
            mm_periodic(); /* pool compaction, as between the hypervisor's slices */
        }
        if (step % 10000 == 0)
            balloon_turn(&g[step / 10000 % (uint64_t)nguests], &bl[step / 10000 % (uint64_t)nguests]);
        if (step % 5000 == 0)
            share_reclaim(8); /* shared frames compressed whole, as under pressure */
        if (step % 100000 == 0)
            squeeze(step / 100000);
        if (step % 2000 == 0) {
            /* The policy between slices: states, then background reclaim
             * (a bounded run), with its invariants. */
            uint64_t before[SIM_MAX_VMS];
            for (int i = 0; i < sim->nvms; i++)
                before[i] = sim->vm[i].p2m.count[P2M_RESIDENT];
            policy_update();
            policy_background(step % 4000 ? 200000 : UINT64_MAX);
            policy_violations(before, sim->nvms);
        }
        if (step % 500 == 0)
            share_scan(scan_pages); /* the scanner races the guests' writes */
        if (step % 20000 == 0) {
            /* Working-set sampling periods and the allocation policy's
             * targets and tuning (mm/p2m_sample.c, mm/policy_alloc.c). */
            for (int i = 0; i < nguests; i++)
                p2m_sample_period(&sim->vm[g[i].vm].p2m, 64);
            policy_alloc_update();
            policy_tune();
        }
        if (sim->c.accesses % check_every == 0)
            sim_check_full();
        if (sim->c.violations) {
            fprintf(stderr, "sim: FAIL: seed %llu, access %llu (rerun with --seed %llu)\n",
                    (unsigned long long)seed, (unsigned long long)sim->c.accesses,
                    (unsigned long long)seed);
            return 1;
        }
    }
    squeeze(0); /* everything back before the final checks */
    free(eaten);
    sim_check_full();
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    struct mm_stats ms;
    mm_get_stats(&ms);
    if (!quiet) {
        for (int i = 0; i < nguests; i++) {
            struct p2m *p = &sim->vm[g[i].vm].p2m;
            printf("sim: vm %s (%s%s): resident %llu/%llu peak %llu, faults %llu "
                   "(decompress %llu), zero-reclaimed %llu, filled %llu, compressed %llu "
                   "(now %llu), incompressible %llu, shared now %llu (merged %llu, cross-VM "
                   "%llu, copy-on-write %llu + last %llu), waits %llu, ws %llu pages\n",
                   p->name, pattern_names[g[i].pat], p->compress ? "" : ", no compression",
                   (unsigned long long)p->count[P2M_RESIDENT],
                   (unsigned long long)p->ngfn, (unsigned long long)p->st.peak_resident,
                   (unsigned long long)p->st.faults[PF_DEMAND_ZERO],
                   (unsigned long long)p->st.faults[PF_DECOMPRESS],
                   (unsigned long long)p->st.zero_reclaimed, (unsigned long long)p->st.filled,
                   (unsigned long long)p->st.compressed,
                   (unsigned long long)p->count[P2M_COMPRESSED],
                   (unsigned long long)p->st.incompressible,
                   (unsigned long long)p->count[P2M_SHARED], (unsigned long long)p->st.share_merged,
                   (unsigned long long)p->st.share_cross, (unsigned long long)p->st.cow_copies,
                   (unsigned long long)p->st.cow_last, (unsigned long long)p->st.waits,
                   (unsigned long long)p->st.ws_pages);
        }
        struct zpool_stats zs;
        zpool_get_stats(&zs);
        printf("sim: pool: %llu objects in %llu frames (peak %llu, cap %llu), density %.2f, "
               "ratio %.2f, stores %llu, refused %llu full / %llu no memory, compactions %llu "
               "moved %llu freed %llu frames\n",
               (unsigned long long)zs.objects, (unsigned long long)zs.frames,
               (unsigned long long)zs.peak_frames, (unsigned long long)zs.cap_frames,
               zs.frames ? (double)zs.data_bytes / (double)(zs.frames * PAGE_SIZE) : 0,
               zs.data_bytes ? (double)(zs.objects * PAGE_SIZE) / (double)zs.data_bytes : 0,
               (unsigned long long)zs.stores, (unsigned long long)zs.full,
               (unsigned long long)zs.nomem, (unsigned long long)zs.compactions,
               (unsigned long long)zs.moved, (unsigned long long)zs.compact_freed);
        struct swap_stats ws;
        swap_get_stats(&ws);
        printf("sim: swap: %llu of %llu slots used (peak %llu), out %llu pages + %llu pool "
               "objects, in %llu + %llu, writes %llu (%llu clustered, %llu split), %llu write "
               "errors injected, %llu times full\n",
               (unsigned long long)ws.used, (unsigned long long)ws.slots,
               (unsigned long long)ws.peak_used, (unsigned long long)ws.out_pages,
               (unsigned long long)ws.out_lz4, (unsigned long long)ws.in_pages,
               (unsigned long long)ws.in_lz4, (unsigned long long)ws.writes,
               (unsigned long long)ws.clustered, (unsigned long long)ws.scattered,
               (unsigned long long)ws.write_errors, (unsigned long long)ws.full_events);
        struct share_stats ss;
        share_get_stats(&ss);
        struct frame_stats fs;
        frame_get_stats(&fs);
        uint64_t refs = 0;
        for (int i = 0; i < nguests; i++)
            refs += sim->vm[g[i].vm].p2m.count[P2M_SHARED];
        printf("sim: share: %llu frames mapped by %llu GFNs now; %llu rounds, %llu hashed, "
               "%llu unstable, %llu compares, %llu collisions, %llu stale, %llu merges "
               "(%llu cross-VM), %llu new frames, %llu same-filled; reclaimed whole %llu frames "
               "of %llu GFNs, %llu decoded (%llu passes, %llu refused)\n",
               (unsigned long long)fs.count[FS_SHARED], (unsigned long long)refs,
               (unsigned long long)ss.rounds, (unsigned long long)ss.hashed,
               (unsigned long long)ss.unstable, (unsigned long long)ss.compares,
               (unsigned long long)ss.collisions, (unsigned long long)ss.stale,
               (unsigned long long)ss.merges,
               (unsigned long long)ss.merges_cross, (unsigned long long)ss.new_frames,
               (unsigned long long)ss.zero_merged, (unsigned long long)ss.reclaimed_frames,
               (unsigned long long)ss.reclaimed_gfns, (unsigned long long)ss.zobj_decoded,
               (unsigned long long)ss.reclaim_runs, (unsigned long long)ss.reclaim_refused);
    }
    printf("sim: seed %llu: %llu accesses, %llu faults (%.0f faults/s, %.0f accesses/s), "
           "%llu TLB hits, %llu walks, %llu waits, %llu reclaim runs freeing %llu frames, "
           "%llu local + %llu full invariant checks, %llu violations\n",
           (unsigned long long)seed, (unsigned long long)sim->c.accesses,
           (unsigned long long)sim->c.faults, secs > 0 ? (double)sim->c.faults / secs : 0,
           secs > 0 ? (double)sim->c.accesses / secs : 0, (unsigned long long)sim->c.tlb_hits,
           (unsigned long long)sim->c.walks, (unsigned long long)sim->c.waits,
           (unsigned long long)ms.reclaim_runs, (unsigned long long)ms.reclaimed,
           (unsigned long long)sim->c.local_checks, (unsigned long long)sim->c.full_checks,
           (unsigned long long)sim->c.violations);
    int rc = sim->c.violations ? 1 : 0;
    struct share_stats ss;
    share_get_stats(&ss);
    struct swap_stats sw;
    swap_get_stats(&sw);
    struct policy_stats pst;
    policy_get_stats(&pst);
    printf("sim: policy: state %s, %llu transitions (entered high %llu clear %llu soft %llu hard "
           "%llu low %llu), background reclaim %llu runs freed %llu frames (%llu under limits)\n",
           policy_state_name(policy_state()), (unsigned long long)pst.transitions,
           (unsigned long long)pst.entered[MS_HIGH], (unsigned long long)pst.entered[MS_CLEAR],
           (unsigned long long)pst.entered[MS_SOFT], (unsigned long long)pst.entered[MS_HARD],
           (unsigned long long)pst.entered[MS_LOW], (unsigned long long)pst.bg_runs,
           (unsigned long long)pst.bg_freed, (unsigned long long)pst.bg_limit_freed);
    uint64_t compressed = 0, decompressed = 0, cow = 0, balloon_ops = 0, balloon_refused = 0, sampled_touches = 0;
    for (int i = 0; i < nguests; i++) {
        const struct p2m *p = &sim->vm[g[i].vm].p2m;
        compressed += p->st.compressed;
        decompressed += p->st.faults[PF_DECOMPRESS];
        cow += p->st.cow_copies + p->st.cow_last;
        balloon_ops += p->st.balloon_inflated + p->st.balloon_deflated;
        balloon_refused += bl[i].refused;
        sampled_touches += p->smp.touches;
    }
    const struct floor floors[] = {
        { "sampled pages touched", sampled_touches, 1000 },
        { "pages compressed", compressed, 30000 },
        { "pages decompressed", decompressed, 30000 },
        { "pages merged", ss.merges, 200 },
        { "copy-on-write breaks", cow, 150 },
        { "shared frames reclaimed", ss.reclaimed_frames, 1 },
        { "pages swapped out", sw.out_pages + sw.out_lz4, 6000 },
        { "pages swapped back", sw.in_pages + sw.in_lz4, 10000 },
        { "balloon GFNs in and out", balloon_ops, 200 },
        { "background reclaim frames", pst.bg_freed, 100 },
        { "memory state changes", pst.transitions, 4 },
        { "soft entered", pst.entered[MS_SOFT], 1 },
        { "hard entered", pst.entered[MS_HARD], 1 },
        { "low entered", pst.entered[MS_LOW], 1 },
    };
    if (check_floors(floors, sizeof(floors) / sizeof(floors[0]), sim->c.accesses)) {
        fprintf(stderr, "sim: FAIL: seed %llu: a mechanism did less than its floor (disabled?)\n",
                (unsigned long long)seed);
        rc = 1;
    }
    /* The state machine: every legal edge is taken in the run (with the
     * invariants checked after every access), but UNPOPULATED -> MMIO,
     * which no guest access can cause (the fuzzers and host tests set it). */
    uint64_t edges[P2M_STATE_COUNT][P2M_STATE_COUNT] = { { 0 } };
    for (int i = 0; i < nguests; i++)
        for (int f = 0; f < P2M_STATE_COUNT; f++)
            for (int t = 0; t < P2M_STATE_COUNT; t++)
                edges[f][t] += sim->vm[g[i].vm].p2m.st.edges[f][t];
    unsigned untaken = 0;
    for (int f = 0; f < P2M_STATE_COUNT; f++) {
        for (int t = 0; t < P2M_STATE_COUNT; t++) {
            if (!p2m_edge_legal((enum p2m_state)f, (enum p2m_state)t))
                continue;
            bool want = !(f == P2M_UNPOPULATED && t == P2M_MMIO);
            printf("sim: edge %-11s -> %-11s %10llu%s\n", p2m_state_name((enum p2m_state)f),
                   p2m_state_name((enum p2m_state)t), (unsigned long long)edges[f][t],
                   want && !edges[f][t] ? "  NEVER TAKEN" : "");
            untaken += want && !edges[f][t] && !edges_optional;
        }
    }
    if (untaken) {
        fprintf(stderr, "sim: FAIL: seed %llu: %u legal p2m edges never taken\n",
                (unsigned long long)seed, untaken);
        rc = 1;
    }
    if (balloon_refused) {
        fprintf(stderr, "sim: FAIL: %llu balloon batches refused (the batches are valid)\n",
                (unsigned long long)balloon_refused);
        rc = 1;
    }
    /* The bound on one fault's work (exit context). A fault reclaims at
     * most once from its own VM (at its limit) and once from every VM
     * (machine watermark): p2m_reclaim inspects at most MM_RECLAIM_SCAN
     * pages each time. share_reclaim runs at most twice (at the VM's
     * limit when shared frames make part of its charge, and at the
     * watermark), each time within its budget, freeing at most
     * SHARE_RECLAIM_VICTIMS frames: a stable-table lookup and a deletion
     * each; the fault itself does at most four more table operations. A table at most half full keeps every operation
     * short: PROBE_LIMIT slots, checked on its own (the expected longest
     * run of a linear-probing table of 2^16 slots at load 1/2 is about 55;
     * a tombstone table degrades to the whole table). */
    enum { PROBE_LIMIT = 128 };
    uint64_t bound = (uint64_t)(1 + nguests) * MM_RECLAIM_SCAN + 2 * SHARE_RECLAIM_BUDGET +
                     (2 * 2 * SHARE_RECLAIM_VICTIMS + 4) * PROBE_LIMIT;
    printf("sim: worst single fault: %llu work units at access %llu (bound %llu; mean %.1f per "
           "fault); longest stable-table operation %llu slots (bound %d)\n",
           (unsigned long long)sim->c.fault_work_max, (unsigned long long)sim->c.fault_work_at,
           (unsigned long long)bound,
           sim->c.faults ? (double)sim->c.fault_work_total / (double)sim->c.faults : 0.0,
           (unsigned long long)ss.probe_max, PROBE_LIMIT);
    if (sim->c.fault_work_max > bound || ss.probe_max > PROBE_LIMIT) {
        fprintf(stderr, "sim: FAIL: seed %llu: a single fault did more work than the bound "
                        "(unbounded work in exit context)\n",
                (unsigned long long)seed);
        rc = 1;
    }
    for (int i = 0; i < nguests; i++)
        free(g[i].zipf_cdf);
    sim_fini();
    printf("%s\n", rc ? "sim: FAIL" : "sim: PASS");
    return rc;
}

/* The allocation policy (mm/policy_alloc.c), the sampled working set
 * (mm/p2m_sample.c) and the self-tuning orders.
 *
 * Covered: shares from low/normal/high per MiB or a number; the target
 * arithmetic on the paper's rule (Waldspurger, OSDI'02, 5.2): pure share
 * ratios, the idle tax (tax 0 ignores idleness; 75% makes an idle page
 * cost k = 4 active ones), reservations never below, limits never above;
 * rho comparisons and the victim (lowest rho above its reservation); the
 * sampling mechanism on a real p2m: sampled leaves lose their permissions
 * but keep frame and data, a touch restores them and is counted apart
 * from the fault kinds, p2m_check holds in every step, reclaim and the
 * share scanner leave sampled pages alone, a balloon inflate drops the
 * flag, the moving averages and their maximum; compression paused below
 * 1.5:1 and resumed after enough changes, honoured by background reclaim
 * and overridden by direct reclaim when nothing else frees a frame; the
 * share scanner slowed for a VM that yields nothing. */
#include "tests/host/backend.h"

#include <stdio.h>
#include <string.h>

#include "boot/config.h"
#include "mm/ept.h"
#include "mm/mm.h"
#include "mm/p2m.h"
#include "mm/p2m_internal.h"
#include "mm/policy.h"
#include "mm/policy_alloc.h"
#include "mm/share.h"
#include "mm/zpool.h"

#define FRAMES 1024

static struct p2m a, b;

static int setup(void **state)
{
    backend_frames(FRAMES, 1, FRAMES - 1);
    mm_set_watermark(4);
    policy_alloc_configure(ALLOC_IDLE_TAX_DEFAULT, 16, ALLOC_SAMPLE_PERIOD_DEFAULT);
    policy_alloc_reset();
    return 0;
}

static int teardown(void **state)
{
    if (a.map) {
        mm_unregister(&a);
        p2m_destroy(&a);
    }
    if (b.map) {
        mm_unregister(&b);
        p2m_destroy(&b);
    }
    share_fini();
    zpool_fini();
    backend_free();
    return 0;
}

static void make(struct p2m *p, uint16_t owner, uint64_t ngfn, uint64_t reserve,
                 uint64_t limit)
{
    assert_int_equal(p2m_init(p, owner, owner == 1 ? "a" : "b", ngfn, reserve, limit, true), 0);
    assert_int_equal(mm_register(p), 0);
}

static uint64_t *leaf(struct p2m *p, uint64_t gfn)
{
    return pt_entry(&pt_fmt_ept, p->ept_root, gfn << PAGE_SHIFT, PT_LEVEL_4K, false);
}

static void fill(struct p2m *p, uint64_t gfn, uint64_t v)
{
    uint64_t *w = p2m_gfn_ptr(p, gfn, true);
    assert_non_null(w);
    for (int i = 0; i < 512; i++)
        w[i] = v + (uint64_t)i * 0x10001;
}

/* ---- arithmetic ---- */

static void test_shares_from_config(void **state)
{
    /* 64 MiB = 16384 pages */
    assert_int_equal(policy_alloc_shares(16384, ALLOC_SHARES_LOW, 0), 320);
    assert_int_equal(policy_alloc_shares(16384, ALLOC_SHARES_NORMAL, 0), 640);
    assert_int_equal(policy_alloc_shares(16384, ALLOC_SHARES_HIGH, 0), 1280);
    assert_int_equal(policy_alloc_shares(16384, 0, 0), 640); /* not given: normal */
    assert_int_equal(policy_alloc_shares(16384, ALLOC_SHARES_HIGH, 7), 7); /* a number wins */
    assert_int_equal(policy_alloc_shares(1, 0, 0), 10);     /* part of a MiB rounds up */

    struct hv_config cfg;
    struct cfg_error err;
    const char *ok = "idle_tax = 40\nsample_pages = 50\nsample_period = 500\n"
                     "[vm x]\nmemory = 64M\nkernel = k\nshares = high\n"
                     "[vm y]\nmemory = 64M\nkernel = k\nshares = 1234\n"
                     "[vm z]\nmemory = 64M\nkernel = k\n";
    assert_int_equal(config_parse(ok, strlen(ok), &cfg, &err), 0);
    assert_int_equal(cfg.idle_tax, 40);
    assert_int_equal(cfg.sample_pages, 50);
    assert_int_equal(cfg.sample_period, 500);
    assert_int_equal(cfg.vm[0].shares_per_mib, 20);
    assert_int_equal(cfg.vm[1].shares_abs, 1234);
    assert_int_equal(cfg.vm[2].shares_per_mib, 0);
    assert_int_equal(cfg.vm[2].shares_abs, 0);
    const char *dflt = "[vm z]\nmemory = 64M\nkernel = k\n";
    assert_int_equal(config_parse(dflt, strlen(dflt), &cfg, &err), 0);
    assert_int_equal(cfg.idle_tax, 75);
    assert_int_equal(cfg.sample_pages, 100);
    assert_int_equal(cfg.sample_period, 2000);
    static const char *const bad[] = {
        "idle_tax = 100\n", "idle_tax = x\n", "sample_pages = 257\n", "sample_period = 99\n",
        "shares = high\n", "[vm x]\nmemory = 64M\nkernel = k\nidle_tax = 5\n",
        "[vm x]\nmemory = 64M\nkernel = k\nshares = medium\n",
        "[vm x]\nmemory = 64M\nkernel = k\nshares = 0\n",
        "[vm x]\nmemory = 64M\nkernel = k\nshares = low\nshares = 5\n",
        "idle_tax = 5\nidle_tax = 6\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(config_parse(bad[i], strlen(bad[i]), &cfg, &err), -1);
        assert_true(err.reason[0]);
    }
}

static void targets(struct alloc_client *c, int n, uint64_t total, unsigned tax)
{
    policy_alloc_targets(c, n, total, tax);
    uint64_t sum = 0;
    for (int i = 0; i < n; i++)
        sum += c[i].target;
    assert_true(sum <= total);
}

/* 5.1: shares alone divide memory in their ratio. */
static void test_share_ratios(void **state)
{
    struct alloc_client c[3] = {
        { .shares = 2000, .limit = 10000, .active_pm = 1000 },
        { .shares = 1000, .limit = 10000, .active_pm = 1000 },
    };
    targets(c, 2, 3000, 75);
    assert_int_equal(c[0].target, 2000);
    assert_int_equal(c[1].target, 1000);
    struct alloc_client d[3] = {
        { .shares = 100, .limit = 10000, .active_pm = 1000 },
        { .shares = 200, .limit = 10000, .active_pm = 1000 },
        { .shares = 300, .limit = 10000, .active_pm = 1000 },
    };
    targets(d, 3, 6000, 0);
    assert_in_range(d[0].target, 999, 1000);
    assert_in_range(d[1].target, 1999, 2000);
    assert_in_range(d[2].target, 2999, 3000);
    /* Idleness equal for all: the ratio still holds (the tax is relative). */
    for (int i = 0; i < 3; i++)
        d[i].active_pm = 300;
    targets(d, 3, 6000, 75);
    assert_in_range(d[0].target, 999, 1000);
    assert_in_range(d[2].target, 2999, 3000);
}

/* 5.2: with tax tau an idle page costs k = 1/(1 - tau) active ones. Equal
 * shares, one client all active, one all idle: tau = 0 splits evenly;
 * tau = 75% (k = 4) gives the active one four times the idle one's; a
 * client half active pays 0.5 + 4 * 0.5 = 2.5 per page. */
static void test_idle_tax(void **state)
{
    struct alloc_client c[2] = {
        { .shares = 1000, .limit = 100000, .active_pm = 1000 },
        { .shares = 1000, .limit = 100000, .active_pm = 0 },
    };
    targets(c, 2, 5000, 0);
    assert_int_equal(c[0].target, 2500);
    assert_int_equal(c[1].target, 2500);
    targets(c, 2, 5000, 75);
    assert_in_range(c[0].target, 3999, 4000);
    assert_in_range(c[1].target, 999, 1000);
    c[1].active_pm = 500;
    targets(c, 2, 3500, 75);
    assert_in_range(c[0].target, 2499, 2500);
    assert_in_range(c[1].target, 999, 1000);
    /* tau = 50%: k = 2 */
    c[1].active_pm = 0;
    targets(c, 2, 3000, 50);
    assert_in_range(c[0].target, 1999, 2000);
    assert_in_range(c[1].target, 999, 1000);
    /* rho at the paper's allocation of 4000 / 1000 pages is equal. */
    c[0].pages = 4000;
    c[1].pages = 1000;
    assert_int_equal(policy_alloc_rho_cmp(&c[0], &c[1], 75), 0);
    assert_int_equal(policy_alloc_rho_milli(&c[0], 75), policy_alloc_rho_milli(&c[1], 75));
    /* Even split: the idle one has the lower rho and gives first. */
    c[0].pages = c[1].pages = 2500;
    assert_true(policy_alloc_rho_cmp(&c[1], &c[0], 75) < 0);
    assert_int_equal(policy_alloc_rho_cmp(&c[1], &c[0], 0), 0); /* no tax: equal */
}

/* Reservations hold the idle one up; limits hold the active one down, and
 * what a bound leaves goes to the others. */
static void test_bounds(void **state)
{
    struct alloc_client c[2] = {
        { .shares = 1000, .limit = 100000, .active_pm = 1000 },
        { .shares = 1000, .reserve = 2000, .limit = 100000, .active_pm = 0 },
    };
    targets(c, 2, 5000, 75);
    assert_int_equal(c[1].target, 2000);
    assert_int_equal(c[0].target, 3000);
    c[1].reserve = 0;
    c[0].limit = 1500;
    targets(c, 2, 5000, 75);
    assert_int_equal(c[0].target, 1500);
    assert_int_equal(c[1].target, 3500);
    /* Too little for the reservations: each gets its reservation. */
    c[0].reserve = 1000;
    c[0].limit = 5000;
    c[1].reserve = 3000;
    policy_alloc_targets(c, 2, 3500, 75);
    assert_int_equal(c[0].target, 1000);
    assert_int_equal(c[1].target, 3000);
}

/* ---- the victim on registered VMs ---- */

static void touch_n(struct p2m *p, uint64_t n)
{
    for (uint64_t g = 0; g < n; g++)
        assert_int_equal(p2m_fault(p, g * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
}

static void test_victim(void **state)
{
    make(&a, 1, 4096, 0, 0);
    make(&b, 2, 4096, 0, 0);
    a.shares = 2000;
    b.shares = 1000;
    assert_null(policy_alloc_victim()); /* nothing held */
    touch_n(&a, 100);
    touch_n(&b, 60);
    /* rho a = 2000/100 = 20 > rho b = 1000/60 = 16.7: b gives */
    assert_ptr_equal(policy_alloc_victim(), &b);
    touch_n(&a, 130); /* 2000/130 = 15.4 < 16.7 */
    assert_ptr_equal(policy_alloc_victim(), &a);
    bool skip[MM_MAX_VMS] = { true };
    assert_ptr_equal(policy_alloc_victim_skip(skip), &b);
    /* A VM at its reservation is never the victim. */
    b.reserve = 200;
    a.reserve = 200;
    assert_null(policy_alloc_victim());
    a.reserve = 0;
    b.reserve = 0;
    /* The targets follow the shares (both active before any sample). */
    policy_alloc_update();
    uint64_t ta = policy_alloc_target(&a), tb = policy_alloc_target(&b);
    assert_true(ta > 0 && tb > 0);
    assert_in_range(ta * 100 / tb, 195, 205);
    /* The reclaim path asks the policy: a machine at its watermark takes
     * from the lowest rho (a), not from the largest excess. */
    policy_alloc_print_vm(&a);
    assert_non_null(strstr(backend_log(), "vm a: alloc: shares 2000"));
}

/* ---- sampling ---- */

static unsigned sampled_now(struct p2m *p, uint64_t n)
{
    unsigned k = 0;
    for (uint64_t g = 0; g < n; g++)
        k += (p2m_peek(p, g)->flags & P2M_F_SAMPLED) != 0;
    return k;
}

static void test_sample_mechanism(void **state)
{
    make(&a, 1, 256, 0, 0);
    for (uint64_t g = 0; g < 128; g++)
        fill(&a, g, 0x1000 * g + 1);
    assert_int_equal(a.count[P2M_RESIDENT], 128);
    uint64_t inv = backend_invept_calls();
    p2m_sample_period(&a, 16);
    assert_true(backend_invept_calls() > inv); /* permissions gone from the TLB too */
    assert_int_equal(a.smp.n, 16);
    assert_int_equal(a.smp.live, 16);
    assert_int_equal(sampled_now(&a, 128), 16);
    assert_int_equal(p2m_check(&a), 0);
    uint64_t faults[PF_KIND_COUNT];
    memcpy(faults, a.st.faults, sizeof(faults));
    /* Every sampled page: still resident on its frame, no permission, A/D
     * kept; an access brings it back as it was. Touch half of them. */
    for (unsigned i = 0; i < 16; i++) {
        uint64_t g = a.smp.gfn[i];
        const struct p2m_entry *e = p2m_peek(&a, g);
        assert_int_equal(e->state, P2M_RESIDENT);
        assert_int_equal(*leaf(&a, g) & EPT_RWX, 0);
        assert_int_equal(*leaf(&a, g) & PT_ADDR_MASK, e->payload << PAGE_SHIFT);
        if (i % 2 == 0) {
            assert_int_equal(p2m_fault(&a, g * PAGE_SIZE + 8, i % 4 ? P2M_ACCESS_R : P2M_ACCESS_W),
                             P2M_OK);
            assert_int_equal(*leaf(&a, g) & EPT_RWX, EPT_RWX);
            uint64_t *w = p2m_gfn_ptr(&a, g, false);
            assert_int_equal(w[3], 0x1000 * g + 1 + 3 * 0x10001); /* data intact */
        }
    }
    assert_memory_equal(faults, a.st.faults, sizeof(faults)); /* no fault kind counted */
    assert_int_equal(a.smp.touched, 8);
    assert_int_equal(a.smp.live, 8);
    assert_int_equal(p2m_check(&a), 0);
    /* Reclaim takes cold pages but never a sampled one; the sweep harvests
     * their A/D bits like any other's. */
    a.compress = false;
    *leaf(&a, a.smp.gfn[1]) |= EPT_A;
    p2m_sweep(&a);
    assert_int_equal(*leaf(&a, a.smp.gfn[1]) & (EPT_A | EPT_RWX), 0);
    assert_int_equal(p2m_check(&a), 0);
    assert_false(p2m_share_protect(&a, a.smp.gfn[1])); /* the scanner skips it */
    assert_true(p2m_share_protect(&a, a.smp.gfn[0]));  /* a touched one is ordinary again */
    p2m_share_unprotect(&a, a.smp.gfn[0]);
    /* A balloon takes a sampled page: the flag goes with the frame. */
    unsigned bad;
    uint64_t g3 = a.smp.gfn[3];
    assert_true(p2m_balloon_inflate(&a, &g3, 1, &bad) >= 0);
    assert_int_equal(a.smp.live, 7);
    assert_int_equal(a.smp.dropped, 1);
    assert_int_equal(p2m_check(&a), 0);
    /* The next period: 8 of 16 touched = 500 per mille; untouched pages
     * get their permissions back. */
    unsigned untouched1 = (unsigned)a.smp.gfn[1];
    p2m_sample_period(&a, 16);
    assert_int_equal(a.smp.last_pm, 500);
    assert_int_equal(p2m_sample_active_pm(&a), 500);
    assert_int_equal(a.smp.periods, 1);
    if (!(p2m_peek(&a, untouched1)->flags & P2M_F_SAMPLED))
        assert_int_equal(*leaf(&a, untouched1) & EPT_RWX, EPT_RWX);
    assert_int_equal(p2m_check(&a), 0);
    /* An idle period: 0; fast average 250, slow 438; the larger is used. */
    p2m_sample_period(&a, 16);
    assert_int_equal(a.smp.last_pm, 0);
    assert_int_equal(a.smp.fast_pm, 250);
    assert_int_equal(a.smp.slow_pm, 438);
    assert_int_equal(p2m_sample_active_pm(&a), 438);
    /* A busy period: everything touched; the fast average rises first. */
    for (unsigned i = 0; i < a.smp.n; i++)
        assert_int_equal(p2m_fault(&a, a.smp.gfn[i] * PAGE_SIZE, P2M_ACCESS_R), P2M_OK);
    p2m_sample_period(&a, 16);
    assert_int_equal(a.smp.last_pm, 1000);
    assert_int_equal(a.smp.fast_pm, 625);
    assert_int_equal(p2m_sample_active_pm(&a), 625);
    /* Reclaim with every other page cold: sampled pages stay resident. */
    uint64_t got = p2m_reclaim(&a, 1000, 10000);
    assert_true(got == 0 || sampled_now(&a, 256) == a.smp.live);
    for (unsigned i = 0; i < a.smp.n; i++)
        if (p2m_peek(&a, a.smp.gfn[i])->flags & P2M_F_SAMPLED)
            assert_int_equal(p2m_peek(&a, a.smp.gfn[i])->state, P2M_RESIDENT);
    assert_int_equal(p2m_check(&a), 0);
    p2m_sample_stop(&a);
    assert_int_equal(a.smp.live, 0);
    assert_int_equal(p2m_check(&a), 0);
}

/* Zero pages are reclaimed as values even while sampled? No: reclaim
 * skips sampled pages whatever their content; a small VM samples at most a
 * quarter of its pages. */
static void test_sample_small_vm(void **state)
{
    make(&a, 1, 64, 0, 0);
    touch_n(&a, 8);
    p2m_sample_period(&a, 100);
    assert_int_equal(a.smp.n, 2);
    uint64_t got = p2m_reclaim(&a, 100, 1000);
    assert_int_equal(got, 6); /* all zero pages but the two sampled */
    assert_int_equal(a.count[P2M_RESIDENT], 2);
    assert_int_equal(p2m_check(&a), 0);
    /* Their EPT table emptied and went: the period's end maps them again. */
    p2m_sample_period(&a, 100); /* 2 resident: a quarter is 0 */
    for (uint64_t g = 0; g < 8; g++)
        if (p2m_peek(&a, g)->state == P2M_RESIDENT)
            assert_int_equal(*leaf(&a, g) & EPT_RWX, EPT_RWX);
    assert_int_equal(a.smp.n, 0);
    assert_int_equal(a.smp.live, 0);
    assert_int_equal(p2m_check(&a), 0);
}

/* The sampled fraction feeds the idle tax: an idle VM becomes the victim
 * before a busy one with the same shares and pages. */
static void test_sample_drives_victim(void **state)
{
    make(&a, 1, 4096, 0, 0);
    make(&b, 2, 4096, 0, 0);
    touch_n(&a, 100);
    touch_n(&b, 100);
    a.shares = b.shares = 1000;
    for (int period = 0; period < 4; period++) {
        p2m_sample_period(&a, 16);
        p2m_sample_period(&b, 16);
        for (unsigned i = 0; i < a.smp.n; i++) /* a busy, b idle */
            assert_int_equal(p2m_fault(&a, a.smp.gfn[i] * PAGE_SIZE, P2M_ACCESS_R), P2M_OK);
    }
    p2m_sample_period(&a, 16);
    p2m_sample_period(&b, 16);
    assert_int_equal(p2m_sample_active_pm(&a), 1000);
    assert_true(p2m_sample_active_pm(&b) < 500);
    assert_ptr_equal(policy_alloc_victim(), &b);
    policy_alloc_update();
    assert_true(policy_alloc_target(&a) > 2 * policy_alloc_target(&b));
    assert_int_equal(p2m_check(&a) + p2m_check(&b), 0);
}

/* ---- self-tuning ---- */

static void test_tune_compression(void **state)
{
    make(&a, 1, 256, 0, 0);
    touch_n(&a, 64);
    policy_tune(); /* first look: the window starts */
    backend_log_clear();
    /* 64 attempts: 16 stored at 2048 bytes, 48 failed: ratio
     * 64*4096 / (16*2048 + 48*4096) = 1.14 */
    a.st.compressed += 16;
    a.cmp_bytes += 16 * 2048;
    a.st.incompressible += 48;
    policy_tune();
    assert_true(a.compress_paused);
    assert_non_null(strstr(backend_log(), "vm a: tune: compression paused"));
    struct policy_tune_stats st;
    policy_alloc_get_stats(&st);
    uint64_t paused = st.compress_paused;
    /* Background reclaim does not compress while paused: a compressible
     * cold page stays resident (no swap here). */
    assert_int_equal(mm_pool_init(64, 2048, false), 0);
    fill(&a, 70, 0);
    uint64_t *w = p2m_gfn_ptr(&a, 70, false);
    for (int i = 0; i < 512; i++)
        w[i] = (uint64_t)(i % 3);
    *leaf(&a, 70) &= ~EPT_A;
    uint64_t c0 = a.st.compressed;
    policy_reclaim_vm(&a, 100, 1000, P2M_RT_ALL, false);
    assert_int_equal(a.st.compressed, c0);
    assert_int_equal(p2m_peek(&a, 70)->state, P2M_RESIDENT);
    /* Direct reclaim (a fault needs a frame now) compresses anyway: with
     * no swap, a paused VM would otherwise have nothing reclaimable and
     * its faults would wait until the out-of-memory verdict (seen in a
     * machine in state low). Undo it so the rest runs as before. */
    struct policy_stats ps0, ps1;
    policy_get_stats(&ps0);
    assert_true(policy_reclaim_machine(1, 1000, P2M_RT_ALL) >= 1);
    policy_get_stats(&ps1);
    assert_int_equal(ps1.pause_overrides, ps0.pause_overrides + 1);
    assert_int_equal(a.st.compressed, c0 + 1);
    assert_int_equal(p2m_peek(&a, 70)->state, P2M_COMPRESSED);
    assert_true(a.compress_paused); /* the pause stands for background work */
    assert_non_null(p2m_gfn_ptr(&a, 70, true)); /* decompressed back */
    *leaf(&a, 70) &= ~EPT_A;
    c0 = a.st.compressed;
    /* Content changes: 64 new pages (the minimum) resume it. */
    policy_tune();
    assert_true(a.compress_paused);
    touch_n(&a, 200); /* 64 + 1 touched before, 135 new */
    policy_tune();
    assert_false(a.compress_paused);
    assert_non_null(strstr(backend_log(), "vm a: tune: compression resumed"));
    policy_alloc_get_stats(&st);
    assert_int_equal(st.compress_paused, paused);
    assert_int_equal(st.compress_resumed >= 1, 1);
    fill(&a, 71, 0);
    w = p2m_gfn_ptr(&a, 71, false);
    for (int i = 0; i < 512; i++)
        w[i] = (uint64_t)(i % 3);
    *leaf(&a, 71) &= ~EPT_A;
    *leaf(&a, 70) &= ~EPT_A;
    p2m_reclaim(&a, 300, 1000);
    assert_true(a.st.compressed > c0); /* compressing again */
    /* A good window (2.0:1) does not pause. */
    policy_tune();
    a.st.compressed += 64;
    a.cmp_bytes += 64 * 2048;
    policy_tune();
    assert_false(a.compress_paused);
    assert_int_equal(p2m_check(&a), 0);
}

static void test_tune_share_rate(void **state)
{
    assert_int_equal(share_init(FRAMES, 64), 0);
    make(&a, 1, 64, 0, 0);
    for (uint64_t g = 0; g < 16; g++)
        fill(&a, g, 0x777000 * (g + 1)); /* all distinct: nothing to merge */
    policy_tune();
    backend_log_clear();
    for (int r = 0; r < 4; r++) {
        share_scan(64);
        policy_tune();
    }
    assert_true(a.share_every >= 2);
    assert_non_null(strstr(backend_log(), "vm a: tune: share scanner now visits it every 2 rounds"));
    struct policy_tune_stats st;
    policy_alloc_get_stats(&st);
    assert_true(st.share_slower >= 1);
    /* The scanner honours it: at the start of an odd round a's turn is
     * skipped at once (the round ends without hashing anything of a). */
    a.share_every = 2;
    struct share_stats s0, s1;
    share_get_stats(&s0);
    for (int i = 0; i < 400 && (s0.rounds % 2 == 0 || i == 0); i++) {
        uint64_t r0 = s0.rounds;
        share_scan(1);
        share_get_stats(&s0);
        if (s0.rounds != r0 && s0.rounds % 2)
            break;
    }
    assert_true(s0.rounds % 2);
    share_scan(1); /* the whole of a's turn: one step */
    share_get_stats(&s1);
    assert_int_equal(s1.hashed, s0.hashed);
    assert_int_equal(s1.rounds, s0.rounds + 1);
    share_scan(3); /* an even round: a is visited */
    share_get_stats(&s0);
    assert_true(s0.hashed >= s1.hashed + 2);
    /* Identical pages merge: the yield brings the rate back. */
    for (uint64_t g = 16; g < 48; g++)
        fill(&a, g, 0x42);
    a.share_every = 2;
    policy_tune();
    a.share_every = 4;
    policy_tune();
    for (int r = 0; r < 8 && a.share_every > 2; r++) {
        share_scan(200);
        policy_tune();
    }
    assert_int_equal(a.share_every, 2);
    assert_non_null(strstr(backend_log(), "every 2 rounds (32 merges"));
    /* Shared above 15% and nothing new: it stays where it is. */
    for (int r = 0; r < 4; r++) {
        share_scan(200);
        policy_tune();
    }
    assert_int_equal(a.share_every, 2);
    assert_int_equal(p2m_check(&a), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_shares_from_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_share_ratios, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_tax, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_victim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sample_mechanism, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sample_small_vm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sample_drives_victim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tune_compression, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tune_share_rate, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Machine memory states and the policy around them (mm/policy.c) on a
 * small host-backed machine.
 *
 * Covered: ESX's min_free scale (worked figures for 256 MiB, 16 GiB and
 * 64 GiB); min_free from hv.cfg, from the low mark, and the low mark from
 * min_free; the thresholds; each state's technique set; entering a worse
 * state at once and a better one only past the hysteresis margin (also
 * several states in one step), each change one log line with free memory
 * and its cause; policy_order refusing (and counting) a technique its state
 * does not allow, and the "starts" line once per state entered;
 * background reclaim doing only what the state allows (soft: same-filled
 * pages only, nothing compressed; hard: compression), never taking a VM's
 * reservation, and keeping a limited VM's headroom in any state; direct
 * reclaim counted per fault kind only for faults that ran it, and the
 * cost histogram holding every fault; the percentile estimate; the
 * waiter's verdict.
 *
 * The policy keeps static state (the current state, statistics): each test
 * first brings the machine back to high and works with differences. */
#include "tests/host/backend.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mm/balloon.h"
#include "mm/mm.h"
#include "mm/p2m.h"
#include "mm/policy.h"
#include "mm/share.h"
#include "mm/swap.h"
#include "mm/zpool.h"

#define FRAMES 8192
#define MINF 1000 /* min_free in the tests: high 4000, clear 1000, soft 640, hard 320 */
#define HYST (MINF * 32 / 100 / 4) /* 80: hard's margin, a quarter of its threshold */
#define HYST_SOFT (640 / 4)        /* 160: soft's */
#define HYST_CLEAR (MINF / 4) /* 250: clear's margin, a quarter of its threshold */
#define HYST_HIGH (4000 / 4) /* 1000: high's margin, a quarter of its threshold */

static struct p2m a, b;
static mfn_t eaten[FRAMES];
static unsigned neaten;

static void eat_to(uint64_t free)
{
    while (frame_free_count() > free) {
        mfn_t m = frame_alloc(FS_HV, 0);
        assert_int_not_equal(m, MFN_INVALID);
        eaten[neaten++] = m;
    }
    while (frame_free_count() < free && neaten)
        frame_free(eaten[--neaten]);
    assert_int_equal(frame_free_count(), free);
}

static void give_all(void)
{
    while (neaten)
        frame_free(eaten[--neaten]);
}

#define LOGGED(s)                                                                 \
    do {                                                                          \
        if (!strstr(backend_log(), (s)))                                          \
            fail_msg("log lacks \"%s\"; the log:\n%s", (s), backend_log());       \
    } while (0)
#define NOT_LOGGED(s)                                                             \
    do {                                                                          \
        if (strstr(backend_log(), (s)))                                           \
            fail_msg("log has \"%s\"; the log:\n%s", (s), backend_log());         \
    } while (0)

static int log_count(const char *s)
{
    int n = 0;
    for (const char *l = backend_log(); (l = strstr(l, s)); l += strlen(s))
        n++;
    return n;
}

static int setup(void **state)
{
    (void)state;
    backend_frames(FRAMES, 1, FRAMES - 1);
    policy_set_low_mark(0);
    policy_set_min_free(MINF);
    policy_configure(20, 5, 5);
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    neaten = 0;
    policy_update(); /* all free: back to high */
    assert_int_equal(policy_state(), MS_HIGH);
    backend_log_clear();
    return 0;
}

static void gone(struct p2m *p)
{
    if (p->map) {
        mm_unregister(p);
        p2m_destroy(p);
    }
}

static int teardown(void **state)
{
    (void)state;
    give_all();
    gone(&a);
    gone(&b);
    zpool_fini();
    backend_free();
    policy_set_min_free(0);
    policy_set_low_mark(4);
    return 0;
}

static void make(struct p2m *p, uint16_t owner, const char *name, uint64_t ngfn,
                 uint64_t reserve, uint64_t limit)
{
    assert_int_equal(p2m_init(p, owner, name, ngfn, reserve, limit, true), 0);
    assert_int_equal(mm_register(p), 0);
}

/* Writes gfns [first, first + n): zero pages when zero, else compressible
 * non-zero content (a repeating word with the GFN in it). */
static void fill(struct p2m *p, uint64_t first, uint64_t n, bool zero)
{
    for (uint64_t g = first; g < first + n; g++) {
        assert_int_equal(p2m_fault(p, g * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
        uint64_t *w = p2m_gfn_ptr(p, g, false);
        assert_non_null(w);
        for (int i = 0; i < 512; i++)
            w[i] = zero ? 0 : (i % 4 == 3 ? g : 0x1122334455667788ULL);
    }
}

/* ---- min_free and the thresholds -------------------------------------------- */

static void test_scale(void **state)
{
    (void)state;
    const uint64_t gib = 262144; /* frames */
    /* 256 MiB: 6% = 15.36 MiB. */
    assert_int_equal(policy_scale_min_free(gib / 4), 65536 * 6 / 100);
    /* 16 GiB: 6% of 4 + 4% of 8 + 2% of 4 = 0.24 + 0.32 + 0.08 GiB. */
    assert_int_equal(policy_scale_min_free(16 * gib), (4 * 6 + 8 * 4 + 4 * 2) * gib / 100);
    /* 64 GiB: ... + 2% of 16 + 1% of the other 36. */
    assert_int_equal(policy_scale_min_free(64 * gib),
                     (4 * 6 + 8 * 4 + 16 * 2 + 36 * 1) * gib / 100);
    /* Tiny machines still get a frame. */
    assert_int_equal(policy_scale_min_free(1), 1);
    /* Not set: the scale over the frame table (8192 frames: 491). */
    policy_set_min_free(0);
    assert_int_equal(policy_min_free(), 491);
    assert_int_equal(policy_low_mark(), 491 * 32 / 100);
}

static void test_marks(void **state)
{
    (void)state;
    assert_int_equal(policy_min_free(), MINF);
    assert_int_equal(policy_threshold(MS_HIGH), 4 * MINF);
    assert_int_equal(policy_threshold(MS_CLEAR), MINF);
    assert_int_equal(policy_threshold(MS_SOFT), MINF * 64 / 100);
    assert_int_equal(policy_threshold(MS_HARD), MINF * 32 / 100);
    assert_int_equal(policy_low_mark(), MINF * 32 / 100);
    assert_int_equal(mm_watermark(), MINF * 32 / 100);
    /* A watermark alone places min_free so the low state starts there. */
    policy_set_min_free(0);
    mm_set_watermark(100);
    assert_int_equal(policy_min_free(), 313);
    assert_int_equal(policy_threshold(MS_HARD), 100);
    assert_int_equal(policy_threshold(MS_SOFT), 200);
    /* Both set: each as given, the order kept. */
    policy_set_min_free(200);
    assert_int_equal(policy_threshold(MS_HARD), 100);
    assert_int_equal(policy_threshold(MS_SOFT), 128);
    mm_set_watermark(150);
    assert_int_equal(policy_threshold(MS_SOFT), 150); /* never below the low mark */
}

/* ---- technique sets ------------------------------------------------------------ */

static void test_technique_sets(void **state)
{
    (void)state;
    assert_int_equal(policy_techniques(MS_HIGH), PT_SHARE);
    assert_int_equal(policy_techniques(MS_CLEAR), PT_SHARE | PT_SHARE_FAST);
    assert_int_equal(policy_techniques(MS_SOFT), PT_SHARE | PT_SHARE_FAST | PT_BALLOON | PT_FILLED);
    assert_int_equal(policy_techniques(MS_HARD), PT_SHARE | PT_SHARE_FAST | PT_BALLOON | PT_FILLED |
                                                     PT_COMPRESS | PT_SWAP);
    assert_int_equal(policy_techniques(MS_LOW), PT_SHARE | PT_SHARE_FAST | PT_BALLOON | PT_FILLED |
                                                    PT_COMPRESS | PT_SWAP | PT_DIRECT);
    /* A worse state keeps every technique of a better one. */
    for (int s = MS_CLEAR; s < MS_COUNT; s++)
        assert_int_equal(policy_techniques((enum mem_state)s) &
                             policy_techniques((enum mem_state)(s - 1)),
                         policy_techniques((enum mem_state)(s - 1)));
    assert_string_equal(policy_state_name(MS_SOFT), "soft");
    assert_string_equal(policy_state_name(MS_COUNT), "?");
}

/* ---- states and hysteresis --------------------------------------------------------- */

static void test_states_down(void **state)
{
    (void)state;
    struct policy_stats s0;
    policy_get_stats(&s0);
    eat_to(4000);
    assert_int_equal(policy_update(), MS_HIGH); /* at the threshold: still high */
    eat_to(3999);
    assert_int_equal(policy_update(), MS_CLEAR);
    LOGGED("[mm] memory state high -> clear: free 15.6M (below 15.6M; min_free 3.9M), cause: frames taken outside the VMs");
    eat_to(999);
    assert_int_equal(policy_update(), MS_SOFT);
    eat_to(639);
    assert_int_equal(policy_update(), MS_HARD);
    eat_to(319);
    assert_int_equal(policy_update(), MS_LOW);
    assert_int_equal(log_count("[mm] memory state "), 4);
    struct policy_stats s1;
    policy_get_stats(&s1);
    assert_int_equal(s1.transitions, s0.transitions + 4);
    for (int s = MS_CLEAR; s < MS_COUNT; s++)
        assert_int_equal(s1.entered[s], s0.entered[s] + 1);
    /* Straight from high to low in one step: one line. */
    give_all();
    policy_update();
    backend_log_clear();
    eat_to(10);
    assert_int_equal(policy_update(), MS_LOW);
    assert_int_equal(log_count("[mm] memory state "), 1);
    LOGGED("[mm] memory state high -> low: free 40K");
}

static void test_states_hysteresis(void **state)
{
    (void)state;
    eat_to(319);
    assert_int_equal(policy_update(), MS_LOW);
    backend_log_clear();
    /* At the low mark itself: low (the next frame would go under it). */
    eat_to(320);
    assert_int_equal(policy_update(), MS_LOW);
    eat_to(321);
    assert_int_equal(policy_update(), MS_LOW);
    assert_int_equal(policy_update(), MS_LOW);
    eat_to(320 + HYST - 1);
    assert_int_equal(policy_update(), MS_LOW);
    /* A page falling and coming back near a threshold changes nothing. */
    for (int i = 0; i < 10; i++) {
        eat_to(320 + HYST - 2);
        policy_update();
        eat_to(320 + HYST - 1);
        policy_update();
    }
    assert_int_equal(policy_state(), MS_LOW);
    NOT_LOGGED("memory state");
    eat_to(320 + HYST);
    assert_int_equal(policy_update(), MS_HARD);
    LOGGED("[mm] memory state low -> hard: free 1.5M (at least 1.5M; min_free 3.9M), cause: frames given back");
    /* Down again needs free at the low mark itself, not the margin. */
    eat_to(321);
    assert_int_equal(policy_update(), MS_HARD);
    eat_to(320);
    assert_int_equal(policy_update(), MS_LOW);
    eat_to(320 + HYST);
    assert_int_equal(policy_update(), MS_HARD);
    /* Hard and soft are one reclaim episode: past soft's threshold and
     * margin (640 + 160) hard stays, until clear's (1000 + 250), where
     * background reclaim stops, and then the machine is clear at once. */
    eat_to(640 + HYST_SOFT);
    assert_int_equal(policy_update(), MS_HARD);
    eat_to(1000 + HYST_CLEAR - 1);
    assert_int_equal(policy_update(), MS_HARD);
    eat_to(1000 + HYST_CLEAR);
    assert_int_equal(policy_update(), MS_CLEAR);
    /* Soft too is left only for clear. */
    eat_to(900);
    assert_int_equal(policy_update(), MS_SOFT);
    eat_to(1000 + HYST_CLEAR - 1);
    assert_int_equal(policy_update(), MS_SOFT);
    eat_to(1000 + HYST_CLEAR);
    assert_int_equal(policy_update(), MS_CLEAR);
    /* Low gives way to hard, and hard to nothing but clear. */
    eat_to(300);
    assert_int_equal(policy_update(), MS_LOW);
    eat_to(1000 + HYST_CLEAR - 1);
    assert_int_equal(policy_update(), MS_HARD);
    eat_to(4000 + HYST_HIGH - 1);
    assert_int_equal(policy_update(), MS_CLEAR);
    eat_to(4000 + HYST_HIGH);
    assert_int_equal(policy_update(), MS_HIGH);
    assert_int_equal(policy_hyst(MS_HIGH), HYST_HIGH);
    assert_int_equal(policy_hyst(MS_CLEAR), HYST_CLEAR);
    assert_int_equal(policy_hyst(MS_SOFT), HYST_SOFT);
    assert_int_equal(policy_hyst(MS_HARD), HYST);
}

/* A booting guest takes and gives back several % of the machine: free
 * swinging 2.5% below and 20% above the high threshold is one change to
 * clear, not one pair per swing (a margin of 1/16 of min_free, 62 frames
 * here, let it flap at every swing, and so did 1/16 of 4000, 250). */
static void test_no_flap_near_high(void **state)
{
    (void)state;
    give_all();
    policy_update();
    assert_int_equal(policy_state(), MS_HIGH);
    struct policy_stats s0, s1;
    policy_get_stats(&s0);
    backend_log_clear();
    for (int i = 0; i < 10; i++) {
        eat_to(3900);
        policy_update();
        eat_to(4800);
        policy_update();
    }
    assert_int_equal(policy_state(), MS_CLEAR);
    policy_get_stats(&s1);
    assert_int_equal(s1.transitions, s0.transitions + 1);
    assert_int_equal(log_count("[mm] memory state "), 1);
    LOGGED("[mm] memory state high -> clear: free 15.2M (below 15.6M; min_free 3.9M)");
}

static void test_cause(void **state)
{
    (void)state;
    make(&a, 1, "grower", 2048, 0, 0);
    eat_to(1100);
    policy_update();
    assert_int_equal(policy_state(), MS_CLEAR);
    backend_log_clear();
    fill(&a, 0, 200, false); /* 200 pages and their metadata */
    policy_update();
    assert_int_equal(policy_state(), MS_SOFT);
    LOGGED("-> soft: free ");
    LOGGED("cause: vm grower grew by ");
    /* Reservations owed count as taken: a VM reserving frames moves the
     * state without touching a page. */
    gone(&a);
    give_all();
    policy_update();
    eat_to(1100);
    policy_update();
    assert_int_equal(policy_state(), MS_CLEAR);
    make(&b, 2, "reserver", 2048, 300, 0);
    assert_true(policy_free() < 1000);
    assert_int_equal(policy_update(), MS_SOFT);
}

/* ---- techniques only where the state allows them ------------------------------------ */

static void test_order(void **state)
{
    (void)state;
    struct policy_stats s0, s1;
    policy_get_stats(&s0);
    eat_to(900);
    assert_int_equal(policy_update(), MS_SOFT);
    backend_log_clear();
    assert_false(policy_order(PT_COMPRESS));
    assert_false(policy_order(PT_DIRECT));
    assert_true(policy_order(PT_BALLOON));
    assert_true(policy_order(PT_BALLOON));
    assert_int_equal(log_count("[mm] policy: balloon starts in state soft"), 1);
    NOT_LOGGED("compression starts");
    policy_get_stats(&s1);
    assert_int_equal(s1.tech_denied[4], s0.tech_denied[4] + 1); /* compression */
    assert_int_equal(s1.tech_denied[6], s0.tech_denied[6] + 1); /* direct reclaim */
    assert_int_equal(s1.tech_runs[2], s0.tech_runs[2] + 2);     /* balloon */
    eat_to(600);
    assert_int_equal(policy_update(), MS_HARD);
    backend_log_clear();
    assert_true(policy_order(PT_COMPRESS));
    assert_true(policy_order(PT_BALLOON)); /* a new state: said again */
    LOGGED("[mm] policy: compression starts in state hard");
    LOGGED("[mm] policy: balloon starts in state hard");
    assert_true(policy_allows(PT_SWAP));
    assert_false(policy_allows(PT_DIRECT));
}

/* Background reclaim in soft takes same-filled pages only; in hard it
 * compresses. */
static void test_background_by_state(void **state)
{
    (void)state;
    assert_int_equal(mm_pool_init(512, 2048, false), 0);
    make(&a, 1, "a", 4096, 0, 0);
    a.compress = true;
    fill(&a, 0, 300, true);    /* zero pages */
    fill(&a, 300, 2000, false); /* compressible ones */
    eat_to(900);
    assert_int_equal(policy_update(), MS_SOFT);
    uint64_t r0 = a.count[P2M_RESIDENT];
    backend_log_clear();
    uint64_t got = policy_background(UINT64_MAX);
    assert_true(got > 0);
    assert_int_equal(a.st.compressed, 0);
    assert_int_equal(a.st.zero_reclaimed, got);
    assert_int_equal(a.count[P2M_RESIDENT], r0 - got);
    LOGGED("[mm] policy: same-filled reclaim starts in state soft");
    NOT_LOGGED("compression starts");
    /* Soft still (free below clear + margin): the zero pages are gone and
     * nothing else may go. */
    assert_int_equal(policy_background(UINT64_MAX), 0);
    assert_int_equal(a.st.compressed, 0);

    /* Hard: compression joins. */
    eat_to(500);
    assert_int_equal(policy_update(), MS_HARD);
    got = policy_background(UINT64_MAX);
    assert_true(a.st.compressed > 0);
    assert_true(got > 0);
    /* It stops once free is back above clear + the margin. */
    assert_true(policy_free() >= MINF + HYST_CLEAR);
    assert_true(policy_free() < MINF + HYST_CLEAR + MM_RECLAIM_BATCH);
    assert_int_equal(p2m_check(&a), 0);
}

/* Reservations are never reclaimed by the machine's background reclaim. */
static void test_background_spares_reservations(void **state)
{
    (void)state;
    make(&a, 1, "reserved", 1024, 400, 0);
    fill(&a, 0, 400, true); /* all within its reservation, all zero */
    eat_to(700);
    policy_update();
    assert_true(policy_state() >= MS_SOFT);
    assert_null(policy_pick_victim(0, NULL));
    assert_int_equal(policy_background(UINT64_MAX), 0);
    assert_int_equal(a.count[P2M_RESIDENT], 400);
    /* One page above it: that one may go. */
    fill(&a, 400, 1, true);
    int i = -1;
    assert_ptr_equal(policy_pick_victim(0, &i), &a);
    assert_int_equal(i, 0);
    assert_null(policy_pick_victim(1u << 0, NULL));
}

/* A limited VM keeps headroom below its limit whatever the machine's state,
 * so that its faults do not reclaim directly. */
static void test_limit_headroom(void **state)
{
    (void)state;
    make(&a, 1, "limited", 4096, 0, 1024);
    uint64_t h = policy_limit_headroom(&a);
    assert_int_equal(h, 2 * MM_RECLAIM_BATCH); /* 1024 / 16 = 64 is below the floor */
    fill(&a, 0, 1000, true);
    assert_int_equal(policy_update(), MS_HIGH);
    uint64_t got = policy_background(UINT64_MAX);
    assert_true(got > 0);
    assert_true(a.limit - p2m_guest_charge(&a) >= h + h / 2);
    struct policy_stats s;
    policy_get_stats(&s);
    assert_true(s.bg_limit_freed >= got);
    /* Faults now find room: none of the next h needs direct reclaim. */
    uint64_t d0 = a.st.direct[PF_DEMAND_ZERO];
    fill(&a, 1000, h, true);
    assert_int_equal(a.st.direct[PF_DEMAND_ZERO], d0);
}

/* ---- direct reclaim and costs -------------------------------------------------------- */

static void test_direct_counted(void **state)
{
    (void)state;
    make(&a, 1, "direct", 4096, 0, 256);
    fill(&a, 0, 256, true);
    uint64_t f0 = a.st.faults[PF_DEMAND_ZERO];
    assert_int_equal(a.st.direct[PF_DEMAND_ZERO], 0);
    /* At its limit: the next fault reclaims (zero pages) itself. */
    fill(&a, 256, 1, true);
    assert_int_equal(a.st.direct[PF_DEMAND_ZERO], 1);
    /* The batch made room: the next ones do not. */
    fill(&a, 257, 10, true);
    assert_int_equal(a.st.direct[PF_DEMAND_ZERO], 1);
    /* Every fault is in the histogram, in the bucket of its kind. */
    uint64_t sum = 0;
    for (int k = 0; k < P2M_COST_BUCKETS; k++)
        sum += a.st.cost_hist[PF_DEMAND_ZERO][k];
    assert_int_equal(sum, a.st.faults[PF_DEMAND_ZERO]);
    assert_int_equal(sum, f0 + 11);
    for (int k = 0; k < P2M_COST_BUCKETS; k++)
        assert_int_equal(a.st.cost_hist[PF_REFILL][k], 0);
    /* A refill (a zero page reclaimed, touched again) is its own kind. */
    uint64_t r0 = a.st.faults[PF_REFILL];
    (void)r0;
    backend_log_clear();
    policy_print_vm(&a);
    LOGGED("[mm] vm direct: direct reclaim/faults and cost in cycles by kind: demand-zero 1/");
}

static void test_percentile(void **state)
{
    (void)state;
    memset(&a, 0, sizeof(a));
    assert_int_equal(policy_cost_percentile(&a, PF_DEMAND_ZERO, 50), 0);
    /* 90 faults in [1024, 2048), 10 in [32768, 65536). */
    a.st.cost_hist[PF_DEMAND_ZERO][11] = 90;
    a.st.cost_hist[PF_DEMAND_ZERO][16] = 10;
    /* p50: the 50th of 90 in [1024, 2048). */
    assert_int_equal(policy_cost_percentile(&a, PF_DEMAND_ZERO, 50), 1024 + 1024 * 50 / 90);
    /* p90: the last of the first bucket. */
    assert_int_equal(policy_cost_percentile(&a, PF_DEMAND_ZERO, 90), 2048);
    /* p99: the 9th of 10 in [32768, 65536). */
    assert_int_equal(policy_cost_percentile(&a, PF_DEMAND_ZERO, 99), 32768 + 32768 * 9 / 10);
    assert_int_equal(policy_cost_percentile(&a, PF_DEMAND_ZERO, 100), 65536);
    assert_int_equal(policy_cost_percentile(&a, PF_KIND_COUNT, 50), 0);
}

/* ---- the waiter ---------------------------------------------------------------------- */

static void test_waiter(void **state)
{
    (void)state;
    char why[224];
    make(&a, 1, "waiter", 256, 0, 0);
    policy_set_clock(1000000); /* 1 MHz: ms = 1000 ticks */
    uint64_t f = frame_free_count();
    /* Free frames changed since it waited: run. */
    assert_int_equal(policy_waiter(&a, 0, f + 1, 1000, 5000, why, sizeof(why)), PW_RUN);
    /* Nothing changed, within the limit: wait. */
    assert_int_equal(policy_waiter(&a, 0, f, 1000000, 5000, why, sizeof(why)), PW_WAIT);
    /* Past it: stop, with the reason. */
    assert_int_equal(policy_waiter(&a, 0, f, 6000000, 5000, why, sizeof(why)), PW_STOP);
    assert_non_null(strstr(why, "out of memory: waited 5000 ms for a frame"));
    assert_non_null(strstr(why, "memory state high"));
    policy_set_clock(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_scale, setup, teardown),
        cmocka_unit_test_setup_teardown(test_marks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_technique_sets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_states_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_states_hysteresis, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_flap_near_high, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cause, setup, teardown),
        cmocka_unit_test_setup_teardown(test_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_background_by_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_background_spares_reservations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limit_headroom, setup, teardown),
        cmocka_unit_test_setup_teardown(test_direct_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_percentile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_waiter, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

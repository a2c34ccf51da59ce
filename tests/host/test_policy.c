/* Balloon targets, the machine-pressure policy and the serial console
 * (mm/balloon.c second half, mm/console.c) on a small host-backed machine.
 *
 * Covered: balloon_set_target (plain, clamped to RAM less the reservation,
 * 0, with a policy part, overflow; changed_free / changed_freed recorded
 * only when the target changes); the "balloon holds its target" line
 * (needs a polling driver, said once per target, with the machine's free
 * frames and the frames inflating freed since the target changed); the
 * policy under machine pressure: the low/high marks, shares in proportion
 * to idle memory, capped by idle pages, by a quarter of RAM and by the
 * reservation, idle memory from the sweeps (or all resident pages
 * without A/D flags), nothing for a VM whose driver never polled or went
 * quiet BALLOON_LISTEN_TICKS ago, nothing for a VM that waits for frames
 * unless nobody else can give, a VM waiting below its limit makes
 * pressure but one at its own limit does not, pending requests of
 * listening drivers stop further asks, no_donor, the release after
 * BALLOON_CALM_TICKS calm ticks (whole and by shares, calm reset by a tick
 * between high and high + min_free / 4), policy off; the console's commands and
 * its byte-by-byte line editor; balloon_print_vm and balloon_policy_print.
 *
 * The policy keeps static state (tick counter, calm counter, statistics)
 * across tests: every test works with differences and never with absolute
 * tick numbers, and a release test first makes one pressure tick (which
 * resets the calm counter). */
#include "tests/host/backend.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mm/balloon.h"
#include "mm/console.h"
#include "mm/mm.h"
#include "mm/p2m.h"
#include "mm/share.h"
#include "mm/swap.h"
#include "mm/zpool.h"

#define FRAMES 2048 /* 8 MiB: the share tables get their minimum size */

static struct p2m a, b, c;
static struct balloon_stats bs;

/* Frames taken away from the machine (FS_HV) to make pressure. */
static mfn_t eaten[FRAMES];
static unsigned neaten;

/* ---- set-up ------------------------------------------------------------------- */

static void give_all(void);

static int setup(void **state)
{
    (void)state;
    backend_frames(FRAMES, 1, FRAMES - 1);
    mm_set_watermark(4);
    backend_log_clear();
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    memset(&c, 0, sizeof(c));
    memset(&bs, 0, sizeof(bs));
    neaten = 0;
    balloon_policy_enable(true);
    assert_int_equal(share_init(FRAMES, 64), 0);
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
    gone(&c);
    share_fini(); /* asserts the stable table is empty */
    zpool_fini();
    swap_detach();
    backend_free();
    mm_set_watermark(4);
    balloon_policy_enable(true);
    return 0;
}

static void make(struct p2m *p, uint16_t owner, const char *name, uint64_t ngfn,
                 uint64_t reserve, uint64_t limit)
{
    assert_int_equal(p2m_init(p, owner, name, ngfn, reserve, limit, true), 0);
    assert_int_equal(mm_register(p), 0);
}

/* The same without EPT accessed/dirty flags. */
static void make_no_ad(struct p2m *p, uint16_t owner, const char *name, uint64_t ngfn)
{
    assert_int_equal(p2m_init(p, owner, name, ngfn, 0, 0, false), 0);
    assert_int_equal(mm_register(p), 0);
}

/* Populates gfns first .. first + n - 1 (write faults). */
static void populate(struct p2m *p, uint64_t first, uint64_t n)
{
    for (uint64_t g = first; g < first + n; g++)
        assert_int_equal(p2m_fault(p, g * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
}

/* Two sweeps with nothing touched (the host never sets EPT A bits): every
 * resident page is idle. */
static void go_idle(struct p2m *p)
{
    p2m_sweep(p);
    p2m_sweep(p);
    assert_int_equal(p->st.idle_pages, p->count[P2M_RESIDENT]);
}

/* Takes frames away until exactly free frames are left. */
static void eat_to(uint64_t free)
{
    while (frame_free_count() > free) {
        mfn_t m = frame_alloc(FS_HV, 0);
        assert_int_not_equal(m, MFN_INVALID);
        assert_true(neaten < FRAMES);
        eaten[neaten++] = m;
    }
    assert_int_equal(frame_free_count(), free);
}

/* Gives eaten frames back until free frames are free. */
static void give_to(uint64_t free)
{
    while (frame_free_count() < free && neaten)
        frame_free(eaten[--neaten]);
    assert_int_equal(frame_free_count(), free);
}

static void give_all(void)
{
    while (neaten)
        frame_free(eaten[--neaten]);
}

/* The guest's driver asks for its target (BALLOON_TARGET at CPL 0), which
 * makes it a listener. Returns the target it was given. */
static uint64_t poll_target(struct p2m *p)
{
    struct hc_regs r = { .rax = HC_BALLOON_TARGET };
    hc_dispatch(p, &bs, 0, &r);
    assert_int_equal(r.rax, HC_OK);
    assert_int_equal(r.rcx, p->count[P2M_BALLOONED]);
    return r.rbx;
}

static void inflate(struct p2m *p, const uint64_t *g, unsigned n)
{
    unsigned bad = 0;
    assert_int_equal(p2m_balloon_inflate(p, g, n, &bad), 0);
}

static struct balloon_policy_stats pst(void)
{
    struct balloon_policy_stats s;
    balloon_policy_get_stats(&s);
    return s;
}

/* ---- the log ------------------------------------------------------------------ */

static int log_count(const char *s)
{
    int n = 0;
    for (const char *l = backend_log(); (l = strstr(l, s)); l += strlen(s))
        n++;
    return n;
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
#define LOG_EMPTY()                                                               \
    do {                                                                          \
        if (backend_log()[0])                                                     \
            fail_msg("expected no log; the log:\n%s", backend_log());             \
    } while (0)

/* ---- balloon_set_target ------------------------------------------------------- */

static void test_set_target(void **state)
{
    (void)state;
    make(&a, 1, "a", 64, 16, 0); /* at most 48 pages in the balloon */
    populate(&a, 0, 20);

    assert_int_equal(balloon_set_target(&a, 10), 10);
    assert_int_equal(a.bl.set, 10);
    assert_int_equal(a.bl.target, 10);
    assert_int_equal(a.bl.policy, 0);
    assert_int_equal(balloon_set_target(&a, 48), 48);
    assert_int_equal(balloon_set_target(&a, 49), 48); /* clamped: RAM less the reservation */
    assert_int_equal(a.bl.set, 49);                   /* what was asked stays */
    assert_int_equal(balloon_set_target(&a, 64), 48);
    assert_int_equal(balloon_set_target(&a, 0), 0);
    assert_int_equal(a.bl.target, 0);

    /* With a policy part: set + policy, still clamped, overflow clamped. */
    a.bl.policy = 5;
    assert_int_equal(balloon_set_target(&a, 10), 15);
    assert_int_equal(balloon_set_target(&a, 43), 48);
    assert_int_equal(balloon_set_target(&a, 44), 48);
    assert_int_equal(balloon_set_target(&a, UINT64_MAX), 48);
    assert_int_equal(balloon_set_target(&a, UINT64_MAX - 2), 48); /* set + policy wraps */
    a.bl.policy = 0;
    assert_int_equal(balloon_set_target(&a, 0), 0);

    /* A change records the machine's free frames and the frames inflating
     * had freed by then; setting the same target again records nothing. */
    uint64_t g = 3;
    inflate(&a, &g, 1); /* a resident page: one frame freed */
    assert_int_equal(a.st.balloon_freed, 1);
    eat_to(frame_free_count() - 3);
    uint64_t f1 = frame_free_count();
    assert_int_equal(balloon_set_target(&a, 7), 7);
    assert_int_equal(a.bl.changed_free, f1);
    assert_int_equal(a.bl.changed_freed, 1);
    eat_to(f1 - 2);
    g = 4;
    inflate(&a, &g, 1);
    assert_int_equal(a.st.balloon_freed, 2);
    assert_int_equal(balloon_set_target(&a, 7), 7); /* unchanged target */
    assert_int_equal(a.bl.changed_free, f1);
    assert_int_equal(a.bl.changed_freed, 1);
    /* A new target records the new counts ... */
    assert_int_equal(balloon_set_target(&a, 48), 48);
    uint64_t f2 = frame_free_count();
    assert_int_equal(a.bl.changed_free, f2);
    assert_int_equal(a.bl.changed_freed, 2);
    /* ... a set that the clamp leaves at the same target records nothing. */
    eat_to(f2 - 1);
    assert_int_equal(balloon_set_target(&a, 60), 48);
    assert_int_equal(a.bl.changed_free, f2);
    /* Down to 0 is a change. */
    assert_int_equal(balloon_set_target(&a, 0), 0);
    assert_int_equal(a.bl.changed_free, f2 - 1);
    assert_int_equal(poll_target(&a), 0);
    assert_int_equal(p2m_check(&a), 0);
}

/* ---- the "holds its target" line ---------------------------------------------- */

static void test_reached_reported_once(void **state)
{
    (void)state;
    char want[256];
    make(&a, 1, "a", 64, 0, 0);
    populate(&a, 0, 10);
    uint64_t g9 = 9;
    inflate(&a, &g9, 1); /* freed before the target: not counted below */
    assert_int_equal(a.st.balloon_freed, 1);

    uint64_t f0 = frame_free_count();
    assert_int_equal(balloon_set_target(&a, 8), 8);
    uint64_t g[] = { 0, 1, 2, 3, 4, 5, 20 }; /* six resident, one unpopulated */
    inflate(&a, g, 7);
    assert_int_equal(a.count[P2M_BALLOONED], 8);
    assert_int_equal(frame_free_count(), f0 + 6);

    /* No driver has polled: nobody to tell. */
    backend_log_clear();
    balloon_policy_tick();
    NOT_LOGGED("holds its target");

    a.bl.polls++;
    backend_log_clear();
    balloon_policy_tick();
    snprintf(want, sizeof(want),
             "[mm] vm a: balloon holds its target of 8 pages: machine free frames %llu -> %llu "
             "(+6) since the target changed, 6 frames freed by inflating\n",
             (unsigned long long)f0, (unsigned long long)(f0 + 6));
    LOGGED(want);
    assert_int_equal(log_count("holds its target"), 1);
    assert_int_equal(a.bl.reported, 8);

    /* Once per target. */
    backend_log_clear();
    balloon_policy_tick();
    balloon_policy_tick();
    NOT_LOGGED("holds its target");

    /* A new target, not yet held: nothing; then held with fewer free
     * frames than at the change, and nothing freed by inflating. */
    uint64_t f1 = frame_free_count();
    assert_int_equal(balloon_set_target(&a, 9), 9);
    backend_log_clear();
    balloon_policy_tick();
    NOT_LOGGED("holds its target");
    eat_to(f1 - 3);
    uint64_t g21 = 21;
    inflate(&a, &g21, 1);
    backend_log_clear();
    balloon_policy_tick();
    snprintf(want, sizeof(want),
             "[mm] vm a: balloon holds its target of 9 pages: machine free frames %llu -> %llu "
             "(-3) since the target changed, 0 frames freed by inflating\n",
             (unsigned long long)f1, (unsigned long long)(f1 - 3));
    LOGGED(want);
    assert_int_equal(log_count("holds its target"), 1);

    /* Also said with the policy off (it is not the policy's line). */
    balloon_policy_enable(false);
    assert_int_equal(balloon_set_target(&a, 10), 10);
    uint64_t g22 = 22;
    inflate(&a, &g22, 1);
    backend_log_clear();
    balloon_policy_tick();
    LOGGED("[mm] vm a: balloon holds its target of 10 pages");
    assert_int_equal(p2m_check(&a), 0);
}

/* ---- the policy under pressure ------------------------------------------------ */

/* Machine pressure for the tests below: the watermark (low mark) at 100
 * frames places min_free at 313 (100 / 32%), so the soft threshold (low)
 * is 200, high = clear + clear's hysteresis = 313 + 313 / 4 = 391 and the
 * policy gives back above high + 313 / 4 = 469 (no VM is owed anything):
 * free frames 170 ask for 221 pages. */
#define WM 100
#define LOW 200
#define HIGH 391

static void test_policy_proportional(void **state)
{
    (void)state;
    char want[256];
    make(&a, 1, "a", 256, 0, 0);
    make(&b, 2, "b", 256, 0, 0);
    populate(&a, 0, 200);
    populate(&b, 0, 100);
    go_idle(&a);
    go_idle(&b);
    assert_int_equal(poll_target(&a), 0);
    assert_int_equal(poll_target(&b), 0);

    mm_set_watermark(WM);
    eat_to(170);
    struct balloon_policy_stats s0 = pst();
    backend_log_clear();
    balloon_policy_tick();
    struct balloon_policy_stats s1 = pst();
    assert_int_equal(s1.last_low, LOW);
    assert_int_equal(s1.last_high, HIGH);
    assert_int_equal(s1.ticks, s0.ticks + 1);
    assert_int_equal(s1.pressure_ticks, s0.pressure_ticks + 1);
    assert_int_equal(s1.no_donor, s0.no_donor);

    /* 221 pages asked, two to one like the idle memory (200 and 100);
     * rounding up may add a page to each share. */
    uint64_t ta = a.bl.target, tb = b.bl.target;
    assert_int_equal(a.bl.policy, ta);
    assert_int_equal(b.bl.policy, tb);
    assert_int_equal(a.bl.set, 0);
    assert_true(ta >= 147 && ta <= 148);
    assert_true(tb >= 73 && tb <= 74);
    assert_true(ta + tb >= 221 && ta + tb <= 223);
    assert_true(ta + 2 >= 2 * tb && ta <= 2 * tb + 2);
    assert_int_equal(s1.asked - s0.asked, ta + tb);
    assert_int_equal(a.bl.policy_inflate, ta);
    assert_int_equal(b.bl.policy_inflate, tb);
    snprintf(want, sizeof(want),
             "[mm] balloon policy: machine free 680K, low mark 800K: vm a target 0 -> %llu pages "
             "(idle 200 of 200 resident)\n",
             (unsigned long long)ta);
    LOGGED(want);
    snprintf(want, sizeof(want),
             "[mm] balloon policy: machine free 680K, low mark 800K: vm b target 0 -> %llu pages "
             "(idle 100 of 100 resident)\n",
             (unsigned long long)tb);
    LOGGED(want);
    assert_int_equal(log_count("[mm] balloon policy:"), 2);
    /* What the drivers are told. */
    assert_int_equal(poll_target(&a), ta);
    assert_int_equal(poll_target(&b), tb);

    /* The guests have not given it yet: still under pressure, but the
     * pending pages cover what is wanted, so nobody is asked again. */
    backend_log_clear();
    balloon_policy_tick();
    balloon_policy_tick();
    NOT_LOGGED("balloon policy");
    assert_int_equal(a.bl.target, ta);
    assert_int_equal(b.bl.target, tb);
    assert_int_equal(pst().pressure_ticks, s1.pressure_ticks + 2);
    assert_int_equal(pst().asked, s1.asked);

    /* 30 frames fewer: short by less than BALLOON_MIN_ASK beyond what is
     * pending, which waits. */
    eat_to(140);
    uint64_t pending = ta + tb;
    backend_log_clear();
    balloon_policy_tick();
    NOT_LOGGED("balloon policy");
    assert_int_equal(a.bl.target, ta);
    assert_int_equal(b.bl.target, tb);

    /* 65 fewer: only what pending does not cover is asked for. */
    eat_to(105);
    backend_log_clear();
    balloon_policy_tick();
    uint64_t more_a = a.bl.target - ta, more_b = b.bl.target - tb;
    uint64_t more = HIGH - 105 - pending; /* high - free - pending */
    assert_true(more_a + more_b >= more && more_a + more_b <= more + 2);
    assert_true(more_a > more_b && more_b > 0);
    assert_true(more_a + 2 >= 2 * more_b && more_a <= 2 * more_b + 2);
    LOGGED("vm a target");
    LOGGED("vm b target");

    /* The guests give what they were asked for: pending is gone, the
     * frames came back and there is no pressure left. */
    uint64_t list[256];
    for (uint64_t i = 0; i < a.bl.target; i++)
        list[i] = i;
    inflate(&a, list, (unsigned)a.bl.target);
    for (uint64_t i = 0; i < b.bl.target; i++)
        list[i] = i;
    inflate(&b, list, (unsigned)b.bl.target);
    assert_true(frame_free_count() >= HIGH);
    s1 = pst();
    backend_log_clear();
    balloon_policy_tick();
    assert_int_equal(pst().pressure_ticks, s1.pressure_ticks);
    assert_int_equal(a.bl.target, ta + more_a);
    LOGGED("[mm] vm a: balloon holds its target");
    LOGGED("[mm] vm b: balloon holds its target");
    assert_int_equal(p2m_check(&a), 0);
    assert_int_equal(p2m_check(&b), 0);
}

static void test_policy_caps(void **state)
{
    (void)state;
    char want[256];
    make(&a, 1, "a", 64, 0, 0);   /* keeps a quarter: at most 48 */
    make(&b, 2, "b", 256, 0, 0);  /* little idle memory */
    make(&c, 3, "c", 64, 24, 0);  /* keeps its reservation: at most 40 */
    populate(&a, 0, 64);
    populate(&b, 0, 30);
    populate(&c, 0, 50);
    go_idle(&a);
    go_idle(&b);
    go_idle(&c);
    a.bl.polls++;
    b.bl.polls++;
    c.bl.polls++;

    /* 280 pages wanted, far more than anyone may give. */
    mm_set_watermark(WM);
    eat_to(20);
    backend_log_clear();
    balloon_policy_tick();
    assert_int_equal(pst().last_low, LOW);
    assert_int_equal(a.bl.target, 48);   /* 64 - 64 / 4 */
    assert_int_equal(b.bl.target, 30);   /* its idle pages */
    assert_int_equal(c.bl.target, 26);   /* idle above the reservation: 50 - 24 */
    LOGGED("vm a target 0 -> 48 pages (idle 64 of 64 resident)\n");
    LOGGED("vm b target 0 -> 30 pages (idle 30 of 30 resident)\n");
    /* The idle pages above its reservation are all c can give. */
    snprintf(want, sizeof(want), "vm c target 0 -> 26 pages (idle 26 of 50 resident)\n");
    LOGGED(want);

    /* Still short of 280 - 104 pending, but nobody has more to give: a
     * is at its floor, and b and c were asked for all their idle pages
     * and have not given them yet (they are not asked twice). */
    uint64_t nd = pst().no_donor;
    backend_log_clear();
    balloon_policy_tick();
    assert_int_equal(a.bl.target, 48);
    assert_int_equal(b.bl.target, 30);
    assert_int_equal(c.bl.target, 26);
    NOT_LOGGED("balloon policy:");
    assert_int_equal(pst().no_donor, nd + 1);

    /* c gives its 26 pages: its idle count drops by as much (the sweep
     * sees them gone), and it has no more to give. */
    uint64_t gl[26];
    for (int i = 0; i < 26; i++)
        gl[i] = (uint64_t)i;
    unsigned bad = 0;
    assert_int_equal(p2m_balloon_inflate(&c, gl, 26, &bad), 0);
    c.st.idle_pages = 0;
    backend_log_clear();
    balloon_policy_tick();
    assert_int_equal(c.bl.target, 26);
    NOT_LOGGED("vm c target");

    /* The console's set and the policy together never pass RAM less the
     * reservation, and the policy adds nothing at or above its cap. */
    assert_int_equal(balloon_set_target(&c, 30), 40); /* 30 + 26, clamped to 64 - 24 */
    backend_log_clear();
    balloon_policy_tick();
    assert_int_equal(c.bl.target, 40);
    NOT_LOGGED("vm c target");
}

static void test_policy_skips_silent_and_needy(void **state)
{
    (void)state;
    make(&a, 1, "a", 256, 0, 0);
    make(&b, 2, "b", 256, 0, 0);
    make(&c, 3, "c", 256, 0, 0);
    populate(&a, 0, 100);
    populate(&b, 0, 100);
    populate(&c, 0, 100);
    go_idle(&a);
    go_idle(&b);
    go_idle(&c);
    poll_target(&a);   /* a listens */
                       /* b's driver never polled */
    poll_target(&c);   /* c listens but waits for frames below its limit */
    c.st.waits++;

    mm_set_watermark(WM);
    eat_to(170);
    struct balloon_policy_stats s0 = pst();
    backend_log_clear();
    balloon_policy_tick();
    assert_int_equal(pst().pressure_ticks, s0.pressure_ticks + 1);
    /* A waiter: at least BALLOON_WAITER_ASK wanted, a gives all its idle. */
    assert_int_equal(a.bl.target, 100);
    assert_int_equal(b.bl.target, 0);
    assert_int_equal(c.bl.target, 0);
    assert_int_equal(b.bl.policy, 0);
    assert_int_equal(c.bl.policy, 0);
    LOGGED("[mm] balloon policy: machine free 680K, low mark 800K, a VM waits for frames: vm a "
           "target 0 -> 100 pages (idle 100 of 100 resident)\n");
    NOT_LOGGED("vm b target");
    NOT_LOGGED("vm c target");
    assert_int_equal(log_count("[mm] balloon policy:"), 1);

    /* a has been asked for all its idle pages and has not given them
     * yet: nobody else can give, so the needy c is asked now (its own
     * idle pages are its way out); the silent b never is. */
    poll_target(&a);
    poll_target(&c);
    backend_log_clear();
    balloon_policy_tick();
    assert_int_equal(a.bl.target, 100);
    assert_int_equal(c.bl.target, 100);
    assert_int_equal(b.bl.target, 0);
    LOGGED("vm c target 0 -> 100 pages");
    NOT_LOGGED("vm a target");
}

/* A VM that waits is asked only when nobody else can give: then its own
 * idle pages are the way out. */
static void test_policy_needy_last_resort(void **state)
{
    (void)state;
    make(&a, 1, "a", 256, 0, 0);
    make(&b, 2, "b", 256, 0, 0);
    populate(&a, 0, 100);
    populate(&b, 0, 100);
    go_idle(&a);
    go_idle(&b);
    poll_target(&a);      /* a listens and waits for frames */
    a.st.waits++;         /* b has idle memory but no driver */

    mm_set_watermark(WM);
    eat_to(170);
    struct balloon_policy_stats s0 = pst();
    backend_log_clear();
    balloon_policy_tick();
    assert_int_equal(pst().no_donor, s0.no_donor);
    assert_int_equal(a.bl.target, 100);
    assert_int_equal(b.bl.target, 0);
    LOGGED(", a VM waits for frames: vm a target 0 -> 100 pages (idle 100 of 100 resident)\n");

    /* Once b's driver listens, b is asked and a is left alone (a's
     * earlier ask withdrawn by hand so that nothing is pending). */
    a.bl.policy = 0;
    assert_int_equal(balloon_set_target(&a, 0), 0);
    poll_target(&b);
    a.st.waits++;
    backend_log_clear();
    balloon_policy_tick();
    assert_int_equal(a.bl.target, 0);
    assert_int_equal(b.bl.target, 100);
    NOT_LOGGED("vm a target");
}

static void test_policy_needy_pressure(void **state)
{
    (void)state;
    make(&a, 1, "a", 256, 0, 0);
    make(&b, 2, "b", 64, 0, 0);
    make(&c, 3, "c", 64, 0, 16); /* limited to 16 frames */
    populate(&a, 0, 50);
    populate(&b, 0, 10);
    populate(&c, 0, 16);
    go_idle(&a);
    poll_target(&a);

    /* Plenty of free frames: no pressure. */
    balloon_policy_tick();
    struct balloon_policy_stats s0 = pst();
    assert_true(frame_free_count() > s0.last_high);
    assert_int_equal(a.bl.target, 0);

    /* c waits at its own limit: the others' balloons cannot help it. */
    c.st.waits++;
    backend_log_clear();
    balloon_policy_tick();
    assert_int_equal(pst().pressure_ticks, s0.pressure_ticks);
    assert_int_equal(a.bl.target, 0);
    NOT_LOGGED("balloon policy");

    /* b waits below its limit: the machine refused it, pressure. */
    b.st.waits++;
    backend_log_clear();
    balloon_policy_tick();
    assert_int_equal(pst().pressure_ticks, s0.pressure_ticks + 1);
    assert_int_equal(a.bl.target, 50); /* all its idle pages: BALLOON_WAITER_ASK wanted */
    LOGGED(", a VM waits for frames: vm a target 0 -> 50 pages");
    assert_int_equal(b.bl.target, 0);

    /* One wait is pressure for a short while, not for ever. */
    int n = 0;
    uint64_t pt = pst().pressure_ticks;
    for (; n < BALLOON_NEEDY_TICKS; n++) {
        balloon_policy_tick();
        if (pst().pressure_ticks == pt)
            break;
        pt = pst().pressure_ticks;
    }
    assert_true(n < BALLOON_NEEDY_TICKS);
    uint64_t t = a.bl.target;
    for (int i = 0; i < 4; i++)
        balloon_policy_tick();
    assert_int_equal(pst().pressure_ticks, pt);
    assert_int_equal(a.bl.target, t);
}

static void test_policy_no_donor(void **state)
{
    (void)state;
    make(&a, 1, "a", 256, 0, 0);
    make(&b, 2, "b", 256, 0, 0);
    populate(&a, 0, 100);
    go_idle(&a); /* idle memory, but nobody listens */

    mm_set_watermark(WM);
    eat_to(170);
    struct balloon_policy_stats s0 = pst();
    backend_log_clear();
    balloon_policy_tick();
    struct balloon_policy_stats s1 = pst();
    assert_int_equal(s1.pressure_ticks, s0.pressure_ticks + 1);
    assert_int_equal(s1.no_donor, s0.no_donor + 1);
    assert_int_equal(s1.asked, s0.asked);
    assert_int_equal(a.bl.target, 0);
    NOT_LOGGED("balloon policy");

    /* b listens but has no idle memory (nothing resident). */
    poll_target(&b);
    balloon_policy_tick();
    assert_int_equal(pst().no_donor, s1.no_donor + 1);
    assert_int_equal(b.bl.target, 0);

    /* a's driver shows up, but the console already asked it for all the
     * policy may take (256 - 64): still nobody to ask. */
    assert_int_equal(balloon_set_target(&a, 192), 192);
    uint64_t g[192];
    for (unsigned i = 0; i < 192; i++)
        g[i] = 64 + i; /* pages 0 .. 63 stay resident and idle */
    inflate(&a, g, 192);
    eat_to(170); /* the frames inflating freed go again */
    poll_target(&a);
    balloon_policy_tick();
    assert_int_equal(pst().no_donor, s1.no_donor + 2);
    assert_int_equal(a.bl.policy, 0);
    assert_int_equal(a.bl.target, 192);

    /* Below its cap it is a donor. */
    assert_int_equal(balloon_set_target(&a, 0), 0);
    poll_target(&a);
    balloon_policy_tick();
    assert_int_equal(pst().no_donor, s1.no_donor + 2);
    assert_true(a.bl.policy > 0);
}

/* A driver last heard BALLOON_LISTEN_TICKS ticks ago no longer listens;
 * one heard a tick later still does. */
static void test_policy_stale_driver(void **state)
{
    (void)state;
    make(&a, 1, "a", 256, 0, 0);
    make(&b, 2, "b", 256, 0, 0);
    populate(&a, 0, 100);
    populate(&b, 0, 100);
    go_idle(&a);
    go_idle(&b);

    poll_target(&a);
    balloon_policy_tick(); /* tick T: a heard */
    poll_target(&b);
    balloon_policy_tick(); /* T + 1: b heard */
    for (int i = 2; i < BALLOON_LISTEN_TICKS; i++)
        balloon_policy_tick();
    assert_int_equal(a.bl.target, 0);
    assert_int_equal(b.bl.target, 0);

    mm_set_watermark(WM);
    eat_to(170);
    backend_log_clear();
    balloon_policy_tick(); /* T + LISTEN: a silent for LISTEN ticks, b for LISTEN - 1 */
    assert_int_equal(a.bl.target, 0);
    assert_true(b.bl.target > 0);
    NOT_LOGGED("vm a target");
    LOGGED("vm b target 0 -> ");
}

/* What counts as idle memory: the sweep's count, capped at what is
 * resident; all resident pages without A/D flags. */
static void test_policy_idle_estimate(void **state)
{
    (void)state;
    make(&a, 1, "a", 256, 0, 0);
    make_no_ad(&b, 2, "b", 256);
    make(&c, 3, "c", 256, 0, 0);
    populate(&a, 0, 100);
    populate(&b, 0, 40);
    populate(&c, 0, 30);
    go_idle(&a);
    a.st.idle_pages = 20;  /* 80 of its pages were touched lately */
    c.st.idle_pages = 500; /* counted before pages went away */
    poll_target(&a);
    poll_target(&b);
    poll_target(&c);

    mm_set_watermark(WM);
    eat_to(20); /* 280 wanted: everyone gives all its idle pages */
    backend_log_clear();
    balloon_policy_tick();
    assert_int_equal(a.bl.target, 20);
    assert_int_equal(b.bl.target, 40);
    assert_int_equal(c.bl.target, 30);
    LOGGED("vm a target 0 -> 20 pages (idle 20 of 100 resident)\n");
    LOGGED("vm b target 0 -> 40 pages (idle 40 of 40 resident)\n");
    LOGGED("vm c target 0 -> 30 pages (idle 30 of 30 resident)\n");
}

/* Pages asked of a driver that went silent are not pending: nobody is
 * going to give them. */
static void test_policy_pending_of_silent_driver(void **state)
{
    (void)state;
    make(&a, 1, "a", 256, 0, 0);
    make(&b, 2, "b", 256, 0, 0);
    populate(&a, 0, 100);
    populate(&b, 0, 100);
    go_idle(&a);
    go_idle(&b);

    /* a was asked for 50 pages and then went quiet. */
    assert_int_equal(balloon_set_target(&a, 50), 50);
    poll_target(&a);
    for (int i = 0; i < BALLOON_LISTEN_TICKS; i++)
        balloon_policy_tick();
    poll_target(&b);

    /* 130 wanted; a's 50 are not coming, so all of it is asked of b. */
    mm_set_watermark(WM);
    eat_to(170);
    balloon_policy_tick();
    assert_int_equal(a.bl.target, 50);
    assert_int_equal(b.bl.target, 100); /* its idle pages: 130 is more */

    /* When a listens again its 50 are pending once more. */
    eat_to(80); /* 220 wanted, 150 pending */
    poll_target(&a);
    poll_target(&b);
    balloon_policy_tick();
    /* 70 more wanted; b was asked for all its idle pages already and a
     * may be asked only for the 50 idle pages not yet spoken for. */
    uint64_t more = a.bl.target - 50 + b.bl.target - 100;
    assert_int_equal(more, 50);
    assert_int_equal(a.bl.target, 100);
}

static void test_policy_off(void **state)
{
    (void)state;
    make(&a, 1, "a", 256, 0, 0);
    populate(&a, 0, 100);
    go_idle(&a);
    poll_target(&a);

    mm_set_watermark(WM);
    eat_to(170);
    balloon_policy_enable(false);
    assert_false(balloon_policy_enabled());
    struct balloon_policy_stats s0 = pst();
    backend_log_clear();
    balloon_policy_tick();
    balloon_policy_tick();
    struct balloon_policy_stats s1 = pst();
    assert_int_equal(a.bl.target, 0);
    assert_int_equal(a.bl.policy, 0);
    assert_int_equal(s1.ticks, s0.ticks + 2);
    assert_int_equal(s1.pressure_ticks, s0.pressure_ticks);
    assert_int_equal(s1.asked, s0.asked);
    NOT_LOGGED("balloon policy");

    balloon_policy_enable(true);
    assert_true(balloon_policy_enabled());
    balloon_policy_tick();
    assert_int_equal(a.bl.target, 100);
    assert_int_equal(pst().pressure_ticks, s0.pressure_ticks + 1);
}

/* Two VMs under pressure as in test_policy_proportional; a also has 10
 * pages set by the console and already ballooned. Returns what the
 * policy asked of a and b. */
static void pressure_then(uint64_t *pa, uint64_t *pb, bool with_set)
{
    make(&a, 1, "a", 256, 0, 0);
    make(&b, 2, "b", 256, 0, 0);
    populate(&a, 0, 200);
    populate(&b, 0, 100);
    go_idle(&a);
    go_idle(&b);
    if (with_set) {
        assert_int_equal(balloon_set_target(&a, 10), 10);
        uint64_t g[10];
        for (unsigned i = 0; i < 10; i++)
            g[i] = 200 + i; /* unpopulated: nothing freed, nothing resident lost */
        inflate(&a, g, 10);
    }
    poll_target(&a);
    poll_target(&b);
    mm_set_watermark(WM);
    eat_to(170);
    balloon_policy_tick(); /* also resets the calm counter */
    *pa = a.bl.policy;
    *pb = b.bl.policy;
    assert_true(*pa >= 147 && *pa <= 148);
    assert_true(*pb >= 73 && *pb <= 74);
    assert_int_equal(a.bl.target, (with_set ? 10 : 0) + *pa);
}

static void test_policy_release(void **state)
{
    (void)state;
    char want[256];
    uint64_t pa, pb;
    pressure_then(&pa, &pb, true);
    struct balloon_policy_stats s0 = pst();

    /* Free well above high + min_free / 4 (469): calm ticks count ... */
    give_to(700);
    for (int i = 0; i < 5; i++)
        balloon_policy_tick();
    assert_int_equal(a.bl.policy, pa);
    /* ... until one tick between high and high + margin starts them over. */
    eat_to(420);
    balloon_policy_tick();
    assert_int_equal(pst().pressure_ticks, s0.pressure_ticks);
    assert_int_equal(a.bl.policy, pa);
    give_to(700);
    backend_log_clear();
    for (int i = 1; i < BALLOON_CALM_TICKS; i++)
        balloon_policy_tick();
    assert_int_equal(a.bl.policy, pa);
    assert_int_equal(b.bl.policy, pb);
    NOT_LOGGED("given back");
    assert_int_equal(pst().released, s0.released);

    /* The BALLOON_CALM_TICKS-th calm tick: room 700 - 469 = 231 covers all
     * the policy took, so all of it goes back at once. */
    balloon_policy_tick();
    assert_int_equal(a.bl.policy, 0);
    assert_int_equal(b.bl.policy, 0);
    assert_int_equal(a.bl.set, 10);
    assert_int_equal(a.bl.target, 10);
    assert_int_equal(b.bl.set, 0);
    assert_int_equal(b.bl.target, 0);
    assert_int_equal(a.bl.policy_release, pa);
    assert_int_equal(b.bl.policy_release, pb);
    assert_int_equal(a.bl.policy_inflate, pa);
    assert_int_equal(pst().released, s0.released + pa + pb);
    snprintf(want, sizeof(want),
             "[mm] balloon policy: machine free 2.7M, above 1.8M: vm a target %llu -> 10 pages "
             "(given back %llu)\n",
             (unsigned long long)(10 + pa), (unsigned long long)pa);
    LOGGED(want);
    snprintf(want, sizeof(want), "vm b target %llu -> 0 pages (given back %llu)\n",
             (unsigned long long)pb, (unsigned long long)pb);
    LOGGED(want);
    assert_int_equal(poll_target(&a), 10);

    /* Nothing left to give. */
    backend_log_clear();
    balloon_policy_tick();
    NOT_LOGGED("given back");
    assert_int_equal(pst().released, s0.released + pa + pb);
}

static void test_policy_release_by_shares(void **state)
{
    (void)state;
    uint64_t pa, pb;
    pressure_then(&pa, &pb, false);
    struct balloon_policy_stats s0 = pst();

    /* Room 519 - 469 = 50 of the 222 or so taken: a share per tick. */
    give_to(519);
    for (int i = 1; i < BALLOON_CALM_TICKS; i++)
        balloon_policy_tick();
    assert_int_equal(a.bl.policy, pa);
    balloon_policy_tick();
    uint64_t ba = pa - a.bl.policy, bb = pb - b.bl.policy;
    assert_true(ba > 0 && bb > 0);
    assert_true(ba + bb >= 50 && ba + bb <= 52);
    assert_true(ba + 2 >= 2 * bb && ba <= 2 * bb + 2); /* in proportion to what each gave */
    assert_int_equal(a.bl.policy_release, ba);
    assert_int_equal(b.bl.policy_release, bb);
    assert_int_equal(pst().released, s0.released + ba + bb);
    assert_int_equal(a.bl.target, a.bl.policy);

    /* Later ticks give back the rest, never more than was taken. */
    for (int i = 0; i < 4; i++)
        balloon_policy_tick();
    assert_int_equal(a.bl.policy, 0);
    assert_int_equal(b.bl.policy, 0);
    assert_int_equal(a.bl.policy_release, pa);
    assert_int_equal(b.bl.policy_release, pb);
    assert_int_equal(pst().released, s0.released + pa + pb);
}

/* ---- the statistics lines ----------------------------------------------------- */

static void test_print_lines(void **state)
{
    (void)state;
    char want[320];
    make(&a, 1, "a", 64, 0, 0);
    make(&b, 2, "b", 64, 0, 0);
    populate(&a, 0, 6);

    /* Nothing to say for a VM without a balloon. */
    backend_log_clear();
    balloon_print_vm(&b);
    LOG_EMPTY();

    assert_int_equal(balloon_set_target(&a, 8), 8);
    uint64_t g[] = { 0, 1, 2, 3, 4, 5, 6, 7 };
    inflate(&a, g, 8);
    a.bl.polls++;
    backend_log_clear();
    balloon_print_vm(&a);
    LOGGED("[mm] vm a: balloon: target 8 pages (set 8 + policy 0), ballooned now 8, inflated 8 "
           "deflated 0 (freed 6), touched while ballooned 0; ");
    LOGGED("; policy asked 0 gave back 0\n");

    /* One pressure tick with nobody to ask, then the policy's line. */
    mm_set_watermark(WM);
    eat_to(170);
    balloon_policy_tick();
    struct balloon_policy_stats s = pst();
    assert_true(s.pressure_ticks > 0);
    backend_log_clear();
    balloon_policy_print();
    snprintf(want, sizeof(want),
             "[mm] balloon policy: on, %llu ticks, %llu under pressure (%llu with nobody to ask); "
             "asked %llu pages, gave back %llu; marks low 800K high 1.5M\n",
             (unsigned long long)s.ticks, (unsigned long long)s.pressure_ticks,
             (unsigned long long)s.no_donor, (unsigned long long)s.asked,
             (unsigned long long)s.released);
    LOGGED(want);
    balloon_policy_enable(false);
    backend_log_clear();
    balloon_policy_print();
    LOGGED("[mm] balloon policy: off, ");
}

/* ---- the console ------------------------------------------------------------- */

/* console_exec on a copy (it edits the line), with a fresh log. */
static void run(const char *cmd)
{
    char buf[CONSOLE_LINE_MAX + 1];
    snprintf(buf, sizeof(buf), "%s", cmd);
    backend_log_clear();
    console_exec(buf);
}

static void type(const char *s)
{
    for (; *s; s++)
        console_input((unsigned char)*s);
}

static void test_console_no_vm(void **state)
{
    (void)state;
    run("vms");
    LOGGED("[con] no VM is running\n");
    run("balloon a 1M");
    LOGGED("[con] warning: balloon: no running VM is called 'a'\n");
}

static void test_console_commands(void **state)
{
    (void)state;
    make(&a, 1, "a", 64, 0, 0);
    make(&b, 2, "b", 64, 16, 0);
    populate(&a, 0, 4);

    run("help");
    LOGGED("[con] commands: help | vms | balloon NAME SIZE");
    run("vms");
    LOGGED("[con] vm a: RAM 256K, resident 16K, idle 0 pages; balloon target 0 (set 0 + policy "
           "0), holds 0, driver not seen\n");
    LOGGED("[con] vm b: RAM 256K, resident 0, idle 0 pages; balloon target 0 (set 0 + policy "
           "0), holds 0, driver not seen\n");
    poll_target(&a);
    run("vms");
    LOGGED("[con] vm a: RAM 256K, resident 16K, idle 0 pages; balloon target 0 (set 0 + policy "
           "0), holds 0, driver polling\n");
    run("stats");
    LOGGED("[mm] machine: free ");
    LOGGED("[mm] vm a: ");

    /* Sizes. */
    run("balloon a 32K");
    LOGGED("[con] vm a: balloon target 0 -> 8 pages (set 8)\n");
    assert_int_equal(a.bl.set, 8);
    assert_int_equal(a.bl.target, 8);
    run("balloon a 10p");
    LOGGED("[con] vm a: balloon target 8 -> 10 pages (set 10)\n");
    assert_int_equal(a.bl.target, 10);
    run("balloon a 0");
    LOGGED("[con] vm a: balloon target 10 -> 0 pages (set 0)\n");
    assert_int_equal(a.bl.target, 0);
    run("balloon a 16KiB");
    assert_int_equal(a.bl.target, 4);
    run("balloon a 20kB");
    assert_int_equal(a.bl.target, 5);
    run("balloon a 12P");
    assert_int_equal(a.bl.target, 12);
    run("balloon a 8192"); /* bytes: whole pages */
    assert_int_equal(a.bl.target, 2);
    run("balloon a 8191"); /* not whole pages: refused, unchanged */
    LOGGED("[con] warning: balloon: 8191 bytes is not a whole number of 4K pages");
    assert_int_equal(a.bl.target, 2);
    run("balloon a 100");
    assert_int_equal(a.bl.target, 2);
    run("  balloon\ta   \t 24K  ");
    LOGGED("[con] vm a: balloon target 2 -> 6 pages (set 6)\n");
    run("balloon a 64p"); /* all its RAM: a has no reservation */
    assert_int_equal(a.bl.target, 64);
    run("balloon a 10p");

    /* Refused, target unchanged. */
    run("balloon a 64MiB");
    LOGGED("[con] warning: balloon: vm a has only 64 pages of RAM\n");
    assert_int_equal(a.bl.target, 10);
    assert_int_equal(a.bl.set, 10);
    run("balloon a 65p");
    LOGGED("[con] warning: balloon: vm a has only 64 pages of RAM\n");
    run("balloon nosuch 1M");
    LOGGED("[con] warning: balloon: no running VM is called 'nosuch'\n");
    static const char *const bad[] = {
        "lots", "1T", "p", "-5", "32Mx", "32MBB", "10pp", "1Kp", "0x10", "32mib",
        "99999999999999999999999", "17179869184G",
    };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char cmd[64], want[128];
        snprintf(cmd, sizeof(cmd), "balloon a %s", bad[i]);
        run(cmd);
        snprintf(want, sizeof(want),
                 "[con] warning: balloon: '%s' is not a size (like 32M, 512K or 1000p)\n",
                 bad[i]);
        LOGGED(want);
        assert_int_equal(a.bl.target, 10);
    }
    assert_int_equal(a.bl.set, 10);

    /* Clamped to RAM less the reservation. */
    run("balloon b 64p");
    LOGGED("[con] vm b: balloon target 0 -> 48 pages (set 64, clamped to RAM less the "
           "reservation)\n");
    assert_int_equal(b.bl.target, 48);
    assert_int_equal(b.bl.set, 64);
    run("balloon b 48p");
    LOGGED("[con] vm b: balloon target 48 -> 48 pages (set 48)\n");
    /* With a policy part the target is set + policy. */
    b.bl.policy = 5;
    run("balloon b 10p");
    LOGGED("[con] vm b: balloon target 48 -> 15 pages (set 10)\n");
    run("balloon b 45p");
    LOGGED("[con] vm b: balloon target 15 -> 48 pages (set 45, clamped");
    b.bl.policy = 0;

    /* Wrong words. */
    run("balloon a 1M extra");
    LOGGED("[con] warning: too many words: try help\n");
    assert_int_equal(a.bl.target, 10);
    run("a b c d e f");
    LOGGED("[con] warning: too many words: try help\n");
    run("frobnicate");
    LOGGED("[con] warning: unknown command or wrong arguments: 'frobnicate': try help\n");
    run("balloon a");
    LOGGED("[con] warning: unknown command or wrong arguments: 'balloon': try help\n");
    run("help me");
    LOGGED("[con] warning: unknown command or wrong arguments: 'help': try help\n");
    NOT_LOGGED("commands:");
    run("policy maybe");
    LOGGED("[con] warning: unknown command or wrong arguments: 'policy': try help\n");
    assert_true(balloon_policy_enabled());

    /* The policy switch. */
    run("policy off");
    LOGGED("[con] balloon policy off\n");
    assert_false(balloon_policy_enabled());
    run("policy on");
    LOGGED("[con] balloon policy on\n");
    assert_true(balloon_policy_enabled());

    /* Empty lines say nothing. */
    run("");
    LOG_EMPTY();
    run("   \t  ");
    LOG_EMPTY();
}

static void test_console_input(void **state)
{
    (void)state;
    make(&a, 1, "a", 64, 0, 0);

    /* A line runs on CR or on LF; CR LF runs it once. */
    backend_log_clear();
    type("help");
    LOG_EMPTY(); /* not before the end of the line */
    console_input('\r');
    LOGGED("[con] > help\n");
    LOGGED("[con] commands: ");
    backend_log_clear();
    type("help\r\n");
    assert_int_equal(log_count("> help"), 1);
    assert_int_equal(log_count("commands: "), 1);
    backend_log_clear();
    type("vms\n");
    LOGGED("[con] > vms\n");
    LOGGED("[con] vm a: RAM 256K");

    /* Backspace (8 and DEL) edits; at an empty line it does nothing. */
    backend_log_clear();
    type("balloon a 33\b2K\n");
    LOGGED("[con] > balloon a 32K\n");
    assert_int_equal(a.bl.target, 8);
    backend_log_clear();
    type("vmz\x7fs\n");
    LOGGED("[con] > vms\n");
    backend_log_clear();
    type("\b\b\x7fhelp\n");
    LOGGED("[con] > help\n");
    backend_log_clear();
    type("x\b\b\n"); /* edited down to nothing: an empty line */
    LOG_EMPTY();

    /* Control bytes and bytes outside printable ASCII are dropped. */
    backend_log_clear();
    console_input('h');
    console_input(1);
    console_input('e');
    console_input(27);
    console_input('\t');
    console_input('l');
    console_input(200);
    console_input(255);
    console_input(-1);
    console_input(0);
    console_input('p');
    console_input('\n');
    LOGGED("[con] > help\n");
    LOGGED("[con] commands: ");

    /* CONSOLE_LINE_MAX characters fit ... */
    char line[CONSOLE_LINE_MAX + 8];
    memset(line, ' ', sizeof(line));
    memcpy(line, "help", 4);
    line[CONSOLE_LINE_MAX] = 0;
    backend_log_clear();
    type(line);
    console_input('\n');
    LOGGED("[con] > help ");
    LOGGED("[con] commands: ");

    /* ... one more is refused with a warning and does not run ... */
    memset(line, ' ', sizeof(line));
    memcpy(line, "balloon a 3p", 12);
    line[CONSOLE_LINE_MAX + 1] = 0;
    backend_log_clear();
    type(line);
    console_input('\r');
    LOGGED("[con] warning: line longer than 80 characters ignored\n");
    NOT_LOGGED("> ");
    NOT_LOGGED("balloon target");
    assert_int_equal(a.bl.target, 8);
    console_input('\n'); /* the LF after the CR: an empty line */

    /* ... and so is a much longer one; the next line works. */
    backend_log_clear();
    for (int i = 0; i < 3 * CONSOLE_LINE_MAX; i++)
        console_input(i < 12 ? "balloon a 3p"[i] : 'x');
    console_input('\n');
    LOGGED("line longer than 80 characters ignored");
    assert_int_equal(log_count("line longer"), 1);
    assert_int_equal(a.bl.target, 8);
    backend_log_clear();
    type("balloon a 3p\n");
    LOGGED("[con] > balloon a 3p\n");
    LOGGED("[con] vm a: balloon target 8 -> 3 pages (set 3)\n");
    assert_int_equal(a.bl.target, 3);
}

/* ---- mm_reclaim_for_waiters ----------------------------------------------- */

/* Writes one nonzero word into each populated page: not same-filled, so
 * without a pool or swap nothing is freeable and a reclaim pass spends
 * its whole scan budget. */
static void make_unfreeable(struct p2m *p)
{
    for (uint64_t g = 0; g < p->ngfn; g++) {
        assert_int_equal(p2m_peek(p, g)->state, P2M_RESIDENT);
        uint64_t *w = mm_phys_to_virt(p2m_peek(p, g)->payload << PAGE_SHIFT);
        w[0] = g + 1;
    }
}

/* The reclaim for waiting VMs may scan each VM for a whole turn of the
 * clock after second chances: twice the largest VM's GFNs. A smaller VM
 * registered first must not set the budget of a larger one (the budget
 * was the first VM's double whenever the next was less than twice as
 * large). */
static void test_reclaim_for_waiters_scan(void **state)
{
    (void)state;
    make(&a, 1, "a", 100, 0, 0); /* nothing resident: not a candidate */
    make(&b, 2, "b", 150, 0, 0);
    populate(&b, 0, 150);
    make_unfreeable(&b);
    uint64_t scanned0 = b.st.scanned;
    assert_int_equal(mm_reclaim_for_waiters(), 0);
    assert_int_equal(b.st.scanned - scanned0, 2 * 150);
    assert_int_equal(a.st.scanned, 0);
    assert_int_equal(b.count[P2M_RESIDENT], 150);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_set_target),
        T(test_reached_reported_once),
        T(test_policy_proportional),
        T(test_policy_caps),
        T(test_policy_skips_silent_and_needy),
        T(test_policy_needy_last_resort),
        T(test_policy_needy_pressure),
        T(test_policy_no_donor),
        T(test_policy_stale_driver),
        T(test_policy_idle_estimate),
        T(test_policy_pending_of_silent_driver),
        T(test_policy_off),
        T(test_policy_release),
        T(test_policy_release_by_shares),
        T(test_print_lines),
        T(test_console_no_vm),
        T(test_console_commands),
        T(test_console_input),
        T(test_reclaim_for_waiters_scan),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}

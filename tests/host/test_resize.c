/* Live resizing (mm/policy_admit.c second half) against the real p2m,
 * balloon and console on a small host-backed machine.
 *
 * Covered: a VM with max_memory boots held to its size (limit, limited,
 * balloon hold and target = max_memory - size); a guest without a driver
 * cannot take more than its size (its faults wait at the limit once its
 * pages hold data); growing raises the limit at once, lowers the target
 * and lets the guest use the new pages, and is refused above overcommit_max;
 * shrinking is refused without a listening driver (never polled, or silent
 * for BALLOON_LISTEN_TICKS) and changes nothing; with one, the target rises
 * and the limit stays until the balloon holds the pages, then drops (through
 * mm_periodic too), p2m_check clean; a shrink whose guest touched ballooned
 * pages (so its charge is above the new size) completes only after a
 * reclaim step brings it under; a grow calls off a waiting shrink; the
 * console's mem command: every error (unknown VM, malformed size, bytes
 * not whole pages, above max_memory, below the floor, no max_memory, too
 * many words) answered with nothing changed, sizes in K/M/G and pages, and
 * help naming it. */
#include "tests/host/backend.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "mm/balloon.h"
#include "mm/console.h"
#include "mm/mm.h"
#include "mm/p2m.h"
#include "mm/policy_admit.h"
#include "mm/zpool.h"

#define FRAMES 4096
#define MAXG 1024 /* 4M of max_memory */
#define BOOT 256  /* booting at 1M */

static struct p2m a, b;
static struct balloon_stats bs;

#define LOGGED(s)                                                                 \
    do {                                                                          \
        if (!strstr(backend_log(), (s)))                                          \
            fail_msg("log lacks \"%s\"; the log:\n%s", (s), backend_log());       \
    } while (0)

static int setup(void **state)
{
    (void)state;
    backend_frames(FRAMES, 1, FRAMES - 1);
    mm_set_watermark(4);
    assert_int_equal(mm_pool_init(0, 2048, false), 0); /* no compression: pages stay */
    policy_admit_set_max(0);
    backend_log_clear();
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    memset(&bs, 0, sizeof(bs));
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
    gone(&a);
    gone(&b);
    zpool_fini();
    policy_admit_set_max(0);
    backend_free();
    return 0;
}

/* a: max_memory MAXG pages, booting at BOOT. */
static void make_resizable(void)
{
    assert_int_equal(p2m_init(&a, 1, "a", MAXG, 0, BOOT, true), 0);
    policy_resize_init(&a, BOOT);
    assert_int_equal(mm_register(&a), 0);
}

/* Writes a non-zero, distinct word into gfn (populating it). */
static enum p2m_result write_page(struct p2m *p, uint64_t gfn)
{
    enum p2m_result r = P2M_OK;
    if (p2m_peek(p, gfn)->state != P2M_RESIDENT)
        r = p2m_fault(p, gfn * PAGE_SIZE, P2M_ACCESS_W);
    if (r != P2M_OK)
        return r;
    uint64_t *w = backend_frame(p2m_peek(p, gfn)->payload);
    for (int i = 0; i < 512; i++)
        w[i] = (gfn + 1) * 0x9e3779b97f4a7c15ULL + (uint64_t)i;
    return P2M_OK;
}

static void poll_target(struct p2m *p)
{
    struct hc_regs r = { .rax = HC_BALLOON_TARGET };
    hc_dispatch(p, &bs, 0, &r);
    assert_int_equal((int64_t)r.rax, HC_OK);
}

/* The guest's driver inflates n GFNs from first (whatever they hold). */
static void inflate(struct p2m *p, uint64_t first, uint64_t n)
{
    static uint64_t list[HC_BATCH_MAX];
    while (n) {
        unsigned k = n > HC_BATCH_MAX ? HC_BATCH_MAX : (unsigned)n, bad = 0;
        for (unsigned i = 0; i < k; i++)
            list[i] = first + i;
        int rc_ = p2m_balloon_inflate(p, list, k, &bad);
        if (rc_ < 0)
            fail_msg("inflate of %u GFNs from %llu: %d at index %u (resident %llu, charge %llu, "
                     "limit %llu)", k, (unsigned long long)first, rc_, bad,
                     (unsigned long long)p->count[P2M_RESIDENT], (unsigned long long)p2m_charge(p),
                     (unsigned long long)p->limit);
        first += k;
        n -= k;
    }
}

static void deflate(struct p2m *p, uint64_t first, uint64_t n)
{
    static uint64_t list[HC_BATCH_MAX];
    while (n) {
        unsigned k = n > HC_BATCH_MAX ? HC_BATCH_MAX : (unsigned)n, bad = 0;
        for (unsigned i = 0; i < k; i++)
            list[i] = first + i;
        assert_true(p2m_balloon_deflate(p, list, k, &bad) >= 0);
        first += k;
        n -= k;
    }
}

static void run(const char *cmd)
{
    char buf[CONSOLE_LINE_MAX + 1];
    snprintf(buf, sizeof(buf), "%s", cmd);
    backend_log_clear();
    console_exec(buf);
}

/* ---- boot ---- */

static void test_boot_held_to_size(void **state)
{
    (void)state;
    make_resizable();
    assert_true(a.rs.on);
    assert_int_equal(a.ngfn, MAXG);
    assert_int_equal(a.rs.size, BOOT);
    assert_int_equal(a.rs.want, BOOT);
    assert_int_equal(a.limit, BOOT);
    assert_true(a.limited);
    assert_int_equal(a.bl.hold, MAXG - BOOT);
    assert_int_equal(a.bl.target, MAXG - BOOT);
    assert_int_equal(policy_resize_floor(&a), BOOT / 4);
    assert_int_equal(policy_admit_size(&a), BOOT);
    /* A set target (hv.cfg balloon =, the console) comes on top. */
    assert_int_equal(balloon_set_target(&a, 10), MAXG - BOOT + 10);
    assert_int_equal(balloon_set_target(&a, 0), MAXG - BOOT);
}

/* No driver: the guest writes all over the memory its map shows, and
 * never holds more than its size. */
static void test_no_driver_stays_within_size(void **state)
{
    (void)state;
    make_resizable();
    unsigned waited = 0;
    for (uint64_t g = 0; g < MAXG; g++) {
        enum p2m_result r = write_page(&a, g);
        assert_true(r == P2M_OK || r == P2M_WAIT);
        if (r == P2M_WAIT)
            waited++;
        assert_true(p2m_guest_charge(&a) <= BOOT);
    }
    assert_true(waited >= MAXG - BOOT);
    assert_true(a.count[P2M_RESIDENT] <= BOOT);
    assert_int_equal(p2m_check(&a), 0);
}

/* ---- growing ---- */

static void test_grow(void **state)
{
    (void)state;
    char msg[224];
    make_resizable();
    /* The driver holds the boot target: GFNs BOOT .. MAXG-1. */
    poll_target(&a);
    inflate(&a, BOOT, MAXG - BOOT);
    for (uint64_t g = 0; g < BOOT; g++)
        assert_int_equal(write_page(&a, g), P2M_OK);
    assert_int_equal(write_page(&a, 0), P2M_OK);
    assert_int_equal(policy_resize_request(&a, 512, msg, sizeof(msg)), RS_DONE);
    assert_string_equal(msg, "vm a: memory 1M -> 2M: limit 512 pages, balloon target 768 -> 512 "
                             "pages");
    assert_int_equal(a.limit, 512);
    assert_int_equal(a.rs.size, 512);
    assert_int_equal(a.bl.target, MAXG - 512);
    assert_int_equal(a.rs.grows, 1);
    /* The driver deflates 256 GFNs; the guest uses them. */
    deflate(&a, BOOT, 256);
    for (uint64_t g = BOOT; g < 512; g++)
        assert_int_equal(write_page(&a, g), P2M_OK);
    assert_int_equal(a.count[P2M_RESIDENT], 512);
    assert_int_equal(p2m_check(&a), 0);
    /* To max_memory: no balloon left, no limit. */
    assert_int_equal(policy_resize_request(&a, MAXG, msg, sizeof(msg)), RS_DONE);
    assert_int_equal(a.bl.target, 0);
    assert_false(a.limited);
    /* The same size again: nothing to do, said so. */
    assert_int_equal(policy_resize_request(&a, MAXG, msg, sizeof(msg)), RS_DONE);
    assert_int_equal(a.rs.grows, 2);
}

static void test_grow_refused_above_overcommit_max(void **state)
{
    (void)state;
    char msg[224];
    make_resizable();
    uint64_t machine = mm_usable_frames();
    /* A cap that 512 pages fit under and MAXG does not. */
    policy_admit_set_max((uint32_t)((768 * 1000 + machine - 1) / machine));
    assert_int_equal(policy_resize_request(&a, MAXG, msg, sizeof(msg)), RS_REFUSED);
    assert_non_null(strstr(msg, "mem: vm a: growing it to 4M would make the overcommit ratio "));
    assert_non_null(strstr(msg, ", above overcommit_max "));
    assert_int_equal(a.limit, BOOT);
    assert_int_equal(a.bl.target, MAXG - BOOT);
    assert_int_equal(a.rs.refused, 1);
    assert_int_equal(policy_resize_request(&a, 512, msg, sizeof(msg)), RS_DONE);
    assert_int_equal(a.limit, 512);
}

/* ---- shrinking ---- */

static void test_shrink_refused_without_driver(void **state)
{
    (void)state;
    char msg[224];
    make_resizable();
    assert_int_equal(policy_resize_request(&a, 512, msg, sizeof(msg)), RS_DONE);
    assert_int_equal(policy_resize_request(&a, BOOT, msg, sizeof(msg)), RS_REFUSED);
    assert_string_equal(msg, "mem: vm a: cannot shrink from 2M to 1M: no balloon driver listens "
                             "(it never polled); its memory stays 2M");
    assert_int_equal(a.limit, 512);
    assert_int_equal(a.rs.want, 512);
    assert_int_equal(a.bl.target, MAXG - 512);
    /* A driver that polled once and then went quiet. */
    poll_target(&a);
    for (int i = 0; i < BALLOON_LISTEN_TICKS + 1; i++)
        balloon_policy_tick();
    assert_false(balloon_listening(&a));
    assert_int_equal(policy_resize_request(&a, BOOT, msg, sizeof(msg)), RS_REFUSED);
    assert_non_null(strstr(msg, "(it has not polled for 3 s)"));
    assert_int_equal(a.limit, 512);
    poll_target(&a);
    balloon_policy_tick();
    assert_true(balloon_listening(&a));
}

static void test_shrink_waits_for_balloon(void **state)
{
    (void)state;
    char msg[224];
    make_resizable();
    poll_target(&a);
    inflate(&a, BOOT, MAXG - BOOT);
    assert_int_equal(policy_resize_request(&a, 768, msg, sizeof(msg)), RS_DONE);
    deflate(&a, BOOT, 512);
    for (uint64_t g = 0; g < 768; g++)
        assert_int_equal(write_page(&a, g), P2M_OK);
    /* Back to BOOT: the target rises, the limit stays for now. */
    backend_log_clear();
    assert_int_equal(policy_resize_request(&a, BOOT, msg, sizeof(msg)), RS_PENDING);
    assert_string_equal(msg, "vm a: memory 3M -> 1M: balloon target 256 -> 768 pages; the limit "
                             "drops once the balloon holds them");
    assert_int_equal(a.bl.target, MAXG - BOOT);
    assert_int_equal(a.limit, 768);
    assert_int_equal(a.rs.want, BOOT);
    assert_int_equal(policy_admit_size(&a), 768); /* still counts as 3M */
    assert_false(policy_resize_step(&a));
    /* Half of it: still waiting. */
    inflate(&a, BOOT, 256);
    mm_periodic();
    assert_int_equal(a.limit, 768);
    /* All of it: the limit drops at the next periodic step. */
    inflate(&a, BOOT + 256, 256);
    mm_periodic();
    assert_int_equal(a.limit, BOOT);
    assert_int_equal(a.rs.size, BOOT);
    assert_true(a.limited);
    LOGGED("[mm] vm a: memory now 1M: its balloon holds 768 pages, limit lowered to 256 pages "
           "(resident 256)\n");
    assert_int_equal(p2m_check(&a), 0);
    /* Nothing more to do. */
    assert_false(policy_resize_step(&a));
    assert_int_equal(a.rs.shrinks, 1);
}

/* The driver says it holds the pages, but the guest touched some of them
 * while ballooned (a dump tool, say): they are resident again, and the
 * limit may drop only once reclaim brings the charge under it. */
static void test_shrink_touched_balloon_reclaims(void **state)
{
    (void)state;
    char msg[224];
    make_resizable();
    struct hc_regs r = { .rax = HC_GUEST_FEATURES, .rbx = HC_GUEST_HELD };
    hc_dispatch(&a, &bs, 0, &r);
    poll_target(&a);
    assert_int_equal((int64_t)r.rax, HC_OK);
    inflate(&a, BOOT, MAXG - BOOT); /* the boot target */
    assert_int_equal(policy_resize_request(&a, 512, msg, sizeof(msg)), RS_DONE);
    deflate(&a, BOOT, 256);
    for (uint64_t g = 0; g < 512; g++)
        assert_int_equal(write_page(&a, g), P2M_OK);
    assert_int_equal(policy_resize_request(&a, BOOT, msg, sizeof(msg)), RS_PENDING);
    /* The guest inflates GFNs 256..511 (content dropped), then reads 16 of
     * them again: fresh zero pages, resident. */
    inflate(&a, BOOT, 256);
    for (uint64_t g = BOOT; g < BOOT + 16; g++)
        assert_int_equal(p2m_fault(&a, g * PAGE_SIZE, P2M_ACCESS_R), P2M_OK);
    assert_int_equal(a.count[P2M_RESIDENT], BOOT + 16);
    /* Its driver's count: everything asked for. */
    r = (struct hc_regs){ .rax = HC_BALLOON_TARGET, .rbx = MAXG - BOOT };
    hc_dispatch(&a, &bs, 0, &r);
    assert_int_equal(balloon_held(&a), MAXG - BOOT);
    /* The step reclaims the 16 zero pages, then lowers the limit. */
    for (int i = 0; i < 8 && a.limit != BOOT; i++)
        policy_resize_step(&a);
    assert_int_equal(a.limit, BOOT);
    assert_true(a.count[P2M_RESIDENT] <= BOOT);
    assert_int_equal(p2m_check(&a), 0);
}

/* Random-content pages that nothing can reclaim keep the shrink waiting,
 * with the limit where it was. */
static void test_shrink_blocked_by_data(void **state)
{
    (void)state;
    char msg[224];
    make_resizable();
    struct hc_regs r = { .rax = HC_GUEST_FEATURES, .rbx = HC_GUEST_HELD };
    hc_dispatch(&a, &bs, 0, &r);
    poll_target(&a);
    assert_int_equal(policy_resize_request(&a, 512, msg, sizeof(msg)), RS_DONE);
    for (uint64_t g = 0; g < 512; g++)
        assert_int_equal(write_page(&a, g), P2M_OK);
    assert_int_equal(policy_resize_request(&a, BOOT, msg, sizeof(msg)), RS_PENDING);
    r = (struct hc_regs){ .rax = HC_BALLOON_TARGET, .rbx = MAXG - BOOT }; /* a lying driver */
    hc_dispatch(&a, &bs, 0, &r);
    for (int i = 0; i < 4; i++)
        assert_false(policy_resize_step(&a));
    assert_int_equal(a.limit, 512);
    assert_int_equal(p2m_check(&a), 0);
}

static void test_grow_calls_off_shrink(void **state)
{
    (void)state;
    char msg[224];
    make_resizable();
    poll_target(&a);
    assert_int_equal(policy_resize_request(&a, 768, msg, sizeof(msg)), RS_DONE);
    assert_int_equal(policy_resize_request(&a, 512, msg, sizeof(msg)), RS_PENDING);
    assert_int_equal(a.bl.target, MAXG - 512);
    assert_int_equal(policy_resize_request(&a, 640, msg, sizeof(msg)), RS_PENDING);
    assert_int_equal(a.bl.target, MAXG - 640);
    assert_int_equal(policy_resize_request(&a, 768, msg, sizeof(msg)), RS_DONE);
    assert_non_null(strstr(msg, "(the shrink that was waiting is called off)"));
    assert_int_equal(a.bl.target, MAXG - 768);
    assert_int_equal(a.limit, 768);
    assert_int_equal(a.rs.want, 768);
}

/* ---- the console ---- */

static void test_console_mem(void **state)
{
    (void)state;
    char msg[224];
    make_resizable();
    assert_int_equal(p2m_init(&b, 2, "b", 256, 0, 0, true), 0);
    assert_int_equal(mm_register(&b), 0);

    run("help");
    LOGGED("mem NAME SIZE (resize a VM with max_memory)");
    run("mem nosuch 1M");
    LOGGED("[con] warning: mem: no running VM is called 'nosuch'\n");
    run("mem a lots");
    LOGGED("[con] warning: mem: 'lots' is not a size (like 256M, 1G or 65536p)\n");
    run("mem a 2M5");
    LOGGED("[con] warning: mem: '2M5' is not a size");
    run("mem a 5000");
    LOGGED("[con] warning: mem: 5000 bytes is not a whole number of 4K pages");
    run("mem a 8M");
    LOGGED("[con] warning: mem: vm a: 8M is above its max_memory of 4M\n");
    run("mem a 4M");
    assert_false(a.limited); /* max_memory itself is fine */
    run("mem a 1M");
    LOGGED("no balloon driver listens"); /* and back needs a driver */
    run("mem a 1M");
    assert_int_equal(a.limit, MAXG);
    assert_true(policy_resize_request(&a, BOOT, msg, sizeof(msg)) == RS_REFUSED);
    assert_int_equal(a.rs.refused, 4); /* 8M, and three shrinks */
    /* Set back by hand for the checks below (no driver: no shrink). */
    a.rs.size = a.rs.want = a.limit = BOOT;
    a.limited = true;
    balloon_set_hold(&a, MAXG - BOOT);
    run("mem a 1025p");
    LOGGED("[con] warning: mem: vm a: 1025 pages is above its max_memory of 1024 pages (4M)\n");
    run("mem a 128K");
    LOGGED("[con] warning: mem: vm a: 128K is below its floor of 256K (its reservation, or a "
           "quarter of the 1M it booted with)\n");
    run("mem b 512K");
    LOGGED("[con] warning: mem: vm b has no max_memory: its size (1M) is fixed at boot\n");
    run("mem a");
    LOGGED("[con] warning: unknown command or wrong arguments: 'mem': try help\n");
    run("mem a 1M 2M");
    LOGGED("[con] warning: too many words: try help\n");
    /* None of that changed anything. */
    assert_int_equal(a.limit, BOOT);
    assert_int_equal(a.bl.target, MAXG - BOOT);
    assert_int_equal(a.rs.want, BOOT);
    /* Good ones. */
    run("mem a 2M");
    LOGGED("[con] vm a: memory 1M -> 2M: limit 512 pages, balloon target 768 -> 512 pages\n");
    run("mem a 640p");
    LOGGED("[con] vm a: memory 2M -> 2.5M: limit 640 pages");
    run("mem a 1M");
    LOGGED("[con] warning: mem: vm a: cannot shrink from 2.5M to 1M: no balloon driver listens");
    poll_target(&a);
    run("mem a 1M");
    LOGGED("[con] vm a: memory 2.5M -> 1M: balloon target 384 -> 768 pages; the limit drops "
           "once the balloon holds them\n");
    assert_int_equal(a.limit, 640);
    run("mem a 4M");
    assert_false(a.limited);
    assert_int_equal(a.bl.target, 0);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_boot_held_to_size),
        T(test_no_driver_stays_within_size),
        T(test_grow),
        T(test_grow_refused_above_overcommit_max),
        T(test_shrink_refused_without_driver),
        T(test_shrink_waits_for_balloon),
        T(test_shrink_touched_balloon_reclaims),
        T(test_shrink_blocked_by_data),
        T(test_grow_calls_off_shrink),
        T(test_console_mem),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}

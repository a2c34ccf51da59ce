/* The log rate limit (lib/log.c) and two real guest-triggerable call sites
 * that use it: refused hypercalls (hc_dispatch, mm/balloon.c) and unknown
 * MSRs (policy_rdmsr/policy_wrmsr, vmx/policy.c, linked here on its own:
 * the paths tested never execute VMREAD).
 *
 * Covered: a burst of LOG_LIMIT_BURST lines, then nothing while the clock
 * stands still; one more per LOG_LIMIT_PERIOD_MS, never more than the
 * burst after a long pause; the "N 'KIND' messages suppressed" line before
 * the next line that passes; exact printed/suppressed counts; lines below
 * the verbosity neither pass nor count; log_limit_report; 10,000 refused
 * hypercalls and 10,000 unknown MSRs print a bounded number of lines with
 * every one counted; one MSR read 10,000 times is reported once, even
 * after the remembered set is full; a swap device flapping between full
 * and not 10,000 times prints a bounded number of full/room-again pairs
 * (machine-wide bucket) with every event counted; and a VM's flood leaves another VM's
 * first message untouched (the buckets are per VM). */
#include "tests/host/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/blk.h"

#include "lib/log.h"
#include "mm/balloon.h"
#include "mm/mm.h"
#include "mm/p2m.h"
#include "mm/share.h"
#include "mm/swap.h"
#include "mm/zpool.h"
#include "vmx/vm.h"
#include "vmx/vmx.h"

#define FRAMES 1024
#define PG_SIZE 4096
#define HZ 1000000ULL /* fake clock: 1 MHz */
#define PERIOD (HZ / 1000 * LOG_LIMIT_PERIOD_MS)

/* What vmx/policy.c needs from the rest of the hypervisor. */
uint64_t tsc_hz(void)
{
    return HZ;
}
void vmwrite(enum vmcs_field f, uint64_t v)
{
    fail_msg("VMWRITE %#x = %#llx: not expected on these paths", f, (unsigned long long)v);
}

static uint64_t fake_now;
static uint64_t fake_clock(void)
{
    return fake_now;
}

static unsigned lines(void)
{
    unsigned n = 0;
    for (const char *s = backend_log(); *s; s++)
        n += *s == '\n';
    return n;
}

static unsigned count(const char *needle)
{
    unsigned n = 0;
    for (const char *s = backend_log(); (s = strstr(s, needle)); s++)
        n++;
    return n;
}

static int setup(void **state)
{
    (void)state;
    backend_log_clear();
    log_set_all(LOG_INFO);
    fake_now = 1000;
    log_set_clock(fake_clock, HZ);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    log_set_clock(NULL, 0);
    log_set_all(LOG_INFO);
    return 0;
}

/* ---- the limiter ---------------------------------------------------------------- */

static unsigned pass_n(struct log_limit *l, unsigned n, const char *owner)
{
    unsigned passed = 0;
    for (unsigned i = 0; i < n; i++)
        if (log_limit_pass(l, LS_VMX, LOG_INFO, owner, "probe")) {
            passed++;
            log_msg(LS_VMX, LOG_INFO, "probe line");
        }
    return passed;
}

static void test_burst_then_quiet(void **state)
{
    (void)state;
    struct log_limit l = { 0 };
    assert_int_equal(pass_n(&l, 100, "a"), LOG_LIMIT_BURST);
    assert_int_equal(l.printed, LOG_LIMIT_BURST);
    assert_int_equal(l.suppressed, 100 - LOG_LIMIT_BURST);
    assert_int_equal(l.pending, 100 - LOG_LIMIT_BURST);
    assert_int_equal(lines(), LOG_LIMIT_BURST);
    /* Just short of a period: still nothing. */
    fake_now += PERIOD - 1;
    assert_int_equal(pass_n(&l, 10, "a"), 0);
    assert_int_equal(l.suppressed, 110 - LOG_LIMIT_BURST);
}

static void test_refill_and_suppressed_line(void **state)
{
    (void)state;
    struct log_limit l = { 0 };
    pass_n(&l, 25, "a"); /* 10 pass, 15 suppressed */
    backend_log_clear();
    fake_now += PERIOD;
    assert_int_equal(pass_n(&l, 5, "a"), 1);
    assert_non_null(strstr(backend_log(), "[vmx] vm a: 15 'probe' messages suppressed\n"
                                          "[vmx] probe line\n"));
    assert_int_equal(l.pending, 4);
    /* Three periods: three lines. */
    fake_now += 3 * PERIOD;
    assert_int_equal(pass_n(&l, 10, "a"), 3);
    /* A long pause refills the burst, not more. */
    fake_now += 1000 * PERIOD;
    assert_int_equal(pass_n(&l, 1000, "a"), LOG_LIMIT_BURST);
    assert_int_equal(l.printed + l.suppressed, 25 + 5 + 10 + 1000);
    /* A machine-wide bucket has no "vm" part. */
    struct log_limit m = { 0 };
    pass_n(&m, LOG_LIMIT_BURST + 2, NULL);
    fake_now += PERIOD;
    backend_log_clear();
    pass_n(&m, 1, NULL);
    assert_non_null(strstr(backend_log(), "[vmx] 2 'probe' messages suppressed\n"));
}

static void test_below_verbosity_not_counted(void **state)
{
    (void)state;
    struct log_limit l = { 0 };
    for (int i = 0; i < 100; i++)
        assert_false(log_limit_pass(&l, LS_VMX, LOG_DEBUG, "a", "probe"));
    assert_int_equal(l.printed + l.suppressed + l.spent, 0);
    log_set_level(LS_VMX, LOG_DEBUG);
    assert_true(log_limit_pass(&l, LS_VMX, LOG_DEBUG, "a", "probe"));
}

static void test_report(void **state)
{
    (void)state;
    struct log_limit l = { 0 };
    pass_n(&l, LOG_LIMIT_BURST, "a");
    backend_log_clear();
    log_limit_report(&l, LS_HV, "a", "probe");
    assert_string_equal(backend_log(), ""); /* nothing suppressed: nothing said */
    pass_n(&l, 7, "a");
    backend_log_clear();
    log_limit_report(&l, LS_HV, "a", "probe");
    assert_string_equal(backend_log(),
                        "[hv] vm a: log: 'probe' messages: 10 printed, 7 suppressed\n");
}

static void test_no_clock_no_refill(void **state)
{
    (void)state;
    log_set_clock(NULL, 0);
    struct log_limit l = { 0 };
    assert_int_equal(pass_n(&l, 50, "a"), LOG_LIMIT_BURST);
    fake_now += 100 * PERIOD;
    assert_int_equal(pass_n(&l, 50, "a"), 0);
}

/* ---- refused hypercalls ---------------------------------------------------------- */

static struct p2m pa, pb;
static struct balloon_stats bsa, bsb;

static int hc_setup(void **state)
{
    setup(state);
    backend_frames(FRAMES, 1, FRAMES - 1);
    mm_set_watermark(4);
    assert_int_equal(share_init(FRAMES, 64), 0);
    memset(&bsa, 0, sizeof(bsa));
    memset(&bsb, 0, sizeof(bsb));
    assert_int_equal(p2m_init(&pa, 1, "a", 64, 0, 0, true), 0);
    assert_int_equal(p2m_init(&pb, 2, "b", 64, 0, 0, true), 0);
    assert_int_equal(mm_register(&pa), 0);
    assert_int_equal(mm_register(&pb), 0);
    return 0;
}

static int hc_teardown(void **state)
{
    mm_unregister(&pa);
    mm_unregister(&pb);
    p2m_destroy(&pa);
    p2m_destroy(&pb);
    share_fini();
    zpool_fini();
    backend_free();
    return teardown(state);
}

static int64_t bad_call(struct p2m *p, struct balloon_stats *bs, unsigned i)
{
    /* Unknown functions, user-mode calls, bad batch sizes, list pages
     * outside guest RAM, in turn. */
    struct hc_regs r = { 0 };
    unsigned cpl = 0;
    switch (i % 4) {
    case 0: r.rax = 1000 + i; break;
    case 1: r.rax = HC_BALLOON_TARGET; cpl = 3; break;
    case 2: r.rax = HC_BALLOON_INFLATE; r.rcx = HC_BATCH_MAX + 1; break;
    case 3: r.rax = HC_BALLOON_DEFLATE; r.rcx = 1; r.rbx = 1ULL << 40; break;
    }
    hc_dispatch(p, bs, cpl, &r);
    return (int64_t)r.rax;
}

static void test_hypercall_flood_bounded(void **state)
{
    (void)state;
    for (unsigned i = 0; i < 10000; i++)
        assert_true(bad_call(&pa, &bsa, i) < 0);
    assert_int_equal(bsa.rejected, 10000);
    assert_int_equal(count("vm a: hypercall "), LOG_LIMIT_BURST);
    assert_int_equal(lines(), LOG_LIMIT_BURST);
    assert_int_equal(bsa.log.printed, LOG_LIMIT_BURST);
    assert_int_equal(bsa.log.suppressed, 10000 - LOG_LIMIT_BURST);
    /* The other VM's first refusal is printed: a's flood spent a's tokens. */
    backend_log_clear();
    bad_call(&pb, &bsb, 0);
    assert_non_null(strstr(backend_log(), "[mm] vm b: hypercall 1000 from CPL 0 refused: "
                                          "unknown function\n"));
}

static void test_hypercall_flood_over_time(void **state)
{
    (void)state;
    /* 10,000 calls 1 ms apart: 10 s, so the burst plus about one line a
     * second (each preceded by its "suppressed" line). */
    for (unsigned i = 0; i < 10000; i++) {
        bad_call(&pa, &bsa, i);
        fake_now += HZ / 1000;
    }
    uint64_t secs = 10000 / (1000 / LOG_LIMIT_PERIOD_MS) / 1000 + 1;
    assert_true(count("vm a: hypercall ") <= LOG_LIMIT_BURST + secs);
    assert_true(count("vm a: hypercall ") >= LOG_LIMIT_BURST + secs - 2);
    assert_true(lines() <= LOG_LIMIT_BURST + 2 * secs);
    assert_int_equal(bsa.log.printed + bsa.log.suppressed, 10000);
    assert_int_equal(count("vm a: hypercall "), bsa.log.printed);
}

/* ---- a swap device that fills and empties by one page -------------------------- */

static struct {
    struct blkdev d;
    uint8_t *data;
} rd;

static int rd_rw(struct blkdev *d, bool write, uint64_t lba, uint32_t count, void *buf)
{
    uint64_t off = lba * d->sector_size, len = (uint64_t)count * d->sector_size;
    if (write)
        memcpy(rd.data + off, buf, len);
    else
        memcpy(buf, rd.data + off, len);
    return BLK_OK;
}

static int rd_flush(struct blkdev *d)
{
    (void)d;
    return BLK_OK;
}

static const struct blk_ops rd_ops = { .rw = rd_rw, .flush = rd_flush };

static int swap_setup(void **state)
{
    setup(state);
    backend_frames(FRAMES, 1, FRAMES - 1);
    memset(&rd, 0, sizeof(rd));
    snprintf(rd.d.name, sizeof(rd.d.name), "ram0");
    rd.d.kind = "memory";
    rd.d.sector_size = 4096;
    rd.d.sectors = 1 + 4; /* the header and four one-page slots */
    rd.d.max_sectors = 8;
    rd.d.ops = &rd_ops;
    rd.data = calloc(rd.d.sectors, 4096);
    assert_non_null(rd.data);
    assert_int_equal(swap_attach(&rd.d, 0, rd.d.sectors, true), 0);
    return 0;
}

static int swap_teardown(void **state)
{
    swap_detach();
    free(rd.data);
    backend_free();
    return teardown(state);
}

/* A space of four slots with three in use: each round a batch of two
 * fills it (full), and one page coming back makes room again. Without the
 * limit that is two warning lines per round, as fast as pages move. */
static void test_swap_full_flapping_bounded(void **state)
{
    (void)state;
    static uint8_t page[PG_SIZE];
    uint64_t loc[SWAP_STAGE_OBJECTS];
    unsigned done;
    for (int i = 0; i < 3; i++) {
        memset(page, 0x10 + i, sizeof(page));
        assert_true(swap_stage(page, sizeof(page), false));
        assert_int_equal(swap_commit(loc, &done), SWAP_OK);
    }
    backend_log_clear();
    struct swap_stats st0, st;
    swap_get_stats(&st0);
    for (int r = 0; r < 10000; r++) {
        assert_true(swap_stage(page, sizeof(page), false));
        assert_true(swap_stage(page, sizeof(page), false));
        assert_int_equal(swap_commit(loc, &done), SWAP_FULL);
        assert_int_equal(done, 1);
        assert_true(swap_full());
        swap_free(loc[0]);
        assert_false(swap_full());
    }
    swap_get_stats(&st);
    assert_int_equal(st.full_events - st0.full_events, 10000);
    assert_int_equal(count("is full"), LOG_LIMIT_BURST);
    assert_int_equal(count("room again"), LOG_LIMIT_BURST); /* only for the full said */
    assert_int_equal(lines(), 2 * LOG_LIMIT_BURST);
    /* A second later one more pair, after the count of what was dropped. */
    fake_now += PERIOD;
    backend_log_clear();
    assert_true(swap_stage(page, sizeof(page), false));
    assert_true(swap_stage(page, sizeof(page), false));
    assert_int_equal(swap_commit(loc, &done), SWAP_FULL);
    assert_non_null(strstr(backend_log(), "[mm] warning: 9990 'swap full' messages suppressed\n"
                                          "[mm] warning: swap: ram0 is full"));
    backend_log_clear();
    swap_print();
    assert_non_null(strstr(backend_log(), "log: 'swap full' messages: 11 printed, 9990 "
                                          "suppressed"));
}

/* ---- unknown MSRs ------------------------------------------------------------------ */

static struct vm va, vb;

static int msr_setup(void **state)
{
    setup(state);
    memset(&va, 0, sizeof(va));
    memset(&vb, 0, sizeof(vb));
    strcpy(va.name, "a");
    strcpy(vb.name, "b");
    return 0;
}

static void test_msr_probe_bounded(void **state)
{
    (void)state;
    uint64_t v;
    /* A guest probing 10,000 different MSRs, reads and writes. */
    for (uint32_t i = 0; i < 5000; i++) {
        assert_int_equal(policy_rdmsr(&va, 0x40001000 + i, &v), -1);
        assert_int_equal(policy_wrmsr(&va, 0x40001000 + i, i), -1);
    }
    assert_int_equal(count("vm a: "), LOG_LIMIT_BURST);
    assert_int_equal(lines(), LOG_LIMIT_BURST);
    assert_int_equal(va.msr_gp, 10000);
    assert_int_equal(va.log[VLOG_MSR].suppressed, 10000 - LOG_LIMIT_BURST);
    /* b is not silenced by a. */
    backend_log_clear();
    assert_int_equal(policy_rdmsr(&vb, 0x40001000, &v), -1);
    assert_string_equal(backend_log(),
                        "[vmx] vm b: RDMSR 0x40001000 not emulated: #GP (reported once)\n");
}

static void test_msr_repeat_reported_once(void **state)
{
    (void)state;
    uint64_t v;
    for (int i = 0; i < 10000; i++)
        assert_int_equal(policy_rdmsr(&va, 0x4b564d01, &v), -1);
    assert_int_equal(lines(), 1);
    assert_int_equal(va.log[VLOG_MSR].suppressed, 0);
    /* Past the remembered set (over several seconds, so the bucket lets
     * them all through), a remembered MSR is still said only once. */
    for (uint32_t i = 0; i < 2 * VM_MSR_REMEMBERED; i++) {
        policy_rdmsr(&va, 0x40002000 + i, &v);
        fake_now += PERIOD;
    }
    backend_log_clear();
    for (int i = 0; i < 1000; i++)
        policy_rdmsr(&va, 0x40002000, &v);
    assert_int_equal(lines(), 0);
    assert_int_equal(va.nmsr_logged, VM_MSR_REMEMBERED);
    assert_true(strstr(backend_log(), "rate-limited") == NULL);
    /* A new one beyond the set says so. */
    policy_rdmsr(&va, 0x40003000, &v);
    assert_non_null(strstr(backend_log(), "RDMSR 0x40003000 not emulated: #GP (rate-limited)"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_burst_then_quiet, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refill_and_suppressed_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_below_verbosity_not_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_clock_no_refill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hypercall_flood_bounded, hc_setup, hc_teardown),
        cmocka_unit_test_setup_teardown(test_hypercall_flood_over_time, hc_setup, hc_teardown),
        cmocka_unit_test_setup_teardown(test_swap_full_flapping_bounded, swap_setup,
                                        swap_teardown),
        cmocka_unit_test_setup_teardown(test_msr_probe_bounded, msr_setup, teardown),
        cmocka_unit_test_setup_teardown(test_msr_repeat_reported_once, msr_setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

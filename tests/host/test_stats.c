/* Statistics as data (mm/stats_json.c): the @hvstat lines on a small
 * host-backed machine with two VMs.
 *
 * Covered: every line is one valid JSON object after the prefix, with
 * exactly the schema of docs/stats.md in its order (a field added, removed
 * or renamed fails schema_vm/schema_machine until the test and the
 * document say the same); p2m holds every state and faults_s every fault
 * kind; values (sizes, counts, the machine's sums); rates between lines
 * (faults per second by kind over a known time); seq and why; a VM's stop
 * line; the balloon alert raised and cleared in the VM and machine lines
 * and as log lines; alerts only judged on period lines. */
#include "tests/host/backend.h"
#include "tests/host/json_check.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mm/alerts.h"
#include "mm/mm.h"
#include "mm/p2m.h"
#include "mm/share.h"
#include "mm/stats_json.h"

#define FRAMES 1024
#define HZ 1000 /* the test's clock: milliseconds */

static struct p2m a, b;

/* docs/stats.md, schema 1, in order. */
static const char *const VM_KEYS =
    "v,type,t,seq,why,vm,memsz,grant,consumed,ovhd,reserve,limit,tchd,actv,idle,shrd,"
    "shrdsvd,zero,mctlsz,mctltgt,mctlmax,zip,zipsaved,zip_ratio,swcur,swtgt,swr_s,sww_s,"
    "p2m,faults_s,faults,reclaim_s,direct,share,swap,balloon,waits,alerts";
static const char *const MACHINE_KEYS =
    "v,type,t,seq,why,vms,frames,free,min_free,state,overcommit,memsz,grant,mctlsz,"
    "shared_frames,shrd,shrdsvd,pool_pages,pool_frames,pool_cap,pool_ratio,pool_density,"
    "swap_slots,swap_used,swr_s,sww_s,scan_s,scan_rate,scan_rounds,faults_s,reclaim_s,"
    "direct_s,bg_s,reclaim_runs,waits,alerts";

static int setup(void **state)
{
    (void)state;
    backend_frames(FRAMES, 1, FRAMES - 1);
    mm_set_watermark(4);
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    assert_int_equal(p2m_init(&a, 1, "a", 256, 0, 0, true), 0);
    assert_int_equal(mm_register(&a), 0);
    assert_int_equal(p2m_init(&b, 2, "b", 128, 16, 64, false), 0);
    assert_int_equal(mm_register(&b), 0);
    struct alert_config c = { ALERT_DEFAULT_BALLOON_PCT, ALERT_DEFAULT_SWAP_MBPS,
                              ALERT_DEFAULT_ZIP_RATIO, ALERT_DEFAULT_SHARE_PCT,
                              ALERT_DEFAULT_PERIODS };
    alerts_configure(&c);
    alerts_forget(NULL);
    alerts_forget(&a);
    alerts_forget(&b);
    stats_set_clock(HZ);
    stats_reset(); /* start = 0: "t" is the clock reading */
    backend_log_clear();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    alerts_forget(&a);
    alerts_forget(&b);
    if (a.map) {
        mm_unregister(&a);
        p2m_destroy(&a);
    }
    if (b.map) {
        mm_unregister(&b);
        p2m_destroy(&b);
    }
    backend_free();
    return 0;
}

/* The nth @hvstat line of the log (a static copy, without prefix and
 * newline), or NULL. */
static const char *stat_line(int nth)
{
    static char buf[STATS_LINE_MAX];
    const char *s = backend_log();
    for (int i = 0; (s = strstr(s, STATS_PREFIX)); i++) {
        assert_true(s == backend_log() || s[-1] == '\n'); /* at a line's start */
        const char *e = strchr(s, '\n');
        assert_non_null(e);
        if (i == nth) {
            size_t n = (size_t)(e - s) - strlen(STATS_PREFIX);
            assert_true(n < sizeof(buf));
            memcpy(buf, s + strlen(STATS_PREFIX), n);
            buf[n] = 0;
            return buf;
        }
        s = e;
    }
    return NULL;
}

static int stat_lines(void)
{
    int n = 0;
    while (stat_line(n))
        n++;
    return n;
}

static void touch(struct p2m *p, uint64_t from, uint64_t n)
{
    for (uint64_t g = from; g < from + n; g++)
        assert_int_equal(p2m_fault(p, g * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
}

static void expect_valid(const char *l)
{
    if (!jc_valid_object(l, l + strlen(l)))
        fail_msg("not one JSON object: %s", l);
}

static void schema_vm(void **state)
{
    (void)state;
    touch(&a, 0, 10);
    stats_emit_at(1000, STATS_PERIOD);
    assert_int_equal(stat_lines(), 3); /* a, b, machine */
    char keys[1024];
    for (int i = 0; i < 2; i++) {
        const char *l = stat_line(i);
        expect_valid(l);
        jc_keys(l, keys, sizeof(keys));
        assert_string_equal(keys, VM_KEYS);
    }
    const char *l = stat_line(0);
    jc_keys(jc_get(l, "p2m"), keys, sizeof(keys));
    assert_string_equal(keys, "unpopulated,resident,shared,filled,compressed,swapped,ballooned,"
                              "mmio");
    jc_keys(jc_get(l, "faults_s"), keys, sizeof(keys));
    assert_string_equal(keys, "demand-zero,refill,decompress,copy-on-write,swap-in,spurious,"
                              "outside-ram,mmio");
    jc_keys(jc_get(l, "reclaim_s"), keys, sizeof(keys));
    assert_string_equal(keys, "zero,share,compress,swap,balloon");
    jc_keys(jc_get(l, "share"), keys, sizeof(keys));
    assert_string_equal(keys, "merged,cross,zero,cow,cow_last");
    jc_keys(jc_get(l, "swap"), keys, sizeof(keys));
    assert_string_equal(keys, "out,out_lz4,in,dropped,cached");
    jc_keys(jc_get(l, "balloon"), keys, sizeof(keys));
    assert_string_equal(keys, "inflated,deflated,set,policy,polls");
}

static void schema_machine(void **state)
{
    (void)state;
    stats_emit_at(500, STATS_CONSOLE);
    const char *l = stat_line(2);
    expect_valid(l);
    char keys[1024];
    jc_keys(l, keys, sizeof(keys));
    assert_string_equal(keys, MACHINE_KEYS);
    assert_non_null(strstr(l, "\"type\":\"machine\""));
    assert_non_null(strstr(l, "\"why\":\"console\""));
    assert_non_null(strstr(l, "\"t\":0.500,"));
    assert_non_null(strstr(l, "\"state\":\"high\""));
    assert_non_null(strstr(l, "\"pool_ratio\":null")); /* no pool */
    assert_non_null(strstr(l, "\"alerts\":[]}"));
}

static void values_and_rates(void **state)
{
    (void)state;
    touch(&a, 0, 40);
    touch(&b, 0, 8);
    stats_emit_at(1000, STATS_PERIOD);
    const char *l = stat_line(0);
    assert_non_null(strstr(l, "\"vm\":\"a\""));
    assert_int_equal((int)jc_num(l, "v"), STATS_SCHEMA_VERSION);
    assert_int_equal((int)jc_num(l, "seq"), 1);
    assert_int_equal((int)jc_num(l, "memsz"), 256);
    assert_int_equal((int)jc_num(l, "grant"), 40);
    assert_int_equal((int)jc_num(l, "p2m.resident"), 40);
    assert_int_equal((int)jc_num(l, "p2m.unpopulated"), 216);
    assert_int_equal((int)jc_num(l, "consumed"), 40);
    assert_int_equal((int)jc_num(l, "ovhd"), (int)a.meta);
    assert_int_equal((int)jc_num(l, "faults.demand-zero"), 40);
    /* The first line's rates count from the clock's start: 40 in 1 s. */
    assert_float_equal(jc_num(l, "faults_s.demand-zero"), 40.0, 1e-9);
    assert_non_null(strstr(l, "\"limit\":null")); /* a has none */
    const char *lb = stat_line(1);
    assert_non_null(strstr(lb, "\"vm\":\"b\""));
    assert_int_equal((int)jc_num(lb, "limit"), 64);
    assert_int_equal((int)jc_num(lb, "reserve"), 16);
    assert_int_equal((int)jc_num(lb, "mctlmax"), 112);
    assert_non_null(strstr(lb, "\"tchd\":null,\"actv\":null")); /* no A/D bits */
    const char *m = stat_line(2);
    assert_int_equal((int)jc_num(m, "vms"), 2);
    assert_int_equal((int)jc_num(m, "memsz"), 384);
    assert_int_equal((int)jc_num(m, "grant"), 48);
    assert_int_equal((int)jc_num(m, "free"), (int)frame_free_count());
    assert_float_equal(jc_num(m, "faults_s.demand-zero"), 48.0, 1e-9);
    assert_float_equal(jc_num(m, "overcommit"), (double)mm_overcommit_permille() / 1000,
                       1e-9);

    /* 30 more faults in 2.5 s: 12 per second, from the previous line. */
    backend_log_clear();
    touch(&a, 100, 30);
    stats_emit_at(3500, STATS_PERIOD);
    l = stat_line(0);
    assert_int_equal((int)jc_num(l, "seq"), 2);
    assert_non_null(strstr(l, "\"t\":3.500,"));
    assert_float_equal(jc_num(l, "faults_s.demand-zero"), 12.0, 1e-9);
    assert_non_null(strstr(l, "\"demand-zero\":12.00,"));
    assert_float_equal(jc_num(stat_line(1), "faults_s.demand-zero"), 0.0, 1e-9);
    assert_float_equal(jc_num(stat_line(2), "faults_s.demand-zero"), 12.0, 1e-9);
    /* Zero-page reclaim: the 30 untouched-by-content pages are zero. */
    backend_log_clear();
    assert_true(p2m_reclaim(&a, 30, 256) >= 30);
    stats_emit_at(4500, STATS_PERIOD);
    assert_true(jc_num(stat_line(0), "reclaim_s.zero") >= 30.0);
}

static void stop_line(void **state)
{
    (void)state;
    touch(&b, 0, 4);
    stats_emit_at(1000, STATS_PERIOD);
    backend_log_clear();
    stats_emit_vm_stop_at(&b, 2000);
    assert_int_equal(stat_lines(), 1);
    const char *l = stat_line(0);
    expect_valid(l);
    assert_non_null(strstr(l, "\"vm\":\"b\""));
    assert_non_null(strstr(l, "\"why\":\"stop\""));
    assert_int_equal((int)jc_num(l, "seq"), 2);
    assert_int_equal((int)jc_num(l, "grant"), 4);
}

static void balloon_alert(void **state)
{
    (void)state;
    /* a: 256 pages; 32 ballooned is 12.5%, above 10%; the machine has
     * 32 of 384, 8.3%: no machine alert. */
    uint64_t g[32];
    unsigned bad;
    for (int i = 0; i < 32; i++)
        g[i] = 200 + (uint64_t)i;
    assert_true(p2m_balloon_inflate(&a, g, 32, &bad) >= 0);
    stats_emit_at(500, STATS_CONSOLE); /* not a period: not judged */
    assert_non_null(strstr(stat_line(0), "\"alerts\":[]"));
    assert_null(strstr(backend_log(), "alert raised"));
    backend_log_clear();
    stats_emit_at(1000, STATS_PERIOD);
    assert_non_null(strstr(stat_line(0), "\"mctlsz\":32,"));
    assert_non_null(strstr(stat_line(0), "\"alerts\":[\"balloon\"]}"));
    assert_non_null(strstr(stat_line(1), "\"alerts\":[]}"));
    assert_non_null(strstr(stat_line(2), "\"alerts\":[]}"));
    assert_non_null(strstr(backend_log(), "[mm] alert raised: vm a: balloon: 12.50% of memory "
                                          "ballooned (above 10.00) for 1 period: investigate "
                                          "pressure\n"));
    assert_int_equal(alerts_active(&a), 1u << ALERT_BALLOON);
    /* b too: 64 of 128; now the machine has 96 of 384 = 25%. */
    uint64_t h[64];
    for (int i = 0; i < 64; i++)
        h[i] = (uint64_t)i;
    assert_true(p2m_balloon_inflate(&b, h, 64, &bad) >= 0);
    backend_log_clear();
    stats_emit_at(2000, STATS_PERIOD);
    assert_non_null(strstr(stat_line(1), "\"alerts\":[\"balloon\"]}"));
    assert_non_null(strstr(stat_line(2), "\"alerts\":[\"balloon\"]}"));
    assert_non_null(strstr(backend_log(), "alert raised: machine: balloon: 25.00%"));
    /* a deflates to 24 pages (9.4%): inside the hysteresis band, still on. */
    assert_true(p2m_balloon_deflate(&a, g, 8, &bad) >= 0);
    backend_log_clear();
    stats_emit_at(3000, STATS_PERIOD);
    assert_non_null(strstr(stat_line(0), "\"alerts\":[\"balloon\"]}"));
    assert_null(strstr(backend_log(), "alert cleared"));
    /* 16 pages (6.25%) is below 8%: cleared. */
    assert_true(p2m_balloon_deflate(&a, g + 8, 8, &bad) >= 0);
    backend_log_clear();
    stats_emit_at(4000, STATS_PERIOD);
    assert_non_null(strstr(stat_line(0), "\"alerts\":[]}"));
    assert_non_null(strstr(backend_log(), "[mm] alert cleared: vm a: balloon: 6.25% of memory "
                                          "ballooned (below 8.00) for 1 period\n"));
    /* The console lists what is active. */
    backend_log_clear();
    alerts_print();
    assert_non_null(strstr(backend_log(), "[con] alert machine: balloon: "));
    assert_non_null(strstr(backend_log(), "[con] alert vm b: balloon: 50.00% of memory "
                                          "ballooned (threshold 10.00): investigate pressure"));
    assert_null(strstr(backend_log(), "alert vm a"));
    /* A stopped VM's alerts are forgotten. */
    stats_emit_vm_stop_at(&b, 5000);
    assert_int_equal(alerts_active(&b), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(schema_vm, setup, teardown),
        cmocka_unit_test_setup_teardown(schema_machine, setup, teardown),
        cmocka_unit_test_setup_teardown(values_and_rates, setup, teardown),
        cmocka_unit_test_setup_teardown(stop_line, setup, teardown),
        cmocka_unit_test_setup_teardown(balloon_alert, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

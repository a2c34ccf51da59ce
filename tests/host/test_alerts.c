/* The seed's thresholds as alerts (mm/alerts.c) and their hv.cfg keys.
 *
 * Covered: the swap alert raised only after alert_periods consecutive
 * periods above the threshold, a period between the levels breaking the
 * run, cleared only after as many periods below half the threshold
 * (hysteresis), one log line each; level alerts (balloon, zip, share) on
 * the first period past the level, in the right direction (low ratio and
 * low sharing are bad), with their clear margins; a value that cannot be
 * judged counts as good; a threshold of 0 disables (and clears) an alert;
 * the registry per VM and for the machine; the config keys (defaults,
 * decimals, 0, range and syntax errors, duplicates). */
#include "tests/host/backend.h"

#include <stdbool.h>
#include <string.h>

#include "boot/config.h"
#include "mm/alerts.h"

static const struct alert_config defaults = {
    ALERT_DEFAULT_BALLOON_PCT, ALERT_DEFAULT_SWAP_MBPS, ALERT_DEFAULT_ZIP_RATIO,
    ALERT_DEFAULT_SHARE_PCT, ALERT_DEFAULT_PERIODS,
};

static int setup(void **state)
{
    (void)state;
    alerts_configure(&defaults);
    backend_log_clear();
    return 0;
}

static struct alert_sample one(enum alert_kind k, uint64_t v)
{
    struct alert_sample s = { 0 };
    s.valid[k] = true;
    s.value[k] = v;
    return s;
}

static int count(const char *needle)
{
    int n = 0;
    for (const char *s = backend_log(); (s = strstr(s, needle)); s++)
        n++;
    return n;
}

static void swap_sustained(void **state)
{
    (void)state;
    struct alert_state st = { 0 };
    struct alert_sample hi = one(ALERT_SWAP, 15000), mid = one(ALERT_SWAP, 7000),
                        lo = one(ALERT_SWAP, 4000);
    /* Two periods above 100 MB/s, one in the band (70: above the clear
     * level of 50), then three above: raised on the third of those. */
    assert_int_equal(alert_step(&st, "vm x", &hi), 0);
    assert_int_equal(alert_step(&st, "vm x", &hi), 0);
    assert_int_equal(alert_step(&st, "vm x", &mid), 0);
    assert_int_equal(alert_step(&st, "vm x", &hi), 0);
    assert_int_equal(alert_step(&st, "vm x", &hi), 0);
    assert_int_equal(count("alert raised"), 0);
    assert_int_equal(alert_step(&st, "vm x", &hi), 1u << ALERT_SWAP);
    assert_int_equal(st.active, 1u << ALERT_SWAP);
    assert_non_null(strstr(backend_log(), "[mm] alert raised: vm x: swap: 150.00 MB/s of swap "
                                          "I/O (above 100.00) for 3 periods: add memory or "
                                          "reduce VMs\n"));
    /* Staying high: no second line. */
    assert_int_equal(alert_step(&st, "vm x", &hi), 0);
    assert_int_equal(count("alert raised"), 1);
    /* Below the threshold but above half of it: stays raised however long. */
    for (int i = 0; i < 10; i++)
        assert_int_equal(alert_step(&st, "vm x", &mid), 0);
    assert_int_equal(st.active, 1u << ALERT_SWAP);
    /* Below 50 MB/s: two periods, a band period, then three: cleared. */
    assert_int_equal(alert_step(&st, "vm x", &lo), 0);
    assert_int_equal(alert_step(&st, "vm x", &lo), 0);
    assert_int_equal(alert_step(&st, "vm x", &mid), 0);
    assert_int_equal(alert_step(&st, "vm x", &lo), 0);
    assert_int_equal(alert_step(&st, "vm x", &lo), 0);
    assert_int_equal(alert_step(&st, "vm x", &lo), 1u << ALERT_SWAP);
    assert_int_equal(st.active, 0);
    assert_non_null(strstr(backend_log(), "[mm] alert cleared: vm x: swap: 40.00 MB/s of swap "
                                          "I/O (below 50.00) for 3 periods\n"));
    assert_int_equal(count("alert cleared"), 1);
}

static void levels(void **state)
{
    (void)state;
    struct alert_state st = { 0 };
    /* Balloon: above 10% at once; clears below 8%. */
    struct alert_sample s = one(ALERT_BALLOON, 1001);
    assert_int_equal(alert_step(&st, "vm y", &s), 1u << ALERT_BALLOON);
    s = one(ALERT_BALLOON, 800); /* 8.00% is not below 8% */
    assert_int_equal(alert_step(&st, "vm y", &s), 0);
    s = one(ALERT_BALLOON, 799);
    assert_int_equal(alert_step(&st, "vm y", &s), 1u << ALERT_BALLOON);
    /* Exactly at the threshold is not above it. */
    s = one(ALERT_BALLOON, 1000);
    assert_int_equal(alert_step(&st, "vm y", &s), 0);
    /* Zip: low is bad. 1.49:1 raises, 1.60 stays (clear level 1.65), 1.66 clears. */
    s = one(ALERT_ZIP, 149);
    assert_int_equal(alert_step(&st, "vm y", &s), 1u << ALERT_ZIP);
    assert_non_null(strstr(backend_log(), "alert raised: vm y: zip: 1.49:1 compression ratio "
                                          "(below 1.50) for 1 period: compression overhead too "
                                          "high"));
    s = one(ALERT_ZIP, 160);
    assert_int_equal(alert_step(&st, "vm y", &s), 0);
    s = one(ALERT_ZIP, 166);
    assert_int_equal(alert_step(&st, "vm y", &s), 1u << ALERT_ZIP);
    /* Share: below 15% raises, clears above 18%. */
    s = one(ALERT_SHARE, 1200);
    assert_int_equal(alert_step(&st, "machine", &s), 1u << ALERT_SHARE);
    s = one(ALERT_SHARE, 1700);
    assert_int_equal(alert_step(&st, "machine", &s), 0);
    s = one(ALERT_SHARE, 1801);
    assert_int_equal(alert_step(&st, "machine", &s), 1u << ALERT_SHARE);
    assert_non_null(strstr(backend_log(), "alert cleared: machine: share: 18.01% saved by "
                                          "sharing (above 18.00) for 1 period"));
    /* High values are fine for zip and share, low ones for balloon. */
    struct alert_sample all = { { true, true, true, true }, { 0, 0, 900, 9000 } };
    assert_int_equal(alert_step(&st, "machine", &all), 0);
    assert_int_equal(st.active, 0);
}

static void invalid_and_disabled(void **state)
{
    (void)state;
    struct alert_state st = { 0 };
    struct alert_sample s = one(ALERT_ZIP, 120);
    assert_int_equal(alert_step(&st, "vm z", &s), 1u << ALERT_ZIP);
    /* The pool emptied: the ratio cannot be judged any more. */
    s.valid[ALERT_ZIP] = false;
    assert_int_equal(alert_step(&st, "vm z", &s), 1u << ALERT_ZIP);
    assert_non_null(strstr(backend_log(), "alert cleared: vm z: zip: no longer applies"));
    /* An invalid sample never raises, whatever its value. */
    s.value[ALERT_ZIP] = 1;
    assert_int_equal(alert_step(&st, "vm z", &s), 0);
    /* Threshold 0: never raised, and an active one clears. */
    s = one(ALERT_BALLOON, 5000);
    assert_int_equal(alert_step(&st, "vm z", &s), 1u << ALERT_BALLOON);
    struct alert_config c = defaults;
    c.balloon_pct = 0;
    alerts_configure(&c);
    assert_int_equal(alert_step(&st, "vm z", &s), 1u << ALERT_BALLOON);
    assert_non_null(strstr(backend_log(), "alert cleared: vm z: balloon: disabled"));
    assert_int_equal(alert_step(&st, "vm z", &s), 0);
    assert_int_equal(st.active, 0);
    /* periods 1: swap raises on the first period. */
    c.periods = 1;
    alerts_configure(&c);
    s = one(ALERT_SWAP, 10001);
    assert_int_equal(alert_step(&st, "vm z", &s), 1u << ALERT_SWAP);
    backend_log_clear();
    alerts_print_config();
    assert_non_null(strstr(backend_log(), "[mm] alerts: balloon above off%, swap above 100.00 "
                                          "MB/s for 1 periods, zip ratio below 1.50:1, sharing "
                                          "below 15.00%"));
}

static void registry(void **state)
{
    (void)state;
    struct p2m p = { 0 }, q = { 0 };
    strcpy(p.name, "p");
    strcpy(q.name, "q");
    struct alert_sample s = one(ALERT_BALLOON, 2000), ok = one(ALERT_BALLOON, 0);
    assert_int_equal(alerts_evaluate(&p, &s), 1u << ALERT_BALLOON);
    assert_int_equal(alerts_evaluate(&q, &ok), 0);
    assert_int_equal(alerts_evaluate(NULL, &s), 1u << ALERT_BALLOON);
    assert_non_null(strstr(backend_log(), "alert raised: vm p: balloon"));
    assert_non_null(strstr(backend_log(), "alert raised: machine: balloon"));
    assert_int_equal(alerts_active(&p), 1u << ALERT_BALLOON);
    assert_int_equal(alerts_active(&q), 0);
    assert_int_equal(alerts_active(NULL), 1u << ALERT_BALLOON);
    backend_log_clear();
    alerts_print();
    assert_non_null(strstr(backend_log(), "[con] alert machine: balloon: 20.00% of memory "
                                          "ballooned (threshold 10.00)"));
    assert_non_null(strstr(backend_log(), "[con] alert vm p: balloon"));
    alerts_forget(&p);
    alerts_forget(&q);
    alerts_forget(NULL);
    assert_int_equal(alerts_active(&p), 0);
    assert_int_equal(alerts_active(NULL), 0);
    backend_log_clear();
    alerts_print();
    assert_non_null(strstr(backend_log(), "[con] no alert is active\n"));
}

static int parse(const char *text, struct hv_config *cfg, struct cfg_error *err)
{
    return config_parse(text, strlen(text), cfg, err);
}

static void config_keys(void **state)
{
    (void)state;
    static struct hv_config cfg;
    struct cfg_error err;
    assert_int_equal(parse("", &cfg, &err), 0);
    assert_int_equal(cfg.alert_balloon_pct, ALERT_DEFAULT_BALLOON_PCT);
    assert_int_equal(cfg.alert_swap_mbps, ALERT_DEFAULT_SWAP_MBPS);
    assert_int_equal(cfg.alert_zip_ratio, ALERT_DEFAULT_ZIP_RATIO);
    assert_int_equal(cfg.alert_share_pct, ALERT_DEFAULT_SHARE_PCT);
    assert_int_equal(cfg.alert_periods, ALERT_DEFAULT_PERIODS);
    assert_int_equal(parse("alert_swap_mbps = 0.4\nalert_zip_ratio = 2\nalert_balloon_pct = 0\n"
                           "alert_share_pct = 12.25\nalert_periods = 2\n",
                           &cfg, &err), 0);
    assert_int_equal(cfg.alert_swap_mbps, 40);
    assert_int_equal(cfg.alert_zip_ratio, 200);
    assert_int_equal(cfg.alert_balloon_pct, 0);
    assert_int_equal(cfg.alert_share_pct, 1225);
    assert_int_equal(cfg.alert_periods, 2);
    static const struct {
        const char *text, *reason;
    } bad[] = {
        { "alert_swap_mbps = 1.234\n", "'alert_swap_mbps' 1.234 has more than two decimals" },
        { "alert_swap_mbps = fast\n", "'alert_swap_mbps' needs a number such as 10 or 1.5" },
        { "alert_swap_mbps = 1.\n", "'alert_swap_mbps' needs a number such as 10 or 1.5" },
        { "alert_zip_ratio = 1.5x\n", "'alert_zip_ratio' needs a number such as 10 or 1.5" },
        { "alert_balloon_pct = 101\n", "'alert_balloon_pct' 101 is above 100%" },
        { "alert_share_pct = 100.01\n", "'alert_share_pct' 100.01 is above 100%" },
        { "alert_periods = 0\n", "alert_periods 0 is out of range (1 .. 1000)" },
        { "alert_swap_mbps = 99999999999\n", "'alert_swap_mbps' 99999999999 is too large" },
        { "alert_periods = 2\nalert_periods = 3\n", "'alert_periods' is set twice" },
        { "alert_zip_ratio = 2\nalert_zip_ratio = 2\n", "'alert_zip_ratio' is set twice" },
        { "[vm a]\nalert_zip_ratio = 2\n", "'alert_zip_ratio' is a global key" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse(bad[i].text, &cfg, &err), -1);
        if (!strstr(err.reason, bad[i].reason))
            fail_msg("%s: got '%s'", bad[i].text, err.reason);
    }
    /* The older keys' duplicate detection still works beside the new bits. */
    assert_int_equal(parse("nvme_test_stuck = yes\nnvme_test_stuck = no\n", &cfg, &err), -1);
    assert_non_null(strstr(err.reason, "'nvme_test_stuck' is set twice"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(swap_sustained, setup),
        cmocka_unit_test_setup(levels, setup),
        cmocka_unit_test_setup(invalid_and_disabled, setup),
        cmocka_unit_test_setup(registry, setup),
        cmocka_unit_test_setup(config_keys, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

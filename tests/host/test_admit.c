/* Admission (mm/policy_admit.c) and its configuration keys.
 *
 * Covered: the guidance bands at their exact boundaries (1.2, 1.5 and 2 to
 * one, a page either side), the printed ratio (rounded up, so a printed
 * ratio is at most a bound exactly when the ratio is), the guidance line
 * with ratio, band and overcommit_max; the admission decision: a
 * reservation that does not fit (free memory less watermark and what
 * others are owed), overcommit_max refusing the VM that would pass it
 * (name, ratio, limit in the reason) and admitting one that lands on it
 * exactly, no limit without overcommit_max, a resizable VM counted at its
 * size and not at max_memory; the same through mm_register with its
 * reason kept for the caller and room again after mm_unregister; and the
 * hv.cfg keys overcommit_max (forms, range, decimals, placement,
 * duplicates) and max_memory (range, below memory, with limit, placement). */
#include "tests/host/backend.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "boot/config.h"
#include "mm/mm.h"
#include "mm/p2m.h"
#include "mm/policy_admit.h"

#define FRAMES 4096

static struct p2m a, b;

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
    policy_admit_set_max(0);
    backend_log_clear();
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
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
    policy_admit_set_max(0);
    backend_free();
    return 0;
}

/* ---- bands and ratios ---- */

static void test_bands(void **state)
{
    (void)state;
    assert_int_equal(policy_admit_band(0, 1000), AB_RECOMMENDED);
    assert_int_equal(policy_admit_band(1200, 1000), AB_RECOMMENDED);
    assert_int_equal(policy_admit_band(1201, 1000), AB_PRODUCTION);
    assert_int_equal(policy_admit_band(1500, 1000), AB_PRODUCTION);
    assert_int_equal(policy_admit_band(1501, 1000), AB_DEVELOPMENT);
    assert_int_equal(policy_admit_band(2000, 1000), AB_DEVELOPMENT);
    assert_int_equal(policy_admit_band(2001, 1000), AB_BEYOND);
    assert_int_equal(policy_admit_band(6, 5), AB_RECOMMENDED); /* exactly 1.2 */
    assert_int_equal(policy_admit_band(3, 2), AB_PRODUCTION);  /* exactly 1.5 */
    assert_int_equal(policy_admit_band(7, 2), AB_BEYOND);
    /* Large machines: no overflow in the comparison. */
    assert_int_equal(policy_admit_band(3ULL << 40, 2ULL << 40), AB_PRODUCTION);
    assert_string_equal(policy_admit_band_name(AB_RECOMMENDED), "recommended (at most 1.2:1)");
    assert_non_null(strstr(policy_admit_band_name(AB_BEYOND), "beyond the guidance"));
}

static void test_ratio_str(void **state)
{
    (void)state;
    char buf[16];
    assert_string_equal(policy_admit_ratio_str(buf, sizeof(buf), 4, 3), "1.34");
    assert_string_equal(policy_admit_ratio_str(buf, sizeof(buf), 3, 2), "1.50");
    assert_string_equal(policy_admit_ratio_str(buf, sizeof(buf), 1501, 1000), "1.51");
    assert_string_equal(policy_admit_ratio_str(buf, sizeof(buf), 0, 7), "0.00");
    assert_string_equal(policy_admit_ratio_str(buf, sizeof(buf), 5, 0), "n/a");
}

static void test_guidance_line(void **state)
{
    (void)state;
    policy_admit_guidance(256 * 300, 256 * 200); /* 300M on 200M */
    LOGGED("[mm] overcommit guidance: production at most 1.5:1, recommended 1.2:1, development "
           "at most 2:1; configured: 300M of guest memory on 200M of machine memory = 1.50:1, "
           "production (above the recommended 1.2:1, at most 1.5:1); overcommit_max none\n");
    backend_log_clear();
    policy_admit_set_max(1250);
    policy_admit_guidance(256 * 100, 256 * 100);
    LOGGED("= 1.00:1, recommended (at most 1.2:1); overcommit_max 1.25\n");
    backend_log_clear();
    policy_admit_set_max(2000);
    policy_admit_guidance(256 * 401, 256 * 200);
    LOGGED("= 2.01:1, beyond the guidance");
    LOGGED("overcommit_max 2.00\n");
    backend_log_clear();
    policy_admit_guidance(256 * 350, 256 * 200);
    LOGGED("= 1.75:1, development only (above 1.5:1, at most 2:1)");
}

/* ---- the decision ---- */

static void make_p2m(struct p2m *p, uint16_t owner, const char *name, uint64_t ngfn,
                     uint64_t reserve)
{
    assert_int_equal(p2m_init(p, owner, name, ngfn, reserve, 0, true), 0);
}

static void test_decide_reservation(void **state)
{
    (void)state;
    char why[192];
    make_p2m(&a, 1, "a", 1000, 500);
    struct admit_view v = { .free = 600, .owed_others = 0, .watermark = 4, .machine = 4000 };
    assert_int_equal(policy_admit_decide(&a, 520, &v, why, sizeof(why)), 0);
    v.owed_others = 80; /* 520 + 80 + 4 > 600 */
    assert_int_equal(policy_admit_decide(&a, 520, &v, why, sizeof(why)), -1);
    assert_string_equal(why, "vm a: reservation of 500 frames (520 with their metadata) cannot "
                             "be met (600 free, 80 reserved by others, watermark 4)");
    v.owed_others = 76; /* exactly fits */
    assert_int_equal(policy_admit_decide(&a, 520, &v, why, sizeof(why)), 0);
}

static void test_decide_overcommit_max(void **state)
{
    (void)state;
    char why[192];
    make_p2m(&a, 1, "big", 512, 0); /* 2M */
    struct admit_view v = { .free = 4000, .watermark = 4, .machine = 1024, .admitted = 1024 };
    /* No overcommit_max: any ratio. */
    assert_int_equal(policy_admit_decide(&a, 0, &v, why, sizeof(why)), 0);
    policy_admit_set_max(1500);
    /* 1024 + 512 = 1.5 x 1024 exactly: admitted. */
    assert_int_equal(policy_admit_decide(&a, 0, &v, why, sizeof(why)), 0);
    v.admitted = 1025;
    assert_int_equal(policy_admit_decide(&a, 0, &v, why, sizeof(why)), -1);
    assert_string_equal(why, "vm big: admitting it would make the overcommit ratio 1.51:1 (6M of "
                             "guest memory on 4M of machine memory), above overcommit_max 1.50:1");
    policy_admit_set_max(1499);
    v.admitted = 1024;
    assert_int_equal(policy_admit_decide(&a, 0, &v, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "above overcommit_max 1.499:1"));
}

/* A VM with max_memory counts at its size. */
static void test_decide_resizable_counts_size(void **state)
{
    (void)state;
    char why[192];
    make_p2m(&a, 1, "r", 2048, 0); /* max_memory 8M */
    policy_resize_init(&a, 512);   /* runs at 2M */
    assert_int_equal(policy_admit_size(&a), 512);
    policy_admit_set_max(1000);
    struct admit_view v = { .free = 4000, .watermark = 4, .machine = 1024, .admitted = 512 };
    assert_int_equal(policy_admit_decide(&a, 0, &v, why, sizeof(why)), 0);
    v.admitted = 513;
    assert_int_equal(policy_admit_decide(&a, 0, &v, why, sizeof(why)), -1);
}

/* Through mm_register: the machine as mm.c sees it. */
static void test_register_refuses(void **state)
{
    (void)state;
    uint64_t machine = mm_usable_frames();
    assert_true(machine > 2000);
    policy_admit_set_max(1000); /* no overcommit at all */
    make_p2m(&a, 1, "a", machine - 100, 0);
    assert_int_equal(mm_register(&a), 0);
    make_p2m(&b, 2, "b", 200, 0);
    assert_int_equal(mm_register(&b), -1);
    assert_int_equal(mm_vm_count(), 1);
    LOGGED("[mm] error: vm b: admitting it would make the overcommit ratio 1.0");
    assert_non_null(strstr(policy_admit_reason(), "vm b: admitting it would make the "
                                                  "overcommit ratio 1.0"));
    assert_non_null(strstr(policy_admit_reason(), "above overcommit_max 1.00:1"));
    /* a stops: b fits. */
    gone(&a);
    assert_int_equal(mm_register(&b), 0);
    assert_int_equal(mm_overcommit_permille() <= 1000, 1);
}

static void test_register_reservation(void **state)
{
    (void)state;
    uint64_t free = frame_free_count();
    make_p2m(&a, 1, "a", free * 2, free); /* a reservation of every free frame */
    assert_int_equal(mm_register(&a), -1);
    assert_non_null(strstr(policy_admit_reason(), "vm a: reservation of "));
    assert_non_null(strstr(policy_admit_reason(), "cannot be met"));
    LOGGED("[mm] error: vm a: reservation of ");
    p2m_destroy(&a);
    memset(&a, 0, sizeof(a));
    make_p2m(&a, 1, "a", free * 2, free / 2);
    assert_int_equal(mm_register(&a), 0);
}

/* ---- configuration ---- */

#define VM_A "[vm a]\nmemory = 64M\nkernel = k\n"

static struct hv_config cfg;
static struct cfg_error err;

static void cfg_ok(const char *text)
{
    if (config_parse(text, strlen(text), &cfg, &err))
        fail_msg("line %d: %s", err.line, err.reason);
}

static void cfg_bad(const char *text, int line, const char *phrase)
{
    assert_int_equal(config_parse(text, strlen(text), &cfg, &err), -1);
    assert_int_equal(err.line, line);
    if (!strstr(err.reason, phrase))
        fail_msg("reason \"%s\" lacks \"%s\"", err.reason, phrase);
}

static void test_config_overcommit_max(void **state)
{
    (void)state;
    cfg_ok(VM_A);
    assert_int_equal(cfg.overcommit_max, 0);
    cfg_ok("overcommit_max = 1.5\n" VM_A);
    assert_int_equal(cfg.overcommit_max, 1500);
    cfg_ok("overcommit_max = 1.5:1\n" VM_A);
    assert_int_equal(cfg.overcommit_max, 1500);
    cfg_ok("overcommit_max = 2\n" VM_A);
    assert_int_equal(cfg.overcommit_max, 2000);
    cfg_ok("overcommit_max = 1.25 # a comment\n" VM_A);
    assert_int_equal(cfg.overcommit_max, 1250);
    cfg_ok("overcommit_max = 0.125\n" VM_A);
    assert_int_equal(cfg.overcommit_max, 125);
    cfg_bad("overcommit_max = 1.2345\n", 1, "more than three decimals");
    cfg_bad("overcommit_max = lots\n", 1, "needs a ratio such as 1.5 or 1.5:1");
    cfg_bad("overcommit_max = 1.\n", 1, "needs a ratio");
    cfg_bad("overcommit_max = 1.5:2\n", 1, "needs a ratio");
    cfg_bad("overcommit_max = \n", 1, "needs a ratio");
    cfg_bad("overcommit_max = 0.05\n", 1, "below 0.1:1");
    cfg_bad("overcommit_max = 1001\n", 1, "above 1000:1");
    cfg_bad(VM_A "overcommit_max = 1.5\n", 4, "global key");
    cfg_bad("overcommit_max = 1.5\novercommit_max = 2\n", 2, "twice");
}

static void test_config_max_memory(void **state)
{
    (void)state;
    cfg_ok(VM_A);
    assert_int_equal(cfg.vm[0].max_memory, 0);
    cfg_ok(VM_A "max_memory = 128M\n");
    assert_int_equal(cfg.vm[0].max_memory, 128 << 20);
    cfg_ok(VM_A "max_memory = 64M\n"); /* equal: allowed */
    cfg_bad(VM_A "max_memory = 32M\n", 1, "max_memory is below its memory");
    cfg_bad(VM_A "max_memory = 128M\nlimit = 32M\n", 1, "limit and max_memory both");
    cfg_bad(VM_A "max_memory = 2T\n", 4, "max_memory 2T is out of range");
    cfg_bad(VM_A "max_memory = 512K\n", 4, "out of range");
    cfg_bad(VM_A "max_memory = 1052671\n", 4, "not a multiple of 4K");
    cfg_bad("max_memory = 128M\n", 1, "belongs in a [vm NAME] section");
    cfg_bad(VM_A "max_memory = 128M\nmax_memory = 256M\n", 5, "twice");
    /* Keys past the 32nd still detect duplicates, and the others still work. */
    cfg_bad("nvme_test_stuck = yes\nnvme_test_stuck = no\n", 2, "twice");
    cfg_ok("overcommit_max = 1.2\n" VM_A "max_memory = 96M\nreserve = 16M\n");
    assert_int_equal(cfg.vm[0].reserve, 16 << 20);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_bands),
        T(test_ratio_str),
        T(test_guidance_line),
        T(test_decide_reservation),
        T(test_decide_overcommit_max),
        T(test_decide_resizable_counts_size),
        T(test_register_refuses),
        T(test_register_reservation),
        T(test_config_overcommit_max),
        T(test_config_max_memory),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}

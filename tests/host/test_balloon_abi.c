/* The balloon's hypercall ABI (docs/hypercall.md): hc_dispatch of
 * mm/balloon.c on the machine of balloon_fixture.h. Covered: CPL, unknown
 * functions, batch sizes, list pages that are not guest RAM, good and bad
 * batches through a list page in guest memory (resident or compressed, or
 * inside the batch itself), VERSION, BALLOON_TARGET, REPORT_STATS with
 * larger and smaller guest structures, BALLOON_RELEASE, GUEST_FEATURES with
 * the driver's count and its floor report, and the call and rejection
 * counters. */
#include "tests/host/balloon_fixture.h"

/* ---- the hypercalls ------------------------------------------------------------- */

static struct balloon_stats bs;

static struct hc_regs hc(struct p2m *p, unsigned cpl, uint64_t fn, uint64_t rbx, uint64_t rcx)
{
    struct hc_regs r = { .rax = fn, .rbx = rbx, .rcx = rcx, .rdx = 0x0d0d0d0d };
    hc_dispatch(p, &bs, cpl, &r);
    return r;
}

/* Writes a list page at GFN l through the hypervisor's own access path
 * (the guest's driver would write it). */
static void write_list(struct p2m *p, uint64_t l, const uint64_t *g, unsigned n)
{
    uint64_t *w = p2m_gfn_ptr(p, l, true);
    assert_non_null(w);
    memset(w, 0, PG);
    memcpy(w, g, n * sizeof(uint64_t));
}

static uint64_t sum_calls(void)
{
    uint64_t t = 0;
    for (int i = 0; i < HC_FUNCTION_COUNT; i++)
        t += bs.calls[i];
    return t;
}

static void test_hc_version_and_target(void **state)
{
    (void)state;
    memset(&bs, 0, sizeof(bs));
    make(&a, 1, NGFN);
    struct hc_regs r = hc(&a, 0, HC_VERSION, 0, 0);
    assert_int_equal(r.rax, HC_OK);
    assert_int_equal(r.rbx, HC_ABI_VERSION);
    assert_int_equal(r.rbx, 1);
    assert_int_equal(r.rcx, HC_FEATURES);
    assert_int_equal(r.rcx & (HC_FEATURE_BALLOON | HC_FEATURE_STATS | HC_FEATURE_LENIENT |
                              HC_FEATURE_RELEASE | HC_FEATURE_GUEST), 0x1f);
    a.bl.target = 77;
    r = hc(&a, 0, HC_BALLOON_TARGET, 0, 0);
    assert_int_equal(r.rax, HC_OK);
    assert_int_equal(r.rbx, 77);
    assert_int_equal(r.rcx, 0);
    uint64_t g[] = { 1, 2, 9 };
    unsigned bad;
    assert_int_equal(inflate(&a, g, 3, &bad), 0);
    a.bl.target = 3;
    r = hc(&a, 0, HC_BALLOON_TARGET, 0, 0);
    assert_int_equal(r.rbx, 3);
    assert_int_equal(r.rcx, 3);
    uint64_t more[40];
    for (unsigned i = 0; i < 40; i++)
        more[i] = 20 + i;
    assert_int_equal(inflate(&a, more, 40, &bad), 0);
    uint64_t back[] = { 1, 25 };
    assert_int_equal(deflate(&a, back, 2, &bad), 0);
    a.bl.target = UINT64_MAX;
    r = hc(&a, 0, HC_BALLOON_TARGET, 0, 0);
    assert_int_equal(r.rax, HC_OK);
    assert_int_equal(r.rbx, UINT64_MAX);
    assert_int_equal(r.rcx, 41);
    assert_int_equal(r.rcx, a.count[P2M_BALLOONED]);
    assert_int_equal(bs.calls[HC_VERSION], 1);
    assert_int_equal(bs.calls[HC_BALLOON_TARGET], 3);
    assert_int_equal(bs.rejected, 0);
}

/* Anything but CPL 0 is refused before anything is looked at; nothing
 * changes, the registers keep what they held. */
static void test_hc_cpl(void **state)
{
    (void)state;
    memset(&bs, 0, sizeof(bs));
    make(&a, 1, NGFN);
    put(&a, 5, fill_random, 5);
    uint64_t g[] = { 5, 6 };
    write_list(&a, 20, g, 2);
    static struct snap s0;
    take(&a, &s0);
    for (unsigned cpl = 1; cpl <= 3; cpl++) {
        for (uint64_t fn = 0; fn < HC_FUNCTION_COUNT; fn++) {
            struct hc_regs r = hc(&a, cpl, fn, 20 * PAGE_SIZE, 2);
            assert_int_equal((int64_t)r.rax, HC_EPERM);
            assert_int_equal(r.rbx, 20 * PAGE_SIZE);
            assert_int_equal(r.rcx, 2);
            assert_int_equal(r.rdx, 0x0d0d0d0d);
        }
    }
    expect_unchanged(&a, &s0);
    assert_int_equal(bs.rejected, 3 * HC_FUNCTION_COUNT);
    for (int fn = 0; fn < HC_FUNCTION_COUNT; fn++)
        assert_int_equal(bs.calls[fn], 3);
    assert_int_equal(bs.stats_reports, 0);
    /* The same call from CPL 0 works. */
    struct hc_regs r = hc(&a, 0, HC_BALLOON_INFLATE, 20 * PAGE_SIZE, 2);
    assert_int_equal(r.rax, HC_OK);
    assert_int_equal(a.count[P2M_BALLOONED], 2);
}

static void test_hc_unknown_function(void **state)
{
    (void)state;
    memset(&bs, 0, sizeof(bs));
    make(&a, 1, NGFN);
    const uint64_t fns[] = { HC_FUNCTION_COUNT, 99, 1ULL << 32, UINT64_MAX, 0x8000000000000002ULL };
    for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
        struct hc_regs r = hc(&a, 0, fns[i], 1, 2);
        assert_int_equal((int64_t)r.rax, HC_ENOSYS);
    }
    assert_int_equal(bs.rejected, 5);
    assert_int_equal(sum_calls(), 0); /* not counted in any function's slot */
    /* From CPL 3, an unknown function is a permission error first. */
    struct hc_regs r = hc(&a, 3, 99, 0, 0);
    assert_int_equal((int64_t)r.rax, HC_EPERM);
    assert_int_equal(bs.rejected, 6);
}

static void test_hc_batch_errors(void **state)
{
    (void)state;
    memset(&bs, 0, sizeof(bs));
    make(&a, 1, NGFN);
    put(&a, 5, fill_random, 5);
    uint64_t g[] = { 5, 6, 7 };
    write_list(&a, 20, g, 3);
    make_mmio(&a, 50);
    static struct snap s0;
    take(&a, &s0);
    const uint64_t fn[] = { HC_BALLOON_INFLATE, HC_BALLOON_DEFLATE };
    uint64_t rejected = 0;
    for (int k = 0; k < 2; k++) {
        /* Batch sizes. */
        const uint64_t counts[] = { 0, HC_BATCH_MAX + 1, 1ULL << 32, (1ULL << 32) + 1,
                                    UINT64_MAX };
        for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
            struct hc_regs r = hc(&a, 0, fn[k], 20 * PAGE_SIZE, counts[i]);
            if ((int64_t)r.rax != HC_E2BIG)
                fail_msg("fn %llu count %#llx: %lld, want E2BIG", (unsigned long long)fn[k],
                         (unsigned long long)counts[i], (long long)r.rax);
            assert_int_equal(r.rbx, 20 * PAGE_SIZE);
            rejected++;
        }
        /* List pages that are not a page of guest RAM. */
        const uint64_t gpas[] = { 20 * PAGE_SIZE + 8, 20 * PAGE_SIZE + 1, NGFN * PAGE_SIZE,
                                  (NGFN + 1) * PAGE_SIZE, UINT64_MAX & ~0xfffULL, UINT64_MAX,
                                  50 * PAGE_SIZE /* MMIO */ };
        for (size_t i = 0; i < sizeof(gpas) / sizeof(gpas[0]); i++) {
            struct hc_regs r = hc(&a, 0, fn[k], gpas[i], 3);
            if ((int64_t)r.rax != HC_EFAULT)
                fail_msg("fn %llu list at %#llx: %lld, want EFAULT", (unsigned long long)fn[k],
                         (unsigned long long)gpas[i], (long long)r.rax);
            rejected++;
        }
    }
    expect_unchanged(&a, &s0);
    assert_int_equal(bs.rejected, rejected);
    assert_int_equal(bs.calls[HC_BALLOON_INFLATE], 12);
    assert_int_equal(bs.calls[HC_BALLOON_DEFLATE], 12);
    assert_int_equal(a.count[P2M_BALLOONED], 0);
}

static void test_hc_inflate_deflate(void **state)
{
    (void)state;
    memset(&bs, 0, sizeof(bs));
    make(&a, 1, NGFN);
    for (uint64_t k = 0; k < 8; k++)
        put(&a, k, fill_random, k);
    uint64_t g[] = { 0, 1, 2, 3, 12, 13 };
    write_list(&a, 30, g, 6);
    uint64_t free0 = backend_free_and_meta();
    struct hc_regs r = hc(&a, 0, HC_BALLOON_INFLATE, 30 * PAGE_SIZE, 6);
    assert_int_equal(r.rax, HC_OK);
    assert_int_equal(r.rbx, 6);
    for (int i = 0; i < 6; i++)
        expect_ballooned(&a, g[i]);
    assert_int_equal(backend_free_and_meta(), free0 + 4);
    assert_int_equal(p2m_peek(&a, 30)->state, P2M_RESIDENT); /* the list page itself */
    /* Only the first rcx entries count: a count of 2 inflates 4 and 5,
     * the rest of the page is not looked at. */
    uint64_t g2[] = { 4, 5, 4, 4, NGFN };
    write_list(&a, 30, g2, 5);
    r = hc(&a, 0, HC_BALLOON_INFLATE, 30 * PAGE_SIZE, 2);
    assert_int_equal(r.rax, HC_OK);
    assert_int_equal(r.rbx, 2);
    assert_int_equal(a.count[P2M_BALLOONED], 8);
    assert_int_equal(r.rcx, 0); /* none was ballooned already */
    /* A bad entry: EINVAL with its index, nothing changed, RCX kept. */
    static struct snap s0;
    uint64_t g3[] = { 6, 7, 20, 3, NGFN }; /* 3 is ballooned already: fine */
    write_list(&a, 31, g3, 5);
    take(&a, &s0);
    r = hc(&a, 0, HC_BALLOON_INFLATE, 31 * PAGE_SIZE, 5);
    assert_int_equal((int64_t)r.rax, HC_EINVAL);
    assert_int_equal(r.rbx, 4);
    assert_int_equal(r.rcx, 5);
    expect_unchanged(&a, &s0);
    /* Without it: done, RCX says one was ballooned already. */
    r = hc(&a, 0, HC_BALLOON_INFLATE, 31 * PAGE_SIZE, 4);
    assert_int_equal(r.rax, HC_OK);
    assert_int_equal(r.rbx, 4);
    assert_int_equal(r.rcx, 1);
    assert_int_equal(bs.noop_inflate, 1);
    uint64_t d0[] = { 6, 7, 20 };
    write_list(&a, 31, d0, 3);
    r = hc(&a, 0, HC_BALLOON_DEFLATE, 31 * PAGE_SIZE, 3);
    assert_int_equal(r.rax, HC_OK);
    /* Deflate through the list, and a bad one. */
    uint64_t d[] = { 13, 12, 0 };
    write_list(&a, 31, d, 3);
    r = hc(&a, 0, HC_BALLOON_DEFLATE, 31 * PAGE_SIZE, 3);
    assert_int_equal(r.rax, HC_OK);
    assert_int_equal(r.rbx, 3);
    assert_int_equal(p2m_peek(&a, 12)->state, P2M_UNPOPULATED);
    assert_int_equal(a.count[P2M_BALLOONED], 5);
    r = hc(&a, 0, HC_BALLOON_DEFLATE, 31 * PAGE_SIZE, 3); /* again: none is ballooned */
    assert_int_equal(r.rax, HC_OK);
    assert_int_equal(r.rbx, 3);
    assert_int_equal(r.rcx, 3);
    assert_int_equal(bs.noop_deflate, 3);
    assert_int_equal(bs.calls[HC_BALLOON_INFLATE], 4);
    assert_int_equal(bs.calls[HC_BALLOON_DEFLATE], 3);
    assert_int_equal(bs.rejected, 1);
    assert_int_equal(a.st.balloon_inflated, 11);
    assert_int_equal(a.st.balloon_deflated, 6);
    check_all();
}

/* The list page may itself be in the batch (read before anything
 * changes), and is read in whatever state it is without changing it:
 * here compressed. A ballooned list page reads as zeros: GFN 0. */
static void test_hc_list_page_states(void **state)
{
    (void)state;
    memset(&bs, 0, sizeof(bs));
    assert_int_equal(mm_pool_init(64, 2048, false), 0);
    make(&a, 1, NGFN);
    put(&a, 1, fill_random, 1);
    uint64_t g[] = { 1, 40, 2 };
    write_list(&a, 40, g, 3);
    struct hc_regs r = hc(&a, 0, HC_BALLOON_INFLATE, 40 * PAGE_SIZE, 3);
    assert_int_equal(r.rax, HC_OK);
    expect_ballooned(&a, 40);
    expect_ballooned(&a, 1);
    /* A ballooned list page: all zeros. */
    r = hc(&a, 0, HC_BALLOON_INFLATE, 40 * PAGE_SIZE, 1);
    assert_int_equal(r.rax, HC_OK);
    expect_ballooned(&a, 0);
    r = hc(&a, 0, HC_BALLOON_INFLATE, 40 * PAGE_SIZE, 2); /* 0 twice */
    assert_int_equal((int64_t)r.rax, HC_EINVAL);
    assert_int_equal(r.rbx, 1);
    /* A compressed list page. */
    uint64_t g2[] = { 10, 11, 12 };
    write_list(&a, 41, g2, 3);
    reclaim_all(&a);
    assert_int_equal(p2m_peek(&a, 41)->state, P2M_COMPRESSED);
    uint64_t h = p2m_peek(&a, 41)->payload;
    r = hc(&a, 0, HC_BALLOON_INFLATE, 41 * PAGE_SIZE, 3);
    assert_int_equal(r.rax, HC_OK);
    assert_int_equal(p2m_peek(&a, 41)->state, P2M_COMPRESSED);
    assert_int_equal(p2m_peek(&a, 41)->payload, h);
    for (int i = 0; i < 3; i++)
        expect_ballooned(&a, g2[i]);
    check_all();
}

static void write_stats(struct p2m *p, uint64_t gfn, uint64_t size, uint64_t base)
{
    uint64_t *w = p2m_gfn_ptr(p, gfn, true);
    assert_non_null(w);
    for (int i = 0; i < 512; i++)
        w[i] = base + (uint64_t)i; /* beyond the structure too */
    w[0] = size;
}

static void test_hc_report_stats(void **state)
{
    (void)state;
    memset(&bs, 0, sizeof(bs));
    make(&a, 1, NGFN);
    const uint64_t full = sizeof(struct hc_guest_stats);
    assert_int_equal(full, 64);
    /* Exactly the structure. */
    write_stats(&a, 7, full, 1000);
    struct hc_regs r = hc(&a, 0, HC_REPORT_STATS, 7 * PAGE_SIZE, 0);
    assert_int_equal(r.rax, HC_OK);
    assert_int_equal(bs.stats_reports, 1);
    assert_int_equal(bs.guest.size, full);
    assert_int_equal(bs.guest.total, 1001);
    assert_int_equal(bs.guest.free, 1002);
    assert_int_equal(bs.guest.available, 1003);
    assert_int_equal(bs.guest.swap_in, 1004);
    assert_int_equal(bs.guest.swap_out, 1005);
    assert_int_equal(bs.guest.major_faults, 1006);
    assert_int_equal(bs.guest.minor_faults, 1007);
    /* A newer guest's larger structure: what we know, size clamped. */
    write_stats(&a, 7, 4096, 2000);
    r = hc(&a, 0, HC_REPORT_STATS, 7 * PAGE_SIZE, 0);
    assert_int_equal(r.rax, HC_OK);
    assert_int_equal(bs.guest.size, full);
    assert_int_equal(bs.guest.total, 2001);
    assert_int_equal(bs.guest.minor_faults, 2007);
    write_stats(&a, 7, UINT64_MAX, 2500);
    r = hc(&a, 0, HC_REPORT_STATS, 7 * PAGE_SIZE, 0);
    assert_int_equal(r.rax, HC_OK);
    assert_int_equal(bs.guest.size, full);
    assert_int_equal(bs.guest.minor_faults, 2507);
    /* An older guest's smaller one: the rest is zero, not stale. */
    write_stats(&a, 7, 32, 3000); /* size, total, free, available */
    r = hc(&a, 0, HC_REPORT_STATS, 7 * PAGE_SIZE, 0);
    assert_int_equal(r.rax, HC_OK);
    assert_int_equal(bs.guest.size, 32);
    assert_int_equal(bs.guest.total, 3001);
    assert_int_equal(bs.guest.free, 3002);
    assert_int_equal(bs.guest.available, 3003);
    assert_int_equal(bs.guest.swap_in, 0);
    assert_int_equal(bs.guest.swap_out, 0);
    assert_int_equal(bs.guest.major_faults, 0);
    assert_int_equal(bs.guest.minor_faults, 0);
    /* Not a multiple of 8: byte exact. */
    write_stats(&a, 7, 20, 0x0102030405060708ULL);
    r = hc(&a, 0, HC_REPORT_STATS, 7 * PAGE_SIZE, 0);
    assert_int_equal(bs.guest.size, 20);
    assert_int_equal(bs.guest.total, 0x0102030405060709ULL);
    assert_int_equal(bs.guest.free, 0x010203040506070aULL & 0xffffffffULL);
    assert_int_equal(bs.guest.available, 0);
    /* Size 0: nothing. */
    write_stats(&a, 7, 0, 4000);
    r = hc(&a, 0, HC_REPORT_STATS, 7 * PAGE_SIZE, 0);
    assert_int_equal(r.rax, HC_OK);
    struct hc_guest_stats zero;
    memset(&zero, 0, sizeof(zero));
    assert_memory_equal(&bs.guest, &zero, sizeof(zero));
    assert_int_equal(bs.stats_reports, 6);
    /* An unpopulated page: a report of nothing (and it stays unpopulated). */
    write_stats(&a, 7, full, 5000);
    r = hc(&a, 0, HC_REPORT_STATS, 9 * PAGE_SIZE, 0);
    assert_int_equal(r.rax, HC_OK);
    assert_memory_equal(&bs.guest, &zero, sizeof(zero));
    assert_int_equal(p2m_peek(&a, 9)->state, P2M_UNPOPULATED);
    /* Bad pages: EFAULT, the last report kept, not counted. */
    r = hc(&a, 0, HC_REPORT_STATS, 7 * PAGE_SIZE, 0);
    assert_int_equal(bs.guest.total, 5001);
    make_mmio(&a, 60);
    const uint64_t gpas[] = { 7 * PAGE_SIZE + 8, NGFN * PAGE_SIZE, UINT64_MAX & ~0xfffULL,
                              60 * PAGE_SIZE };
    for (size_t i = 0; i < sizeof(gpas) / sizeof(gpas[0]); i++) {
        r = hc(&a, 0, HC_REPORT_STATS, gpas[i], 0);
        assert_int_equal((int64_t)r.rax, HC_EFAULT);
        assert_int_equal(bs.guest.total, 5001);
    }
    assert_int_equal(bs.stats_reports, 8);
    assert_int_equal(bs.rejected, 4);
    /* CPL 3: refused, nothing recorded. */
    write_stats(&a, 7, full, 6000);
    r = hc(&a, 3, HC_REPORT_STATS, 7 * PAGE_SIZE, 0);
    assert_int_equal((int64_t)r.rax, HC_EPERM);
    assert_int_equal(bs.guest.total, 5001);
    assert_int_equal(bs.stats_reports, 8);
    assert_int_equal(bs.calls[HC_REPORT_STATS], 13);
    assert_int_equal(bs.rejected, 5);
}

/* The counters over a mixed sequence. */
/* A list or statistics page that is guest RAM but whose stored copy
 * cannot be read back (the swap device fails the read, or the copy fails
 * its checksum) is EIO, not EFAULT: the address is good, the loss is the
 * hypervisor's. Nothing changes; the page stays swapped, for the guest's
 * own access to report. Readable again, the same calls work. */
static void test_hc_unreadable_list_page(void **state)
{
    (void)state;
    memset(&bs, 0, sizeof(bs));
    attach_swap();
    assert_int_equal(mm_pool_init(0, 2048, false), 0);
    make(&a, 1, NGFN);
    put(&a, 5, fill_random, 5);
    uint64_t g[] = { 5, 6, 7 };
    write_list(&a, 20, g, 3);
    write_stats(&a, 21, 64, 100);
    reclaim_all(&a);
    assert_int_equal(p2m_peek(&a, 20)->state, P2M_SWAPPED);
    assert_int_equal(p2m_peek(&a, 21)->state, P2M_SWAPPED);
    static struct snap s0;
    take(&a, &s0);
    uint64_t read_errors0 = sst().read_errors;
    for (int round = 0; round < 2; round++) {
        if (round == 0) {
            md.fail_reads = true; /* the device fails */
        } else {
            md.fail_reads = false; /* the device reads what is not the copy */
            for (uint64_t i = 0; i < md.d.sectors * 512; i++)
                md.data[i] ^= 0xff;
        }
        const uint64_t fn[] = { HC_BALLOON_INFLATE, HC_BALLOON_DEFLATE };
        for (int k = 0; k < 2; k++) {
            struct hc_regs r = hc(&a, 0, fn[k], 20 * PAGE_SIZE, 3);
            if ((int64_t)r.rax != HC_EIO)
                fail_msg("round %d fn %llu: %lld, want EIO", round, (unsigned long long)fn[k],
                         (long long)r.rax);
            assert_int_equal(r.rbx, 20 * PAGE_SIZE);
            assert_int_equal(r.rcx, 3);
        }
        struct hc_regs r = hc(&a, 0, HC_REPORT_STATS, 21 * PAGE_SIZE, 0);
        assert_int_equal((int64_t)r.rax, HC_EIO);
        assert_int_equal(bs.stats_reports, 0);
        expect_unchanged(&a, &s0);
    }
    assert_int_equal(sst().read_errors, read_errors0 + 3);
    assert_int_equal(bs.rejected, 6);
    assert_string_equal(hc_result_name(HC_EIO), "argument page unreadable");
    /* The copy back as it was: the calls go through. */
    for (uint64_t i = 0; i < md.d.sectors * 512; i++)
        md.data[i] ^= 0xff;
    struct hc_regs r = hc(&a, 0, HC_REPORT_STATS, 21 * PAGE_SIZE, 0);
    assert_int_equal(r.rax, HC_OK);
    assert_int_equal(bs.guest.total, 101);
    r = hc(&a, 0, HC_BALLOON_INFLATE, 20 * PAGE_SIZE, 3);
    assert_int_equal(r.rax, HC_OK);
    assert_int_equal(r.rbx, 3);
    for (int i = 0; i < 3; i++)
        expect_ballooned(&a, g[i]);
    assert_int_equal(p2m_peek(&a, 20)->state, P2M_SWAPPED);
    check_all();
}

static void test_hc_counters(void **state)
{
    (void)state;
    memset(&bs, 0, sizeof(bs));
    make(&a, 1, NGFN);
    uint64_t g[] = { 3, 4, 0, 0 };
    write_list(&a, 10, g, 4);
    hc(&a, 0, HC_VERSION, 0, 0);                          /* ok */
    hc(&a, 0, HC_VERSION, 0, 0);                          /* ok */
    hc(&a, 3, HC_VERSION, 0, 0);                          /* EPERM */
    hc(&a, 0, HC_BALLOON_TARGET, 0, 0);                   /* ok */
    hc(&a, 0, HC_BALLOON_INFLATE, 10 * PAGE_SIZE, 2);     /* ok */
    hc(&a, 0, HC_BALLOON_INFLATE, 10 * PAGE_SIZE, 4);     /* EINVAL (0 twice) */
    hc(&a, 0, HC_BALLOON_INFLATE, 10 * PAGE_SIZE, 0);     /* E2BIG */
    hc(&a, 0, HC_BALLOON_DEFLATE, 10 * PAGE_SIZE + 1, 2); /* EFAULT */
    hc(&a, 0, HC_BALLOON_DEFLATE, 10 * PAGE_SIZE, 2);     /* ok */
    hc(&a, 0, HC_REPORT_STATS, 10 * PAGE_SIZE, 0);        /* ok */
    hc(&a, 0, 17, 0, 0);                                  /* ENOSYS */
    assert_int_equal(bs.calls[HC_VERSION], 3);
    assert_int_equal(bs.calls[HC_BALLOON_TARGET], 1);
    assert_int_equal(bs.calls[HC_BALLOON_INFLATE], 3);
    assert_int_equal(bs.calls[HC_BALLOON_DEFLATE], 2);
    assert_int_equal(bs.calls[HC_REPORT_STATS], 1);
    assert_int_equal(bs.rejected, 5);
    assert_int_equal(bs.stats_reports, 1);
    assert_string_equal(hc_result_name(HC_OK), "ok");
    assert_string_equal(hc_result_name(HC_EINVAL), "bad GFN in batch");
    assert_string_equal(hc_result_name(-99), "?");
    check_all();
}


/* Issue 16 defect 4: BALLOON_RELEASE deflates whatever the hypervisor
 * holds as ballooned for the VM (a driver that lost track of its pages
 * makes both sides agree again), a bounded stretch of GFNs per call. */
static void test_hc_release(void **state)
{
    (void)state;
    memset(&bs, 0, sizeof(bs));
    const uint64_t n = HC_RELEASE_SCAN + 700; /* two calls' worth */
    make(&a, 1, n);
    static uint64_t g[HC_BATCH_MAX];
    unsigned k = 0, bad;
    for (uint64_t x = 3; x < n; x += 131)
        g[k++] = x; /* spread over both stretches */
    g[k++] = n - 1;
    assert_true(k < HC_BATCH_MAX);
    put(&a, 3, fill_random, 3);
    put(&a, 4, fill_random, 4);
    assert_int_equal(inflate(&a, g, k, &bad), 0);
    uint64_t before_scan = 0;
    for (unsigned i = 0; i < k; i++)
        before_scan += g[i] < HC_RELEASE_SCAN;
    /* Start beyond RAM: nothing to do, done. */
    struct hc_regs r = hc(&a, 0, HC_BALLOON_RELEASE, UINT64_MAX, 0);
    assert_int_equal(r.rax, HC_OK);
    assert_int_equal(r.rbx, n);
    assert_int_equal(r.rcx, 0);
    assert_int_equal(a.count[P2M_BALLOONED], k);
    /* From 0: the first stretch, then the rest. */
    r = hc(&a, 0, HC_BALLOON_RELEASE, 0, 0);
    assert_int_equal(r.rax, HC_OK);
    assert_int_equal(r.rbx, HC_RELEASE_SCAN);
    assert_int_equal(r.rcx, before_scan);
    assert_int_equal(a.count[P2M_BALLOONED], k - before_scan);
    r = hc(&a, 0, HC_BALLOON_RELEASE, r.rbx, 0);
    assert_int_equal(r.rax, HC_OK);
    assert_int_equal(r.rbx, n);
    assert_int_equal(r.rcx, k - before_scan);
    assert_int_equal(a.count[P2M_BALLOONED], 0);
    assert_int_equal(bs.released, k);
    assert_int_equal(a.st.balloon_deflated, k);
    /* 4 (4 is resident, untouched) kept its content; 3 reads as zero. */
    expect_content(&a, 4, fill_random, 4);
    assert_int_equal(p2m_peek(&a, 3)->state, P2M_UNPOPULATED);
    assert_int_equal(bs.rejected, 0);
    assert_int_equal(p2m_check(&a), 0);
}

/* GUEST_FEATURES: the guest says what it has; unknown bits are dropped,
 * RBX says what is in force. With HC_GUEST_HELD its count of held pages
 * (BALLOON_TARGET's RBX) decides the "holds its target" line: the touched
 * pages it still holds made the line say "0 pages" while it held them
 * all (issue 16, defect 1). */
static void test_hc_guest_features_and_held(void **state)
{
    (void)state;
    memset(&bs, 0, sizeof(bs));
    make(&a, 1, NGFN);
    struct hc_regs r = hc(&a, 0, HC_GUEST_FEATURES, HC_GUEST_HELD | HC_GUEST_DEFLATE_ON_OOM |
                                                        (1ull << 40), 0);
    assert_int_equal(r.rax, HC_OK);
    assert_int_equal(r.rbx, HC_GUEST_HELD | HC_GUEST_DEFLATE_ON_OOM);
    assert_int_equal(r.rcx, HC_FEATURES);
    assert_int_equal(HC_GUEST_KNOWN, 7);
    assert_int_equal(a.bl.guest_features, HC_GUEST_HELD | HC_GUEST_DEFLATE_ON_OOM);
    uint64_t g[] = { 1, 2, 3, 4 };
    unsigned bad;
    assert_int_equal(balloon_set_target(&a, 4), 4);
    assert_int_equal(inflate(&a, g, 4, &bad), 0);
    r = hc(&a, 0, HC_BALLOON_TARGET, 4, 0); /* it holds 4 */
    assert_int_equal(r.rbx, 4);
    assert_int_equal(r.rcx, 4);
    assert_int_equal(a.bl.guest_held, 4);
    balloon_policy_tick();
    assert_non_null(strstr(backend_log(), "vm a: balloon holds its target of 4 pages (by the "
                                          "driver's count; 4 ballooned here)"));
    /* The guest touches all four, the target goes to 0: ballooned here
     * is 0, but the driver still holds 4: not reached. */
    for (uint64_t i = 1; i <= 4; i++)
        assert_int_equal(p2m_fault(&a, i * PAGE_SIZE, P2M_ACCESS_R), P2M_OK);
    assert_int_equal(a.count[P2M_BALLOONED], 0);
    assert_int_equal(balloon_set_target(&a, 0), 0);
    r = hc(&a, 0, HC_BALLOON_TARGET, 4, 0);
    backend_log_clear();
    balloon_policy_tick();
    assert_null(strstr(backend_log(), "holds its target"));
    /* It deflates them (all already back: counted) and says so. */
    write_list(&a, 30, g, 4);
    r = hc(&a, 0, HC_BALLOON_DEFLATE, 30 * PAGE_SIZE, 4);
    assert_int_equal(r.rax, HC_OK);
    assert_int_equal(r.rcx, 4);
    r = hc(&a, 0, HC_BALLOON_TARGET, 0, 0);
    balloon_policy_tick();
    assert_non_null(strstr(backend_log(), "vm a: balloon holds its target of 0 pages (by the "
                                          "driver's count; 0 ballooned here)"));
    /* A driver that does not say it passes its count: RBX is ignored. */
    r = hc(&a, 0, HC_GUEST_FEATURES, 0, 0);
    assert_int_equal(r.rbx, 0);
    r = hc(&a, 0, HC_BALLOON_TARGET, 1234, 0);
    assert_int_equal(a.bl.guest_held, 0);
    assert_int_equal(bs.rejected, 0);
    check_all();
}

/* Issue 16 defect 5: a driver with HC_GUEST_SHORT says in BALLOON_TARGET's
 * RCX how much of the target it cannot give (its floor): the hypervisor
 * says so once per target and shortfall, counts it, clamps a count above
 * the target, and forgets it when the driver stops saying it. A driver
 * without the bit has its RCX ignored. The driver's unload (HC_GUEST_HELD
 * dropped) is said with what stays ballooned. */
static void test_hc_guest_short(void **state)
{
    (void)state;
    memset(&bs, 0, sizeof(bs));
    make(&a, 1, NGFN);
    assert_int_equal(balloon_set_target(&a, 40), 40);
    /* Not said it reports shortfalls: RCX is ignored. */
    struct hc_regs r = hc(&a, 0, HC_BALLOON_TARGET, 0, 30);
    assert_int_equal(a.bl.guest_short, 0);
    assert_int_equal(a.bl.short_reports, 0);
    assert_null(strstr(backend_log(), "cannot meet"));
    r = hc(&a, 0, HC_GUEST_FEATURES, HC_GUEST_HELD | HC_GUEST_SHORT, 0);
    assert_int_equal(r.rax, HC_OK);
    assert_int_equal(r.rbx, HC_GUEST_HELD | HC_GUEST_SHORT);
    /* It holds 25 and cannot give the other 15. */
    r = hc(&a, 0, HC_BALLOON_TARGET, 25, 15);
    assert_int_equal(r.rax, HC_OK);
    assert_int_equal(r.rbx, 40);
    assert_int_equal(r.rcx, 0); /* results as ever: nothing ballooned here */
    assert_int_equal(a.bl.guest_short, 15);
    assert_int_equal(a.bl.short_reports, 1);
    assert_non_null(strstr(backend_log(), "vm a: balloon driver cannot meet its target of 40 "
                                          "pages: it holds 25, 15 short"));
    /* Said again at every poll: counted once. */
    backend_log_clear();
    for (int i = 0; i < 5; i++)
        hc(&a, 0, HC_BALLOON_TARGET, 25, 15);
    assert_int_equal(a.bl.short_reports, 1);
    assert_null(strstr(backend_log(), "cannot meet"));
    /* A new target it cannot meet either: said again. */
    assert_int_equal(balloon_set_target(&a, 50), 50);
    hc(&a, 0, HC_BALLOON_TARGET, 26, 24);
    assert_int_equal(a.bl.short_reports, 2);
    assert_non_null(strstr(backend_log(), "target of 50 pages: it holds 26, 24 short"));
    /* More than the target: the target. */
    hc(&a, 0, HC_BALLOON_TARGET, 0, 1000);
    assert_int_equal(a.bl.guest_short, 50);
    assert_int_equal(a.bl.short_reports, 2);
    /* It meets it after all: nothing short; short again later: said. */
    hc(&a, 0, HC_BALLOON_TARGET, 50, 0);
    assert_int_equal(a.bl.guest_short, 0);
    hc(&a, 0, HC_BALLOON_TARGET, 45, 5);
    assert_int_equal(a.bl.short_reports, 3);
    backend_log_clear();
    balloon_print_vm(&a);
    assert_non_null(strstr(backend_log(), "the driver holds 45, short 5 (said 3 times)"));
    /* It unloads: says nothing any more; the hypervisor says it is gone
     * and what stays ballooned here. */
    uint64_t g[] = { 1, 2, 3 };
    unsigned bad;
    assert_int_equal(inflate(&a, g, 3, &bad), 0);
    backend_log_clear();
    r = hc(&a, 0, HC_GUEST_FEATURES, 0, 0);
    assert_int_equal(r.rbx, 0);
    assert_int_equal(a.bl.guest_short, 0);
    assert_non_null(strstr(backend_log(), "vm a: balloon driver gone (guest features 0x0): "
                                          "ballooned here now 3, 0 released by BALLOON_RELEASE"));
    hc(&a, 0, HC_BALLOON_TARGET, 0, 7);
    assert_int_equal(a.bl.guest_short, 0);
    assert_int_equal(bs.rejected, 0);
    check_all();
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_hc_version_and_target),
        T(test_hc_cpl),
        T(test_hc_unknown_function),
        T(test_hc_batch_errors),
        T(test_hc_inflate_deflate),
        T(test_hc_list_page_states),
        T(test_hc_report_stats),
        T(test_hc_unreadable_list_page),
        T(test_hc_counters),
        T(test_hc_release),
        T(test_hc_guest_features_and_held),
        T(test_hc_guest_short),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* mm/frame.c: the frame table and allocator, over the host arena.
 * The arena starts filled with BACKEND_ARENA_FILL, so every "zeroed" check
 * would see garbage if the allocator skipped zeroing. */
#include "tests/host/backend.h"

#include <stdlib.h>
#include <string.h>

#include "mm/frame.h"

static int teardown(void **state)
{
    backend_free();
    return 0;
}

static bool page_is_zero(mfn_t m)
{
    const uint64_t *p = backend_frame(m);
    for (int i = 0; i < 512; i++)
        if (p[i])
            return false;
    return true;
}

/* The statistics agree with a scan of the table, and add up. */
static void check_stats(void)
{
    struct frame_stats st;
    frame_get_stats(&st);
    uint64_t n = backend_nframes(), count[FS_STATE_COUNT] = { 0 };
    assert_int_equal(st.frames, n);
    for (mfn_t m = 0; m < n; m++) {
        uint8_t s = frame_get(m)->state;
        assert_in_range(s, 0, FS_STATE_COUNT - 1);
        count[s]++;
    }
    uint64_t sum = 0;
    for (int s = 0; s < FS_STATE_COUNT; s++) {
        if (count[s] != st.count[s])
            fail_msg("state %s: %llu frames in the table, stats say %llu",
                     frame_state_name(s), (unsigned long long)count[s],
                     (unsigned long long)st.count[s]);
        sum += st.count[s];
    }
    assert_int_equal(sum, n);
    assert_int_equal(frame_free_count(), st.count[FS_FREE]);
}

static struct frame_stats stats(void)
{
    struct frame_stats st;
    frame_get_stats(&st);
    return st;
}

/* Allocates until empty; returns how many, their MFNs in out[]. */
static uint64_t alloc_all(mfn_t *out, uint64_t max, enum frame_state s, uint16_t owner)
{
    uint64_t n = 0;
    for (;;) {
        mfn_t m = frame_alloc(s, owner);
        if (m == MFN_INVALID)
            return n;
        assert_true(n < max);
        out[n++] = m;
    }
}

/* ---- init ---------------------------------------------------------------- */

static void test_init(void **state)
{
    struct frame dummy;
    assert_int_equal(frame_init(&dummy, 0), -1);
    assert_int_equal(frame_init(&dummy, FRAME_MAX_FRAMES + 1), -1);
    assert_int_equal(frame_table_bytes(1000), 24000);

    backend_frames(32, 0, 0);
    struct frame_stats st = stats();
    assert_int_equal(st.frames, 32);
    assert_int_equal(st.count[FS_ABSENT], 32);
    for (int s = FS_BOOT; s < FS_STATE_COUNT; s++)
        assert_int_equal(st.count[s], 0);
    assert_int_equal(st.allocs + st.frees + st.failed, 0);
    assert_int_equal(frame_free_count(), 0);
    for (mfn_t m = 0; m < 32; m++) {
        assert_int_equal(frame_get(m)->state, FS_ABSENT);
        assert_int_equal(frame_get(m)->next, FRAME_NONE);
        assert_int_equal(frame_get(m)->prev, FRAME_NONE);
    }
    /* Nothing given to the allocator: nothing to hand out. */
    assert_int_equal(frame_alloc(FS_HV, 0), MFN_INVALID);
    assert_int_equal(stats().failed, 1);

    /* Re-initialising starts from scratch. */
    backend_frames(16, 0, 16);
    assert_int_equal(frame_alloc(FS_HV, 0), 0);
    backend_frames(16, 0, 8);
    st = stats();
    assert_int_equal(st.allocs, 0);
    assert_int_equal(st.count[FS_FREE], 8);
    assert_int_equal(st.count[FS_ABSENT], 8);
    check_stats();
}

static void test_state_names(void **state)
{
    assert_string_equal(frame_state_name(FS_ABSENT), "absent");
    assert_string_equal(frame_state_name(FS_FREE), "free");
    assert_string_equal(frame_state_name(FS_PAGETABLE), "pt");
    assert_string_equal(frame_state_name(FS_POOL), "pool");
    assert_string_equal(frame_state_name(FS_STATE_COUNT), "?");
    assert_string_equal(frame_state_name((enum frame_state)-1), "?");
}

/* ---- single frames ------------------------------------------------------- */

/* Frames 8..71 free, 0..7 and 72..79 never given: every free frame comes out
 * exactly once, zeroed, in the asked state; then the allocator is empty. */
static void test_alloc_until_empty(void **state)
{
    backend_frames(80, 8, 64);
    mfn_t got[80];
    bool seen[80] = { false };
    uint64_t n = alloc_all(got, 80, FS_VM, 3);
    assert_int_equal(n, 64);
    for (uint64_t i = 0; i < n; i++) {
        mfn_t m = got[i];
        assert_in_range(m, 8, 71);
        assert_false(seen[m]);
        seen[m] = true;
        const struct frame *f = frame_get(m);
        assert_int_equal(f->state, FS_VM);
        assert_int_equal(f->owner, 3);
        assert_int_equal(f->refcount, 1);
        assert_int_equal(f->gfn, 0);
        assert_true(page_is_zero(m));
    }
    assert_int_equal(frame_free_count(), 0);
    struct frame_stats st = stats();
    assert_int_equal(st.allocs, 64);
    assert_int_equal(st.failed, 1); /* the call that ended the loop */
    assert_int_equal(st.count[FS_VM], 64);
    assert_int_equal(st.count[FS_ABSENT], 16);

    /* Empty stays empty, and every failure is counted. */
    assert_int_equal(frame_alloc(FS_HV, 0), MFN_INVALID);
    assert_int_equal(frame_alloc(FS_POOL, 0), MFN_INVALID);
    assert_int_equal(stats().failed, 3);
    assert_int_equal(stats().allocs, 64);
    check_stats();
}

/* The allocator hands out low frames first (frame_add_free's promise). */
static void test_low_frames_first(void **state)
{
    backend_frames(16, 4, 8);
    for (mfn_t want = 4; want < 12; want++)
        assert_int_equal(frame_alloc(FS_HV, 0), want);
}

/* Dirty every frame, free them all, take them all again: all zero. */
static void test_zeroed_after_reuse(void **state)
{
    backend_frames(48, 0, 48);
    mfn_t got[48];
    assert_int_equal(alloc_all(got, 48, FS_HV, 0), 48);
    for (int i = 0; i < 48; i++)
        memset(backend_frame(got[i]), 0x5a ^ i, PAGE_SIZE);
    for (int i = 0; i < 48; i++)
        frame_free(got[i]);
    assert_int_equal(frame_free_count(), 48);
    assert_int_equal(stats().frees, 48);
    assert_int_equal(alloc_all(got, 48, FS_SHARED, 0), 48);
    for (int i = 0; i < 48; i++) {
        assert_true(page_is_zero(got[i]));
        assert_int_equal(frame_get(got[i])->state, FS_SHARED);
    }
    check_stats();
}

/* A freed frame is FREE again with owner/refcount/gfn cleared, and is what
 * the next allocation gets when it is the only free one. */
static void test_free_and_reuse(void **state)
{
    backend_frames(32, 0, 32);
    mfn_t got[32];
    assert_int_equal(alloc_all(got, 32, FS_VM, 9), 32);
    frame_get(got[20])->gfn = 0x1234;

    frame_free(got[20]);
    const struct frame *f = frame_get(got[20]);
    assert_int_equal(f->state, FS_FREE);
    assert_int_equal(f->owner, 0);
    assert_int_equal(f->refcount, 0);
    assert_int_equal(f->gfn, 0);
    assert_int_equal(frame_free_count(), 1);
    assert_int_equal(frame_alloc(FS_HV, 0), got[20]);
    assert_int_equal(frame_alloc(FS_HV, 0), MFN_INVALID);

    /* Three freed, three taken back: the same set. */
    frame_free(got[3]);
    frame_free(got[30]);
    frame_free(got[11]);
    bool back[32] = { false };
    for (int i = 0; i < 3; i++) {
        mfn_t m = frame_alloc(FS_POOL, 0);
        assert_true(m == got[3] || m == got[30] || m == got[11]);
        assert_false(back[m]);
        back[m] = true;
    }
    assert_int_equal(frame_alloc(FS_HV, 0), MFN_INVALID);
    check_stats();
}

/* ---- contiguous ranges --------------------------------------------------- */

/* Calls frame_alloc_contig and checks the result: aligned, in range, every
 * frame FREE before the call and now in state s, zeroed. */
static mfn_t contig_ok(uint64_t count, uint64_t align, enum frame_state s)
{
    uint64_t n = backend_nframes();
    uint8_t *before = malloc(n);
    assert_non_null(before);
    for (mfn_t m = 0; m < n; m++)
        before[m] = frame_get(m)->state;
    uint64_t free0 = frame_free_count();

    mfn_t c = frame_alloc_contig(count, align, s, 5);
    if (c == MFN_INVALID)
        fail_msg("frame_alloc_contig(%llu, %llu) failed with %llu free",
                 (unsigned long long)count, (unsigned long long)align,
                 (unsigned long long)free0);
    assert_int_equal(c % align, 0);
    assert_true(c + count <= n);
    for (mfn_t m = c; m < c + count; m++) {
        assert_int_equal(before[m], FS_FREE);
        assert_int_equal(frame_get(m)->state, s);
        assert_int_equal(frame_get(m)->owner, 5);
        assert_true(page_is_zero(m));
    }
    /* Nothing outside the run changed state. */
    for (mfn_t m = 0; m < n; m++)
        if (m < c || m >= c + count)
            assert_int_equal(frame_get(m)->state, before[m]);
    assert_int_equal(frame_free_count(), free0 - count);
    free(before);
    check_stats();
    return c;
}

static void contig_fails(uint64_t count, uint64_t align)
{
    struct frame_stats st0 = stats();
    mfn_t c = frame_alloc_contig(count, align, FS_HV, 0);
    if (c != MFN_INVALID)
        fail_msg("frame_alloc_contig(%llu, %llu) gave %#llx, expected failure",
                 (unsigned long long)count, (unsigned long long)align,
                 (unsigned long long)c);
    struct frame_stats st1 = stats();
    assert_int_equal(st1.failed, st0.failed + 1);
    assert_int_equal(st1.allocs, st0.allocs);
    assert_memory_equal(st1.count, st0.count, sizeof(st0.count));
}

static void test_contig_aligned(void **state)
{
    backend_frames(1024, 1, 1023); /* frame 0 absent */
    mfn_t a = contig_ok(16, 16, FS_HV);
    mfn_t b = contig_ok(3, 1, FS_PAGETABLE);
    assert_true(b + 3 <= a || b >= a + 16);
    mfn_t c = contig_ok(1, 512, FS_HV);
    assert_int_equal(c, 512); /* 0 is absent: 512 is the only choice */
    /* 512 frames on a 512 boundary: only 512..1023 could do, 512 is taken. */
    contig_fails(512, 512);
    frame_free(c);
    assert_int_equal(contig_ok(512, 512, FS_VM), 512);
    contig_fails(1, 512);
    /* Freeing a contiguous run gives every frame back. */
    uint64_t free0 = frame_free_count();
    frame_free_contig(512, 512);
    assert_int_equal(frame_free_count(), free0 + 512);
    frame_free_contig(a, 16);
    frame_free_contig(b, 3);
    assert_int_equal(frame_free_count(), 1023);
    check_stats();
}

/* Every other frame free: plenty of frames, no two adjacent. */
static void test_contig_fragmented(void **state)
{
    backend_frames(64, 0, 64);
    mfn_t got[64];
    assert_int_equal(alloc_all(got, 64, FS_HV, 0), 64);
    for (mfn_t m = 0; m < 64; m += 2)
        frame_free(m);
    assert_int_equal(frame_free_count(), 32);
    contig_fails(2, 1);
    contig_fails(2, 2);
    contig_fails(32, 1);
    mfn_t m = contig_ok(1, 2, FS_HV);
    assert_int_equal(m % 2, 0);
    /* Free 41 (and 40 if just taken): 40..42 is the only run of two or more. */
    if (m == 40)
        frame_free(40);
    frame_free(41);
    mfn_t pair = contig_ok(2, 1, FS_VM);
    assert_true(pair == 40 || pair == 41);
    contig_fails(2, 1); /* the one frame left of 40..42 is alone */
}

static void test_contig_bad_args(void **state)
{
    backend_frames(256, 0, 256);
    contig_fails(0, 1);    /* count 0 */
    contig_fails(1, 0);    /* align 0 */
    contig_fails(1, 3);    /* not a power of two */
    contig_fails(4, 6);
    contig_fails(4, 24);
    contig_fails(1, (1ULL << 63) + 1);
    contig_fails(257, 1);  /* more than is free */
    contig_fails(UINT64_MAX, 1);
    assert_int_equal(frame_free_count(), 256);
    /* A huge alignment no frame satisfies except 0. */
    assert_int_equal(contig_ok(1, 1ULL << 40, FS_HV), 0);
    contig_fails(1, 1ULL << 40);
    contig_fails(1, 1ULL << 63);
}

/* Runs never cross frames that were never given to the allocator. */
static void test_contig_skips_holes(void **state)
{
    backend_frames(40, 0, 10); /* 0..9 */
    frame_add_free(12, 20);    /* 12..31; 10, 11 and 32..39 stay ABSENT */
    mfn_t c = contig_ok(16, 1, FS_HV);
    assert_in_range(c, 12, 31 - 15);
    contig_fails(16, 1);
    contig_fails(11, 1);
    assert_int_equal(contig_ok(10, 1, FS_HV), 0);
    assert_int_equal(frame_free_count(), 4);
    for (mfn_t m = 10; m < 12; m++)
        assert_int_equal(frame_get(m)->state, FS_ABSENT);
    for (mfn_t m = 32; m < 40; m++)
        assert_int_equal(frame_get(m)->state, FS_ABSENT);
}

/* ---- ABSENT and BOOT frames ---------------------------------------------- */

/* Frames never given to the allocator never come out of it. */
static void test_absent_never_handed_out(void **state)
{
    backend_frames(100, 10, 10);
    frame_add_free(50, 10);
    frame_add_free(90, 10);
    mfn_t got[100];
    uint64_t n = alloc_all(got, 100, FS_HV, 0);
    assert_int_equal(n, 30);
    for (uint64_t i = 0; i < n; i++)
        assert_true((got[i] >= 10 && got[i] < 20) || (got[i] >= 50 && got[i] < 60) ||
                    got[i] >= 90);
    assert_int_equal(stats().count[FS_ABSENT], 70);
    check_stats();
}

/* Boot-services memory is marked BOOT first and reclaimed later. */
static void test_boot_reclaim(void **state)
{
    backend_frames(64, 32, 32);
    frame_mark(0, 8, FS_HV);
    frame_mark(8, 24, FS_BOOT);
    struct frame_stats st = stats();
    assert_int_equal(st.count[FS_HV], 8);
    assert_int_equal(st.count[FS_BOOT], 24);
    assert_int_equal(st.count[FS_FREE], 32);
    assert_int_equal(st.count[FS_ABSENT], 0);
    check_stats();

    mfn_t got[64];
    uint64_t n = alloc_all(got, 64, FS_VM, 1);
    assert_int_equal(n, 32);
    for (uint64_t i = 0; i < n; i++)
        assert_in_range(got[i], 32, 63);

    /* Reclaim: the BOOT frames become allocatable, the HV ones do not. */
    frame_add_free(8, 24);
    st = stats();
    assert_int_equal(st.count[FS_BOOT], 0);
    assert_int_equal(st.count[FS_FREE], 24);
    n = alloc_all(got, 64, FS_VM, 1);
    assert_int_equal(n, 24);
    for (uint64_t i = 0; i < n; i++) {
        assert_in_range(got[i], 8, 31);
        assert_true(page_is_zero(got[i]));
    }
    for (mfn_t m = 0; m < 8; m++)
        assert_int_equal(frame_get(m)->state, FS_HV);
    check_stats();
}

/* ---- hypervisor bugs panic ------------------------------------------------ */

static void test_double_free_panics(void **state)
{
    backend_frames(16, 0, 16);
    mfn_t m = frame_alloc(FS_HV, 0);
    frame_free(m);
    uint64_t free1 = frame_free_count();
    EXPECT_PANIC(frame_free(m));
    assert_non_null(strstr(backend_panic_msg(), "not allocated"));
    assert_int_equal(frame_free_count(), free1); /* not pushed twice */
    check_stats();
}

static void test_free_of_unallocated_panics(void **state)
{
    backend_frames(16, 4, 8);
    frame_mark(0, 2, FS_BOOT);
    EXPECT_PANIC(frame_free(15)); /* ABSENT */
    EXPECT_PANIC(frame_free(1));  /* BOOT */
    EXPECT_PANIC(frame_free(4));  /* FREE */
    EXPECT_PANIC(frame_free(16)); /* past the table */
    EXPECT_PANIC(frame_free(MFN_INVALID));
    EXPECT_PANIC(frame_get(16));
    check_stats();
}

static void test_mark_and_add_misuse_panics(void **state)
{
    backend_frames(16, 8, 8); /* 0..7 ABSENT, 8..15 FREE */
    EXPECT_PANIC(frame_mark(0, 1, FS_FREE));     /* FREE only via add_free */
    EXPECT_PANIC(frame_mark(15, 1, FS_HV));      /* a FREE frame */
    EXPECT_PANIC(frame_mark(0, 17, FS_HV));      /* past the table */
    EXPECT_PANIC(frame_mark(2, UINT64_MAX, FS_HV)); /* wraps around */
    frame_mark(0, 2, FS_HV);
    EXPECT_PANIC(frame_add_free(15, 1));         /* already FREE */
    EXPECT_PANIC(frame_add_free(1, 1));          /* HV is not reclaimable */
    EXPECT_PANIC(frame_add_free(4, 13));         /* past the table */
    EXPECT_PANIC(frame_add_free(2, UINT64_MAX)); /* wraps around */
    EXPECT_PANIC(frame_alloc(FS_FREE, 0));
    EXPECT_PANIC(frame_alloc(FS_ABSENT, 0));
    EXPECT_PANIC(frame_alloc(FS_BOOT, 0));
    EXPECT_PANIC(frame_alloc_contig(1, 1, FS_FREE, 0));
    assert_int_equal(frame_free_count(), 8);
    check_stats();
}

/* ---- consistency under random use ---------------------------------------- */

static uint64_t rng;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Random allocs, contiguous allocs and frees against a model of who owns
 * what: no frame is handed out twice, counters match, stats stay exact. */
static void test_random_consistency(void **state)
{
    enum { N = 512 };
    backend_frames(N, 0, N);
    static bool owned[N];
    memset(owned, 0, sizeof(owned));
    uint64_t nowned = 0, allocs = 0, frees = 0;
    rng = 0x0123456789abcdefULL;
    for (int step = 0; step < 20000; step++) {
        uint64_t r = next_rand() % 10;
        if (r < 4) {
            mfn_t m = frame_alloc(FS_VM, 1);
            if (nowned == N) {
                assert_int_equal(m, MFN_INVALID);
                continue;
            }
            assert_true(m < N);
            assert_false(owned[m]);
            owned[m] = true;
            nowned++;
            allocs++;
        } else if (r < 5) {
            uint64_t count = 1 + next_rand() % 8, align = 1ULL << (next_rand() % 4);
            mfn_t c = frame_alloc_contig(count, align, FS_HV, 0);
            if (c == MFN_INVALID)
                continue;
            assert_int_equal(c % align, 0);
            for (mfn_t m = c; m < c + count; m++) {
                assert_false(owned[m]);
                owned[m] = true;
            }
            nowned += count;
            allocs += count;
        } else if (nowned) {
            mfn_t m = next_rand() % N;
            while (!owned[m])
                m = (m + 1) % N;
            frame_free(m);
            owned[m] = false;
            nowned--;
            frees++;
        }
        assert_int_equal(frame_free_count(), N - nowned);
        if (step % 500 == 0)
            check_stats();
    }
    struct frame_stats st = stats();
    assert_int_equal(st.allocs, allocs);
    assert_int_equal(st.frees, frees);
    for (mfn_t m = 0; m < N; m++)
        assert_int_equal(frame_get(m)->state == FS_FREE, !owned[m]);
    check_stats();
}

/* ---- frame_selftest ----------------------------------------------------- */

static void test_selftest_passes(void **state)
{
    backend_frames(300, 4, 290);
    /* Frames in use before the self-test must keep their state and data. */
    mfn_t keep[10];
    for (int i = 0; i < 10; i++) {
        keep[i] = frame_alloc(FS_VM, 2);
        memset(backend_frame(keep[i]), 0x60 + i, PAGE_SIZE);
    }
    struct frame_stats st0 = stats();
    uint8_t states[300];
    for (mfn_t m = 0; m < 300; m++)
        states[m] = frame_get(m)->state;

    backend_log_clear();
    assert_int_equal(frame_selftest(), 0);
    assert_non_null(strstr(backend_log(), "frame self-test: PASS"));

    struct frame_stats st1 = stats();
    assert_int_equal(frame_free_count(), 280);
    assert_memory_equal(st1.count, st0.count, sizeof(st0.count));
    for (mfn_t m = 0; m < 300; m++)
        assert_int_equal(frame_get(m)->state, states[m]);
    for (int i = 0; i < 10; i++) {
        const uint8_t *p = backend_frame(keep[i]);
        for (size_t j = 0; j < PAGE_SIZE; j++)
            assert_int_equal(p[j], 0x60 + i);
        assert_int_equal(frame_get(keep[i])->owner, 2);
    }
    /* And the allocator still works normally afterwards. */
    mfn_t got[300];
    assert_int_equal(alloc_all(got, 300, FS_HV, 0), 280);
    check_stats();
}

static void test_selftest_too_few_frames(void **state)
{
    backend_frames(64, 0, 40);
    backend_log_clear();
    assert_int_equal(frame_selftest(), -1);
    assert_non_null(strstr(backend_log(), "only 40 free frames"));
    assert_int_equal(frame_free_count(), 40);
    check_stats();
}

/* No 16-frame aligned run exists: the self-test fails and still leaves the
 * allocator as it found it. */
static void test_selftest_fragmented(void **state)
{
    backend_frames(128, 0, 0);
    for (mfn_t m = 0; m < 128; m += 16)
        frame_add_free(m, 15); /* frame m + 15 stays ABSENT */
    assert_int_equal(frame_free_count(), 120);
    backend_log_clear();
    assert_int_equal(frame_selftest(), -1);
    assert_non_null(strstr(backend_log(), "no 16-frame aligned run"));
    assert_int_equal(frame_free_count(), 120);
    for (mfn_t m = 0; m < 128; m++)
        assert_int_equal(frame_get(m)->state, (m % 16 == 15) ? FS_ABSENT : FS_FREE);
    check_stats();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_init, teardown),
        cmocka_unit_test_teardown(test_state_names, teardown),
        cmocka_unit_test_teardown(test_alloc_until_empty, teardown),
        cmocka_unit_test_teardown(test_low_frames_first, teardown),
        cmocka_unit_test_teardown(test_zeroed_after_reuse, teardown),
        cmocka_unit_test_teardown(test_free_and_reuse, teardown),
        cmocka_unit_test_teardown(test_contig_aligned, teardown),
        cmocka_unit_test_teardown(test_contig_fragmented, teardown),
        cmocka_unit_test_teardown(test_contig_bad_args, teardown),
        cmocka_unit_test_teardown(test_contig_skips_holes, teardown),
        cmocka_unit_test_teardown(test_absent_never_handed_out, teardown),
        cmocka_unit_test_teardown(test_boot_reclaim, teardown),
        cmocka_unit_test_teardown(test_double_free_panics, teardown),
        cmocka_unit_test_teardown(test_free_of_unallocated_panics, teardown),
        cmocka_unit_test_teardown(test_mark_and_add_misuse_panics, teardown),
        cmocka_unit_test_teardown(test_random_consistency, teardown),
        cmocka_unit_test_teardown(test_selftest_passes, teardown),
        cmocka_unit_test_teardown(test_selftest_too_few_frames, teardown),
        cmocka_unit_test_teardown(test_selftest_fragmented, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

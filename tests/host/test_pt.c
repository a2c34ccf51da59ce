/* arch/pt.c: the 4-level walker with the host format, over the arena. Leaf
 * entries may point anywhere (the walker never touches mapped memory); only
 * the tables themselves live in the arena. */
#include "tests/host/backend.h"

#include <stdio.h>
#include <string.h>

#include "arch/pt.h"

#define P (1ULL << 0)
#define RW (1ULL << 1)
#define US (1ULL << 2)
#define PS (1ULL << 7)
#define NX (1ULL << 63)

#define SZ_4K 0x1000ULL
#define SZ_2M 0x200000ULL
#define SZ_1G 0x40000000ULL
#define SZ_512G (1ULL << 39)

static const struct pt_fmt *const H = &pt_fmt_host;
static mfn_t root;

/* 256 frames, frame 0 never given out; the root table is allocated. */
static int setup(void **state)
{
    backend_frames(256, 1, 255);
    root = frame_alloc(FS_PAGETABLE, 0);
    assert_int_not_equal(root, MFN_INVALID);
    return 0;
}

static int teardown(void **state)
{
    backend_free();
    return 0;
}

static uint64_t pt_frames(void)
{
    struct frame_stats st;
    frame_get_stats(&st);
    return st.count[FS_PAGETABLE];
}

static uint64_t *table_of(uint64_t entry)
{
    return mm_phys_to_virt(entry & PT_ADDR_MASK);
}

/* Walks every table reachable from t (at level l) and checks that each is a
 * FS_PAGETABLE frame; returns how many tables there are, t included. */
static uint64_t walk_tables(uint64_t *t, int l)
{
    uint64_t n = 1;
    for (int i = 0; i < 512; i++) {
        uint64_t e = t[i];
        if (!(e & P) || l == PT_LEVEL_4K || (l <= PT_LEVEL_1G && (e & PS)))
            continue;
        assert_int_equal(e & ~PT_ADDR_MASK, H->table_flags);
        assert_int_equal(frame_get((e & PT_ADDR_MASK) >> PAGE_SHIFT)->state, FS_PAGETABLE);
        n += walk_tables(table_of(e), l - 1);
    }
    return n;
}

/* Every page-table frame is reachable from the root and vice versa. */
static void check_tables(void)
{
    assert_int_equal(frame_get(root)->state, FS_PAGETABLE);
    assert_int_equal(walk_tables(backend_frame(root), PT_LEVELS), pt_frames());
}

static int nonzero_entries(const uint64_t *t)
{
    int n = 0;
    for (int i = 0; i < 512; i++)
        n += t[i] != 0;
    return n;
}

/* ---- mapping ------------------------------------------------------------ */

/* A fresh root has nothing below it: every non-alloc lookup is NULL and
 * costs no frames. */
static void test_lookup_unmapped(void **state)
{
    uint64_t free0 = frame_free_count();
    assert_int_equal(nonzero_entries(backend_frame(root)), 0); /* root zeroed */
    static const uint64_t vas[] = { 0, 0x1000, 0x40000000, 0x7fffffffe000ULL,
                                    0xffff800000000000ULL };
    for (size_t i = 0; i < sizeof(vas) / sizeof(vas[0]); i++)
        for (int l = PT_LEVEL_4K; l <= PT_LEVEL_1G; l++)
            assert_null(pt_entry(H, root, vas[i], l, false));
    assert_int_equal(frame_free_count(), free0);

    /* With one 4K page mapped, its neighbours at each level are still
     * absent. */
    uint64_t va = 0x40000000 + 0x3000;
    assert_int_equal(pt_map(H, root, va, 0x9000, SZ_4K, P | RW, PT_LEVEL_4K), 0);
    free0 = frame_free_count();
    assert_null(pt_entry(H, root, va + SZ_2M, PT_LEVEL_4K, false));   /* no L1 */
    assert_null(pt_entry(H, root, va + SZ_1G, PT_LEVEL_4K, false));   /* no L2 */
    assert_null(pt_entry(H, root, va + SZ_512G, PT_LEVEL_4K, false)); /* no L3 */
    assert_null(pt_entry(H, root, va + SZ_1G, PT_LEVEL_2M, false));
    /* Same L1 table, entry not present: a pointer to a zero entry. */
    uint64_t *e = pt_entry(H, root, va + SZ_4K, PT_LEVEL_4K, false);
    assert_non_null(e);
    assert_int_equal(*e, 0);
    assert_int_equal(frame_free_count(), free0);
}

/* 4K mappings: each page translates to its own frame; tables are created
 * once per 2M / 1G / 512G region and are zeroed apart from what was mapped. */
static void test_map_4k_ranges(void **state)
{
    const uint64_t va = 0x1000000, pa = 0x5000000, size = 0x10000;
    assert_int_equal(pt_frames(), 1);
    assert_int_equal(pt_map(H, root, va, pa, size, P | RW, PT_LEVEL_4K), 0);
    for (uint64_t off = 0; off < size; off += SZ_4K) {
        uint64_t *e = pt_entry(H, root, va + off, PT_LEVEL_4K, false);
        assert_non_null(e);
        assert_int_equal(*e, (pa + off) | P | RW);
    }
    assert_int_equal(pt_frames(), 4); /* root, L3, L2, L1 */
    uint64_t *l1 = pt_entry(H, root, va, PT_LEVEL_4K, false) - ((va >> 12) & 511);
    assert_int_equal(nonzero_entries(l1), 16);
    assert_int_equal(nonzero_entries(backend_frame(root)), 1);
    uint64_t *e = pt_entry(H, root, va + size, PT_LEVEL_4K, false);
    assert_non_null(e);
    assert_int_equal(*e, 0); /* one past the range */

    /* Remapping a page changes its entry and nothing else. */
    assert_int_equal(pt_map(H, root, va + 0x2000, 0x123000, SZ_4K, P | US, PT_LEVEL_4K), 0);
    assert_int_equal(*pt_entry(H, root, va + 0x2000, PT_LEVEL_4K, false), 0x123000 | P | US);
    assert_int_equal(*pt_entry(H, root, va + 0x1000, PT_LEVEL_4K, false), (pa + 0x1000) | P | RW);
    assert_int_equal(pt_frames(), 4);

    /* Across a 2M boundary: one more L1 table. */
    uint64_t va2 = va + SZ_2M - 0x2000;
    assert_int_equal(pt_map(H, root, va2, 0x7000000, 0x4000, P | RW | NX, PT_LEVEL_4K), 0);
    assert_int_equal(pt_frames(), 5);
    for (uint64_t off = 0; off < 0x4000; off += SZ_4K)
        assert_int_equal(*pt_entry(H, root, va2 + off, PT_LEVEL_4K, false),
                         (0x7000000 + off) | P | RW | NX);
    /* Another 1G region: L2 + L1. Another 512G region: L3 + L2 + L1. */
    assert_int_equal(pt_map(H, root, 5 * SZ_1G, 0, SZ_4K, P, PT_LEVEL_4K), 0);
    assert_int_equal(pt_frames(), 7);
    assert_int_equal(pt_map(H, root, 3 * SZ_512G + SZ_4K, SZ_4K, SZ_4K, P, PT_LEVEL_4K), 0);
    assert_int_equal(pt_frames(), 10);
    assert_int_equal(*pt_entry(H, root, 3 * SZ_512G + SZ_4K, PT_LEVEL_4K, false), SZ_4K | P);
    check_tables();
}

/* 2M pages, then a 4K entry inside one: the 2M page is split into 512 4K
 * entries with the same translation and flags (PS dropped). */
static void test_split_2m(void **state)
{
    const uint64_t va = SZ_1G, pa = 0x80000000, flags = P | RW | US | NX;
    assert_int_equal(pt_map(H, root, va, pa, 2 * SZ_2M, flags, PT_LEVEL_2M), 0);
    uint64_t *e2 = pt_entry(H, root, va, PT_LEVEL_2M, false);
    uint64_t *e2b = pt_entry(H, root, va + SZ_2M, PT_LEVEL_2M, false);
    assert_non_null(e2);
    assert_non_null(e2b);
    assert_int_equal(*e2, pa | flags | PS);
    assert_int_equal(*e2b, (pa + SZ_2M) | flags | PS);
    assert_int_equal(pt_frames(), 3); /* root, L3, L2 */

    /* A lookup without alloc does not split. */
    uint64_t free0 = frame_free_count();
    assert_null(pt_entry(H, root, va + 0x5000, PT_LEVEL_4K, false));
    assert_int_equal(*e2, pa | flags | PS);
    assert_int_equal(frame_free_count(), free0);

    uint64_t *e1 = pt_entry(H, root, va + 0x5000, PT_LEVEL_4K, true);
    assert_non_null(e1);
    assert_int_equal(pt_frames(), 4);
    assert_int_equal(*e1, (pa + 0x5000) | flags);
    /* The 2M entry now points to a table... */
    assert_int_equal(*e2 & PS, 0);
    assert_int_equal(*e2 & ~PT_ADDR_MASK, H->table_flags);
    assert_int_equal(frame_get(*e2 >> PAGE_SHIFT)->state, FS_PAGETABLE);
    /* ...of 512 4K entries with the old translation. */
    uint64_t *t = table_of(*e2);
    assert_ptr_equal(e1, &t[5]);
    for (uint64_t i = 0; i < 512; i++)
        if (t[i] != ((pa + i * SZ_4K) | flags))
            fail_msg("entry %llu = %#llx, want %#llx", (unsigned long long)i,
                     (unsigned long long)t[i],
                     (unsigned long long)((pa + i * SZ_4K) | flags));
    /* The neighbouring 2M page is untouched. */
    assert_int_equal(*e2b, (pa + SZ_2M) | flags | PS);

    /* Asking again does not split again. */
    assert_ptr_equal(pt_entry(H, root, va + 0x5000, PT_LEVEL_4K, true), e1);
    assert_ptr_equal(pt_entry(H, root, va + 0x1ff000, PT_LEVEL_4K, true), &t[511]);
    assert_int_equal(pt_frames(), 4);

    /* Mapping one 4K page inside the second 2M page splits it too. */
    assert_int_equal(pt_map(H, root, va + SZ_2M + 0x7000, 0x9999000, SZ_4K, P, PT_LEVEL_4K), 0);
    assert_int_equal(pt_frames(), 5);
    assert_int_equal(*pt_entry(H, root, va + SZ_2M + 0x7000, PT_LEVEL_4K, false), 0x9999000 | P);
    assert_int_equal(*pt_entry(H, root, va + SZ_2M + 0x6000, PT_LEVEL_4K, false),
                     (pa + SZ_2M + 0x6000) | flags);
    check_tables();
}

/* A 1G page splits into 512 2M pages (PS kept), which split into 4K. */
static void test_split_1g(void **state)
{
    const uint64_t va = 2 * SZ_1G, pa = 7 * SZ_1G, flags = P | RW;
    assert_int_equal(pt_map(H, root, va, pa, SZ_1G, flags, PT_LEVEL_1G), 0);
    uint64_t *e3 = pt_entry(H, root, va, PT_LEVEL_1G, false);
    assert_int_equal(*e3, pa | flags | PS);
    assert_int_equal(pt_frames(), 2);

    uint64_t *e2 = pt_entry(H, root, va + 3 * SZ_2M, PT_LEVEL_2M, true);
    assert_non_null(e2);
    assert_int_equal(pt_frames(), 3);
    assert_int_equal(*e2, (pa + 3 * SZ_2M) | flags | PS);
    uint64_t *t2 = table_of(*e3);
    for (uint64_t i = 0; i < 512; i++)
        assert_int_equal(t2[i], (pa + i * SZ_2M) | flags | PS);

    uint64_t *e1 = pt_entry(H, root, va + 3 * SZ_2M + 0x4000, PT_LEVEL_4K, true);
    assert_non_null(e1);
    assert_int_equal(pt_frames(), 4);
    assert_int_equal(*e1, (pa + 3 * SZ_2M + 0x4000) | flags);
    assert_int_equal(t2[2], (pa + 2 * SZ_2M) | flags | PS);
    check_tables();
}

/* ---- running out of frames ------------------------------------------------ */

/* Takes every free frame but keep; returns how many were taken. */
static uint64_t exhaust(mfn_t *held, uint64_t max, uint64_t keep)
{
    uint64_t n = 0;
    while (frame_free_count() > keep) {
        assert_true(n < max);
        held[n++] = frame_alloc(FS_HV, 0);
    }
    return n;
}

static void test_out_of_frames(void **state)
{
    static mfn_t held[256];
    const uint64_t va = 0x200000000ULL;
    /* A 4K page in an empty 512G region needs three tables; two are left. */
    uint64_t n = exhaust(held, 256, 2);
    struct frame_stats st0;
    frame_get_stats(&st0);
    assert_int_equal(pt_map(H, root, va, 0x1000, SZ_4K, P, PT_LEVEL_4K), -1);
    assert_int_equal(frame_free_count(), 0);
    struct frame_stats st1;
    frame_get_stats(&st1);
    assert_int_equal(st1.failed, st0.failed + 1);
    assert_null(pt_entry(H, root, va, PT_LEVEL_4K, false));
    check_tables(); /* the two tables made are linked, not leaked */

    /* With one frame more the same call completes. */
    frame_free(held[--n]);
    assert_int_equal(pt_map(H, root, va, 0x1000, SZ_4K, P, PT_LEVEL_4K), 0);
    assert_int_equal(*pt_entry(H, root, va, PT_LEVEL_4K, false), 0x1000 | P);

    /* Empty allocator: a 4K range inside existing tables still maps... */
    assert_int_equal(frame_free_count(), 0);
    assert_int_equal(pt_map(H, root, va + SZ_4K, 0x2000, 0x3000, P, PT_LEVEL_4K), 0);
    /* ...a new region does not. */
    assert_int_equal(pt_map(H, root, va + SZ_2M, 0x2000, SZ_4K, P, PT_LEVEL_4K), -1);
    assert_int_equal(pt_map(H, root, va + SZ_1G, 0, SZ_2M, P, PT_LEVEL_2M), -1);
    check_tables();
    while (n)
        frame_free(held[--n]);
}

/* A split that cannot get a frame fails and leaves the large page as it
 * was. */
static void test_split_out_of_frames(void **state)
{
    static mfn_t held[256];
    const uint64_t va = 0x40000000, pa = 0x10000000;
    assert_int_equal(pt_map(H, root, va, pa, SZ_2M, P | RW, PT_LEVEL_2M), 0);
    uint64_t *e2 = pt_entry(H, root, va, PT_LEVEL_2M, false);
    uint64_t n = exhaust(held, 256, 0);
    assert_null(pt_entry(H, root, va + 0x3000, PT_LEVEL_4K, true));
    assert_int_equal(*e2, pa | P | RW | PS);
    assert_int_equal(pt_map(H, root, va + 0x3000, 0, SZ_4K, P, PT_LEVEL_4K), -1);
    assert_int_equal(*e2, pa | P | RW | PS);
    check_tables();

    frame_free(held[--n]);
    uint64_t *e1 = pt_entry(H, root, va + 0x3000, PT_LEVEL_4K, true);
    assert_non_null(e1);
    assert_int_equal(*e1, (pa + 0x3000) | P | RW);
    check_tables();
}

/* ---- tables, misuse, dump ----------------------------------------------- */

/* Every table frame is FS_PAGETABLE, zeroed except for what was mapped
 * (the arena's garbage would otherwise show up as present entries). */
static void test_table_frames(void **state)
{
    const uint64_t va = 0x7f0000201000ULL;
    assert_int_equal(pt_map(H, root, va, 0xabc000, SZ_4K, P | RW, PT_LEVEL_4K), 0);
    uint64_t *t = backend_frame(root);
    for (int l = PT_LEVELS; l >= PT_LEVEL_4K; l--) {
        assert_int_equal(nonzero_entries(t), 1);
        uint64_t e = t[(va >> (12 + 9 * (l - 1))) & 511];
        assert_true(e & P);
        if (l == PT_LEVEL_4K) {
            assert_int_equal(e, 0xabc000 | P | RW);
            break;
        }
        assert_int_equal(frame_get(e >> PAGE_SHIFT)->state, FS_PAGETABLE);
        assert_int_equal(frame_get(e >> PAGE_SHIFT)->refcount, 1);
        t = table_of(e);
    }
    assert_int_equal(pt_frames(), 4);
    check_tables();
}

static void test_misuse_panics(void **state)
{
    /* Unaligned addresses or size, unsupported levels. */
    EXPECT_PANIC(pt_map(H, root, 0x1001, 0, SZ_4K, P, PT_LEVEL_4K));
    EXPECT_PANIC(pt_map(H, root, 0, 0x1001, SZ_4K, P, PT_LEVEL_4K));
    EXPECT_PANIC(pt_map(H, root, 0, 0, 0x800, P, PT_LEVEL_4K));
    EXPECT_PANIC(pt_map(H, root, SZ_4K, 0, SZ_2M, P, PT_LEVEL_2M));
    EXPECT_PANIC(pt_map(H, root, 0, 0, SZ_512G, P, 4));
    EXPECT_PANIC(pt_map(H, root, 0, 0, SZ_4K, P, 0));
    /* A large page over an existing table would leak the table. */
    assert_int_equal(pt_map(H, root, SZ_1G, 0, SZ_4K, P, PT_LEVEL_4K), 0);
    EXPECT_PANIC(pt_map(H, root, SZ_1G, 0, SZ_2M, P, PT_LEVEL_2M));
    EXPECT_PANIC(pt_map(H, root, SZ_1G, 0, SZ_1G, P, PT_LEVEL_1G));
    check_tables();
}

static void test_dump_walk(void **state)
{
    const uint64_t va = 0x40003000;
    assert_int_equal(pt_map(H, root, va, 0x5555000, SZ_4K, P | RW, PT_LEVEL_4K), 0);
    char want[128];

    backend_log_clear();
    pt_dump_walk(H, root, va);
    snprintf(want, sizeof(want), "host walk of 0x40003000 (root %#llx):\n",
             (unsigned long long)(root << PAGE_SHIFT));
    assert_non_null(strstr(backend_log(), want));
    assert_non_null(strstr(backend_log(), "  L4[  0] = "));
    assert_non_null(strstr(backend_log(), "  L3[  1] = "));
    assert_non_null(strstr(backend_log(), "  L2[  0] = "));
    assert_non_null(strstr(backend_log(), "  L1[  3] = 0000000005555003\n"));

    /* The walk stops at a large page and at a missing entry. */
    assert_int_equal(pt_map(H, root, 4 * SZ_1G, 0x200000, SZ_2M, P, PT_LEVEL_2M), 0);
    backend_log_clear();
    pt_dump_walk(H, root, 4 * SZ_1G);
    assert_non_null(strstr(backend_log(), "  L2[  0] = 0000000000200081\n"));
    assert_null(strstr(backend_log(), "L1["));
    backend_log_clear();
    pt_dump_walk(H, root, 3 * SZ_512G);
    assert_non_null(strstr(backend_log(), "  L4[  3] = 0000000000000000\n"));
    assert_null(strstr(backend_log(), "L3["));
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_lookup_unmapped),
        T(test_map_4k_ranges),
        T(test_split_2m),
        T(test_split_1g),
        T(test_out_of_frames),
        T(test_split_out_of_frames),
        T(test_table_frames),
        T(test_misuse_panics),
        T(test_dump_walk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

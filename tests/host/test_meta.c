/* The p2m's own cost: metadata and periodic work follow what a guest
 * touched, not what it was configured with, and metadata is charged to
 * the VM that made it.
 *  - a 1 TiB VM that touches a few thousand pages: its map and EPT tables,
 *    and the steps of a sweep and of a reclaim pass, stay proportional to
 *    the touched pages (and drop back when the pages go);
 *  - a guest that touches one byte per 2 MiB to grow EPT tables and map
 *    chunks instead of pages stays within its limit plus the overhead
 *    allowance, and a second VM without a reservation still gets frames. */
#include "tests/host/backend.h"

#include <stdio.h>
#include <string.h>

#include "mm/ept.h"
#include "mm/mm.h"
#include "mm/p2m.h"

#define FRAMES 24576 /* 96 MiB of host memory standing in for the machine */

static struct p2m a, b;

static int setup(void **state)
{
    (void)state;
    backend_frames(FRAMES, 1, FRAMES - 1);
    mm_set_watermark(64);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
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

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A 1 TiB VM (2^28 GFNs) on a 96 MiB machine. */
static void test_terabyte_vm_costs_what_it_touches(void **state)
{
    (void)state;
    const uint64_t ngfn = 1ULL << 28, touches = 3000;
    uint64_t free0 = frame_free_count();
    assert_int_equal(p2m_init(&a, 1, "tera", ngfn, 0, 0, true), 0);
    assert_int_equal(mm_register(&a), 0);
    /* Before the guest runs: the top of the map (8 bytes per 512 MiB) and
     * the EPT root. The flat map this replaced took 4 GiB here. */
    printf("    1 TiB VM at creation: %llu metadata frames (%llu of them the map's top)\n",
           (unsigned long long)a.meta, (unsigned long long)a.map_frames);
    assert_true(a.meta <= 5);
    assert_int_equal(free0 - frame_free_count(), a.meta);

    uint64_t seed = 0x9e3779b97f4a7c15ULL, gfns[3000];
    for (uint64_t i = 0; i < touches; i++) {
        gfns[i] = rnd(&seed) % ngfn;
        assert_int_equal(p2m_fault(&a, gfns[i] * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
        ((uint8_t *)backend_frame(p2m_peek(&a, gfns[i])->payload))[0] = 1; /* not zero */
    }
    uint64_t resident = a.count[P2M_RESIDENT];
    /* Scattered pages each need their own chunk and leaf table, and at
     * most one directory, level-2 and level-3 table of their own: four
     * frames a page at worst, whatever the configured size. */
    printf("    after %llu scattered touches: %llu resident, metadata %llu frames (%llu map "
           "directories, %llu chunks, %llu EPT tables)\n",
           (unsigned long long)touches, (unsigned long long)resident,
           (unsigned long long)a.meta, (unsigned long long)a.st.map_dirs,
           (unsigned long long)a.st.map_chunks, (unsigned long long)a.st.ept_tables);
    assert_true(a.meta <= 5 + 5 * resident);
    assert_int_equal(p2m_check(&a), 0);

    /* A sweep round in bounded steps: each visits at most its budget of
     * entries; a round visits the touched chunks only. */
    uint64_t steps = 0;
    while (!p2m_sweep_step(&a, P2M_SWEEP_STEP))
        steps++;
    steps++;
    printf("    a sweep round: %llu steps of at most %u entries, %llu entries visited\n",
           (unsigned long long)steps, P2M_SWEEP_STEP, (unsigned long long)a.st.sweep_visited);
    assert_true(a.st.sweep_visited <= a.st.map_chunks * P2M_CHUNK_ENTRIES);
    assert_true(steps <= (a.st.map_chunks * P2M_CHUNK_ENTRIES + a.map_top * P2M_DIR_CHUNKS) /
                             P2M_SWEEP_STEP + 2);
    assert_int_equal(a.st.last_accessed, 0); /* the model's EPT sets no A bits */

    /* A reclaim pass is bounded by its scan budget, not by the VM's size:
     * every page is zero now, so each one visited goes. */
    for (uint64_t i = 0; i < touches; i++)
        ((uint8_t *)backend_frame(p2m_peek(&a, gfns[i])->payload))[0] = 0;
    uint64_t freed = p2m_reclaim(&a, 1000000, 4096);
    printf("    reclaim with a budget of 4096 steps: %llu pages freed\n",
           (unsigned long long)freed);
    assert_true(freed > 0 && freed <= 4096);
    /* Until everything is gone; then the metadata shrinks back. */
    for (int k = 0; k < 64 && a.count[P2M_RESIDENT]; k++)
        p2m_reclaim(&a, 1000000, 1ULL << 20);
    assert_int_equal(a.count[P2M_RESIDENT], 0);
    p2m_sweep(&a); /* trims what reclaim left */
    printf("    all pages reclaimed: metadata back to %llu frames\n", (unsigned long long)a.meta);
    assert_int_equal(a.st.map_chunks, 0);
    assert_int_equal(a.st.ept_tables, 0);
    assert_true(a.meta <= 5);
    assert_int_equal(p2m_check(&a), 0);
    mm_unregister(&a);
    p2m_destroy(&a);
    assert_int_equal(frame_free_count(), free0);
}

/* One byte per 2 MiB: every touch costs a page, a leaf table and a map
 * chunk. With a limit of 512 frames the VM may never hold more than its
 * limit plus the allowance; a VM without reservation behind it still
 * gets the frames it asks for. */
static void test_sparse_toucher_stays_within_its_limit(void **state)
{
    (void)state;
    const uint64_t limit = 512, ngfn = 1ULL << 22; /* 16 GiB configured */
    assert_int_equal(p2m_init(&a, 1, "sparse", ngfn, 0, limit, true), 0);
    assert_int_equal(mm_register(&a), 0);
    assert_int_equal(p2m_init(&b, 2, "other", 8192, 0, 0, true), 0);
    assert_int_equal(mm_register(&b), 0);
    uint64_t cap = limit + P2M_OVERHEAD_ALLOWANCE(limit), peak = 0, ok = 0, waits = 0;
    for (uint64_t g = 0; g < ngfn; g += 512) {
        enum p2m_result r = p2m_fault(&a, g * PAGE_SIZE, P2M_ACCESS_W);
        if (r == P2M_OK) {
            ((uint8_t *)backend_frame(p2m_peek(&a, g)->payload))[100] = 0xa5;
            ok++;
        } else {
            assert_int_equal(r, P2M_WAIT);
            waits++;
        }
        if (p2m_charge(&a) > peak)
            peak = p2m_charge(&a);
        assert_true(p2m_charge(&a) <= cap);
    }
    printf("    %llu touches one per 2 MiB: %llu mapped, %llu waited; charge peaked at %llu "
           "frames (limit %llu + allowance %llu), metadata %llu\n",
           (unsigned long long)(ngfn / 512), (unsigned long long)ok,
           (unsigned long long)waits, (unsigned long long)peak, (unsigned long long)limit,
           (unsigned long long)P2M_OVERHEAD_ALLOWANCE(limit), (unsigned long long)a.meta);
    assert_true(waits > 0);
    assert_int_equal(p2m_check(&a), 0);
    /* The other VM, no reservation: every page it asks for. */
    for (uint64_t g = 0; g < 8192; g++) {
        assert_int_equal(p2m_fault(&b, g * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
        ((uint8_t *)backend_frame(p2m_peek(&b, g)->payload))[0] = 1;
    }
    assert_int_equal(b.st.waits, 0);
    assert_int_equal(p2m_check(&b), 0);
}

/* Admission counts the metadata a reservation needs: a VM reserving all
 * but a few frames of the machine is refused, and one that fits keeps its
 * pages (and their metadata) against a greedy neighbour. */
static void test_reservation_covers_metadata(void **state)
{
    (void)state;
    uint64_t free0 = frame_free_count();
    assert_int_equal(p2m_init(&a, 1, "resv", 1ULL << 20, free0 - 80, 0, true), 0);
    assert_int_equal(mm_register(&a), -1);
    p2m_destroy(&a);
    assert_int_equal(p2m_init(&a, 1, "resv", 1ULL << 20, 4096, 0, true), 0);
    assert_int_equal(mm_register(&a), 0);
    assert_int_equal(p2m_init(&b, 2, "greedy", 1ULL << 20, 0, 0, true), 0);
    assert_int_equal(mm_register(&b), 0);
    for (uint64_t g = 0; g < (1ULL << 20); g += 3) {
        if (p2m_fault(&b, g * PAGE_SIZE, P2M_ACCESS_W) != P2M_OK)
            break;
        ((uint8_t *)backend_frame(p2m_peek(&b, g)->payload))[0] = 1;
    }
    assert_true(b.st.waits > 0);
    /* a's 4096 pages, in 16 runs of 256: their metadata is within the
     * reservation's allowance. */
    for (uint64_t i = 0; i < 4096; i++) {
        uint64_t g = (i / 256) * 65536 + i % 256;
        assert_int_equal(p2m_fault(&a, g * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
        ((uint8_t *)backend_frame(p2m_peek(&a, g)->payload))[0] = 1;
    }
    assert_int_equal(a.st.waits, 0);
    assert_int_equal(p2m_check(&a), 0);
    assert_int_equal(p2m_check(&b), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_terabyte_vm_costs_what_it_touches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sparse_toucher_stays_within_its_limit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reservation_covers_metadata, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

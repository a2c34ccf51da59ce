/* Regression: a compressed page brought back (a guest fault, or the
 * hypervisor's p2m_gfn_ptr) by a VM at its limit. make_resident asks
 * mm_frame_for for a frame, and the reclaim that runs there used to write
 * that very page's pool object back to swap (COMPRESSED -> SWAPPED);
 * make_resident then mapped a zero page, the content lost and its swap
 * slots leaked. Found by tests/sim/fuzz_hc.c; p2m->busy_gfn now keeps
 * reclaim's hands off the page being faulted in. */
#include "tests/host/backend.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/blk.h"
#include "mm/mm.h"
#include "mm/p2m.h"
#include "mm/swap.h"
#include "mm/zpool.h"

#define FRAMES 2048
#define NGFN 64
#define PG 4096u

static struct p2m vm;
static uint8_t *disk;
static struct blkdev dev;
static uint8_t expect[NGFN][PG];

static int md_rw(struct blkdev *d, bool write, uint64_t lba, uint32_t count, void *buf)
{
    uint64_t off = lba * d->sector_size, len = (uint64_t)count * d->sector_size;
    if (write)
        memcpy(disk + off, buf, len);
    else
        memcpy(buf, disk + off, len);
    return BLK_OK;
}

static const struct blk_ops md_ops = { .rw = md_rw };

static int setup(void **state)
{
    (void)state;
    backend_frames(FRAMES, 1, FRAMES - 1);
    mm_set_watermark(4);
    memset(&vm, 0, sizeof(vm));
    memset(&dev, 0, sizeof(dev));
    snprintf(dev.name, sizeof(dev.name), "mem0");
    dev.kind = "memory";
    dev.sector_size = 512;
    dev.sectors = (4u << 20) / 512;
    dev.max_sectors = 64;
    dev.ops = &md_ops;
    disk = calloc(dev.sectors, 512);
    assert_non_null(disk);
    assert_int_equal(swap_attach(&dev, 0, dev.sectors, true), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (vm.map) {
        mm_unregister(&vm);
        p2m_destroy(&vm);
    }
    swap_detach();
    zpool_fini();
    backend_free();
    free(disk);
    return 0;
}

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* Log-like text: LZ4 brings it to a third or so. */
static void fill_log(uint8_t *p, uint64_t seed)
{
    static const char *const words[] = { "swap", "page", "slot", "frame",
                                         "guest", "pool", "batch", "clock" };
    uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 17;
    unsigned i = 0, line = 0;
    while (i < PG) {
        char tmp[128];
        uint64_t r = xorshift(&x);
        int n = snprintf(tmp, sizeof(tmp), "%llu.%03u: the %s keeps its data until the guest "
                         "needs it again\n", (unsigned long long)seed, ++line, words[r % 8]);
        for (int k = 0; k < n && i < PG; k++)
            p[i++] = (uint8_t)tmp[k];
    }
}

/* A VM at its limit over a small, full pool with swap. The page being
 * brought back is compressed, was passed by the clock hand once (age 1)
 * and is where the hand stands now: the reclaim that mm_frame_for runs to
 * make room writes its pool object back to swap. The page must still
 * come back with its content (from swap), and no swap slot may leak. */
static void run(bool fault)
{
    assert_int_equal(mm_pool_init(4, 2048, false), 0);
    assert_int_equal(p2m_init(&vm, 1, "r", NGFN, 0, 16, true), 0);
    assert_int_equal(mm_register(&vm), 0);
    for (uint64_t g = 0; g < NGFN; g++) {
        uint8_t *p = p2m_gfn_ptr(&vm, g, true);
        assert_non_null(p);
        fill_log(expect[g], g);
        memcpy(p, expect[g], PG);
    }
    assert_int_equal(vm.count[P2M_RESIDENT], 16); /* at the limit */
    uint64_t t = NGFN;
    for (uint64_t g = 0; g < NGFN && t == NGFN; g++)
        if (p2m_peek(&vm, g)->state == P2M_COMPRESSED)
            t = g;
    assert_true(t < NGFN);
    struct zpool_stats z;
    zpool_get_stats(&z);
    assert_true(z.frames * 16 >= z.cap_frames * 15); /* the pool is pressed */
    p2m_entry_rw(&vm, t)->age = 1;
    vm.hand = t;
    assert_int_equal(p2m_check(&vm), 0);
    uint64_t lz0 = vm.st.swap_out_lz4;
    uint8_t *p;
    if (fault) {
        assert_int_equal(p2m_fault(&vm, t << PAGE_SHIFT, P2M_ACCESS_R), P2M_OK);
        p = backend_frame(p2m_peek(&vm, t)->payload);
    } else {
        p = p2m_gfn_ptr(&vm, t, true);
        assert_non_null(p);
    }
    assert_true(vm.st.swap_out_lz4 > lz0); /* the write-back did run */
    assert_int_equal(p2m_peek(&vm, t)->state, P2M_RESIDENT);
    if (memcmp(p, expect[t], PG))
        fail_msg("gfn %llu came back with other content (%s)", (unsigned long long)t,
                 p[0] || memcmp(p, p + 1, PG - 1) ? "not zero" : "a zero page");
    assert_int_equal(p2m_check(&vm), 0);
    static uint8_t buf[PG];
    for (uint64_t g = 0; g < NGFN; g++) {
        assert_int_equal(p2m_read_page(&vm, g, buf), 0);
        assert_memory_equal(buf, expect[g], PG);
    }
    /* Every slot in use was named by a page: none left once it is gone. */
    mm_unregister(&vm);
    p2m_destroy(&vm);
    struct swap_stats s;
    swap_get_stats(&s);
    assert_int_equal(s.used, 0);
}

static void test_gfn_ptr_compressed_written_back(void **state)
{
    (void)state;
    run(false);
}

static void test_fault_compressed_written_back(void **state)
{
    (void)state;
    run(true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_gfn_ptr_compressed_written_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_compressed_written_back, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* See storage.h. */
#include "arch/storage.h"
#include "drivers/blk.h"
#include "lib/fmt.h"
#include "lib/log.h"
#include "lib/string.h"
#include "arch/tsc.h"
#include "mm/frame.h"
#include "mm/mm.h"
#include "mm/mm_backend.h"
#include "mm/swap.h"
#include "mm/zpool.h"

#define TEST_OWNER 0xfff0 /* frame owner of the self-test's p2m: no VM has it */
#define TEST_LIMIT 64     /* resident frames it may have */
#define TEST_POOL 24      /* pool frames, so that the pool fills and writes back */

/* Page content for the swap self-test: incompressible (xorshift) or, for
 * every fourth GFN in round 1, compressible text-like words; either names
 * its GFN and round so that a misplaced page is caught. */
static void pattern(uint64_t *w, uint64_t gfn, unsigned round)
{
    uint64_t x = gfn * 0x9e3779b97f4a7c15ULL ^ (uint64_t)round << 56 ^ 0x243f6a8885a308d3ULL;
    bool text = round == 1 && gfn % 4 == 0;
    for (int i = 0; i < 512; i++) {
        if (text && i % 4) {
            /* Three words in four repeat: LZ4 brings the page to ~1.2 KiB. */
            w[i] = 0x2065676170207773ULL + (gfn << 40) + (uint64_t)(i % 8);
            continue;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w[i] = x;
    }
}

struct swaptest {
    struct p2m p;
    uint64_t verified, lost, wrong, waits, pages;
    uint8_t lost_map[1024]; /* bit per GFN (only the first 8192 tracked) */
};

/* What the scheduler does for a waiting vCPU: a reclaim pass over every
 * page of every VM, and time (a write error's back-off) if that freed
 * nothing. */
static void wait_for_memory(struct swaptest *t)
{
    t->waits++;
    if (!mm_reclaim_for_waiters())
        tsc_delay_us(50000);
}

/* A populate that waits like a vCPU would: reclaim may be backing off
 * after a write error. Gives up after about 5 s. */
static uint64_t *page_for_write(struct swaptest *t, uint64_t gfn)
{
    for (int tries = 0; tries < 100; tries++) {
        uint64_t *w = p2m_gfn_ptr(&t->p, gfn, true);
        if (w)
            return w;
        wait_for_memory(t);
    }
    return NULL;
}

static bool is_lost(struct swaptest *t, uint64_t gfn)
{
    return gfn < 8192 && (t->lost_map[gfn / 8] >> (gfn % 8) & 1);
}

/* Brings every GFN back (reads for even GFNs keep their swap copy, writes
 * for odd ones free it) and compares it with what was written. A page
 * whose read fails is reported as lost (a VM would be stopped): it must
 * never come back with other data. */
static int verify_all(struct swaptest *t, unsigned round, uint64_t *buf, uint64_t *want)
{
    for (uint64_t gfn = 0; gfn < t->pages; gfn++) {
        if (is_lost(t, gfn))
            continue;
        enum p2m_result r = P2M_WAIT;
        for (int tries = 0; tries < 100 && r == P2M_WAIT; tries++) {
            r = p2m_fault(&t->p, gfn << PAGE_SHIFT, gfn & 1 ? P2M_ACCESS_W : P2M_ACCESS_R);
            if (r == P2M_WAIT)
                wait_for_memory(t);
        }
        if (r == P2M_CORRUPT) {
            t->lost++;
            if (gfn < 8192)
                t->lost_map[gfn / 8] |= (uint8_t)(1u << (gfn % 8));
            continue;
        }
        if (r != P2M_OK || p2m_read_page(&t->p, gfn, buf)) {
            pr_err(LS_MM, "swap self-test: gfn %#llx could not be brought back (%d)",
                   (unsigned long long)gfn, r);
            return -1;
        }
        /* Round 1 rewrote every fourth GFN; the others keep round 0's. */
        pattern(want, gfn, round == 1 && gfn % 4 == 0 ? 1 : 0);
        if (memcmp(buf, want, PAGE_SIZE)) {
            if (t->wrong++ < 4)
                pr_err(LS_MM, "swap self-test: gfn %#llx came back with wrong data",
                       (unsigned long long)gfn);
            continue;
        }
        t->verified++;
    }
    return 0;
}

/* The swap path as a VM uses it, without VMX: a p2m limited to a few
 * frames is filled with more pages than the swap space holds minus a
 * margin, so reclaim sends nearly the whole device out in batches; every
 * page is brought back and compared; then a quarter is rewritten with
 * compressible content while the pool is tiny, so the pool fills and its
 * coldest objects are written back compressed; and everything is checked
 * once more, with the p2m invariants after each phase. */
static int swap_path_test(uint64_t pages_on_device)
{
    static struct swaptest t;
    memset(&t, 0, sizeof(t));
    bool own_pool = !zpool_enabled();
    if (own_pool && mm_pool_init(TEST_POOL, 2048, true))
        own_pool = false;
    t.pages = pages_on_device + TEST_LIMIT - 32; /* room for two batches */
    if (p2m_init(&t.p, TEST_OWNER, "swaptest", t.pages, 0, TEST_LIMIT, false) ||
        mm_register(&t.p)) {
        pr_err(LS_MM, "swap self-test: no memory for its p2m");
        return 1;
    }
    mfn_t bm = frame_alloc_contig(2, 1, FS_HV, 0);
    if (bm == MFN_INVALID)
        return 1;
    uint64_t *buf = mm_phys_to_virt(bm << PAGE_SHIFT), *want = buf + 512;
    uint64_t t0 = mm_now();
    int failures = 0;
    t.p.compress = false; /* round 0: whole pages only */
    for (unsigned round = 0; round < 2 && !failures; round++) {
        if (round == 1)
            t.p.compress = zpool_enabled();
        for (uint64_t gfn = 0; gfn < t.pages; gfn++) {
            if (round == 1 && gfn % 4)
                continue;
            if (is_lost(&t, gfn))
                continue;
            uint64_t *w = page_for_write(&t, gfn);
            if (!w) {
                pr_err(LS_MM, "swap self-test: no frame for gfn %#llx after 5 s",
                       (unsigned long long)gfn);
                failures++;
                break;
            }
            pattern(w, gfn, round == 1 ? 1 : 0);
        }
        if (failures)
            break;
        /* Twice: the second pass finds the first one's pages swapped
         * again, clean copies dropped and written ones rewritten. */
        for (unsigned pass = 0; pass < 2 && !failures; pass++) {
            if (verify_all(&t, round, buf, want))
                failures++;
            uint64_t bad = p2m_check(&t.p);
            if (bad) {
                pr_err(LS_MM, "swap self-test: %llu p2m invariant violations",
                       (unsigned long long)bad);
                failures++;
            }
        }
    }
    uint64_t cycles = mm_now() - t0;
    mm_print_vm(&t.p);
    swap_print();
    struct swap_stats ss;
    swap_get_stats(&ss);
    if (t.wrong)
        failures++;
    if (failures)
        pr_err(LS_MM, "swap self-test: FAIL (%llu pages wrong, %d failures)",
               (unsigned long long)t.wrong, failures);
    else
        pr_info(LS_MM, "swap self-test: PASS: %llu pages over %llu GFNs verified, lost %llu "
                       "(read errors: a VM would be stopped), wrong 0; write errors %llu "
                       "(pages kept resident and retried), waits %llu; out %llu pages + %llu "
                       "LZ4 objects, in %llu + %llu, dropped clean %llu; %llu cycles",
                (unsigned long long)t.verified, (unsigned long long)t.pages,
                (unsigned long long)t.lost, (unsigned long long)ss.write_errors,
                (unsigned long long)t.waits, (unsigned long long)ss.out_pages,
                (unsigned long long)ss.out_lz4, (unsigned long long)ss.in_pages,
                (unsigned long long)ss.in_lz4, (unsigned long long)t.p.st.swap_dropped,
                (unsigned long long)cycles);
    mm_unregister(&t.p);
    p2m_destroy(&t.p);
    frame_free_contig(bm, 2);
    if (own_pool)
        zpool_fini();
    swap_get_stats(&ss);
    if (ss.used) {
        pr_err(LS_MM, "swap self-test: FAIL: %llu slots still in use after the p2m went",
               (unsigned long long)ss.used);
        failures++;
    }
    return failures;
}

/* Byte range [*first, *first + *count) in sectors of the swap space. */
static int swap_range(struct blkdev *d, const struct hv_config *cfg, uint64_t *first,
                      uint64_t *count)
{
    uint32_t ss = d->sector_size;
    uint64_t start = 0, len = d->sectors;
    if (cfg->swap_partition) {
        if (blk_mbr_partition(d, cfg->swap_partition, &start, &len))
            return -1;
    } else {
        if (cfg->swap_offset % ss) {
            pr_err(LS_MM, "swap: swap_offset is not a multiple of %s's %u-byte sectors",
                   d->name, ss);
            return -1;
        }
        start = cfg->swap_offset / ss;
        if (start >= d->sectors) {
            pr_err(LS_MM, "swap: swap_offset is beyond the end of %s", d->name);
            return -1;
        }
        len = d->sectors - start;
        if (cfg->swap_size) {
            if (cfg->swap_size / ss > len) {
                char a[16];
                pr_err(LS_MM, "swap: swap_size runs past the end of %s (%s from the offset)",
                       d->name, fmt_size(a, sizeof(a), len * ss));
                return -1;
            }
            len = cfg->swap_size / ss;
        }
    }
    *first = start;
    *count = len;
    return 0;
}

/* The cost of one 4 KiB request inside the driver (submit to completion,
 * as blk.c times it), 64 writes then 64 reads, against a 4 KiB memcpy
 * timed the same way in the same run. In Bochs the counter is emulated
 * instructions; under QEMU's TCG it is the host's time stamp counter, so
 * it includes the device model's work and is not an instruction count. */
static void io_cost(struct blkdev *d, uint64_t lba, uint64_t count, uint8_t *buf)
{
    const unsigned n = 64;
    uint64_t spp = PAGE_SIZE / d->sector_size;
    if (!spp || count < spp * n)
        return;
    struct blk_stats a = d->st;
    for (unsigned i = 0; i < n; i++)
        if (blk_write(d, lba + i * spp, spp, buf))
            return;
    struct blk_stats b = d->st;
    for (unsigned i = 0; i < n; i++)
        if (blk_read(d, lba + i * spp, spp, buf))
            return;
    struct blk_stats c = d->st;
    uint64_t t0 = mm_now();
    for (unsigned i = 0; i < n; i++) {
        memcpy(buf + PAGE_SIZE, buf, PAGE_SIZE);
        __asm__ volatile("" ::: "memory");
    }
    uint64_t copy = (mm_now() - t0) / n;
    pr_info(LS_DRV, "%s: 4 KiB I/O cost: write %llu cycles, read %llu cycles per request "
                    "(submit to completion inside the driver); baseline memcpy of 4 KiB %llu "
                    "cycles",
            d->name, (unsigned long long)((b.write_cycles - a.write_cycles) / n),
            (unsigned long long)((c.read_cycles - b.read_cycles) / n),
            (unsigned long long)copy);
}

int storage_setup(const struct hv_config *cfg)
{
    if (!cfg->swap_dev[0])
        return 0;
    struct blkdev *d = blk_find(cfg->swap_dev);
    if (!d) {
        char names[80] = "";
        size_t n = 0;
        for (int i = 0; i < blk_count() && n < sizeof(names) - 16; i++)
            n += (size_t)fmt_snprintf(names + n, sizeof(names) - n, "%s%s", i ? ", " : "",
                                      blk_get(i)->name);
        pr_err(LS_MM, "swap: no block device '%s' (found: %s): running without swap",
               cfg->swap_dev, n ? names : "none");
        return 1;
    }
    /* Before any read: every buffer below is sized for sectors of at
     * most 4 KiB, and a device reports whatever it likes. */
    if (swap_check_device(d)) {
        pr_info(LS_MM, "swap: running without swap; %s untouched (%llu reads, %llu writes)",
                d->name, (unsigned long long)d->st.reads, (unsigned long long)d->st.writes);
        return 1;
    }
    uint64_t first, count;
    if (swap_range(d, cfg, &first, &count))
        return 1;
    char a[16];
    pr_info(LS_MM, "swap: %s sectors %llu..%llu (%s)", d->name, (unsigned long long)first,
            (unsigned long long)(first + count - 1),
            fmt_size(a, sizeof(a), count * d->sector_size));
    int failures = 0;
    if (cfg->swap_selftest == SWAP_TEST_ALL) {
        const uint64_t frames = 17;
        mfn_t m = frame_alloc_contig(frames, 1, FS_HV, 0);
        if (m == MFN_INVALID) {
            pr_err(LS_MM, "swap: no memory for the device self-test");
            return 1;
        }
        uint64_t t0 = mm_now();
        uint8_t *buf = mm_phys_to_virt(m << PAGE_SHIFT);
        uint64_t bad = blk_selftest(d, first, count, buf, frames * PAGE_SIZE);
        uint64_t t1 = mm_now();
        io_cost(d, first, count, buf);
        t0 += mm_now() - t1; /* not part of the self-test's time */
        if (d->st.lost)
            pr_warn(LS_DRV, "%s: the self-test's %llu buffer frames stay allocated: the device "
                            "failed with a transfer outstanding", d->name,
                    (unsigned long long)frames);
        else
            frame_free_contig(m, frames);
        if (bad) {
            pr_err(LS_DRV, "%s self-test: FAIL (%llu bad transfers)", d->name,
                   (unsigned long long)bad);
            failures++;
        } else {
            pr_info(LS_DRV, "%s self-test: PASS (%s written and read back, %llu cycles)",
                    d->name, fmt_size(a, sizeof(a), count * d->sector_size),
                    (unsigned long long)(mm_now() - t0));
        }
    }
    if (swap_attach(d, first, count, cfg->swap_format))
        return failures + 1;
    swap_set_clock(tsc_hz());
    if (cfg->swap_selftest) {
        struct swap_stats ss;
        swap_get_stats(&ss);
        failures += swap_path_test(ss.slots * ss.slot_bytes / PAGE_SIZE);
    }
    return failures;
}

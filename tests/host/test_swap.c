/* Swap space (mm/swap.c) on a memory disk, and the p2m's swap states
 * (mm/p2m.c) on top of it. The disk is host memory behind the block layer
 * (drivers/blk.c) with error injection: the k-th write fails, writes or
 * reads touching a sector fail, a stored byte is flipped silently.
 *
 * On its own: the header (a blank or foreign device is refused without
 * format and left untouched, a damaged header too, a device too small,
 * 512- and 4096-byte sectors), round trips of whole pages and LZ4 objects
 * with their locations, next-fit clustering, the staging limits, a
 * fragmented device (scattered commits), a full one (partial commits,
 * swap_can_write, the full mark), and write errors (nothing stays
 * allocated, the back-off, its doubling and cap, its end). Behind the p2m:
 * pages beyond a VM's limit go out and come back, read faults keep a swap
 * copy (swap cache) that reclaim drops without a write and a write frees,
 * write errors keep pages resident, read errors and damaged copies stop
 * the page (P2M_CORRUPT) without ever mapping wrong data, the pool's cold
 * objects are written back as LZ4 and come back, a full device stops
 * swap-out in part and resumes, and destroying a VM frees every slot.
 */
#include "tests/host/backend.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "drivers/blk.h"
#include "mm/ept.h"
#include "mm/mm.h"
#include "mm/p2m.h"
#include "mm/swap.h"
#include "mm/zpool.h"

#define FRAMES 1024 /* 4 MiB machine */
#define HDR 4096u   /* the swap header */
#define PG 4096u

/* ---- the memory disk -------------------------------------------------------- */

static struct memdisk {
    struct blkdev d;
    uint8_t *data;
    uint64_t bytes;
    uint64_t writes, reads, flushes; /* calls of the driver functions */
    uint64_t fail_write_at;          /* the write call with this number fails; 0: none */
    int64_t fail_write_lba;          /* writes touching this sector fail; -1: none */
    int64_t fail_read_lba;           /* reads touching this sector fail; -1: none */
    int64_t lose_lba;                /* a transfer touching this sector is left outstanding:
                                      * the device fails (like an NVMe controller that
                                      * neither completes nor resets); -1: none */
    void *lost_buf;                  /* the buffer of that transfer, the device's forever */
} md;

static bool touches(uint64_t lba, uint32_t count, int64_t s)
{
    return s >= 0 && (uint64_t)s >= lba && (uint64_t)s < lba + count;
}

static int md_rw(struct blkdev *d, bool write, uint64_t lba, uint32_t count, void *buf)
{
    assert_ptr_equal(d, &md.d);
    /* blk.c hands the driver only requests it can take. */
    assert_true(count >= 1 && count <= d->max_sectors);
    assert_true(lba < d->sectors && count <= d->sectors - lba);
    assert_int_equal((uintptr_t)buf & 3, 0);
    uint64_t off = lba * d->sector_size, len = (uint64_t)count * d->sector_size;
    if (touches(lba, count, md.lose_lba)) {
        md.lost_buf = buf;
        d->failed = true;
        snprintf(d->last_error, sizeof(d->last_error), "injected: no completion, no reset");
        return BLK_ELOST;
    }
    if (write) {
        md.writes++;
        if (md.writes == md.fail_write_at || touches(lba, count, md.fail_write_lba)) {
            snprintf(d->last_error, sizeof(d->last_error), "injected write error");
            return BLK_EIO;
        }
        memcpy(md.data + off, buf, len);
    } else {
        md.reads++;
        if (touches(lba, count, md.fail_read_lba)) {
            snprintf(d->last_error, sizeof(d->last_error), "injected read error");
            return BLK_EIO;
        }
        memcpy(buf, md.data + off, len);
    }
    return BLK_OK;
}

static int md_flush(struct blkdev *d)
{
    (void)d;
    md.flushes++;
    return BLK_OK;
}

static const struct blk_ops md_ops = { .rw = md_rw, .flush = md_flush };

/* A disk of sectors sectors of ss bytes, every byte fill. Transfers of at
 * most 32 KiB: a full staging area (64 KiB) is split in two. */
static void md_create(uint32_t ss, uint64_t sectors, uint8_t fill)
{
    free(md.data);
    memset(&md, 0, sizeof(md));
    snprintf(md.d.name, sizeof(md.d.name), "mem0");
    md.d.kind = "memory";
    snprintf(md.d.model, sizeof(md.d.model), "test disk");
    md.d.sector_size = ss;
    md.d.sectors = sectors;
    md.d.max_sectors = 32768 / ss;
    md.d.ops = &md_ops;
    md.bytes = sectors * ss;
    md.data = malloc(md.bytes);
    assert_non_null(md.data);
    memset(md.data, fill, md.bytes);
    md.fail_write_lba = md.fail_read_lba = md.lose_lba = -1;
}

/* Swap space at sector 0: slot s is sector HDR / ss + s (a slot is one
 * sector: max(512, sector size)). */
static uint64_t slot_lba(uint64_t slot)
{
    return HDR / md.d.sector_size + slot;
}

static uint8_t *slot_ptr(uint64_t slot)
{
    return md.data + slot_lba(slot) * md.d.sector_size;
}

/* Flips one byte of the disk without telling anyone. */
static void md_flip(uint64_t lba, unsigned off)
{
    md.data[lba * md.d.sector_size + off] ^= 0x40;
}

static void attach(uint32_t ss, uint64_t sectors)
{
    md_create(ss, sectors, 0);
    assert_int_equal(swap_attach(&md.d, 0, sectors, true), 0);
    assert_true(swap_enabled());
}

static struct swap_stats sst(void)
{
    struct swap_stats s;
    swap_get_stats(&s);
    return s;
}

/* Slots per whole page. */
static uint64_t spp(void)
{
    return PG / sst().slot_bytes;
}

/* Waits (spinning) until the back-off after a write error is over. */
static void wait_backoff(void)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (!swap_can_write()) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec > 5)
            fail_msg("the swap back-off did not end within 5 s");
    }
}

/* ---- content -------------------------------------------------------------- */

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void fill_random(uint8_t *p, uint64_t seed)
{
    uint64_t x = seed * 0x2545f4914f6cdd1dULL + 99;
    for (unsigned i = 0; i < PG; i += 8) {
        uint64_t v = xorshift(&x);
        memcpy(p + i, &v, 8);
    }
}

/* Log-like text, different for every seed: LZ4 brings it well under the
 * pool's 2 KiB. */
static void fill_text(uint8_t *p, uint64_t seed)
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

/* ---- set-up ----------------------------------------------------------------- */

#define NGFN 128
static struct p2m vm;
static uint8_t expect[NGFN][PG];

static int setup(void **state)
{
    (void)state;
    backend_frames(FRAMES, 1, FRAMES - 1);
    mm_set_watermark(4);
    backend_log_clear();
    memset(&vm, 0, sizeof(vm));
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
    free(md.data);
    memset(&md, 0, sizeof(md));
    return 0;
}

/* ---- the header ------------------------------------------------------------- */

/* A blank device is refused without format and not written to; format
 * writes the header (only the header); later attaches find it, a changed
 * size rewrites it, a damaged one is refused; too small a device or an
 * unusable sector size is refused (and swap stays off); a space at an
 * offset leaves the sectors before it alone; I/O errors on the header
 * fail cleanly. */
static void test_attach_header(void **state)
{
    (void)state;
    md_create(512, 1024, 0xee);
    uint8_t *before = malloc(md.bytes);
    assert_non_null(before);
    memcpy(before, md.data, md.bytes);

    backend_log_clear();
    assert_int_equal(swap_attach(&md.d, 0, 1024, false), -1);
    assert_non_null(strstr(backend_log(), "refusing to overwrite"));
    assert_false(swap_enabled());
    assert_false(swap_can_write());
    assert_int_equal(md.writes, 0);
    assert_int_equal(md.flushes, 0);
    assert_int_equal(md.d.st.writes, 0);
    assert_memory_equal(md.data, before, md.bytes);
    uint8_t byte = 1;
    uint64_t loc[SWAP_STAGE_OBJECTS];
    unsigned done = 99;
    assert_false(swap_stage(&byte, 1, false));
    assert_int_equal(swap_commit(loc, &done), SWAP_OFF);
    assert_int_equal(done, 0);

    /* Formatted: the header and nothing else is written, then flushed. */
    backend_log_clear();
    assert_int_equal(swap_attach(&md.d, 0, 1024, true), 0);
    assert_non_null(strstr(backend_log(), "(header written: formatted)"));
    assert_true(swap_enabled());
    assert_true(swap_can_write());
    assert_false(swap_full());
    struct swap_stats s = sst();
    assert_int_equal(s.slots, (1024 * 512 - HDR) / 512);
    assert_int_equal(s.slot_bytes, 512);
    assert_int_equal(s.used, 0);
    assert_int_equal(md.writes, 1);
    assert_int_equal(md.d.st.write_sectors, HDR / 512);
    assert_int_equal(md.flushes, 1);
    assert_memory_equal(md.data, SWAP_MAGIC, 8);
    uint32_t u32;
    uint64_t u64;
    memcpy(&u32, md.data + 8, 4);
    assert_int_equal(u32, 1); /* version */
    memcpy(&u32, md.data + 12, 4);
    assert_int_equal(u32, 512); /* slot bytes */
    memcpy(&u64, md.data + 16, 8);
    assert_int_equal(u64, 1016); /* slots */
    memcpy(&u64, md.data + 24, 8);
    assert_int_equal(u64, 0); /* first sector */
    for (unsigned i = 40; i < HDR; i++)
        assert_int_equal(md.data[i], 0);
    assert_memory_equal(md.data + HDR, before + HDR, md.bytes - HDR);
    swap_detach();
    assert_false(swap_enabled());

    /* Found again without format: nothing written. */
    backend_log_clear();
    assert_int_equal(swap_attach(&md.d, 0, 1024, false), 0);
    assert_non_null(strstr(backend_log(), "(header found)"));
    assert_int_equal(md.writes, 1);
    assert_int_equal(sst().slots, 1016);
    swap_detach();

    /* Our header with another size: accepted, the geometry rewritten. */
    backend_log_clear();
    assert_int_equal(swap_attach(&md.d, 0, 512, false), 0);
    assert_non_null(strstr(backend_log(), "(header found, geometry updated)"));
    assert_int_equal(md.writes, 2);
    assert_int_equal(sst().slots, 504);
    memcpy(&u64, md.data + 16, 8);
    assert_int_equal(u64, 504);
    swap_detach();

    /* No header at another offset of the same disk. */
    assert_int_equal(swap_attach(&md.d, 8, 512, false), -1);
    assert_false(swap_enabled());
    assert_int_equal(md.writes, 2);

    /* One flipped byte anywhere in the checked fields (magic, version,
     * slot size, slots, first sector, check): refused, nothing written. */
    memcpy(before, md.data, md.bytes);
    static const unsigned offs[] = { 0, 7, 8, 12, 17, 24, 32, 35 };
    for (unsigned i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
        md.data[offs[i]] ^= 0x10;
        backend_log_clear();
        assert_int_equal(swap_attach(&md.d, 0, 512, false), -1);
        assert_non_null(strstr(backend_log(), "refusing to overwrite"));
        assert_false(swap_enabled());
        assert_int_equal(md.writes, 2);
        md.data[offs[i]] ^= 0x10;
        assert_memory_equal(md.data, before, md.bytes);
    }
    /* ... and format repairs it. */
    md.data[33] ^= 0xff;
    assert_int_equal(swap_attach(&md.d, 0, 512, true), 0);
    assert_int_equal(md.writes, 3);
    assert_memory_equal(md.data, before, HDR);
    swap_detach();
    assert_int_equal(swap_attach(&md.d, 0, 512, false), 0);
    swap_detach();
    free(before);

    /* Too small: less than the header and one page. */
    md_create(512, 64, 0xee);
    backend_log_clear();
    assert_int_equal(swap_attach(&md.d, 0, 15, true), -1);
    assert_non_null(strstr(backend_log(), "too small"));
    assert_false(swap_enabled());
    assert_int_equal(md.writes, 0);
    assert_int_equal(swap_attach(&md.d, 0, 16, true), 0);
    assert_int_equal(sst().slots, 8);
    static uint8_t page[PG];
    fill_random(page, 1);
    assert_true(swap_stage(page, PG, false));
    assert_int_equal(swap_commit(loc, &done), SWAP_OK);
    assert_int_equal(done, 1);
    assert_int_equal(loc[0], SWAP_LOC(0, PG, 0));
    assert_false(swap_can_write()); /* every slot in use */
    swap_free(loc[0]);
    assert_true(swap_can_write());
    swap_detach();

    /* Swap space at an offset: the sectors before it are never touched,
     * the header says where it starts, slot 0 follows the header. */
    md_create(512, 256, 0xee);
    assert_int_equal(swap_attach(&md.d, 32, 128, false), -1);
    assert_int_equal(swap_attach(&md.d, 32, 128, true), 0);
    assert_int_equal(sst().slots, 120);
    assert_memory_equal(md.data + 32 * 512, SWAP_MAGIC, 8);
    memcpy(&u64, md.data + 32 * 512 + 24, 8);
    assert_int_equal(u64, 32);
    fill_random(page, 2);
    assert_true(swap_stage(page, PG, false));
    assert_int_equal(swap_commit(loc, &done), SWAP_OK);
    assert_int_equal(loc[0], SWAP_LOC(0, PG, 0));
    assert_memory_equal(md.data + (32 + 8) * 512, page, PG);
    for (unsigned i = 0; i < 32 * 512; i++)
        assert_int_equal(md.data[i], 0xee);
    for (unsigned i = (32 + 16) * 512; i < md.bytes; i++)
        assert_int_equal(md.data[i], 0xee);
    swap_free(loc[0]);
    swap_detach();
    assert_int_equal(swap_attach(&md.d, 32, 128, false), 0);
    swap_detach();
    assert_int_equal(swap_attach(&md.d, 0, 128, false), -1); /* not at 0 */

    /* A header that cannot be read or written: refused. */
    md_create(512, 64, 0);
    md.fail_read_lba = 3;
    backend_log_clear();
    assert_int_equal(swap_attach(&md.d, 0, 64, true), -1);
    assert_non_null(strstr(backend_log(), "cannot read the swap header"));
    assert_int_equal(md.writes, 0);
    assert_false(swap_enabled());
    md.fail_read_lba = -1;
    md.fail_write_at = md.writes + 1;
    backend_log_clear();
    assert_int_equal(swap_attach(&md.d, 0, 64, true), -1);
    assert_non_null(strstr(backend_log(), "cannot write the swap header"));
    assert_false(swap_enabled());
    assert_false(swap_can_write());

    /* Sector sizes swap cannot use. */
    md_create(8192, 64, 0);
    backend_log_clear();
    assert_int_equal(swap_attach(&md.d, 0, 64, true), -1);
    assert_non_null(strstr(backend_log(), "8192-byte sectors"));
    assert_int_equal(md.writes, 0);
    assert_int_equal(md.reads, 0);
    assert_false(swap_enabled());
}

/* An MBR in sector 0 of the memory disk: partition n (1..4) of type
 * type at lba, len sectors. */
static void md_mbr(unsigned n, uint8_t type, uint32_t lba, uint32_t len)
{
    uint8_t *e = md.data + 446 + 16 * (n - 1);
    e[4] = type;
    memcpy(e + 8, &lba, 4);
    memcpy(e + 12, &len, 4);
    md.data[510] = 0x55;
    md.data[511] = 0xaa;
}

/* Sectors larger than the 4 KiB buffers they would be read into: the
 * partition table, the swap header and the device self-test refuse such a
 * device before reading anything (8 KiB sectors used to overrun the
 * partition table's 4 KiB buffer); the bounded read refuses any request
 * that does not fit its buffer; a normal MBR is read right. */
static void test_large_sectors(void **state)
{
    (void)state;
    uint64_t first = 99, count = 99;

    /* 8 KiB sectors with a valid-looking table: nothing is read. */
    md_create(8192, 64, 0x5a);
    md_mbr(1, 0x82, 1, 32);
    backend_log_clear();
    assert_int_equal(blk_mbr_partition(&md.d, 1, &first, &count), -1);
    assert_non_null(strstr(backend_log(), "mem0: 8192-byte sectors"));
    assert_int_equal(md.reads, 0);
    assert_int_equal(first, 99);
    backend_log_clear();
    assert_int_equal(swap_check_device(&md.d), -1);
    assert_non_null(strstr(backend_log(), "mem0: 8192-byte sectors: swap needs 512 .. 4096"));
    assert_int_equal(swap_attach(&md.d, 1, 32, true), -1);
    assert_int_equal(md.reads, 0);
    assert_int_equal(md.writes, 0);
    assert_false(swap_enabled());

    /* The bounded read: a sector that does not fit is refused unread. */
    static uint8_t buf[8192];
    backend_log_clear();
    assert_int_equal(blk_read_buf(&md.d, 0, 1, buf, 4096), BLK_ERANGE);
    assert_non_null(strstr(md.d.last_error, "do not fit a 4096-byte buffer"));
    assert_int_equal(md.reads, 0);
    assert_int_equal(blk_read_buf(&md.d, 0, 1, buf, sizeof(buf)), 0);
    assert_int_equal(md.reads, 1);
    assert_int_equal(blk_read_buf(&md.d, 0, UINT64_MAX / 2, buf, sizeof(buf)), BLK_ERANGE);
    assert_int_equal(md.reads, 1);

    /* 1 MiB sectors (NVMe's largest): the device self-test has no room in
     * 68 KiB of scratch and says so without any I/O. */
    md_create(1u << 20, 4, 0);
    backend_log_clear();
    assert_int_equal(blk_selftest(&md.d, 0, 4, buf, sizeof(buf)), 1);
    assert_non_null(strstr(backend_log(), "nothing tested"));
    assert_int_equal(md.reads + md.writes, 0);
    assert_int_equal(swap_check_device(&md.d), -1);
    md_create(256, 64, 0);
    assert_int_equal(swap_check_device(&md.d), -1);
    assert_int_equal(blk_mbr_partition(&md.d, 1, &first, &count), -1);
    assert_int_equal(md.reads, 0);

    /* 512 and 4096-byte sectors: the table is read, entries checked. */
    static const uint32_t sizes[] = { 512, 4096 };
    for (unsigned i = 0; i < 2; i++) {
        md_create(sizes[i], 1000, 0);
        assert_int_equal(swap_check_device(&md.d), 0);
        backend_log_clear();
        assert_int_equal(blk_mbr_partition(&md.d, 2, &first, &count), -1);
        assert_non_null(strstr(backend_log(), "mem0 has no MBR primary partition 2"));
        md_mbr(2, 0x82, 100, 900);
        assert_int_equal(blk_mbr_partition(&md.d, 2, &first, &count), 0);
        assert_int_equal(first, 100);
        assert_int_equal(count, 900);
        assert_int_equal(blk_mbr_partition(&md.d, 1, &first, &count), -1);
        md_mbr(3, 0x82, 100, 901);
        backend_log_clear();
        assert_int_equal(blk_mbr_partition(&md.d, 3, &first, &count), -1);
        assert_non_null(strstr(backend_log(), "runs past the end"));
        md_mbr(4, 0xee, 1, 999);
        backend_log_clear();
        assert_int_equal(blk_mbr_partition(&md.d, 4, &first, &count), -1);
        assert_non_null(strstr(backend_log(), "GPT is not supported"));
        assert_int_equal(blk_mbr_partition(&md.d, 5, &first, &count), -1);
        md.data[511] = 0;
        assert_int_equal(blk_mbr_partition(&md.d, 2, &first, &count), -1);
    }
}

/* 4096-byte sectors: a slot is a sector, so even a 1-byte object takes a
 * whole one; the header is one sector. */
static void test_4k_sectors(void **state)
{
    (void)state;
    md_create(4096, 64, 0xee);
    assert_int_equal(swap_attach(&md.d, 0, 64, false), -1);
    assert_int_equal(md.writes, 0);
    assert_int_equal(swap_attach(&md.d, 0, 64, true), 0);
    assert_int_equal(md.writes, 1);
    assert_int_equal(md.d.st.write_sectors, 1);
    assert_memory_equal(md.data, SWAP_MAGIC, 8);
    struct swap_stats s = sst();
    assert_int_equal(s.slots, 63);
    assert_int_equal(s.slot_bytes, 4096);
    swap_detach();
    assert_int_equal(swap_attach(&md.d, 0, 64, false), 0);
    assert_int_equal(md.writes, 1);

    static uint8_t page[PG], obj[3][PG], out[PG];
    static const unsigned lens[3] = { 1, 4095, 4096 };
    fill_random(page, 7);
    assert_true(swap_stage(page, PG, false));
    for (unsigned i = 0; i < 3; i++) {
        fill_random(obj[i], 20 + i);
        assert_true(swap_stage(obj[i], lens[i], true));
    }
    uint64_t loc[SWAP_STAGE_OBJECTS], w0 = md.writes;
    unsigned done;
    assert_int_equal(swap_commit(loc, &done), SWAP_OK);
    assert_int_equal(done, 4);
    assert_int_equal(md.writes, w0 + 1);
    assert_int_equal(loc[0], SWAP_LOC(0, PG, 0));
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(loc[1 + i], SWAP_LOC(1 + i, lens[i], 1));
    assert_int_equal(sst().used, 4);
    /* The rest of a slot is written as zeroes. */
    assert_memory_equal(slot_ptr(1), obj[0], 1);
    for (unsigned b = 1; b < 4096; b++)
        assert_int_equal(slot_ptr(1)[b], 0);
    assert_int_equal(slot_ptr(2)[4095], 0);
    memset(out, 0x5a, sizeof(out));
    assert_ptr_equal(swap_read(loc[0], out), out);
    assert_memory_equal(out, page, PG);
    for (unsigned i = 0; i < 3; i++) {
        const void *r = swap_read(loc[1 + i], out);
        assert_non_null(r);
        assert_memory_equal(r, obj[i], lens[i]);
    }
    for (unsigned i = 0; i < 4; i++)
        swap_free(loc[i]);
    assert_int_equal(sst().used, 0);
    assert_int_equal(sst().peak_used, 4);
    swap_detach();

    /* The smallest space: the header and one slot. */
    assert_int_equal(swap_attach(&md.d, 0, 1, true), -1);
    assert_int_equal(swap_attach(&md.d, 0, 2, true), 0);
    assert_int_equal(sst().slots, 1);
}

/* ---- staging, commit, read ------------------------------------------------------ */

/* Whole pages and LZ4 objects of awkward lengths: locations, placement at
 * slot boundaries with zeroed tails, one write per batch, next-fit
 * clustering, reads, frees, the counters. */
static void test_round_trip(void **state)
{
    (void)state;
    md_create(512, 2048, 0xee);
    assert_int_equal(swap_attach(&md.d, 0, 2048, true), 0);
    assert_int_equal(sst().slots, 2040);
    static uint8_t page[PG], obj[6][PG], out[PG];
    static const unsigned lens[6] = { 1, 511, 512, 513, 4095, 4096 };
    uint64_t loc[SWAP_STAGE_OBJECTS], w0 = md.writes;
    unsigned done = 99;

    assert_int_equal(swap_commit(loc, &done), SWAP_OK); /* nothing staged */
    assert_int_equal(done, 0);
    assert_int_equal(md.writes, w0);

    fill_random(page, 1);
    assert_true(swap_stage(page, PG, false));
    assert_int_equal(swap_staged(), 1);
    assert_int_equal(swap_commit(loc, &done), SWAP_OK);
    assert_int_equal(done, 1);
    assert_int_equal(swap_staged(), 0);
    assert_int_equal(md.writes, w0 + 1);
    uint64_t pl = loc[0];
    assert_int_equal(pl, SWAP_LOC(0, PG, 0));
    assert_int_equal(SWAP_LOC_SLOT(pl), 0);
    assert_int_equal(SWAP_LOC_LEN(pl), PG);
    assert_false(SWAP_LOC_LZ4(pl));
    assert_true(swap_loc_valid(pl));
    assert_memory_equal(slot_ptr(0), page, PG);
    struct swap_stats s = sst();
    assert_int_equal(s.used, 8);
    assert_int_equal(s.peak_used, 8);
    assert_int_equal(s.out_pages, 1);
    assert_int_equal(s.out_lz4, 0);
    assert_int_equal(s.out_bytes, PG);
    assert_int_equal(s.writes, 1);
    assert_int_equal(s.clustered, 1);

    /* Six objects in one batch: one write, each at a slot boundary. */
    uint64_t bytes = 0;
    for (unsigned i = 0; i < 6; i++) {
        fill_random(obj[i], 10 + i);
        assert_true(swap_stage(obj[i], lens[i], true));
        bytes += lens[i];
    }
    assert_int_equal(swap_staged(), 6);
    assert_int_equal(swap_commit(loc, &done), SWAP_OK);
    assert_int_equal(done, 6);
    assert_int_equal(md.writes, w0 + 2);
    uint64_t ol[6], slot = 8;
    for (unsigned i = 0; i < 6; i++) {
        unsigned nslots = (lens[i] + 511) / 512;
        ol[i] = loc[i];
        assert_int_equal(loc[i], SWAP_LOC(slot, lens[i], 1));
        assert_int_equal(SWAP_LOC_SLOT(loc[i]), slot);
        assert_int_equal(SWAP_LOC_LEN(loc[i]), lens[i]);
        assert_true(SWAP_LOC_LZ4(loc[i]));
        assert_true(swap_loc_valid(loc[i]));
        assert_memory_equal(slot_ptr(slot), obj[i], lens[i]);
        for (unsigned b = lens[i]; b < nslots * 512; b++)
            assert_int_equal(slot_ptr(slot)[b], 0);
        slot += nslots;
    }
    assert_int_equal(slot, 29);
    assert_int_equal(slot_ptr(29)[0], 0xee); /* nothing written past the batch */
    s = sst();
    assert_int_equal(s.used, 29);
    assert_int_equal(s.peak_used, 29);
    assert_int_equal(s.out_pages, 1);
    assert_int_equal(s.out_lz4, 6);
    assert_int_equal(s.out_bytes, PG + bytes);
    assert_int_equal(s.writes, 2);
    assert_int_equal(s.clustered, 2);
    assert_int_equal(s.scattered, 0);

    /* Reads: a page straight into the caller's buffer, objects into swap's. */
    memset(out, 0x5a, sizeof(out));
    assert_ptr_equal(swap_read(pl, out), out);
    assert_memory_equal(out, page, PG);
    for (unsigned i = 0; i < 6; i++) {
        memset(out, 0x5a, sizeof(out));
        const uint8_t *r = swap_read(ol[i], out);
        assert_non_null(r);
        assert_ptr_not_equal(r, out);
        assert_memory_equal(r, obj[i], lens[i]);
        for (unsigned b = 0; b < PG; b++)
            assert_int_equal(out[b], 0x5a);
    }
    s = sst();
    assert_int_equal(s.in_pages, 1);
    assert_int_equal(s.in_lz4, 6);
    assert_int_equal(s.reads, 7);
    assert_int_equal(s.read_errors, 0);

    /* Frees: exactly the object's slots. */
    swap_free(ol[3]); /* 513 bytes: slots 11 and 12 */
    assert_false(swap_loc_valid(ol[3]));
    assert_true(swap_loc_valid(ol[2]));
    assert_true(swap_loc_valid(ol[4]));
    assert_int_equal(sst().used, 27);
    assert_int_equal(sst().peak_used, 29);
    assert_false(swap_loc_valid(SWAP_LOC(11, 512, 1)));
    assert_false(swap_loc_valid(SWAP_LOC(12, 1, 1)));
    assert_true(swap_loc_valid(SWAP_LOC(10, 512, 1)));
    assert_false(swap_loc_valid(SWAP_LOC(10, 1024, 1))); /* runs into slot 11 */
    assert_false(swap_loc_valid(SWAP_LOC(0, 0, 0)));
    assert_false(swap_loc_valid(SWAP_LOC(0, PG + 1, 0)));
    assert_false(swap_loc_valid(SWAP_LOC(500, 512, 0)));
    assert_false(swap_loc_valid(SWAP_LOC(2039, PG, 0))); /* past the end */
    assert_false(swap_loc_valid(SWAP_LOC(1ULL << 39, 1, 0)));

    /* Next-fit: the following commits go on from the cursor, one after the
     * other, not into the hole freed behind it (slots 11 .. 20 once the
     * 4095-byte object is gone too: room for a page). */
    swap_free(ol[4]);
    assert_int_equal(sst().used, 19);
    uint64_t prev = 29;
    for (int k = 0; k < 3; k++) {
        fill_random(page, 100 + k);
        assert_true(swap_stage(page, PG, false));
        assert_int_equal(swap_commit(loc, &done), SWAP_OK);
        assert_int_equal(done, 1);
        assert_int_equal(SWAP_LOC_SLOT(loc[0]), prev);
        assert_memory_equal(slot_ptr(prev), page, PG);
        prev += 8;
    }
    assert_int_equal(sst().clustered, 5);

    /* Staging limits: a page up to the largest batch, 64 objects. */
    assert_false(swap_stage(page, 0, true));
    assert_false(swap_stage(page, PG + 1, false));
    assert_int_equal(swap_staged(), 0);
    static uint8_t pages[SWAP_STAGE_PAGES][PG];
    for (unsigned i = 0; i < SWAP_STAGE_PAGES; i++) {
        fill_random(pages[i], 200 + i);
        assert_true(swap_stage(pages[i], PG, false));
    }
    assert_false(swap_stage(page, 1, true));
    assert_int_equal(swap_staged(), SWAP_STAGE_PAGES);
    w0 = md.writes;
    uint64_t sw0 = sst().writes, ds0 = md.d.st.writes;
    assert_int_equal(swap_commit(loc, &done), SWAP_OK);
    assert_int_equal(done, SWAP_STAGE_PAGES);
    assert_int_equal(sst().writes, sw0 + 1);      /* one request ... */
    assert_int_equal(md.writes, w0 + 2);          /* ... split in two transfers by blk.c */
    assert_int_equal(md.d.st.writes, ds0 + 2);
    for (unsigned i = 0; i < SWAP_STAGE_PAGES; i++) {
        assert_int_equal(SWAP_LOC_SLOT(loc[i]), prev + 8 * i);
        assert_ptr_equal(swap_read(loc[i], out), out);
        assert_memory_equal(out, pages[i], PG);
        swap_free(loc[i]);
    }
    for (unsigned i = 0; i < SWAP_STAGE_OBJECTS; i++)
        assert_true(swap_stage(&pages[0][i], 1, true));
    assert_false(swap_stage(page, 1, true));
    assert_int_equal(swap_commit(loc, &done), SWAP_OK);
    assert_int_equal(done, SWAP_STAGE_OBJECTS);
    for (unsigned i = 0; i < SWAP_STAGE_OBJECTS; i++) {
        const uint8_t *r = swap_read(loc[i], out);
        assert_non_null(r);
        assert_int_equal(r[0], pages[0][i]);
        if (i)
            assert_int_equal(SWAP_LOC_SLOT(loc[i]), SWAP_LOC_SLOT(loc[i - 1]) + 1);
        swap_free(loc[i]);
    }

    /* Everything back: nothing in use, the peak remembered. */
    swap_free(pl);
    for (unsigned i = 0; i < 6; i++)
        if (i != 3 && i != 4)
            swap_free(ol[i]);
    for (uint64_t sl = 29; sl < 29 + 24; sl += 8)
        swap_free(SWAP_LOC(sl, PG, 0));
    s = sst();
    assert_int_equal(s.used, 0);
    assert_int_equal(s.peak_used, 19 + 24 + 8 * SWAP_STAGE_PAGES);
    assert_int_equal(s.scattered, 0);
    assert_int_equal(s.write_errors, 0);
    /* The check value p2m keeps depends on the bytes, the owner and the
     * GFN (all 64 bits of it). */
    uint32_t c = swap_check(page, PG, 1, 5);
    assert_int_equal(swap_check(page, PG, 1, 5), c);
    assert_int_not_equal(swap_check(page, PG, 1, 6), c);
    assert_int_not_equal(swap_check(page, PG, 2, 5), c);
    assert_int_not_equal(swap_check(page, PG, 1, 5 | 1ULL << 40), c);
    assert_int_not_equal(swap_check(page, PG - 1, 1, 5), c);
    page[77] ^= 1;
    assert_int_not_equal(swap_check(page, PG, 1, 5), c);
    /* A slot freed twice is a bug. */
    EXPECT_PANIC(swap_free(pl));
}

/* Fills the first npages pages' worth of slots (batches of 16) of a fresh
 * 512-byte-sector space: fpages[i] is page i's content, flocs[i] its
 * location (slot 8 i). */
static uint8_t fpages[64][PG];
static uint64_t flocs[64];

static void fill_device(unsigned npages)
{
    unsigned done;
    for (unsigned i = 0; i < npages; i += SWAP_STAGE_PAGES) {
        unsigned n = npages - i < SWAP_STAGE_PAGES ? npages - i : SWAP_STAGE_PAGES;
        for (unsigned j = 0; j < n; j++) {
            fill_random(fpages[i + j], 1000 + i + j);
            assert_true(swap_stage(fpages[i + j], PG, false));
        }
        assert_int_equal(swap_commit(&flocs[i], &done), SWAP_OK);
        assert_int_equal(done, n);
    }
    for (unsigned i = 0; i < npages; i++)
        assert_int_equal(flocs[i], SWAP_LOC(8 * i, PG, 0));
}

static void assert_slot_page(uint64_t loc, const uint8_t *want)
{
    static uint8_t out[PG];
    memset(out, 0x5a, sizeof(out));
    assert_ptr_equal(swap_read(loc, out), out);
    assert_memory_equal(out, want, PG);
}

/* Every other page freed: no run for a batch, so it goes out one page per
 * hole (scattered), and everything reads back right. */
static void test_fragmented(void **state)
{
    (void)state;
    attach(512, HDR / 512 + 512);
    assert_int_equal(sst().slots, 512);
    fill_device(64);
    assert_int_equal(sst().used, 512);
    assert_int_equal(sst().clustered, 4);
    assert_false(swap_can_write());
    for (unsigned i = 0; i < 64; i += 2)
        swap_free(flocs[i]);
    assert_int_equal(sst().used, 256);
    assert_true(swap_can_write());

    static uint8_t np[4][PG];
    for (unsigned j = 0; j < 4; j++) {
        fill_random(np[j], 5000 + j);
        assert_true(swap_stage(np[j], PG, false));
    }
    uint64_t loc[SWAP_STAGE_OBJECTS], w0 = md.writes;
    unsigned done;
    assert_int_equal(swap_commit(loc, &done), SWAP_OK);
    assert_int_equal(done, 4);
    struct swap_stats s = sst();
    assert_int_equal(s.scattered, 1);
    assert_int_equal(s.clustered, 4);
    assert_int_equal(s.writes, 4 + 4);
    assert_int_equal(md.writes, w0 + 4);
    assert_int_equal(s.used, 256 + 32);
    assert_int_equal(s.out_pages, 64 + 4);
    for (unsigned j = 0; j < 4; j++) {
        assert_int_equal(SWAP_LOC_SLOT(loc[j]) % 16, 0); /* in a hole */
        for (unsigned k = 0; k < j; k++)
            assert_int_not_equal(SWAP_LOC_SLOT(loc[j]), SWAP_LOC_SLOT(loc[k]));
        assert_slot_page(loc[j], np[j]);
    }
    for (unsigned i = 1; i < 64; i += 2)
        assert_slot_page(flocs[i], fpages[i]);
    /* A single page still fits one hole: clustered. */
    assert_true(swap_stage(np[0], PG, false));
    assert_int_equal(swap_commit(loc, &done), SWAP_OK);
    assert_int_equal(done, 1);
    assert_int_equal(sst().clustered, 5);
    assert_int_equal(sst().scattered, 1);
    assert_slot_page(loc[0], np[0]);
}

/* A nearly full device: a batch goes out in part (SWAP_FULL), the space is
 * reported full; swap_can_write needs a page's worth of slots; the full
 * mark clears once a whole batch fits again. */
static void test_full(void **state)
{
    (void)state;
    attach(512, HDR / 512 + 512);
    fill_device(60);
    assert_int_equal(sst().used, 480);
    assert_true(swap_can_write());
    assert_false(swap_full());

    static uint8_t np[8][PG];
    for (unsigned j = 0; j < 8; j++) {
        fill_random(np[j], 7000 + j);
        assert_true(swap_stage(np[j], PG, false));
    }
    uint64_t loc[SWAP_STAGE_OBJECTS];
    unsigned done = 99;
    backend_log_clear();
    assert_int_equal(swap_commit(loc, &done), SWAP_FULL);
    assert_int_equal(done, 4);
    assert_int_equal(swap_staged(), 0);
    assert_non_null(strstr(backend_log(), "is full"));
    assert_true(swap_full());
    struct swap_stats s = sst();
    assert_int_equal(s.used, 512);
    assert_int_equal(s.full_events, 1);
    assert_int_equal(s.out_pages, 64);
    assert_false(swap_can_write());
    for (unsigned j = 0; j < 4; j++) {
        assert_true(swap_loc_valid(loc[j]));
        assert_slot_page(loc[j], np[j]);
    }
    uint64_t part[4];
    memcpy(part, loc, sizeof(part));

    /* Nothing fits at all: SWAP_FULL with nothing done, still one event. */
    assert_true(swap_stage(np[5], PG, false));
    uint64_t w0 = md.writes;
    assert_int_equal(swap_commit(loc, &done), SWAP_FULL);
    assert_int_equal(done, 0);
    assert_int_equal(md.writes, w0);
    assert_int_equal(sst().full_events, 1);
    assert_int_equal(sst().used, 512);

    /* One page free: writable again, still reported full. */
    swap_free(flocs[0]);
    assert_true(swap_can_write());
    assert_true(swap_full());
    /* Six slots free: not enough for a page. */
    assert_true(swap_stage(np[6], 513, true));
    assert_int_equal(swap_commit(loc, &done), SWAP_OK);
    assert_int_equal(done, 1);
    assert_int_equal(sst().used, 506);
    assert_false(swap_can_write());
    const uint8_t *r = swap_read(loc[0], NULL);
    assert_non_null(r);
    assert_memory_equal(r, np[6], 513);
    swap_free(loc[0]);
    assert_true(swap_can_write());

    /* The full mark clears at a batch's worth of free slots (128). */
    for (unsigned i = 1; i < 15; i++)
        swap_free(flocs[i]);
    assert_int_equal(sst().slots - sst().used, 120);
    assert_true(swap_full());
    backend_log_clear();
    swap_free(flocs[15]);
    assert_false(swap_full());
    assert_non_null(strstr(backend_log(), "room again"));

    /* A whole batch goes out in one run again. */
    for (unsigned j = 0; j < SWAP_STAGE_PAGES; j++)
        assert_true(swap_stage(fpages[j], PG, false));
    w0 = md.writes;
    assert_int_equal(swap_commit(loc, &done), SWAP_OK);
    assert_int_equal(done, SWAP_STAGE_PAGES);
    assert_int_equal(md.writes, w0 + 2);
    assert_int_equal(sst().used, 512);
    for (unsigned j = 0; j < SWAP_STAGE_PAGES; j++)
        assert_slot_page(loc[j], fpages[j]);
    for (unsigned j = 0; j < 4; j++)
        assert_slot_page(part[j], np[j]);
    for (unsigned i = 16; i < 60; i++)
        assert_slot_page(flocs[i], fpages[i]);
}

/* ---- write errors ------------------------------------------------------------- */

static void stage_and_fail(const uint8_t *page, const char *want_log)
{
    uint64_t loc[SWAP_STAGE_OBJECTS];
    unsigned done = 99;
    uint64_t used = sst().used, errs = sst().write_errors;
    assert_true(swap_stage(page, PG, false));
    md.fail_write_at = md.writes + 1;
    backend_log_clear();
    assert_int_equal(swap_commit(loc, &done), SWAP_EIO);
    assert_int_equal(done, 0);
    assert_int_equal(swap_staged(), 0);
    assert_int_equal(sst().used, used);
    assert_int_equal(sst().write_errors, errs + 1);
    if (want_log && !strstr(backend_log(), want_log))
        fail_msg("expected \"%s\" in the log:\n%s", want_log, backend_log());
}

static uint64_t commit_ok(const uint8_t *page)
{
    uint64_t loc[SWAP_STAGE_OBJECTS];
    unsigned done = 99;
    assert_true(swap_stage(page, PG, false));
    assert_int_equal(swap_commit(loc, &done), SWAP_OK);
    assert_int_equal(done, 1);
    assert_slot_page(loc[0], page);
    return loc[0];
}

/* A failed write: SWAP_EIO, no slot left allocated, swap_can_write false
 * during the back-off (which doubles per failure up to 8 s and is over at
 * the first good write), then writes succeed. */
static void test_write_error_backoff(void **state)
{
    (void)state;
    attach(512, 2048);
    static uint8_t pages[3][PG], page[PG];
    uint64_t loc[SWAP_STAGE_OBJECTS], w0;
    unsigned done = 99;
    /* A TSC "rate" of 4e12/s: the back-off (1/4 s) lasts minutes. */
    swap_set_clock(4000000000000ULL);
    for (unsigned j = 0; j < 3; j++) {
        fill_random(pages[j], 300 + j);
        assert_true(swap_stage(pages[j], PG, false));
    }
    md.fail_write_at = md.writes + 1;
    backend_log_clear();
    assert_int_equal(swap_commit(loc, &done), SWAP_EIO);
    assert_int_equal(done, 0);
    assert_int_equal(swap_staged(), 0);
    assert_non_null(strstr(backend_log(), "injected write error"));
    assert_non_null(strstr(backend_log(), "next try in 250 ms"));
    struct swap_stats s = sst();
    assert_int_equal(s.used, 0);
    assert_int_equal(s.write_errors, 1);
    assert_int_equal(s.out_pages, 0);
    assert_int_equal(s.out_bytes, 0);
    for (uint64_t sl = 0; sl < 24; sl++)
        assert_false(swap_loc_valid(SWAP_LOC(sl, 1, 0)));
    assert_false(swap_can_write());
    assert_false(swap_can_write());
    assert_int_equal(sst().retries_deferred, s.retries_deferred + 2);
    /* A good write ends the back-off. */
    uint64_t good = commit_ok(pages[0]);
    assert_true(swap_can_write());
    swap_free(good);

    /* Each failure in a row doubles it, up to 8 s; a good write resets it
     * (hz = 4: a few cycles long, the printed durations exact). */
    swap_set_clock(4);
    static const char *const ms[] = { "next try in 250 ms",  "next try in 500 ms",
                                      "next try in 1000 ms", "next try in 2000 ms",
                                      "next try in 4000 ms", "next try in 8000 ms",
                                      "next try in 8000 ms" };
    fill_random(page, 400);
    for (unsigned i = 0; i < sizeof(ms) / sizeof(ms[0]); i++)
        stage_and_fail(page, ms[i]);
    assert_int_equal(sst().write_errors, 8);
    good = commit_ok(page);
    stage_and_fail(page, "next try in 250 ms");
    swap_free(good);

    /* A back-off of a quarter of 2e9 cycles ends by itself. */
    swap_set_clock(2000000000);
    good = commit_ok(page); /* resets the doubling */
    swap_free(good);
    uint64_t t0 = mm_now();
    stage_and_fail(page, "next try in 250 ms");
    assert_false(swap_can_write());
    wait_backoff();
    assert_true(mm_now() - t0 >= 500000000);
    good = commit_ok(pages[1]);
    assert_true(swap_can_write());
    swap_free(good);
    assert_int_equal(sst().used, 0);
    assert_int_equal(sst().write_errors, 10);

    /* A device its driver gave up on: no swap-out, and a write fails. */
    md.d.failed = true;
    assert_false(swap_can_write());
    w0 = md.writes;
    stage_and_fail(page, "next try in 250 ms");
    assert_int_equal(md.writes, w0); /* refused by blk.c, never reached the driver */
    md.d.failed = false;
}

/* A write error in the middle of a scattered commit: the objects already
 * written are freed again, nothing else is touched. */
static void test_write_error_scattered(void **state)
{
    (void)state;
    attach(512, HDR / 512 + 512);
    fill_device(64);
    for (unsigned i = 0; i < 64; i += 2)
        swap_free(flocs[i]);
    static uint8_t np[4][PG];
    for (unsigned j = 0; j < 4; j++) {
        fill_random(np[j], 9000 + j);
        assert_true(swap_stage(np[j], PG, false));
    }
    uint64_t loc[SWAP_STAGE_OBJECTS], w0 = md.writes;
    unsigned done = 99;
    md.fail_write_at = md.writes + 3;
    assert_int_equal(swap_commit(loc, &done), SWAP_EIO);
    assert_int_equal(done, 0);
    assert_int_equal(md.writes, w0 + 3);
    struct swap_stats s = sst();
    assert_int_equal(s.used, 256);
    assert_int_equal(s.write_errors, 1);
    assert_int_equal(s.out_pages, 64);
    for (unsigned i = 0; i < 64; i += 2)
        assert_false(swap_loc_valid(flocs[i]));
    for (unsigned i = 1; i < 64; i += 2)
        assert_slot_page(flocs[i], fpages[i]);
    /* Again, without the error: all four go out. */
    for (unsigned j = 0; j < 4; j++)
        assert_true(swap_stage(np[j], PG, false));
    assert_int_equal(swap_commit(loc, &done), SWAP_OK);
    assert_int_equal(done, 4);
    assert_int_equal(sst().scattered, 1);
    for (unsigned j = 0; j < 4; j++)
        assert_slot_page(loc[j], np[j]);
    assert_int_equal(sst().used, 256 + 32);
}

/* ---- behind the p2m ------------------------------------------------------------- */

static void make_vm(uint64_t ngfn, uint64_t limit, bool compress)
{
    assert_true(ngfn <= NGFN);
    assert_int_equal(p2m_init(&vm, 1, "s", ngfn, 0, limit, true), 0);
    vm.compress = compress;
    assert_int_equal(mm_register(&vm), 0);
}

/* The hypervisor writes gfn (populating it; reclaim may run first). */
static void put_page(uint64_t gfn, void (*fill)(uint8_t *, uint64_t), uint64_t seed)
{
    fill(expect[gfn], seed);
    uint8_t *p = p2m_gfn_ptr(&vm, gfn, true);
    assert_non_null(p);
    memcpy(p, expect[gfn], PG);
}

static void assert_page(uint64_t gfn)
{
    static uint8_t buf[PG];
    memset(buf, 0x5a, sizeof(buf));
    uint8_t st = p2m_peek(&vm, gfn)->state;
    uint64_t payload = p2m_peek(&vm, gfn)->payload;
    if (p2m_read_page(&vm, gfn, buf))
        fail_msg("p2m_read_page of gfn %llu (%s) failed", (unsigned long long)gfn,
                 p2m_state_name(st));
    assert_memory_equal(buf, expect[gfn], PG);
    assert_int_equal(p2m_peek(&vm, gfn)->state, st); /* read without a change */
    assert_int_equal(p2m_peek(&vm, gfn)->payload, payload);
}

static uint64_t *leaf(uint64_t gfn)
{
    return pt_entry(&pt_fmt_ept, vm.ept_root, gfn << PAGE_SHIFT, PT_LEVEL_4K, false);
}

static uint64_t leaf_perms(uint64_t gfn)
{
    uint64_t *l = leaf(gfn);
    return l ? *l & EPT_RWX : 0;
}

static void reclaim_all_resident(void)
{
    while (vm.count[P2M_RESIDENT])
        assert_true(p2m_reclaim(&vm, 64, 2 * vm.ngfn) > 0);
}

/* Pages beyond the VM's limit (compression off) go to swap; a read fault
 * brings one back read-only with its swap copy kept; reclaim drops it
 * without a write; a write frees the copy; destroy frees every slot. */
static void p2m_swap_cycle(uint32_t ss)
{
    attach(ss, (2u << 20) / ss);
    assert_int_equal(mm_pool_init(0, 2048, false), 0);
    uint64_t free0 = backend_free_and_meta(), per = spp();
    make_vm(64, 16, false);
    for (uint64_t g = 0; g < 48; g++)
        put_page(g, fill_random, g + 1);
    assert_true(vm.count[P2M_SWAPPED] > 0);
    assert_true(vm.count[P2M_RESIDENT] <= 16);
    assert_int_equal(vm.count[P2M_RESIDENT] + vm.count[P2M_SWAPPED], 48);
    assert_int_equal(vm.st.swap_out, vm.count[P2M_SWAPPED]);
    assert_int_equal(vm.st.compressed, 0);
    struct swap_stats s = sst();
    assert_int_equal(s.used, vm.count[P2M_SWAPPED] * per);
    assert_int_equal(s.out_pages, vm.count[P2M_SWAPPED]);
    assert_true(s.clustered >= 1);
    assert_true(s.writes < vm.count[P2M_SWAPPED]); /* batches */
    assert_int_equal(p2m_check(&vm), 0);
    for (uint64_t g = 0; g < 48; g++) {
        const struct p2m_entry *e = p2m_peek(&vm, g);
        if (e->state != P2M_SWAPPED)
            continue;
        assert_true(swap_loc_valid(e->payload));
        assert_int_equal(SWAP_LOC_LEN(e->payload), PG);
        assert_false(SWAP_LOC_LZ4(e->payload));
        assert_int_equal(leaf_perms(g), 0);
        assert_int_equal(e->flags, 0);
    }
    for (uint64_t g = 0; g < 48; g++)
        assert_page(g);
    for (uint64_t g = 48; g < 64; g++)
        assert_int_equal(p2m_peek(&vm, g)->state, P2M_UNPOPULATED);

    reclaim_all_resident();
    assert_int_equal(vm.count[P2M_SWAPPED], 48);
    assert_int_equal(sst().used, 48 * per);
    assert_int_equal(p2m_check(&vm), 0);

    /* A read fault: back, mapped read-only, the swap copy kept. */
    uint64_t g = 5, loc = p2m_peek(&vm, g)->payload, w0 = md.writes, r0 = md.reads;
    assert_int_equal(p2m_fault(&vm, (g << PAGE_SHIFT) + 0x10, P2M_ACCESS_R), P2M_OK);
    const struct p2m_entry *e = p2m_peek(&vm, g);
    assert_int_equal(e->state, P2M_RESIDENT);
    assert_true(e->flags & P2M_F_SWAPCACHE);
    assert_int_equal(e->aux, SWAP_LOC_SLOT(loc));
    assert_int_equal(vm.swap_cached, 1);
    assert_int_equal(vm.st.faults[PF_SWAPIN], 1);
    assert_int_equal(leaf_perms(g), EPT_R | EPT_X);
    assert_int_equal(*leaf(g) & PT_ADDR_MASK, e->payload << PAGE_SHIFT);
    assert_memory_equal(backend_frame(e->payload), expect[g], PG);
    assert_true(swap_loc_valid(loc));
    assert_int_equal(sst().used, 48 * per);
    assert_int_equal(md.writes, w0);
    assert_true(md.reads > r0);
    assert_int_equal(p2m_check(&vm), 0);
    assert_page(g);
    /* Another read (a stale translation): still cached. */
    assert_int_equal(p2m_fault(&vm, g << PAGE_SHIFT, P2M_ACCESS_R), P2M_OK);
    assert_true(e->flags & P2M_F_SWAPCACHE);
    assert_int_equal(vm.st.faults[PF_SPURIOUS], 1);

    /* Clean: reclaim drops it without a write, the copy its home again. */
    uint64_t sw0 = sst().writes;
    assert_int_equal(p2m_reclaim(&vm, 64, 2 * vm.ngfn), 1);
    assert_int_equal(e->state, P2M_SWAPPED);
    assert_int_equal(e->payload, loc);
    assert_int_equal(e->flags, 0);
    assert_int_equal(vm.st.swap_dropped, 1);
    assert_int_equal(vm.swap_cached, 0);
    assert_int_equal(md.writes, w0);
    assert_int_equal(sst().writes, sw0);
    assert_int_equal(sst().used, 48 * per);
    assert_int_equal(leaf_perms(g), 0);
    assert_int_equal(p2m_check(&vm), 0);
    assert_page(g);

    /* Back again (the check value kept by the drop is right). */
    assert_int_equal(p2m_fault(&vm, g << PAGE_SHIFT, P2M_ACCESS_X), P2M_OK);
    assert_true(e->flags & P2M_F_SWAPCACHE);
    assert_memory_equal(backend_frame(e->payload), expect[g], PG);
    assert_int_equal(vm.st.faults[PF_SWAPIN], 2);
    /* A write: the copy is stale from now on and freed, write allowed. */
    assert_int_equal(p2m_fault(&vm, g << PAGE_SHIFT, P2M_ACCESS_W), P2M_OK);
    assert_int_equal(e->state, P2M_RESIDENT);
    assert_int_equal(e->flags & P2M_F_SWAPCACHE, 0);
    assert_int_equal(leaf_perms(g), EPT_RWX);
    assert_false(swap_loc_valid(loc));
    assert_int_equal(sst().used, 47 * per);
    assert_int_equal(vm.st.swap_cache_freed, 1);
    assert_int_equal(vm.swap_cached, 0);
    assert_int_equal(p2m_check(&vm), 0);
    ((uint8_t *)backend_frame(e->payload))[100] ^= 1;
    expect[g][100] ^= 1;
    /* Dirty now: reclaim writes it out afresh. */
    uint64_t out0 = vm.st.swap_out;
    assert_int_equal(p2m_reclaim(&vm, 64, 2 * vm.ngfn), 1);
    assert_int_equal(e->state, P2M_SWAPPED);
    assert_true(md.writes > w0);
    assert_int_equal(vm.st.swap_out, out0 + 1);
    assert_int_equal(vm.st.swap_dropped, 1);
    assert_int_equal(sst().used, 48 * per);
    assert_page(g);

    /* A write fault on a swapped page: no copy kept. */
    uint64_t loc6 = p2m_peek(&vm, 6)->payload;
    assert_int_equal(p2m_fault(&vm, 6 << PAGE_SHIFT, P2M_ACCESS_W), P2M_OK);
    assert_int_equal(p2m_peek(&vm, 6)->state, P2M_RESIDENT);
    assert_int_equal(p2m_peek(&vm, 6)->flags, 0);
    assert_int_equal(leaf_perms(6), EPT_RWX);
    assert_false(swap_loc_valid(loc6));
    assert_int_equal(sst().used, 47 * per);
    assert_memory_equal(backend_frame(p2m_peek(&vm, 6)->payload), expect[6], PG);

    /* The hypervisor's pointer to a swap-cached page drops the copy. */
    uint64_t loc7 = p2m_peek(&vm, 7)->payload;
    assert_int_equal(p2m_fault(&vm, 7 << PAGE_SHIFT, P2M_ACCESS_R), P2M_OK);
    assert_true(p2m_peek(&vm, 7)->flags & P2M_F_SWAPCACHE);
    uint8_t *p = p2m_gfn_ptr(&vm, 7, false);
    assert_non_null(p);
    assert_memory_equal(p, expect[7], PG);
    assert_int_equal(p2m_peek(&vm, 7)->flags & P2M_F_SWAPCACHE, 0);
    assert_int_equal(leaf_perms(7), EPT_RWX);
    assert_false(swap_loc_valid(loc7));
    assert_int_equal(vm.st.swap_cache_freed, 2);
    /* ... and populating a swapped one brings it back writable. */
    uint64_t loc8 = p2m_peek(&vm, 8)->payload;
    p = p2m_gfn_ptr(&vm, 8, true);
    assert_non_null(p);
    assert_memory_equal(p, expect[8], PG);
    assert_int_equal(p2m_peek(&vm, 8)->state, P2M_RESIDENT);
    assert_int_equal(p2m_peek(&vm, 8)->flags & P2M_F_SWAPCACHE, 0);
    assert_false(swap_loc_valid(loc8));
    assert_int_equal(sst().used, 45 * per);
    assert_int_equal(p2m_check(&vm), 0);

    /* Some pages cached, some swapped, some resident: destroy frees all. */
    assert_int_equal(p2m_fault(&vm, 9 << PAGE_SHIFT, P2M_ACCESS_R), P2M_OK);
    assert_int_equal(p2m_fault(&vm, 10 << PAGE_SHIFT, P2M_ACCESS_R), P2M_OK);
    assert_int_equal(vm.swap_cached, 2);
    assert_int_equal(p2m_check(&vm), 0);
    for (uint64_t k = 0; k < 48; k++)
        assert_page(k);
    mm_unregister(&vm);
    p2m_destroy(&vm);
    assert_int_equal(sst().used, 0);
    assert_int_equal(backend_free_and_meta(), free0);
    assert_int_equal(sst().write_errors, 0);
    assert_int_equal(sst().read_errors, 0);
}

static void test_p2m_swap_cycle_512(void **state)
{
    (void)state;
    p2m_swap_cycle(512);
}

static void test_p2m_swap_cycle_4k(void **state)
{
    (void)state;
    p2m_swap_cycle(4096);
}

/* A write error: the batch stays resident (swap_kept), mapped as before;
 * during the back-off reclaim leaves such pages alone (a VM at its limit
 * waits); afterwards they go out. */
static void test_p2m_write_error_keeps_pages(void **state)
{
    (void)state;
    attach(512, 4096);
    assert_int_equal(mm_pool_init(0, 2048, false), 0);
    swap_set_clock(4000000000000ULL); /* a back-off of minutes */
    make_vm(64, 16, false);
    for (uint64_t g = 0; g < 16; g++)
        put_page(g, fill_random, 50 + g);
    assert_int_equal(vm.count[P2M_RESIDENT], 16);
    assert_int_equal(md.writes, 1); /* the header */
    /* The batch is 128 sectors at sector 8, two transfers: the second fails. */
    md.fail_write_lba = (int64_t)slot_lba(100);
    assert_int_equal(p2m_reclaim(&vm, 64, 2 * vm.ngfn), 0);
    assert_int_equal(md.writes, 1 + 2);
    assert_int_equal(vm.count[P2M_RESIDENT], 16);
    assert_int_equal(vm.count[P2M_SWAPPED], 0);
    assert_int_equal(vm.st.swap_kept, 16);
    assert_int_equal(vm.st.swap_out, 0);
    struct swap_stats s = sst();
    assert_int_equal(s.used, 0);
    assert_int_equal(s.write_errors, 1);
    assert_int_equal(s.out_pages, 0);
    for (uint64_t g = 0; g < 16; g++) {
        assert_int_equal(p2m_peek(&vm, g)->state, P2M_RESIDENT);
        assert_int_equal(leaf_perms(g), EPT_RWX);
        assert_int_equal(*leaf(g) & PT_ADDR_MASK, p2m_peek(&vm, g)->payload << PAGE_SHIFT);
        assert_memory_equal(backend_frame(p2m_peek(&vm, g)->payload), expect[g], PG);
    }
    assert_int_equal(p2m_check(&vm), 0);

    /* Backing off: nothing tried, a VM at its limit waits. */
    assert_false(swap_can_write());
    assert_int_equal(p2m_reclaim(&vm, 64, 2 * vm.ngfn), 0);
    assert_int_equal(md.writes, 3);
    assert_true(sst().retries_deferred > 0);
    uint64_t waits = vm.st.waits;
    assert_int_equal(p2m_fault(&vm, 20 << PAGE_SHIFT, P2M_ACCESS_W), P2M_WAIT);
    assert_int_equal(vm.st.waits, waits + 1);
    assert_int_equal(p2m_peek(&vm, 20)->state, P2M_UNPOPULATED);
    assert_int_equal(md.writes, 3);
    assert_int_equal(p2m_check(&vm), 0);

    /* Later, the device working again (a good write ends the back-off; its
     * natural end is test_write_error_backoff's): out they go. */
    md.fail_write_lba = -1;
    static uint8_t dummy[PG];
    swap_free(commit_ok(dummy));
    assert_true(swap_can_write());
    assert_int_equal(p2m_reclaim(&vm, 64, 2 * vm.ngfn), 16);
    assert_int_equal(vm.count[P2M_SWAPPED], 16);
    assert_int_equal(vm.st.swap_out, 16);
    assert_int_equal(vm.st.swap_kept, 16);
    assert_int_equal(sst().used, 16 * 8);
    assert_int_equal(p2m_check(&vm), 0);
    for (uint64_t g = 0; g < 16; g++)
        assert_page(g);
    for (uint64_t g = 0; g < 16; g++) {
        assert_int_equal(p2m_fault(&vm, g << PAGE_SHIFT, P2M_ACCESS_R), P2M_OK);
        assert_memory_equal(backend_frame(p2m_peek(&vm, g)->payload), expect[g], PG);
    }
    assert_int_equal(p2m_check(&vm), 0);
}

/* A full device under a VM: a batch goes out in part, the rest stays
 * resident (not counted as kept after an error), a VM at its limit waits;
 * pages coming back free room and swap-out resumes. */
static void test_p2m_swap_full(void **state)
{
    (void)state;
    attach(512, HDR / 512 + 60 * 8); /* 60 pages */
    assert_int_equal(mm_pool_init(0, 2048, false), 0);
    make_vm(NGFN, 16, false);
    for (uint64_t g = 0; g < 76; g++)
        put_page(g, fill_random, 3000 + g);
    assert_int_equal(vm.count[P2M_SWAPPED], 60);
    assert_int_equal(vm.count[P2M_RESIDENT], 16);
    assert_int_equal(vm.st.swap_out, 60);
    assert_int_equal(vm.st.swap_kept, 0);
    assert_true(swap_full());
    assert_false(swap_can_write());
    struct swap_stats s = sst();
    assert_int_equal(s.used, s.slots);
    assert_int_equal(s.full_events, 1);
    assert_int_equal(s.write_errors, 0);
    assert_int_equal(p2m_check(&vm), 0);
    /* Nothing more can go: a new page has to wait. */
    uint64_t w0 = md.writes, waits = vm.st.waits;
    assert_null(p2m_gfn_ptr(&vm, 76, true));
    assert_int_equal(p2m_fault(&vm, 76 << PAGE_SHIFT, P2M_ACCESS_W), P2M_WAIT);
    assert_int_equal(vm.st.waits, waits + 2);
    assert_int_equal(p2m_peek(&vm, 76)->state, P2M_UNPOPULATED);
    assert_int_equal(md.writes, w0);
    for (uint64_t g = 0; g < 76; g++)
        assert_page(g);
    /* Room for more (a larger limit), eight pages written back in: their
     * slots are free, a reclaim sends out what fits (8 of 24). */
    vm.limit = 24;
    for (uint64_t g = 0; g < 8; g++) {
        assert_int_equal(p2m_peek(&vm, g)->state, P2M_SWAPPED);
        assert_int_equal(p2m_fault(&vm, g << PAGE_SHIFT, P2M_ACCESS_W), P2M_OK);
    }
    assert_int_equal(sst().used, sst().slots - 64);
    assert_true(swap_can_write());
    assert_true(swap_full()); /* not yet a batch's worth free */
    assert_int_equal(p2m_reclaim(&vm, 64, 2 * vm.ngfn), 8);
    assert_int_equal(vm.count[P2M_SWAPPED], 60);
    assert_int_equal(vm.count[P2M_RESIDENT], 16);
    assert_int_equal(vm.st.swap_kept, 0);
    assert_int_equal(sst().full_events, 1);
    assert_int_equal(sst().used, sst().slots);
    assert_int_equal(p2m_check(&vm), 0);
    for (uint64_t g = 0; g < 76; g++)
        assert_page(g);
    mm_unregister(&vm);
    p2m_destroy(&vm);
    assert_int_equal(sst().used, 0);
    assert_false(swap_full());
}

/* A read error, a flipped byte, another page's copy in a page's place:
 * each fault is P2M_CORRUPT, the page stays swapped and unmapped, no frame
 * leaks, nothing wrong is ever mapped; repaired, the page comes back. */
static void test_p2m_read_error_and_corruption(void **state)
{
    (void)state;
    attach(512, 4096);
    assert_int_equal(mm_pool_init(0, 2048, false), 0);
    make_vm(64, 16, false);
    for (uint64_t g = 0; g < 24; g++)
        put_page(g, fill_random, 70 + g);
    reclaim_all_resident();
    assert_int_equal(vm.count[P2M_SWAPPED], 24);
    uint64_t free0 = backend_free_and_meta();
    uint8_t buf[PG];

    /* A read error. */
    uint64_t g = 3, loc = p2m_peek(&vm, g)->payload;
    md.fail_read_lba = (int64_t)slot_lba(SWAP_LOC_SLOT(loc) + 5);
    backend_log_clear();
    assert_int_equal(p2m_fault(&vm, g << PAGE_SHIFT, P2M_ACCESS_R), P2M_CORRUPT);
    assert_non_null(strstr(backend_log(), "read error"));
    assert_int_equal(p2m_peek(&vm, g)->state, P2M_SWAPPED);
    assert_int_equal(p2m_peek(&vm, g)->payload, loc);
    assert_int_equal(leaf_perms(g), 0);
    assert_int_equal(vm.st.swap_read_errors, 1);
    assert_int_equal(vm.st.faults[PF_SWAPIN], 0);
    assert_int_equal(sst().read_errors, 1);
    assert_int_equal(backend_free_and_meta(), free0);
    assert_int_equal(p2m_check(&vm), 0);
    assert_int_equal(p2m_read_page(&vm, g, buf), -1);
    assert_null(p2m_gfn_ptr(&vm, g, true));
    assert_int_equal(p2m_peek(&vm, g)->state, P2M_SWAPPED);
    assert_int_equal(backend_free_and_meta(), free0);
    md.fail_read_lba = -1;
    assert_int_equal(p2m_fault(&vm, g << PAGE_SHIFT, P2M_ACCESS_R), P2M_OK);
    assert_memory_equal(backend_frame(p2m_peek(&vm, g)->payload), expect[g], PG);
    assert_int_equal(p2m_check(&vm), 0);

    /* A byte flipped on the disk, nothing reported by it. */
    g = 9;
    loc = p2m_peek(&vm, g)->payload;
    uint64_t lba = slot_lba(SWAP_LOC_SLOT(loc) + 3);
    md_flip(lba, 100);
    free0 = backend_free_and_meta();
    backend_log_clear();
    assert_int_equal(p2m_fault(&vm, g << PAGE_SHIFT, P2M_ACCESS_R), P2M_CORRUPT);
    assert_non_null(strstr(backend_log(), "does not match its check value"));
    assert_int_equal(p2m_peek(&vm, g)->state, P2M_SWAPPED);
    assert_int_equal(p2m_peek(&vm, g)->payload, loc);
    assert_int_equal(leaf_perms(g), 0);
    assert_int_equal(vm.st.swap_corrupt, 1);
    assert_int_equal(sst().check_errors, 1);
    assert_int_equal(sst().read_errors, 3); /* the fault, p2m_read_page, p2m_gfn_ptr */
    assert_int_equal(backend_free_and_meta(), free0);
    assert_int_equal(p2m_fault(&vm, g << PAGE_SHIFT, P2M_ACCESS_W), P2M_CORRUPT);
    assert_int_equal(vm.st.swap_corrupt, 2);
    assert_int_equal(p2m_read_page(&vm, g, buf), -1);
    assert_null(p2m_gfn_ptr(&vm, g, true));
    assert_int_equal(p2m_peek(&vm, g)->state, P2M_SWAPPED);
    assert_int_equal(backend_free_and_meta(), free0);
    assert_int_equal(p2m_check(&vm), 0);
    md_flip(lba, 100);
    assert_int_equal(p2m_fault(&vm, g << PAGE_SHIFT, P2M_ACCESS_R), P2M_OK);
    assert_memory_equal(backend_frame(p2m_peek(&vm, g)->payload), expect[g], PG);

    /* Two pages' copies exchanged on the disk: each is caught. */
    uint64_t a = 10, b = 11;
    uint8_t *pa = slot_ptr(SWAP_LOC_SLOT(p2m_peek(&vm, a)->payload));
    uint8_t *pb = slot_ptr(SWAP_LOC_SLOT(p2m_peek(&vm, b)->payload));
    static uint8_t tmp[PG];
    memcpy(tmp, pa, PG);
    memcpy(pa, pb, PG);
    memcpy(pb, tmp, PG);
    assert_int_equal(p2m_fault(&vm, a << PAGE_SHIFT, P2M_ACCESS_R), P2M_CORRUPT);
    assert_int_equal(p2m_fault(&vm, b << PAGE_SHIFT, P2M_ACCESS_R), P2M_CORRUPT);
    assert_int_equal(vm.st.swap_corrupt, 5); /* 2 faults and p2m_gfn_ptr above */
    assert_int_equal(p2m_peek(&vm, a)->state, P2M_SWAPPED);
    assert_int_equal(p2m_peek(&vm, b)->state, P2M_SWAPPED);
    memcpy(tmp, pa, PG);
    memcpy(pa, pb, PG);
    memcpy(pb, tmp, PG);
    assert_int_equal(p2m_fault(&vm, a << PAGE_SHIFT, P2M_ACCESS_R), P2M_OK);
    assert_int_equal(p2m_fault(&vm, b << PAGE_SHIFT, P2M_ACCESS_R), P2M_OK);
    assert_memory_equal(backend_frame(p2m_peek(&vm, a)->payload), expect[a], PG);
    assert_memory_equal(backend_frame(p2m_peek(&vm, b)->payload), expect[b], PG);

    /* A swap-cached page dropped and its copy damaged afterwards: caught
     * on the next swap-in too. */
    assert_true(p2m_peek(&vm, a)->flags & P2M_F_SWAPCACHE);
    reclaim_all_resident();
    assert_int_equal(p2m_peek(&vm, a)->state, P2M_SWAPPED);
    md_flip(slot_lba(SWAP_LOC_SLOT(p2m_peek(&vm, a)->payload)), 0);
    assert_int_equal(p2m_fault(&vm, a << PAGE_SHIFT, P2M_ACCESS_R), P2M_CORRUPT);
    md_flip(slot_lba(SWAP_LOC_SLOT(p2m_peek(&vm, a)->payload)), 0);
    assert_int_equal(p2m_check(&vm), 0);
    for (uint64_t k = 0; k < 24; k++)
        assert_page(k);
    mm_unregister(&vm);
    p2m_destroy(&vm);
    assert_int_equal(sst().used, 0);
}

static uint64_t hv_frames(void)
{
    struct frame_stats fs;
    frame_get_stats(&fs);
    return fs.count[FS_HV];
}

/* A device that fails with a read outstanding (BLK_ELOST) may write into
 * its buffer at any later time. The swap-in's frame is quarantined: not
 * freed, the hypervisor's, counted; the page stays swapped (the VM would be
 * stopped). Later reads find the device failed before any transfer, so
 * their frames are freed as usual. p2m_read_page never hands the caller's
 * buffer to the device. The staging and read buffers of a device that lost
 * a request are not freed at detach. */
static void test_p2m_lost_read(void **state)
{
    (void)state;
    attach(512, 4096);
    assert_int_equal(mm_pool_init(0, 2048, false), 0);
    make_vm(64, 16, false);
    for (uint64_t g = 0; g < 24; g++)
        put_page(g, fill_random, 90 + g);
    reclaim_all_resident();
    assert_int_equal(vm.count[P2M_SWAPPED], 24);
    uint64_t free0 = backend_free_and_meta(), hv0 = hv_frames();

    uint64_t g = 3, loc = p2m_peek(&vm, g)->payload;
    md.lose_lba = (int64_t)slot_lba(SWAP_LOC_SLOT(loc) + 2);
    backend_log_clear();
    assert_int_equal(p2m_fault(&vm, g << PAGE_SHIFT, P2M_ACCESS_R), P2M_CORRUPT);
    assert_non_null(md.lost_buf);
    assert_true(md.d.failed);
    assert_int_equal(md.d.st.lost, 1);
    mfn_t lost = MFN_INVALID;
    for (mfn_t m = 0; m < FRAMES; m++)
        if (backend_frame(m) == md.lost_buf)
            lost = m;
    assert_true(lost != MFN_INVALID); /* straight into a frame of its own */
    assert_int_equal(frame_get(lost)->state, FS_HV);
    assert_int_equal(backend_free_and_meta(), free0 - 1);
    assert_int_equal(hv_frames(), hv0 + 1);
    assert_int_equal(sst().quarantined, 1);
    assert_non_null(strstr(backend_log(), "quarantined"));
    assert_int_equal(p2m_peek(&vm, g)->state, P2M_SWAPPED);
    assert_int_equal(p2m_peek(&vm, g)->payload, loc);
    assert_int_equal(leaf_perms(g), 0);
    assert_int_equal(p2m_check(&vm), 0);
    /* Nothing hands the quarantined frame out again. */
    mfn_t got[FRAMES];
    uint64_t n = 0;
    while ((got[n] = frame_alloc(FS_HV, 0)) != MFN_INVALID) {
        assert_true(got[n] != lost);
        n++;
    }
    while (n)
        frame_free(got[--n]);
    assert_int_equal(backend_free_and_meta(), free0 - 1);

    /* The device is failed now: no transfer, so no buffer at risk. */
    md.lost_buf = NULL;
    assert_int_equal(p2m_fault(&vm, 4 << PAGE_SHIFT, P2M_ACCESS_R), P2M_CORRUPT);
    assert_null(md.lost_buf);
    assert_int_equal(backend_free_and_meta(), free0 - 1);
    assert_int_equal(sst().quarantined, 1);

    /* p2m_read_page: the caller's buffer never reaches the device. */
    md.d.failed = false;
    uint64_t g5 = 5;
    md.lose_lba = (int64_t)slot_lba(SWAP_LOC_SLOT(p2m_peek(&vm, g5)->payload));
    static uint8_t buf[PG];
    assert_int_equal(p2m_read_page(&vm, g5, buf), -1);
    assert_non_null(md.lost_buf);
    assert_ptr_not_equal(md.lost_buf, buf);
    assert_int_equal(backend_free_and_meta(), free0 - 1);
    md.lose_lba = -1;
    md.d.failed = false;
    assert_page(6); /* and a good read still copies the page out */
    assert_int_equal(p2m_check(&vm), 0);

    mm_unregister(&vm);
    p2m_destroy(&vm);
    memset(&vm, 0, sizeof(vm));
    uint64_t hv1 = hv_frames();
    backend_log_clear();
    swap_detach();
    assert_non_null(strstr(backend_log(), "stay allocated"));
    /* Only the slot bitmap (one frame here) is freed: the quarantined
     * frame, the staging area and the read buffer stay. */
    assert_int_equal(hv_frames(), hv1 - 1);
    assert_int_equal(frame_get(lost)->state, FS_HV);
}

/* The pool (a small cap) fills with compressible pages; its coldest
 * objects are written back to swap as LZ4 objects and come back intact,
 * through p2m_read_page and faults; a damaged one is caught. */
static void test_pool_writeback(void **state)
{
    (void)state;
    attach(512, 8192);
    assert_int_equal(mm_pool_init(8, 2048, true), 0);
    uint64_t free0 = backend_free_and_meta();
    make_vm(NGFN, 16, true);
    for (uint64_t g = 0; g < NGFN; g++)
        put_page(g, fill_text, g);
    assert_true(vm.st.compressed > 0);
    assert_true(vm.st.swap_out_lz4 > 0);
    struct swap_stats s = sst();
    assert_true(s.out_lz4 > 0);
    assert_int_equal(s.out_lz4, vm.st.swap_out_lz4);
    assert_int_equal(s.out_pages, vm.st.swap_out);
    assert_int_equal(p2m_check(&vm), 0);
    assert_int_equal(zpool_check(), 0);
    unsigned nlz4 = 0;
    uint64_t slots = 0;
    for (uint64_t g = 0; g < NGFN; g++) {
        const struct p2m_entry *e = p2m_peek(&vm, g);
        if (e->state != P2M_SWAPPED)
            continue;
        assert_true(swap_loc_valid(e->payload));
        slots += (SWAP_LOC_LEN(e->payload) + 511) / 512;
        if (SWAP_LOC_LZ4(e->payload)) {
            nlz4++;
            assert_true(SWAP_LOC_LEN(e->payload) <= 2048);
        } else {
            assert_int_equal(SWAP_LOC_LEN(e->payload), PG);
        }
    }
    assert_true(nlz4 > 0);
    assert_int_equal(sst().used, slots);
    for (uint64_t g = 0; g < NGFN; g++)
        assert_page(g);

    /* A damaged LZ4 object is caught at its fault. */
    uint64_t bad = NGFN;
    for (uint64_t g = 0; g < NGFN && bad == NGFN; g++)
        if (p2m_peek(&vm, g)->state == P2M_SWAPPED && SWAP_LOC_LZ4(p2m_peek(&vm, g)->payload))
            bad = g;
    uint64_t bloc = p2m_peek(&vm, bad)->payload;
    uint64_t lba = slot_lba(SWAP_LOC_SLOT(bloc));
    unsigned off = SWAP_LOC_LEN(bloc) / 2;
    md_flip(lba + off / 512, off % 512);
    assert_int_equal(p2m_fault(&vm, bad << PAGE_SHIFT, P2M_ACCESS_R), P2M_CORRUPT);
    assert_int_equal(p2m_peek(&vm, bad)->state, P2M_SWAPPED);
    assert_int_equal(p2m_peek(&vm, bad)->payload, bloc);
    assert_int_equal(vm.st.swap_corrupt, 1);
    uint8_t buf[PG];
    assert_int_equal(p2m_read_page(&vm, bad, buf), -1);
    md_flip(lba + off / 512, off % 512);

    /* Every page back through faults (reclaim keeps running underneath);
     * an LZ4 object's slots are freed at once (no swap cache for it). */
    uint64_t in0 = sst().in_lz4;
    for (int round = 0; round < 2; round++) {
        for (uint64_t g = 0; g < NGFN; g++) {
            const struct p2m_entry *e = p2m_peek(&vm, g);
            bool lz4 = e->state == P2M_SWAPPED && SWAP_LOC_LZ4(e->payload);
            uint64_t loc = e->payload;
            assert_int_equal(p2m_fault(&vm, g << PAGE_SHIFT, P2M_ACCESS_R), P2M_OK);
            assert_int_equal(e->state, P2M_RESIDENT);
            assert_memory_equal(backend_frame(e->payload), expect[g], PG);
            if (lz4) {
                assert_int_equal(e->flags & P2M_F_SWAPCACHE, 0);
                assert_int_equal(leaf_perms(g), EPT_RWX);
                assert_false(swap_loc_valid(loc));
            }
        }
        assert_int_equal(p2m_check(&vm), 0);
        assert_int_equal(zpool_check(), 0);
    }
    assert_true(sst().in_lz4 > in0);
    for (uint64_t g = 0; g < NGFN; g++)
        assert_page(g);
    mm_unregister(&vm);
    p2m_destroy(&vm);
    assert_int_equal(sst().used, 0);
    struct zpool_stats z;
    zpool_get_stats(&z);
    assert_int_equal(z.objects, 0);
    assert_int_equal(backend_free_and_meta() + z.frames, free0);
}

/* On a space smaller than one staging batch (hv.cfg allows swap_size =
 * 64K: 60 KiB of slots) "full" must still clear once slots come back;
 * it once waited for a whole batch's worth, more than there are. */
static void test_small_space_full_clears(void **state)
{
    (void)state;
    attach(512, (64 << 10) / 512); /* swap_size = 64K */
    assert_int_equal(sst().slots, 120);
    static uint8_t pages[15][PG];
    uint64_t loc[SWAP_STAGE_OBJECTS];
    unsigned done;
    for (unsigned i = 0; i < 15; i++) {
        fill_random(pages[i], 600 + i);
        assert_true(swap_stage(pages[i], PG, false));
    }
    assert_int_equal(swap_commit(loc, &done), SWAP_OK);
    assert_int_equal(done, 15);
    assert_true(swap_stage(pages[0], PG, false));
    uint64_t one;
    assert_int_equal(swap_commit(&one, &done), SWAP_FULL);
    assert_true(swap_full());
    for (unsigned i = 0; i < 15; i++)
        swap_free(loc[i]);
    assert_int_equal(sst().used, 0);
    assert_true(swap_can_write());
    assert_false(swap_full()); /* a quarter of a space smaller than a batch */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_attach_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_4k_sectors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_sectors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fragmented, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_error_backoff, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_error_scattered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_p2m_swap_cycle_512, setup, teardown),
        cmocka_unit_test_setup_teardown(test_p2m_swap_cycle_4k, setup, teardown),
        cmocka_unit_test_setup_teardown(test_p2m_write_error_keeps_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_p2m_swap_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_p2m_read_error_and_corruption, setup, teardown),
        cmocka_unit_test_setup_teardown(test_p2m_lost_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_writeback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_space_full_clears, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

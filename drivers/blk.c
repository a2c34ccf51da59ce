/* Checks, splitting, timing and statistics common to every block device
 * (blk.h). Pure C: also built into the host tests with a memory disk. */
#include "drivers/blk.h"
#include "lib/fmt.h"
#include "lib/log.h"
#include "lib/string.h"

static struct blkdev *devs[BLK_MAX_DEVICES];
static int ndevs;

static inline uint64_t now(void)
{
    return __builtin_ia32_rdtsc();
}

const char *blk_strerror(int err)
{
    switch (err) {
    case BLK_OK: return "ok";
    case BLK_EIO: return "I/O error";
    case BLK_ETIMEDOUT: return "timed out";
    case BLK_ERANGE: return "request outside the device or misaligned";
    case BLK_ENODEV: return "device failed";
    case BLK_ELOST: return "device failed with the transfer outstanding";
    default: return "unknown error";
    }
}

static int transfer(struct blkdev *d, bool write, uint64_t lba, uint64_t count, void *buf)
{
    if (!d || !d->ops || !d->ops->rw)
        return BLK_ENODEV;
    if (d->failed)
        return BLK_ENODEV;
    if (!count || lba >= d->sectors || count > d->sectors - lba || ((uintptr_t)buf & 3)) {
        fmt_snprintf(d->last_error, sizeof(d->last_error),
                     "bad request: %llu sectors at %llu of %llu, buffer %p",
                     (unsigned long long)count, (unsigned long long)lba,
                     (unsigned long long)d->sectors, buf);
        d->st.errors++;
        return BLK_ERANGE;
    }
    uint8_t *p = buf;
    uint32_t max = d->max_sectors ? d->max_sectors : 1;
    while (count) {
        uint32_t n = count > max ? max : (uint32_t)count;
        uint64_t t0 = now();
        int r = d->ops->rw(d, write, lba, n, p);
        if (r == BLK_ETIMEDOUT) {
            /* The driver reset the device, which dropped the request: a
             * read or write of whole sectors can simply be issued again. */
            d->st.timeouts++;
            pr_warn(LS_DRV, "%s: %s; %s of %u sectors at %llu issued again after the reset",
                    d->name, d->last_error, write ? "write" : "read", n,
                    (unsigned long long)lba);
            r = d->ops->rw(d, write, lba, n, p);
        }
        uint64_t dt = now() - t0;
        if (write) {
            d->st.writes++;
            d->st.write_cycles += dt;
        } else {
            d->st.reads++;
            d->st.read_cycles += dt;
        }
        if (r) {
            d->st.errors++;
            if (r == BLK_ETIMEDOUT)
                d->st.timeouts++;
            if (r == BLK_ELOST)
                d->st.lost++;
            pr_err(LS_DRV, "%s: %s of %u sectors at %llu failed: %s (%s)", d->name,
                   write ? "write" : "read", n, (unsigned long long)lba, blk_strerror(r),
                   d->last_error[0] ? d->last_error : "no detail");
            return r;
        }
        if (write)
            d->st.write_sectors += n;
        else
            d->st.read_sectors += n;
        lba += n;
        count -= n;
        p += (uint64_t)n * d->sector_size;
    }
    return BLK_OK;
}

int blk_read(struct blkdev *d, uint64_t lba, uint64_t count, void *buf)
{
    return transfer(d, false, lba, count, buf);
}

int blk_write(struct blkdev *d, uint64_t lba, uint64_t count, const void *buf)
{
    return transfer(d, true, lba, count, (void *)(uintptr_t)buf);
}

int blk_read_buf(struct blkdev *d, uint64_t lba, uint64_t count, void *buf, uint64_t buf_bytes)
{
    if (!d)
        return BLK_ENODEV;
    if (!d->sector_size || count > buf_bytes / d->sector_size) {
        fmt_snprintf(d->last_error, sizeof(d->last_error),
                     "%llu sectors of %u bytes do not fit a %llu-byte buffer: nothing read",
                     (unsigned long long)count, d->sector_size, (unsigned long long)buf_bytes);
        d->st.errors++;
        pr_err(LS_DRV, "%s: %s", d->name, d->last_error);
        return BLK_ERANGE;
    }
    return transfer(d, false, lba, count, buf);
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int blk_mbr_partition(struct blkdev *d, unsigned n, uint64_t *first, uint64_t *count)
{
    static uint8_t mbr[4096] __attribute__((aligned(4096)));
    if (n < 1 || n > 4) {
        pr_err(LS_DRV, "%s: partition %u is not an MBR primary partition (1 .. 4)", d->name, n);
        return -1;
    }
    /* The table is in the first 512 bytes, but a read is a whole sector:
     * a larger one would not fit the buffer. */
    if (d->sector_size < 512 || d->sector_size > sizeof(mbr)) {
        pr_err(LS_DRV, "%s: %u-byte sectors: the partition table reader needs 512 .. %u "
                       "(nothing read)", d->name, d->sector_size, (unsigned)sizeof(mbr));
        return -1;
    }
    if (blk_read_buf(d, 0, 1, mbr, sizeof(mbr))) {
        pr_err(LS_DRV, "%s: cannot read the partition table", d->name);
        return -1;
    }
    const uint8_t *e = mbr + 446 + 16 * (n - 1);
    bool sig = mbr[510] == 0x55 && mbr[511] == 0xaa;
    uint32_t lba = le32(e + 8), len = le32(e + 12);
    if (!sig || e[4] == 0 || e[4] == 0xee || !len) {
        pr_err(LS_DRV, "%s has no MBR primary partition %u%s", d->name, n,
               sig && e[4] == 0xee ? " (a GPT protective entry: GPT is not supported)" : "");
        return -1;
    }
    if (lba >= d->sectors || len > d->sectors - lba) {
        pr_err(LS_DRV, "%s: partition %u (sectors %u + %u) runs past the end of the device",
               d->name, n, lba, len);
        return -1;
    }
    *first = lba;
    *count = len;
    return 0;
}

int blk_flush(struct blkdev *d)
{
    if (!d || d->failed)
        return BLK_ENODEV;
    d->st.flushes++;
    if (!d->ops->flush)
        return BLK_OK;
    int r = d->ops->flush(d);
    if (r) {
        d->st.errors++;
        pr_err(LS_DRV, "%s: flush failed: %s (%s)", d->name, blk_strerror(r), d->last_error);
    }
    return r;
}

int blk_register(struct blkdev *d)
{
    if (ndevs >= BLK_MAX_DEVICES) {
        pr_warn(LS_DRV, "%s: more than %d block devices: ignored", d->name, BLK_MAX_DEVICES);
        return -1;
    }
    devs[ndevs++] = d;
    return 0;
}

struct blkdev *blk_find(const char *name)
{
    for (int i = 0; i < ndevs; i++)
        if (!strcmp(devs[i]->name, name))
            return devs[i];
    return NULL;
}

int blk_count(void)
{
    return ndevs;
}

struct blkdev *blk_get(int i)
{
    return i >= 0 && i < ndevs ? devs[i] : NULL;
}

void blk_reset_registry(void)
{
    ndevs = 0;
}

void blk_print(const struct blkdev *d)
{
    char a[16];
    pr_info(LS_DRV, "%s: %s '%s', %s, %u-byte sectors, %llu sectors, at most %u per transfer",
            d->name, d->kind, d->model,
            fmt_size(a, sizeof(a), d->sectors * (unsigned long long)d->sector_size),
            d->sector_size, (unsigned long long)d->sectors, d->max_sectors);
}

/* The pattern of sector lba in round r: every 8-byte word names the
 * sector, its place and the round, so a misdirected or shifted transfer
 * shows. */
static void fill(uint8_t *p, uint64_t lba, uint64_t n, uint32_t ss, uint32_t r)
{
    for (uint64_t s = 0; s < n; s++)
        for (uint32_t w = 0; w < ss / 8; w++)
            ((uint64_t *)(p + s * ss))[w] =
                ((lba + s) << 20) ^ ((uint64_t)w << 4) ^ ((uint64_t)r << 56) ^ 0x5a5a0000a5a5ULL;
}

static uint64_t check(struct blkdev *d, uint8_t *p, uint64_t lba, uint64_t n, uint32_t r,
                      uint64_t *bad)
{
    uint32_t ss = d->sector_size;
    for (uint64_t s = 0; s < n; s++)
        for (uint32_t w = 0; w < ss / 8; w++) {
            uint64_t want = ((lba + s) << 20) ^ ((uint64_t)w << 4) ^ ((uint64_t)r << 56) ^
                            0x5a5a0000a5a5ULL;
            uint64_t got = ((uint64_t *)(p + s * ss))[w];
            if (got != want) {
                if ((*bad)++ < 4)
                    pr_err(LS_DRV, "%s self-test: sector %llu word %u reads %#llx, wrote %#llx",
                           d->name, (unsigned long long)(lba + s), w,
                           (unsigned long long)got, (unsigned long long)want);
                return 1;
            }
        }
    return 0;
}

/* Writes then reads back n sectors at lba through buffer offset off. */
static uint64_t roundtrip(struct blkdev *d, uint8_t *buf, uint64_t off, uint64_t lba,
                          uint64_t n, uint32_t r, uint64_t *bad)
{
    uint8_t *p = buf + off;
    fill(p, lba, n, d->sector_size, r);
    if (blk_write(d, lba, n, p)) {
        (*bad)++;
        return 1;
    }
    memset(p, 0xee, n * d->sector_size);
    if (blk_read(d, lba, n, p)) {
        (*bad)++;
        return 1;
    }
    return check(d, p, lba, n, r, bad);
}

uint64_t blk_selftest(struct blkdev *d, uint64_t lba, uint64_t count, uint8_t *buf,
                      uint64_t buf_bytes)
{
    uint32_t ss = d->sector_size;
    uint64_t bad = 0, fails = 0, room = buf_bytes > 4096 && ss ? (buf_bytes - 4096) / ss : 0;
    if (!count)
        return 1;
    if (room < 8) {
        pr_err(LS_DRV, "%s self-test: %u-byte sectors need %llu bytes of scratch, it has %llu: "
                       "nothing tested", d->name, ss, 8ULL * ss + 4096,
               (unsigned long long)buf_bytes);
        return 1;
    }
    /* Sizes in sectors and buffer offsets: one sector; exactly one page;
     * a page and a sector from an odd offset (two PRP pages); 9 pages
     * from an offset (a PRP list); more than one transfer (split). */
    struct { uint64_t n, off; } cases[] = {
        { 1, 0 }, { 1, 512 }, { 4096 / ss, 0 }, { 4096 / ss + 1, 1536 },
        { 9 * 4096 / ss, 0 }, { 9 * 4096 / ss + 3, 2560 },
        { (uint64_t)d->max_sectors + 5, 512 }, { 64 * 1024 / ss, 0 },
    };
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t n = cases[i].n;
        if (!n || n > count || n > room || cases[i].off % ss)
            continue;
        uint64_t at = lba + (count - n) * i / 8; /* spread over the range */
        fails += roundtrip(d, buf, cases[i].off, at, n, i + 1, &bad);
    }
    /* The whole range in large transfers: all written before any is read
     * back, so that a transfer landing on the wrong sectors shows. */
    uint64_t chunk = room < 1024 ? room : 1024;
    for (int pass = 0; pass < 2; pass++)
        for (uint64_t at = lba; at < lba + count; at += chunk) {
            uint64_t n = lba + count - at < chunk ? lba + count - at : chunk;
            if (pass == 0) {
                fill(buf, at, n, ss, 99);
                if (blk_write(d, at, n, buf))
                    fails++, bad++;
            } else {
                memset(buf, 0xee, n * ss);
                if (blk_read(d, at, n, buf))
                    fails++, bad++;
                else
                    fails += check(d, buf, at, n, 99, &bad);
            }
        }
    if (blk_flush(d))
        fails++;
    return fails;
}

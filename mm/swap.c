/* Swap space on a block device (swap.h). */
#include "mm/swap.h"
#include "lib/fmt.h"
#include "lib/log.h"
#include "lib/string.h"
#include "mm/frame.h"
#include "mm/hash.h"
#include "mm/mm_backend.h"

#define HDR_BYTES 4096u
#define HDR_VERSION 1u

/* The on-disk header, at the start of the swap space. */
struct swap_header {
    char magic[8];         /* SWAP_MAGIC */
    uint32_t version;
    uint32_t slot_bytes;
    uint64_t slots;        /* data slots after the header */
    uint64_t first_sector; /* where the space starts on the device */
    uint32_t check;        /* XXH32 of the fields above */
};

static struct {
    struct blkdev *dev;
    uint64_t first;         /* device sector of the header */
    uint32_t slot_bytes;    /* max(512, sector size) */
    uint32_t spslot;        /* device sectors per slot */
    uint64_t data_sector;   /* device sector of slot 0 */
    uint64_t slots;
    uint64_t *bitmap;       /* one bit per slot, set = in use */
    mfn_t bitmap_mfn;
    uint64_t bitmap_frames;
    uint64_t cursor;        /* next-fit: where the next run search starts */
    /* Staging: objects packed at slot boundaries, written in one I/O. */
    uint8_t *stage;
    mfn_t stage_mfn;
    uint64_t stage_bytes;
    unsigned nstaged;
    uint32_t st_off[SWAP_STAGE_OBJECTS], st_len[SWAP_STAGE_OBJECTS];
    bool st_lz4[SWAP_STAGE_OBJECTS];
    uint8_t *bounce;        /* reads of LZ4 objects */
    mfn_t bounce_mfn;
    bool full;
    bool read_lost;         /* the last swap_read was left outstanding (BLK_ELOST) */
    bool io_lost;           /* some request was: stage and bounce are never freed */
    bool full_reported;     /* this full episode's line passed the rate limit */
    /* Machine-wide buckets: the device is one for all VMs, so its state
     * lines are the machine's (a VM that fills it makes the same event any
     * VM would; the counts in st stay exact). */
    struct log_limit log_full;
    uint64_t hz, retry_at, backoff;
    uint64_t last_print, last_out, last_in;
    struct swap_stats st;
} sw;

static uint64_t slots_for(unsigned len)
{
    return (len + sw.slot_bytes - 1) / sw.slot_bytes;
}

static bool bit(uint64_t i)
{
    return sw.bitmap[i / 64] >> (i % 64) & 1;
}

static void set_bits(uint64_t first, uint64_t n, bool on)
{
    for (uint64_t i = first; i < first + n; i++) {
        if (on)
            sw.bitmap[i / 64] |= 1ULL << (i % 64);
        else
            sw.bitmap[i / 64] &= ~(1ULL << (i % 64));
    }
    if (on)
        sw.st.used += n;
    else
        sw.st.used -= n;
}

/* n consecutive free slots, searched next-fit from the cursor (so that
 * consecutive batches land next to each other), or UINT64_MAX. */
static uint64_t alloc_run(uint64_t n)
{
    if (!n || n > sw.slots - sw.st.used)
        return UINT64_MAX;
    for (int pass = 0; pass < 2; pass++) {
        uint64_t start = pass ? 0 : sw.cursor, end = pass ? sw.cursor + n : sw.slots;
        if (end > sw.slots)
            end = sw.slots;
        uint64_t run = 0;
        for (uint64_t i = start; i < end; i++) {
            if (!(i % 64) && sw.bitmap[i / 64] == ~0ULL) {
                run = 0;
                i += 63; /* a full word: skip it */
                continue;
            }
            if (bit(i)) {
                run = 0;
                continue;
            }
            if (++run == n) {
                uint64_t first = i + 1 - n;
                set_bits(first, n, true);
                sw.cursor = i + 1 < sw.slots ? i + 1 : 0;
                return first;
            }
        }
    }
    return UINT64_MAX;
}

static uint64_t sector_of(uint64_t slot)
{
    return sw.data_sector + slot * sw.spslot;
}

static uint32_t header_check(const struct swap_header *h)
{
    return hash32(h, __builtin_offsetof(struct swap_header, check), 0);
}

static void free_buffers(void)
{
    if (sw.bitmap)
        frame_free_contig(sw.bitmap_mfn, sw.bitmap_frames);
    if (sw.io_lost && (sw.stage || sw.bounce)) {
        /* A failed device may still access them: they stay the
         * hypervisor's for good. */
        sw.st.quarantined += (sw.stage ? SWAP_STAGE_PAGES : 0) + (sw.bounce ? 1 : 0);
        pr_warn(LS_MM, "swap: the staging and read buffers stay allocated: %s failed with a "
                       "request outstanding", sw.dev ? sw.dev->name : "the device");
        sw.stage = sw.bounce = NULL;
    }
    if (sw.stage)
        frame_free_contig(sw.stage_mfn, SWAP_STAGE_PAGES);
    if (sw.bounce)
        frame_free(sw.bounce_mfn);
    sw.bitmap = NULL;
    sw.stage = sw.bounce = NULL;
}

static void *alloc_buffer(uint64_t frames, mfn_t *m)
{
    *m = frames == 1 ? frame_alloc(FS_HV, 0) : frame_alloc_contig(frames, 1, FS_HV, 0);
    return *m == MFN_INVALID ? NULL : mm_phys_to_virt(*m << PAGE_SHIFT);
}

int swap_check_device(const struct blkdev *d)
{
    uint32_t ss = d->sector_size;
    /* A slot, the header and every read land in 4 KiB buffers. */
    if (ss < 512 || ss > HDR_BYTES || HDR_BYTES % ss) {
        pr_err(LS_MM, "swap: %s: %u-byte sectors: swap needs 512 .. 4096 (nothing read or "
                      "written)", d->name, ss);
        return -1;
    }
    return 0;
}

int swap_attach(struct blkdev *d, uint64_t first, uint64_t count, bool format)
{
    char a[16];
    uint32_t ss = d->sector_size;
    if (swap_check_device(d))
        return -1;
    memset(&sw, 0, sizeof(sw));
    sw.dev = d;
    sw.first = first;
    sw.slot_bytes = ss < 512 ? 512 : ss;
    sw.spslot = sw.slot_bytes / ss;
    sw.data_sector = first + HDR_BYTES / ss;
    uint64_t bytes = count * ss;
    if (bytes < HDR_BYTES + PAGE_SIZE) {
        pr_err(LS_MM, "swap: %s is too small for swap (%s)", d->name,
               fmt_size(a, sizeof(a), bytes));
        sw.dev = NULL;
        return -1;
    }
    sw.slots = (bytes - HDR_BYTES) / sw.slot_bytes;
    sw.bitmap_frames = ((sw.slots + 63) / 64 * 8 + PAGE_SIZE - 1) / PAGE_SIZE;
    sw.bitmap = alloc_buffer(sw.bitmap_frames, &sw.bitmap_mfn);
    sw.stage = alloc_buffer(SWAP_STAGE_PAGES, &sw.stage_mfn);
    sw.bounce = alloc_buffer(1, &sw.bounce_mfn);
    if (!sw.bitmap || !sw.stage || !sw.bounce) {
        pr_err(LS_MM, "swap: no memory for the slot bitmap and buffers");
        free_buffers();
        sw.dev = NULL;
        return -1;
    }
    /* Slots past the end of the last bitmap word do not exist. */
    for (uint64_t i = sw.slots; i % 64; i++)
        sw.bitmap[i / 64] |= 1ULL << (i % 64);
    /* The header: ours, or nothing we may overwrite. */
    struct swap_header *h = (struct swap_header *)sw.bounce;
    int r = blk_read_buf(d, first, HDR_BYTES / ss, sw.bounce, PAGE_SIZE);
    if (r) {
        sw.io_lost = r == BLK_ELOST;
        pr_err(LS_MM, "swap: cannot read the swap header of %s", d->name);
        goto fail;
    }
    bool ours = !memcmp(h->magic, SWAP_MAGIC, 8) && h->check == header_check(h);
    if (!ours && !format) {
        pr_err(LS_MM, "swap: %s at sector %llu has no hypervisor swap header: refusing to "
                      "overwrite it (say swap_format = yes in hv.cfg to format it)",
               d->name, (unsigned long long)first);
        goto fail;
    }
    bool same = ours && h->version == HDR_VERSION && h->slot_bytes == sw.slot_bytes &&
                h->slots == sw.slots && h->first_sector == first;
    if (!same) {
        memset(sw.bounce, 0, HDR_BYTES);
        memcpy(h->magic, SWAP_MAGIC, 8);
        h->version = HDR_VERSION;
        h->slot_bytes = sw.slot_bytes;
        h->slots = sw.slots;
        h->first_sector = first;
        h->check = header_check(h);
        r = blk_write(d, first, HDR_BYTES / ss, sw.bounce);
        if (r || blk_flush(d)) {
            sw.io_lost = r == BLK_ELOST;
            pr_err(LS_MM, "swap: cannot write the swap header of %s", d->name);
            goto fail;
        }
    }
    sw.st.slots = sw.slots;
    sw.st.slot_bytes = sw.slot_bytes;
    sw.backoff = 0;
    pr_info(LS_MM, "swap: %s, %s in %llu slots of %u bytes (header %s), batches of up to %u "
                   "pages in one write",
            d->name, fmt_size(a, sizeof(a), sw.slots * sw.slot_bytes),
            (unsigned long long)sw.slots, sw.slot_bytes,
            !ours ? "written: formatted" : same ? "found" : "found, geometry updated",
            SWAP_STAGE_PAGES);
    return 0;
fail:
    free_buffers();
    sw.dev = NULL;
    return -1;
}

void swap_detach(void)
{
    free_buffers();
    memset(&sw, 0, sizeof(sw));
}

bool swap_enabled(void)
{
    return sw.dev != NULL;
}

void swap_set_clock(uint64_t hz)
{
    sw.hz = hz;
}

bool swap_can_write(void)
{
    if (!sw.dev || sw.dev->failed)
        return false;
    /* Room for one more whole page: a batch takes what fits. */
    if (sw.slots - sw.st.used < PAGE_SIZE / sw.slot_bytes)
        return false;
    if (sw.retry_at && mm_now() < sw.retry_at) {
        sw.st.retries_deferred++;
        return false;
    }
    return true;
}

bool swap_full(void)
{
    return sw.full;
}

bool swap_stage(const void *data, unsigned len, bool lz4)
{
    uint64_t off = sw.nstaged ? sw.st_off[sw.nstaged - 1] +
                                    slots_for(sw.st_len[sw.nstaged - 1]) * sw.slot_bytes
                              : 0;
    if (!sw.dev || !len || len > PAGE_SIZE || sw.nstaged >= SWAP_STAGE_OBJECTS ||
        off + len > (uint64_t)SWAP_STAGE_PAGES * PAGE_SIZE)
        return false;
    memcpy(sw.stage + off, data, len);
    /* The tail of the last slot is written too: make it deterministic. */
    uint64_t end = off + slots_for(len) * sw.slot_bytes;
    memset(sw.stage + off + len, 0, end - off - len);
    sw.st_off[sw.nstaged] = (uint32_t)off;
    sw.st_len[sw.nstaged] = len;
    sw.st_lz4[sw.nstaged] = lz4;
    sw.nstaged++;
    sw.stage_bytes = end;
    return true;
}

unsigned swap_staged(void)
{
    return sw.nstaged;
}

static void note_full(void)
{
    if (sw.full)
        return;
    sw.full = true;
    sw.st.full_events++;
    /* Full and "room again" can alternate as fast as a guest brings pages
     * back and reclaim sends others out: rate-limited, as one pair. */
    sw.full_reported = log_limit_pass(&sw.log_full, LS_MM, LOG_WARN, NULL, "swap full");
    if (sw.full_reported)
        pr_warn(LS_MM, "swap: %s is full (%llu of %llu slots in use): swap-out stops until "
                       "pages come back; guests keep running on what is resident",
                sw.dev->name, (unsigned long long)sw.st.used, (unsigned long long)sw.slots);
}

static int write_run(uint64_t slot, const uint8_t *from, uint64_t nslots)
{
    uint64_t t0 = mm_now();
    int r = blk_write(sw.dev, sector_of(slot), nslots * sw.spslot, from);
    if (r == BLK_ELOST)
        sw.io_lost = true; /* the device may still read the staging area */
    sw.st.write_cycles += mm_now() - t0;
    sw.st.writes++;
    return r;
}

/* After a failed write: nothing goes out for a while, doubling up to 8 s,
 * so a failing device is not hammered from every fault. */
static void back_off(void)
{
    sw.st.write_errors++;
    uint64_t hz = sw.hz ? sw.hz : 1000000000ULL;
    sw.backoff = sw.backoff ? sw.backoff * 2 : hz / 4;
    if (sw.backoff > 8 * hz)
        sw.backoff = 8 * hz;
    sw.retry_at = mm_now() + sw.backoff;
    /* No rate limit needed: a failure starts a back-off of at least 1/4 s
     * during which nothing is written, so this line comes at most 4 times
     * a second, and a guest cannot make writes fail. */
    pr_warn(LS_MM, "swap: write to %s failed: the pages stay resident; next try in %llu ms",
            sw.dev->name, (unsigned long long)(sw.backoff * 1000 / hz));
}

static void count_out(unsigned n)
{
    /* The peak counts slots holding data, not runs reserved for a write
     * that then failed. */
    if (sw.st.used > sw.st.peak_used)
        sw.st.peak_used = sw.st.used;
    for (unsigned i = 0; i < n; i++) {
        if (sw.st_lz4[i])
            sw.st.out_lz4++;
        else
            sw.st.out_pages++;
        sw.st.out_bytes += sw.st_len[i];
    }
}

enum swap_result swap_commit(uint64_t *loc, unsigned *done)
{
    unsigned n = sw.nstaged;
    sw.nstaged = 0;
    *done = 0;
    if (!sw.dev)
        return SWAP_OFF;
    if (!n)
        return SWAP_OK;
    uint64_t total = sw.stage_bytes / sw.slot_bytes;
    uint64_t run = alloc_run(total);
    if (run != UINT64_MAX) {
        /* Clustered: the whole batch in one run, one write. */
        if (write_run(run, sw.stage, total)) {
            set_bits(run, total, false);
            back_off();
            return SWAP_EIO;
        }
        for (unsigned i = 0; i < n; i++)
            loc[i] = SWAP_LOC(run + sw.st_off[i] / sw.slot_bytes, sw.st_len[i], sw.st_lz4[i]);
        sw.st.clustered++;
    } else {
        /* Fragmented or nearly full: a run and a write per object, as many
         * as fit. */
        unsigned k = 0;
        for (; k < n; k++) {
            uint64_t want = slots_for(sw.st_len[k]);
            uint64_t s = alloc_run(want);
            if (s == UINT64_MAX)
                break;
            if (write_run(s, sw.stage + sw.st_off[k], want)) {
                set_bits(s, want, false);
                for (unsigned i = 0; i < k; i++)
                    swap_free(loc[i]);
                back_off();
                return SWAP_EIO;
            }
            loc[k] = SWAP_LOC(s, sw.st_len[k], sw.st_lz4[k]);
        }
        sw.st.scattered++;
        sw.backoff = 0;
        sw.retry_at = 0;
        count_out(k);
        *done = k;
        if (k < n) {
            note_full();
            return SWAP_FULL;
        }
        return SWAP_OK;
    }
    sw.backoff = 0;
    sw.retry_at = 0;
    count_out(n);
    *done = n;
    return SWAP_OK;
}

const void *swap_read(uint64_t loc, void *page)
{
    unsigned len = SWAP_LOC_LEN(loc);
    bool lz4 = SWAP_LOC_LZ4(loc);
    void *dst = lz4 || !page ? sw.bounce : page;
    sw.read_lost = false;
    if (!sw.dev || !len || len > PAGE_SIZE)
        return NULL;
    uint64_t t0 = mm_now();
    int r = blk_read_buf(sw.dev, sector_of(SWAP_LOC_SLOT(loc)), slots_for(len) * sw.spslot,
                         dst, PAGE_SIZE);
    sw.st.read_cycles += mm_now() - t0;
    sw.st.reads++;
    if (r) {
        sw.st.read_errors++;
        if (r == BLK_ELOST)
            sw.read_lost = sw.io_lost = true;
        return NULL;
    }
    if (lz4)
        sw.st.in_lz4++;
    else
        sw.st.in_pages++;
    return dst;
}

bool swap_read_lost(void)
{
    return sw.read_lost;
}

void swap_quarantine(mfn_t m)
{
    frame_retype(m, FS_HV, 0);
    sw.st.quarantined++;
    pr_warn(LS_MM, "swap: frame %#llx quarantined: %s failed with a read into it outstanding; "
                   "it stays the hypervisor's, never reused (%llu frames so far)",
            (unsigned long long)m, sw.dev ? sw.dev->name : "the device",
            (unsigned long long)sw.st.quarantined);
}

void swap_free(uint64_t loc)
{
    uint64_t s = SWAP_LOC_SLOT(loc), k = slots_for(SWAP_LOC_LEN(loc));
    MM_ASSERT(sw.dev && s + k <= sw.slots);
    for (uint64_t i = s; i < s + k; i++)
        MM_ASSERT(bit(i));
    set_bits(s, k, false);
    /* Reported out of "full" once a whole batch fits again, or a quarter
     * of a space smaller than a batch is free (writes resume as soon as
     * one page fits: swap_can_write). */
    uint64_t mark = (uint64_t)SWAP_STAGE_PAGES * PAGE_SIZE / sw.slot_bytes;
    if (mark > sw.slots / 4)
        mark = sw.slots / 4;
    if (sw.full && sw.slots - sw.st.used >= mark) {
        sw.full = false;
        if (sw.full_reported)
            pr_info(LS_MM, "swap: %s has room again (%llu slots free): swap-out resumes",
                    sw.dev->name, (unsigned long long)(sw.slots - sw.st.used));
    }
}

bool swap_loc_valid(uint64_t loc)
{
    uint64_t s = SWAP_LOC_SLOT(loc), len = SWAP_LOC_LEN(loc);
    if (!sw.dev || !len || len > PAGE_SIZE || s + slots_for((unsigned)len) > sw.slots)
        return false;
    for (uint64_t i = s; i < s + slots_for((unsigned)len); i++)
        if (!bit(i))
            return false;
    return true;
}

uint32_t swap_check(const void *data, unsigned len, uint16_t owner, uint64_t gfn)
{
    return hash32(data, len, (uint32_t)(gfn * 0x9e3779b1u) ^ ((uint32_t)owner << 16) ^
                                 (uint32_t)(gfn >> 32));
}

void swap_note_check_error(void)
{
    sw.st.check_errors++;
}

void swap_get_stats(struct swap_stats *st)
{
    *st = sw.st;
}

void swap_print(void)
{
    if (!sw.dev)
        return;
    char a[16], b[16];
    struct swap_stats *s = &sw.st;
    uint64_t now = mm_now(), out = s->out_pages + s->out_lz4, in = s->in_pages + s->in_lz4;
    uint64_t dt = sw.last_print ? now - sw.last_print : 0;
    uint64_t out_rate = dt && sw.hz ? (out - sw.last_out) * sw.hz / dt : 0;
    uint64_t in_rate = dt && sw.hz ? (in - sw.last_in) * sw.hz / dt : 0;
    sw.last_print = now;
    sw.last_out = out;
    sw.last_in = in;
    pr_info(LS_MM, "swap: %s slots used %llu free %llu (%s of %s, peak %llu)%s; out %llu pages + "
                   "%llu pool objects (%llu/s), in %llu + %llu (%llu/s); writes %llu (%llu in one "
                   "run, %llu split) reads %llu; errors write %llu read %llu check %llu; deferred "
                   "%llu; cycles per write %llu per read %llu",
            sw.dev->name, (unsigned long long)s->used, (unsigned long long)(sw.slots - s->used),
            fmt_size(a, sizeof(a), s->used * sw.slot_bytes),
            fmt_size(b, sizeof(b), sw.slots * sw.slot_bytes), (unsigned long long)s->peak_used,
            sw.full ? " FULL" : "", (unsigned long long)s->out_pages,
            (unsigned long long)s->out_lz4, (unsigned long long)out_rate,
            (unsigned long long)s->in_pages, (unsigned long long)s->in_lz4,
            (unsigned long long)in_rate, (unsigned long long)s->writes,
            (unsigned long long)s->clustered, (unsigned long long)s->scattered,
            (unsigned long long)s->reads, (unsigned long long)s->write_errors,
            (unsigned long long)s->read_errors, (unsigned long long)s->check_errors,
            (unsigned long long)s->retries_deferred,
            (unsigned long long)(s->writes ? s->write_cycles / s->writes : 0),
            (unsigned long long)(s->reads ? s->read_cycles / s->reads : 0));
    log_limit_report(&sw.log_full, LS_MM, NULL, "swap full");
}

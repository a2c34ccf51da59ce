/* The compressed pool (see zpool.h for the layout). Single-threaded like
 * the rest of mm/: the hypervisor runs its memory manager on one CPU. */
#include "mm/zpool.h"
#include "lib/log.h"
#include "lib/string.h"
#include "mm/mm_backend.h"

#define ZP_NONE 0xffffffffu
#define ZP_MAGIC 0x5a50      /* "ZP" */
#define ZP_FREE_FLOOR 32     /* frames the pool never takes: page tables, faults */
#define H_LEN_SHIFT 48
#define H_LOC_MASK ((1ULL << H_LEN_SHIFT) - 1)

static uint64_t make_handle(uint32_t zs, unsigned slot, unsigned len)
{
    return (uint64_t)len << H_LEN_SHIFT | (uint64_t)zs << 7 | slot;
}

struct zp_hdr {
    uint16_t magic;
    uint16_t len;            /* compressed bytes after the header */
    uint16_t owner;
    uint16_t gfn_hi;
    uint32_t gfn_lo;
    uint32_t check;
};
_Static_assert(sizeof(struct zp_hdr) == ZP_HDR, "zpool header size");

struct zspage {
    uint32_t mfn[ZP_MAX_ZSPAGE_FRAMES];
    uint32_t next, prev;     /* class partial list; next also links free descriptors */
    uint16_t inuse;
    uint8_t cls;
    uint8_t live;
    uint32_t pad;
    uint64_t used[ZP_MAX_OBJS / 64];
};
_Static_assert(sizeof(struct zspage) == 48, "zspage descriptor size");

struct zclass {
    uint16_t size;           /* slot bytes, header included */
    uint16_t objs;           /* slots per zspage */
    uint8_t frames;          /* frames per zspage */
    uint32_t partial;        /* zspages with a free slot */
    uint64_t zspages, inuse;
};

static struct {
    bool on;
    uint64_t cap;
    struct zspage *desc;
    uint64_t ndesc;
    mfn_t desc_first;
    uint64_t desc_frames;
    uint32_t free_desc;
    zpool_relocate_fn relocate;
    struct zclass cls[ZP_NCLASSES];
    struct zpool_stats st;
} zp;

/* Frame count per zspage: the one (1..4) that leaves the smallest share of
 * the zspage unused, fewer frames on a tie. */
static void setup_class(struct zclass *c, unsigned size)
{
    uint64_t best_waste = ~0ULL;
    c->size = (uint16_t)size;
    for (unsigned n = 1; n <= ZP_MAX_ZSPAGE_FRAMES; n++) {
        unsigned objs = (unsigned)(n * PAGE_SIZE / size);
        if (objs > ZP_MAX_OBJS)
            objs = ZP_MAX_OBJS;
        if (!objs)
            continue;
        uint64_t waste = (n * PAGE_SIZE - objs * size) * 4096 / (n * PAGE_SIZE);
        if (waste < best_waste) {
            best_waste = waste;
            c->frames = (uint8_t)n;
            c->objs = (uint16_t)objs;
        }
    }
    c->partial = ZP_NONE;
}

int zpool_init(uint64_t cap_frames, zpool_relocate_fn relocate)
{
    memset(&zp, 0, sizeof(zp));
    zp.relocate = relocate;
    zp.free_desc = ZP_NONE;
    for (unsigned i = 0; i < ZP_NCLASSES; i++)
        setup_class(&zp.cls[i], (i + 1) * ZP_CLASS_STEP);
    if (!cap_frames)
        return 0;
    if (cap_frames > (ZP_NONE >> 7))
        cap_frames = ZP_NONE >> 7; /* handles must fit 32 bits of index */
    zp.desc_frames = (cap_frames * sizeof(struct zspage) + PAGE_SIZE - 1) >> PAGE_SHIFT;
    zp.desc_first = frame_alloc_contig(zp.desc_frames, 1, FS_HV, 0);
    if (zp.desc_first == MFN_INVALID)
        return -1;
    zp.desc = mm_phys_to_virt(zp.desc_first << PAGE_SHIFT);
    zp.ndesc = cap_frames; /* every zspage holds at least one frame */
    for (uint64_t i = zp.ndesc; i-- > 0;) {
        zp.desc[i].next = zp.free_desc;
        zp.free_desc = (uint32_t)i;
    }
    zp.cap = cap_frames;
    zp.st.cap_frames = cap_frames;
    zp.on = true;
    return 0;
}

void zpool_fini(void)
{
    if (!zp.on)
        return;
    MM_ASSERT(zp.st.objects == 0 && zp.st.frames == 0);
    frame_free_contig(zp.desc_first, zp.desc_frames);
    zp.on = false;
}

bool zpool_enabled(void)
{
    return zp.on;
}

static unsigned class_of(unsigned bytes)
{
    return (bytes + ZP_CLASS_STEP - 1) / ZP_CLASS_STEP - 1;
}

/* ---- zspage byte access: objects may straddle frames ---------------------- */

static uint8_t *zs_ptr(const struct zspage *z, unsigned off)
{
    return (uint8_t *)mm_phys_to_virt(((uint64_t)z->mfn[off >> PAGE_SHIFT] << PAGE_SHIFT) +
                                      (off & (PAGE_SIZE - 1)));
}

static void zs_read(const struct zspage *z, unsigned off, void *buf, unsigned len)
{
    uint8_t *d = buf;
    while (len) {
        unsigned chunk = (unsigned)(PAGE_SIZE - (off & (PAGE_SIZE - 1)));
        if (chunk > len)
            chunk = len;
        memcpy(d, zs_ptr(z, off), chunk);
        d += chunk, off += chunk, len -= chunk;
    }
}

static void zs_write(const struct zspage *z, unsigned off, const void *buf, unsigned len)
{
    const uint8_t *s = buf;
    while (len) {
        unsigned chunk = (unsigned)(PAGE_SIZE - (off & (PAGE_SIZE - 1)));
        if (chunk > len)
            chunk = len;
        memcpy(zs_ptr(z, off), s, chunk);
        s += chunk, off += chunk, len -= chunk;
    }
}

/* ---- lists -------------------------------------------------------------- */

static void partial_add(struct zclass *c, uint32_t i)
{
    struct zspage *z = &zp.desc[i];
    z->prev = ZP_NONE;
    z->next = c->partial;
    if (c->partial != ZP_NONE)
        zp.desc[c->partial].prev = i;
    c->partial = i;
}

static void partial_del(struct zclass *c, uint32_t i)
{
    struct zspage *z = &zp.desc[i];
    if (z->prev != ZP_NONE)
        zp.desc[z->prev].next = z->next;
    else
        c->partial = z->next;
    if (z->next != ZP_NONE)
        zp.desc[z->next].prev = z->prev;
    z->next = z->prev = ZP_NONE;
}

/* A new empty zspage for class ci, or ZP_NONE (cap, frames or descriptors
 * exhausted; *why says which). */
static uint32_t zspage_new(unsigned ci, enum zpool_store_result *why)
{
    struct zclass *c = &zp.cls[ci];
    if (zp.st.frames + c->frames > zp.cap || zp.free_desc == ZP_NONE) {
        *why = ZP_FULL;
        return ZP_NONE;
    }
    if (frame_free_count() < (uint64_t)ZP_FREE_FLOOR + c->frames) {
        *why = ZP_NOMEM;
        return ZP_NONE;
    }
    uint32_t i = zp.free_desc;
    struct zspage *z = &zp.desc[i];
    for (unsigned f = 0; f < c->frames; f++) {
        mfn_t m = frame_alloc(FS_POOL, 0);
        if (m == MFN_INVALID) {
            while (f-- > 0)
                frame_free(z->mfn[f]);
            *why = ZP_NOMEM;
            return ZP_NONE;
        }
        z->mfn[f] = (uint32_t)m;
    }
    zp.free_desc = z->next;
    z->inuse = 0;
    z->cls = (uint8_t)ci;
    z->live = 1;
    z->used[0] = z->used[1] = 0;
    c->zspages++;
    zp.st.zspages++;
    zp.st.frames += c->frames;
    if (zp.st.frames > zp.st.peak_frames)
        zp.st.peak_frames = zp.st.frames;
    partial_add(c, i);
    return i;
}

static void zspage_release(uint32_t i)
{
    struct zspage *z = &zp.desc[i];
    struct zclass *c = &zp.cls[z->cls];
    partial_del(c, i);
    for (unsigned f = 0; f < c->frames; f++)
        frame_free(z->mfn[f]);
    c->zspages--;
    zp.st.zspages--;
    zp.st.frames -= c->frames;
    z->live = 0;
    z->next = zp.free_desc;
    zp.free_desc = i;
}

static unsigned slot_take(uint32_t i)
{
    struct zspage *z = &zp.desc[i];
    struct zclass *c = &zp.cls[z->cls];
    for (unsigned s = 0; s < c->objs; s++) {
        if (!(z->used[s / 64] & (1ULL << (s % 64)))) {
            z->used[s / 64] |= 1ULL << (s % 64);
            z->inuse++;
            c->inuse++;
            if (z->inuse == c->objs)
                partial_del(c, i);
            return s;
        }
    }
    mm_panic(__FILE__, __LINE__, "zpool: partial zspage without a free slot");
}

/* Frees a slot; returns frames released with the zspage, if it emptied. */
static uint64_t slot_put(uint32_t i, unsigned s)
{
    struct zspage *z = &zp.desc[i];
    struct zclass *c = &zp.cls[z->cls];
    bool was_full = z->inuse == c->objs;
    z->used[s / 64] &= ~(1ULL << (s % 64));
    z->inuse--;
    c->inuse--;
    if (!z->inuse) {
        if (was_full)
            partial_add(c, i); /* so that release can unlink it */
        zspage_release(i);
        return c->frames;
    }
    if (was_full)
        partial_add(c, i);
    return 0;
}

/* Decodes a handle; NULL unless it names a stored object of its length's
 * class. */
static struct zspage *lookup(uint64_t h, unsigned *slot)
{
    uint64_t len = h >> H_LEN_SHIFT;
    if (!zp.on || (h & H_LOC_MASK) >> 7 >= zp.ndesc || !len || len > ZP_MAX_DATA)
        return NULL;
    struct zspage *z = &zp.desc[(h & H_LOC_MASK) >> 7];
    unsigned s = (unsigned)(h & 127);
    if (!z->live || z->cls != class_of((unsigned)len + ZP_HDR) || s >= zp.cls[z->cls].objs ||
        !(z->used[s / 64] & (1ULL << (s % 64))))
        return NULL;
    *slot = s;
    return z;
}

static void put_object(uint32_t i, unsigned s, const struct zp_hdr *hd, const void *data)
{
    struct zspage *z = &zp.desc[i];
    unsigned off = s * zp.cls[z->cls].size;
    zs_write(z, off, hd, ZP_HDR);
    zs_write(z, off + ZP_HDR, data, hd->len);
}

enum zpool_store_result zpool_store(const void *data, unsigned len, uint16_t owner,
                                    uint64_t gfn, uint32_t check, uint64_t *handle)
{
    if (!len || len > ZP_MAX_DATA || !zp.on)
        return ZP_TOOBIG;
    unsigned ci = class_of(len + ZP_HDR);
    struct zclass *c = &zp.cls[ci];
    uint32_t i = c->partial;
    if (i == ZP_NONE) {
        enum zpool_store_result why = ZP_FULL;
        i = zspage_new(ci, &why);
        if (i == ZP_NONE) {
            if (why == ZP_FULL)
                zp.st.full++;
            else
                zp.st.nomem++;
            return why;
        }
    }
    unsigned s = slot_take(i);
    struct zp_hdr hd = {
        .magic = ZP_MAGIC, .len = (uint16_t)len, .owner = owner,
        .gfn_hi = (uint16_t)(gfn >> 32), .gfn_lo = (uint32_t)gfn, .check = check,
    };
    put_object(i, s, &hd, data);
    zp.st.stores++;
    zp.st.objects++;
    zp.st.data_bytes += len;
    zp.st.slot_bytes += c->size;
    *handle = make_handle(i, s, len);
    return ZP_STORED;
}

static bool header_matches(const struct zp_hdr *hd, uint16_t owner, uint64_t gfn, unsigned len)
{
    return hd->magic == ZP_MAGIC && hd->len == len && hd->owner == owner &&
           hd->gfn_hi == (uint16_t)(gfn >> 32) && hd->gfn_lo == (uint32_t)gfn;
}

int zpool_load(uint64_t h, uint16_t owner, uint64_t gfn, unsigned len, void *buf,
               uint32_t *check)
{
    unsigned s;
    struct zspage *z = lookup(h, &s);
    struct zp_hdr hd;
    if (!z || len != h >> H_LEN_SHIFT) {
        zp.st.corrupt++;
        return -1;
    }
    unsigned off = s * zp.cls[z->cls].size;
    zs_read(z, off, &hd, ZP_HDR);
    if (!header_matches(&hd, owner, gfn, len)) {
        zp.st.corrupt++;
        return -1;
    }
    zs_read(z, off + ZP_HDR, buf, len);
    *check = hd.check;
    zp.st.loads++;
    return 0;
}

void zpool_free(uint64_t h)
{
    unsigned s;
    struct zspage *z = lookup(h, &s);
    if (!z)
        mm_panic(__FILE__, __LINE__, "zpool: free of a handle that names no object");
    zp.st.frees++;
    zp.st.objects--;
    zp.st.data_bytes -= h >> H_LEN_SHIFT;
    zp.st.slot_bytes -= zp.cls[z->cls].size;
    slot_put((uint32_t)((h & H_LOC_MASK) >> 7), s);
}

bool zpool_check_object(uint64_t h, uint16_t owner, uint64_t gfn, unsigned len)
{
    unsigned s;
    struct zspage *z = lookup(h, &s);
    if (!z)
        return false;
    struct zp_hdr hd;
    zs_read(z, s * zp.cls[z->cls].size, &hd, ZP_HDR);
    return len == h >> H_LEN_SHIFT && header_matches(&hd, owner, gfn, len);
}

/* ---- compaction ------------------------------------------------------------ */

static uint64_t class_waste(const struct zclass *c)
{
    uint64_t free_slots = c->zspages * c->objs - c->inuse;
    return free_slots / c->objs;
}

uint64_t zpool_wasted_frames(void)
{
    uint64_t w = 0;
    for (unsigned i = 0; i < ZP_NCLASSES; i++)
        w += class_waste(&zp.cls[i]) * zp.cls[i].frames;
    return w;
}

/* Moves one object from (src, s) into zspage dst. Returns frames freed,
 * or -1 when the object's header does not check out: it stays put. */
static int64_t move_object(uint32_t src, unsigned s, uint32_t dst)
{
    static uint8_t buf[ZP_MAX_DATA];
    struct zspage *z = &zp.desc[src];
    struct zp_hdr hd;
    unsigned off = s * zp.cls[z->cls].size;
    zs_read(z, off, &hd, ZP_HDR);
    /* The header is guest-influenced data in a frame like any other: a
     * length outside the slot's class would read and write past it. */
    if (hd.magic != ZP_MAGIC || !hd.len || hd.len > ZP_MAX_DATA ||
        class_of(hd.len + ZP_HDR) != z->cls)
        return -1;
    zs_read(z, off + ZP_HDR, buf, hd.len);
    unsigned ns = slot_take(dst);
    put_object(dst, ns, &hd, buf);
    uint64_t oldh = make_handle(src, s, hd.len), newh = make_handle(dst, ns, hd.len);
    if (!zp.relocate ||
        !zp.relocate(hd.owner, (uint64_t)hd.gfn_hi << 32 | hd.gfn_lo, oldh, newh)) {
        slot_put(dst, ns); /* nobody holds oldh under that name: undo */
        return -1;
    }
    zp.st.moved++;
    return (int64_t)slot_put(src, s);
}

static uint64_t compact_class(unsigned ci, uint64_t *budget)
{
    struct zclass *c = &zp.cls[ci];
    uint64_t freed = 0;
    while (class_waste(c) && *budget) {
        /* Emptiest partial zspage gives, fullest takes. */
        uint32_t src = ZP_NONE, dst = ZP_NONE;
        for (uint32_t i = c->partial; i != ZP_NONE; i = zp.desc[i].next) {
            if (src == ZP_NONE || zp.desc[i].inuse < zp.desc[src].inuse)
                src = i;
        }
        for (uint32_t i = c->partial; i != ZP_NONE; i = zp.desc[i].next) {
            if (i != src && (dst == ZP_NONE || zp.desc[i].inuse > zp.desc[dst].inuse))
                dst = i;
        }
        if (src == ZP_NONE || dst == ZP_NONE)
            break;
        while (*budget && zp.desc[dst].inuse < c->objs) {
            struct zspage *z = &zp.desc[src];
            unsigned s = 0;
            while (!(z->used[s / 64] & (1ULL << (s % 64))))
                s++;
            (*budget)--;
            int64_t f = move_object(src, s, dst);
            if (f < 0) {
                zp.st.unmovable++;
                pr_err(LS_MM, "zpool: object in zspage %u slot %u has a damaged header; "
                              "left in place for its owner to report", src, s);
                return freed; /* this class waits until the owner frees it */
            }
            freed += (uint64_t)f;
            if (f)
                break; /* src emptied and was released */
        }
    }
    return freed;
}

uint64_t zpool_compact(uint64_t max_moves)
{
    if (!zp.on)
        return 0;
    uint64_t freed = 0, budget = max_moves;
    zp.st.compactions++;
    for (unsigned ci = 0; ci < ZP_NCLASSES && budget; ci++)
        freed += compact_class(ci, &budget);
    zp.st.compact_freed += freed;
    return freed;
}

/* ---- checks, statistics, test hooks ----------------------------------------- */

uint64_t zpool_check(void)
{
    uint64_t bad = 0;
#define CHECK(c, ...)                                                         \
    do {                                                                      \
        if (!(c)) {                                                           \
            if (bad++ < 8)                                                    \
                pr_err(LS_MM, "zpool check: " __VA_ARGS__);                \
        }                                                                     \
    } while (0)
    if (!zp.on)
        return 0;
    uint64_t zspages[ZP_NCLASSES] = { 0 }, inuse[ZP_NCLASSES] = { 0 };
    uint64_t frames = 0, objects = 0, data = 0, slots = 0;
    for (uint64_t i = 0; i < zp.ndesc; i++) {
        struct zspage *z = &zp.desc[i];
        if (!z->live)
            continue;
        CHECK(z->cls < ZP_NCLASSES, "zspage %llu has class %u", (unsigned long long)i, z->cls);
        if (z->cls >= ZP_NCLASSES)
            continue;
        struct zclass *c = &zp.cls[z->cls];
        unsigned pop = 0; /* no popcount: the image has no libgcc */
        for (unsigned b = 0; b < ZP_MAX_OBJS; b++)
            pop += (unsigned)(z->used[b / 64] >> (b % 64)) & 1;
        CHECK(pop == z->inuse && z->inuse > 0 && z->inuse <= c->objs,
              "zspage %llu: %u slots marked, %u counted", (unsigned long long)i, pop, z->inuse);
        for (unsigned f = 0; f < c->frames; f++)
            CHECK(frame_get(z->mfn[f])->state == FS_POOL, "zspage %llu frame %#x is %s",
                  (unsigned long long)i, z->mfn[f], frame_state_name(frame_get(z->mfn[f])->state));
        for (unsigned s = 0; s < c->objs; s++) {
            if (!(z->used[s / 64] & (1ULL << (s % 64))))
                continue;
            struct zp_hdr hd;
            zs_read(z, s * c->size, &hd, ZP_HDR);
            CHECK(hd.magic == ZP_MAGIC && hd.len && class_of(hd.len + ZP_HDR) == z->cls,
                  "zspage %llu slot %u: bad header (magic %#x len %u)", (unsigned long long)i,
                  s, hd.magic, hd.len);
            data += hd.len;
        }
        bool listed = false;
        for (uint32_t j = c->partial; j != ZP_NONE; j = zp.desc[j].next)
            if (j == i)
                listed = true;
        CHECK(listed == (z->inuse < c->objs), "zspage %llu: %s the partial list with %u of %u",
              (unsigned long long)i, listed ? "on" : "off", z->inuse, c->objs);
        zspages[z->cls]++;
        inuse[z->cls] += z->inuse;
        frames += c->frames;
        objects += z->inuse;
        slots += (uint64_t)z->inuse * c->size;
    }
    for (unsigned ci = 0; ci < ZP_NCLASSES; ci++)
        CHECK(zspages[ci] == zp.cls[ci].zspages && inuse[ci] == zp.cls[ci].inuse,
              "class %u: %llu zspages / %llu objects counted as %llu / %llu", ci,
              (unsigned long long)zspages[ci], (unsigned long long)inuse[ci],
              (unsigned long long)zp.cls[ci].zspages, (unsigned long long)zp.cls[ci].inuse);
    CHECK(frames == zp.st.frames && objects == zp.st.objects && data == zp.st.data_bytes &&
              slots == zp.st.slot_bytes,
          "totals: frames %llu/%llu objects %llu/%llu bytes %llu/%llu", (unsigned long long)frames,
          (unsigned long long)zp.st.frames, (unsigned long long)objects,
          (unsigned long long)zp.st.objects, (unsigned long long)data,
          (unsigned long long)zp.st.data_bytes);
    CHECK(zp.st.frames <= zp.cap, "%llu frames above the cap of %llu",
          (unsigned long long)zp.st.frames, (unsigned long long)zp.cap);
#undef CHECK
    return bad;
}

void zpool_get_stats(struct zpool_stats *st)
{
    *st = zp.st;
}

void zpool_debug_corrupt(uint64_t h, unsigned offset)
{
    unsigned s;
    struct zspage *z = lookup(h, &s);
    if (!z || offset >= zp.cls[z->cls].size)
        return;
    *zs_ptr(z, s * zp.cls[z->cls].size + offset) ^= 0x10;
}

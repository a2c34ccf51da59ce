/* The paravirtual balloon: the p2m transitions (p2m_balloon_inflate /
 * p2m_balloon_deflate in mm/p2m.c, the BALLOONED fault path) and the
 * hypercall dispatcher (hc_dispatch, mm/balloon.c) on a small host-backed
 * machine with the compressed pool, the share scanner and a memory swap
 * disk.
 *
 * Covered: inflating GFNs in every state (unpopulated, resident, filled,
 * compressed, compressed naming a shared object, shared, swapped, resident
 * with a swap-cached copy) gives back exactly what each held (frames, pool
 * objects and bytes, shared references with the shared frame kept for its
 * other mappings, swap slots), clears the EPT leaves with an INVEPT, and
 * keeps counts, statistics, p2m_check and share_check right; touching a
 * ballooned GFN gives a zero page (whatever it held before), counted;
 * deflate; batch validation (outside RAM, MMIO, a GFN twice, already in
 * the target state: -1, the first bad index, nothing changed, no mark
 * left behind); and hc_dispatch: CPL, unknown functions, batch sizes,
 * list pages that are not guest RAM, good and bad batches through a list
 * page in guest memory (resident or compressed, or inside the batch
 * itself), VERSION, BALLOON_TARGET, REPORT_STATS with larger and smaller
 * guest structures, and the call and rejection counters. */
#include "tests/host/backend.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/blk.h"
#include "mm/balloon.h"
#include "mm/ept.h"
#include "mm/mm.h"
#include "mm/p2m.h"
#include "mm/share.h"
#include "mm/swap.h"
#include "mm/zpool.h"

#define FRAMES 2048 /* 8 MiB: the share tables get their minimum size */
#define NGFN 64
#define PG 4096u

static struct p2m a, b;

/* ---- a memory disk for swap ------------------------------------------------- */

static struct memdisk {
    struct blkdev d;
    uint8_t *data;
    bool fail_reads; /* every read reports a device error */
} md;

static int md_rw(struct blkdev *d, bool write, uint64_t lba, uint32_t count, void *buf)
{
    uint64_t off = lba * d->sector_size, len = (uint64_t)count * d->sector_size;
    assert_true(off + len <= d->sectors * d->sector_size);
    if (!write && md.fail_reads)
        return BLK_EIO;
    if (write)
        memcpy(md.data + off, buf, len);
    else
        memcpy(buf, md.data + off, len);
    return BLK_OK;
}

static const struct blk_ops md_ops = { .rw = md_rw };

/* 2 MiB of 512-byte sectors as swap space. */
static void attach_swap(void)
{
    memset(&md, 0, sizeof(md));
    snprintf(md.d.name, sizeof(md.d.name), "mem0");
    md.d.kind = "memory";
    md.d.sector_size = 512;
    md.d.sectors = (2u << 20) / 512;
    md.d.max_sectors = 64;
    md.d.ops = &md_ops;
    md.data = calloc(md.d.sectors, 512);
    assert_non_null(md.data);
    assert_int_equal(swap_attach(&md.d, 0, md.d.sectors, true), 0);
    assert_true(swap_enabled());
}

static struct swap_stats sst(void)
{
    struct swap_stats s;
    swap_get_stats(&s);
    return s;
}

static struct zpool_stats zst(void)
{
    struct zpool_stats s;
    zpool_get_stats(&s);
    return s;
}

/* ---- set-up ------------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    backend_frames(FRAMES, 1, FRAMES - 1);
    mm_set_watermark(4);
    backend_log_clear();
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    assert_int_equal(share_init(FRAMES, 64), 0);
    return 0;
}

static void gone(struct p2m *p)
{
    if (p->map) {
        mm_unregister(p);
        p2m_destroy(p);
    }
}

static int teardown(void **state)
{
    (void)state;
    gone(&a);
    gone(&b);
    share_fini(); /* asserts the stable table is empty */
    zpool_fini();
    swap_detach();
    free(md.data);
    memset(&md, 0, sizeof(md));
    backend_free();
    return 0;
}

static void make(struct p2m *p, uint16_t owner, uint64_t ngfn)
{
    assert_int_equal(p2m_init(p, owner, owner == 1 ? "a" : "b", ngfn, 0, 0, true), 0);
    assert_int_equal(mm_register(p), 0);
}

/* ---- content ------------------------------------------------------------------ */

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* Pseudo-random words: LZ4 cannot shrink them. */
static void fill_random(void *dst, uint64_t seed)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL, *w = dst;
    for (int i = 0; i < 512; i++)
        w[i] = xorshift(&x);
}

/* Text-like words: compress well, never same-filled. */
static void fill_text(void *dst, uint64_t seed)
{
    uint64_t *w = dst;
    for (int i = 0; i < 512; i++)
        w[i] = i % 16 ? 0x2074786574206120ULL + (uint64_t)(i % 7)
                      : seed * 0x9e3779b97f4a7c15ULL + (uint64_t)i;
}

static void fill_words(void *dst, uint64_t v)
{
    uint64_t *w = dst;
    for (int i = 0; i < 512; i++)
        w[i] = v;
}

/* Populates gfn (a write fault) and fills it. Returns its frame. */
static mfn_t put(struct p2m *p, uint64_t gfn, void (*fill)(void *, uint64_t), uint64_t seed)
{
    if (p2m_peek(p, gfn)->state != P2M_RESIDENT)
        assert_int_equal(p2m_fault(p, gfn * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
    assert_int_equal(p2m_peek(p, gfn)->state, P2M_RESIDENT);
    fill(backend_frame(p2m_peek(p, gfn)->payload), seed);
    return p2m_peek(p, gfn)->payload;
}

static void expect_content(struct p2m *p, uint64_t gfn, void (*fill)(void *, uint64_t),
                           uint64_t seed)
{
    static uint8_t want[PG], got[PG];
    fill(want, seed);
    memset(got, 0x5a, sizeof(got));
    assert_int_equal(p2m_read_page(p, gfn, got), 0);
    assert_memory_equal(got, want, PG);
}

static void expect_zero_frame(mfn_t m)
{
    static const uint8_t zero[PG];
    assert_memory_equal(backend_frame(m), zero, PG);
}

static uint64_t *leaf(struct p2m *p, uint64_t gfn)
{
    return pt_entry(&pt_fmt_ept, p->ept_root, gfn << PAGE_SHIFT, PT_LEVEL_4K, false);
}

static uint64_t leafv(struct p2m *p, uint64_t gfn)
{
    uint64_t *l = leaf(p, gfn);
    return l ? *l : 0;
}

static void scan_rounds(unsigned k)
{
    struct share_stats s;
    share_get_stats(&s);
    uint64_t target = s.rounds + k;
    for (uint64_t i = 0; i < 1000000; i++) {
        share_get_stats(&s);
        if (s.rounds >= target)
            return;
        share_scan(1);
    }
    fail_msg("the scanner did not complete %u rounds", k);
}

static void reclaim_all(struct p2m *p)
{
    for (int i = 0; i < 16 && p->count[P2M_RESIDENT]; i++)
        p2m_reclaim(p, 64, 2 * p->ngfn);
}

static void check_all(void)
{
    if (a.map)
        assert_int_equal(p2m_check(&a), 0);
    if (b.map)
        assert_int_equal(p2m_check(&b), 0);
    assert_int_equal(share_check(), 0);
    assert_int_equal(zpool_check(), 0);
}

/* GFN gfn is ballooned: state, no payload, no flags, no EPT mapping,
 * reads as zero. */
static void expect_ballooned(struct p2m *p, uint64_t gfn)
{
    static const uint8_t zero[PG];
    static uint8_t got[PG];
    const struct p2m_entry *e = p2m_peek(p, gfn);
    if (e->state != P2M_BALLOONED)
        fail_msg("gfn %llu is %s, not ballooned", (unsigned long long)gfn,
                 p2m_state_name(e->state));
    assert_int_equal(e->payload, 0);
    assert_int_equal(e->flags, 0);
    assert_int_equal(e->aux, 0);
    assert_int_equal(leafv(p, gfn) & EPT_RWX, 0);
    memset(got, 0x5a, sizeof(got));
    assert_int_equal(p2m_read_page(p, gfn, got), 0);
    assert_memory_equal(got, zero, PG);
}

/* An unpopulated GFN becomes a device region through the p2m. */
static void make_mmio(struct p2m *p, uint64_t gfn)
{
    assert_int_equal(p2m_peek(p, gfn)->state, P2M_UNPOPULATED);
    assert_int_equal(p2m_set_mmio(p, gfn), 0);
    assert_int_equal(p2m_peek(p, gfn)->state, P2M_MMIO);
    assert_int_equal(p2m_check(p), 0);
}

/* ---- snapshots: "nothing changed" ---------------------------------------------- */

struct snap {
    struct p2m_entry map[NGFN];
    uint64_t leaf[NGFN];
    uint64_t count[P2M_STATE_COUNT];
    struct p2m_stats st;
    uint64_t shared_obj, swap_cached, free, swap_used, pool_objects, invept;
};

static void take(struct p2m *p, struct snap *s)
{
    assert_true(p->ngfn <= NGFN);
    memset(s, 0, sizeof(*s));
    for (uint64_t g = 0; g < p->ngfn; g++) {
        s->map[g] = *p2m_peek(p, g);
        s->leaf[g] = leafv(p, g);
    }
    memcpy(s->count, p->count, sizeof(s->count));
    s->st = p->st;
    s->shared_obj = p->shared_obj;
    s->swap_cached = p->swap_cached;
    s->free = backend_free_and_meta();
    s->swap_used = swap_enabled() ? sst().used : 0;
    s->pool_objects = zpool_enabled() ? zst().objects : 0;
    s->invept = backend_invept_calls();
}

static void expect_unchanged(struct p2m *p, const struct snap *s0)
{
    static struct snap s1;
    take(p, &s1);
    for (uint64_t g = 0; g < p->ngfn; g++) {
        const struct p2m_entry *x = &s0->map[g], *y = &s1.map[g];
        if (memcmp(x, y, sizeof(*x)))
            fail_msg("gfn %llu changed: state %u->%u payload %#llx->%#llx flags %#x->%#x "
                     "aux %u->%u",
                     (unsigned long long)g, x->state, y->state, (unsigned long long)x->payload,
                     (unsigned long long)y->payload, x->flags, y->flags, x->aux, y->aux);
        if (s0->leaf[g] != s1.leaf[g])
            fail_msg("gfn %llu: EPT leaf changed %#llx -> %#llx", (unsigned long long)g,
                     (unsigned long long)s0->leaf[g], (unsigned long long)s1.leaf[g]);
    }
    assert_memory_equal(s0->count, s1.count, sizeof(s1.count));
    assert_memory_equal(&s0->st, &s1.st, sizeof(s1.st));
    assert_int_equal(s0->shared_obj, s1.shared_obj);
    assert_int_equal(s0->swap_cached, s1.swap_cached);
    assert_int_equal(s0->free, s1.free);
    assert_int_equal(s0->swap_used, s1.swap_used);
    assert_int_equal(s0->pool_objects, s1.pool_objects);
}

static int inflate(struct p2m *p, const uint64_t *g, unsigned n, unsigned *bad)
{
    *bad = 0xdeadu;
    return p2m_balloon_inflate(p, g, n, bad);
}

static int deflate(struct p2m *p, const uint64_t *g, unsigned n, unsigned *bad)
{
    *bad = 0xdeadu;
    return p2m_balloon_deflate(p, g, n, bad);
}

/* ---- inflate, state by state ----------------------------------------------------- */

/* Nothing held: the states change, no frame moves, nothing counts as freed. */
static void test_inflate_unpopulated_and_filled(void **state)
{
    (void)state;
    make(&a, 1, NGFN);
    put(&a, 7, fill_words, 0x1111111111111111ULL);
    put(&a, 8, fill_words, 0);
    reclaim_all(&a);
    assert_int_equal(p2m_peek(&a, 7)->state, P2M_FILLED);
    assert_int_equal(p2m_peek(&a, 8)->state, P2M_UNPOPULATED);
    uint64_t free0 = backend_free_and_meta();
    uint64_t g[] = { 0, 7, 8, 63 };
    unsigned bad;
    assert_int_equal(inflate(&a, g, 4, &bad), 0);
    assert_int_equal(bad, 0xdeadu); /* untouched on success */
    for (int i = 0; i < 4; i++)
        expect_ballooned(&a, g[i]);
    assert_int_equal(backend_free_and_meta(), free0);
    assert_int_equal(a.count[P2M_BALLOONED], 4);
    assert_int_equal(a.count[P2M_FILLED], 0);
    assert_int_equal(a.count[P2M_UNPOPULATED], NGFN - 4);
    assert_int_equal(a.st.balloon_inflated, 4);
    assert_int_equal(a.st.balloon_freed, 0);
    assert_int_equal(a.st.balloon_deflated, 0);
    check_all();
}

/* Resident pages: each frame goes back to the allocator (one per page),
 * after the leaves are cleared and flushed; the data never reaches the
 * next user of the frame. */
static void test_inflate_resident(void **state)
{
    (void)state;
    make(&a, 1, NGFN);
    mfn_t m[12];
    uint64_t g[12];
    for (int i = 0; i < 12; i++) {
        g[i] = 21 - (uint64_t)i; /* any order */
        m[i] = put(&a, g[i], fill_random, 100 + (uint64_t)i);
    }
    put(&a, 30, fill_random, 200); /* stays */
    *leaf(&a, 11) |= EPT_A | EPT_D; /* recently used: no difference */
    uint64_t free0 = backend_free_and_meta(), inv0 = backend_invept_calls();
    unsigned bad;
    assert_int_equal(inflate(&a, g, 12, &bad), 0);
    assert_int_equal(backend_free_and_meta(), free0 + 12);
    for (int i = 0; i < 12; i++) {
        expect_ballooned(&a, g[i]);
        assert_int_equal(frame_get(m[i])->state, FS_FREE);
    }
    assert_true(backend_invept_calls() > inv0);
    assert_int_equal(a.count[P2M_RESIDENT], 1);
    assert_int_equal(a.count[P2M_BALLOONED], 12);
    assert_int_equal(a.count[P2M_UNPOPULATED], NGFN - 13);
    assert_int_equal(a.st.balloon_inflated, 12);
    assert_int_equal(a.st.balloon_freed, 12);
    expect_content(&a, 30, fill_random, 200);
    check_all();
    /* The frames come back zeroed to another VM. */
    make(&b, 2, NGFN);
    int reused = 0;
    for (uint64_t k = 0; k < 16; k++) {
        assert_int_equal(p2m_fault(&b, k * PAGE_SIZE, P2M_ACCESS_R), P2M_OK);
        for (int i = 0; i < 12; i++)
            if (p2m_peek(&b, k)->payload == m[i])
                reused++;
        expect_zero_frame(p2m_peek(&b, k)->payload);
    }
    assert_true(reused >= 1);
    check_all();
}

/* A resident page flagged incompressible and one hashed by the scanner:
 * the per-state flags and their counters go with the page. */
static void test_inflate_resident_flags(void **state)
{
    (void)state;
    assert_int_equal(mm_pool_init(64, 2048, false), 0);
    make(&a, 1, NGFN);
    a.compress = true;
    put(&a, 1, fill_random, 1);
    put(&a, 2, fill_random, 2);
    /* Nowhere for an incompressible page to go (no swap): flagged, kept. */
    p2m_reclaim(&a, 64, 2 * NGFN);
    assert_int_equal(p2m_peek(&a, 1)->state, P2M_RESIDENT);
    assert_true(p2m_peek(&a, 1)->flags & P2M_F_INCOMPRESSIBLE);
    assert_int_equal(a.st.incompressible_now, 2);
    scan_rounds(1);
    uint64_t g[] = { 1 };
    unsigned bad;
    assert_int_equal(inflate(&a, g, 1, &bad), 0);
    expect_ballooned(&a, 1);
    assert_int_equal(a.st.incompressible_now, 1);
    check_all();
}

/* Compressed pages: the pool objects are freed, pool_bytes drops to what
 * the others hold. */
static void test_inflate_compressed(void **state)
{
    (void)state;
    assert_int_equal(mm_pool_init(64, 2048, false), 0);
    make(&a, 1, NGFN);
    for (uint64_t g = 0; g < 6; g++)
        put(&a, g, fill_text, g + 1);
    reclaim_all(&a);
    for (uint64_t g = 0; g < 6; g++)
        assert_int_equal(p2m_peek(&a, g)->state, P2M_COMPRESSED);
    uint64_t bytes0 = a.st.pool_bytes, len3 = p2m_peek(&a, 3)->aux, len5 = p2m_peek(&a, 5)->aux;
    assert_true(len3 > 0 && len5 > 0);
    struct zpool_stats z0 = zst();
    assert_int_equal(z0.objects, 6);
    uint64_t g[] = { 3, 5 };
    unsigned bad;
    assert_int_equal(inflate(&a, g, 2, &bad), 0);
    expect_ballooned(&a, 3);
    expect_ballooned(&a, 5);
    struct zpool_stats z1 = zst();
    assert_int_equal(z1.objects, 4);
    assert_int_equal(z1.data_bytes, z0.data_bytes - len3 - len5);
    assert_int_equal(z1.frees, z0.frees + 2);
    assert_int_equal(a.st.pool_bytes, bytes0 - len3 - len5);
    assert_int_equal(a.count[P2M_COMPRESSED], 4);
    assert_int_equal(a.st.balloon_freed, 2);
    for (uint64_t k = 0; k < 6; k++)
        if (k != 3 && k != 5)
            expect_content(&a, k, fill_text, k + 1);
    check_all();
    /* All of them: the pool is empty again. */
    uint64_t rest[] = { 0, 1, 2, 4 };
    assert_int_equal(inflate(&a, rest, 4, &bad), 0);
    assert_int_equal(zst().objects, 0);
    assert_int_equal(a.st.pool_bytes, 0);
    assert_int_equal(a.st.balloon_freed, 6);
    check_all();
}

/* Shared pages: a reference is dropped, the frame lives on for the other
 * mappings (same VM and another VM), the last one frees it and its stable
 * table entry. */
static void test_inflate_shared(void **state)
{
    (void)state;
    make(&a, 1, NGFN);
    make(&b, 2, NGFN);
    b.salt = a.salt;
    put(&a, 4, fill_random, 77);
    put(&a, 5, fill_random, 77);
    put(&b, 9, fill_random, 77);
    scan_rounds(2);
    assert_int_equal(p2m_peek(&a, 4)->state, P2M_SHARED);
    assert_int_equal(p2m_peek(&a, 5)->state, P2M_SHARED);
    assert_int_equal(p2m_peek(&b, 9)->state, P2M_SHARED);
    mfn_t s = p2m_peek(&a, 4)->payload;
    assert_int_equal(frame_get(s)->refcount, 3);
    uint64_t free0 = backend_free_and_meta(), inv0 = backend_invept_calls();
    uint64_t g4[] = { 4 };
    unsigned bad;
    assert_int_equal(inflate(&a, g4, 1, &bad), 0);
    expect_ballooned(&a, 4);
    assert_true(backend_invept_calls() > inv0);
    assert_int_equal(frame_get(s)->state, FS_SHARED);
    assert_int_equal(frame_get(s)->refcount, 2);
    assert_int_equal(backend_free_and_meta(), free0);
    assert_int_equal(p2m_peek(&a, 5)->payload, s);
    assert_int_equal(leafv(&a, 5) & PT_ADDR_MASK, s << PAGE_SHIFT);
    expect_content(&a, 5, fill_random, 77);
    expect_content(&b, 9, fill_random, 77);
    assert_int_equal(a.st.balloon_freed, 1);
    assert_int_equal(a.count[P2M_SHARED], 1);
    check_all();
    /* The other VM's last mapping in a, then b's: the frame goes. */
    uint64_t g5[] = { 5 };
    assert_int_equal(inflate(&a, g5, 1, &bad), 0);
    assert_int_equal(frame_get(s)->refcount, 1);
    expect_content(&b, 9, fill_random, 77);
    check_all();
    uint64_t g9[] = { 9 };
    assert_int_equal(inflate(&b, g9, 1, &bad), 0);
    assert_int_equal(frame_get(s)->state, FS_FREE);
    assert_int_equal(backend_free_and_meta(), free0 + 1);
    assert_int_equal(b.count[P2M_SHARED], 0);
    check_all();
    /* Identical content shares afresh (the stable entry went with it). */
    put(&a, 20, fill_random, 77);
    put(&a, 21, fill_random, 77);
    scan_rounds(2);
    assert_int_equal(p2m_peek(&a, 20)->state, P2M_SHARED);
    check_all();
}

/* A GFN naming a shared pool object (a shared frame reclaimed whole): the
 * reference to the object is dropped, the last one frees it. */
static void test_inflate_shared_object(void **state)
{
    (void)state;
    assert_int_equal(mm_pool_init(64, 2048, false), 0);
    make(&a, 1, NGFN);
    put(&a, 0, fill_text, 5);
    put(&a, 1, fill_text, 5);
    scan_rounds(2);
    assert_int_equal(p2m_peek(&a, 0)->state, P2M_SHARED);
    assert_int_equal(share_reclaim(8), 1);
    assert_int_equal(p2m_peek(&a, 0)->state, P2M_COMPRESSED);
    assert_true(p2m_peek(&a, 0)->flags & P2M_F_SHARED_OBJ);
    assert_int_equal(a.shared_obj, 2);
    assert_int_equal(share_zobj_count(), 1);
    uint64_t g0[] = { 0 };
    unsigned bad;
    assert_int_equal(inflate(&a, g0, 1, &bad), 0);
    expect_ballooned(&a, 0);
    assert_int_equal(a.shared_obj, 1);
    assert_int_equal(share_zobj_count(), 1);
    expect_content(&a, 1, fill_text, 5);
    check_all();
    uint64_t g1[] = { 1 };
    assert_int_equal(inflate(&a, g1, 1, &bad), 0);
    assert_int_equal(a.shared_obj, 0);
    assert_int_equal(share_zobj_count(), 0);
    assert_int_equal(zst().objects, 0);
    assert_int_equal(a.st.balloon_freed, 2);
    check_all();
}

/* Swapped pages (whole pages and pool objects written back as LZ4) and a
 * resident page with a swap-cached copy: every slot is freed. */
static void test_inflate_swapped(void **state)
{
    (void)state;
    attach_swap();
    assert_int_equal(mm_pool_init(0, 2048, false), 0);
    make(&a, 1, NGFN);
    for (uint64_t g = 0; g < 8; g++)
        put(&a, g, fill_random, g + 40);
    reclaim_all(&a);
    for (uint64_t g = 0; g < 8; g++)
        assert_int_equal(p2m_peek(&a, g)->state, P2M_SWAPPED);
    uint64_t per = PG / sst().slot_bytes;
    assert_int_equal(sst().used, 8 * per);
    /* 6 back for a read: swap-cached, mapped read-only. */
    assert_int_equal(p2m_fault(&a, 6 * PAGE_SIZE, P2M_ACCESS_R), P2M_OK);
    assert_true(p2m_peek(&a, 6)->flags & P2M_F_SWAPCACHE);
    assert_int_equal(a.swap_cached, 1);
    mfn_t m6 = p2m_peek(&a, 6)->payload;
    uint64_t loc2 = p2m_peek(&a, 2)->payload, slot6 = p2m_peek(&a, 6)->aux;
    uint64_t free0 = backend_free_and_meta();
    uint64_t g[] = { 2, 6, 3 };
    unsigned bad;
    assert_int_equal(inflate(&a, g, 3, &bad), 0);
    expect_ballooned(&a, 2);
    expect_ballooned(&a, 3);
    expect_ballooned(&a, 6);
    assert_false(swap_loc_valid(loc2));
    assert_false(swap_loc_valid(SWAP_LOC(slot6, PAGE_SIZE, 0)));
    assert_int_equal(sst().used, 5 * per);
    assert_int_equal(a.swap_cached, 0);
    assert_int_equal(frame_get(m6)->state, FS_FREE);
    assert_int_equal(backend_free_and_meta(), free0 + 1);
    assert_int_equal(a.count[P2M_SWAPPED], 5);
    assert_int_equal(a.st.balloon_freed, 3);
    for (uint64_t k = 0; k < 8; k++)
        if (k != 2 && k != 3 && k != 6)
            expect_content(&a, k, fill_random, k + 40);
    check_all();
    uint64_t rest[] = { 0, 1, 4, 5, 7 };
    assert_int_equal(inflate(&a, rest, 5, &bad), 0);
    assert_int_equal(sst().used, 0);
    check_all();
}

/* Log-like text, different for every seed: LZ4 brings it to a third or so
 * (as test_swap.c's), so that a small pool fills. */
static void fill_log(void *dst, uint64_t seed)
{
    static const char *const words[] = { "balloon", "page", "slot", "frame",
                                         "guest", "pool", "batch", "clock" };
    uint8_t *p = dst;
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

/* Pool objects written back to swap as LZ4 (a VM at its limit, a small
 * pool): inflating frees their slots (the length's worth). */
static void test_inflate_swapped_lz4(void **state)
{
    (void)state;
    attach_swap();
    assert_int_equal(mm_pool_init(8, 2048, false), 0);
    assert_int_equal(p2m_init(&a, 1, "a", NGFN, 0, 16, true), 0);
    assert_int_equal(mm_register(&a), 0);
    for (int round = 0; round < 3; round++)
        for (uint64_t g = 0; g < NGFN; g++) {
            void *p = p2m_gfn_ptr(&a, g, true);
            assert_non_null(p);
            fill_log(p, g);
        }
    assert_true(a.st.swap_out_lz4 > 0);
    check_all();
    unsigned bad, nlz4 = 0;
    uint64_t slot_bytes = sst().slot_bytes;
    for (uint64_t g = 0; g < NGFN; g++) {
        const struct p2m_entry *e = p2m_peek(&a, g);
        if (e->state != P2M_SWAPPED || !SWAP_LOC_LZ4(e->payload))
            continue;
        uint64_t loc = e->payload, used0 = sst().used;
        uint64_t slots = (SWAP_LOC_LEN(loc) + slot_bytes - 1) / slot_bytes;
        uint64_t one[] = { g };
        assert_int_equal(inflate(&a, one, 1, &bad), 0);
        expect_ballooned(&a, g);
        assert_false(swap_loc_valid(loc));
        assert_int_equal(sst().used, used0 - slots);
        nlz4++;
    }
    assert_true(nlz4 > 0);
    check_all();
    /* The rest, in one batch of everything left. */
    uint64_t rest[NGFN];
    unsigned n = 0;
    for (uint64_t g = 0; g < NGFN; g++)
        if (p2m_peek(&a, g)->state != P2M_BALLOONED)
            rest[n++] = g;
    assert_int_equal(inflate(&a, rest, n, &bad), 0);
    assert_int_equal(a.count[P2M_BALLOONED], NGFN);
    assert_int_equal(sst().used, 0);
    assert_int_equal(zst().objects, 0);
    assert_int_equal(a.st.pool_bytes, 0);
    check_all();
}

/* One batch holding every state at once. */
static void test_inflate_every_state(void **state)
{
    (void)state;
    attach_swap();
    assert_int_equal(mm_pool_init(64, 2048, false), 0);
    make(&a, 1, NGFN);
    put(&a, 10, fill_random, 10); /* -> swapped */
    put(&a, 11, fill_random, 11); /* -> swapped, then swap-cached */
    put(&a, 3, fill_text, 3);     /* -> compressed */
    put(&a, 2, fill_words, 0x0202020202020202ULL); /* -> filled */
    reclaim_all(&a);
    assert_int_equal(p2m_peek(&a, 10)->state, P2M_SWAPPED);
    assert_int_equal(p2m_peek(&a, 11)->state, P2M_SWAPPED);
    assert_int_equal(p2m_peek(&a, 3)->state, P2M_COMPRESSED);
    assert_int_equal(p2m_peek(&a, 2)->state, P2M_FILLED);
    assert_int_equal(p2m_fault(&a, 11 * PAGE_SIZE, P2M_ACCESS_R), P2M_OK);
    assert_true(p2m_peek(&a, 11)->flags & P2M_F_SWAPCACHE);
    mfn_t m1 = put(&a, 1, fill_random, 1);
    put(&a, 4, fill_random, 44);
    put(&a, 5, fill_random, 44);
    scan_rounds(2);
    assert_int_equal(p2m_peek(&a, 4)->state, P2M_SHARED);
    assert_int_equal(p2m_peek(&a, 5)->state, P2M_SHARED);
    assert_int_equal(p2m_peek(&a, 1)->state, P2M_RESIDENT);
    assert_int_equal(p2m_peek(&a, 11)->state, P2M_RESIDENT); /* the scanner leaves it alone */
    check_all();
    mfn_t m11 = p2m_peek(&a, 11)->payload, s = p2m_peek(&a, 4)->payload;
    uint64_t per = PG / sst().slot_bytes, used0 = sst().used;
    uint64_t pool_frames0 = zst().frames, free0 = backend_free_and_meta();
    uint64_t inv0 = backend_invept_calls();
    /* 0 unpopulated, 1 resident, 2 filled, 3 compressed, 4 shared,
     * 10 swapped, 11 resident + swap cache. */
    uint64_t g[] = { 11, 0, 4, 1, 10, 3, 2 };
    unsigned bad;
    assert_int_equal(inflate(&a, g, 7, &bad), 0);
    for (int i = 0; i < 7; i++)
        expect_ballooned(&a, g[i]);
    assert_true(backend_invept_calls() > inv0);
    assert_int_equal(a.count[P2M_BALLOONED], 7);
    assert_int_equal(a.count[P2M_RESIDENT], 0);
    assert_int_equal(a.count[P2M_SHARED], 1);
    assert_int_equal(a.count[P2M_COMPRESSED], 0);
    assert_int_equal(a.count[P2M_SWAPPED], 0);
    assert_int_equal(a.count[P2M_FILLED], 0);
    assert_int_equal(a.count[P2M_UNPOPULATED], NGFN - 8);
    assert_int_equal(a.st.balloon_inflated, 7);
    assert_int_equal(a.st.balloon_freed, 5); /* 1, 3, 4, 10, 11 */
    assert_int_equal(a.swap_cached, 0);
    assert_int_equal(a.st.pool_bytes, 0);
    assert_int_equal(zst().objects, 0);
    assert_int_equal(sst().used, used0 - 2 * per);
    assert_int_equal(sst().used, 0);
    assert_int_equal(frame_get(m1)->state, FS_FREE);
    assert_int_equal(frame_get(m11)->state, FS_FREE);
    assert_int_equal(frame_get(s)->state, FS_SHARED);
    assert_int_equal(frame_get(s)->refcount, 1);
    /* Two private frames, plus whatever pool frames emptied. */
    assert_int_equal(backend_free_and_meta(), free0 + 2 + (pool_frames0 - zst().frames));
    expect_content(&a, 5, fill_random, 44);
    check_all();
}

/* ---- touching a ballooned GFN -------------------------------------------------- */

/* The guest breaks its promise: a read or a write gets a fresh zero page
 * (never the old data, though the frame it had may be the one it gets),
 * counted as a refill and in balloon_touched; a write fault maps RWX. */
static void test_touch_gives_zero_page(void **state)
{
    (void)state;
    make(&a, 1, NGFN);
    mfn_t m3 = put(&a, 3, fill_random, 3);
    mfn_t m4 = put(&a, 4, fill_text, 4);
    put(&a, 5, fill_words, 0x5555555555555555ULL);
    reclaim_all(&a); /* 5 filled; 3 and 4 stay (no pool, no swap) */
    assert_int_equal(p2m_peek(&a, 5)->state, P2M_FILLED);
    uint64_t g[] = { 3, 4, 5 };
    unsigned bad;
    assert_int_equal(inflate(&a, g, 3, &bad), 0);
    uint64_t refill0 = a.st.faults[PF_REFILL], dz0 = a.st.faults[PF_DEMAND_ZERO];
    assert_int_equal(p2m_fault(&a, 3 * PAGE_SIZE + 8, P2M_ACCESS_R), P2M_OK);
    assert_int_equal(p2m_peek(&a, 3)->state, P2M_RESIDENT);
    expect_zero_frame(p2m_peek(&a, 3)->payload);
    assert_int_equal(a.st.balloon_touched, 1);
    assert_int_equal(a.st.faults[PF_REFILL], refill0 + 1);
    assert_int_equal(a.st.faults[PF_DEMAND_ZERO], dz0);
    /* LIFO: one of the frames that held data, zeroed. */
    assert_true(p2m_peek(&a, 3)->payload == m3 || p2m_peek(&a, 3)->payload == m4);
    assert_int_equal(p2m_fault(&a, 4 * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
    expect_zero_frame(p2m_peek(&a, 4)->payload);
    assert_int_equal(leafv(&a, 4) & EPT_RWX, EPT_RWX);
    assert_int_equal(p2m_fault(&a, 5 * PAGE_SIZE, P2M_ACCESS_X), P2M_OK);
    expect_zero_frame(p2m_peek(&a, 5)->payload); /* not the old fill value */
    assert_int_equal(a.st.balloon_touched, 3);
    assert_int_equal(a.st.faults[PF_REFILL], refill0 + 3);
    assert_int_equal(a.count[P2M_BALLOONED], 0);
    assert_int_equal(a.count[P2M_RESIDENT], 3);
    /* A same-filled page touched: a refill, but not a balloon touch. */
    put(&a, 6, fill_words, 0x0606060606060606ULL);
    reclaim_all(&a);
    assert_int_equal(p2m_peek(&a, 6)->state, P2M_FILLED);
    assert_int_equal(p2m_fault(&a, 6 * PAGE_SIZE, P2M_ACCESS_R), P2M_OK);
    assert_int_equal(a.st.balloon_touched, 3);
    check_all();
    /* A touched page can be ballooned again. */
    uint64_t g3[] = { 3 };
    assert_int_equal(inflate(&a, g3, 1, &bad), 0);
    expect_ballooned(&a, 3);
    check_all();
}

/* At its limit with nothing to reclaim, a touch of a ballooned page waits
 * (nothing changes, nothing counted as a touch); inflating a resident page
 * makes the room, and the touch goes through. */
static void test_touch_waits_at_limit(void **state)
{
    (void)state;
    assert_int_equal(p2m_init(&a, 1, "a", NGFN, 0, 4, true), 0);
    assert_int_equal(mm_register(&a), 0);
    for (uint64_t k = 0; k < 4; k++)
        put(&a, k, fill_random, k); /* no pool, no swap: nothing reclaimable */
    uint64_t g10[] = { 10 };
    unsigned bad;
    assert_int_equal(inflate(&a, g10, 1, &bad), 0);
    uint64_t waits0 = a.st.waits;
    assert_int_equal(p2m_fault(&a, 10 * PAGE_SIZE, P2M_ACCESS_W), P2M_WAIT);
    assert_int_equal(a.st.waits, waits0 + 1);
    expect_ballooned(&a, 10);
    assert_int_equal(a.st.balloon_touched, 0);
    assert_int_equal(a.st.faults[PF_REFILL], 0);
    uint64_t g0[] = { 0 };
    assert_int_equal(inflate(&a, g0, 1, &bad), 0);
    assert_int_equal(p2m_fault(&a, 10 * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
    expect_zero_frame(p2m_peek(&a, 10)->payload);
    assert_int_equal(a.st.balloon_touched, 1);
    assert_int_equal(a.count[P2M_RESIDENT], 4);
    check_all();
}

/* ---- deflate ------------------------------------------------------------------- */

static void test_deflate(void **state)
{
    (void)state;
    make(&a, 1, NGFN);
    put(&a, 1, fill_random, 1);
    put(&a, 2, fill_random, 2);
    uint64_t g[] = { 1, 2, 3 };
    unsigned bad;
    assert_int_equal(inflate(&a, g, 3, &bad), 0);
    uint64_t d[] = { 3, 1 };
    assert_int_equal(deflate(&a, d, 2, &bad), 0);
    assert_int_equal(bad, 0xdeadu);
    assert_int_equal(p2m_peek(&a, 1)->state, P2M_UNPOPULATED);
    assert_int_equal(p2m_peek(&a, 3)->state, P2M_UNPOPULATED);
    assert_int_equal(p2m_peek(&a, 2)->state, P2M_BALLOONED);
    assert_int_equal(a.count[P2M_BALLOONED], 1);
    assert_int_equal(a.count[P2M_UNPOPULATED], NGFN - 1);
    assert_int_equal(a.st.balloon_deflated, 2);
    assert_int_equal(a.st.balloon_inflated, 3);
    check_all();
    /* Deflated: an ordinary demand-zero fault, not a broken promise. */
    assert_int_equal(p2m_fault(&a, 1 * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
    expect_zero_frame(p2m_peek(&a, 1)->payload);
    assert_int_equal(a.st.faults[PF_DEMAND_ZERO], 3);
    assert_int_equal(a.st.balloon_touched, 0);
    /* Deflating GFNs that are not ballooned (1 resident, 5 never touched)
     * leaves them alone and counts them; the ballooned one comes back. */
    expect_content(&a, 1, fill_words, 0); /* the demand-zero page */
    static struct snap s0;
    take(&a, &s0);
    uint64_t some[] = { 1, 5 };
    assert_int_equal(deflate(&a, some, 2, &bad), 2);
    expect_unchanged(&a, &s0);
    uint64_t mixed[] = { 5, 2, 1 };
    assert_int_equal(deflate(&a, mixed, 3, &bad), 2);
    assert_int_equal(bad, 0xdeadu);
    assert_int_equal(p2m_peek(&a, 2)->state, P2M_UNPOPULATED);
    assert_int_equal(p2m_peek(&a, 1)->state, P2M_RESIDENT);
    assert_int_equal(a.count[P2M_BALLOONED], 0);
    assert_int_equal(a.st.balloon_deflated, 3); /* the no-ops do not count as deflated */
    check_all();
}

/* Issue 16 defect 1: a guest touches a ballooned page (reading
 * /proc/kcore does) and gets a zero page; its driver still lists the page.
 * A deflate batch naming it must not be refused whole (it was: EINVAL at
 * that entry, every later deflate retried the same batch), and inflating
 * a page that is ballooned already is no error either. */
static void test_touched_page_deflates(void **state)
{
    (void)state;
    make(&a, 1, NGFN);
    uint64_t g[8];
    for (unsigned i = 0; i < 8; i++) {
        g[i] = 10 + i;
        put(&a, g[i], fill_random, i);
    }
    unsigned bad;
    assert_int_equal(inflate(&a, g, 8, &bad), 0);
    assert_int_equal(a.count[P2M_BALLOONED], 8);
    /* The guest reads 12 and writes 15. */
    assert_int_equal(p2m_fault(&a, 12 * PAGE_SIZE, P2M_ACCESS_R), P2M_OK);
    assert_int_equal(p2m_fault(&a, 15 * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
    assert_int_equal(a.st.balloon_touched, 2);
    assert_int_equal(a.count[P2M_BALLOONED], 6);
    /* Inflating the whole list again: 6 already ballooned, 12 and 15 go
     * again (what they held is freed). */
    assert_int_equal(inflate(&a, g, 8, &bad), 6);
    assert_int_equal(bad, 0xdeadu);
    assert_int_equal(a.count[P2M_BALLOONED], 8);
    assert_int_equal(a.st.balloon_inflated, 10);
    check_all();
    /* Touch 12 again, then deflate everything: all of it is the guest's. */
    assert_int_equal(p2m_fault(&a, 12 * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
    assert_int_equal(deflate(&a, g, 8, &bad), 1);
    assert_int_equal(bad, 0xdeadu);
    assert_int_equal(a.count[P2M_BALLOONED], 0);
    assert_int_equal(p2m_peek(&a, 12)->state, P2M_RESIDENT);
    assert_int_equal(a.st.balloon_deflated, 7);
    check_all();
}

/* ---- batch validation ---------------------------------------------------------- */

struct bad_case {
    const char *what;
    bool inflate;
    uint64_t g[6];
    unsigned n, bad;
};

static void test_batch_validation(void **state)
{
    (void)state;
    attach_swap();
    assert_int_equal(mm_pool_init(64, 2048, false), 0);
    make(&a, 1, NGFN);
    /* Some of everything, so that "nothing changed" means something. */
    put(&a, 1, fill_random, 1);
    put(&a, 2, fill_text, 2);
    put(&a, 3, fill_random, 3);
    reclaim_all(&a); /* 2 compressed, 1 and 3 swapped */
    put(&a, 4, fill_random, 4);
    put(&a, 5, fill_random, 55);
    put(&a, 6, fill_random, 55);
    scan_rounds(2); /* 5, 6 shared */
    assert_int_equal(p2m_peek(&a, 5)->state, P2M_SHARED);
    make_mmio(&a, 40);
    uint64_t pre[] = { 30, 31 };
    unsigned bad;
    assert_int_equal(inflate(&a, pre, 2, &bad), 0); /* 30, 31 ballooned */
    check_all();
    const struct bad_case cases[] = {
        { "beyond RAM", true, { 1, 2, NGFN }, 3, 2 },
        { "far beyond RAM", true, { UINT64_MAX, 1 }, 2, 0 },
        { "2^32 + a good GFN", true, { 4, (1ULL << 32) + 4 }, 2, 1 },
        { "MMIO", true, { 4, 5, 40, 1 }, 4, 2 },
        { "MMIO first", true, { 40 }, 1, 0 },
        { "twice", true, { 1, 2, 3, 4, 2 }, 5, 4 },
        { "twice, adjacent", true, { 6, 6 }, 2, 1 },
        { "already ballooned, then beyond RAM", true, { 4, 30, NGFN }, 3, 2 },
        { "already ballooned twice", true, { 31, 4, 31 }, 3, 2 },
        { "bad and twice: the first counts", true, { 1, 1, NGFN }, 3, 1 },
        { "deflate beyond RAM", false, { 30, NGFN + 5 }, 2, 1 },
        { "deflate MMIO", false, { 31, 40 }, 2, 1 },
        { "deflate twice", false, { 30, 31, 30 }, 3, 2 },
        { "deflate resident twice", false, { 4, 30, 4 }, 3, 2 },
        { "deflate never touched twice", false, { 50, 30, 50 }, 3, 2 },
        { "deflate unpopulated, then MMIO", false, { 30, 31, 50, 40 }, 4, 3 },
    };
    static struct snap s0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct bad_case *c = &cases[i];
        take(&a, &s0);
        int rc = c->inflate ? inflate(&a, c->g, c->n, &bad) : deflate(&a, c->g, c->n, &bad);
        if (rc != -1 || bad != c->bad)
            fail_msg("case \"%s\": returned %d, bad index %u (want -1, %u)", c->what, rc, bad,
                     c->bad);
        expect_unchanged(&a, &s0);
        assert_int_equal(p2m_check(&a), 0);
    }
    /* No mark left anywhere: the good parts of those batches go through. */
    for (uint64_t g = 0; g < NGFN; g++)
        assert_int_equal(p2m_peek(&a, g)->flags & P2M_F_MARK, 0);
    uint64_t good[] = { 1, 2, 3, 4, 5 };
    assert_int_equal(inflate(&a, good, 5, &bad), 0);
    uint64_t back[] = { 30, 31, 1 };
    assert_int_equal(deflate(&a, back, 3, &bad), 0);
    assert_int_equal(p2m_peek(&a, 40)->state, P2M_MMIO);
    assert_int_equal(a.count[P2M_BALLOONED], 4);
    expect_content(&a, 6, fill_random, 55);
    check_all();
}

/* A batch of the largest size, GFNs in reverse order. */
static void test_full_batch(void **state)
{
    (void)state;
    make(&a, 1, 600);
    static uint64_t g[HC_BATCH_MAX];
    for (unsigned i = 0; i < HC_BATCH_MAX; i++) {
        g[i] = 599 - i;
        if (i % 3 == 0)
            put(&a, g[i], fill_random, i);
    }
    uint64_t free0 = backend_free_and_meta();
    unsigned bad;
    assert_int_equal(inflate(&a, g, HC_BATCH_MAX, &bad), 0);
    assert_int_equal(a.count[P2M_BALLOONED], HC_BATCH_MAX);
    assert_int_equal(a.st.balloon_freed, (HC_BATCH_MAX + 2) / 3);
    assert_int_equal(backend_free_and_meta(), free0 + (HC_BATCH_MAX + 2) / 3);
    assert_int_equal(p2m_check(&a), 0);
    assert_int_equal(deflate(&a, g, HC_BATCH_MAX, &bad), 0);
    assert_int_equal(a.count[P2M_BALLOONED], 0);
    assert_int_equal(p2m_check(&a), 0);
}

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

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_inflate_unpopulated_and_filled),
        T(test_inflate_resident),
        T(test_inflate_resident_flags),
        T(test_inflate_compressed),
        T(test_inflate_shared),
        T(test_inflate_shared_object),
        T(test_inflate_swapped),
        T(test_inflate_swapped_lz4),
        T(test_inflate_every_state),
        T(test_touch_gives_zero_page),
        T(test_touch_waits_at_limit),
        T(test_deflate),
        T(test_touched_page_deflates),
        T(test_batch_validation),
        T(test_full_batch),
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
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}

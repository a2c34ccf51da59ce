/* The balloon tests' machine (test_balloon.c, test_balloon_abi.c): a small
 * host-backed machine with the compressed pool, the share scanner and a
 * memory swap disk, two VMs, and helpers to fill, check and snapshot
 * their pages. Included by one test file each: its functions are static
 * inline so that a file using only some of them builds warning-free. */
#ifndef TESTS_HOST_BALLOON_FIXTURE_H
#define TESTS_HOST_BALLOON_FIXTURE_H
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

static inline int md_rw(struct blkdev *d, bool write, uint64_t lba, uint32_t count, void *buf)
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
static inline void attach_swap(void)
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

static inline struct swap_stats sst(void)
{
    struct swap_stats s;
    swap_get_stats(&s);
    return s;
}

static inline struct zpool_stats zst(void)
{
    struct zpool_stats s;
    zpool_get_stats(&s);
    return s;
}

/* ---- set-up ------------------------------------------------------------------- */

static inline int setup(void **state)
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

static inline void gone(struct p2m *p)
{
    if (p->map) {
        mm_unregister(p);
        p2m_destroy(p);
    }
}

static inline int teardown(void **state)
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

static inline void make(struct p2m *p, uint16_t owner, uint64_t ngfn)
{
    assert_int_equal(p2m_init(p, owner, owner == 1 ? "a" : "b", ngfn, 0, 0, true), 0);
    assert_int_equal(mm_register(p), 0);
}

/* ---- content ------------------------------------------------------------------ */

static inline uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* Pseudo-random words: LZ4 cannot shrink them. */
static inline void fill_random(void *dst, uint64_t seed)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL, *w = dst;
    for (int i = 0; i < 512; i++)
        w[i] = xorshift(&x);
}

/* Text-like words: compress well, never same-filled. */
static inline void fill_text(void *dst, uint64_t seed)
{
    uint64_t *w = dst;
    for (int i = 0; i < 512; i++)
        w[i] = i % 16 ? 0x2074786574206120ULL + (uint64_t)(i % 7)
                      : seed * 0x9e3779b97f4a7c15ULL + (uint64_t)i;
}

static inline void fill_words(void *dst, uint64_t v)
{
    uint64_t *w = dst;
    for (int i = 0; i < 512; i++)
        w[i] = v;
}

/* Populates gfn (a write fault) and fills it. Returns its frame. */
static inline mfn_t put(struct p2m *p, uint64_t gfn, void (*fill)(void *, uint64_t), uint64_t seed)
{
    if (p2m_peek(p, gfn)->state != P2M_RESIDENT)
        assert_int_equal(p2m_fault(p, gfn * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
    assert_int_equal(p2m_peek(p, gfn)->state, P2M_RESIDENT);
    fill(backend_frame(p2m_peek(p, gfn)->payload), seed);
    return p2m_peek(p, gfn)->payload;
}

static inline void expect_content(struct p2m *p, uint64_t gfn, void (*fill)(void *, uint64_t),
                           uint64_t seed)
{
    static uint8_t want[PG], got[PG];
    fill(want, seed);
    memset(got, 0x5a, sizeof(got));
    assert_int_equal(p2m_read_page(p, gfn, got), 0);
    assert_memory_equal(got, want, PG);
}

static inline void expect_zero_frame(mfn_t m)
{
    static const uint8_t zero[PG];
    assert_memory_equal(backend_frame(m), zero, PG);
}

static inline uint64_t *leaf(struct p2m *p, uint64_t gfn)
{
    return pt_entry(&pt_fmt_ept, p->ept_root, gfn << PAGE_SHIFT, PT_LEVEL_4K, false);
}

static inline uint64_t leafv(struct p2m *p, uint64_t gfn)
{
    uint64_t *l = leaf(p, gfn);
    return l ? *l : 0;
}

static inline void scan_rounds(unsigned k)
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

static inline void reclaim_all(struct p2m *p)
{
    for (int i = 0; i < 16 && p->count[P2M_RESIDENT]; i++)
        p2m_reclaim(p, 64, 2 * p->ngfn);
}

static inline void check_all(void)
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
static inline void expect_ballooned(struct p2m *p, uint64_t gfn)
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
static inline void make_mmio(struct p2m *p, uint64_t gfn)
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

static inline void take(struct p2m *p, struct snap *s)
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

static inline void expect_unchanged(struct p2m *p, const struct snap *s0)
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

static inline int inflate(struct p2m *p, const uint64_t *g, unsigned n, unsigned *bad)
{
    *bad = 0xdeadu;
    return p2m_balloon_inflate(p, g, n, bad);
}

static inline int deflate(struct p2m *p, const uint64_t *g, unsigned n, unsigned *bad)
{
    *bad = 0xdeadu;
    return p2m_balloon_deflate(p, g, n, bad);
}

#endif

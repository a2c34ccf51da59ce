/* Content-based page sharing (mm/share.c, the sharing transitions of
 * mm/p2m.c) on a small host-backed machine.
 *
 * Covered: the scanner's cursor (round robin over the registered VMs, one
 * extra step per VM boundary, a round ends the unstable table); merging
 * identical pages of one VM onto one read-only FS_SHARED frame (refcount,
 * EPT R+X leaves, the private frame given back, content intact); pages
 * written between the two visits (unstable) and merge partners written
 * after they were hashed (stale) are not merged; copy-on-write on a write
 * fault (private copy, refcount down, RWX leaf, INVEPT) while read and
 * fetch faults stay shared (spurious); the last reference taking over the
 * frame itself (no allocation, back to FS_VM with its back-pointer, out of
 * the stable table); forced hash collisions through share_set_hash (never
 * a wrong merge, write permission restored, identical pages still merge);
 * salts (no sharing across VMs with different salts, sharing and its
 * cross-VM counters with equal ones); sharing switched off per VM
 * (nothing hashed, merged or filled); same-filled pages returned as values
 * (UNPOPULATED/FILLED); destroying a VM that maps shared frames (last
 * mappings free the frame and its stable entry, other VMs keep theirs); an
 * unstable-table partner whose VM went away; limits (shared frames are
 * charged, split among their mappings: a copy waits at the limit, a
 * last-reference write leaves the charge unchanged and goes through; a
 * guest merging pairs cannot pin frames beyond its limit); a full stable
 * table (merges refused, room again after a frame stops being shared);
 * slot reuse (after insert/delete churn over every home slot, lookups of
 * absent hashes stay short: deletion leaves no tombstones) and the
 * per-salt quota (a salt that floods the table gets its share, another
 * salt still shares);
 * share_tick's adaptive rate (up to 4x while merging, down to 1/4 while
 * finding nothing) and its CPU budget; and that share_check / p2m_check
 * notice a shared frame changed under its hash or a writable shared leaf,
 * and share_forget of an unknown frame panics. */
#include "tests/host/backend.h"

#include <stdbool.h>
#include <string.h>

#include "mm/ept.h"
#include "mm/mm.h"
#include "mm/p2m.h"
#include "mm/share.h"
#include "mm/zpool.h"

/* 8 MiB machine: the share tables get the minimum 1024 entries each (a
 * stable table of at most 512 shared frames). */
#define FRAMES 2048
#define RATE 64 /* configured pages per tick */

static struct p2m a, b, c;

/* ---- helpers ----------------------------------------------------------------- */

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* Deterministic, non-uniform page content for a seed. */
static void fill(void *dst, uint64_t seed)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL;
    uint64_t *w = dst;
    if (!x)
        x = 1;
    for (int i = 0; i < 512; i++)
        w[i] = xorshift(&x);
}

static void fill_words(void *dst, uint64_t v)
{
    uint64_t *w = dst;
    for (int i = 0; i < 512; i++)
        w[i] = v;
}

static int setup(void **state)
{
    (void)state;
    backend_frames(FRAMES, 1, FRAMES - 1);
    mm_set_watermark(4);
    backend_log_clear();
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    memset(&c, 0, sizeof(c));
    assert_int_equal(share_init(FRAMES, RATE), 0);
    assert_true(share_enabled());
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
    /* Destroy under the hash the shared frames were entered with (a test
     * may have installed its own), then restore xxHash64. */
    gone(&a);
    gone(&b);
    gone(&c);
    share_set_hash(NULL);
    share_fini(); /* asserts the stable table is empty */
    zpool_fini(); /* a no-op unless a test turned the pool on */
    backend_free();
    return 0;
}

static void make(struct p2m *p, uint16_t owner, uint64_t ngfn, uint64_t limit)
{
    static const char *const names[] = { "?", "a", "b", "c" };
    assert_int_equal(p2m_init(p, owner, names[owner < 4 ? owner : 0], ngfn, 0, limit, true), 0);
    assert_int_equal(mm_register(p), 0);
}

/* Populates gfn (a write fault) and writes content seed into it. */
static mfn_t put(struct p2m *p, uint64_t gfn, uint64_t seed)
{
    if (p2m_peek(p, gfn)->state != P2M_RESIDENT)
        assert_int_equal(p2m_fault(p, gfn * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
    assert_int_equal(p2m_peek(p, gfn)->state, P2M_RESIDENT);
    fill(backend_frame(p2m_peek(p, gfn)->payload), seed);
    return p2m_peek(p, gfn)->payload;
}

/* The guest page reads as content seed. */
static void expect_page(struct p2m *p, uint64_t gfn, uint64_t seed)
{
    static uint8_t want[4096], got[4096];
    fill(want, seed);
    assert_int_equal(p2m_read_page(p, gfn, got), 0);
    assert_memory_equal(got, want, 4096);
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

/* gfn is shared on frame m: p2m state, read+execute leaf to m. */
static void expect_shared(struct p2m *p, uint64_t gfn, mfn_t m)
{
    assert_int_equal(p2m_peek(p, gfn)->state, P2M_SHARED);
    assert_int_equal(p2m_peek(p, gfn)->payload, m);
    uint64_t l = leafv(p, gfn);
    assert_int_equal(l & PT_ADDR_MASK, m << PAGE_SHIFT);
    assert_int_equal(l & EPT_RWX, EPT_R | EPT_X);
    assert_int_equal(frame_get(m)->state, FS_SHARED);
}

/* gfn is a private page: resident on a FS_VM frame of p, RWX leaf. */
static void expect_private(struct p2m *p, uint64_t gfn)
{
    assert_int_equal(p2m_peek(p, gfn)->state, P2M_RESIDENT);
    mfn_t m = p2m_peek(p, gfn)->payload;
    struct frame *f = frame_get(m);
    assert_int_equal(f->state, FS_VM);
    assert_int_equal(f->owner, p->owner);
    assert_int_equal(f->gfn, gfn);
    assert_int_equal(f->refcount, 1);
    uint64_t l = leafv(p, gfn);
    assert_int_equal(l & PT_ADDR_MASK, m << PAGE_SHIFT);
    assert_int_equal(l & EPT_RWX, EPT_RWX);
}

static struct share_stats sstats(void)
{
    struct share_stats s;
    share_get_stats(&s);
    return s;
}

static uint64_t shared_frames(void)
{
    struct frame_stats fs;
    frame_get_stats(&fs);
    return fs.count[FS_SHARED];
}

/* Scans until k more full rounds over every VM have completed. */
static void scan_rounds(unsigned k)
{
    uint64_t target = sstats().rounds + k;
    for (uint64_t i = 0; i < 1000000; i++) {
        if (sstats().rounds >= target)
            return;
        share_scan(1);
    }
    fail_msg("the scanner did not complete %u rounds", k);
}

static void check_all(void)
{
    struct p2m *vms[] = { &a, &b, &c };
    for (int i = 0; i < 3; i++)
        if (vms[i]->map)
            assert_int_equal(p2m_check(vms[i]), 0);
    assert_int_equal(share_check(), 0);
}

enum { X = 101, Y = 202, Z = 303, W = 404, V = 505 }; /* content seeds */

/* ---- the scanner's cursor ------------------------------------------------------ */

/* share_scan(n) takes n steps: one per GFN of the regions the guest has
 * touched (whose map chunk exists), round robin over the VMs in
 * registration order, plus one at the end of each VM; a round ends after
 * the last VM. Memory never touched costs nothing. */
static void test_scan_round_robin(void **state)
{
    (void)state;
    make(&a, 1, 8, 0);
    make(&b, 2, 4, 0);
    share_scan(1); /* a: nothing touched, its boundary step */
    assert_int_equal(sstats().rounds, 0);
    share_scan(1); /* b's: a round */
    struct share_stats s = sstats();
    assert_int_equal(s.rounds, 1);
    assert_int_equal(s.visited, 0);
    /* One page each: their chunks (256 entries) cover both VMs whole. */
    put(&a, 0, X);
    put(&b, 0, Y);
    share_scan(13); /* 8 + 1 + 4: b's boundary step not yet taken */
    s = sstats();
    assert_int_equal(s.rounds, 1);
    assert_int_equal(s.visited, 12);
    assert_int_equal(s.hashed, 2); /* the two resident pages */
    share_scan(1);
    assert_int_equal(sstats().rounds, 2);
    share_scan(14 * 3);
    s = sstats();
    assert_int_equal(s.rounds, 5);
    assert_int_equal(s.visited, 48);
    /* Off: nothing happens. */
    gone(&a);
    gone(&b);
    share_fini();
    assert_false(share_enabled());
    assert_int_equal(share_init(FRAMES, 0), 0);
    assert_false(share_enabled());
    make(&a, 1, 8, 0);
    share_scan(100);
    share_tick(~0ULL);
    assert_int_equal(sstats().visited, 0);
    assert_int_equal(share_check(), 0);
}

/* ---- 1. merge within one VM ----------------------------------------------------- */

static void test_merge_one_vm(void **state)
{
    (void)state;
    make(&a, 1, 16, 0);
    mfn_t m3 = put(&a, 3, X);
    mfn_t m9 = put(&a, 9, X);
    put(&a, 5, Y);
    /* The hypervisor's own access path populates too. */
    uint8_t *p12 = p2m_gfn_ptr(&a, 12, true);
    assert_non_null(p12);
    fill(p12, Z);
    uint64_t free0 = backend_free_and_meta(), inv0 = backend_invept_calls();

    scan_rounds(1); /* first visit: hashed only */
    assert_int_equal(a.count[P2M_SHARED], 0);
    assert_true(p2m_peek(&a, 3)->flags & P2M_F_HASHED);
    assert_int_equal(backend_free_and_meta(), free0);

    scan_rounds(1); /* second visit, unchanged: merged */
    mfn_t m = p2m_peek(&a, 3)->payload;
    assert_true(m == m3 || m == m9);
    expect_shared(&a, 3, m);
    expect_shared(&a, 9, m);
    struct frame *f = frame_get(m);
    assert_int_equal(f->refcount, 2);
    assert_int_equal(backend_free_and_meta(), free0 + 1); /* the other private frame */
    mfn_t freed = m == m3 ? m9 : m3;
    assert_int_equal(frame_get(freed)->state, FS_FREE);
    assert_true(backend_invept_calls() > inv0); /* flushed before it was freed */
    assert_int_equal(shared_frames(), 1);
    expect_private(&a, 5);
    expect_private(&a, 12);
    assert_int_equal(a.count[P2M_SHARED], 2);
    assert_int_equal(a.count[P2M_RESIDENT], 2);
    assert_int_equal(a.st.share_merged, 2);
    assert_int_equal(a.st.share_cross, 0);
    struct share_stats s = sstats();
    assert_int_equal(s.merges, 2);
    assert_int_equal(s.new_frames, 1);
    assert_int_equal(s.merges_cross, 0);
    assert_int_equal(s.collisions, 0);
    assert_int_equal(s.compares, 1);
    assert_int_equal(s.hashed, 8);
    expect_page(&a, 3, X);
    expect_page(&a, 9, X);
    expect_page(&a, 5, Y);
    expect_page(&a, 12, Z);
    check_all();

    /* Further rounds change nothing. */
    scan_rounds(3);
    assert_int_equal(backend_free_and_meta(), free0 + 1);
    assert_int_equal(sstats().merges, 2);
    assert_int_equal(f->refcount, 2);
    check_all();
}

/* ---- 2. pages written between visits ------------------------------------------ */

static void test_written_pages_not_merged(void **state)
{
    (void)state;
    make(&a, 1, 8, 0);
    put(&a, 0, X);
    put(&a, 1, X);
    scan_rounds(1);
    /* The guest writes both pages (still identical to each other) before
     * the second visit, twice in a row. */
    for (int k = 0; k < 2; k++) {
        put(&a, 0, Y + (uint64_t)k);
        put(&a, 1, Y + (uint64_t)k);
        scan_rounds(1);
        expect_private(&a, 0);
        expect_private(&a, 1);
        assert_int_equal(sstats().unstable, 2 * (uint64_t)(k + 1));
    }
    assert_int_equal(sstats().merges, 0);
    assert_int_equal(sstats().compares, 0);
    /* Left alone for one more round, they merge. */
    scan_rounds(1);
    assert_int_equal(p2m_peek(&a, 0)->state, P2M_SHARED);
    assert_int_equal(p2m_peek(&a, 0)->payload, p2m_peek(&a, 1)->payload);
    expect_page(&a, 0, Y + 1);
    check_all();
}

/* A merge partner written after it was hashed (it waits in the unstable
 * table) is found changed by the byte comparison: stale, no merge, both
 * writable again. */
static void test_stale_partner(void **state)
{
    (void)state;
    make(&a, 1, 4, 0);
    put(&a, 0, X);
    put(&a, 1, X);
    scan_rounds(1);
    share_scan(1); /* gfn 0: second visit, into the unstable table */
    assert_int_equal(p2m_peek(&a, 0)->state, P2M_RESIDENT);
    ((uint8_t *)backend_frame(p2m_peek(&a, 0)->payload))[100] ^= 1; /* the guest writes */
    *leaf(&a, 0) |= EPT_A | EPT_D; /* ... as the hardware records it */
    *leaf(&a, 1) |= EPT_A;
    share_scan(1); /* gfn 1 finds gfn 0 as its partner */
    /* The failed merge gave write back without losing the accessed and
     * dirty bits reclaim's clock relies on. */
    assert_int_equal(*leaf(&a, 0) & (EPT_A | EPT_D), EPT_A | EPT_D);
    assert_int_equal(*leaf(&a, 1) & EPT_A, EPT_A);
    struct share_stats s = sstats();
    assert_int_equal(s.stale, 1);
    assert_int_equal(s.compares, 1);
    assert_int_equal(s.merges, 0);
    expect_private(&a, 0);
    expect_private(&a, 1);
    expect_page(&a, 1, X);
    check_all();
}

/* ---- 3. copy-on-write ----------------------------------------------------------- */

static void test_cow_break(void **state)
{
    (void)state;
    make(&a, 1, 16, 0);
    put(&a, 2, X);
    put(&a, 5, X);
    put(&a, 7, X);
    put(&a, 1, Y);
    scan_rounds(2);
    mfn_t m = p2m_peek(&a, 2)->payload;
    expect_shared(&a, 2, m);
    expect_shared(&a, 5, m);
    expect_shared(&a, 7, m);
    struct frame *f = frame_get(m);
    assert_int_equal(f->refcount, 3);
    assert_int_equal(sstats().merges, 3);
    check_all();

    /* A write: gfn 5 gets a private copy. */
    uint64_t free0 = backend_free_and_meta(), inv0 = backend_invept_calls();
    assert_int_equal(p2m_fault(&a, 5 * PAGE_SIZE + 0x80, P2M_ACCESS_W), P2M_OK);
    expect_private(&a, 5);
    mfn_t m5 = p2m_peek(&a, 5)->payload;
    assert_true(m5 != m);
    assert_int_equal(backend_free_and_meta(), free0 - 1);
    assert_int_equal(f->state, FS_SHARED);
    assert_int_equal(f->refcount, 2);
    assert_true(backend_invept_calls() > inv0);
    assert_int_equal(a.st.cow_copies, 1);
    assert_int_equal(a.st.cow_last, 0);
    assert_int_equal(a.st.faults[PF_COW], 1);
    assert_int_equal(a.count[P2M_SHARED], 2);
    expect_page(&a, 5, X);
    check_all();
    /* The copy is the guest's own: writing it leaves the others alone. */
    ((uint8_t *)backend_frame(m5))[7] ^= 0xff;
    expect_page(&a, 2, X);
    expect_page(&a, 7, X);
    assert_int_equal(share_check(), 0);

    /* Reads and fetches are allowed by the read-only leaf: spurious, and
     * the page stays shared. */
    uint64_t inv1 = backend_invept_calls();
    assert_int_equal(p2m_fault(&a, 2 * PAGE_SIZE, P2M_ACCESS_R), P2M_OK);
    assert_int_equal(p2m_fault(&a, 7 * PAGE_SIZE, P2M_ACCESS_X), P2M_OK);
    expect_shared(&a, 2, m);
    expect_shared(&a, 7, m);
    assert_int_equal(f->refcount, 2);
    assert_int_equal(a.st.faults[PF_SPURIOUS], 2);
    assert_int_equal(a.st.faults[PF_COW], 1);
    assert_true(backend_invept_calls() > inv1);
    /* A stale leaf (read-only, no execute) is made right again. */
    *leaf(&a, 2) &= ~(uint64_t)(EPT_W | EPT_X);
    assert_int_equal(p2m_fault(&a, 2 * PAGE_SIZE, P2M_ACCESS_R), P2M_OK);
    expect_shared(&a, 2, m);
    check_all();
}

/* ---- 4. the last reference ------------------------------------------------------ */

static void test_cow_last_reference(void **state)
{
    (void)state;
    make(&a, 1, 8, 0);
    put(&a, 0, X);
    put(&a, 1, X);
    put(&a, 4, Y);
    scan_rounds(2);
    mfn_t m = p2m_peek(&a, 0)->payload;
    expect_shared(&a, 1, m);
    assert_int_equal(p2m_fault(&a, 0, P2M_ACCESS_W), P2M_OK); /* a copy */
    assert_int_equal(frame_get(m)->refcount, 1);
    expect_shared(&a, 1, m);
    check_all();

    uint64_t free0 = backend_free_and_meta(), inv0 = backend_invept_calls();
    assert_int_equal(p2m_fault(&a, 1 * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
    assert_int_equal(backend_free_and_meta(), free0); /* no allocation */
    assert_int_equal(p2m_peek(&a, 1)->payload, m);
    expect_private(&a, 1); /* FS_VM, owner a, back-pointer gfn 1 */
    assert_true(backend_invept_calls() > inv0);
    assert_int_equal(a.st.cow_last, 1);
    assert_int_equal(a.st.cow_copies, 1);
    assert_int_equal(a.st.faults[PF_COW], 2);
    assert_int_equal(a.count[P2M_SHARED], 0);
    assert_int_equal(shared_frames(), 0);
    expect_page(&a, 0, X);
    expect_page(&a, 1, X);
    check_all();

    /* The stable table forgot it: the still identical pages make a new
     * shared frame (joining the old entry would hit a FS_VM frame). */
    uint64_t nf = sstats().new_frames;
    scan_rounds(2);
    assert_int_equal(sstats().new_frames, nf + 1);
    mfn_t m2 = p2m_peek(&a, 0)->payload;
    expect_shared(&a, 0, m2);
    expect_shared(&a, 1, m2);
    assert_int_equal(frame_get(m2)->refcount, 2);
    check_all();
}

/* ---- 5. forced collisions -------------------------------------------------------- */

static uint64_t const_hash(const void *page, uint64_t salt)
{
    (void)page;
    (void)salt;
    return 0x1234567890abcdefULL;
}

static void test_forced_collision(void **state)
{
    (void)state;
    share_set_hash(const_hash);
    assert_int_equal(share_hash(backend_frame(1), 1), 0x1234567890abcdefULL);
    make(&a, 1, 8, 0);
    put(&a, 0, Y); /* every page has the same "hash" */
    put(&a, 1, Z);
    put(&a, 2, X);
    put(&a, 3, X);
    scan_rounds(2);
    /* gfn 1 met gfn 0 in the unstable table (stale: different bytes);
     * gfns 2 and 3 are identical and merge. */
    struct share_stats s = sstats();
    assert_int_equal(s.stale, 1);
    assert_int_equal(s.new_frames, 1);
    mfn_t m = p2m_peek(&a, 2)->payload;
    expect_shared(&a, 2, m);
    expect_shared(&a, 3, m);
    scan_rounds(2); /* gfns 0 and 1 now meet the stable frame: collisions */
    s = sstats();
    assert_int_equal(s.collisions, 4);
    assert_int_equal(s.merges, 2);
    expect_private(&a, 0); /* write permission given back */
    expect_private(&a, 1);
    expect_page(&a, 0, Y);
    expect_page(&a, 1, Z);
    expect_page(&a, 2, X);
    check_all();
    /* Writable indeed: a write fault is spurious, no copy-on-write. */
    assert_int_equal(p2m_fault(&a, 0, P2M_ACCESS_W), P2M_OK);
    assert_int_equal(a.st.faults[PF_SPURIOUS], 1);
    assert_int_equal(a.st.faults[PF_COW], 0);
    /* share_forget recomputes the hash: drop the shared frame under the
     * hash it was entered with, then restore xxHash64. */
    gone(&a);
    assert_int_equal(shared_frames(), 0);
    share_set_hash(NULL);
    assert_int_not_equal(share_hash(backend_frame(1), 1), 0x1234567890abcdefULL);
}

/* ---- 6. salts -------------------------------------------------------------------- */

static void test_salt_separates_vms(void **state)
{
    (void)state;
    make(&a, 1, 8, 0);
    make(&b, 2, 8, 0);
    assert_int_not_equal(a.salt, b.salt); /* the defaults: one per owner */
    uint8_t page[4096];
    fill(page, X);
    assert_int_not_equal(share_hash(page, a.salt), share_hash(page, b.salt));
    put(&a, 0, X);
    put(&a, 1, X);
    put(&a, 2, Y);
    put(&b, 0, X);
    put(&b, 1, Y);
    scan_rounds(3);
    mfn_t ma = p2m_peek(&a, 0)->payload;
    expect_shared(&a, 0, ma);
    expect_shared(&a, 1, ma);
    assert_int_equal(frame_get(ma)->refcount, 2);
    expect_private(&a, 2);
    expect_private(&b, 0); /* same bytes as a's shared frame: not shared */
    expect_private(&b, 1);
    struct share_stats s = sstats();
    assert_int_equal(s.merges_cross, 0);
    assert_int_equal(s.new_frames, 1);
    assert_int_equal(a.st.share_cross + b.st.share_cross, 0);
    /* Within b, duplicates merge onto b's own frame. */
    put(&b, 5, X);
    scan_rounds(2);
    mfn_t mb = p2m_peek(&b, 0)->payload;
    assert_true(mb != ma);
    expect_shared(&b, 0, mb);
    expect_shared(&b, 5, mb);
    assert_int_equal(frame_get(mb)->refcount, 2);
    assert_int_equal(frame_get(ma)->refcount, 2);
    assert_int_equal(shared_frames(), 2);
    assert_int_equal(sstats().merges_cross, 0);
    check_all();
}

static void test_equal_salts_share_across_vms(void **state)
{
    (void)state;
    make(&a, 1, 8, 0);
    make(&b, 2, 8, 0);
    b.salt = a.salt;
    put(&a, 0, X);
    put(&b, 0, X);
    put(&b, 1, X);
    scan_rounds(2);
    /* a:0 waits in the unstable table; b:0 finds it (new frame, a:0
     * joins: cross for a); b:1 joins from the stable table (cross for b). */
    mfn_t m = p2m_peek(&a, 0)->payload;
    expect_shared(&a, 0, m);
    expect_shared(&b, 0, m);
    expect_shared(&b, 1, m);
    assert_int_equal(frame_get(m)->refcount, 3);
    struct share_stats s = sstats();
    assert_int_equal(s.new_frames, 1);
    assert_int_equal(s.merges, 3);
    assert_int_equal(s.merges_cross, 2);
    assert_int_equal(a.st.share_cross, 1);
    assert_int_equal(b.st.share_cross, 1);
    assert_int_equal(a.st.share_merged, 1);
    assert_int_equal(b.st.share_merged, 2);
    expect_page(&a, 0, X);
    check_all();
    /* A write in one VM copies; the other VM still reads the frame. */
    assert_int_equal(p2m_fault(&b, 0, P2M_ACCESS_W), P2M_OK);
    expect_private(&b, 0);
    assert_int_equal(frame_get(m)->refcount, 2);
    expect_shared(&a, 0, m);
    check_all();
}

/* ---- 7. sharing off for one VM --------------------------------------------------- */

static void test_share_disabled(void **state)
{
    (void)state;
    make(&a, 1, 8, 0);
    make(&b, 2, 8, 0);
    a.share = false;
    b.salt = a.salt;
    put(&a, 0, X);
    put(&a, 1, X);
    assert_int_equal(p2m_fault(&a, 2 * PAGE_SIZE, P2M_ACCESS_W), P2M_OK); /* zero */
    put(&b, 0, X);
    put(&b, 1, X);
    scan_rounds(3);
    for (uint64_t g = 0; g < 3; g++) {
        expect_private(&a, g);
        assert_false(p2m_peek(&a, g)->flags & P2M_F_HASHED);
    }
    assert_int_equal(a.count[P2M_SHARED], 0);
    assert_int_equal(a.st.share_zero, 0);
    assert_int_equal(a.st.share_merged, 0);
    mfn_t m = p2m_peek(&b, 0)->payload;
    expect_shared(&b, 0, m);
    expect_shared(&b, 1, m);
    assert_int_equal(frame_get(m)->refcount, 2);
    struct share_stats s = sstats();
    assert_int_equal(s.hashed, 4); /* b's two pages, two visits each */
    assert_int_equal(s.zero_merged, 0);
    assert_int_equal(s.merges_cross, 0);
    assert_int_equal(s.visited, 3 * 16);
    check_all();
    /* Switched on, a's pages join b's frame and its zero page goes. */
    a.share = true;
    scan_rounds(2);
    expect_shared(&a, 0, m);
    expect_shared(&a, 1, m);
    assert_int_equal(frame_get(m)->refcount, 4);
    assert_int_equal(p2m_peek(&a, 2)->state, P2M_UNPOPULATED);
    check_all();
}

/* ---- 8. same-filled pages --------------------------------------------------------- */

static void test_same_filled(void **state)
{
    (void)state;
    make(&a, 1, 8, 0);
    assert_int_equal(p2m_fault(&a, 0, P2M_ACCESS_W), P2M_OK); /* stays zero */
    assert_int_equal(p2m_fault(&a, 1 * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
    fill_words(backend_frame(p2m_peek(&a, 1)->payload), 0x0101010101010101ULL);
    assert_int_equal(p2m_fault(&a, 3 * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
    fill_words(backend_frame(p2m_peek(&a, 3)->payload), 0xdeadbeefcafef00dULL);
    put(&a, 2, X);
    assert_int_equal(p2m_fault(&a, 4 * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
    ((uint8_t *)backend_frame(p2m_peek(&a, 4)->payload))[4095] = 1; /* almost zero */
    assert_int_equal(p2m_fault(&a, 5 * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
    fill_words(backend_frame(p2m_peek(&a, 5)->payload), 0x0101010101010101ULL); /* twice */
    /* Zero where the scanner's first look samples, not in word 300: it
     * is unmapped for the full check, found not filled, mapped again. */
    assert_int_equal(p2m_fault(&a, 6 * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
    ((uint64_t *)backend_frame(p2m_peek(&a, 6)->payload))[300] = 7;
    uint64_t leaf6 = leafv(&a, 6);
    uint64_t free0 = backend_free_and_meta(), inv0 = backend_invept_calls();
    scan_rounds(1); /* the first visit is enough */
    assert_int_equal(p2m_peek(&a, 0)->state, P2M_UNPOPULATED);
    assert_int_equal(p2m_peek(&a, 1)->state, P2M_FILLED);
    assert_int_equal(p2m_peek(&a, 1)->payload, 0x0101010101010101ULL);
    assert_int_equal(p2m_peek(&a, 3)->state, P2M_FILLED);
    assert_int_equal(p2m_peek(&a, 3)->payload, 0xdeadbeefcafef00dULL);
    assert_int_equal(p2m_peek(&a, 5)->state, P2M_FILLED);
    static const uint64_t filled[] = { 0, 1, 3, 5 };
    for (int i = 0; i < 4; i++)
        assert_int_equal(leafv(&a, filled[i]) & EPT_RWX, 0);
    assert_true(backend_invept_calls() > inv0);
    expect_private(&a, 2);
    expect_private(&a, 4);
    expect_private(&a, 6);
    assert_int_equal(leafv(&a, 6), leaf6); /* as it was, accessed and dirty bits too */
    assert_int_equal(backend_free_and_meta(), free0 + 4);
    assert_int_equal(shared_frames(), 0);
    assert_int_equal(a.st.share_zero, 4);
    struct share_stats s = sstats();
    assert_int_equal(s.zero_merged, 4);
    assert_int_equal(s.new_frames, 0);
    assert_int_equal(s.hashed, 3);
    uint64_t buf[512];
    assert_int_equal(p2m_read_page(&a, 3, buf), 0);
    for (int i = 0; i < 512; i++)
        assert_int_equal(buf[i], 0xdeadbeefcafef00dULL);
    check_all();
    /* Touching one brings its value back (refill). */
    assert_int_equal(p2m_fault(&a, 1 * PAGE_SIZE, P2M_ACCESS_R), P2M_OK);
    assert_int_equal(p2m_peek(&a, 1)->state, P2M_RESIDENT);
    assert_int_equal(a.st.faults[PF_REFILL], 1);
    assert_int_equal(((uint64_t *)backend_frame(p2m_peek(&a, 1)->payload))[511], 0x0101010101010101ULL);
    check_all();
}

/* ---- 9. destroying a VM ------------------------------------------------------------ */

/* Many unique pages ahead in scan order must not crowd later duplicates
 * out of the unstable table: VM a holds 600 unique pages and a pair at
 * 650/651, VM b a pair at 0/1; both pairs merge. (The table once stopped
 * taking entries when half full, so later pages never found partners.) */
static void test_unique_pages_do_not_block_merges(void **state)
{
    (void)state;
    make(&a, 1, 700, 0);
    make(&b, 2, 4, 0);
    b.salt = a.salt;
    for (uint64_t g = 0; g < 600; g++)
        put(&a, g, 1000 + g);
    put(&a, 650, 77);
    put(&a, 651, 77);
    put(&b, 0, 88);
    put(&b, 1, 88);
    scan_rounds(3);
    assert_int_equal(p2m_peek(&a, 650)->state, P2M_SHARED);
    assert_int_equal(p2m_peek(&a, 651)->state, P2M_SHARED);
    assert_int_equal(p2m_peek(&b, 0)->state, P2M_SHARED);
    assert_int_equal(p2m_peek(&b, 1)->state, P2M_SHARED);
    assert_int_equal(a.count[P2M_SHARED], 2);
    check_all();
}

static void test_destroy_drops_references(void **state)
{
    (void)state;
    make(&a, 1, 8, 0);
    make(&b, 2, 8, 0);
    b.salt = a.salt;
    put(&a, 0, X);
    put(&a, 1, Y);
    put(&b, 0, X);
    put(&b, 1, Y);
    put(&b, 2, Z);
    put(&b, 3, Z);
    scan_rounds(2);
    mfn_t mx = p2m_peek(&a, 0)->payload, my = p2m_peek(&a, 1)->payload, mz = p2m_peek(&b, 2)->payload;
    expect_shared(&b, 0, mx);
    expect_shared(&b, 1, my);
    expect_shared(&b, 3, mz);
    assert_int_equal(frame_get(mx)->refcount, 2);
    assert_int_equal(frame_get(mz)->refcount, 2);
    assert_int_equal(shared_frames(), 3);
    check_all();

    uint64_t free0 = backend_free_and_meta();
    gone(&b);
    /* b's last mappings of Z: the frame is free; a's frames stay. */
    assert_int_equal(frame_get(mz)->state, FS_FREE);
    assert_int_equal(shared_frames(), 2);
    assert_true(backend_free_and_meta() > free0);
    expect_shared(&a, 0, mx);
    expect_shared(&a, 1, my);
    assert_int_equal(frame_get(mx)->refcount, 1);
    assert_int_equal(frame_get(my)->refcount, 1);
    expect_page(&a, 0, X);
    expect_page(&a, 1, Y);
    check_all();

    /* Z left the stable table: a's own Z pages make a new frame (the
     * freed one may well be among a's new private frames by now). */
    put(&a, 4, Z);
    put(&a, 5, Z);
    uint64_t nf = sstats().new_frames;
    scan_rounds(2);
    assert_int_equal(sstats().new_frames, nf + 1);
    mfn_t mz2 = p2m_peek(&a, 4)->payload;
    expect_shared(&a, 4, mz2);
    expect_shared(&a, 5, mz2);
    /* X is a's alone now: a write takes the frame over. */
    assert_int_equal(p2m_fault(&a, 0, P2M_ACCESS_W), P2M_OK);
    assert_int_equal(a.st.cow_last, 1);
    assert_int_equal(p2m_peek(&a, 0)->payload, mx);
    expect_private(&a, 0);
    check_all();
}

/* A page waiting in the unstable table belongs to a VM that is then
 * destroyed: its identical partner in another VM finds nobody, merges
 * nothing, and nothing touches the freed map. */
static void test_unstable_partner_gone(void **state)
{
    (void)state;
    make(&b, 2, 4, 0); /* registered first: scanned first */
    make(&a, 1, 8, 0);
    b.salt = a.salt;
    put(&b, 0, X);
    put(&a, 1, X);
    scan_rounds(1);
    share_scan(1); /* b:0, second visit: into the unstable table */
    assert_int_equal(sstats().merges, 0);
    gone(&b);
    /* The cursor (VM 0, gfn 1) now points at a:1. */
    share_scan(1);
    struct share_stats s = sstats();
    assert_int_equal(s.merges, 0);
    assert_int_equal(s.compares, 0);
    expect_private(&a, 1);
    scan_rounds(3);
    expect_private(&a, 1);
    assert_int_equal(sstats().merges, 0);
    check_all();
    /* A new VM with b's owner id and the same bytes elsewhere still merges
     * only after its own two visits. */
    make(&c, 2, 4, 0);
    c.salt = a.salt;
    put(&c, 3, X);
    scan_rounds(1);
    assert_int_equal(sstats().merges, 0);
    scan_rounds(1);
    mfn_t m = p2m_peek(&a, 1)->payload;
    expect_shared(&a, 1, m);
    expect_shared(&c, 3, m);
    check_all();
}

/* ---- 10. limits -------------------------------------------------------------------- */

static void test_limit_waits(void **state)
{
    (void)state;
    make(&a, 1, 16, 7);
    for (uint64_t g = 0; g < 4; g++)
        put(&a, g, V + g);
    put(&a, 4, X);
    put(&a, 5, X);
    scan_rounds(2);
    mfn_t m = p2m_peek(&a, 4)->payload;
    expect_shared(&a, 5, m);
    assert_int_equal(a.count[P2M_RESIDENT], 4);
    assert_int_equal(a.shared_charge, SHARE_CHARGE_ONE); /* two halves of one frame */
    put(&a, 6, Y);
    put(&a, 7, Z);
    assert_int_equal(a.count[P2M_RESIDENT], 6);
    assert_int_equal(mm_charged(&a), 7); /* at the limit, nothing reclaimable */

    /* A copy needs a frame beyond the limit: wait. */
    assert_int_equal(p2m_fault(&a, 4 * PAGE_SIZE, P2M_ACCESS_W), P2M_WAIT);
    assert_int_equal(a.st.waits, 1);
    expect_shared(&a, 4, m);
    assert_int_equal(frame_get(m)->refcount, 2);
    check_all();
    a.limit++;
    assert_int_equal(p2m_fault(&a, 4 * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
    expect_private(&a, 4);
    assert_int_equal(frame_get(m)->refcount, 1);
    assert_int_equal(a.count[P2M_RESIDENT], 7);
    assert_int_equal(mm_charged(&a), 8); /* the frame is all its own now */

    /* The last reference takes no frame and leaves the charge as it is:
     * no wait at the limit. */
    uint64_t free0 = backend_free_and_meta();
    assert_int_equal(p2m_fault(&a, 5 * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
    expect_private(&a, 5);
    assert_int_equal(p2m_peek(&a, 5)->payload, m);
    assert_int_equal(a.st.cow_last, 1);
    assert_int_equal(a.st.cow_copies, 1);
    assert_int_equal(a.st.waits, 1);
    assert_int_equal(backend_free_and_meta(), free0);
    assert_int_equal(a.count[P2M_RESIDENT], 8);
    assert_int_equal(mm_charged(&a), 8);
    assert_int_equal(a.shared_charge, 0);
    assert_int_equal(shared_frames(), 0);
    expect_page(&a, 4, X);
    expect_page(&a, 5, X);
    check_all();
}

/* A guest that writes pairs of identical pages and lets them merge: each
 * shared frame counts as a frame against its limit (two halves), so it
 * cannot pin shared frames beyond it. Without the charge it held twice
 * its limit. A frame shared with another VM is split exactly. */
static void test_shared_charge_limit(void **state)
{
    (void)state;
    enum { LIMIT = 16, PAIRS = 32 };
    make(&a, 1, 2 * PAIRS, LIMIT);
    unsigned pairs = 0;
    bool waited = false;
    for (uint64_t k = 0; k < PAIRS && !waited; k++) {
        for (uint64_t g = 2 * k; g < 2 * k + 2; g++) {
            if (p2m_fault(&a, g * PAGE_SIZE, P2M_ACCESS_W) == P2M_WAIT) {
                waited = true;
                break;
            }
            fill(backend_frame(p2m_peek(&a, g)->payload), 3000 + k);
        }
        if (!waited)
            pairs++;
        scan_rounds(2);
        /* Frames it holds: private ones and shared ones only it maps. */
        assert_true(a.count[P2M_RESIDENT] + shared_frames() <= LIMIT);
        assert_true(mm_charged(&a) <= LIMIT);
    }
    print_message("limit %d: %u pairs written and merged, then a wait; holds %llu frames\n",
                  LIMIT, pairs, (unsigned long long)(a.count[P2M_RESIDENT] + shared_frames()));
    assert_true(waited);
    assert_true(pairs < LIMIT);
    check_all();
    /* Split: b (same salt) maps one of a's frames, refcount 3. */
    make(&b, 2, 4, 0);
    b.salt = a.salt;
    uint64_t a0 = a.shared_charge;
    put(&b, 0, 3000);
    scan_rounds(2);
    assert_int_equal(p2m_peek(&b, 0)->state, P2M_SHARED);
    assert_int_equal(frame_get(p2m_peek(&b, 0)->payload)->refcount, 3);
    uint64_t third = (SHARE_CHARGE_ONE + 2) / 3;
    assert_int_equal(b.shared_charge, third);
    assert_int_equal(a.shared_charge, a0 - SHARE_CHARGE_ONE + 2 * third);
    check_all();
    gone(&b); /* a gets the whole frame back */
    assert_int_equal(a.shared_charge, a0);
    check_all();
}

/* At the limit, a last-reference write makes room by reclaiming a zero
 * page of the same VM. */
static void test_limit_reclaims_for_last_reference(void **state)
{
    (void)state;
    make(&a, 1, 16, 5);
    put(&a, 0, X);
    put(&a, 1, X);
    scan_rounds(2);
    assert_int_equal(p2m_fault(&a, 0, P2M_ACCESS_W), P2M_OK); /* copy: 1 resident */
    put(&a, 2, Y);
    put(&a, 3, Z);
    assert_int_equal(p2m_fault(&a, 4 * PAGE_SIZE, P2M_ACCESS_W), P2M_OK); /* zero */
    assert_int_equal(a.count[P2M_RESIDENT], 4);
    /* Shared frames are charged: X's frame counts, so the limit was 5 up
     * to here; lowered, the VM is at it in private pages alone. */
    assert_int_equal(mm_charged(&a), 5);
    a.limit = 4;
    a.share = false; /* keep the scanner off the zero page */
    assert_int_equal(p2m_fault(&a, 1 * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
    assert_int_equal(p2m_peek(&a, 4)->state, P2M_UNPOPULATED);
    assert_int_equal(a.st.zero_reclaimed, 1);
    assert_int_equal(a.st.cow_last, 1);
    expect_private(&a, 1);
    expect_page(&a, 1, X);
    check_all();
}

/* ---- a full stable table ----------------------------------------------------------- */

static void test_stable_table_full(void **state)
{
    (void)state;
    enum { PAIRS = 515, CAP = 512, FIRST = 300 }; /* 1024 entries, at most half used */
    make(&a, 1, 2 * PAIRS, 0);
    /* In two batches: the unstable table (also 1024 entries, half usable
     * per round) must not be what runs out. */
    for (uint64_t i = 0; i < PAIRS; i++) {
        if (i == FIRST) {
            scan_rounds(2);
            assert_int_equal(sstats().new_frames, FIRST);
        }
        put(&a, 2 * i, 1000 + i);
        put(&a, 2 * i + 1, 1000 + i);
    }
    scan_rounds(2);
    struct share_stats s = sstats();
    assert_int_equal(s.new_frames, CAP);
    assert_int_equal(s.table_full, PAIRS - CAP);
    assert_int_equal(shared_frames(), CAP);
    for (uint64_t g = 2 * CAP; g < 2 * PAIRS; g++)
        expect_private(&a, g); /* refused: writable again */
    check_all();
    /* Pair 0 stops being shared (copy, then the last reference): its
     * entry goes and the next refused pair takes the room. */
    assert_int_equal(p2m_fault(&a, 0, P2M_ACCESS_W), P2M_OK);
    assert_int_equal(p2m_fault(&a, 1 * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
    assert_int_equal(shared_frames(), CAP - 1);
    scan_rounds(1);
    assert_int_equal(sstats().new_frames, CAP + 1);
    assert_int_equal(shared_frames(), CAP);
    assert_int_equal(p2m_peek(&a, 2 * CAP)->state, P2M_SHARED);
    assert_int_equal(p2m_peek(&a, 2 * CAP + 1)->state, P2M_SHARED);
    expect_private(&a, 0);
    expect_page(&a, 2 * CAP, 1000 + CAP);
    check_all();
}

/* ---- 10b. slot reuse under churn, and the salt quota ------------------------------ */

/* The "hash" is the page's first word: a test chooses every home slot. */
static uint64_t first_word_hash(const void *page, uint64_t salt)
{
    (void)salt;
    return *(const uint64_t *)page;
}

static void put_hashed(struct p2m *p, uint64_t gfn, uint64_t hash, uint64_t seed)
{
    put(p, gfn, seed);
    *(uint64_t *)backend_frame(p2m_peek(p, gfn)->payload) = hash;
}

/* Shared frames come and go with a home slot in every position of the
 * table, 1.5 times over, while 100 others stay. Deleted slots must become
 * empty again: with tombstones every slot ends up non-empty and a lookup
 * of an absent hash examines the whole table (1024 slots). */
static void test_stable_churn_probe_length(void **state)
{
    (void)state;
    enum { LIVE = 100, CYCLES = 1536, SLOTS = 1024 };
    share_set_hash(first_word_hash);
    make(&a, 1, 2 + 2 * LIVE + 1, 0);
    for (uint64_t i = 0; i < LIVE; i++) { /* homes 5, 15, 25, ...: spread */
        put_hashed(&a, 2 + 2 * i, 0x7700000000ULL + 10 * i + 5, 5000 + i);
        put_hashed(&a, 3 + 2 * i, 0x7700000000ULL + 10 * i + 5, 5000 + i);
    }
    scan_rounds(2);
    assert_int_equal(shared_frames(), LIVE);
    for (uint64_t k = 0; k < CYCLES; k++) {
        uint64_t h = (k << 20) | (k % SLOTS); /* home slot k mod 1024 */
        put_hashed(&a, 0, h, 9000 + k);
        put_hashed(&a, 1, h, 9000 + k);
        scan_rounds(2);
        assert_int_equal(p2m_peek(&a, 0)->state, P2M_SHARED);
        /* Copy, then the last reference: the entry is deleted. */
        assert_int_equal(p2m_fault(&a, 0, P2M_ACCESS_W), P2M_OK);
        assert_int_equal(p2m_fault(&a, 1 * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
        assert_int_equal(shared_frames(), LIVE);
    }
    check_all();
    uint64_t worst = 0, total = 0;
    for (uint64_t k = 0; k < SLOTS; k++) {
        uint64_t n = share_probe_length((0xabcULL << 40) | k, a.salt); /* absent */
        total += n;
        worst = n > worst ? n : worst;
    }
    print_message("absent-hash lookups after %d insert/delete cycles with %d live entries: "
                  "mean %.2f, longest %llu slots\n",
                  CYCLES, LIVE, (double)total / SLOTS, (unsigned long long)worst);
    assert_true(worst <= 4);
    /* The live entries survived the shifts: a third copy still joins. */
    uint64_t g = 2 + 2 * LIVE;
    put_hashed(&a, g, 0x7700000000ULL + 10 * 37 + 5, 5000 + 37);
    scan_rounds(2);
    expect_shared(&a, g, p2m_peek(&a, 2 + 2 * 37)->payload);
    assert_int_equal(frame_get(p2m_peek(&a, g)->payload)->refcount, 3);
    check_all();
    gone(&a); /* under the hash the frames were entered with */
}

/* Two salts: the stable table (512 entries) gives each at most half. One
 * that floods it with 520 pairs gets 256 and is refused the rest (counted
 * for its salt); the other still shares everything it has. */
static void test_salt_quota(void **state)
{
    (void)state;
    enum { FLOOD = 520, PAIRS = 20 };
    make(&a, 1, 2 * FLOOD, 0);
    make(&b, 2, 2 * PAIRS, 0);
    assert_int_not_equal(a.salt, b.salt);
    assert_int_equal(share_salt_quota(), 256);
    for (uint64_t i = 0; i < FLOOD; i++) {
        if (i == 300)
            scan_rounds(2); /* in two batches: the unstable cache is not what runs out */
        put(&a, 2 * i, 1000 + i);
        put(&a, 2 * i + 1, 1000 + i);
    }
    scan_rounds(4);
    uint64_t used, refused;
    assert_true(share_salt_usage(a.salt, &used, &refused));
    print_message("flooding salt: %llu entries, %llu inserts refused\n",
                  (unsigned long long)used, (unsigned long long)refused);
    assert_int_equal(used, 256);
    assert_true(refused >= FLOOD - 256);
    assert_true(sstats().quota_refused >= FLOOD - 256);
    /* The other salt's pages arrive after the flood. */
    for (uint64_t i = 0; i < PAIRS; i++) {
        put(&b, 2 * i, 7000 + i);
        put(&b, 2 * i + 1, 7000 + i);
    }
    scan_rounds(3);
    assert_int_equal(b.count[P2M_SHARED], 2 * PAIRS);
    assert_true(share_salt_usage(b.salt, &used, &refused));
    assert_int_equal(used, PAIRS);
    assert_int_equal(refused, 0);
    check_all();
    /* The flooder's frames go (its VM stops): its share is free again. */
    gone(&a);
    assert_true(share_salt_usage(b.salt, &used, &refused));
    assert_int_equal(share_salt_quota(), 512);
    check_all();
}

/* ---- 11. share_tick's rate ---------------------------------------------------------- */

static void test_tick_adapts_rate(void **state)
{
    (void)state;
    enum { N = 512 };
    make(&a, 1, N, 0);
    for (uint64_t g = 0; g < N; g++)
        put(&a, g, X);
    assert_int_equal(sstats().rate, RATE);
    uint64_t lo = RATE, hi = RATE, ticks = 0;
    bool grew_while_merging = false;
    /* Round 1 finds nothing (first visits): the rate falls to a quarter.
     * Round 2 merges at every page: it climbs to four times. */
    while (a.count[P2M_SHARED] < N) {
        assert_true(++ticks < 10000);
        uint64_t before = sstats().merges;
        share_tick(~0ULL);
        uint64_t r = sstats().rate;
        if (sstats().merges > before && r > RATE)
            grew_while_merging = true;
        lo = r < lo ? r : lo;
        hi = r > hi ? r : hi;
    }
    assert_int_equal(lo, RATE / 4);
    assert_int_equal(hi, RATE * 4);
    assert_true(grew_while_merging);
    /* Nothing left to find: back down to a quarter, and no lower. */
    for (int k = 0; k < 16; k++) {
        uint64_t before = sstats().rate;
        share_tick(~0ULL);
        uint64_t r = sstats().rate;
        assert_true(r <= before);
        assert_true(r >= RATE / 4);
    }
    assert_int_equal(sstats().rate, RATE / 4);
    /* A tick visits exactly its rate of steps without a CPU budget... */
    uint64_t v0 = sstats().visited, rounds0 = sstats().rounds;
    share_tick(~0ULL);
    assert_int_equal(sstats().visited + (sstats().rounds - rounds0), v0 + RATE / 4);
    /* ... and stops early once its budget is spent. */
    v0 = sstats().visited;
    share_tick(0);
    assert_true(sstats().visited - v0 <= 8);
    assert_int_equal(frame_get(p2m_peek(&a, 0)->payload)->refcount, N);
    check_all();
}

/* ---- the checkers ------------------------------------------------------------------- */

static void test_checkers_notice(void **state)
{
    (void)state;
    make(&a, 1, 4, 0);
    put(&a, 0, X);
    put(&a, 1, X);
    scan_rounds(2);
    mfn_t m = p2m_peek(&a, 0)->payload;
    check_all();
    /* A shared frame written behind the p2m's back. */
    uint8_t *bytes = backend_frame(m);
    bytes[17] ^= 0x40;
    backend_log_clear();
    assert_true(share_check() >= 1);
    assert_non_null(strstr(backend_log(), "changed under its hash"));
    bytes[17] ^= 0x40;
    assert_int_equal(share_check(), 0);
    /* A writable leaf on a shared page. */
    *leaf(&a, 1) |= EPT_W;
    assert_true(p2m_check(&a) >= 1);
    *leaf(&a, 1) &= ~EPT_W;
    assert_int_equal(p2m_check(&a), 0);
    /* Forgetting a frame the table does not hold is a hypervisor bug. */
    EXPECT_PANIC(share_forget(a.ept_root, 42, a.salt));
    assert_non_null(strstr(backend_panic_msg(), "stable table does not hold"));
    check_all();
}

/* ---- shared frames reclaimed as a whole ---------------------------------------- */

/* Compressible content that differs with seed (text, one word in 16 unique). */
static void put_text(struct p2m *p, uint64_t gfn, uint64_t seed)
{
    if (p2m_peek(p, gfn)->state != P2M_RESIDENT)
        assert_int_equal(p2m_fault(p, gfn * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
    uint64_t *w = backend_frame(p2m_peek(p, gfn)->payload);
    for (int i = 0; i < 512; i++)
        w[i] = i % 16 ? 0x2074786574206120ULL + (uint64_t)(i % 7) : seed * 0x9e3779b97f4a7c15ULL + (uint64_t)i;
}

static void expect_text(struct p2m *p, uint64_t gfn, uint64_t seed)
{
    uint64_t buf[512];
    assert_int_equal(p2m_read_page(p, gfn, buf), 0);
    for (int i = 0; i < 512; i++)
        assert_true(buf[i] == (i % 16 ? 0x2074786574206120ULL + (uint64_t)(i % 7)
                                      : seed * 0x9e3779b97f4a7c15ULL + (uint64_t)i));
}

/* Three GFNs (two VMs, one salt) share a frame; reclaim compresses it once
 * into one object all three name; the first fault decodes it into a new
 * shared frame, the others join that frame; the object goes with the last. */
static void test_reclaim_shared_frame_whole(void **state)
{
    (void)state;
    assert_int_equal(mm_pool_init(64, 2048, false), 0);
    make(&a, 1, 8, 0);
    make(&b, 2, 8, 0);
    b.salt = a.salt;
    put_text(&a, 0, 5);
    put_text(&a, 1, 5);
    put_text(&b, 0, 5);
    scan_rounds(2);
    mfn_t m = p2m_peek(&a, 0)->payload;
    assert_int_equal(frame_get(m)->refcount, 3);
    uint64_t free0 = backend_free_and_meta();
    assert_int_equal(share_reclaim(8), 1);
    assert_int_equal(share_zobj_count(), 1);
    assert_int_equal(frame_get(m)->state, FS_FREE);
    assert_true(backend_free_and_meta() > free0 - 2); /* one frame back, at most a pool frame taken */
    for (int k = 0; k < 3; k++) {
        struct p2m *p = k < 2 ? &a : &b;
        uint64_t g = k == 1 ? 1 : 0;
        assert_int_equal(p2m_peek(p, g)->state, P2M_COMPRESSED);
        assert_true(p2m_peek(p, g)->flags & P2M_F_SHARED_OBJ);
        assert_true(leafv(p, g) == 0 || !(leafv(p, g) & EPT_RWX));
        expect_text(p, g, 5);
    }
    assert_int_equal(a.shared_obj, 2);
    check_all();
    /* First touch decodes once; the others join the decoded frame. */
    assert_int_equal(p2m_fault(&a, 1 * PAGE_SIZE, P2M_ACCESS_R), P2M_OK);
    mfn_t f = p2m_peek(&a, 1)->payload;
    assert_int_equal(p2m_peek(&a, 1)->state, P2M_SHARED);
    assert_int_equal(frame_get(f)->refcount, 1);
    assert_int_equal(sstats().zobj_decoded, 1);
    assert_int_equal(p2m_fault(&b, 0, P2M_ACCESS_R), P2M_OK);
    assert_int_equal(p2m_peek(&b, 0)->payload, f);
    assert_int_equal(share_zobj_count(), 1); /* a:0 still names it */
    assert_int_equal(p2m_fault(&a, 0, P2M_ACCESS_X), P2M_OK);
    assert_int_equal(p2m_peek(&a, 0)->payload, f);
    assert_int_equal(frame_get(f)->refcount, 3);
    assert_int_equal(share_zobj_count(), 0);
    assert_int_equal(sstats().zobj_decoded, 1);
    assert_int_equal(a.shared_obj, 0);
    expect_text(&a, 0, 5);
    check_all();
    /* Still an ordinary shared frame: a write copies. */
    assert_int_equal(p2m_fault(&b, 0, P2M_ACCESS_W), P2M_OK);
    expect_private(&b, 0);
    assert_int_equal(frame_get(f)->refcount, 2);
    check_all();
}

/* A mapping used since the last pass keeps the frame (its accessed bit is
 * cleared: the second chance); the next pass takes it. */
static void test_reclaim_second_chance(void **state)
{
    (void)state;
    assert_int_equal(mm_pool_init(64, 2048, false), 0);
    make(&a, 1, 8, 0);
    put_text(&a, 0, 9);
    put_text(&a, 1, 9);
    scan_rounds(2);
    assert_int_equal(p2m_peek(&a, 0)->state, P2M_SHARED);
    *leaf(&a, 1) |= EPT_A;
    assert_int_equal(share_reclaim(8), 0);
    assert_int_equal(*leaf(&a, 1) & EPT_A, 0);
    assert_int_equal(share_reclaim(8), 1);
    check_all();
}

/* Large VMs: one call does at most SHARE_RECLAIM_BUDGET units and the
 * pass resumes. Between calls every state is consistent; a GFN redirected
 * early that faults again joins the frame (still alive, linked to its
 * object), which then survives the pass; the scanner does not merge into
 * a frame under reclaim. */
static void test_reclaim_incremental(void **state)
{
    (void)state;
    enum { N = 9000 };
    assert_int_equal(mm_pool_init(64, 2048, false), 0);
    make(&a, 1, N, 0);
    make(&b, 2, N, 0);
    b.salt = a.salt;
    /* A zero page in every map chunk, which the scanner returns as a
     * value: the chunks stay, so the walks cover all 2 x N GFNs (regions
     * never touched would cost one unit each). */
    for (uint64_t g = 0; g < N; g += P2M_CHUNK_ENTRIES) {
        assert_int_equal(p2m_fault(&a, g * PAGE_SIZE, P2M_ACCESS_R), P2M_OK);
        assert_int_equal(p2m_fault(&b, g * PAGE_SIZE, P2M_ACCESS_R), P2M_OK);
    }
    put_text(&a, 0, 5);
    put_text(&a, N - 1, 5);
    put_text(&b, N - 1, 5);
    scan_rounds(2);
    mfn_t m = p2m_peek(&a, 0)->payload;
    assert_int_equal(frame_get(m)->refcount, 3);
    put_text(&b, 7, 5); /* a fourth copy, scanned while the pass runs */
    unsigned calls = 0;
    bool joined_back = false;
    while (sstats().reclaimed_gfns < 3 && calls < 100) {
        uint64_t w0 = sstats().reclaim_work;
        assert_int_equal(share_reclaim(8), 0); /* never freed: a:0 comes back below */
        assert_true(sstats().reclaim_work - w0 <= SHARE_RECLAIM_BUDGET);
        calls++;
        check_all();
        if (sstats().reclaim_work - w0 == SHARE_RECLAIM_BUDGET) { /* cut: the pass goes on */
            share_scan(2 * N); /* b:7 is stable now, but must not join m */
            assert_int_equal(p2m_peek(&b, 7)->state, P2M_RESIDENT);
        }
        if (!joined_back && p2m_peek(&a, 0)->state == P2M_COMPRESSED) {
            /* Redirected already: a read joins m again. */
            assert_int_equal(p2m_fault(&a, 0, P2M_ACCESS_R), P2M_OK);
            expect_shared(&a, 0, m);
            joined_back = true;
        }
    }
    print_message("a pass over 2 x %d GFNs took %u calls\n", N, calls);
    assert_true(joined_back);
    assert_true(calls >= 4); /* 2 walks over 18000 GFNs, 4096 units a call */
    /* The pass is over: m stays, linked to the object a:N-1 and b:N-1 name. */
    assert_int_equal(share_reclaim(0), 0);
    assert_int_equal(frame_get(m)->state, FS_SHARED);
    assert_int_equal(frame_get(m)->refcount, 1);
    assert_int_equal(share_zobj_count(), 1);
    assert_int_equal(p2m_peek(&b, N - 1)->state, P2M_COMPRESSED);
    assert_int_equal(p2m_fault(&b, (N - 1) * PAGE_SIZE, P2M_ACCESS_R), P2M_OK);
    expect_shared(&b, N - 1, m); /* joins the linked frame: no decoding */
    assert_int_equal(sstats().zobj_decoded, 0);
    expect_text(&a, N - 1, 5);
    check_all();
    /* The scanner may merge into m again. */
    scan_rounds(2);
    expect_shared(&b, 7, m);
    check_all();
}

/* Destroying the VMs that name an object frees it; incompressible shared
 * frames are refused and stay. */
static void test_reclaim_destroy_and_refuse(void **state)
{
    (void)state;
    assert_int_equal(mm_pool_init(64, 2048, false), 0);
    make(&a, 1, 8, 0);
    make(&b, 2, 8, 0);
    b.salt = a.salt;
    put_text(&a, 0, 3);
    put_text(&b, 0, 3);
    put(&a, 2, X); /* random: LZ4 cannot shrink it */
    put(&a, 3, X);
    scan_rounds(2);
    assert_int_equal(share_reclaim(8), 1);
    assert_int_equal(sstats().reclaim_refused, 1);
    assert_int_equal(p2m_peek(&a, 2)->state, P2M_SHARED);
    check_all();
    gone(&b);
    assert_int_equal(share_zobj_count(), 1);
    gone(&a);
    assert_int_equal(share_zobj_count(), 0);
    struct zpool_stats zs;
    zpool_get_stats(&zs);
    assert_int_equal(zs.objects, 0);
}

/* A damaged object stops only the VM that touches it, never decoding
 * wrong data into a frame others would join. */
static void test_reclaim_corrupt_object(void **state)
{
    (void)state;
    assert_int_equal(mm_pool_init(64, 2048, false), 0);
    make(&a, 1, 8, 0);
    put_text(&a, 0, 4);
    put_text(&a, 1, 4);
    scan_rounds(2);
    assert_int_equal(share_reclaim(8), 1);
    struct share_zobj z;
    assert_true(share_zobj_get((uint32_t)p2m_peek(&a, 0)->payload, &z));
    zpool_debug_corrupt(z.handle, ZP_HDR + 40);
    assert_int_equal(p2m_fault(&a, 0, P2M_ACCESS_R), P2M_CORRUPT);
    assert_non_null(strstr(backend_log(), "corrupt"));
    assert_int_equal(p2m_peek(&a, 0)->state, P2M_COMPRESSED);
    assert_int_equal(p2m_check(&a), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_scan_round_robin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_merge_one_vm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_written_pages_not_merged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_partner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cow_break, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cow_last_reference, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forced_collision, setup, teardown),
        cmocka_unit_test_setup_teardown(test_salt_separates_vms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_equal_salts_share_across_vms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_share_disabled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_filled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_drops_references, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unique_pages_do_not_block_merges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reclaim_shared_frame_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reclaim_second_chance, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reclaim_incremental, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reclaim_destroy_and_refuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reclaim_corrupt_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unstable_partner_gone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limit_waits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_charge_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limit_reclaims_for_last_reference, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stable_table_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stable_churn_probe_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_salt_quota, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tick_adapts_rate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkers_notice, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

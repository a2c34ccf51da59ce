/* The paravirtual balloon's p2m transitions (p2m_balloon_inflate /
 * p2m_balloon_deflate in mm/p2m_balloon.c, the BALLOONED fault path) on
 * the machine of balloon_fixture.h; the hypercalls are test_balloon_abi.c.
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
 * left behind). */
#include "tests/host/balloon_fixture.h"

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
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}

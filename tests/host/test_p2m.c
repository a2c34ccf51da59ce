/* The p2m and the machine policy on a tiny machine: demand paging, the
 * zeroing guarantee between VMs, limits and waits, reservations, zero-page
 * reclaim with its INVEPT ordering, accessed/dirty sweeps. (The simulator
 * in tests/sim exercises the same code at scale.) */
#include "tests/host/backend.h"

#include <stdio.h>
#include <string.h>

#include "mm/ept.h"
#include "mm/mm.h"
#include "mm/p2m.h"
#include "mm/p2m_internal.h"

#define FRAMES 512

static struct p2m a, b;

static int setup(void **state)
{
    backend_frames(FRAMES, 1, FRAMES - 1);
    mm_set_watermark(4);
    return 0;
}

static int teardown(void **state)
{
    if (a.map) {
        mm_unregister(&a);
        p2m_destroy(&a);
    }
    if (b.map) {
        mm_unregister(&b);
        p2m_destroy(&b);
    }
    backend_free();
    return 0;
}

static void make(struct p2m *p, uint16_t owner, uint64_t ngfn, uint64_t reserve,
                 uint64_t limit)
{
    assert_int_equal(p2m_init(p, owner, owner == 1 ? "a" : "b", ngfn, reserve, limit, true), 0);
    assert_int_equal(mm_register(p), 0);
}

static uint64_t *leaf(struct p2m *p, uint64_t gfn)
{
    return pt_entry(&pt_fmt_ept, p->ept_root, gfn << PAGE_SHIFT, PT_LEVEL_4K, false);
}

/* An empty EPT; a fault populates one page with a zeroed frame, mapped RWX
 * write-back to exactly that frame. */
static void test_demand_zero(void **state)
{
    make(&a, 1, 64, 0, 0);
    assert_int_equal(a.count[P2M_UNPOPULATED], 64);
    assert_null(leaf(&a, 5));
    assert_int_equal(p2m_fault(&a, 5 * PAGE_SIZE + 123, P2M_ACCESS_W), P2M_OK);
    assert_int_equal(p2m_peek(&a, 5)->state, P2M_RESIDENT);
    assert_int_equal(a.count[P2M_RESIDENT], 1);
    assert_int_equal(a.st.faults[PF_DEMAND_ZERO], 1);
    mfn_t m = p2m_peek(&a, 5)->payload;
    uint64_t *l = leaf(&a, 5);
    assert_non_null(l);
    assert_int_equal(*l & PT_ADDR_MASK, m << PAGE_SHIFT);
    assert_int_equal(*l & (EPT_RWX | EPT_MT_WB), EPT_RWX | EPT_MT_WB);
    uint8_t zero[4096] = { 0 };
    assert_memory_equal(backend_frame(m), zero, 4096);
    struct frame *f = frame_get(m);
    assert_int_equal(f->state, FS_VM);
    assert_int_equal(f->owner, 1);
    assert_int_equal(f->gfn, 5);
    assert_int_equal(p2m_check(&a), 0);
}

/* Frames one VM wrote, freed and handed to another VM, arrive zeroed. */
static void test_frame_zeroed_between_vms(void **state)
{
    make(&a, 1, 32, 0, 0);
    mfn_t secret[20];
    for (uint64_t g = 0; g < 20; g++) {
        assert_int_equal(p2m_fault(&a, g * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
        secret[g] = p2m_peek(&a, g)->payload;
        memset(backend_frame(secret[g]), 0x5a, 4096); /* VM a's data */
    }
    mm_unregister(&a);
    p2m_destroy(&a);
    make(&b, 2, 64, 0, 0);
    uint8_t zero[4096] = { 0 };
    int reused = 0;
    for (uint64_t g = 0; g < 64; g++) {
        assert_int_equal(p2m_fault(&b, g * PAGE_SIZE, P2M_ACCESS_R), P2M_OK);
        mfn_t m = p2m_peek(&b, g)->payload;
        for (int i = 0; i < 20; i++) {
            if (secret[i] == m) {
                reused++;
                assert_memory_equal(backend_frame(m), zero, 4096);
                assert_int_equal(frame_get(m)->owner, 2);
            }
        }
    }
    /* The allocator is LIFO: most of a's frames came back to b as data. */
    assert_true(reused >= 10);
}

static void test_outside_ram_fails(void **state)
{
    make(&a, 1, 16, 0, 0);
    assert_int_equal(p2m_fault(&a, 16 * PAGE_SIZE, P2M_ACCESS_R), P2M_FAIL);
    assert_int_equal(a.st.faults[PF_OUTSIDE], 1);
    assert_int_equal(a.count[P2M_RESIDENT], 0);
}

/* At its limit with nothing reclaimable a VM waits (counted); zeroing one
 * of its pages makes room through zero-page reclaim. */
static void test_limit_waits_then_reclaims(void **state)
{
    make(&a, 1, 64, 0, 8);
    for (uint64_t g = 0; g < 8; g++) {
        assert_int_equal(p2m_fault(&a, g * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
        memset(backend_frame(p2m_peek(&a, g)->payload), 1, 8); /* not zero */
    }
    assert_int_equal(p2m_fault(&a, 8 * PAGE_SIZE, P2M_ACCESS_W), P2M_WAIT);
    assert_int_equal(a.st.waits, 1);
    assert_int_equal(p2m_peek(&a, 8)->state, P2M_UNPOPULATED);
    memset(backend_frame(p2m_peek(&a, 2)->payload), 0, 8); /* the guest zeroes page 2 */
    uint64_t inv = backend_invept_calls();
    assert_int_equal(p2m_fault(&a, 8 * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
    assert_int_equal(p2m_peek(&a, 2)->state, P2M_UNPOPULATED);
    assert_null(leaf(&a, 2) && (*leaf(&a, 2) & EPT_RWX) ? (void *)1 : NULL);
    assert_true(backend_invept_calls() > inv); /* flushed before the frame moved */
    assert_int_equal(a.st.zero_reclaimed, 1);
    assert_int_equal(a.count[P2M_RESIDENT], 8);
    assert_int_equal(p2m_check(&a), 0);
}

/* Reclaim leaves non-zero pages alone and returns zero ones, which read as
 * zero again on the next fault. */
static void test_reclaim_zero_only(void **state)
{
    make(&a, 1, 32, 0, 0);
    for (uint64_t g = 0; g < 32; g++)
        assert_int_equal(p2m_fault(&a, g * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
    for (uint64_t g = 0; g < 32; g += 2)
        ((uint64_t *)backend_frame(p2m_peek(&a, g)->payload))[511] = g + 1;
    uint64_t freed = p2m_reclaim(&a, 64, 64);
    assert_int_equal(freed, 16);
    for (uint64_t g = 0; g < 32; g++)
        assert_int_equal(p2m_peek(&a, g)->state, g % 2 ? P2M_UNPOPULATED : P2M_RESIDENT);
    assert_int_equal(p2m_check(&a), 0);
    assert_int_equal(p2m_fault(&a, 1 * PAGE_SIZE, P2M_ACCESS_R), P2M_OK);
    uint8_t zero[4096] = { 0 };
    assert_memory_equal(backend_frame(p2m_peek(&a, 1)->payload), zero, 4096);
}

/* Reservations: admission fails when they cannot all be met; allocation
 * beyond one's reservation never eats what another VM is still owed. */
static void test_reservations(void **state)
{
    uint64_t free0 = frame_free_count();
    assert_int_equal(p2m_init(&a, 1, "a", 4096, free0, 0, false), 0);
    assert_int_equal(mm_register(&a), -1); /* more than the machine has */
    p2m_destroy(&a);
    uint64_t free1 = frame_free_count();
    make(&a, 1, 600, 300, 0);
    make(&b, 2, 600, 0, 0);
    uint64_t got = 0;
    for (uint64_t g = 0; g < 600; g++) {
        if (p2m_fault(&b, g * PAGE_SIZE, P2M_ACCESS_W) != P2M_OK)
            break;
        ((uint64_t *)backend_frame(p2m_peek(&b, g)->payload))[0] = 1;
        got++;
    }
    /* b stopped short of a's 300 owed frames and the watermark. */
    assert_true(got + 300 + mm_watermark() <= free1);
    assert_true(b.st.waits >= 1);
    for (uint64_t g = 0; g < 300; g++)
        assert_int_equal(p2m_fault(&a, g * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
    assert_int_equal(p2m_check(&a), 0);
    assert_int_equal(p2m_check(&b), 0);
}

/* The sweep counts and clears accessed/dirty flags, with a flush. */
static void test_sweep(void **state)
{
    make(&a, 1, 16, 0, 0);
    for (uint64_t g = 0; g < 6; g++)
        assert_int_equal(p2m_fault(&a, g * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
    *leaf(&a, 1) |= EPT_A;
    *leaf(&a, 2) |= EPT_A | EPT_D;
    *leaf(&a, 4) |= EPT_A;
    uint64_t inv = backend_invept_calls();
    p2m_sweep(&a);
    assert_int_equal(a.st.last_accessed, 3);
    assert_int_equal(a.st.last_dirty, 1);
    assert_int_equal(a.st.ws_pages, 3);
    assert_int_equal(*leaf(&a, 2) & (EPT_A | EPT_D), 0);
    assert_true(backend_invept_calls() > inv);
    p2m_sweep(&a); /* nothing accessed since: ages grow */
    assert_int_equal(a.st.last_accessed, 0);
    assert_int_equal(p2m_peek(&a, 1)->age, 1);
}

/* Destroying a VM returns every frame: data, EPT tables and the map. */
static void test_destroy_returns_everything(void **state)
{
    uint64_t free0 = frame_free_count();
    make(&a, 1, 3000, 0, 0);
    for (uint64_t g = 0; g < 3000; g += 7)
        assert_int_equal(p2m_fault(&a, g * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
    mm_unregister(&a);
    p2m_destroy(&a);
    assert_int_equal(frame_free_count(), free0);
}

/* The hypervisor's own access populates, and is refused outside RAM. */
static void test_gfn_ptr(void **state)
{
    make(&a, 1, 8, 0, 0);
    assert_null(p2m_gfn_ptr(&a, 8, true));
    assert_null(p2m_gfn_ptr(&a, 3, false));
    uint8_t *p = p2m_gfn_ptr(&a, 3, true);
    assert_non_null(p);
    assert_int_equal(p2m_peek(&a, 3)->state, P2M_RESIDENT);
    assert_ptr_equal(p, backend_frame(p2m_peek(&a, 3)->payload));
}

/* The state machine's table: every pair that is not a legal edge is
 * refused with a panic before anything changes; the legal ones are the
 * drawing's (mm/p2m.h), and the states they leave and reach are all used. */
static void test_illegal_edges_refused(void **state)
{
    (void)state;
    make(&a, 1, 64, 0, 0);
    static const char *const legal[] = {
        "unpopulated>resident", "unpopulated>ballooned", "unpopulated>mmio",
        "resident>unpopulated", "resident>shared",       "resident>filled",
        "resident>compressed",  "resident>swapped",      "resident>ballooned",
        "shared>resident",      "shared>compressed",     "shared>ballooned",
        "filled>resident",      "filled>ballooned",      "compressed>resident",
        "compressed>shared",    "compressed>swapped",    "compressed>ballooned",
        "swapped>resident",     "swapped>ballooned",     "ballooned>unpopulated",
        "ballooned>resident",
    };
    unsigned nlegal = 0;
    for (volatile int f = 0; f < P2M_STATE_COUNT; f++) {
        for (volatile int t = 0; t < P2M_STATE_COUNT; t++) {
            char name[40];
            snprintf(name, sizeof(name), "%s>%s", p2m_state_name((enum p2m_state)f),
                     p2m_state_name((enum p2m_state)t));
            bool listed = false;
            for (unsigned i = 0; i < sizeof(legal) / sizeof(legal[0]); i++)
                listed |= !strcmp(legal[i], name);
            if (listed != p2m_edge_legal((enum p2m_state)f, (enum p2m_state)t))
                fail_msg("edge %s: table says %d, drawing says %d", name,
                         p2m_edge_legal((enum p2m_state)f, (enum p2m_state)t), listed);
            if (listed) {
                nlegal++;
                continue;
            }
            /* An entry in state f (never linked into the map: the refusal
             * comes before any change). */
            struct p2m_entry fake = { .state = (uint8_t)f, .payload = 0x1234 };
            uint64_t count0[P2M_STATE_COUNT];
            memcpy(count0, a.count, sizeof(count0));
            EXPECT_PANIC(p2m_set_state(&a, 3, &fake, (enum p2m_state)t, 0));
            assert_int_equal(fake.state, f);
            assert_int_equal(fake.payload, 0x1234);
            assert_memory_equal(count0, a.count, sizeof(count0));
        }
    }
    assert_int_equal(nlegal, sizeof(legal) / sizeof(legal[0]));
    assert_int_equal(p2m_check(&a), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_demand_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frame_zeroed_between_vms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outside_ram_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limit_waits_then_reclaims, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reclaim_zero_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reservations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_returns_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gfn_ptr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_illegal_edges_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

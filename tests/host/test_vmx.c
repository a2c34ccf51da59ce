/* Pure helpers of the VMX layer: the VM-entry interruption information of
 * an injected exception (vmx/event.h) and the EPT walk that a
 * misconfiguration panic prints (vmx/ept_dump.c), the latter over EPT
 * tables that arch/pt.c builds in the arena.
 *
 * Covered: deliver-error-code set for a #GP in protected mode only (a
 * real-mode guest's VM entry fails with it), never for exceptions without
 * an error code; every misconfiguration the SDM lists (write without read,
 * execute-only without support, bits above MAXPHYADDR, reserved bits of
 * PML4Es and table pointers, unsupported or misaligned large pages,
 * reserved memory types) and entries that are fine; the walk's lines for a
 * 4 KiB and a 2 MiB mapping, a missing entry, a misconfigured entry at each
 * level (named, walk stops, its level returned), a table pointer to a frame
 * that is no page table or beyond the frame table (not followed), and a
 * buffer too small for the walk. */
#include "tests/host/backend.h"

#include <stdio.h>
#include <string.h>

#include "arch/pt.h"
#include "mm/ept.h"
#include "vmx/ept_dump.h"
#include "vmx/event.h"

#define ASSERT_CONTAINS(s, sub)                                                   \
    do {                                                                          \
        if (!strstr((s), (sub)))                                                  \
            fail_msg("\"%s\" does not contain \"%s\"", (s), (sub));               \
    } while (0)
#define ASSERT_LACKS(s, sub)                                                      \
    do {                                                                          \
        if (strstr((s), (sub)))                                                   \
            fail_msg("\"%s\" contains \"%s\"", (s), (sub));                       \
    } while (0)

/* ==== exception injection ==================================================== */

static void test_exception_info(void **state)
{
    (void)state;
    const uint64_t pe = 1, real = 0x60000010; /* CD NW ET, PE clear */
    /* #GP(0) in protected (or long) mode: an error code is pushed. */
    uint32_t i = vmx_exception_info(13, true, pe | 0x80000000ULL);
    assert_int_equal(i, INTR_INFO_VALID | INTR_TYPE_HW_EXCEPTION | 13 | INTR_INFO_DELIVER_CODE);
    /* The same in real mode: none, or VM entry fails. */
    i = vmx_exception_info(13, true, real);
    assert_int_equal(i, INTR_INFO_VALID | INTR_TYPE_HW_EXCEPTION | 13);
    assert_int_equal(i & INTR_INFO_DELIVER_CODE, 0);
    /* #UD has no error code in any mode. */
    assert_int_equal(vmx_exception_info(6, false, pe), INTR_INFO_VALID | INTR_TYPE_HW_EXCEPTION | 6);
    assert_int_equal(vmx_exception_info(6, false, real), INTR_INFO_VALID | INTR_TYPE_HW_EXCEPTION | 6);
    /* #PF, #DF in protected mode keep theirs. */
    assert_true(vmx_exception_info(14, true, pe) & INTR_INFO_DELIVER_CODE);
    assert_false(vmx_exception_info(8, true, 0) & INTR_INFO_DELIVER_CODE);
}

/* ==== misconfigured entries =================================================== */

static const struct ept_walk_caps CAPS = {
    .maxphyaddr = 39, .exec_only = false, .page_2m = true, .page_1g = false,
};

#define TBL 0x12345000ULL /* a table or page address below 2^39 */

static void test_misconfig_entries(void **state)
{
    (void)state;
    const struct ept_walk_caps *c = &CAPS;
    /* Fine: not present (whatever the other bits), tables, leaves. */
    assert_null(ept_entry_misconfig(0, 4, c));
    assert_null(ept_entry_misconfig(0xfff0ULL | (1ULL << 51), 1, c)); /* bits 2:0 clear */
    for (int l = 4; l >= 1; l--)
        assert_null(ept_entry_misconfig(TBL | EPT_RWX, l, c));
    assert_null(ept_entry_misconfig(TBL | EPT_R, 4, c));
    assert_null(ept_entry_misconfig(TBL | EPT_RWX | EPT_MT_WB | EPT_A | EPT_D, 1, c));
    assert_null(ept_entry_misconfig(TBL | EPT_R | (1ULL << 6) /* ignore PAT */, 1, c));
    assert_null(ept_entry_misconfig(0x40000000ULL | EPT_RWX | EPT_MT_WB | EPT_LARGE, 2, c));
    assert_null(ept_entry_misconfig(TBL | EPT_RWX | (1ULL << 63), 1, c)); /* suppress #VE */
    assert_null(ept_entry_misconfig(((1ULL << 39) - 4096) | EPT_RWX, 1, c));

    /* Write without read, at every level, with or without execute. */
    for (int l = 4; l >= 1; l--) {
        assert_string_equal(ept_entry_misconfig(TBL | EPT_W, l, c), "writable but not readable");
        assert_string_equal(ept_entry_misconfig(TBL | EPT_W | EPT_X, l, c),
                            "writable but not readable");
    }
    /* Execute-only: only where the processor supports it. */
    ASSERT_CONTAINS(ept_entry_misconfig(TBL | EPT_X, 1, c), "execute-only");
    struct ept_walk_caps xo = CAPS;
    xo.exec_only = true;
    assert_null(ept_entry_misconfig(TBL | EPT_X, 1, &xo));
    /* An address at or above MAXPHYADDR (39 here, the full 52 by default). */
    ASSERT_CONTAINS(ept_entry_misconfig((1ULL << 39) | EPT_RWX, 3, c), "MAXPHYADDR");
    ASSERT_CONTAINS(ept_entry_misconfig((1ULL << 51) | EPT_R, 1, c), "MAXPHYADDR");
    struct ept_walk_caps wide = CAPS;
    wide.maxphyaddr = 0;
    assert_null(ept_entry_misconfig((1ULL << 51) | EPT_R, 1, &wide));
    /* Reserved bits 7:3 of a PML4E (bit 7 included) and of table pointers. */
    assert_string_equal(ept_entry_misconfig(TBL | EPT_RWX | EPT_LARGE, 4, c),
                        "reserved bits 7:3 of a PML4E set");
    assert_string_equal(ept_entry_misconfig(TBL | EPT_RWX | EPT_MT_WB, 4, c),
                        "reserved bits 7:3 of a PML4E set");
    assert_string_equal(ept_entry_misconfig(TBL | EPT_RWX | (1ULL << 3), 3, c),
                        "reserved bits 7:3 of a table pointer set");
    assert_string_equal(ept_entry_misconfig(TBL | EPT_RWX | EPT_MT_WB, 2, c),
                        "reserved bits 7:3 of a table pointer set");
    /* Large pages: unsupported sizes, low address bits set. */
    ASSERT_CONTAINS(ept_entry_misconfig(0x40000000ULL | EPT_RWX | EPT_MT_WB | EPT_LARGE, 3, c),
                    "1 GiB page");
    struct ept_walk_caps big = CAPS;
    big.page_1g = true;
    assert_null(ept_entry_misconfig(0x40000000ULL | EPT_RWX | EPT_MT_WB | EPT_LARGE, 3, &big));
    ASSERT_CONTAINS(ept_entry_misconfig(0x40200000ULL | EPT_RWX | EPT_MT_WB | EPT_LARGE, 3, &big),
                    "bits 29:12");
    ASSERT_CONTAINS(ept_entry_misconfig(0x40001000ULL | EPT_RWX | EPT_MT_WB | EPT_LARGE, 2, c),
                    "bits 20:12");
    struct ept_walk_caps small = CAPS;
    small.page_2m = false;
    ASSERT_CONTAINS(ept_entry_misconfig(0x40000000ULL | EPT_RWX | EPT_MT_WB | EPT_LARGE, 2, &small),
                    "2 MiB page");
    /* Memory types 2, 3 and 7 are reserved; 0, 1, 4, 5, 6 are not. */
    for (unsigned mt = 0; mt < 8; mt++) {
        const char *why = ept_entry_misconfig(TBL | EPT_RWX | ((uint64_t)mt << 3), 1, c);
        if (mt == 2 || mt == 3 || mt == 7)
            assert_string_equal(why, "reserved memory type");
        else
            assert_null(why);
    }
}

/* ==== the walk ================================================================= */

static mfn_t root;
static char out[2048];

static int setup(void **state)
{
    (void)state;
    backend_frames(256, 1, 255);
    root = frame_alloc(FS_PAGETABLE, 0);
    assert_int_not_equal(root, MFN_INVALID);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    backend_free();
    return 0;
}

static uint64_t *ept(uint64_t gpa, int level)
{
    uint64_t *e = pt_entry(&pt_fmt_ept, root, gpa, level, false);
    assert_non_null(e);
    return e;
}

static int walk(uint64_t gpa)
{
    memset(out, 0x5a, sizeof(out));
    return ept_format_walk(root, gpa, &CAPS, out, sizeof(out));
}

static int lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_walk_4k(void **state)
{
    (void)state;
    const uint64_t gpa = 0x40203000ULL + 0x123; /* PML4 0, PDPT 1, PD 1, PT 3 */
    assert_int_equal(pt_map(&pt_fmt_ept, root, 0x40203000ULL, 0x7654000ULL, 4096,
                            EPT_RWX | EPT_MT_WB, PT_LEVEL_4K),
                     0);
    assert_int_equal(walk(gpa), 0);
    char want[160];
    snprintf(want, sizeof(want), "EPT walk of guest-physical 0x40203123 (PML4 at %#llx):\n",
             (unsigned long long)(root << PAGE_SHIFT));
    assert_true(strncmp(out, want, strlen(want)) == 0);
    snprintf(want, sizeof(want), "  PML4E[  0] at %#llx = ", (unsigned long long)(root << PAGE_SHIFT));
    ASSERT_CONTAINS(out, want);
    uint64_t pdpt = *ept(gpa, 4) & PT_ADDR_MASK, pd = *ept(gpa, 3) & PT_ADDR_MASK,
             pt = *ept(gpa, 2) & PT_ADDR_MASK;
    snprintf(want, sizeof(want), "  PDPTE[  1] at %#llx = %016llx\n", (unsigned long long)(pdpt + 8),
             (unsigned long long)*ept(gpa, 3));
    ASSERT_CONTAINS(out, want);
    snprintf(want, sizeof(want), "  PDE  [  1] at %#llx = %016llx\n", (unsigned long long)(pd + 8),
             (unsigned long long)*ept(gpa, 2));
    ASSERT_CONTAINS(out, want);
    snprintf(want, sizeof(want),
             "  PTE  [  3] at %#llx = 0000000007654037  4 KiB page, rwx, memory type 6: "
             "machine address 0x7654123\n",
             (unsigned long long)(pt + 24));
    ASSERT_CONTAINS(out, want);
    assert_int_equal(lines(out), 5);
    ASSERT_LACKS(out, "MISCONFIGURED");

    /* A GPA whose PDE is missing: the walk ends there. */
    assert_int_equal(walk(0x40600000ULL), 0);
    ASSERT_CONTAINS(out, "  PDE  [  3] at ");
    ASSERT_CONTAINS(out, "= 0000000000000000  not present\n");
    ASSERT_LACKS(out, "PTE ");
    assert_int_equal(lines(out), 4);
}

static void test_walk_2m(void **state)
{
    (void)state;
    assert_int_equal(pt_map(&pt_fmt_ept, root, 0x200000ULL, 0x800000ULL, 0x200000ULL,
                            EPT_R | EPT_X | EPT_MT_WB, PT_LEVEL_2M),
                     0);
    assert_int_equal(walk(0x2abcdeULL), 0);
    ASSERT_CONTAINS(out, "= 00000000008000b5  2 MiB page, r-x, memory type 6: "
                         "machine address 0x8abcde\n");
    ASSERT_LACKS(out, "PTE ");
}

/* A misconfigured entry at each level is named and ends the walk, which
 * returns its level. */
static void test_walk_misconfig(void **state)
{
    (void)state;
    const uint64_t gpa = 0x5000ULL;
    assert_int_equal(pt_map(&pt_fmt_ept, root, gpa, 0x9000ULL, 4096, EPT_RWX | EPT_MT_WB,
                            PT_LEVEL_4K),
                     0);
    /* Leaf: write-only. */
    uint64_t *pte = ept(gpa, 1), good = *pte;
    *pte = 0x9000ULL | EPT_W | EPT_MT_WB;
    assert_int_equal(walk(gpa), 1);
    ASSERT_CONTAINS(out, "  PTE  [  5] at ");
    ASSERT_CONTAINS(out, "= 0000000000009032  MISCONFIGURED: writable but not readable\n");
    /* Leaf: a reserved memory type. */
    *pte = 0x9000ULL | EPT_RWX | (7ULL << 3);
    assert_int_equal(walk(gpa), 1);
    ASSERT_CONTAINS(out, "MISCONFIGURED: reserved memory type\n");
    *pte = good;
    assert_int_equal(walk(gpa), 0);
    /* PDE with a reserved bit: the PTE is not read. */
    uint64_t *pde = ept(gpa, 2), pde0 = *pde;
    *pde |= 1ULL << 4;
    assert_int_equal(walk(gpa), 2);
    ASSERT_CONTAINS(out, "PDE  [  0]");
    ASSERT_CONTAINS(out, "MISCONFIGURED: reserved bits 7:3 of a table pointer set\n");
    ASSERT_LACKS(out, "PTE ");
    *pde = pde0;
    /* PDPTE above MAXPHYADDR. */
    uint64_t *pdpte = ept(gpa, 3), pdpte0 = *pdpte;
    *pdpte |= 1ULL << 40;
    assert_int_equal(walk(gpa), 3);
    ASSERT_CONTAINS(out, "PDPTE[  0]");
    ASSERT_CONTAINS(out, "MISCONFIGURED: address bits above MAXPHYADDR set\n");
    *pdpte = pdpte0;
    /* PML4E with bit 7. */
    uint64_t *pml4e = ept(gpa, 4), pml4e0 = *pml4e;
    *pml4e |= EPT_LARGE;
    assert_int_equal(walk(gpa), 4);
    ASSERT_CONTAINS(out, "PML4E[  0]");
    ASSERT_CONTAINS(out, "MISCONFIGURED: reserved bits 7:3 of a PML4E set\n");
    assert_int_equal(lines(out), 2);
    *pml4e = pml4e0;
    assert_int_equal(walk(gpa), 0);
}

/* A table pointer that names no page-table frame is shown, not followed. */
static void test_walk_bad_pointer(void **state)
{
    (void)state;
    const uint64_t gpa = 0x5000ULL;
    assert_int_equal(pt_map(&pt_fmt_ept, root, gpa, 0x9000ULL, 4096, EPT_RWX | EPT_MT_WB,
                            PT_LEVEL_4K),
                     0);
    uint64_t *pde = ept(gpa, 2), pde0 = *pde;
    mfn_t vmf = frame_alloc(FS_VM, 1);
    assert_int_not_equal(vmf, MFN_INVALID);
    *pde = (vmf << PAGE_SHIFT) | EPT_RWX;
    assert_int_equal(walk(gpa), 0);
    char want[128];
    snprintf(want, sizeof(want), "  next table %#llx is not an EPT table (vm): not read\n",
             (unsigned long long)(vmf << PAGE_SHIFT));
    ASSERT_CONTAINS(out, want);
    ASSERT_LACKS(out, "PTE ");
    /* Beyond the machine's frames (the arena has 256). */
    *pde = (300ULL << PAGE_SHIFT) | EPT_RWX;
    assert_int_equal(walk(gpa), 0);
    ASSERT_CONTAINS(out, "next table 0x12c000 is not an EPT table (beyond the frame table)");
    *pde = pde0;
    frame_free(vmf);
    /* A root that is no table at all. */
    memset(out, 0, sizeof(out));
    assert_int_equal(ept_format_walk(300, gpa, &CAPS, out, sizeof(out)), 0);
    ASSERT_CONTAINS(out, "the PML4 frame is not an EPT table (beyond the frame table): not read\n");
}

/* A short buffer: cut, terminated, nothing written past it. */
static void test_walk_small_buffer(void **state)
{
    (void)state;
    assert_int_equal(pt_map(&pt_fmt_ept, root, 0x5000ULL, 0x9000ULL, 4096, EPT_RWX | EPT_MT_WB,
                            PT_LEVEL_4K),
                     0);
    char full[2048];
    assert_int_equal(ept_format_walk(root, 0x5000ULL, &CAPS, full, sizeof(full)), 0);
    for (size_t n = 1; n < 200; n += 7) {
        char small[256];
        memset(small, 0x5a, sizeof(small));
        ept_format_walk(root, 0x5000ULL, &CAPS, small, n);
        assert_int_equal(strlen(small), n - 1);
        assert_true(strncmp(small, full, n - 1) == 0);
        assert_int_equal((unsigned char)small[n], 0x5a);
    }
    ept_format_walk(root, 0x5000ULL, &CAPS, NULL, 0); /* no room at all: no write */
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exception_info),
        cmocka_unit_test(test_misconfig_entries),
        T(test_walk_4k),
        T(test_walk_2m),
        T(test_walk_misconfig),
        T(test_walk_bad_pointer),
        T(test_walk_small_buffer),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}

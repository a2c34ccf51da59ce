/* lib/string.c as shipped (the image's object, symbols renamed, see
 * tests/bench/shipped.h) against libc: every length 0..300 at every pair of
 * source/destination alignments 0..15, overlapping moves both ways, and
 * the sign of memcmp at every position of the first difference. Guard
 * bytes around each destination must never change. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tests/bench/shipped.h"

enum { MAXN = 300, PAD = 32, BUF = MAXN + 2 * PAD + 16 };

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        p[i] = (uint8_t)x;
    }
}

static void test_memcpy(void **state)
{
    static uint8_t src[BUF], dst[BUF], want[BUF];
    for (size_t n = 0; n <= MAXN; n++)
        for (int sa = 0; sa < 16; sa++)
            for (int da = 0; da < 16; da++) {
                fill(src, BUF, (unsigned)(n * 256 + sa * 16 + da));
                fill(dst, BUF, 7);
                memcpy(want, dst, BUF);
                memcpy(want + PAD + da, src + PAD + sa, n);
                void *r = hv_memcpy(dst + PAD + da, src + PAD + sa, n);
                assert_ptr_equal(r, dst + PAD + da);
                assert_memory_equal(dst, want, BUF);
            }
}

static void test_memmove_overlap(void **state)
{
    static uint8_t buf[BUF], want[BUF];
    for (size_t n = 0; n <= MAXN; n++)
        for (int off = -20; off <= 20; off++) {
            size_t s = PAD + 20, d = (size_t)((long)s + off);
            fill(buf, BUF, (unsigned)(n * 64 + (unsigned)(off + 20)));
            memcpy(want, buf, BUF);
            memmove(want + d, want + s, n);
            void *r = hv_memmove(buf + d, buf + s, n);
            assert_ptr_equal(r, buf + d);
            assert_memory_equal(buf, want, BUF);
        }
}

static void test_memset(void **state)
{
    static uint8_t dst[BUF], want[BUF];
    for (size_t n = 0; n <= MAXN; n++)
        for (int da = 0; da < 16; da++) {
            fill(dst, BUF, (unsigned)n);
            memcpy(want, dst, BUF);
            memset(want + PAD + da, 0x1a5, n); /* int argument: only the low byte counts */
            void *r = hv_memset(dst + PAD + da, 0x1a5, n);
            assert_ptr_equal(r, dst + PAD + da);
            assert_memory_equal(dst, want, BUF);
        }
}

static int sign(int v)
{
    return (v > 0) - (v < 0);
}

static void test_memcmp(void **state)
{
    static uint8_t a[BUF], b[BUF];
    for (size_t n = 0; n <= MAXN; n += n < 70 ? 1 : 23)
        for (int al = 0; al < 8; al++) {
            fill(a, BUF, (unsigned)n);
            memcpy(b, a, BUF);
            assert_int_equal(hv_memcmp(a + al, b + 8 - al, 0), 0);
            assert_int_equal(hv_memcmp(a + al, b + al, n), 0);
            /* A difference at each position, both ways, with bytes that
             * differ in the high bit too (memcmp compares unsigned). */
            for (size_t i = 0; i < n; i++) {
                uint8_t keep = b[al + i];
                b[al + i] = (uint8_t)(a[al + i] ^ (i & 1 ? 0x80 : 0x01));
                assert_int_equal(sign(hv_memcmp(a + al, b + al, n)),
                                 sign(memcmp(a + al, b + al, n)));
                assert_int_equal(sign(hv_memcmp(b + al, a + al, n)),
                                 sign(memcmp(b + al, a + al, n)));
                /* A later difference must not change the verdict. */
                if (i + 1 < n) {
                    b[al + n - 1] ^= 0xff;
                    assert_int_equal(sign(hv_memcmp(a + al, b + al, n)),
                                     sign(memcmp(a + al, b + al, n)));
                    b[al + n - 1] ^= 0xff;
                }
                b[al + i] = keep;
            }
        }
}

static void test_pages(void **state)
{
    uint8_t *a = aligned_alloc(4096, 3 * 4096), *b = aligned_alloc(4096, 3 * 4096);
    assert_non_null(a);
    assert_non_null(b);
    fill(a, 3 * 4096, 3);
    hv_memset(b, 0, 3 * 4096);
    hv_memcpy(b + 4096, a + 4096, 4096);
    assert_memory_equal(b + 4096, a + 4096, 4096);
    assert_int_equal(hv_memcmp(a + 4096, b + 4096, 4096), 0);
    b[4096 + 4095] ^= 1;
    assert_int_not_equal(hv_memcmp(a + 4096, b + 4096, 4096), 0);
    for (int i = 0; i < 4096; i++)
        assert_int_equal(b[i], 0);
    assert_int_equal(hv_strlen("hypervisor"), 10);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memcpy),
        cmocka_unit_test(test_memmove_overlap),
        cmocka_unit_test(test_memset),
        cmocka_unit_test(test_memcmp),
        cmocka_unit_test(test_pages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

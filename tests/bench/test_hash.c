/* The hash functions as shipped (build/shipped: mm/hash.c.o over xxhash.o,
 * built with the image's flags, unrolled, see the Makefile) against xxHash
 * built here with the host's flags under its own namespace: the same
 * values for every length 0..300 and page-sized inputs, at every alignment
 * and several seeds. A build flag that broke the freestanding object (a
 * miscompiled unrolled loop, a tail read wrong) fails here, not in a pool
 * checksum mismatch inside Bochs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mm/hash.h"

#define XXH_NAMESPACE ref_
#include "xxhash.c"

enum { PAGE = 4096 };
static uint8_t buf[2 * PAGE + 64];

static void fill(unsigned seed)
{
    uint64_t x = 0x9e3779b97f4a7c15ULL ^ seed;
    for (size_t i = 0; i < sizeof(buf); i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        buf[i] = (uint8_t)x;
    }
}

static void test_lengths(void **state)
{
    (void)state;
    static const uint64_t seeds[] = {0, 1, 0x123456789abcdefULL, ~0ULL};
    fill(1);
    for (size_t n = 0; n <= 300; n++)
        for (int al = 0; al < 8; al++)
            for (unsigned s = 0; s < 4; s++) {
                const uint8_t *p = buf + al;
                assert_true(hash64(p, n, seeds[s]) == ref_XXH64(p, n, seeds[s]));
                assert_true(hash_check32(p, n, seeds[s]) ==
                            (uint32_t)ref_XXH64(p, n, seeds[s]));
                assert_true(hash32(p, n, (uint32_t)seeds[s]) ==
                            ref_XXH32(p, n, (uint32_t)seeds[s]));
            }
}

static void test_pages(void **state)
{
    (void)state;
    for (unsigned k = 0; k < 16; k++) {
        fill(k);
        if (k == 0)
            memset(buf, 0, sizeof(buf)); /* the zero page too */
        for (size_t n = PAGE - 33; n <= PAGE + 33; n += 11)
            for (int al = 0; al < 8; al += 3) {
                assert_true(hash64(buf + al, n, k) == ref_XXH64(buf + al, n, k));
                assert_true(hash32(buf + al, n, k) == ref_XXH32(buf + al, n, k));
            }
        assert_true(hash64(buf, 2 * PAGE, k) == ref_XXH64(buf, 2 * PAGE, k));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_pages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

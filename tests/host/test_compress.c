/* mm/compress.c: the LZ4 wrapper. Every buffer handed to it is malloc'd at
 * exactly its size (pages 4096 bytes, streams their length), so the
 * sanitizer build reports any read or write outside them. */
#include "tests/host/backend.h"

#include <stdlib.h>
#include <string.h>

#include "lz4.h"
#include "mm/compress.h"

#define BOUND LZ4_COMPRESSBOUND(CMP_PAGE)

enum kind { K_ZERO, K_SAME, K_TEXT, K_RANDOM, K_COUNT };
static const char *const kind_name[K_COUNT] = { "zero", "same-filled", "text", "random" };

/* xorshift64: fixed seeds, the same bytes on every run */
static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static uint64_t rng; /* the tests' own sequence */

static uint64_t next_rand(void)
{
    return xorshift(&rng);
}

/* A malloc'd page of the given kind. */
static uint8_t *make_page(enum kind k)
{
    static const char *const words[] = { "guest", "page", "frame", "the", "EPT",
                                         "violation", "of", "memory", "zero",
                                         "shared", "\n", "compressed", "a" };
    uint8_t *p = malloc(CMP_PAGE);
    assert_non_null(p);
    switch (k) {
    case K_ZERO:
        memset(p, 0, CMP_PAGE);
        break;
    case K_SAME: /* every 8-byte word the same, not a repeated byte */
        for (int i = 0; i < CMP_PAGE; i += 8) {
            uint64_t w = 0x0123456789abcdefULL;
            memcpy(p + i, &w, 8);
        }
        break;
    case K_TEXT: {
        uint64_t x = 0x5eed;
        int n = 0;
        while (n < CMP_PAGE) {
            const char *w = words[xorshift(&x) % (sizeof(words) / sizeof(words[0]))];
            for (; *w && n < CMP_PAGE; w++)
                p[n++] = (uint8_t)*w;
            if (n < CMP_PAGE)
                p[n++] = ' ';
        }
        break;
    }
    default: {
        uint64_t x = 0x9e3779b97f4a7c15ULL;
        for (int i = 0; i < CMP_PAGE; i++)
            p[i] = (uint8_t)(xorshift(&x) >> 32);
    }
        break;
    }
    return p;
}

/* Compresses page into a BOUND-sized buffer; returns a malloc'd copy of
 * exactly the compressed size in *out and the size. */
static int compress(const uint8_t *page, uint8_t **out)
{
    uint8_t *dst = malloc(BOUND);
    assert_non_null(dst);
    int n = cmp_compress_page(page, dst, BOUND);
    assert_in_range(n, 1, BOUND);
    *out = malloc((size_t)n);
    assert_non_null(*out);
    memcpy(*out, dst, (size_t)n);
    free(dst);
    return n;
}

/* Decompresses src[0..len) (copied to a buffer of exactly len bytes) into
 * a fresh exactly-4096-byte page; returns the result, page in *page. */
static int decompress(const uint8_t *src, int len, uint8_t **page)
{
    uint8_t *in = malloc(len > 0 ? (size_t)len : 1);
    assert_non_null(in);
    if (len > 0)
        memcpy(in, src, (size_t)len);
    uint8_t *out = malloc(CMP_PAGE);
    assert_non_null(out);
    memset(out, 0xa5, CMP_PAGE);
    int rc = cmp_decompress_page(in, len, out);
    free(in);
    if (page)
        *page = out;
    else
        free(out);
    return rc;
}

/* ---- round trips ---------------------------------------------------------- */

static void test_roundtrip(void **state)
{
    /* Upper bounds of the compressed size per kind (random cannot shrink). */
    static const int max_size[K_COUNT] = { 64, 64, 2048, BOUND };
    for (int k = 0; k < K_COUNT; k++) {
        uint8_t *page = make_page(k), *c, *out;
        int n = compress(page, &c);
        if (n > max_size[k])
            fail_msg("%s page compressed to %d bytes (at most %d expected)",
                     kind_name[k], n, max_size[k]);
        assert_int_equal(decompress(c, n, &out), 0);
        assert_memory_equal(out, page, CMP_PAGE);
        free(out);
        free(c);
        free(page);
    }
}

/* Random data does not shrink: its stream is longer than the page. */
static void test_random_expands(void **state)
{
    uint8_t *page = make_page(K_RANDOM), *c;
    int n = compress(page, &c);
    assert_true(n > CMP_PAGE);
    free(c);
    free(page);
}

/* A capacity below the compressed size gives 0 and writes nothing past
 * cap (dst is exactly cap bytes). */
static void test_cap_too_small(void **state)
{
    for (int k = 0; k < K_COUNT; k++) {
        uint8_t *page = make_page(k), *c;
        int n = compress(page, &c);
        static const int caps_from_end[] = { 1, 2, 7, 16 };
        for (size_t i = 0; i < sizeof(caps_from_end) / sizeof(caps_from_end[0]); i++) {
            int cap = n - caps_from_end[i];
            if (cap < 1)
                continue;
            uint8_t *dst = malloc((size_t)cap);
            assert_non_null(dst);
            if (cmp_compress_page(page, dst, cap) != 0)
                fail_msg("%s page (%d bytes compressed) fit in cap %d", kind_name[k], n, cap);
            free(dst);
        }
        uint8_t *one = malloc(1);
        assert_int_equal(cmp_compress_page(page, one, 1), 0);
        assert_int_equal(cmp_compress_page(page, one, 0), 0);
        free(one);
        /* Exactly the size it needs is enough. */
        uint8_t *dst = malloc((size_t)n);
        assert_int_equal(cmp_compress_page(page, dst, n), n);
        assert_memory_equal(dst, c, (size_t)n);
        free(dst);
        free(c);
        free(page);
    }
    uint8_t *page = make_page(K_RANDOM), *dst = malloc(CMP_PAGE);
    assert_int_equal(cmp_compress_page(page, dst, CMP_PAGE), 0);
    free(dst);
    free(page);
}

/* ---- corrupt input ---------------------------------------------------------- */

/* Every proper prefix of a valid stream is rejected. */
static void test_truncated(void **state)
{
    for (int k = 0; k < K_COUNT; k++) {
        uint8_t *page = make_page(k), *c;
        int n = compress(page, &c);
        for (int len = 0; len < n; len++)
            if (decompress(c, len, NULL) != -1)
                fail_msg("%s stream of %d bytes accepted cut to %d", kind_name[k], n, len);
        free(c);
        free(page);
    }
}

/* Streams that decode to less or more than one page are rejected, and the
 * longer one never writes past the page. */
static void test_wrong_size(void **state)
{
    static uint8_t big[2 * CMP_PAGE];
    uint8_t *c = malloc(LZ4_COMPRESSBOUND(sizeof(big)));
    assert_non_null(c);
    static const int sizes[] = { 1, 100, CMP_PAGE / 2, CMP_PAGE - 1, CMP_PAGE + 1,
                                 2 * CMP_PAGE };
    for (int fill = 0; fill < 2; fill++) {
        for (size_t i = 0; i < sizeof(big); i++)
            big[i] = fill ? (uint8_t)(i * 31 + (i >> 7)) : 0;
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            int n = LZ4_compress_default((const char *)big, (char *)c, sizes[i],
                                         LZ4_COMPRESSBOUND(sizeof(big)));
            assert_true(n > 0);
            if (decompress(c, n, NULL) != -1)
                fail_msg("stream of %d bytes accepted as a page", sizes[i]);
        }
    }
    /* Trailing bytes after a complete page stream are corruption too. */
    uint8_t *page = make_page(K_TEXT), *s;
    int n = compress(page, &s);
    uint8_t *longer = malloc((size_t)n + 4);
    memcpy(longer, s, (size_t)n);
    memset(longer + n, 0, 4);
    assert_int_equal(decompress(longer, n + 4, NULL), -1);
    free(longer);
    free(s);
    free(page);
    free(c);
}

/* Random garbage of random lengths: -1 or 0, never out of bounds. */
static void test_garbage(void **state)
{
    rng = 0xfeedfacecafebeefULL;
    int accepted = 0;
    for (int i = 0; i < 10000; i++) {
        int len = 1 + (int)(next_rand() % 6000);
        uint8_t *buf = malloc((size_t)len);
        assert_non_null(buf);
        for (int j = 0; j < len; j++)
            buf[j] = (uint8_t)(next_rand() >> 40);
        /* Some runs start with a plausible token: long literals, a match. */
        if (i % 4 == 1)
            buf[0] = 0xff;
        else if (i % 4 == 2)
            buf[0] = 0x1f;
        uint8_t *out = malloc(CMP_PAGE);
        assert_non_null(out);
        int rc = cmp_decompress_page(buf, len, out);
        if (rc != -1 && rc != 0)
            fail_msg("garbage %d (%d bytes): returned %d", i, len, rc);
        accepted += rc == 0;
        free(out);
        free(buf);
    }
    assert_true(accepted < 100); /* garbage is almost never a page */
}

/* Valid streams with a few bytes changed: -1 or 0, never out of bounds,
 * and a stream that is accepted decodes to a full page. */
static void test_mutated_streams(void **state)
{
    rng = 0x0badc0de0badc0deULL;
    for (int k = 0; k < K_COUNT; k++) {
        uint8_t *page = make_page(k), *c;
        int n = compress(page, &c);
        uint8_t *buf = malloc((size_t)n), *out = malloc(CMP_PAGE);
        for (int i = 0; i < 2500; i++) {
            memcpy(buf, c, (size_t)n);
            int flips = 1 + (int)(next_rand() % 4);
            for (int f = 0; f < flips; f++)
                buf[next_rand() % (uint64_t)n] ^= (uint8_t)(1u << (next_rand() % 8));
            int rc = cmp_decompress_page(buf, n, out);
            if (rc != -1 && rc != 0)
                fail_msg("%s stream mutation %d: returned %d", kind_name[k], i, rc);
        }
        free(out);
        free(buf);
        free(c);
        free(page);
    }
}

static void test_selftest(void **state)
{
    backend_log_clear();
    assert_int_equal(cmp_selftest(), 0);
    assert_non_null(strstr(backend_log(), "lz4 self-test: PASS"));
    assert_null(strstr(backend_log(), "FAIL"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_random_expands),
        cmocka_unit_test(test_cap_too_small),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_wrong_size),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_mutated_streams),
        cmocka_unit_test(test_selftest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

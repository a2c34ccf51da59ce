#include "mm/compress.h"
#include "lib/log.h"
#include "lib/string.h"
#include "lz4.h"

int cmp_compress_page(const void *page, void *dst, int cap)
{
    return LZ4_compress_default(page, dst, CMP_PAGE, cap);
}

int cmp_decompress_page(const void *src, int len, void *page)
{
    int n = LZ4_decompress_safe(src, page, len, CMP_PAGE);
    return n == CMP_PAGE ? 0 : -1;
}

/* Three kinds of content with very different ratios. */
static void fill(uint8_t *p, int kind)
{
    static const char words[] = "the quick brown fox jumps over the lazy dog "
                                "EPT violation demand paging copy-on-write ";
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < CMP_PAGE; i++) {
        switch (kind) {
        case 0:
            p[i] = 0;
            break;
        case 1:
            p[i] = (uint8_t)words[(i * 7 + i / 64) % (sizeof(words) - 1)];
            break;
        default:
            x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
            p[i] = (uint8_t)x;
            break;
        }
    }
}

int cmp_selftest(void)
{
    static uint8_t src[CMP_PAGE], out[CMP_PAGE];
    static uint8_t buf[LZ4_COMPRESSBOUND(CMP_PAGE)];
    static const char *const kinds[] = { "zero", "text", "random" };
    int sizes[3];
    for (int k = 0; k < 3; k++) {
        fill(src, k);
        int n = cmp_compress_page(src, buf, (int)sizeof(buf));
        if (n <= 0) {
            pr_err(LS_MM, "lz4 self-test: FAIL: %s page did not compress", kinds[k]);
            return -1;
        }
        memset(out, 0xa5, sizeof(out));
        if (cmp_decompress_page(buf, n, out) || memcmp(src, out, CMP_PAGE)) {
            pr_err(LS_MM, "lz4 self-test: FAIL: %s page did not round-trip", kinds[k]);
            return -1;
        }
        /* A truncated stream must be rejected, never decoded short. */
        if (cmp_decompress_page(buf, n - 1, out) == 0) {
            pr_err(LS_MM, "lz4 self-test: FAIL: truncated %s stream accepted", kinds[k]);
            return -1;
        }
        sizes[k] = n;
    }
    pr_info(LS_MM, "lz4 self-test: PASS (LZ4 %s; 4096-byte pages: zero -> %d, "
                   "text -> %d, random -> %d bytes)",
            LZ4_versionString(), sizes[0], sizes[1], sizes[2]);
    return 0;
}

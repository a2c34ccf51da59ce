/* libFuzzer target for mm/compress.c, the pool's only door to LZ4. Each
 * input (at most 8192 bytes are used) is taken as a compressed stream and
 * decoded with cmp_decompress_page into a malloc'd buffer of exactly one
 * page, from a malloc'd copy of exactly the input's length, so that any
 * read or write past either end is an ASan report. A stream the wrapper
 * accepts must have produced a page that compresses again and comes back
 * byte for byte (every stream the compressor makes must also be refused
 * when cut one byte short). Inputs of at least 4096 bytes are also used as a page:
 * compressed into a 2048-byte buffer (the pool's default threshold) and,
 * when that fits, decoded and compared. Any mismatch aborts.
 *
 * Random bytes almost never form a stream that decodes to exactly one page,
 * so a third check starts from a valid one: the input, repeated to fill a
 * page, is compressed, then damaged by a few byte edits and a truncation
 * that the input's last bytes choose, and decoded like the raw input (the
 * same exact-size buffers, the same self-consistency check on success). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lz4.h"
#include "mm/compress.h"

#define MAX_INPUT 8192
#define POOL_CAP 2048
#define BOUND LZ4_COMPRESSBOUND(CMP_PAGE)

/* lib/log.c writes here; the fuzzer wants a quiet stderr. */
void log_sink_write(const char *s, size_t n)
{
    if (getenv("FUZZ_LZ4_VERBOSE"))
        fwrite(s, 1, n, stderr);
}

static void die(const char *what)
{
    fprintf(stderr, "fuzz_lz4: %s\n", what);
    abort();
}

/* page (exactly CMP_PAGE bytes) through compress with capacity cap and back.
 * Returns 0 when it did not fit, 1 when it fitted and came back intact. */
static int round_trip(const uint8_t *page, int cap)
{
    uint8_t *packed = malloc((size_t)cap);
    uint8_t *back = malloc(CMP_PAGE);
    if (!packed || !back)
        die("out of memory");
    int n = cmp_compress_page(page, packed, cap);
    if (n < 0 || n > cap)
        die("compressed size outside the capacity");
    int fitted = n > 0;
    if (fitted) {
        /* The stream is re-copied to an exact-size buffer: a decoder that
         * reads one byte past it shows up. */
        uint8_t *exact = malloc((size_t)n);
        if (!exact)
            die("out of memory");
        memcpy(exact, packed, (size_t)n);
        memset(back, 0x5a, CMP_PAGE);
        if (cmp_decompress_page(exact, n, back) != 0)
            die("a stream cmp_compress_page produced does not decode");
        if (memcmp(back, page, CMP_PAGE) != 0)
            die("round trip changed the page");
        /* One byte short must never decode as a whole page. */
        if (n > 1 && cmp_decompress_page(exact, n - 1, back) == 0)
            die("truncated stream accepted");
        free(exact);
    }
    free(packed);
    free(back);
    return fitted;
}

/* Decodes stream[0..len) (copied to an exact-size buffer) and, if the
 * wrapper accepts it, checks the page it produced. expect, when not NULL,
 * is the page the stream must decode to. */
static void decode_and_check(const uint8_t *stream, size_t len, const uint8_t *expect)
{
    /* malloc(0) may return NULL; take one byte then and still pass 0. */
    uint8_t *src = malloc(len ? len : 1);
    uint8_t *page = malloc(CMP_PAGE);
    if (!src || !page)
        die("out of memory");
    memcpy(src, stream, len);
    memset(page, 0xa5, CMP_PAGE);
    int r = cmp_decompress_page(src, (int)len, page);
    if (r != 0 && r != -1)
        die("cmp_decompress_page returned neither 0 nor -1");
    /* Accepted: exactly one page came out. It must be an ordinary page as
     * far as the compressor is concerned. */
    if (r == 0 && !round_trip(page, BOUND))
        die("a decoded page does not fit LZ4_COMPRESSBOUND");
    if (expect && (r != 0 || memcmp(page, expect, CMP_PAGE) != 0))
        die("an undamaged stream did not decode to its page");
    free(src);
    free(page);
}

/* A valid stream of a page made from the input, then damaged. */
static void damaged_stream(const uint8_t *data, size_t size)
{
    static uint8_t page[CMP_PAGE], stream[BOUND];
    for (size_t i = 0; i < CMP_PAGE; i++)
        page[i] = data[i % size];
    int n = cmp_compress_page(page, stream, BOUND);
    if (n <= 0)
        die("a page did not fit LZ4_COMPRESSBOUND");
    /* The last byte: edit count (low 2 bits), truncation (next 2 bits:
     * none, 1 byte, a quarter, or a chosen length); the bytes before it,
     * three per edit: position (2 bytes), XOR value. */
    uint8_t ctl = data[size - 1];
    size_t at = size - 1, len = (size_t)n;
    bool damaged = false;
    for (unsigned e = 0; e < (ctl & 3u) && at >= 3; e++) {
        damaged = true;
        at -= 3;
        size_t pos = ((size_t)data[at] << 8 | data[at + 1]) % len;
        stream[pos] ^= data[at + 2] ? data[at + 2] : 1;
    }
    switch ((ctl >> 2) & 3u) {
    case 1:
        len--;
        damaged = true;
        break;
    case 2:
        len -= len / 4;
        damaged = true;
        break;
    case 3:
        len = (size_t)data[0] * len / 256;
        damaged = true;
        break;
    }
    decode_and_check(stream, len, damaged ? NULL : page);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT)
        size = MAX_INPUT;
    decode_and_check(data, size, NULL);
    if (size >= CMP_PAGE) {
        uint8_t *page = malloc(CMP_PAGE);
        if (!page)
            die("out of memory");
        memcpy(page, data, CMP_PAGE);
        round_trip(page, POOL_CAP);
        free(page);
    }
    if (size)
        damaged_stream(data, size);
    return 0;
}

/* The one door to LZ4 (Debian's lz4 1.9.4, built freestanding by the
 * Makefile). Decompression always goes through the bounds-checked API and
 * must produce exactly one page, or the data is treated as corrupt. */
#ifndef MM_COMPRESS_H
#define MM_COMPRESS_H
#include <stdint.h>

#define CMP_PAGE 4096

/* Compresses one page into dst (capacity cap). Returns the compressed size,
 * or 0 when it does not fit in cap. */
int cmp_compress_page(const void *page, void *dst, int cap);
/* Decompresses len bytes into one page. Returns 0, or -1 when the input is
 * corrupt or does not decode to exactly CMP_PAGE bytes. */
int cmp_decompress_page(const void *src, int len, void *page);
/* Round-trips zero, text-like and pseudo-random pages; 0 when all pass. */
int cmp_selftest(void);
#endif

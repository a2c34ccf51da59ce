/* make bench-zpool, host part: the pool path on a corpus of real guest
 * pages (a file of raw 4 KiB pages, see tests/rig/corpus.py).
 *
 *   bench_zpool CORPUS [--rounds N] [--stored FILE]
 *
 * --stored writes the corpus pages the pool stores, once each, so that
 * the decompression baseline (`lz4 -b` in tests/rig/bench.py) decodes the
 * same pages the pool path does.
 *
 * The corpus is stored 16 times over (as 16 VMs' worth of such pages) so
 * that the pool holds a realistic population: with a few dozen objects
 * spread over 97 size classes most zspages would be nearly empty and the
 * density would say nothing about packing.
 * Runs exactly what reclaim and a decompression fault run, minus EPT:
 * the same-filled test, LZ4 into a buffer capped at 2048 bytes, the pool
 * store; then pool load, LZ4 decode and (as in checksum-off mode) nothing
 * else. Prints the pool's ratio and density and the throughput of both
 * directions in MB/s of guest pages, for tests/rig/bench_zpool.py to set
 * against `lz4 -b` on the same file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mm/compress.h"
#include "mm/mm.h"
#include "mm/zpool.h"
#include "tests/sim/model.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int same_filled(const uint64_t *w)
{
    for (int i = 1; i < 512; i++)
        if (w[i] != w[0])
            return 0;
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS [--rounds N] [--stored FILE]\n", argv[0]);
        return 2;
    }
    int rounds = 20;
    const char *stored_out = NULL;
    for (int a = 2; a + 1 < argc; a += 2) {
        if (!strcmp(argv[a], "--rounds"))
            rounds = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--stored"))
            stored_out = argv[a + 1];
        else {
            fprintf(stderr, "usage: %s CORPUS [--rounds N] [--stored FILE]\n", argv[0]);
            return 2;
        }
    }
    if (rounds < 1)
        rounds = 1;
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    size_t npages = (size_t)size / CMP_PAGE;
    uint8_t *corpus = malloc(npages * CMP_PAGE + 1);
    if (!npages || fread(corpus, CMP_PAGE, npages, f) != npages) {
        fprintf(stderr, "%s: no whole pages\n", argv[1]);
        return 1;
    }
    fclose(f);

    printf("objects: LZ4 and the pool's LZ4 wrapper (lz4.o, mm/compress.c.o, with "
           "lib/string.c.o) are the image's; the pool (mm/zpool.c), the same-filled test and "
           "the model are built with host flags and libc\n");
    enum { COPIES = 16 };
    /* A machine big enough that only the pool's cap could refuse. */
    sim_init(npages * COPIES * 2 + 4096);
    zpool_fini();
    if (mm_pool_init(npages * COPIES + 64, 2048, false)) {
        fprintf(stderr, "no pool\n");
        return 1;
    }
    uint64_t *handle = calloc(npages * COPIES, sizeof(uint64_t));
    int *len = calloc(npages * COPIES, sizeof(int));
    static uint8_t buf[ZP_MAX_DATA], out[CMP_PAGE];
    size_t filled = 0, incompressible = 0, stored = 0;
    /* The fastest round of each direction, as lz4 -b reports its fastest
     * run: on a shared machine a sum over rounds measures the neighbours. */
    double t_cmp = 1e30, t_dec = 1e30;
    uint64_t in_bytes_c = 0, in_bytes_d = 0, round_d = 0;
    for (int r = 0; r < rounds; r++) {
        double t0 = now();
        for (size_t i = 0; i < npages * COPIES; i++) {
            const uint8_t *page = corpus + (i % npages) * CMP_PAGE;
            handle[i] = ZP_HANDLE_INVALID;
            if (same_filled((const uint64_t *)page)) {
                filled += r == 0;
                continue;
            }
            int n = cmp_compress_page(page, buf, 2048);
            if (n <= 0) {
                incompressible += r == 0;
                continue;
            }
            if (zpool_store(buf, (unsigned)n, 1, i, 0, &handle[i]) != ZP_STORED) {
                fprintf(stderr, "pool refused page %zu\n", i);
                return 1;
            }
            len[i] = n;
            stored += r == 0;
        }
        if (now() - t0 < t_cmp)
            t_cmp = now() - t0;
        in_bytes_c = npages * COPIES * CMP_PAGE;
        struct zpool_stats zs;
        zpool_get_stats(&zs);
        if (r == 0)
            printf("pool: %zu pages (%zu-page corpus x %d): %zu same-filled, %zu incompressible "
                   "(> 2048 bytes), %zu stored in %llu frames: %llu bytes, ratio %.2f, density "
                   "%.2f; machine frames for these pages %zu -> %llu (%.2fx)\n",
                   npages * COPIES, npages, (int)COPIES, filled, incompressible, stored,
                   (unsigned long long)zs.frames,
                   (unsigned long long)zs.data_bytes,
                   (double)stored * CMP_PAGE / (double)zs.data_bytes,
                   (double)zs.data_bytes / (double)(zs.frames * CMP_PAGE), npages * COPIES,
                   (unsigned long long)(zs.frames + incompressible),
                   (double)(npages * COPIES) / (double)(zs.frames + incompressible));
        t0 = now();
        round_d = 0;
        for (size_t i = 0; i < npages * COPIES; i++) {
            if (handle[i] == ZP_HANDLE_INVALID)
                continue;
            uint32_t check;
            if (zpool_load(handle[i], 1, i, (unsigned)len[i], buf, &check) ||
                cmp_decompress_page(buf, len[i], out)) {
                fprintf(stderr, "page %zu did not come back\n", i);
                return 1;
            }
            zpool_free(handle[i]);
            round_d += CMP_PAGE;
        }
        if (now() - t0 < t_dec)
            t_dec = now() - t0;
        in_bytes_d = round_d;
        if (r == 0) {
            /* Verify once, outside the timing. */
            for (size_t i = 0; i < npages; i++) {
                const uint8_t *page = corpus + i * CMP_PAGE;
                if (same_filled((const uint64_t *)page))
                    continue;
                int n = cmp_compress_page(page, buf, 2048);
                if (n > 0 && (cmp_decompress_page(buf, n, out) || memcmp(out, page, CMP_PAGE))) {
                    fprintf(stderr, "page %zu: round trip differs\n", i);
                    return 1;
                }
            }
        }
    }
    if (stored_out) {
        /* The corpus pages the pool stores (and so decompresses), once
         * each: the baseline's input for the decompression figure. */
        FILE *o = fopen(stored_out, "wb");
        size_t w = 0;
        for (size_t i = 0; o && i < npages; i++)
            if (len[i] > 0)
                w += fwrite(corpus + i * CMP_PAGE, CMP_PAGE, 1, o);
        if (!o || fclose(o)) {
            perror(stored_out);
            return 1;
        }
        printf("stored pages: %zu written to %s\n", w, stored_out);
    }
    printf("pool path: compress %.1f MB/s (same-filled test + LZ4 + store, every page), "
           "decompress %.1f MB/s (load + LZ4 + free, stored pages), fastest of %d rounds\n",
           (double)in_bytes_c / t_cmp / 1e6, (double)in_bytes_d / t_dec / 1e6, rounds);
    free(handle);
    free(len);
    free(corpus);
    sim_fini();
    return 0;
}

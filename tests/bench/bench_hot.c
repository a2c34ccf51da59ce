/* make bench, host part: the hot paths' primitives as the image runs them
 * (the shipped objects, tests/bench/shipped.h), in TSC cycles per 4 KiB
 * page, each beside a baseline measured in the same run:
 *
 *   bench_hot CORPUS [ROUNDS]
 *
 *   xxh64       hash64 (shipped XXH64)          vs XXH64 built with host flags
 *   check       hash_check32 (pool_check)       vs hash32 = XXH32, the old check
 *   memcmp      hv_memcmp, identical pages      vs libc memcmp
 *   memcpy      hv_memcpy, page to page         vs libc memcpy
 *   memset      hv_memset, page clear           vs libc memset
 *   lz4-c       cmp_compress_page, cap 2048     (baseline: lz4 -b, tests/rig/bench.py)
 *   lz4-d       cmp_decompress_page             (baseline: lz4 -b)
 *
 * One line per path: "path NAME CYCLES baseline BNAME BCYCLES". Every
 * figure is the minimum over rounds of the mean over the corpus.
 *
 *   bench_hot CORPUS --once NAME
 *
 * runs path NAME once per corpus page and nothing else of the image's
 * code, for an instruction count under valgrind (tests/rig/bench.py:
 * callgrind --toggle-collect on the path's function, divided by the pages;
 * valgrind, like Bochs, counts every rep-string iteration, so the two
 * agree). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <x86intrin.h>

#include "lib/log.h"
#include "mm/compress.h"
#include "mm/hash.h"
#include "tests/bench/shipped.h"

/* The shipped compress object logs through lib/log.c; its lines go to
 * stderr here. */
void log_sink_write(const char *s, size_t n)
{
    fwrite(s, 1, n, stderr);
}

/* xxHash once more, built with this program's (host) flags under its own
 * namespace, as the "same algorithm, ordinary build" baseline. */
#define XXH_NAMESPACE host_
#include "xxhash.c"

enum { PAGE = 4096 };
static int ROUNDS = 200;

static size_t npages;
static uint8_t *corpus, *twin, *dst;
static uint64_t sink;

typedef void (*fn_t)(size_t i);

static double measure(fn_t f)
{
    for (size_t i = 0; i < npages; i++) /* warm caches and branch predictors */
        f(i);
    double best = 1e30;
    for (int r = 0; r < ROUNDS; r++) {
        uint64_t t0 = __rdtsc();
        for (size_t i = 0; i < npages; i++)
            f(i);
        double c = (double)(__rdtsc() - t0) / (double)npages;
        if (c < best)
            best = c;
    }
    return best;
}

#define PG(b, i) ((b) + (i) * PAGE)
static void f_xxh64(size_t i) { sink += hash64(PG(corpus, i), PAGE, 0); }
static void f_xxh64_host(size_t i) { sink += host_XXH64(PG(corpus, i), PAGE, 0); }
static void f_check(size_t i) { sink += hash_check32(PG(corpus, i), PAGE, 0); }
static void f_xxh32(size_t i) { sink += hash32(PG(corpus, i), PAGE, 0); }
static void f_cmp(size_t i) { sink += (uint64_t)hv_memcmp(PG(corpus, i), PG(twin, i), PAGE); }
static void f_cmp_libc(size_t i) { sink += (uint64_t)memcmp(PG(corpus, i), PG(twin, i), PAGE); }
static void f_cpy(size_t i) { hv_memcpy(PG(dst, i), PG(corpus, i), PAGE); }
static void f_cpy_libc(size_t i) { memcpy(PG(dst, i), PG(corpus, i), PAGE); }
static void f_set(size_t i) { hv_memset(PG(dst, i), 0, PAGE); }
static void f_set_libc(size_t i) { memset(PG(dst, i), 0, PAGE); }

static uint8_t cbuf[PAGE * 2];
static int *clen;
static uint8_t *cstore;
static void f_lz4c(size_t i) { sink += (uint64_t)cmp_compress_page(PG(corpus, i), cbuf, 2048); }
static void f_lz4d(size_t i)
{
    if (clen[i] > 0 && cmp_decompress_page(cstore + i * 2048, clen[i], PG(dst, i)))
        abort();
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS\n", argv[0]);
        return 2;
    }
    const char *once = argc > 3 && !strcmp(argv[2], "--once") ? argv[3] : NULL;
    if (argc > 2 && !once)
        ROUNDS = atoi(argv[2]) > 0 ? atoi(argv[2]) : 1;
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    npages = (size_t)ftell(f) / PAGE;
    fseek(f, 0, SEEK_SET);
    corpus = aligned_alloc(PAGE, (npages + 1) * PAGE);
    twin = aligned_alloc(PAGE, (npages + 1) * PAGE);
    dst = aligned_alloc(PAGE, (npages + 1) * PAGE);
    clen = calloc(npages + 1, sizeof(int));
    cstore = malloc((npages + 1) * 2048);
    if (!npages || !corpus || !twin || !dst || !clen || !cstore ||
        fread(corpus, PAGE, npages, f) != npages) {
        fprintf(stderr, "%s: no whole pages\n", argv[1]);
        return 1;
    }
    fclose(f);
    memcpy(twin, corpus, npages * PAGE);
    if (once) {
        static const struct {
            const char *name;
            fn_t f;
        } one[] = { { "xxh64", f_xxh64 }, { "check", f_check }, { "memcmp", f_cmp },
                    { "memcpy", f_cpy },  { "memset", f_set },  { "lz4-c", f_lz4c },
                    { "lz4-d", f_lz4d } };
        size_t decodes = 0;
        if (!strcmp(once, "lz4-d"))
            for (size_t i = 0; i < npages; i++)
                decodes += (clen[i] = cmp_compress_page(PG(corpus, i), cstore + i * 2048, 2048)) > 0;
        for (size_t k = 0; k < sizeof(one) / sizeof(one[0]); k++)
            if (!strcmp(once, one[k].name)) {
                for (size_t i = 0; i < npages; i++)
                    one[k].f(i);
                printf("once %s %zu calls\n", once, !strcmp(once, "lz4-d") ? decodes : npages);
                return 0;
            }
        fprintf(stderr, "no path %s\n", once);
        return 2;
    }

    /* The shipped code must compute what the host build computes. */
    size_t stored = 0;
    for (size_t i = 0; i < npages; i++) {
        if (hash64(PG(corpus, i), PAGE, 7) != host_XXH64(PG(corpus, i), PAGE, 7) ||
            hash_check32(PG(corpus, i), PAGE, 0) != (uint32_t)host_XXH64(PG(corpus, i), PAGE, 0) ||
            hash32(PG(corpus, i), PAGE, 0) != host_XXH32(PG(corpus, i), PAGE, 0)) {
            fprintf(stderr, "page %zu: shipped xxHash differs from the host build\n", i);
            return 1;
        }
        clen[i] = cmp_compress_page(PG(corpus, i), cstore + i * 2048, 2048);
        if (clen[i] > 0) {
            stored++;
            if (cmp_decompress_page(cstore + i * 2048, clen[i], PG(dst, i)) ||
                memcmp(PG(dst, i), PG(corpus, i), PAGE)) {
                fprintf(stderr, "page %zu: LZ4 round trip differs\n", i);
                return 1;
            }
        }
    }
    printf("objects: shipped build/obj/{lz4.o,xxhash.o,mm/hash.c.o,mm/compress.c.o,"
           "lib/string.c.o} (CORE_CFLAGS: -ffreestanding -fno-builtin -mgeneral-regs-only); "
           "baselines: libc, and xxHash built -O2 for this host\n");
    printf("corpus: %zu pages, %zu compress to <= 2048 bytes\n", npages, stored);
    struct {
        const char *name;
        fn_t f;
        const char *bname;
        fn_t b;
    } paths[] = {
        { "xxh64", f_xxh64, "xxh64-host-build", f_xxh64_host },
        { "check", f_check, "xxh32-old-check", f_xxh32 },
        { "memcmp", f_cmp, "libc-memcmp", f_cmp_libc },
        { "memcpy", f_cpy, "libc-memcpy", f_cpy_libc },
        { "memset", f_set, "libc-memset", f_set_libc },
        { "lz4-c", f_lz4c, "lz4-b", NULL },
        { "lz4-d", f_lz4d, "lz4-b", NULL },
    };
    for (size_t k = 0; k < sizeof(paths) / sizeof(paths[0]); k++) {
        double c = measure(paths[k].f);
        double b = paths[k].b ? measure(paths[k].b) : 0;
        printf("path %s %.0f baseline %s %.0f\n", paths[k].name, c, paths[k].bname, b);
    }
    /* lz4-d's figure is per corpus page: only stored pages decode. */
    printf("lz4-d counts %zu decodes over %zu pages\n", stored, npages);
    printf("checksum %llx\n", (unsigned long long)(sink & 0xff));
    return 0;
}

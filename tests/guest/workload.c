/* workload: the guest side of the experiments (experiments/). Each mode
 * touches memory in a pattern a memory manager should handle differently,
 * verifies what it reads, and reports its own throughput, one line per
 * second of guest time and one at the end:
 *
 *   WORKLOAD mode=M phase=P t=SECONDS pages=N rate=PAGES_PER_S mbs=MB_PER_S
 *   WORKLOAD DONE mode=M pages=N secs=S rate=R majflt=F pswpin=I pswpout=O errors=E
 *
 * Modes (sizes in MiB, times in seconds of guest time):
 *   workload hot  MIB HOTPCT HITPCT SECS [DATA]
 *       a working set of MIB; HITPCT of the accesses go to the first HOTPCT
 *       of it, the rest anywhere (the cold part goes idle: reclaim's prey)
 *   workload phases MIB NPHASES SECS [DATA]
 *       NPHASES regions of MIB each, one after the other, SECS each: the
 *       previous phase's region stays mapped but goes cold
 *   workload cache MIB PASSES [DATA]
 *       writes a file of MIB in /tmp (the initramfs: a page-cache-only
 *       filesystem, no block device behind it) and reads it PASSES times
 *       through read(2), checking every word
 * DATA is the content of each page: random (incompressible, the default),
 * text (LZ4 gets about 3x: three words in four depend only on the page's
 * generation), zero (every other page stays zero) or mixed (one page in
 * three of each).
 * Every page carries its own index in its first word, so any page that
 * came back wrong (from the pool, swap, a shared frame) is counted in
 * errors= and the run prints WORKLOAD FAIL. Static, run by /init. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define WORDS (PAGE / 8)

enum data { D_RANDOM, D_TEXT, D_ZERO, D_MIXED };
static enum data kind = D_RANDOM;
static const char *mode = "?";
static unsigned long errors;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The kind of page index pg holds. */
static enum data kind_of(uint64_t pg)
{
    return kind == D_MIXED ? (enum data)(pg % 3) : kind;
}

/* Word w of page pg at generation gen. */
static uint64_t word(uint64_t pg, uint64_t gen, size_t w)
{
    if (w == 0)
        return pg << 16 | (gen & 0xffff);
    switch (kind_of(pg)) {
    case D_ZERO:
        return (pg & 1) ? 0 : mix(pg * 0x9e3779b97f4a7c15ULL + gen + w);
    case D_TEXT:
        if (w % 4)
            return 0x2064616f6c6b726fULL + gen + (w % 4); /* "orkload " */
        /* fall through */
    default:
        return mix(pg * 0x9e3779b97f4a7c15ULL + gen * 0xbf58476d1ce4e5b9ULL + w);
    }
}

static void fill(uint64_t *p, uint64_t pg, uint64_t gen)
{
    if (kind_of(pg) == D_ZERO && (pg & 1)) {
        memset(p, 0, PAGE); /* a zero page: nothing of its own, not even the tag */
        return;
    }
    for (size_t w = 0; w < WORDS; w++)
        p[w] = word(pg, gen, w);
}

static void check(const uint64_t *p, uint64_t pg, uint64_t gen)
{
    if (kind_of(pg) == D_ZERO && (pg & 1)) {
        for (size_t w = 0; w < WORDS; w++)
            if (p[w]) {
                errors++;
                return;
            }
        return;
    }
    for (size_t w = 0; w < WORDS; w += 61) /* a sample of each page, first word included */
        if (p[w] != word(pg, gen, w)) {
            if (errors++ < 4)
                printf("WORKLOAD mismatch page %llu word %zu: %#llx, expected %#llx\n",
                       (unsigned long long)pg, w, (unsigned long long)p[w],
                       (unsigned long long)word(pg, gen, w));
            return;
        }
}

static long vmstat(const char *key)
{
    FILE *f = fopen("/proc/vmstat", "r");
    char k[64];
    long v, r = -1;
    if (!f)
        return -1;
    while (fscanf(f, "%63s %ld", k, &v) == 2)
        if (!strcmp(k, key))
            r = v;
    fclose(f);
    return r;
}

static uint64_t total_pages;
static double started;

/* Called after every page: prints a line per second of guest time. */
static void tick(const char *phase)
{
    static double last;
    static uint64_t last_pages;
    total_pages++;
    if ((total_pages & 255) == 0) {
        double t = now();
        if (!last)
            last = started;
        if (t - last >= 1.0) {
            double r = (double)(total_pages - last_pages) / (t - last);
            printf("WORKLOAD mode=%s phase=%s t=%.1f pages=%llu rate=%.0f mbs=%.1f\n", mode,
                   phase, t - started, (unsigned long long)total_pages, r, r * PAGE / 1e6);
            last = t;
            last_pages = total_pages;
        }
    }
}

static uint64_t *map(size_t pages)
{
    uint64_t *p = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
    if (p == MAP_FAILED) {
        printf("WORKLOAD FAIL mmap of %zu pages\n", pages);
        exit(1);
    }
    return p;
}

/* One touch of page i of region p (base index pg0): read-check, then
 * rewrite every fourth touch with the next generation. */
static void touch(uint64_t *p, uint64_t *gen, size_t i, uint64_t pg0, const char *phase)
{
    uint64_t *pg = p + i * WORDS;
    check(pg, pg0 + i, gen[i]);
    if ((total_pages & 3) == 0) {
        gen[i]++;
        fill(pg, pg0 + i, gen[i]);
    }
    tick(phase);
}

static void do_hot(size_t pages, unsigned hot_pct, unsigned hit_pct, double secs)
{
    uint64_t *p = map(pages);
    uint64_t *gen = calloc(pages, sizeof(*gen));
    size_t hot = pages * hot_pct / 100;
    if (!hot)
        hot = 1;
    for (size_t i = 0; i < pages; i++) {
        gen[i] = 1;
        fill(p + i * WORDS, i, 1);
        tick("fill");
    }
    uint64_t r = 12345;
    double end = now() + secs;
    while (now() < end)
        for (int k = 0; k < 256; k++) {
            r = mix(r + 1);
            size_t i = (r % 100) < hit_pct ? (r >> 8) % hot : (r >> 8) % pages;
            touch(p, gen, i, 0, "run");
        }
    for (size_t i = 0; i < pages; i++) /* every page, cold ones too, must read back */
        check(p + i * WORDS, i, gen[i]);
}

static void do_phases(size_t pages, unsigned n, double secs)
{
    uint64_t **p = calloc(n, sizeof(*p));
    uint64_t **gen = calloc(n, sizeof(*gen));
    char name[16];
    for (unsigned ph = 0; ph < n; ph++) {
        snprintf(name, sizeof(name), "%u", ph);
        p[ph] = map(pages);
        gen[ph] = calloc(pages, sizeof(**gen));
        uint64_t pg0 = (uint64_t)ph * pages;
        for (size_t i = 0; i < pages; i++) {
            gen[ph][i] = 1;
            fill(p[ph] + i * WORDS, pg0 + i, 1);
            tick(name);
        }
        double end = now() + secs;
        for (size_t i = 0; now() < end; i = (i + 1) % pages)
            touch(p[ph], gen[ph], i, pg0, name);
    }
    for (unsigned ph = 0; ph < n; ph++)
        for (size_t i = 0; i < pages; i++)
            check(p[ph] + i * WORDS, (uint64_t)ph * pages + i, gen[ph][i]);
}

static void do_cache(size_t pages, unsigned passes)
{
    const char *path = "/tmp/workload.dat";
    uint64_t buf[WORDS];
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0600);
    if (fd < 0) {
        printf("WORKLOAD FAIL cannot create %s\n", path);
        exit(1);
    }
    for (size_t i = 0; i < pages; i++) {
        fill(buf, i, 1);
        if (write(fd, buf, PAGE) != (ssize_t)PAGE) {
            printf("WORKLOAD FAIL write of page %zu\n", i);
            exit(1);
        }
        tick("write");
    }
    for (unsigned pass = 0; pass < passes; pass++) {
        lseek(fd, 0, SEEK_SET);
        for (size_t i = 0; i < pages; i++) {
            if (read(fd, buf, PAGE) != (ssize_t)PAGE) {
                printf("WORKLOAD FAIL read of page %zu\n", i);
                exit(1);
            }
            check(buf, i, 1);
            tick("read");
        }
    }
    close(fd);
    unlink(path);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 3) {
        printf("WORKLOAD FAIL usage: workload hot|phases|cache MIB ... [random|text|zero|mixed]\n");
        return 2;
    }
    mode = argv[1];
    size_t pages = (size_t)strtoul(argv[2], NULL, 10) << 20 >> 12;
    int nargs = !strcmp(mode, "hot") ? 6 : !strcmp(mode, "phases") ? 5 : !strcmp(mode, "cache") ? 4 : 0;
    if (!nargs || argc < nargs || !pages) {
        printf("WORKLOAD FAIL bad arguments for mode '%s'\n", mode);
        return 2;
    }
    if (argc > nargs) {
        const char *d = argv[nargs];
        kind = !strcmp(d, "text") ? D_TEXT : !strcmp(d, "zero") ? D_ZERO
             : !strcmp(d, "mixed") ? D_MIXED : D_RANDOM;
        if (kind == D_RANDOM && strcmp(d, "random")) {
            printf("WORKLOAD FAIL unknown data kind '%s'\n", d);
            return 2;
        }
    }
    long maj0 = vmstat("pgmajfault"), in0 = vmstat("pswpin"), out0 = vmstat("pswpout");
    started = now();
    if (!strcmp(mode, "hot"))
        do_hot(pages, (unsigned)atoi(argv[3]), (unsigned)atoi(argv[4]), atof(argv[5]));
    else if (!strcmp(mode, "phases"))
        do_phases(pages, (unsigned)atoi(argv[3]), atof(argv[4]));
    else
        do_cache(pages, (unsigned)atoi(argv[3]));
    double secs = now() - started;
    printf("WORKLOAD DONE mode=%s pages=%llu secs=%.1f rate=%.0f majflt=%ld pswpin=%ld "
           "pswpout=%ld errors=%lu\n",
           mode, (unsigned long long)total_pages, secs, secs > 0 ? total_pages / secs : 0.0,
           vmstat("pgmajfault") - maj0, vmstat("pswpin") - in0, vmstat("pswpout") - out0,
           errors);
    if (errors) {
        printf("WORKLOAD FAIL %lu pages read back wrong\n", errors);
        return 1;
    }
    printf("WORKLOAD PASS\n");
    return 0;
}

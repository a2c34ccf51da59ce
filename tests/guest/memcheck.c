/* memcheck: fills a share of the guest's RAM with a pattern derived from
 * (offset, generation), verifies it, rewrites every other page with the
 * next generation, and verifies again. Prints "MEMCHECK PASS bytes=..." or
 * the first mismatch ("MEMCHECK FAIL ..."). Static, runs as /init's child
 * in the guest's initramfs.
 *
 *   memcheck PERCENT          share of MemTotal (default 75)
 *   memcheck -m MIB [-r N]    an absolute size; with -r, N rounds over N fresh
 *                             regions of MIB each, every region zeroed after its
 *                             round and kept mapped, all re-verified as zero at
 *                             the end (what a hypervisor's zero-page reclaim
 *                             must preserve)
 *   memcheck --tsc            print the TSC (guest TSC = host TSC in this hypervisor)
 *   memcheck -z ...           compressible data: three words in four are text that
 *                             depends only on the generation, the fourth is the unique
 *                             pattern (LZ4 shrinks such a page about 3x); every word is
 *                             still verified
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define PAGE 4096UL

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

/* A value no other (offset, generation) pair produces by accident:
 * splitmix64 of both. */
static inline uint64_t pattern(uint64_t off, uint64_t gen)
{
    uint64_t z = off * 0x9e3779b97f4a7c15ULL + gen * 0xbf58476d1ce4e5b9ULL + 1;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int compressible;

static inline uint64_t value_at(uint64_t off, uint64_t gen)
{
    if (compressible && (off / 8) % 4)
        return 0x206b6365686d656dULL + gen + ((off / 8) % 4 << 40); /* "memcheck " */
    return pattern(off, gen);
}

static long meminfo_kb(const char *key)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[128];
    long v = -1;
    size_t n = strlen(key);
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, key, n) && line[n] == ':')
            v = strtol(line + n + 1, NULL, 10);
    fclose(f);
    return v;
}

/* One round over a region: fill, verify, rewrite every other page, verify.
 * Prints the first mismatch. */
static int check_region(uint64_t *p, size_t bytes, uint64_t salt)
{
    size_t words = bytes / 8;
    for (size_t i = 0; i < words; i++)
        p[i] = value_at(i * 8 + salt, 1);
    for (int phase = 1; phase <= 2; phase++) {
        for (size_t i = 0; i < words; i++) {
            uint64_t gen = (phase == 2 && ((i * 8 / PAGE) & 1)) ? 2 : 1;
            uint64_t want = value_at(i * 8 + salt, gen);
            if (p[i] != want) {
                printf("MEMCHECK FAIL phase=%d offset=%#zx expected=%#llx got=%#llx\n", phase,
                       i * 8, (unsigned long long)want, (unsigned long long)p[i]);
                return -1;
            }
        }
        if (phase == 1)
            for (size_t pg = 1; pg < bytes / PAGE; pg += 2)
                for (size_t i = pg * PAGE / 8; i < (pg + 1) * PAGE / 8; i++)
                    p[i] = value_at(i * 8 + salt, 2);
    }
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && !strcmp(argv[1], "--tsc")) {
        printf("tsc=%llu\n", (unsigned long long)rdtsc());
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "-z")) {
        compressible = 1;
        argv++;
        argc--;
    }
    size_t bytes;
    long rounds = 0;
    long total_kb = meminfo_kb("MemTotal");
    if (argc > 2 && !strcmp(argv[1], "-m")) {
        bytes = (size_t)strtoul(argv[2], NULL, 10) << 20;
        if (argc > 4 && !strcmp(argv[3], "-r"))
            rounds = strtol(argv[4], NULL, 10);
    } else {
        long pct = argc > 1 ? strtol(argv[1], NULL, 10) : 75;
        if (pct <= 0 || pct > 95 || total_kb <= 0) {
            printf("MEMCHECK FAIL bad arguments (percent %ld, MemTotal %ld kB)\n", pct, total_kb);
            return 2;
        }
        bytes = (size_t)total_kb * 1024 / 100 * (size_t)pct;
    }
    bytes &= ~(PAGE - 1);
    if (rounds > 0) {
        uint64_t t0 = rdtsc();
        uint64_t **region = calloc((size_t)rounds, sizeof(*region));
        printf("memcheck: %ld rounds of %zu MiB (MemTotal %ld kB)\n", rounds, bytes >> 20,
               total_kb);
        for (long r = 0; r < rounds; r++) {
            region[r] = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                             -1, 0);
            if (region[r] == MAP_FAILED) {
                printf("MEMCHECK FAIL mmap of round %ld failed\n", r);
                return 1;
            }
            if (check_region(region[r], bytes, (uint64_t)r << 40)) {
                printf("MEMCHECK FAIL in round %ld\n", r);
                return 1;
            }
            memset(region[r], 0, bytes); /* given back as zero, still mapped */
            printf("memcheck: round %ld passed, region zeroed\n", r);
        }
        for (long r = 0; r < rounds; r++) {
            for (size_t i = 0; i < bytes / 8; i++) {
                if (region[r][i]) {
                    printf("MEMCHECK FAIL zeroed region %ld offset %#zx reads %#llx\n", r,
                           i * 8, (unsigned long long)region[r][i]);
                    return 1;
                }
            }
        }
        printf("MEMCHECK PASS bytes=%zu rounds=%ld tsc=%llu\n", bytes * (size_t)rounds,
               rounds, (unsigned long long)(rdtsc() - t0));
        return 0;
    }
    printf("memcheck: %zu MiB%s (MemTotal %ld kB, MemAvailable %ld kB)\n", bytes >> 20,
           compressible ? " of compressible data" : "", total_kb, meminfo_kb("MemAvailable"));
    uint64_t *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        printf("MEMCHECK FAIL mmap of %zu bytes failed\n", bytes);
        return 1;
    }
    uint64_t t0 = rdtsc();
    if (check_region(p, bytes, 0))
        return 1;
    printf("MEMCHECK PASS bytes=%zu pages=%zu tsc=%llu\n", bytes, bytes / PAGE,
           (unsigned long long)(rdtsc() - t0));
    return 0;
}

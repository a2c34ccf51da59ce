/* make bench-share, host part: the share scanner's cost per page on real
 * guest memory (the corpus of tests/rig/corpus.py).
 *
 *   bench_share CORPUS
 *
 * 1. The two primitives a scan pays per page, in TSC cycles: xxHash64 of
 *    4 KiB (the lz4 source's xxhash, as the scanner uses it) and a full
 *    memcmp of two identical pages (the worst case of a merge's check).
 * 2. The scanner itself: three VMs each holding a copy of the corpus (so
 *    every page has two twins in other VMs) and one salt; two rounds of
 *    share_scan, with cycles per hashed page (hash, table lookups, write
 *    protection, compare and merge included) and the frames saved, zero
 *    and non-zero apart. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mm/hash.h"
#include "mm/mm.h"
#include "mm/mm_backend.h"
#include "mm/share.h"
#include "tests/bench/shipped.h"
#include "tests/sim/model.h"

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    size_t npages = (size_t)ftell(f) / PAGE_SIZE;
    fseek(f, 0, SEEK_SET);
    uint8_t *corpus = aligned_alloc(PAGE_SIZE, npages * PAGE_SIZE + PAGE_SIZE);
    if (!npages || fread(corpus, PAGE_SIZE, npages, f) != npages) {
        fprintf(stderr, "%s: no whole pages\n", argv[1]);
        return 1;
    }
    fclose(f);

    /* 1. primitives */
    enum { ROUNDS = 2000 };
    uint64_t sink = 0, t0 = mm_now();
    for (int r = 0; r < ROUNDS; r++)
        for (size_t i = 0; i < npages; i++)
            sink += hash64(corpus + i * PAGE_SIZE, PAGE_SIZE, (uint64_t)r);
    uint64_t hash_cyc = (mm_now() - t0) / (ROUNDS * npages);
    uint8_t *twin = aligned_alloc(PAGE_SIZE, npages * PAGE_SIZE);
    memcpy(twin, corpus, npages * PAGE_SIZE);
    t0 = mm_now();
    for (int r = 0; r < ROUNDS; r++)
        for (size_t i = 0; i < npages; i++)
            sink += (uint64_t)hv_memcmp(corpus + i * PAGE_SIZE, twin + i * PAGE_SIZE, PAGE_SIZE);
    uint64_t cmp_cyc = (mm_now() - t0) / (ROUNDS * npages);
    t0 = mm_now();
    for (int r = 0; r < ROUNDS; r++)
        for (size_t i = 0; i < npages; i++)
            sink += (uint64_t)memcmp(corpus + i * PAGE_SIZE, twin + i * PAGE_SIZE, PAGE_SIZE);
    uint64_t libc_cyc = (mm_now() - t0) / (ROUNDS * npages);
    printf("objects: xxHash64 (mm/hash.c.o, xxhash.o) and memcmp (lib/string.c.o) are the "
           "image's; the scanner (mm/share.c, p2m, model) is built with host flags and libc's "
           "memcmp\n");
    printf("primitives on %zu corpus pages: xxHash64 %llu cycles/page, memcmp of identical pages "
           "%llu cycles/page (libc memcmp: %llu) (checksum %llx)\n",
           npages, (unsigned long long)hash_cyc, (unsigned long long)cmp_cyc,
           (unsigned long long)libc_cyc, (unsigned long long)(sink & 0xff));

    /* 2. the scanner: three VMs with the corpus each, one salt */
    sim_init(npages * 4 + 8192);
    share_fini();
    share_init(npages * 4 + 8192, 256);
    int vm[3];
    for (int v = 0; v < 3; v++) {
        vm[v] = sim_add_vm(npages, 0, 0, true);
        struct p2m *p = &sim->vm[vm[v]].p2m;
        p->salt = 1;
        p->compress = false;
        for (size_t i = 0; i < npages; i++) {
            p2m_fault(p, i * PAGE_SIZE, P2M_ACCESS_W);
            memcpy(p2m_gfn_ptr(p, i, false), corpus + i * PAGE_SIZE, PAGE_SIZE);
        }
    }
    struct frame_stats before;
    frame_get_stats(&before);
    share_scan(2 * (3 * npages + 3) + 3); /* two full rounds */
    struct share_stats ss;
    share_get_stats(&ss);
    struct frame_stats after;
    frame_get_stats(&after);
    uint64_t refs = 0, zero = 0;
    for (int v = 0; v < 3; v++) {
        refs += sim->vm[vm[v]].p2m.count[P2M_SHARED];
        zero += sim->vm[vm[v]].p2m.st.share_zero;
    }
    uint64_t shared_frames = after.count[FS_SHARED];
    printf("scanner, 3 VMs x %zu pages, one salt, %llu rounds: %llu hashed, %llu compares, %llu "
           "merges (%llu cross-VM), %llu cycles per hashed page (hash + lookups + protect + "
           "compare + merge)\n",
           npages, (unsigned long long)ss.rounds, (unsigned long long)ss.hashed,
           (unsigned long long)ss.compares, (unsigned long long)ss.merges,
           (unsigned long long)ss.merges_cross,
           (unsigned long long)(ss.hashed ? ss.cycles / ss.hashed : 0));
    printf("frames saved: non-zero %llu (%llu GFNs on %llu shared frames), zero/same-filled %llu; "
           "resident frames %llu -> %llu\n",
           (unsigned long long)(refs - shared_frames), (unsigned long long)refs,
           (unsigned long long)shared_frames, (unsigned long long)zero,
           (unsigned long long)before.count[FS_VM],
           (unsigned long long)(after.count[FS_VM] + after.count[FS_SHARED]));
    sim_fini();
    free(corpus);
    free(twin);
    return 0;
}

/* Machine-level memory policy: reservations, limits, the low watermark,
 * and the reclaim chain that runs when one of them is reached. The chain
 * today is zero-page reclaim; later techniques (sharing, balloon,
 * compression, swap) plug in as further links, cheapest first. */
#ifndef MM_MM_H
#define MM_MM_H
#include <stdint.h>

#include "mm/frame.h"
#include "mm/p2m.h"

#define MM_MAX_VMS 8
#define MM_RECLAIM_BATCH 64   /* frames a reclaim pass tries to free */
#define MM_RECLAIM_SCAN 1024  /* pages a pass may inspect per VM */

struct mm_stats {
    uint64_t allocs_over_limit, allocs_over_watermark;
    uint64_t reclaim_runs, reclaimed;
    uint64_t waits;
};

/* Low watermark in frames: below it, allocations beyond a VM's
 * reservation first run reclaim. */
void mm_set_watermark(uint64_t frames);
uint64_t mm_watermark(void);
/* Admission: a VM's reservation must fit in what is free and unreserved. */
int mm_register(struct p2m *p);
void mm_unregister(struct p2m *p);
/* A frame for a guest page of p, after running the reclaim chain if p is
 * at its limit or the machine at its watermark. MFN_INVALID: the vCPU must
 * wait (the event is counted). */
mfn_t mm_frame_for(struct p2m *p);
/* Reclaim outside a fault, for vCPUs waiting on memory: the same chain,
 * but each VM's scan may cover all its pages (no exit latency to protect).
 * Returns frames freed. */
uint64_t mm_reclaim_for_waiters(void);
/* Configured guest memory / usable machine memory, in per mille. */
uint64_t mm_overcommit_permille(void);
void mm_get_stats(struct mm_stats *s);
/* One line per VM and one for the machine, "[mm] ..." */
void mm_print_stats(void);
void mm_print_vm(const struct p2m *p);
#endif

/* Machine-level memory policy: admission, reservations, limits, the low
 * watermark, and the reclaim that runs when one of them is reached. A
 * VM's reclaim (p2m_reclaim) takes pages down the chain cheapest first:
 * same-filled pages (zero the common case) become a value whatever their
 * age; of the cold ones, a clean page with a valid swap copy is dropped,
 * the rest are LZ4-compressed into the pool or, when that fails, written
 * to swap. Under machine pressure the VMs furthest above their
 * reservations give first, then shared frames (charged to no VM) are
 * reclaimed whole (share_reclaim). Sharing (the scanner) and the balloon
 * (its pressure policy) run ahead of demand, between slices, not from
 * here. */
#ifndef MM_MM_H
#define MM_MM_H
#include <stdbool.h>
#include <stdint.h>

#include "mm/frame.h"
#include "mm/p2m.h"

#define MM_MAX_VMS 8
#define MM_RECLAIM_BATCH 64   /* frames a reclaim pass tries to free */
#define MM_RECLAIM_SCAN 1024  /* pages a pass may inspect per VM */
#define MM_COMPACT_MOVES 512  /* pool objects one compaction may move */

struct mm_stats {
    uint64_t allocs_over_limit, allocs_over_watermark;
    uint64_t reclaim_runs, reclaimed;
    uint64_t waits;
};

/* The compressed pool: at most cap_frames frames (0: no compression),
 * objects up to max_len bytes, optional XXH32 check of every page.
 * Returns 0, or -1 when the pool's own table cannot be allocated. */
int mm_pool_init(uint64_t cap_frames, unsigned max_len, bool checksum);
/* Housekeeping between slices: compacts the pool when fragmentation
 * wastes frames. */
void mm_periodic(void);

/* Low watermark in frames, the policy's low mark (mm/policy.h: default
 * 32% of min_free): below it, allocations beyond a VM's reservation first
 * run reclaim (direct reclaim), then wait. */
void mm_set_watermark(uint64_t frames);
uint64_t mm_watermark(void);
/* Admission: a VM's reservation must fit in what is free and unreserved. */
int mm_register(struct p2m *p);
void mm_unregister(struct p2m *p);
/* A frame for a guest page of p, after running the reclaim chain if p is
 * at its limit or the machine at its watermark. MFN_INVALID: the vCPU must
 * wait (the event is counted). */
mfn_t mm_frame_for(struct p2m *p);
/* A frame of p's metadata (a map chunk or directory: FS_HV; an EPT table:
 * FS_PAGETABLE), owned by and charged to p (p->meta), under the same
 * limit and watermark rules. MFN_INVALID: wait. The caller frees it with
 * frame_free and p->meta--. */
mfn_t mm_meta_frame(struct p2m *p, enum frame_state s);
/* May p have one more resident page (a shared frame becoming its private
 * one)? Reclaims from p at its limit; false: wait (counted). */
bool mm_resident_room(struct p2m *p);
/* Frames p is charged for, the figure its limit bounds: private frames
 * plus its part of every shared frame it maps (mm/share.h), rounded up. */
uint64_t mm_charged(const struct p2m *p);
/* May p's charge grow (a GFN joining a shared frame)? Reclaims at the
 * limit as mm_frame_for does; false: wait (counted). */
bool mm_charge_room(struct p2m *p);
/* The registered VMs, for the share scanner. */
int mm_vm_count(void);
struct p2m *mm_vm_at(int i);
struct p2m *mm_vm_by_owner(uint16_t owner);
/* Reclaim outside a fault, for vCPUs waiting on memory: the same chain,
 * but each VM's scan may cover all its pages (no exit latency to protect).
 * Returns frames freed. */
uint64_t mm_reclaim_for_waiters(void);
/* Configured guest memory / usable machine memory, in per mille. */
uint64_t mm_overcommit_permille(void);
/* Frames still owed to reservations (resident below reserve), all VMs. */
uint64_t mm_owed_reservations(void);
/* Frames guests can have: free, VM, shared and pool frames. */
uint64_t mm_usable_frames(void);
void mm_get_stats(struct mm_stats *s);
/* One line per VM and one for the machine, "[mm] ..." */
void mm_print_stats(void);
void mm_print_vm(struct p2m *p);
/* "[mm] pool: ..." (nothing when the pool is off) */
void mm_print_pool(void);
#endif

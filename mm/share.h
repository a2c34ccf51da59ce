/* Content-based page sharing, as ESXi's transparent page sharing and Linux's
 * KSM: a rate-limited scanner hashes resident guest pages with xxHash64
 * (seeded with the VM's share salt), and pages whose hash was the same on
 * two consecutive visits are merged onto one read-only frame after a
 * byte-for-byte comparison under write protection. A write to a shared
 * page gets a private copy (p2m.c, copy-on-write).
 *
 * Two tables, both open addressing over frames from the allocator:
 *   stable   - shared frames by (hash, salt): where a new candidate looks
 *              first. Entries live as long as their frame is shared.
 *   unstable - pages seen with the same hash twice but not yet shared, by
 *              hash: a second such page with that hash is a merge partner.
 *              Emptied at the start of every full round (its entries go
 *              stale as guests write), as KSM's unstable tree.
 * Sharing across VMs happens only between VMs with the same salt: the
 * salt seeds the hash and is compared again before any merge. */
#ifndef MM_SHARE_H
#define MM_SHARE_H
#include <stdbool.h>
#include <stdint.h>

#include "mm/frame.h"
#include "mm/p2m.h"

struct share_stats {
    uint64_t rounds;          /* full passes over every VM's RAM */
    uint64_t visited;         /* GFNs looked at */
    uint64_t hashed;          /* resident pages hashed */
    uint64_t unstable;        /* hash differed from the previous visit: skipped */
    uint64_t compares;        /* byte-for-byte comparisons */
    uint64_t collisions;      /* equal hash as a shared frame, different content */
    uint64_t stale;           /* merge partners written since they were hashed */
    uint64_t merges;          /* GFNs that joined a shared frame */
    uint64_t merges_cross;    /* ... one already mapped by another VM */
    uint64_t new_frames;      /* shared frames created */
    uint64_t zero_merged;     /* same-filled pages the scanner returned as a value */
    uint64_t table_full;      /* merges given up for a full stable table */
    uint64_t cycles;          /* spent in the scanner */
    uint64_t rate;            /* pages per tick now (adaptive) */
    uint64_t idle_ticks, idle_visits; /* scanning while every vCPU was idle */
};

/* Tables for a machine of nframes frames; rate = pages per scan tick
 * (0: the scanner is off). Returns 0 or -1 (no memory for the tables). */
int share_init(uint64_t nframes, uint32_t rate);
void share_fini(void);
/* TSC ticks per second, for the pages-hashed-per-second figure. */
void share_set_clock(uint64_t hz);
bool share_enabled(void);

/* One scan tick: visits up to the current rate of GFNs across every
 * registered VM, round robin, but stops after max_cycles (a CPU budget:
 * the scanner must not starve the guests, and in Bochs a hash costs
 * thousands of instructions); then adapts the rate to what it found
 * (doubling while merges are frequent, halving while there are none,
 * between a quarter and four times the configured rate). */
void share_tick(uint64_t max_cycles);
/* Idle time (every vCPU halted): scans until the TSC reaches until. */
void share_idle(uint64_t until);
/* Visits exactly n GFNs (tests and the simulator). */
void share_scan(uint64_t n);

/* For p2m.c: a shared frame stops being shared (last reference written or
 * gone); hash is the frame's content hash with its salt. */
void share_forget(mfn_t mfn, uint64_t hash, uint64_t salt);

/* Stable-table consistency: every entry's frame is FS_SHARED with a
 * matching content hash, no frame twice. Returns violations. */
uint64_t share_check(void);
void share_get_stats(struct share_stats *st);
/* "[mm] share: ..." machine line (nothing when off). */
void share_print(void);

/* Test hook: the hash function used by the scanner, replaceable to force
 * collisions (NULL restores xxHash64). */
void share_set_hash(uint64_t (*fn)(const void *page, uint64_t salt));
uint64_t share_hash(const void *page, uint64_t salt);
#endif

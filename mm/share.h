/* Content-based page sharing, as ESXi's transparent page sharing and Linux's
 * KSM: a rate-limited scanner hashes resident guest pages with xxHash64
 * (seeded with the VM's share salt), and pages whose hash was the same on
 * two consecutive visits are merged onto one read-only frame after a
 * byte-for-byte comparison under write protection. A write to a shared
 * page gets a private copy (p2m.c, copy-on-write).
 *
 * Two hash tables, both open addressing over frames from the allocator
 * (with a third, the shared pool objects of share_reclaim, below):
 *   stable   - shared frames by (hash, salt): where a new candidate looks
 *              first. Entries live as long as their frame is shared;
 *              linear probing, deletion by backward shift (no tombstones),
 *              at most half full, each salt at most its fair share.
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
#include "mm/mm.h"
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
    uint64_t quota_refused;   /* ... for a salt at its share of the table */
    uint64_t cycles;          /* spent in the scanner */
    uint64_t rate;            /* pages per tick now (adaptive) */
    uint64_t idle_ticks, idle_visits; /* scanning while every vCPU was idle */
    uint64_t reclaim_runs, reclaim_refused; /* share_reclaim passes; frames LZ4/pool refused */
    uint64_t reclaimed_frames, reclaimed_gfns; /* shared frames compressed whole, their GFNs */
    uint64_t zobj_decoded;    /* shared objects decoded back into a shared frame */
    /* Work, in units the simulator bounds per fault: */
    uint64_t probes;          /* stable-table slots examined (lookups, inserts, deletions) */
    uint64_t probe_max;       /* most slots one stable-table operation examined */
    uint64_t reclaim_work;    /* table slots and GFNs share_reclaim examined */
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

/* What a VM is charged for its shared pages: every GFN mapping a shared
 * frame of reference count r carries ceil(SHARE_CHARGE_ONE / r), so a
 * frame's parts add up to (at least) one whole frame, split among its
 * sharers. p2m.shared_charge is the sum, kept exact: p2m.c calls this
 * right after every change of a shared frame's reference count by a GFN
 * of p (delta +1 or -1), and every sharer's part is recomputed (a record
 * per shared frame counts the mapping GFNs of each VM). */
#define SHARE_CHARGE_ONE (1ULL << 32)
void share_charge(struct p2m *p, mfn_t m, int delta);

/* For p2m.c: a shared frame stops being shared (last reference written or
 * gone); hash is the frame's content hash with its salt. */
void share_forget(mfn_t mfn, uint64_t hash, uint64_t salt);

/* Shared frames reclaimed as a whole, once (under machine pressure; they
 * are charged to no VM). Up to want cold frames (no mapping GFN accessed
 * since the last pass: a second chance clears the bits) are compressed
 * once each into one pool object; every GFN that mapped one becomes
 * COMPRESSED naming the object (P2M_F_SHARED_OBJ). The first fault decodes
 * it into a new shared frame, checked against the content hash; later
 * faults join that frame.
 *
 * It runs from a fault, so one call does at most SHARE_RECLAIM_BUDGET
 * units of work (a stable-table slot or a GFN each) and resumes where it
 * stopped: a pass chooses up to SHARE_RECLAIM_VICTIMS frames, walks every
 * VM's GFNs once for the second chance (MARK), compresses the cold ones
 * and links each object to its frame as if decoded from it, then walks
 * again pointing every GFN of a cold frame at its object (REDIRECT); a
 * frame is freed when its last GFN is redirected. Any cut between calls
 * leaves a consistent state (a GFN either maps the frame or names its
 * object; a fault on the latter joins the frame). Frames in a pass gain
 * no new mappings from the scanner. Returns frames freed by this call. */
#define SHARE_RECLAIM_BUDGET 4096
#define SHARE_RECLAIM_VICTIMS 16
uint64_t share_reclaim(uint64_t want);

/* Fair shares of the stable table: a salt (a sharing domain) may hold at
 * most capacity / (distinct salts of the registered sharing VMs) entries,
 * at least SHARE_SALT_FLOOR; inserts beyond it are refused and counted
 * per salt. A salt above its share after others arrived keeps what it has
 * and gains nothing until its frames go (copy-on-write, reclaim). */
#define SHARE_SALT_FLOOR 16
uint64_t share_salt_quota(void);
/* Entries salt holds and inserts refused to it; false if it has no record. */
bool share_salt_usage(uint64_t salt, uint64_t *used, uint64_t *refused);
/* Slots a stable-table lookup of (hash, salt) would examine now (tests). */
uint64_t share_probe_length(uint64_t hash, uint64_t salt);

struct share_zobj {
    uint64_t handle, hash, salt;
    uint32_t refs;
    mfn_t mfn;                /* decoded shared frame, or MFN_INVALID */
};
bool share_zobj_get(uint32_t idx, struct share_zobj *out);
/* A GFN stops naming object idx; the last one frees the pool object. */
void share_zobj_put(uint32_t idx);
/* Object idx was decoded into shared frame m: enter m in the stable table
 * and remember it. False (nothing done) when the table is full. */
bool share_zobj_adopt(uint32_t idx, mfn_t m);
/* Compaction moved the pool object of idx. */
bool share_zobj_relocated(uint32_t idx, uint64_t old_handle, uint64_t new_handle);
uint64_t share_zobj_count(void);

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

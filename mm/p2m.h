/* The guest-physical map of one VM: for every GFN of guest RAM exactly one
 * state (docs/design.md, 3.1), the EPT as a cache of its resident part,
 * and the statistics. Every state change goes through p2m.c, which keeps
 * p2m, EPT, frame table and counters consistent; permission reductions
 * are flushed (INVEPT, batched) before a frame is reused or inspected. */
#ifndef MM_P2M_H
#define MM_P2M_H
#include <stdbool.h>
#include <stdint.h>

#include "mm/frame.h"

enum p2m_state {
    P2M_UNPOPULATED = 0, /* never touched, or reclaimed as zero: reads as zero */
    P2M_RESIDENT,        /* a private frame (payload: MFN) */
    P2M_SHARED,          /* a content-shared read-only frame (payload: MFN) */
    P2M_FILLED,          /* every 64-bit word equals payload; no frame */
    P2M_COMPRESSED,      /* in the compressed pool (payload: handle) */
    P2M_SWAPPED,         /* on the swap device (payload: slot) */
    P2M_BALLOONED,       /* given up by the guest's balloon driver */
    P2M_MMIO,            /* a device region: no RAM behind it */
    P2M_STATE_COUNT
};

/* The state machine. Every edge below is one function of the p2m (the
 * label names it); p2m_set_state refuses (panics on) any other, and
 * counts each edge taken (p2m_stats.edges). p2m_release frees whatever an
 * entry holds; destroy releases and forgets every entry, which is not a
 * transition.
 *
 *                    demand-zero fault                compress (reclaim)
 *   UNPOPULATED  ---------------------->  RESIDENT  ---------------------> COMPRESSED
 *       ^   |  <----------------------   | ^  | ^ ^  <--------------------   |  |  ^
 *       |   |   zero page (reclaim,      | |  | | |   decompress fault      |  |  |
 *       |   |   scanner's fill)          | |  | | |                         |  |  |
 *       |   | set_mmio       same-filled | |  | | | swap-in fault    write- |  |  | shared frame
 *       |   v                 (reclaim)  | |  | | +------------+     back   |  |  | reclaimed
 *       |  MMIO (no exits)               v |  | |              |  (pool's   |  |  | whole
 *       |                          FILLED -+  | | swap-out,    |   coldest) v  |  |
 *       |  deflate                 refill     | | clean drop   +------- SWAPPED  |  |
 *       |                                     | v                              |  |
 *   BALLOONED  <--- inflate, from any state   SHARED <--------------------------+  |
 *       but MMIO (touch: -> RESIDENT)         (promote/join by the scanner;       |
 *                                              copy-on-write -> RESIDENT;          |
 *                                              a shared object's fault  <----------+
 *                                              joins it again)
 *
 * Legal: UNPOPULATED -> RESIDENT, BALLOONED, MMIO; RESIDENT -> UNPOPULATED,
 * FILLED, COMPRESSED, SWAPPED, SHARED, BALLOONED; SHARED -> RESIDENT,
 * COMPRESSED, BALLOONED; FILLED -> RESIDENT, BALLOONED; COMPRESSED ->
 * RESIDENT, SHARED, SWAPPED, BALLOONED; SWAPPED -> RESIDENT, BALLOONED;
 * BALLOONED -> UNPOPULATED, RESIDENT; MMIO -> none. */
bool p2m_edge_legal(enum p2m_state from, enum p2m_state to);

struct p2m_entry {
    uint64_t payload;
    uint8_t state; /* enum p2m_state */
    uint8_t flags;
    uint16_t age;  /* clock sweeps since last seen accessed */
    uint32_t aux;  /* COMPRESSED: compressed length in bytes; SWAPPED: XXH32
                      of the stored bytes (swap_check); RESIDENT with
                      P2M_F_SWAPCACHE: the swap copy's first slot; RESIDENT
                      with P2M_F_HASHED: the share scanner's last hash (low
                      half) */
};
_Static_assert(sizeof(struct p2m_entry) == 16, "p2m entry size");

/* p2m_entry.flags */
#define P2M_F_INCOMPRESSIBLE 1u /* resident; LZ4 could not shrink it enough when last
                                   tried; retried once it has been written again */
#define P2M_F_SHARED_OBJ 4u     /* compressed: payload names a shared pool object
                                   (mm/share.c), not this GFN's own */
#define P2M_F_SWAPCACHE 8u      /* resident, mapped read-only, and its swap copy (aux:
                                   first slot) is still valid: reclaim drops it without
                                   a write; the first guest write frees the copy */
#define P2M_F_MARK 16u          /* transient: a batch check saw this GFN (p2m_balloon_*) */
#define P2M_F_HASHED 2u         /* resident; aux holds the low 32 bits of the page's
                                   share hash at the scanner's last visit */
#define P2M_F_SAMPLED 32u       /* resident, in this period's working-set sample
                                   (mm/p2m_sample.c): its EPT leaf keeps frame and A/D
                                   bits but no permission until the next access */

/* The map is sparse (mm/p2m_map.c): a chunk of P2M_CHUNK_ENTRIES entries
 * is one frame, made on the first touch of its region; a directory frame
 * holds P2M_DIR_CHUNKS chunk links; the top level, the only part sized by
 * configured memory, holds one link per P2M_DIR_GFNS GFNs (8 bytes per
 * 512 MiB). */
#define P2M_CHUNK_SHIFT 8
#define P2M_CHUNK_ENTRIES (1u << P2M_CHUNK_SHIFT)
#define P2M_DIR_CHUNKS 512u
#define P2M_DIR_SHIFT (P2M_CHUNK_SHIFT + 9)
#define P2M_DIR_GFNS (1ULL << P2M_DIR_SHIFT)
/* Emptied EPT tables waiting for the next INVEPT before they are freed. */
#define P2M_TRIM_MAX 64
/* Entries the accessed/dirty sweep visits per step between slices. */
#define P2M_SWEEP_STEP 4096

/* A resident page unaccessed for this many sweeps counts as idle memory. */
#define P2M_IDLE_SWEEPS 2

/* EPT-violation access bits, as in the exit qualification (SDM 28.3.3.2). */
#define P2M_ACCESS_R 1u
#define P2M_ACCESS_W 2u
#define P2M_ACCESS_X 4u

/* What an EPT violation turned out to be. */
enum p2m_fault_kind {
    PF_DEMAND_ZERO, /* first touch of an unpopulated page */
    PF_REFILL,      /* a same-filled or ballooned page comes back */
    PF_DECOMPRESS,  /* a compressed page comes back from the pool */
    PF_COW,         /* a write to a shared page: private copy */
    PF_SWAPIN,      /* a swapped page is read back from the swap device */
    PF_SPURIOUS,    /* already mapped: a stale translation */
    PF_OUTSIDE,     /* beyond guest RAM */
    PF_MMIO,        /* a device region nobody emulates */
    PF_KIND_COUNT
};

/* OK: mapped, resume. WAIT: no frame yet, the vCPU waits. FAIL: the access
 * is outside RAM or to unemulated MMIO. CORRUPT: the page's stored copy is
 * damaged; the VM must stop (its data cannot be invented). */
enum p2m_result { P2M_OK, P2M_WAIT, P2M_FAIL, P2M_CORRUPT };

/* Log2 buckets of a fault's cost: up to 2^39 cycles, the last one open. */
#define P2M_COST_BUCKETS 40

struct p2m_stats {
    uint64_t faults[PF_KIND_COUNT];
    uint64_t zero_reclaimed;  /* resident all-zero pages returned to unpopulated */
    uint64_t reclaim_scans;   /* reclaim passes over this VM */
    uint64_t scanned;         /* pages inspected by reclaim */
    uint64_t waits;           /* times a vCPU had to wait for a frame */
    uint64_t peak_resident;
    uint64_t invept;          /* EPT flushes issued */
    uint64_t sweeps;          /* accessed/dirty harvests (whole rounds) */
    uint64_t sweep_visited;   /* map entries the last round visited */
    uint64_t map_dirs, map_chunks, ept_tables; /* metadata frames held now */
    uint64_t waits_meta;      /* faults that waited for a metadata frame */
    uint64_t edges[P2M_STATE_COUNT][P2M_STATE_COUNT]; /* transitions taken, from x to */
    uint64_t ws_pages;        /* working-set estimate: pages accessed per sweep (EWMA) */
    uint64_t last_accessed, last_dirty;
    /* Cost of demand-zero faults inside p2m_fault (cycles; instructions in
     * Bochs): all of it, and the part spent zeroing the new frame. */
    uint64_t dz_cycles, dz_zero_cycles;
    /* Reclaim beyond zero pages. */
    uint64_t filled;          /* pages reclaimed as same-filled with a non-zero value */
    uint64_t compressed;      /* pages stored in the compressed pool */
    uint64_t incompressible;  /* compression attempts that did not shrink enough */
    uint64_t incompressible_now; /* resident pages flagged incompressible */
    uint64_t pool_refused;    /* compressions the pool had no room for */
    uint64_t pool_bytes;      /* compressed bytes this VM has in the pool now */
    uint64_t corrupt;         /* compressed pages found damaged */
    uint64_t cold_skipped;    /* pages skipped by reclaim for being recently accessed */
    uint64_t cmp_cycles;      /* spent compressing (successful or not) */
    uint64_t fault_cycles;    /* all of p2m_fault, every kind */
    uint64_t dc_cycles;       /* decompression faults, frame allocation excluded */
    uint64_t dc_alloc_cycles; /* their frame allocation (reclaim runs included) */
    uint64_t dc_lz4_cycles;   /* the LZ4 part of them */
    uint64_t dc_check_cycles; /* the checksum part (pool_check = yes) */
    /* Sharing. */
    uint64_t share_merged;    /* GFNs of this VM that joined a shared frame */
    uint64_t share_cross;     /* ... a frame another VM already mapped */
    uint64_t share_zero;      /* same-filled pages the scanner returned as a value */
    uint64_t cow_copies;      /* writes to shared pages given a private copy */
    uint64_t cow_last;        /* writes that took over the frame (last reference) */
    /* Swap. */
    uint64_t swap_out;        /* whole pages written to swap */
    uint64_t swap_out_lz4;    /* pool objects written back to swap (compressed) */
    uint64_t swap_dropped;    /* clean pages dropped: their swap copy was still valid */
    uint64_t swap_kept;       /* pages kept resident because a swap write failed */
    uint64_t swap_cache_freed;/* swap copies freed by a write to the page */
    uint64_t swap_read_errors, swap_corrupt;
    uint64_t si_cycles;       /* swap-in faults, frame allocation excluded */
    uint64_t si_io_cycles;    /* the device read part of them */
    uint64_t si_alloc_cycles; /* their frame allocation (reclaim, swap-out included) */
    /* Balloon. */
    uint64_t balloon_inflated; /* GFNs the guest gave up */
    uint64_t balloon_deflated; /* GFNs it took back */
    uint64_t balloon_freed;    /* frames (and pool objects, swap slots) that freed */
    uint64_t balloon_touched;  /* accesses to a ballooned GFN: a fresh zero page */
    uint64_t idle_pages;       /* resident pages not accessed for P2M_IDLE_SWEEPS sweeps
                                  (at the last sweep; without A/D bits: all resident) */
    /* Policy (mm/policy.c): faults of each kind that ran reclaim themselves
     * (direct reclaim: at the VM's limit or below the machine's low mark),
     * and each kind's cost in log2 buckets of cycles (bucket b: cost in
     * [2^(b-1), 2^b), bucket 0: 0). */
    uint64_t direct[PF_KIND_COUNT];
    uint64_t cost_hist[PF_KIND_COUNT][P2M_COST_BUCKETS];
};

/* The balloon's control state for one VM (mm/balloon.c). */
struct p2m_balloon {
    uint64_t target;          /* pages the guest is asked to hold: set + policy, at most
                                 the VM's RAM less its floor (BALLOON_TARGET returns it) */
    uint64_t set;             /* asked by hv.cfg (balloon = SIZE) or the console */
    uint64_t policy;          /* added by the machine-pressure policy */
    uint64_t polls;           /* BALLOON_TARGET calls: a driver is listening */
    uint64_t polls_seen;      /* policy bookkeeping: polls at its last look */
    uint64_t heard_tick;      /* ... the policy tick that last saw polls grow */
    uint64_t waits_seen;      /* ... p2m waits at its last look */
    uint64_t needy_tick;      /* ... the tick that last saw this VM wait for a frame */
    uint64_t policy_inflate;  /* pages the policy asked for, in all */
    uint64_t policy_release;  /* pages it gave back */
    uint64_t rate_tsc, rate_inflated, rate_deflated; /* at the last stats line */
    uint64_t changed_free;    /* machine free frames when the target last changed */
    uint64_t changed_freed;   /* st.balloon_freed then */
    uint64_t reported;        /* the target last reported as reached */
    uint64_t guest_features;  /* HC_GUEST_* the driver said it has (GUEST_FEATURES) */
    uint64_t guest_held;      /* pages its balloon holds, by its own count (HC_GUEST_HELD) */
    uint64_t hold;            /* part of the target that keeps a resizable VM at its size:
                                 GFNs beyond it (mm/policy_admit.c) */
    uint64_t guest_short;     /* pages of the target it says it cannot give now (HC_GUEST_SHORT):
                                 its floor of available memory, or no free memory */
    uint64_t short_target;    /* the target it last said it could not meet */
    uint64_t short_reports;   /* times it said so (a new target or a new shortfall) */
};

/* Live resizing (mm/policy_admit.c). A VM with max_memory has ngfn =
 * max_memory; it is held to size pages by its limit and by a balloon
 * target of ngfn - size (bl.hold). */
struct p2m_resize {
    bool on;                  /* max_memory configured: 'mem' may move its size */
    uint64_t boot;            /* pages it booted with (memory) */
    uint64_t size;            /* pages it may use now: its limit */
    uint64_t want;            /* pages asked for: below size while a shrink waits for
                                 the balloon to hold the difference */
    uint64_t grows, shrinks, refused;
};

/* The sampled working-set estimate (mm/p2m_sample.c, ESX's statistical
 * sampling): each period a few random resident pages lose their EPT
 * permissions (frame kept); the guest's next access to one restores them
 * and counts as a touch. Fractions are per mille of the pages sampled. */
#define P2M_SAMPLE_MAX 256
struct p2m_sample {
    uint64_t gfn[P2M_SAMPLE_MAX]; /* this period's sample */
    unsigned n;               /* entries in gfn[] */
    unsigned live;            /* GFNs flagged P2M_F_SAMPLED now (p2m_check) */
    uint64_t touched;         /* touches this period */
    uint64_t periods;         /* periods ended with a sample */
    uint32_t last_pm;         /* the last period's fraction touched */
    uint32_t fast_pm, slow_pm; /* moving averages of it (gains 1/2 and 1/8) */
    uint64_t touches, marked; /* totals: sampled touches, pages sampled */
    uint64_t dropped;         /* sampled pages that left RESIDENT before the period ended */
    uint64_t rng;             /* xorshift state (seeded per VM) */
};

/* An accessed/dirty sweep in progress (p2m_sweep_step). */
struct p2m_sweep {
    bool active;
    uint64_t cursor, visited, accessed, dirty, idle;
};

struct p2m {
    uint16_t owner;           /* frame-table owner id (VM id + 1) */
    char name[16];
    uint64_t ngfn;            /* GFNs of guest RAM */
    uint64_t *map;            /* top of the sparse map (p2m_map.c); NULL before init */
    uint64_t map_top;         /* its links */
    mfn_t map_first;          /* frames backing it */
    uint64_t map_frames;
    /* Frames charged to this VM besides its resident pages: the map (top,
     * directories, chunks) and its EPT tables (root included). */
    uint64_t meta;
    mfn_t trim[P2M_TRIM_MAX]; /* unlinked EPT tables, freed after the next INVEPT */
    unsigned ntrim;
    struct p2m_sweep sweep;
    mfn_t ept_root;
    uint64_t eptp;
    bool ad;                  /* EPT accessed/dirty flags enabled */
    bool compress;            /* reclaim may compress this VM's cold pages */
    bool share;               /* the share scanner may merge this VM's pages */
    uint64_t salt;            /* sharing happens only between equal salts */
    uint64_t shared_obj;      /* compressed GFNs naming a shared object */
    uint64_t shared_charge;   /* its part of the shared frames it maps, in frames x
                                 SHARE_CHARGE_ONE (mm/share.h); counts against limit */
    uint64_t swap_cached;     /* resident GFNs with a valid swap copy (P2M_F_SWAPCACHE) */
    struct p2m_balloon bl;    /* balloon targets and the policy's view (mm/balloon.c) */
    struct p2m_resize rs;     /* live resizing (mm/policy_admit.c) */
    uint64_t busy_gfn;        /* whose fault is being handled (else UINT64_MAX): reclaim
                                 run for its frame must leave that page alone */
    uint64_t reserve, limit;  /* frames; limit = ngfn when unlimited */
    bool limited;             /* a limit below ngfn was configured: it holds on the charge */
    uint64_t count[P2M_STATE_COUNT];
    bool flush_pending;
    uint64_t hand;            /* clock hand for reclaim and sweeps */
    bool direct_reclaim;      /* the fault being handled ran reclaim itself (mm.c sets it) */
    uint8_t tcause;           /* the mechanism running on this p2m, for the trace
                                 (enum trace_cause, mm/trace.h) */
    struct p2m_stats st;
    /* Allocation policy (mm/policy_alloc.c) and the sampled working set. */
    uint64_t shares;          /* proportional-share weight (0 until configured: normal) */
    uint64_t alloc_target;    /* frames: the policy's last target for this VM */
    struct p2m_sample smp;
    /* Self-tuning orders from the policy (mm/policy_alloc.c). */
    bool compress_paused;     /* compressed by direct reclaim only (ratio below 1.5:1) */
    uint8_t share_every;      /* the share scanner visits this VM every Nth round (0: 1) */
    uint64_t cmp_bytes;       /* compressed bytes stored, in all (successful attempts) */
};

/* What the VM is charged for: its private frames, its part of each shared
 * frame it maps (1/refcount), and its metadata (map and EPT tables). Every
 * charged frame passes the machine's watermark check. A limited VM's guest
 * memory (private + shared part) stays within its limit and its whole
 * charge within limit + overhead allowance (P2M_OVERHEAD_ALLOWANCE): a
 * guest that touches sparsely to grow metadata instead of pages runs into
 * the allowance, then waits like any guest at its limit. */
/* Its guest memory: private frames plus its part of every shared frame it
 * maps (shared_charge, in 2^32ths of a frame: mm/share.h), rounded up. */
static inline uint64_t p2m_guest_charge(const struct p2m *p)
{
    return p->count[P2M_RESIDENT] + ((p->shared_charge + (1ULL << 32) - 1) >> 32);
}
static inline uint64_t p2m_charge(const struct p2m *p)
{
    return p2m_guest_charge(p) + p->meta;
}
/* Metadata a limited VM may hold beyond its limit: ordinary guests need
 * about 1/256 (map chunks) + 1/512 (EPT leaf tables) of what they touch,
 * plus a few frames; the allowance is twice that and a constant. */
#define P2M_OVERHEAD_ALLOWANCE(limit) ((limit) / 64 + 16)
/* Would one more charged frame take p past its limit? */
static inline bool p2m_at_limit(const struct p2m *p)
{
    return p->limited && (p2m_guest_charge(p) >= p->limit ||
                          p2m_charge(p) >= p->limit + P2M_OVERHEAD_ALLOWANCE(p->limit));
}
/* gfn's entry, read-only: an unpopulated one for GFNs never touched or
 * outside RAM. Valid until the next p2m call that may trim the map. */
const struct p2m_entry *p2m_peek(const struct p2m *p, uint64_t gfn);
/* gfn's entry for the share scanner to note its hash in (P2M_F_HASHED,
 * aux), or NULL when gfn was never touched. The entries of one chunk
 * (P2M_CHUNK_ENTRIES GFNs, aligned) are consecutive: e + 1 is gfn + 1's
 * while gfn + 1 is in the same chunk, valid as p2m_peek's. */
struct p2m_entry *p2m_entry_rw(struct p2m *p, uint64_t gfn);
/* The first GFN >= gfn that may be in a state other than unpopulated
 * (its region of the map exists), or ngfn: walkers skip the rest. */
uint64_t p2m_next_touched(const struct p2m *p, uint64_t gfn);
/* Marks an untouched GFN as a device region (P2M_MMIO): faults on it are
 * not RAM. -1 if it is in another state or no frame for its chunk. */
int p2m_set_mmio(struct p2m *p, uint64_t gfn);

/* Sets up an empty map (everything unpopulated, EPT empty). Returns 0 or
 * -1 when there is no memory for the map itself. */
int p2m_init(struct p2m *p, uint16_t owner, const char *name, uint64_t ngfn,
             uint64_t reserve, uint64_t limit, bool ad);
/* Returns every frame to the allocator (the VM has stopped). */
void p2m_destroy(struct p2m *p);

/* An EPT violation at gpa with the given access bits. */
enum p2m_result p2m_fault(struct p2m *p, uint64_t gpa, unsigned access);
/* The hypervisor's own access to a guest page (loader, devices): populates
 * it when populate is set. NULL outside RAM or when out of memory. */
void *p2m_gfn_ptr(struct p2m *p, uint64_t gfn, bool populate);
/* Issues the pending INVEPT, if any. */
void p2m_flush(struct p2m *p);

/* Reclaim from the clock hand, inspecting up to max_scan resident pages
 * until want frames are freed. Each page goes down the chain: same-filled
 * (every word equal; zero is the common case) becomes UNPOPULATED or
 * FILLED whatever its age; otherwise only a cold page (EPT accessed bit
 * clear since the hand last passed; a set bit is cleared, the second
 * chance) is taken: a clean one whose swap copy is still valid becomes
 * SWAPPED without a write; else, when compression is on for the VM, it is
 * compressed into the pool if LZ4 brings it to at most the pool's
 * threshold (flagged incompressible if not); what is left goes to swap
 * when a device can take it. Compressed pages the hand meets again are
 * written back to swap while the pool is pressed. Returns the number of
 * frames taken from the VM. */
uint64_t p2m_reclaim(struct p2m *p, uint64_t want, uint64_t max_scan);
/* The same chain restricted to the techniques the policy allows now
 * (P2M_RT_*): same-filled pages become values; compression into the pool
 * (shared frames' whole-frame compression too); swap (writes, write-back
 * of pool objects, and dropping clean pages whose swap copy is valid). */
#define P2M_RT_FILLED (1u << 0)
#define P2M_RT_COMPRESS (1u << 1)
#define P2M_RT_SWAP (1u << 2)
#define P2M_RT_ALL (P2M_RT_FILLED | P2M_RT_COMPRESS | P2M_RT_SWAP)
uint64_t p2m_reclaim_with(struct p2m *p, uint64_t want, uint64_t max_scan, unsigned techs);

/* Pool parameters shared by every VM: largest compressed size stored
 * (bytes) and whether entries carry an XXH32 of the page, verified on
 * decompression (testing mode). */
void p2m_set_pool_params(unsigned max_len, bool checksum);
/* Compaction moved gfn's pool object: update the handle. False (nothing
 * changed) unless gfn is compressed as old_handle. */
bool p2m_pool_relocated(struct p2m *p, uint64_t gfn, uint64_t old_handle, uint64_t new_handle);
/* Sharing transitions, for the scanner (mm/share.c). */
/* Write-protects resident gfn in EPT (read/execute only) and flushes, so
 * that its content cannot change while it is compared. False unless gfn
 * is resident. */
bool p2m_share_protect(struct p2m *p, uint64_t gfn);
/* Gives a protected page its write permission back (no merge). */
void p2m_share_unprotect(struct p2m *p, uint64_t gfn);
/* A protected page becomes SHARED on its own frame (refcount 1). Returns
 * the frame. */
mfn_t p2m_share_promote(struct p2m *p, uint64_t gfn);
/* A protected page drops its private frame and maps shared frame m
 * read-only (refcount + 1). */
void p2m_share_join(struct p2m *p, uint64_t gfn, mfn_t m);
/* A resident same-filled page is returned as a value (unmapped, flushed,
 * re-checked). True if it was. */
bool p2m_share_fill(struct p2m *p, uint64_t gfn);

/* For share_reclaim: is gfn's (shared) leaf marked accessed? The bit is
 * cleared (flushed with the next p2m_flush). */
bool p2m_share_test_clear_accessed(struct p2m *p, uint64_t gfn);
/* A shared GFN names shared pool object idx instead of its frame
 * (unmapped; the caller flushes before the frame goes, and has dropped
 * the frame's reference). */
void p2m_share_to_object(struct p2m *p, uint64_t gfn, uint32_t idx);
unsigned p2m_pool_max_len(void);

/* Balloon transitions, for mm/balloon.c. Inflate: each GFN's content is
 * given up (frame, pool object, shared reference or swap slot freed) and
 * it becomes BALLOONED; a later access gets a fresh zero page. Deflate:
 * BALLOONED -> UNPOPULATED. An entry already in the target state is left
 * alone. The whole batch is checked first (in RAM, not MMIO, no GFN
 * twice); on a bad entry nothing changes and its index is returned in
 * *bad. Returns how many entries were already in the target state (>= 0)
 * or -1, or (inflate) -2 when no frame could be had for the map chunk of
 * a GFN never touched (*bad: its index; nothing changed: try again later). */
int p2m_balloon_inflate(struct p2m *p, const uint64_t *gfns, unsigned n, unsigned *bad);
int p2m_balloon_deflate(struct p2m *p, const uint64_t *gfns, unsigned n, unsigned *bad);

/* Copies gfn's current content into buf (4 KiB) whatever its state,
 * without changing it. Returns 0, or -1 outside RAM, for MMIO, or when a
 * compressed copy is damaged. */
int p2m_read_page(struct p2m *p, uint64_t gfn, void *buf);
/* One step of the accessed/dirty sweep: visits up to budget map entries
 * (a region never touched costs one) from where the last step stopped,
 * harvesting and clearing EPT A/D flags (without A/D support it only
 * trims), and frees map chunks and EPT tables that emptied. True when the
 * step ended a whole round; the working-set estimate is updated then. */
bool p2m_sweep_step(struct p2m *p, uint64_t budget);
/* A whole round at once (tests, the simulator). */
void p2m_sweep(struct p2m *p);

/* Working-set sampling (mm/p2m_sample.c). Ends the period under way (its
 * untouched pages get their permissions back, the fraction touched feeds
 * the moving averages) and starts the next with up to n random resident
 * private pages (at most P2M_SAMPLE_MAX, at most a quarter of them;
 * swap-cached and shared pages are not sampled). Bounded work: at most
 * 64 map entries looked at per page wanted. */
void p2m_sample_period(struct p2m *p, unsigned n);
/* Ends the period under way and leaves every page unsampled (the VM stops,
 * sampling is switched off). */
void p2m_sample_stop(struct p2m *p);
/* The sampled active fraction in per mille: the larger of the fast and
 * slow averages (ESX), 1000 before the first period has ended. */
uint32_t p2m_sample_active_pm(const struct p2m *p);
/* Active pages by the sample: the fraction times the resident pages. */
uint64_t p2m_sample_active_pages(const struct p2m *p);

/* Checks this VM's invariants: counts, frame ownership and back-pointers,
 * EPT leaves consistent with states. Returns the number of violations
 * (each reported through the log). Costs a walk of every GFN. */
uint64_t p2m_check(struct p2m *p);

const char *p2m_state_name(enum p2m_state s);
const char *p2m_fault_name(enum p2m_fault_kind k);
#endif

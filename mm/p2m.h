/* The guest-physical map of one VM: for every GFN of guest RAM exactly one
 * state (ARCHITECTURE.md), the EPT as a cache of its resident part, and the
 * statistics. Every state change goes through p2m.c, which keeps p2m, EPT,
 * frame table and counters consistent; permission reductions are flushed
 * (INVEPT, batched) before a frame is reused or inspected. */
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

struct p2m_entry {
    uint64_t payload;
    uint8_t state; /* enum p2m_state */
    uint8_t flags;
    uint16_t age;  /* clock sweeps since last seen accessed */
    uint32_t reserved;
};
_Static_assert(sizeof(struct p2m_entry) == 16, "p2m entry size");

/* EPT-violation access bits, as in the exit qualification (SDM 28.3.3.2). */
#define P2M_ACCESS_R 1u
#define P2M_ACCESS_W 2u
#define P2M_ACCESS_X 4u

/* What an EPT violation turned out to be. */
enum p2m_fault_kind {
    PF_DEMAND_ZERO, /* first touch of an unpopulated page */
    PF_REFILL,      /* a same-filled or ballooned page comes back */
    PF_SPURIOUS,    /* already mapped: a stale translation */
    PF_OUTSIDE,     /* beyond guest RAM */
    PF_MMIO,        /* a device region nobody emulates */
    PF_KIND_COUNT
};

enum p2m_result { P2M_OK, P2M_WAIT, P2M_FAIL };

struct p2m_stats {
    uint64_t faults[PF_KIND_COUNT];
    uint64_t zero_reclaimed;  /* resident all-zero pages returned to unpopulated */
    uint64_t reclaim_scans;   /* reclaim passes over this VM */
    uint64_t scanned;         /* pages inspected by reclaim */
    uint64_t waits;           /* times a vCPU had to wait for a frame */
    uint64_t peak_resident;
    uint64_t invept;          /* EPT flushes issued */
    uint64_t sweeps;          /* accessed/dirty harvests */
    uint64_t ws_pages;        /* working-set estimate: pages accessed per sweep (EWMA) */
    uint64_t last_accessed, last_dirty;
    /* Cost of demand-zero faults inside p2m_fault (cycles; instructions in
     * Bochs): all of it, and the part spent zeroing the new frame. */
    uint64_t dz_cycles, dz_zero_cycles;
};

struct p2m {
    uint16_t owner;           /* frame-table owner id (VM id + 1) */
    char name[16];
    uint64_t ngfn;            /* GFNs of guest RAM */
    struct p2m_entry *map;
    mfn_t map_first;          /* frames backing map */
    uint64_t map_frames;
    mfn_t ept_root;
    uint64_t eptp;
    bool ad;                  /* EPT accessed/dirty flags enabled */
    uint64_t reserve, limit;  /* frames; limit = ngfn when unlimited */
    uint64_t count[P2M_STATE_COUNT];
    bool flush_pending;
    uint64_t hand;            /* clock hand for reclaim and sweeps */
    struct p2m_stats st;
};

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

/* Zero-page reclaim: inspects up to max_scan resident pages from the clock
 * hand, returns all-zero ones to unpopulated until want frames are freed.
 * Returns the number freed. */
uint64_t p2m_reclaim_zero(struct p2m *p, uint64_t want, uint64_t max_scan);
/* Harvests and clears EPT accessed/dirty flags, updating the working-set
 * estimate (no-op without A/D support). */
void p2m_sweep(struct p2m *p);

/* Checks this VM's invariants: counts, frame ownership and back-pointers,
 * EPT leaves consistent with states. Returns the number of violations
 * (each reported through the log). Costs a walk of every GFN. */
uint64_t p2m_check(struct p2m *p);

const char *p2m_state_name(enum p2m_state s);
const char *p2m_fault_name(enum p2m_fault_kind k);
#endif

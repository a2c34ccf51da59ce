/* Machine frames: one table entry per 4 KiB frame of RAM, and the allocator
 * built on it. Every frame is in exactly one state; the owner and the
 * back-pointer (VM and GFN) say who holds it, so that reclaim can go from a
 * frame to the guest page it backs. */
#ifndef MM_FRAME_H
#define MM_FRAME_H
#include <stdbool.h>
#include <stdint.h>

#define PAGE_SHIFT 12
#define PAGE_SIZE 4096ULL

typedef uint64_t mfn_t; /* machine frame number: physical address >> 12 */
#define MFN_INVALID ((mfn_t)-1)
#define FRAME_NONE 0xffffffffu /* free-list terminator */
#define FRAME_MAX_FRAMES 0xfffffff0ULL

enum frame_state {
    FS_ABSENT = 0,  /* not usable RAM: hole, firmware, MMIO, ACPI */
    FS_BOOT,        /* firmware boot-services memory not yet reclaimed */
    FS_FREE,        /* on the free list */
    FS_HV,          /* hypervisor: image, loaded files, own data */
    FS_PAGETABLE,   /* host page tables or EPT structures */
    FS_VM,          /* private frame of one VM's GFN */
    FS_SHARED,      /* content-shared frame, refcount = mapping GFNs */
    FS_POOL,        /* compressed pool */
    FS_STATE_COUNT
};

struct frame {
    uint8_t state;     /* enum frame_state */
    uint8_t flags;
    uint16_t owner;    /* VM id for FS_VM, 0 otherwise */
    uint32_t refcount; /* mappings: 1 for private frames, n for shared */
    uint32_t next;     /* free list links (frame indices) */
    uint32_t prev;
    uint64_t gfn;      /* back-pointer for FS_VM */
};
_Static_assert(sizeof(struct frame) == 24, "frame table entry size");

struct frame_stats {
    uint64_t frames;                  /* entries in the table */
    uint64_t count[FS_STATE_COUNT];   /* frames per state */
    uint64_t allocs, frees, failed;
    uint64_t zero_cycles;             /* spent zeroing frames on allocation */
};

/* Bytes of frame table needed for nframes frames. */
uint64_t frame_table_bytes(uint64_t nframes);
/* Takes a zero-filled table of nframes entries; every frame starts ABSENT. */
int frame_init(struct frame *table, uint64_t nframes);
/* Marks a range with a state that is not FREE (ABSENT -> BOOT/HV/...). */
void frame_mark(mfn_t first, uint64_t count, enum frame_state s);
/* Gives a range to the allocator (from ABSENT or BOOT). */
void frame_add_free(mfn_t first, uint64_t count);

/* One zeroed frame for use s (owner: VM id or 0), or MFN_INVALID. */
mfn_t frame_alloc(enum frame_state s, uint16_t owner);
/* count contiguous zeroed frames, the first aligned to align frames (a power
 * of two), or MFN_INVALID. */
mfn_t frame_alloc_contig(uint64_t count, uint64_t align, enum frame_state s,
                         uint16_t owner);
void frame_free(mfn_t mfn);
void frame_free_contig(mfn_t first, uint64_t count);

struct frame *frame_get(mfn_t mfn);
/* Moves an allocated guest frame between FS_VM (one GFN's private frame)
 * and FS_SHARED (content-shared), or from FS_VM to FS_HV for good (a frame
 * a failed device may still write), keeping the per-state counts. */
void frame_retype(mfn_t mfn, enum frame_state s, uint16_t owner);
uint64_t frame_free_count(void);
uint64_t frame_zero_cycles(void);
void frame_get_stats(struct frame_stats *st);
const char *frame_state_name(enum frame_state s);

/* Allocate-until-empty, free, reuse, alignment and contiguity checks run on
 * the live allocator; returns 0 when all pass. Leaves the allocator as it
 * found it. */
int frame_selftest(void);
#endif

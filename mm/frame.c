/* The frame allocator: a doubly linked free list threaded through the frame
 * table (O(1) alloc and free of single frames, O(1) unlink when a contiguous
 * range is carved out), and a linear scan for contiguous aligned ranges,
 * which only set-up paths ask for. Frames are zeroed on allocation, so no
 * frame ever reaches a user with someone else's data. Single CPU for now:
 * callers hold no lock. */
#include "mm/frame.h"
#include "lib/log.h"
#include "lib/string.h"
#include "mm/mm_backend.h"

static struct frame *ft;
static uint64_t nframes;
static uint32_t free_head = FRAME_NONE;
static struct frame_stats stats;
static uint64_t contig_cursor;

static const char *const state_names[FS_STATE_COUNT] = {
    [FS_ABSENT] = "absent", [FS_BOOT] = "boot",     [FS_FREE] = "free",
    [FS_HV] = "hv",         [FS_PAGETABLE] = "pt",  [FS_VM] = "vm",
    [FS_SHARED] = "shared", [FS_POOL] = "pool",
};

const char *frame_state_name(enum frame_state s)
{
    return (unsigned)s < FS_STATE_COUNT ? state_names[s] : "?";
}

uint64_t frame_table_bytes(uint64_t n)
{
    return n * sizeof(struct frame);
}

int frame_init(struct frame *table, uint64_t n)
{
    if (n == 0 || n > FRAME_MAX_FRAMES)
        return -1;
    ft = table;
    nframes = n;
    free_head = FRAME_NONE;
    contig_cursor = 0;
    memset(&stats, 0, sizeof(stats));
    stats.frames = n;
    for (uint64_t i = 0; i < n; i++) {
        ft[i] = (struct frame){ .state = FS_ABSENT, .next = FRAME_NONE,
                                .prev = FRAME_NONE };
    }
    stats.count[FS_ABSENT] = n;
    return 0;
}

struct frame *frame_get(mfn_t mfn)
{
    MM_ASSERT(mfn < nframes);
    return &ft[mfn];
}

static void set_state(struct frame *f, enum frame_state s)
{
    stats.count[f->state]--;
    stats.count[s]++;
    f->state = (uint8_t)s;
}

void frame_retype(mfn_t mfn, enum frame_state s, uint16_t owner)
{
    MM_ASSERT(mfn < nframes);
    struct frame *f = &ft[mfn];
    /* Only between the states of allocated guest memory, or a private
     * frame given up to the hypervisor for good (swap_quarantine). */
    MM_ASSERT(((f->state == FS_VM || f->state == FS_SHARED) && (s == FS_VM || s == FS_SHARED)) ||
              (f->state == FS_VM && s == FS_HV));
    set_state(f, s);
    f->owner = owner;
}

static void list_push(uint32_t i)
{
    ft[i].prev = FRAME_NONE;
    ft[i].next = free_head;
    if (free_head != FRAME_NONE)
        ft[free_head].prev = i;
    free_head = i;
}

static void list_unlink(uint32_t i)
{
    struct frame *f = &ft[i];
    if (f->prev != FRAME_NONE)
        ft[f->prev].next = f->next;
    else
        free_head = f->next;
    if (f->next != FRAME_NONE)
        ft[f->next].prev = f->prev;
    f->next = f->prev = FRAME_NONE;
}

void frame_mark(mfn_t first, uint64_t count, enum frame_state s)
{
    MM_ASSERT(s != FS_FREE && first + count <= nframes && first + count >= first);
    for (uint64_t i = first; i < first + count; i++) {
        MM_ASSERT(ft[i].state != FS_FREE);
        set_state(&ft[i], s);
    }
}

void frame_add_free(mfn_t first, uint64_t count)
{
    MM_ASSERT(first + count <= nframes && first + count >= first);
    /* Push from the top down so the list hands out low frames first: logs
     * and dumps are easier to read and runs stay contiguous. */
    for (uint64_t i = first + count; i-- > first;) {
        MM_ASSERT(ft[i].state == FS_ABSENT || ft[i].state == FS_BOOT);
        set_state(&ft[i], FS_FREE);
        ft[i].owner = 0;
        ft[i].refcount = 0;
        ft[i].gfn = 0;
        list_push((uint32_t)i);
    }
}

static void take(uint32_t i, enum frame_state s, uint16_t owner)
{
    struct frame *f = &ft[i];
    set_state(f, s);
    f->flags = 0;
    f->owner = owner;
    f->refcount = 1;
    f->gfn = 0;
    uint64_t t0 = mm_now();
    memset(mm_phys_to_virt((uint64_t)i << PAGE_SHIFT), 0, PAGE_SIZE);
    stats.zero_cycles += mm_now() - t0;
    stats.allocs++;
}

mfn_t frame_alloc(enum frame_state s, uint16_t owner)
{
    MM_ASSERT(s != FS_FREE && s != FS_ABSENT && s != FS_BOOT);
    if (free_head == FRAME_NONE) {
        stats.failed++;
        return MFN_INVALID;
    }
    uint32_t i = free_head;
    list_unlink(i);
    take(i, s, owner);
    return i;
}

mfn_t frame_alloc_contig(uint64_t count, uint64_t align, enum frame_state s,
                         uint16_t owner)
{
    MM_ASSERT(s != FS_FREE && s != FS_ABSENT && s != FS_BOOT);
    if (count == 0 || align == 0 || (align & (align - 1)) ||
        count > stats.count[FS_FREE]) {
        stats.failed++;
        return MFN_INVALID;
    }
    /* Two passes: from the cursor to the end, then from 0. */
    for (int pass = 0; pass < 2; pass++) {
        uint64_t start = pass ? 0 : contig_cursor;
        uint64_t limit = pass ? contig_cursor + count : nframes;
        if (limit > nframes)
            limit = nframes;
        uint64_t base = (start + align - 1) & ~(align - 1);
        while (base + count <= limit) {
            uint64_t run = 0;
            while (run < count && ft[base + run].state == FS_FREE)
                run++;
            if (run == count) {
                for (uint64_t i = base; i < base + count; i++) {
                    list_unlink((uint32_t)i);
                    take((uint32_t)i, s, owner);
                }
                contig_cursor = base + count;
                return base;
            }
            /* Skip past the frame that broke the run. */
            base = (base + run + 1 + align - 1) & ~(align - 1);
        }
    }
    stats.failed++;
    return MFN_INVALID;
}

void frame_free(mfn_t mfn)
{
    MM_ASSERT(mfn < nframes);
    struct frame *f = &ft[mfn];
    if (f->state == FS_FREE || f->state == FS_ABSENT || f->state == FS_BOOT)
        mm_panic(__FILE__, __LINE__, "frame_free of a frame that is not allocated");
    set_state(f, FS_FREE);
    f->flags = 0;
    f->owner = 0;
    f->refcount = 0;
    f->gfn = 0;
    list_push((uint32_t)mfn);
    stats.frees++;
}

void frame_free_contig(mfn_t first, uint64_t count)
{
    for (uint64_t i = first + count; i-- > first;)
        frame_free(i);
}

uint64_t frame_zero_cycles(void)
{
    return stats.zero_cycles;
}

uint64_t frame_free_count(void)
{
    return stats.count[FS_FREE];
}

void frame_get_stats(struct frame_stats *st)
{
    *st = stats;
}

/* ---- self-test on the live allocator ---------------------------------- */

#define ST_FAIL(...)                                                        \
    do {                                                                    \
        pr_err(LS_MM, "frame self-test: " __VA_ARGS__);                     \
        goto out;                                                           \
    } while (0)

int frame_selftest(void)
{
    uint64_t free0 = frame_free_count();
    uint64_t taken = 0;
    mfn_t chain = MFN_INVALID; /* allocated frames linked through their gfn */
    int rc = -1;

    if (free0 < 64)
        ST_FAIL("only %llu free frames", (unsigned long long)free0);

    /* Allocate until empty; each frame must arrive zeroed and unique (the
     * chain through the frame table's gfn field detects double handouts:
     * a frame handed out twice would be seen in a non-FREE state). */
    for (;;) {
        mfn_t m = frame_alloc(FS_HV, 0);
        if (m == MFN_INVALID)
            break;
        uint64_t *p = mm_phys_to_virt(m << PAGE_SHIFT);
        if (p[0] != 0 || p[511] != 0)
            ST_FAIL("frame %#llx not zeroed", (unsigned long long)m);
        p[0] = 0xdeadbeefcafef00dULL; /* dirty it: reuse must zero again */
        frame_get(m)->gfn = chain;
        chain = m;
        taken++;
    }
    if (taken != free0 || frame_free_count() != 0)
        ST_FAIL("allocated %llu of %llu free frames",
                (unsigned long long)taken, (unsigned long long)free0);
    if (frame_alloc(FS_HV, 0) != MFN_INVALID)
        ST_FAIL("allocation from an empty allocator succeeded");

    /* Free everything, then take one back: it must be zeroed. */
    while (chain != MFN_INVALID) {
        mfn_t next = frame_get(chain)->gfn;
        frame_free(chain);
        chain = next;
    }
    if (frame_free_count() != free0)
        ST_FAIL("free count %llu after freeing all, expected %llu",
                (unsigned long long)frame_free_count(), (unsigned long long)free0);
    mfn_t m = frame_alloc(FS_HV, 0);
    uint64_t *p = mm_phys_to_virt(m << PAGE_SHIFT);
    bool dirty = p[0] != 0;
    frame_free(m);
    if (dirty)
        ST_FAIL("reused frame %#llx kept old data", (unsigned long long)m);

    /* Contiguous, aligned: 16 frames on a 16-frame (64 KiB) boundary. */
    mfn_t c = frame_alloc_contig(16, 16, FS_HV, 0);
    if (c == MFN_INVALID)
        ST_FAIL("no 16-frame aligned run");
    if (c & 15)
        ST_FAIL("contiguous run at %#llx is not 64K aligned", (unsigned long long)c);
    for (uint64_t i = 0; i < 16; i++) {
        if (frame_get(c + i)->state != FS_HV) {
            /* Give back the frames of the run that are ours, then fail. */
            for (uint64_t j = 0; j < 16; j++)
                if (frame_get(c + j)->state == FS_HV)
                    frame_free(c + j);
            ST_FAIL("frame %#llx of the run not allocated", (unsigned long long)(c + i));
        }
    }
    frame_free_contig(c, 16);
    rc = 0;
    pr_info(LS_MM, "frame self-test: PASS (%llu frames allocated until empty, "
                   "freed, reused zeroed; 16-frame aligned run at %#llx)",
            (unsigned long long)taken, (unsigned long long)c);
out:
    while (chain != MFN_INVALID) {
        mfn_t next = frame_get(chain)->gfn;
        frame_free(chain);
        chain = next;
    }
    return rc;
}

/* The p2m transitions. The rule: EPT maps a GFN only when its p2m state is
 * RESIDENT (or SHARED, read-only), and always to the frame the p2m names;
 * a frame in FS_VM state belongs to exactly one (owner, gfn). */
#include "mm/p2m.h"
#include "lib/log.h"
#include "lib/string.h"
#include "mm/ept.h"
#include "mm/mm.h"
#include "mm/mm_backend.h"

static const char *const state_names[P2M_STATE_COUNT] = {
    [P2M_UNPOPULATED] = "unpopulated", [P2M_RESIDENT] = "resident",
    [P2M_SHARED] = "shared",           [P2M_FILLED] = "filled",
    [P2M_COMPRESSED] = "compressed",   [P2M_SWAPPED] = "swapped",
    [P2M_BALLOONED] = "ballooned",     [P2M_MMIO] = "mmio",
};
static const char *const fault_names[PF_KIND_COUNT] = {
    [PF_DEMAND_ZERO] = "demand-zero", [PF_REFILL] = "refill",
    [PF_SPURIOUS] = "spurious",       [PF_OUTSIDE] = "outside-ram",
    [PF_MMIO] = "mmio",
};

const char *p2m_state_name(enum p2m_state s)
{
    return (unsigned)s < P2M_STATE_COUNT ? state_names[s] : "?";
}

const char *p2m_fault_name(enum p2m_fault_kind k)
{
    return (unsigned)k < PF_KIND_COUNT ? fault_names[k] : "?";
}

const struct pt_fmt pt_fmt_ept = {
    .name = "EPT",
    .present = EPT_RWX,
    .large = EPT_LARGE,
    .table_flags = EPT_RWX,
    .max_leaf_level = PT_LEVEL_2M,
};

int p2m_init(struct p2m *p, uint16_t owner, const char *name, uint64_t ngfn,
             uint64_t reserve, uint64_t limit, bool ad)
{
    memset(p, 0, sizeof(*p));
    p->owner = owner;
    for (int i = 0; i < 15 && name[i]; i++)
        p->name[i] = name[i];
    p->ngfn = ngfn;
    p->reserve = reserve < ngfn ? reserve : ngfn;
    p->limit = limit && limit < ngfn ? limit : ngfn;
    p->ad = ad;
    p->map_frames = (ngfn * sizeof(struct p2m_entry) + PAGE_SIZE - 1) >> PAGE_SHIFT;
    p->map_first = frame_alloc_contig(p->map_frames, 1, FS_HV, 0);
    if (p->map_first == MFN_INVALID)
        return -1;
    p->map = mm_phys_to_virt(p->map_first << PAGE_SHIFT); /* zeroed: all unpopulated */
    p->ept_root = frame_alloc(FS_PAGETABLE, 0);
    if (p->ept_root == MFN_INVALID) {
        frame_free_contig(p->map_first, p->map_frames);
        return -1;
    }
    p->eptp = (p->ept_root << PAGE_SHIFT) | EPTP_WB | EPTP_WALK4 | (ad ? EPTP_AD : 0);
    p->count[P2M_UNPOPULATED] = ngfn;
    return 0;
}

void p2m_flush(struct p2m *p)
{
    if (!p->flush_pending)
        return;
    mm_invept(p->eptp);
    p->flush_pending = false;
    p->st.invept++;
}

static void set_state(struct p2m *p, struct p2m_entry *e, enum p2m_state s, uint64_t payload)
{
    p->count[e->state]--;
    p->count[s]++;
    e->state = (uint8_t)s;
    e->payload = payload;
}

/* Frees every EPT table below t, a table of the given level (4 = PML4).
 * Level-1 tables hold leaves only: the frames they map belong to the p2m
 * states and are freed through them. */
static void free_subtables(uint64_t *t, int level)
{
    if (level == 1)
        return;
    for (int i = 0; i < 512; i++) {
        if (!(t[i] & EPT_RWX) || (t[i] & EPT_LARGE))
            continue;
        uint64_t child = t[i] & PT_ADDR_MASK;
        free_subtables(mm_phys_to_virt(child), level - 1);
        frame_free(child >> PAGE_SHIFT);
    }
}

void p2m_destroy(struct p2m *p)
{
    if (!p->map)
        return;
    for (uint64_t gfn = 0; gfn < p->ngfn; gfn++) {
        struct p2m_entry *e = &p->map[gfn];
        if (e->state == P2M_RESIDENT) {
            frame_free(e->payload);
            set_state(p, e, P2M_UNPOPULATED, 0);
        }
    }
    free_subtables(mm_phys_to_virt(p->ept_root << PAGE_SHIFT), 4);
    frame_free(p->ept_root);
    frame_free_contig(p->map_first, p->map_frames);
    p->map = NULL;
    p->flush_pending = true;
    p2m_flush(p);
}

static int ept_set(struct p2m *p, uint64_t gfn, mfn_t mfn, uint64_t perms)
{
    uint64_t *e = pt_entry(&pt_fmt_ept, p->ept_root, gfn << PAGE_SHIFT, PT_LEVEL_4K, true);
    if (!e)
        return -1;
    if (*e & EPT_RWX)
        p->flush_pending = true; /* replacing a translation */
    *e = (mfn << PAGE_SHIFT) | perms | EPT_MT_WB;
    return 0;
}

static void ept_clear(struct p2m *p, uint64_t gfn)
{
    uint64_t *e = pt_entry(&pt_fmt_ept, p->ept_root, gfn << PAGE_SHIFT, PT_LEVEL_4K, false);
    if (e && (*e & EPT_RWX)) {
        *e = 0;
        p->flush_pending = true;
    }
}

static uint64_t *ept_leaf(struct p2m *p, uint64_t gfn)
{
    return pt_entry(&pt_fmt_ept, p->ept_root, gfn << PAGE_SHIFT, PT_LEVEL_4K, false);
}

/* Gives gfn a frame holding its current content and maps it. */
static enum p2m_result make_resident(struct p2m *p, uint64_t gfn)
{
    struct p2m_entry *e = &p->map[gfn];
    mfn_t m = mm_frame_for(p);
    if (m == MFN_INVALID)
        return P2M_WAIT;
    if (e->state == P2M_FILLED && e->payload) {
        uint64_t *w = mm_phys_to_virt(m << PAGE_SHIFT);
        for (int i = 0; i < 512; i++)
            w[i] = e->payload;
    }
    if (ept_set(p, gfn, m, EPT_RWX)) {
        frame_free(m);
        return P2M_WAIT; /* no frame for an EPT table: wait like any other */
    }
    struct frame *f = frame_get(m);
    f->gfn = gfn;
    set_state(p, e, P2M_RESIDENT, m);
    e->age = 0;
    if (p->count[P2M_RESIDENT] > p->st.peak_resident)
        p->st.peak_resident = p->count[P2M_RESIDENT];
    return P2M_OK;
}

enum p2m_result p2m_fault(struct p2m *p, uint64_t gpa, unsigned access)
{
    uint64_t gfn = gpa >> PAGE_SHIFT;
    (void)access; /* every state so far is mapped RWX; SHARED will need it */
    if (gfn >= p->ngfn) {
        p->st.faults[PF_OUTSIDE]++;
        return P2M_FAIL;
    }
    struct p2m_entry *e = &p->map[gfn];
    switch (e->state) {
    case P2M_UNPOPULATED: {
        uint64_t t0 = mm_now(), z0 = frame_zero_cycles();
        enum p2m_result r = make_resident(p, gfn);
        if (r == P2M_OK) {
            p->st.faults[PF_DEMAND_ZERO]++;
            p->st.dz_zero_cycles += frame_zero_cycles() - z0;
            p->st.dz_cycles += mm_now() - t0;
        }
        return r;
    }
    case P2M_FILLED:
    case P2M_BALLOONED: {
        enum p2m_result r = make_resident(p, gfn);
        if (r == P2M_OK)
            p->st.faults[PF_REFILL]++;
        return r;
    }
    case P2M_RESIDENT: {
        /* Mapped already: the CPU used a stale translation. Make sure the
         * leaf is right and flush. */
        uint64_t *l = ept_leaf(p, gfn);
        if (!l || (*l & PT_ADDR_MASK) != e->payload << PAGE_SHIFT || (*l & EPT_RWX) != EPT_RWX) {
            if (ept_set(p, gfn, e->payload, EPT_RWX))
                return P2M_WAIT;
        }
        p->flush_pending = true;
        p2m_flush(p);
        p->st.faults[PF_SPURIOUS]++;
        return P2M_OK;
    }
    case P2M_MMIO:
        p->st.faults[PF_MMIO]++;
        return P2M_FAIL;
    default:
        /* SHARED, COMPRESSED, SWAPPED: their transitions arrive with their
         * issues; meeting one now is a hypervisor bug. */
        mm_panic(__FILE__, __LINE__, "p2m state without a fault handler");
    }
}

void *p2m_gfn_ptr(struct p2m *p, uint64_t gfn, bool populate)
{
    if (gfn >= p->ngfn)
        return NULL;
    struct p2m_entry *e = &p->map[gfn];
    if (e->state != P2M_RESIDENT) {
        if (!populate || (e->state != P2M_UNPOPULATED && e->state != P2M_FILLED))
            return NULL;
        if (make_resident(p, gfn) != P2M_OK)
            return NULL;
    }
    return mm_phys_to_virt(e->payload << PAGE_SHIFT);
}

/* Most pages that are not zero are not zero early: test a chunk at a time
 * and stop at the first non-zero one. */
static bool page_is_zero(mfn_t m)
{
    const uint64_t *w = mm_phys_to_virt(m << PAGE_SHIFT);
    for (int i = 0; i < 512; i += 8)
        if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7])
            return false;
    return true;
}

uint64_t p2m_reclaim_zero(struct p2m *p, uint64_t want, uint64_t max_scan)
{
    uint64_t cand[MM_RECLAIM_BATCH];
    unsigned n = 0;
    if (!p->count[P2M_RESIDENT] || !p->map)
        return 0;
    p->st.reclaim_scans++;
    if (want > MM_RECLAIM_BATCH)
        want = MM_RECLAIM_BATCH;
    for (uint64_t i = 0; i < max_scan && i < p->ngfn && n < want; i++) {
        uint64_t gfn = p->hand;
        p->hand = p->hand + 1 < p->ngfn ? p->hand + 1 : 0;
        struct p2m_entry *e = &p->map[gfn];
        if (e->state != P2M_RESIDENT)
            continue;
        p->st.scanned++;
        if (!page_is_zero(e->payload))
            continue;
        /* Unmap first: once the flush below is done no vCPU can write it. */
        ept_clear(p, gfn);
        cand[n++] = gfn;
    }
    p2m_flush(p);
    uint64_t freed = 0;
    for (unsigned i = 0; i < n; i++) {
        struct p2m_entry *e = &p->map[cand[i]];
        /* Re-check after the flush: a write between the check and the
         * unmap (another CPU, later) must keep the page. */
        if (!page_is_zero(e->payload)) {
            ept_set(p, cand[i], e->payload, EPT_RWX);
            continue;
        }
        frame_free(e->payload);
        set_state(p, e, P2M_UNPOPULATED, 0);
        p->st.zero_reclaimed++;
        freed++;
    }
    return freed;
}

void p2m_sweep(struct p2m *p)
{
    if (!p->ad || !p->map)
        return;
    uint64_t accessed = 0, dirty = 0;
    for (uint64_t gfn = 0; gfn < p->ngfn; gfn++) {
        struct p2m_entry *e = &p->map[gfn];
        if (e->state != P2M_RESIDENT)
            continue;
        uint64_t *l = ept_leaf(p, gfn);
        if (!l)
            continue;
        if (*l & EPT_A) {
            accessed++;
            e->age = 0;
        } else if (e->age < 0xffff) {
            e->age++;
        }
        if (*l & EPT_D)
            dirty++;
        if (*l & (EPT_A | EPT_D)) {
            *l &= ~(EPT_A | EPT_D);
            p->flush_pending = true; /* else cached translations never set A again */
        }
    }
    p2m_flush(p);
    p->st.sweeps++;
    p->st.last_accessed = accessed;
    p->st.last_dirty = dirty;
    /* EWMA with weight 1/4 for the newest sample. */
    p->st.ws_pages = p->st.sweeps == 1 ? accessed : (p->st.ws_pages * 3 + accessed) / 4;
}

uint64_t p2m_check(struct p2m *p)
{
    uint64_t bad = 0, count[P2M_STATE_COUNT] = { 0 };
#define CHECK(c, ...)                                                         \
    do {                                                                      \
        if (!(c)) {                                                           \
            if (bad++ < 8)                                                    \
                pr_err(LS_MM, "p2m check: " __VA_ARGS__);                  \
        }                                                                     \
    } while (0)
    for (uint64_t gfn = 0; gfn < p->ngfn; gfn++) {
        struct p2m_entry *e = &p->map[gfn];
        CHECK(e->state < P2M_STATE_COUNT, "%s gfn %#llx bad state %u", p->name,
              (unsigned long long)gfn, e->state);
        if (e->state >= P2M_STATE_COUNT)
            continue;
        count[e->state]++;
        uint64_t *l = ept_leaf(p, gfn);
        uint64_t leaf = l ? *l : 0;
        if (e->state == P2M_RESIDENT) {
            struct frame *f = frame_get(e->payload);
            CHECK(f->state == FS_VM && f->owner == p->owner && f->gfn == gfn &&
                      f->refcount == 1,
                  "%s gfn %#llx -> frame %#llx owned by (%s, %u, gfn %#llx)", p->name,
                  (unsigned long long)gfn, (unsigned long long)e->payload,
                  frame_state_name(f->state), f->owner, (unsigned long long)f->gfn);
            CHECK((leaf & PT_ADDR_MASK) == e->payload << PAGE_SHIFT &&
                      (leaf & EPT_RWX) == EPT_RWX,
                  "%s gfn %#llx resident at %#llx but EPT leaf is %#llx", p->name,
                  (unsigned long long)gfn, (unsigned long long)e->payload,
                  (unsigned long long)leaf);
        } else {
            CHECK(!(leaf & EPT_RWX), "%s gfn %#llx is %s but EPT maps it (%#llx)", p->name,
                  (unsigned long long)gfn, p2m_state_name(e->state),
                  (unsigned long long)leaf);
        }
    }
    for (int s = 0; s < P2M_STATE_COUNT; s++)
        CHECK(count[s] == p->count[s], "%s: %llu %s pages counted as %llu", p->name,
              (unsigned long long)count[s], p2m_state_name((enum p2m_state)s),
              (unsigned long long)p->count[s]);
    CHECK(p->count[P2M_RESIDENT] <= p->limit, "%s: %llu resident above limit %llu", p->name,
          (unsigned long long)p->count[P2M_RESIDENT], (unsigned long long)p->limit);
#undef CHECK
    return bad;
}

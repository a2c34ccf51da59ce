/* The p2m transitions: fault paths (demand-zero, refill, decompression,
 * copy-on-write, swap-in), the reclaim chain, and the edges the scanner
 * and the balloon ask for; p2m_check verifies the result. The rule: EPT
 * maps a GFN only when its p2m state is RESIDENT (read-only while it keeps
 * a valid swap copy) or SHARED (read-only), and always to the frame the
 * p2m names; a frame in FS_VM state belongs to exactly one (owner, gfn). */
#include "mm/p2m.h"
#include "mm/p2m_internal.h"
#include "lib/log.h"
#include "lib/string.h"
#include "mm/compress.h"
#include "mm/ept.h"
#include "mm/hash.h"
#include "mm/mm.h"
#include "mm/mm_backend.h"
#include "mm/share.h"
#include "mm/swap.h"
#include "mm/trace.h"
#include "mm/zpool.h"

static const char *const state_names[P2M_STATE_COUNT] = {
    [P2M_UNPOPULATED] = "unpopulated", [P2M_RESIDENT] = "resident",
    [P2M_SHARED] = "shared",           [P2M_FILLED] = "filled",
    [P2M_COMPRESSED] = "compressed",   [P2M_SWAPPED] = "swapped",
    [P2M_BALLOONED] = "ballooned",     [P2M_MMIO] = "mmio",
};
static const char *const fault_names[PF_KIND_COUNT] = {
    [PF_DEMAND_ZERO] = "demand-zero", [PF_REFILL] = "refill", [PF_DECOMPRESS] = "decompress",
    [PF_COW] = "copy-on-write",      [PF_SWAPIN] = "swap-in",
    [PF_SPURIOUS] = "spurious",       [PF_OUTSIDE] = "outside-ram",
    [PF_MMIO] = "mmio",
};

struct p2m_pool_params p2m_pool = { 2048, false };

void p2m_set_pool_params(unsigned max_len, bool checksum)
{
    p2m_pool.max_len = max_len < 64 ? 64 : max_len > ZP_MAX_DATA ? ZP_MAX_DATA : max_len;
    p2m_pool.checksum = checksum;
}

unsigned p2m_pool_max_len(void)
{
    return p2m_pool.max_len;
}

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
    p->compress = true; /* takes effect when the pool is on */
    p->share = true;    /* takes effect when the scanner is on */
    p->salt = 0x5a17000000000000ULL | owner; /* its own: intra-VM sharing only */
    p->limited = limit && limit < ngfn;
    /* The top of the sparse map: 8 bytes per P2M_DIR_GFNS GFNs (512 MiB);
     * directories and chunks come with the first touch of their region. */
    p->map_top = (ngfn + P2M_DIR_GFNS - 1) >> P2M_DIR_SHIFT;
    p->map_frames = (p->map_top * sizeof(uint64_t) + PAGE_SIZE - 1) >> PAGE_SHIFT;
    p->map_first = frame_alloc_contig(p->map_frames, 1, FS_HV, owner);
    if (p->map_first == MFN_INVALID)
        return -1;
    p->map = mm_phys_to_virt(p->map_first << PAGE_SHIFT); /* zeroed: all unpopulated */
    p->ept_root = frame_alloc(FS_PAGETABLE, owner);
    if (p->ept_root == MFN_INVALID) {
        frame_free_contig(p->map_first, p->map_frames);
        p->map = NULL;
        return -1;
    }
    frame_get(p->ept_root)->refcount = 0; /* present entries: none yet */
    p->meta = p->map_frames + 1;
    p->eptp = (p->ept_root << PAGE_SHIFT) | EPTP_WB | EPTP_WALK4 | (ad ? EPTP_AD : 0);
    p->count[P2M_UNPOPULATED] = ngfn;
    p->busy_gfn = UINT64_MAX;
    return 0;
}

int p2m_set_mmio(struct p2m *p, uint64_t gfn)
{
    if (gfn >= p->ngfn)
        return -1;
    struct p2m_entry *e = map_slot(p, gfn);
    if (!e || e->state != P2M_UNPOPULATED)
        return -1;
    uint8_t tc = trace_cause_enter(p, TC_LOAD);
    p2m_set_state(p, gfn, e, P2M_MMIO, 0);
    trace_cause_leave(p, tc);
    return 0;
}

void p2m_flush(struct p2m *p)
{
    if (!p->flush_pending)
        return;
    mm_invept(p->eptp);
    p->flush_pending = false;
    p->st.invept++;
    /* EPT tables unlinked by p2m_trim: no translation can use them now. */
    for (unsigned i = 0; i < p->ntrim; i++) {
        frame_free(p->trim[i]);
        p->meta--;
    }
    p->ntrim = 0;
}

/* The legal edges of the state machine (drawn in mm/p2m.h): for each
 * state, the states it may become. Anything else is a hypervisor bug. */
#define TO(s) (1u << (s))
static const uint16_t legal_edges[P2M_STATE_COUNT] = {
    [P2M_UNPOPULATED] = TO(P2M_RESIDENT) | TO(P2M_BALLOONED) | TO(P2M_MMIO),
    [P2M_RESIDENT] = TO(P2M_UNPOPULATED) | TO(P2M_FILLED) | TO(P2M_COMPRESSED) | TO(P2M_SWAPPED) |
                     TO(P2M_SHARED) | TO(P2M_BALLOONED),
    [P2M_SHARED] = TO(P2M_RESIDENT) | TO(P2M_COMPRESSED) | TO(P2M_BALLOONED),
    [P2M_FILLED] = TO(P2M_RESIDENT) | TO(P2M_BALLOONED),
    [P2M_COMPRESSED] = TO(P2M_RESIDENT) | TO(P2M_SHARED) | TO(P2M_SWAPPED) | TO(P2M_BALLOONED),
    [P2M_SWAPPED] = TO(P2M_RESIDENT) | TO(P2M_BALLOONED),
    [P2M_BALLOONED] = TO(P2M_UNPOPULATED) | TO(P2M_RESIDENT),
    [P2M_MMIO] = 0,
};
#undef TO

bool p2m_edge_legal(enum p2m_state from, enum p2m_state to)
{
    return (unsigned)from < P2M_STATE_COUNT && (unsigned)to < P2M_STATE_COUNT &&
           (legal_edges[from] >> to & 1);
}

bool p2m_release(struct p2m *p, struct p2m_entry *e)
{
    switch (e->state) {
    case P2M_RESIDENT:
        frame_free(e->payload); /* zeroed again before anyone gets it */
        return true;
    case P2M_SHARED:
        p2m_drop_shared_ref(p, e->payload);
        return true;
    case P2M_COMPRESSED:
        if (e->flags & P2M_F_SHARED_OBJ) {
            share_zobj_put((uint32_t)e->payload);
            e->flags &= (uint8_t)~P2M_F_SHARED_OBJ;
            p->shared_obj--;
        } else {
            zpool_free(e->payload);
            p->st.pool_bytes -= e->aux;
        }
        return true;
    case P2M_SWAPPED:
        swap_free(e->payload);
        return true;
    default:
        return false; /* unpopulated, same-filled, ballooned, MMIO: nothing held */
    }
}

void p2m_set_state(struct p2m *p, uint64_t gfn, struct p2m_entry *e, enum p2m_state s,
                   uint64_t payload)
{
    if (!p2m_edge_legal((enum p2m_state)e->state, s))
        mm_panic(__FILE__, __LINE__, "illegal p2m state transition");
    trace_transition(p, gfn, e->state, s);
    p->st.edges[e->state][s]++;
    if ((e->state == P2M_UNPOPULATED) != (s == P2M_UNPOPULATED))
        map_count(p, gfn, s == P2M_UNPOPULATED ? -1 : 1);
    if (e->flags & P2M_F_INCOMPRESSIBLE) {
        /* The flag describes resident content only. */
        e->flags &= (uint8_t)~P2M_F_INCOMPRESSIBLE;
        p->st.incompressible_now--;
    }
    if (e->flags & P2M_F_HASHED) {
        e->flags &= (uint8_t)~P2M_F_HASHED;
        e->aux = 0;
    }
    p2m_sample_forget(p, e); /* a sampled page leaving RESIDENT */
    if (e->flags & P2M_F_SWAPCACHE) {
        /* The swap copy survives only as the page's new home (a clean page
         * dropped); any other transition frees it. */
        if (s != P2M_SWAPPED || SWAP_LOC_SLOT(payload) != e->aux)
            swap_free(SWAP_LOC(e->aux, PAGE_SIZE, 0));
        e->flags &= (uint8_t)~P2M_F_SWAPCACHE;
        e->aux = 0;
        p->swap_cached--;
    }
    p->count[e->state]--;
    p->count[s]++;
    e->state = (uint8_t)s;
    e->payload = payload;
}

/* One mapping of shared frame m goes away; the last one frees it. */
void p2m_drop_shared_ref(struct p2m *p, mfn_t m)
{
    struct frame *f = frame_get(m);
    MM_ASSERT(f->state == FS_SHARED && f->refcount > 0);
    f->refcount--;
    share_charge(p, m, -1);
    if (f->refcount == 0) {
        share_forget(m, share_hash(mm_phys_to_virt(m << PAGE_SHIFT), p->salt), p->salt);
        frame_free(m);
    }
}

void p2m_destroy(struct p2m *p)
{
    if (!p->map)
        return;
    /* Not a transition: every entry is released and forgotten with the
     * map (the counts go with it). */
    for (uint64_t gfn = map_next(p, 0); gfn < p->ngfn; gfn = map_next(p, gfn + 1)) {
        struct p2m_entry *e = map_find(p, gfn);
        p2m_release(p, e);
        if (e->flags & P2M_F_SWAPCACHE) {
            swap_free(SWAP_LOC(e->aux, PAGE_SIZE, 0));
            p->swap_cached--;
        }
        p->count[e->state]--;
        p->count[P2M_UNPOPULATED]++;
        memset(e, 0, sizeof(*e));
    }
    p->flush_pending = true;
    p2m_flush(p); /* frees queued tables too */
    ept_destroy(p);
    map_destroy(p);
    frame_free(p->ept_root);
    frame_free_contig(p->map_first, p->map_frames);
    p->meta -= p->map_frames + 1;
    MM_ASSERT(p->meta == 0);
    p->map = NULL;
    p->flush_pending = true;
    p2m_flush(p);
}

/* Decodes gfn's pool object into dst (one page). Returns NULL, or what is
 * wrong with the stored copy. The object stays in the pool. */
const char *p2m_decompress_into(struct p2m *p, uint64_t gfn, const struct p2m_entry *e,
                                   void *dst)
{
    static uint8_t buf[ZP_MAX_DATA];
    uint32_t check;
    if (zpool_load(e->payload, p->owner, gfn, e->aux, buf, &check))
        return "pool header does not match the page";
    uint64_t t0 = mm_now();
    int bad = cmp_decompress_page(buf, (int)e->aux, dst);
    p->st.dc_lz4_cycles += mm_now() - t0;
    if (bad)
        return "LZ4 data does not decode to one page";
    if (p2m_pool.checksum) {
        t0 = mm_now();
        bool bad_sum = hash_check32(dst, PAGE_SIZE, 0) != check;
        p->st.dc_check_cycles += mm_now() - t0;
        if (bad_sum)
            return "checksum mismatch";
    }
    return NULL;
}

bool p2m_pool_relocated(struct p2m *p, uint64_t gfn, uint64_t old_handle, uint64_t new_handle)
{
    if (gfn >= p->ngfn || !p->map || p2m_peek(p, gfn)->state != P2M_COMPRESSED ||
        p2m_peek(p, gfn)->payload != old_handle)
        return false;
    map_find(p, gfn)->payload = new_handle;
    return true;
}

int p2m_read_page(struct p2m *p, uint64_t gfn, void *buf)
{
    if (gfn >= p->ngfn || !p->map)
        return -1;
    const struct p2m_entry *e = p2m_peek(p, gfn);
    uint64_t *w = buf;
    switch (e->state) {
    case P2M_UNPOPULATED:
    case P2M_BALLOONED:
        memset(buf, 0, PAGE_SIZE);
        return 0;
    case P2M_FILLED:
        for (int i = 0; i < 512; i++)
            w[i] = e->payload;
        return 0;
    case P2M_RESIDENT:
    case P2M_SHARED:
        memcpy(buf, mm_phys_to_virt(e->payload << PAGE_SHIFT), PAGE_SIZE);
        return 0;
    case P2M_COMPRESSED:
        if (e->flags & P2M_F_SHARED_OBJ) {
            struct share_zobj z;
            if (!share_zobj_get((uint32_t)e->payload, &z))
                return -1;
            if (z.mfn != MFN_INVALID) {
                memcpy(buf, mm_phys_to_virt(z.mfn << PAGE_SHIFT), PAGE_SIZE);
                return 0;
            }
            static uint8_t zbuf[ZP_MAX_DATA];
            uint32_t check;
            unsigned len = (unsigned)(z.handle >> 48);
            if (zpool_load(z.handle, 0, e->payload, len, zbuf, &check) ||
                cmp_decompress_page(zbuf, (int)len, buf))
                return -1;
            return share_hash(buf, z.salt) == z.hash ? 0 : -1;
        }
        return p2m_decompress_into(p, gfn, e, buf) ? -1 : 0;
    case P2M_SWAPPED: {
        /* Through swap's own buffer: buf is the caller's to reuse, and a
         * device that fails mid-read may still write what it was given. */
        const void *data = swap_read(e->payload, NULL);
        unsigned len = SWAP_LOC_LEN(e->payload);
        if (!data || swap_check(data, len, p->owner, gfn) != e->aux)
            return -1;
        if (SWAP_LOC_LZ4(e->payload))
            return cmp_decompress_page(data, (int)len, buf) ? -1 : 0;
        memcpy(buf, data, PAGE_SIZE);
        return 0;
    }
    default:
        return -1;
    }
}

uint64_t p2m_check(struct p2m *p)
{
    uint64_t bad = 0, count[P2M_STATE_COUNT] = { 0 }, pool_bytes = 0, incompressible = 0,
             shared_obj = 0, swap_cached = 0, sampled = 0;
#define CHECK(c, ...)                                                         \
    do {                                                                      \
        if (!(c)) {                                                           \
            if (bad++ < 8)                                                    \
                pr_err(LS_MM, "p2m check: " __VA_ARGS__);                  \
        }                                                                     \
    } while (0)
    uint64_t chunk_used = 0, chunk_base = UINT64_MAX;
    for (uint64_t gfn = map_next(p, 0); gfn < p->ngfn; gfn = map_next(p, gfn + 1)) {
        struct p2m_entry *e = map_find(p, gfn);
        uint64_t base = gfn & ~(uint64_t)(P2M_CHUNK_ENTRIES - 1);
        if (base != chunk_base) {
            if (chunk_base != UINT64_MAX)
                CHECK(map_chunk_count(p, chunk_base) == chunk_used, "%s chunk at gfn %#llx "
                      "counts %u entries in use, holds %llu", p->name,
                      (unsigned long long)chunk_base, map_chunk_count(p, chunk_base),
                      (unsigned long long)chunk_used);
            chunk_base = base;
            chunk_used = 0;
        }
        chunk_used += e->state != P2M_UNPOPULATED;
        CHECK(e->state < P2M_STATE_COUNT, "%s gfn %#llx bad state %u", p->name,
              (unsigned long long)gfn, e->state);
        if (e->state >= P2M_STATE_COUNT)
            continue;
        count[e->state]++;
        if (e->flags & P2M_F_INCOMPRESSIBLE)
            incompressible++;
        uint64_t *l = ept_leaf(p, gfn);
        uint64_t leaf = l ? *l : 0;
        if (e->state == P2M_RESIDENT) {
            struct frame *f = frame_get(e->payload);
            CHECK(f->state == FS_VM && f->owner == p->owner && f->gfn == gfn &&
                      f->refcount == 1,
                  "%s gfn %#llx -> frame %#llx owned by (%s, %u, gfn %#llx)", p->name,
                  (unsigned long long)gfn, (unsigned long long)e->payload,
                  frame_state_name(f->state), f->owner, (unsigned long long)f->gfn);
            /* A page with a valid swap copy is mapped read-only until written. */
            bool cached = e->flags & P2M_F_SWAPCACHE;
            swap_cached += cached;
            /* A sampled page keeps its frame but no permission (or lost its
             * leaf with an emptied table: the next access maps it). */
            bool smp = e->flags & P2M_F_SAMPLED;
            sampled += smp;
            CHECK((smp && !(leaf & EPT_RWX)) ||
                      ((leaf & PT_ADDR_MASK) == e->payload << PAGE_SHIFT &&
                       (leaf & EPT_RWX) == (cached ? EPT_R | EPT_X : EPT_RWX)),
                  "%s gfn %#llx resident at %#llx but EPT leaf is %#llx", p->name,
                  (unsigned long long)gfn, (unsigned long long)e->payload,
                  (unsigned long long)leaf);
            CHECK(!cached || (!(e->flags & P2M_F_HASHED) &&
                              swap_loc_valid(SWAP_LOC(e->aux, PAGE_SIZE, 0))),
                  "%s gfn %#llx swap-cached at slot %u, which is not allocated", p->name,
                  (unsigned long long)gfn, e->aux);
        } else if (e->state == P2M_SHARED) {
            struct frame *f = frame_get(e->payload);
            CHECK(f->state == FS_SHARED && f->refcount >= 1,
                  "%s gfn %#llx shared on frame %#llx which is %s (refcount %u)", p->name,
                  (unsigned long long)gfn, (unsigned long long)e->payload,
                  frame_state_name(f->state), f->refcount);
            CHECK((leaf & PT_ADDR_MASK) == e->payload << PAGE_SHIFT &&
                      (leaf & EPT_RWX) == (EPT_R | EPT_X),
                  "%s gfn %#llx shared at %#llx but EPT leaf is %#llx", p->name,
                  (unsigned long long)gfn, (unsigned long long)e->payload,
                  (unsigned long long)leaf);
            CHECK(!(e->flags & (P2M_F_INCOMPRESSIBLE | P2M_F_HASHED | P2M_F_SAMPLED)),
                  "%s gfn %#llx shared with resident-only flags %#x", p->name,
                  (unsigned long long)gfn, e->flags);
        } else {
            struct share_zobj z;
            if (e->state == P2M_COMPRESSED && (e->flags & P2M_F_SHARED_OBJ)) {
                shared_obj++;
                CHECK(share_zobj_get((uint32_t)e->payload, &z), "%s gfn %#llx names shared "
                      "object %llu, which does not exist", p->name, (unsigned long long)gfn,
                      (unsigned long long)e->payload);
            } else if (e->state == P2M_COMPRESSED) {
                pool_bytes += e->aux;
                CHECK(zpool_check_object(e->payload, p->owner, gfn, e->aux),
                      "%s gfn %#llx compressed as handle %#llx (%u bytes) but the pool "
                      "holds no such object", p->name, (unsigned long long)gfn,
                      (unsigned long long)e->payload, e->aux);
            }
            CHECK(e->state != P2M_SWAPPED || swap_loc_valid(e->payload), "%s gfn %#llx swapped "
                  "to %#llx, slots not allocated", p->name, (unsigned long long)gfn,
                  (unsigned long long)e->payload);
            CHECK(!(e->flags & (P2M_F_INCOMPRESSIBLE | P2M_F_SWAPCACHE | P2M_F_SAMPLED)),
                  "%s gfn %#llx is %s "
                  "but has resident-only flags %#x", p->name, (unsigned long long)gfn,
                  p2m_state_name(e->state), e->flags);
            CHECK(e->state == P2M_COMPRESSED || !(e->flags & P2M_F_SHARED_OBJ),
                  "%s gfn %#llx is %s but flagged as naming a shared object", p->name,
                  (unsigned long long)gfn, p2m_state_name(e->state));
            CHECK(!(leaf & EPT_RWX), "%s gfn %#llx is %s but EPT maps it (%#llx)", p->name,
                  (unsigned long long)gfn, p2m_state_name(e->state),
                  (unsigned long long)leaf);
        }
    }
    if (chunk_base != UINT64_MAX)
        CHECK(map_chunk_count(p, chunk_base) == chunk_used, "%s chunk at gfn %#llx counts %u "
              "entries in use, holds %llu", p->name, (unsigned long long)chunk_base,
              map_chunk_count(p, chunk_base), (unsigned long long)chunk_used);
    /* GFNs in no chunk are unpopulated. */
    uint64_t listed = 0;
    for (int s = 0; s < P2M_STATE_COUNT; s++)
        listed += s == P2M_UNPOPULATED ? 0 : count[s];
    count[P2M_UNPOPULATED] = p->ngfn - listed;
    /* The metadata: EPT tables count their present entries, and every
     * present leaf belongs to a mapped state (checked per GFN above). */
    struct map_census mc;
    map_census(p, &mc);
    CHECK(!mc.bad_counts, "%s: %llu EPT tables or map directories miscount their entries",
          p->name, (unsigned long long)mc.bad_counts);
    CHECK(mc.stray_leaves == 0, "%s: %llu EPT leaves map GFNs that are not resident or shared",
          p->name, (unsigned long long)mc.stray_leaves);
    CHECK(p->meta == p->map_frames + 1 + mc.dirs + mc.chunks + mc.tables + p->ntrim,
          "%s: metadata charged %llu frames, holds %llu (top %llu, directories %llu, chunks "
          "%llu, EPT tables %llu, queued %u)", p->name, (unsigned long long)p->meta,
          (unsigned long long)(p->map_frames + 1 + mc.dirs + mc.chunks + mc.tables + p->ntrim),
          (unsigned long long)p->map_frames, (unsigned long long)mc.dirs,
          (unsigned long long)mc.chunks, (unsigned long long)mc.tables, p->ntrim);
    for (int s = 0; s < P2M_STATE_COUNT; s++)
        CHECK(count[s] == p->count[s], "%s: %llu %s pages counted as %llu", p->name,
              (unsigned long long)count[s], p2m_state_name((enum p2m_state)s),
              (unsigned long long)p->count[s]);
    CHECK(sampled == p->smp.live, "%s: %llu sampled pages counted as %u", p->name,
          (unsigned long long)sampled, p->smp.live);
    CHECK(swap_cached == p->swap_cached, "%s: %llu swap-cached pages counted as %llu", p->name,
          (unsigned long long)swap_cached, (unsigned long long)p->swap_cached);
    CHECK(shared_obj == p->shared_obj, "%s: %llu GFNs name shared objects, counted as %llu",
          p->name, (unsigned long long)shared_obj, (unsigned long long)p->shared_obj);
    CHECK(pool_bytes == p->st.pool_bytes, "%s: %llu pool bytes counted as %llu", p->name,
          (unsigned long long)pool_bytes, (unsigned long long)p->st.pool_bytes);
    CHECK(incompressible == p->st.incompressible_now, "%s: %llu pages flagged incompressible, "
          "counted as %llu", p->name, (unsigned long long)incompressible,
          (unsigned long long)p->st.incompressible_now);
    CHECK(p->count[P2M_RESIDENT] <= p->limit, "%s: %llu resident above limit %llu", p->name,
          (unsigned long long)p->count[P2M_RESIDENT], (unsigned long long)p->limit);
    CHECK(!p->limited || p2m_charge(p) <= p->limit + P2M_OVERHEAD_ALLOWANCE(p->limit),
          "%s: charged %llu frames (resident %llu, metadata %llu) above limit %llu + "
          "allowance %llu", p->name, (unsigned long long)p2m_charge(p),
          (unsigned long long)p->count[P2M_RESIDENT], (unsigned long long)p->meta,
          (unsigned long long)p->limit,
          (unsigned long long)P2M_OVERHEAD_ALLOWANCE(p->limit));
#undef CHECK
    return bad;
}

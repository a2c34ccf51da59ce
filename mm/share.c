/* The share scanner and its tables (see share.h). Single-threaded, like
 * the rest of mm/. */
#include "mm/share.h"
#include "lib/fmt.h"
#include "lib/log.h"
#include "lib/string.h"
#include "mm/hash.h"
#include "mm/mm.h"
#include "mm/mm_backend.h"
#include "mm/compress.h"
#include "mm/zpool.h"

enum { SLOT_EMPTY = 0, SLOT_USED, SLOT_GONE };

struct stable_ent {
    uint64_t hash;
    uint64_t salt;
    uint32_t mfn;
    uint8_t state;
    uint8_t owners;   /* bit (owner - 1) of every VM that has mapped it; never
                         cleared (a VM that copied away still counts) */
    uint16_t pad;
};

/* A shared frame reclaimed as a whole: one pool object that every GFN
 * which mapped the frame names (p2m: COMPRESSED + P2M_F_SHARED_OBJ,
 * payload = index here). The first fault decodes it into a new shared
 * frame (mfn), which later faults join; the object goes when no GFN
 * names it any more. Used iff refs > 0. */
struct zobj {
    uint64_t handle;
    uint64_t hash, salt;      /* of the content: checked after decoding */
    uint32_t refs;            /* GFNs naming it */
    uint32_t mfn;             /* its decoded shared frame, or ZOBJ_NO_FRAME */
};
#define ZOBJ_NO_FRAME 0xffffffffu
#define FRAME_F_VICTIM 1u     /* frame.flags: chosen by share_reclaim */
#define RECLAIM_VICTIMS 16
#define RECLAIM_MAX_REFS 64   /* frames mapped more widely stay: hot, and cheap per GFN */

struct unstable_ent {
    uint64_t hash;
    uint64_t gfn;
    uint16_t owner;
    uint8_t state;
    uint8_t pad[5];
};

static struct {
    bool on;
    uint32_t base_rate;
    struct stable_ent *stable;
    struct unstable_ent *unstable;
    uint64_t size;            /* entries per table, a power of two */
    uint64_t stable_used;
    mfn_t first;
    uint64_t frames;
    int vm;                   /* cursor: VM index and GFN */
    uint64_t gfn;
    uint64_t (*hash)(const void *page, uint64_t salt);
    uint64_t hz, start;       /* TSC rate and the first scan, for per-second rates */
    struct zobj *zobj;
    uint64_t nzobj, zobj_used, zobj_cursor, reclaim_cursor;
    struct share_stats st;
} sh;

void share_set_clock(uint64_t hz)
{
    sh.hz = hz;
}

static uint64_t xxh(const void *page, uint64_t salt)
{
    return hash64(page, PAGE_SIZE, salt);
}

uint64_t share_hash(const void *page, uint64_t salt)
{
    return (sh.hash ? sh.hash : xxh)(page, salt);
}

void share_set_hash(uint64_t (*fn)(const void *page, uint64_t salt))
{
    sh.hash = fn;
}

int share_init(uint64_t nframes, uint32_t rate)
{
    memset(&sh, 0, sizeof(sh));
    if (!rate)
        return 0;
    /* A quarter of the machine could be shared frames; keep tables at most
     * half full. */
    uint64_t size = 1024;
    while (size < nframes / 2)
        size *= 2;
    uint64_t bytes = size * (sizeof(struct stable_ent) + sizeof(struct unstable_ent)) +
                     size / 2 * sizeof(struct zobj);
    sh.frames = (bytes + PAGE_SIZE - 1) >> PAGE_SHIFT;
    sh.first = frame_alloc_contig(sh.frames, 1, FS_HV, 0);
    if (sh.first == MFN_INVALID)
        return -1;
    sh.stable = mm_phys_to_virt(sh.first << PAGE_SHIFT);
    sh.unstable = (struct unstable_ent *)(sh.stable + size);
    sh.zobj = (struct zobj *)(sh.unstable + size);
    sh.nzobj = size / 2;
    sh.size = size;
    sh.base_rate = rate;
    sh.st.rate = rate;
    sh.on = true;
    return 0;
}

void share_fini(void)
{
    if (!sh.on)
        return;
    MM_ASSERT(sh.stable_used == 0 && sh.zobj_used == 0);
    frame_free_contig(sh.first, sh.frames);
    sh.on = false;
}

bool share_enabled(void)
{
    return sh.on;
}

/* ---- tables ---------------------------------------------------------------- */

static void probed(uint64_t n)
{
    sh.st.probes += n;
    if (n > sh.st.probe_max)
        sh.st.probe_max = n;
}

static struct stable_ent *stable_find(uint64_t hash, uint64_t salt)
{
    for (uint64_t i = hash & (sh.size - 1), n = 0; n < sh.size; n++, i = (i + 1) & (sh.size - 1)) {
        struct stable_ent *e = &sh.stable[i];
        if (e->state == SLOT_EMPTY) {
            probed(n + 1);
            return NULL;
        }
        if (e->state == SLOT_USED && e->hash == hash && e->salt == salt) {
            probed(n + 1);
            return e;
        }
    }
    probed(sh.size);
    return NULL;
}

static struct stable_ent *stable_insert(uint64_t hash, uint64_t salt, mfn_t mfn)
{
    if (sh.stable_used >= sh.size / 2)
        return NULL;
    for (uint64_t i = hash & (sh.size - 1), n = 1;; i = (i + 1) & (sh.size - 1), n++) {
        struct stable_ent *e = &sh.stable[i];
        if (e->state != SLOT_USED) {
            probed(n);
            e->hash = hash;
            e->salt = salt;
            e->mfn = (uint32_t)mfn;
            e->state = SLOT_USED;
            e->owners = 0;
            sh.stable_used++;
            return e;
        }
    }
}

void share_forget(mfn_t mfn, uint64_t hash, uint64_t salt)
{
    for (uint64_t i = hash & (sh.size - 1), n = 0; sh.on && n < sh.size;
         n++, i = (i + 1) & (sh.size - 1)) {
        struct stable_ent *e = &sh.stable[i];
        if (e->state == SLOT_EMPTY)
            break;
        if (e->state == SLOT_USED && e->mfn == mfn) {
            probed(n + 1);
            e->state = SLOT_GONE;
            sh.stable_used--;
            struct frame *f = frame_get(mfn);
            if (f->gfn) { /* decoded from a shared object still named by GFNs */
                MM_ASSERT(f->gfn <= sh.nzobj && sh.zobj[f->gfn - 1].mfn == mfn);
                sh.zobj[f->gfn - 1].mfn = ZOBJ_NO_FRAME;
                f->gfn = 0;
            }
            return;
        }
    }
    /* A shared frame the table does not know is a hypervisor bug: either
     * the hash changed (a shared frame was written) or accounting broke. */
    mm_panic(__FILE__, __LINE__, "share: forgetting a frame the stable table does not hold");
}

/* The unstable table is a cache indexed by hash: a page takes the slot of
 * its hash, replacing whatever older candidate sat there. Losing one only
 * delays a merge to a later round; a table that filled up would stop
 * merging for every page later in the scan order. */
static struct unstable_ent *unstable_slot(uint64_t hash)
{
    return &sh.unstable[hash & (sh.size - 1)];
}

static void unstable_clear(void)
{
    memset(sh.unstable, 0, sh.size * sizeof(struct unstable_ent));
}

/* ---- the scan ---------------------------------------------------------------- */

static const void *page_of(mfn_t m)
{
    return mm_phys_to_virt(m << PAGE_SHIFT);
}

/* Counts a GFN of p joining se; cross-VM when another VM has mapped the
 * frame (exact but for a VM that has since copied away: the mask is not
 * cleared, which would need a reverse map). */
static void joined(struct stable_ent *se, struct p2m *p)
{
    uint8_t bit = (uint8_t)(1u << ((p->owner - 1) & 7));
    if (se->owners & (uint8_t)~bit) {
        p->st.share_cross++;
        sh.st.merges_cross++;
    }
    se->owners |= bit;
    sh.st.merges++;
}

/* One GFN. Returns true when it merged something. */
static bool visit(struct p2m *p, uint64_t gfn)
{
    struct p2m_entry *e = &p->map[gfn];
    sh.st.visited++;
    if (!p->share || e->state != P2M_RESIDENT)
        return false;
    /* Same-filled pages are the p2m's business (a value, no frame): one
     * mechanism for zero pages, not two. */
    if (p2m_share_fill(p, gfn)) {
        sh.st.zero_merged++;
        return true;
    }
    /* A clean page with a valid swap copy stays out of sharing until it
     * is written: reclaim can drop it for free, a merge would lose that. */
    if (e->flags & P2M_F_SWAPCACHE)
        return false;
    sh.st.hashed++;
    uint64_t h = share_hash(page_of(e->payload), p->salt);
    if (!(e->flags & P2M_F_HASHED) || e->aux != (uint32_t)h) {
        /* First visit, or written since the last: not stable yet. */
        if (e->flags & P2M_F_HASHED)
            sh.st.unstable++;
        e->flags |= P2M_F_HASHED;
        e->aux = (uint32_t)h;
        return false;
    }
    struct stable_ent *se = stable_find(h, p->salt);
    if (se) {
        if (!p2m_share_protect(p, gfn))
            return false;
        sh.st.compares++;
        if (memcmp(page_of(e->payload), page_of(se->mfn), PAGE_SIZE)) {
            sh.st.collisions++;
            p2m_share_unprotect(p, gfn);
            return false;
        }
        p2m_share_join(p, gfn, se->mfn);
        joined(se, p);
        return true;
    }
    struct unstable_ent *u = unstable_slot(h);
    if (u->state == SLOT_USED && u->hash == h && !(u->owner == p->owner && u->gfn == gfn)) {
        struct p2m *q = mm_vm_by_owner(u->owner);
        uint64_t qg = u->gfn;
        u->state = SLOT_GONE; /* consumed either way */
        /* The partner must still be what it was: resident, same salt,
         * and unchanged since it was hashed. */
        if (!q || !q->share || q->salt != p->salt || qg >= q->ngfn ||
            q->map[qg].state != P2M_RESIDENT || !(q->map[qg].flags & P2M_F_HASHED) ||
            q->map[qg].aux != (uint32_t)h)
            return false;
        if (!p2m_share_protect(p, gfn))
            return false;
        if (!p2m_share_protect(q, qg)) {
            p2m_share_unprotect(p, gfn);
            return false;
        }
        sh.st.compares++;
        if (memcmp(page_of(e->payload), page_of(q->map[qg].payload), PAGE_SIZE)) {
            sh.st.stale++; /* written since it was hashed (or a collision) */
            p2m_share_unprotect(p, gfn);
            p2m_share_unprotect(q, qg);
            return false;
        }
        if (sh.stable_used >= sh.size / 2) {
            sh.st.table_full++;
            p2m_share_unprotect(p, gfn);
            p2m_share_unprotect(q, qg);
            return false;
        }
        mfn_t m = p2m_share_promote(p, gfn);
        se = stable_insert(h, p->salt, m);
        sh.st.new_frames++;
        joined(se, p);
        p->st.share_merged++;
        p2m_share_join(q, qg, m);
        joined(se, q);
        return true;
    }
    u->hash = h;
    u->owner = p->owner;
    u->gfn = gfn;
    u->state = SLOT_USED;
    return false;
}

/* Visits up to n GFNs, stopping once max_cycles have passed. Returns the
 * number visited. */
static uint64_t scan(uint64_t n, uint64_t max_cycles)
{
    if (!sh.on)
        return 0;
    uint64_t t0 = mm_now(), k;
    if (!sh.start)
        sh.start = t0;
    for (k = 0; k < n; k++) {
        if ((k & 7) == 7 && mm_now() - t0 >= max_cycles)
            break;
        int nv = mm_vm_count();
        if (!nv)
            break;
        if (sh.vm >= nv) {
            sh.vm = 0;
            sh.gfn = 0;
        }
        struct p2m *p = mm_vm_at(sh.vm);
        if (sh.gfn >= p->ngfn) {
            sh.gfn = 0;
            if (++sh.vm >= nv) {
                /* A full round: the unstable table's entries are stale. */
                sh.vm = 0;
                sh.st.rounds++;
                unstable_clear();
            }
            continue;
        }
        visit(p, sh.gfn++);
    }
    sh.st.cycles += mm_now() - t0;
    return k;
}

void share_scan(uint64_t n)
{
    scan(n, ~0ULL);
}

void share_idle(uint64_t until)
{
    if (!sh.on || !mm_vm_count())
        return;
    sh.st.idle_ticks++;
    while (mm_now() < until)
        sh.st.idle_visits += scan(32, until - mm_now());
}

void share_tick(uint64_t max_cycles)
{
    if (!sh.on)
        return;
    uint64_t merges = sh.st.merges + sh.st.zero_merged;
    scan(sh.st.rate, max_cycles);
    merges = sh.st.merges + sh.st.zero_merged - merges;
    /* Adapt: finding a merge in every 32 pages or more doubles the rate,
     * finding nothing halves it, within [base/4, base*4]. */
    if (merges * 32 >= sh.st.rate && sh.st.rate < sh.base_rate * 4ULL)
        sh.st.rate *= 2;
    else if (!merges && sh.st.rate > sh.base_rate / 4 && sh.st.rate > 1)
        sh.st.rate /= 2;
}

/* ---- shared frames reclaimed as a whole ------------------------------------- */

static uint32_t zobj_new(void)
{
    for (uint64_t n = 0; n < sh.nzobj; n++) {
        uint64_t i = (sh.zobj_cursor + n) % sh.nzobj;
        if (!sh.zobj[i].refs) {
            sh.zobj_cursor = i + 1;
            return (uint32_t)i;
        }
    }
    return ZOBJ_NO_FRAME;
}

bool share_zobj_get(uint32_t idx, struct share_zobj *out)
{
    if (!sh.on || idx >= sh.nzobj || !sh.zobj[idx].refs)
        return false;
    const struct zobj *z = &sh.zobj[idx];
    out->handle = z->handle;
    out->hash = z->hash;
    out->salt = z->salt;
    out->refs = z->refs;
    out->mfn = z->mfn == ZOBJ_NO_FRAME ? MFN_INVALID : z->mfn;
    return true;
}

void share_zobj_put(uint32_t idx)
{
    MM_ASSERT(idx < sh.nzobj && sh.zobj[idx].refs);
    struct zobj *z = &sh.zobj[idx];
    if (--z->refs)
        return;
    zpool_free(z->handle);
    if (z->mfn != ZOBJ_NO_FRAME)
        frame_get(z->mfn)->gfn = 0; /* the frame lives on as an ordinary shared frame */
    z->mfn = ZOBJ_NO_FRAME;
    sh.zobj_used--;
}

bool share_zobj_adopt(uint32_t idx, mfn_t m)
{
    struct zobj *z = &sh.zobj[idx];
    MM_ASSERT(z->refs && z->mfn == ZOBJ_NO_FRAME);
    struct stable_ent *se = stable_insert(z->hash, z->salt, m);
    if (!se)
        return false;
    z->mfn = (uint32_t)m;
    frame_get(m)->gfn = idx + 1;
    sh.st.zobj_decoded++;
    return true;
}

bool share_zobj_relocated(uint32_t idx, uint64_t old_handle, uint64_t new_handle)
{
    if (idx >= sh.nzobj || !sh.zobj[idx].refs || sh.zobj[idx].handle != old_handle)
        return false;
    sh.zobj[idx].handle = new_handle;
    return true;
}

uint64_t share_zobj_count(void)
{
    return sh.zobj_used;
}

uint64_t share_reclaim(uint64_t want)
{
    static uint8_t buf[ZP_MAX_DATA];
    uint32_t victim[RECLAIM_VICTIMS], obj[RECLAIM_VICTIMS];
    uint64_t hash[RECLAIM_VICTIMS], salt[RECLAIM_VICTIMS];
    unsigned n = 0;
    if (!sh.on || !zpool_enabled() || !want)
        return 0;
    /* Candidates from a cursor over the stable table. */
    for (uint64_t k = 0; k < sh.size && n < RECLAIM_VICTIMS && n < want; k++) {
        struct stable_ent *e = &sh.stable[sh.reclaim_cursor];
        sh.reclaim_cursor = (sh.reclaim_cursor + 1) & (sh.size - 1);
        sh.st.reclaim_work++;
        if (e->state != SLOT_USED)
            continue;
        struct frame *f = frame_get(e->mfn);
        if (f->refcount > RECLAIM_MAX_REFS || f->gfn || (f->flags & FRAME_F_VICTIM))
            continue; /* widely mapped, or decoded from an object still alive */
        f->flags |= FRAME_F_VICTIM;
        victim[n] = e->mfn;
        hash[n] = e->hash;
        salt[n] = e->salt;
        obj[n] = ZOBJ_NO_FRAME;
        n++;
    }
    if (!n)
        return 0;
    sh.st.reclaim_runs++;
    /* A frame is cold when no GFN mapping it has its accessed bit set; a
     * set bit is cleared: its second chance. Finding the GFNs takes a walk
     * of every VM's p2m (there is no reverse map). */
    for (int v = 0; v < mm_vm_count(); v++) {
        struct p2m *p = mm_vm_at(v);
        for (uint64_t gfn = 0; gfn < p->ngfn; gfn++) {
            const struct p2m_entry *e = &p->map[gfn];
            sh.st.reclaim_work++;
            if (e->state != P2M_SHARED || !(frame_get(e->payload)->flags & FRAME_F_VICTIM))
                continue;
            /* Hot, or the page whose fault this reclaim runs for. */
            if (p2m_share_test_clear_accessed(p, gfn) || gfn == p->busy_gfn)
                frame_get(e->payload)->flags &= (uint8_t)~FRAME_F_VICTIM;
        }
        p2m_flush(p);
    }
    /* Each cold frame is compressed once into one object. */
    unsigned cold = 0;
    for (unsigned i = 0; i < n; i++) {
        struct frame *f = frame_get(victim[i]);
        if (!(f->flags & FRAME_F_VICTIM))
            continue;
        int len = cmp_compress_page(mm_phys_to_virt((uint64_t)victim[i] << PAGE_SHIFT), buf,
                                    (int)p2m_pool_max_len());
        uint32_t idx = len > 0 ? zobj_new() : ZOBJ_NO_FRAME;
        uint64_t h;
        if (idx == ZOBJ_NO_FRAME || zpool_store(buf, (unsigned)len, 0, idx, 0, &h) != ZP_STORED) {
            f->flags &= (uint8_t)~FRAME_F_VICTIM;
            sh.st.reclaim_refused++;
            continue;
        }
        struct zobj *z = &sh.zobj[idx];
        z->handle = h;
        z->hash = hash[i];
        z->salt = salt[i];
        z->refs = 0;
        z->mfn = ZOBJ_NO_FRAME;
        sh.zobj_used++;
        obj[i] = idx;
        cold++;
    }
    if (!cold)
        return 0;
    /* Every GFN of a cold frame now names its object; flush, then free. */
    for (int v = 0; v < mm_vm_count(); v++) {
        struct p2m *p = mm_vm_at(v);
        for (uint64_t gfn = 0; gfn < p->ngfn; gfn++) {
            const struct p2m_entry *e = &p->map[gfn];
            sh.st.reclaim_work++;
            if (e->state != P2M_SHARED || !(frame_get(e->payload)->flags & FRAME_F_VICTIM))
                continue;
            unsigned i = 0;
            while (victim[i] != e->payload)
                i++;
            frame_get(e->payload)->refcount--;
            sh.zobj[obj[i]].refs++;
            p2m_share_to_object(p, gfn, obj[i]);
        }
        p2m_flush(p);
    }
    uint64_t freed = 0;
    for (unsigned i = 0; i < n; i++) {
        struct frame *f = frame_get(victim[i]);
        if (obj[i] == ZOBJ_NO_FRAME) {
            f->flags &= (uint8_t)~FRAME_F_VICTIM;
            continue;
        }
        MM_ASSERT(f->refcount == 0 && sh.zobj[obj[i]].refs > 0);
        f->flags = 0;
        share_forget(victim[i], hash[i], salt[i]);
        frame_free(victim[i]);
        freed++;
        sh.st.reclaimed_frames++;
        sh.st.reclaimed_gfns += sh.zobj[obj[i]].refs;
    }
    return freed;
}

uint64_t share_check(void)
{
    uint64_t bad = 0, used = 0;
    if (!sh.on)
        return 0;
    for (uint64_t i = 0; i < sh.size; i++) {
        struct stable_ent *e = &sh.stable[i];
        if (e->state != SLOT_USED)
            continue;
        used++;
        struct frame *f = frame_get(e->mfn);
        if (f->state != FS_SHARED || !f->refcount) {
            if (bad++ < 8)
                pr_err(LS_MM, "share check: stable entry for frame %#x, which is %s (refcount %u)",
                       e->mfn, frame_state_name(f->state), f->refcount);
            continue;
        }
        if (share_hash(page_of(e->mfn), e->salt) != e->hash && bad++ < 8)
            pr_err(LS_MM, "share check: shared frame %#x changed under its hash", e->mfn);
        for (uint64_t j = i + 1; j < sh.size; j++)
            if (sh.stable[j].state == SLOT_USED && sh.stable[j].mfn == e->mfn && bad++ < 8)
                pr_err(LS_MM, "share check: frame %#x in the stable table twice", e->mfn);
    }
    uint64_t objs = 0;
    for (uint64_t i = 0; i < sh.nzobj; i++) {
        const struct zobj *z = &sh.zobj[i];
        if (!z->refs)
            continue;
        objs++;
        if (!zpool_check_object(z->handle, 0, i, (unsigned)(z->handle >> 48)) && bad++ < 8)
            pr_err(LS_MM, "share check: shared object %llu has no pool object",
                   (unsigned long long)i);
        if (z->mfn != ZOBJ_NO_FRAME &&
            (frame_get(z->mfn)->state != FS_SHARED || frame_get(z->mfn)->gfn != i + 1) &&
            bad++ < 8)
            pr_err(LS_MM, "share check: shared object %llu links frame %#x wrongly",
                   (unsigned long long)i, z->mfn);
    }
    if (objs != sh.zobj_used && bad++ < 8)
        pr_err(LS_MM, "share check: %llu shared objects counted as %llu",
               (unsigned long long)objs, (unsigned long long)sh.zobj_used);
    if (used != sh.stable_used && bad++ < 8)
        pr_err(LS_MM, "share check: %llu stable entries counted as %llu",
               (unsigned long long)used, (unsigned long long)sh.stable_used);
    return bad;
}

void share_get_stats(struct share_stats *st)
{
    *st = sh.st;
}

void share_print(void)
{
    if (!sh.on)
        return;
    struct frame_stats fs;
    frame_get_stats(&fs);
    uint64_t refs = 0;
    for (int i = 0; i < mm_vm_count(); i++)
        refs += mm_vm_at(i)->count[P2M_SHARED];
    uint64_t frames = fs.count[FS_SHARED];
    char a[16], r[16], ps[32] = "";
    uint64_t secs = sh.hz && sh.start ? (mm_now() - sh.start) / sh.hz : 0;
    if (secs)
        fmt_snprintf(ps, sizeof(ps), ", %llu/s", (unsigned long long)(sh.st.hashed / secs));
    uint64_t ratio = frames ? refs * 100 / frames : 0;
    fmt_snprintf(r, sizeof(r), "%llu.%02llu", (unsigned long long)(ratio / 100),
                 (unsigned long long)(ratio % 100));
    pr_info(LS_MM, "share: %llu frames mapped by %llu GFNs (ratio %s), saving %s; same-filled "
                   "returned %llu; %llu rounds, %llu hashed (%llu cycles/page%s), %llu unstable, "
                   "%llu compares, %llu collisions, %llu stale partners, %llu merges (%llu "
                   "cross-VM), rate %llu pages/tick, %llu visits in idle time; reclaimed as a whole "
                   "%llu frames of %llu GFNs, %llu objects now, %llu decoded",
            (unsigned long long)frames, (unsigned long long)refs, frames ? r : "n/a",
            fmt_size(a, sizeof(a), (refs - frames) * PAGE_SIZE),
            (unsigned long long)sh.st.zero_merged, (unsigned long long)sh.st.rounds,
            (unsigned long long)sh.st.hashed,
            (unsigned long long)(sh.st.hashed ? sh.st.cycles / sh.st.hashed : 0), ps,
            (unsigned long long)sh.st.unstable, (unsigned long long)sh.st.compares,
            (unsigned long long)sh.st.collisions, (unsigned long long)sh.st.stale,
            (unsigned long long)sh.st.merges,
            (unsigned long long)sh.st.merges_cross, (unsigned long long)sh.st.rate,
            (unsigned long long)sh.st.idle_visits, (unsigned long long)sh.st.reclaimed_frames,
            (unsigned long long)sh.st.reclaimed_gfns, (unsigned long long)sh.zobj_used,
            (unsigned long long)sh.st.zobj_decoded);
}

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

enum { SLOT_EMPTY = 0, SLOT_USED };

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
 * names it any more. Used iff refs > 0; a free one links the free list
 * through next. */
struct zobj {
    uint64_t handle;
    uint64_t hash, salt;      /* of the content: checked after decoding */
    uint32_t refs;            /* GFNs naming it (+ 1 while a reclaim pass holds it) */
    uint32_t mfn;             /* its decoded shared frame, or ZOBJ_NO_FRAME */
};
#define ZOBJ_NO_FRAME 0xffffffffu
#define FRAME_F_VICTIM 1u     /* frame.flags: chosen by share_reclaim */
#define RECLAIM_MAX_REFS 64   /* frames mapped more widely stay: hot, and cheap per GFN */

/* The unstable table's entries are valid for one round: epoch names it. */
struct unstable_ent {
    uint64_t hash;
    uint64_t gfn;
    uint16_t owner;
    uint16_t pad;
    uint32_t epoch;           /* the round it was entered in; 0: consumed */
};

/* Stable-table entries per salt, for the quota (share.h). At most one
 * salt per VM can hold entries (a salt's frames go with its last VM), so
 * twice that many records always suffice; a record is reused once its
 * salt holds nothing and no VM has it. */
#define SALT_RECORDS (2 * MM_MAX_VMS)
struct salt_rec {
    uint64_t salt;
    uint64_t used;            /* stable entries */
    uint64_t refused;         /* inserts refused: quota or full table */
    bool valid;
};

/* Who maps a shared frame: mapping GFNs per VM, for the charge (share.h).
 * A frame is mapped by at most MM_MAX_VMS live VMs at once (a VM's
 * mappings go before it does). Indexed by the frame's next field, which
 * only free frames use; one per stable entry. A free one links the free
 * list through count[0]. */
struct charge_rec {
    uint16_t owner[MM_MAX_VMS];
    uint32_t count[MM_MAX_VMS];
};

/* An incremental share_reclaim pass (share.h): victims chosen, then the
 * MARK walk (second chance), the compression, the REDIRECT walk. */
enum { RC_IDLE, RC_MARK, RC_REDIRECT };

static struct {
    bool on;
    uint32_t base_rate;
    struct stable_ent *stable;
    struct unstable_ent *unstable;
    uint64_t size;            /* entries per table, a power of two */
    uint64_t stable_used;
    uint32_t epoch;           /* the unstable table's current round, never 0 */
    mfn_t first;
    uint64_t frames;
    int vm;                   /* cursor: VM index and GFN */
    uint64_t gfn;
    uint64_t (*hash)(const void *page, uint64_t salt);
    uint64_t hz, start;       /* TSC rate and the first scan, for per-second rates */
    struct zobj *zobj;
    uint64_t nzobj, zobj_used;
    uint32_t zobj_free;       /* free list head, or ZOBJ_NO_FRAME */
    struct salt_rec salts[SALT_RECORDS];
    struct charge_rec *crec;  /* sh.size / 2 of them */
    uint32_t crec_free;
    struct {
        int phase;
        unsigned n;           /* victims */
        uint32_t victim[SHARE_RECLAIM_VICTIMS]; /* MFN, or ZOBJ_NO_FRAME once gone */
        uint32_t obj[SHARE_RECLAIM_VICTIMS];    /* its object (held), or ZOBJ_NO_FRAME */
        uint64_t hash[SHARE_RECLAIM_VICTIMS], salt[SHARE_RECLAIM_VICTIMS];
        int vm;               /* walk cursor */
        uint64_t gfn;
        uint64_t select;      /* candidate cursor over the stable table */
    } rc;
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
                     size / 2 * (sizeof(struct zobj) + sizeof(struct charge_rec));
    sh.frames = (bytes + PAGE_SIZE - 1) >> PAGE_SHIFT;
    sh.first = frame_alloc_contig(sh.frames, 1, FS_HV, 0);
    if (sh.first == MFN_INVALID)
        return -1;
    sh.stable = mm_phys_to_virt(sh.first << PAGE_SHIFT);
    sh.unstable = (struct unstable_ent *)(sh.stable + size);
    sh.zobj = (struct zobj *)(sh.unstable + size);
    sh.nzobj = size / 2;
    sh.crec = (struct charge_rec *)(sh.zobj + sh.nzobj);
    for (uint64_t i = 0; i < size / 2; i++)
        sh.crec[i].count[0] = i + 1 < size / 2 ? (uint32_t)(i + 1) : FRAME_NONE;
    sh.crec_free = 0;
    for (uint64_t i = 0; i < sh.nzobj; i++) {
        sh.zobj[i].mfn = ZOBJ_NO_FRAME;
        sh.zobj[i].handle = i + 1 < sh.nzobj ? i + 1 : ZOBJ_NO_FRAME;
    }
    sh.zobj_free = 0;
    sh.size = size;
    sh.epoch = 1;
    sh.base_rate = rate;
    sh.st.rate = rate;
    sh.on = true;
    return 0;
}

static void reclaim_end(void);

void share_fini(void)
{
    if (!sh.on)
        return;
    reclaim_end(); /* a pass cut short holds its objects */
    MM_ASSERT(sh.stable_used == 0 && sh.zobj_used == 0);
    frame_free_contig(sh.first, sh.frames);
    sh.on = false;
}

bool share_enabled(void)
{
    return sh.on;
}

/* ---- tables ---------------------------------------------------------------- */

/* Linear probing with deletion by backward shift (no tombstones): after a
 * deletion the table is exactly as if the entry had never been inserted,
 * so a table that churns keeps the probe lengths of its load factor (at
 * most one half). Every operation stops at the first empty slot. */

static void probed(uint64_t n)
{
    sh.st.probes += n;
    if (n > sh.st.probe_max)
        sh.st.probe_max = n;
}

static uint64_t home(uint64_t hash)
{
    return hash & (sh.size - 1);
}

static struct stable_ent *stable_find(uint64_t hash, uint64_t salt)
{
    for (uint64_t i = home(hash), n = 1; n <= sh.size; n++, i = (i + 1) & (sh.size - 1)) {
        struct stable_ent *e = &sh.stable[i];
        if (e->state == SLOT_EMPTY) {
            probed(n);
            return NULL;
        }
        if (e->hash == hash && e->salt == salt) {
            probed(n);
            return e;
        }
    }
    probed(sh.size);
    return NULL;
}

uint64_t share_probe_length(uint64_t hash, uint64_t salt)
{
    if (!sh.on)
        return 0;
    uint64_t n = 1;
    for (uint64_t i = home(hash); n < sh.size; n++, i = (i + 1) & (sh.size - 1)) {
        const struct stable_ent *e = &sh.stable[i];
        if (e->state == SLOT_EMPTY || (e->hash == hash && e->salt == salt))
            break;
    }
    return n;
}

/* Empties slot i, moving later entries of its cluster back into the hole
 * when their home slot allows it. */
static void stable_delete(uint64_t i)
{
    uint64_t mask = sh.size - 1, j = i, n = 1;
    for (;; n++) {
        j = (j + 1) & mask;
        struct stable_ent *e = &sh.stable[j];
        if (e->state == SLOT_EMPTY)
            break;
        uint64_t h = home(e->hash);
        /* e stays when its home lies cyclically in (i, j]. */
        bool stays = i <= j ? (h > i && h <= j) : (h > i || h <= j);
        if (!stays) {
            sh.stable[i] = *e;
            i = j;
        }
    }
    sh.stable[i].state = SLOT_EMPTY;
    probed(n);
}

static struct salt_rec *salt_rec(uint64_t salt, bool create)
{
    struct salt_rec *spare = NULL;
    for (unsigned i = 0; i < SALT_RECORDS; i++) {
        struct salt_rec *r = &sh.salts[i];
        if (r->valid && r->salt == salt)
            return r;
        if (!spare && (!r->valid || !r->used)) {
            bool live = false;
            for (int v = 0; r->valid && v < mm_vm_count() && !live; v++)
                live = mm_vm_at(v)->salt == r->salt;
            if (!live)
                spare = r;
        }
    }
    if (!create || !spare)
        return NULL;
    *spare = (struct salt_rec){ .salt = salt, .valid = true };
    return spare;
}

uint64_t share_salt_quota(void)
{
    /* Active salts: distinct salts of the registered VMs that share. */
    uint64_t seen[MM_MAX_VMS], n = 0;
    for (int v = 0; v < mm_vm_count() && n < MM_MAX_VMS; v++) {
        const struct p2m *p = mm_vm_at(v);
        bool dup = !p->share;
        for (uint64_t k = 0; k < n && !dup; k++)
            dup = seen[k] == p->salt;
        if (!dup)
            seen[n++] = p->salt;
    }
    uint64_t cap = sh.size / 2, q = cap / (n ? n : 1);
    return q < SHARE_SALT_FLOOR ? (SHARE_SALT_FLOOR < cap ? SHARE_SALT_FLOOR : cap) : q;
}

/* May salt have one more stable entry? Counts a refusal. */
static bool stable_room(uint64_t salt)
{
    struct salt_rec *r = salt_rec(salt, true);
    if (sh.stable_used >= sh.size / 2 || !r) {
        sh.st.table_full++;
        if (r)
            r->refused++;
        return false;
    }
    if (r->used >= share_salt_quota()) {
        sh.st.quota_refused++;
        r->refused++;
        return false;
    }
    return true;
}

static struct stable_ent *stable_insert(uint64_t hash, uint64_t salt, mfn_t mfn)
{
    if (!stable_room(salt))
        return NULL;
    for (uint64_t i = home(hash), n = 1;; i = (i + 1) & (sh.size - 1), n++) {
        struct stable_ent *e = &sh.stable[i];
        if (e->state == SLOT_EMPTY) {
            probed(n);
            e->hash = hash;
            e->salt = salt;
            e->mfn = (uint32_t)mfn;
            e->state = SLOT_USED;
            e->owners = 0;
            sh.stable_used++;
            salt_rec(salt, false)->used++;
            /* Room in the table means room here: one record per entry. */
            uint32_t c = sh.crec_free;
            MM_ASSERT(c != FRAME_NONE);
            sh.crec_free = sh.crec[c].count[0];
            memset(&sh.crec[c], 0, sizeof(sh.crec[c]));
            frame_get(mfn)->next = c;
            return e;
        }
    }
}

bool share_salt_usage(uint64_t salt, uint64_t *used, uint64_t *refused)
{
    struct salt_rec *r = sh.on ? salt_rec(salt, false) : NULL;
    if (!r)
        return false;
    *used = r->used;
    *refused = r->refused;
    return true;
}

/* A victim of the running reclaim pass stopped being a shared frame (or
 * is being freed by the pass itself): the pass forgets it. */
static void victim_gone(mfn_t mfn)
{
    struct frame *f = frame_get(mfn);
    if (!(f->flags & FRAME_F_VICTIM))
        return;
    f->flags &= (uint8_t)~FRAME_F_VICTIM;
    for (unsigned i = 0; i < sh.rc.n; i++)
        if (sh.rc.victim[i] == mfn)
            sh.rc.victim[i] = ZOBJ_NO_FRAME;
}

/* One mapping GFN's part of a frame mapped refs times, rounded up so
 * that the parts add up to at least the whole frame. */
static uint64_t part(uint64_t refs)
{
    return refs ? (SHARE_CHARGE_ONE + refs - 1) / refs : 0;
}

void share_charge(struct p2m *p, mfn_t m, int delta)
{
    struct frame *f = frame_get(m);
    MM_ASSERT(sh.on && f->state == FS_SHARED && f->next < sh.size / 2);
    struct charge_rec *c = &sh.crec[f->next];
    uint64_t now = f->refcount, before = now - (uint64_t)(int64_t)delta;
    int mine = -1, spare = -1;
    for (int k = 0; k < MM_MAX_VMS; k++) {
        if (c->count[k] && c->owner[k] == p->owner)
            mine = k;
        else if (!c->count[k] && spare < 0)
            spare = k;
    }
    if (mine < 0) {
        MM_ASSERT(delta > 0 && spare >= 0);
        mine = spare;
        c->owner[mine] = p->owner;
    }
    MM_ASSERT(delta > 0 || c->count[mine] >= (uint32_t)-delta);
    /* Every sharer's part changes with the reference count: O(VMs). */
    for (int k = 0; k < MM_MAX_VMS; k++) {
        if (!c->count[k] && k != mine)
            continue;
        struct p2m *q = k == mine ? p : mm_vm_by_owner(c->owner[k]);
        uint64_t n = c->count[k], n2 = k == mine ? n + (uint64_t)(int64_t)delta : n;
        if (q) {
            q->shared_charge -= n * part(before);
            q->shared_charge += n2 * part(now);
        }
        c->count[k] = (uint32_t)n2;
    }
}

void share_forget(mfn_t mfn, uint64_t hash, uint64_t salt)
{
    for (uint64_t i = home(hash), n = 0; sh.on && n < sh.size;
         n++, i = (i + 1) & (sh.size - 1)) {
        struct stable_ent *e = &sh.stable[i];
        if (e->state == SLOT_EMPTY)
            break;
        if (e->mfn == mfn) {
            probed(n + 1);
            struct salt_rec *r = salt_rec(e->salt, false);
            MM_ASSERT(r && r->used);
            r->used--;
            stable_delete(i);
            sh.stable_used--;
            victim_gone(mfn);
            struct frame *f = frame_get(mfn);
            struct charge_rec *c = &sh.crec[f->next];
            for (unsigned k = 0; k < MM_MAX_VMS; k++)
                MM_ASSERT(!c->count[k]); /* every mapping was uncharged */
            c->count[0] = sh.crec_free;
            sh.crec_free = f->next;
            f->next = FRAME_NONE;
            if (f->gfn) { /* decoded from a shared object still named by GFNs */
                MM_ASSERT(f->gfn <= sh.nzobj && sh.zobj[f->gfn - 1].mfn == mfn);
                sh.zobj[f->gfn - 1].mfn = ZOBJ_NO_FRAME;
                f->gfn = 0;
            }
            return;
        }
    }
    (void)salt;
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

/* A new round: every entry of the last one is stale. O(1): entries carry
 * their round; a wrapped counter (after 2^32 rounds) clears the table. */
static void unstable_clear(void)
{
    if (++sh.epoch == 0) {
        memset(sh.unstable, 0, sh.size * sizeof(struct unstable_ent));
        sh.epoch = 1;
    }
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

/* One resident GFN, e its entry. Returns true when it merged something. */
static bool visit(struct p2m *p, uint64_t gfn, struct p2m_entry *e)
{
    /* Same-filled pages are the p2m's business (a value, no frame): one
     * mechanism for zero pages, not two. Two different first words rule
     * it out without the call (most pages). */
    const uint64_t *w = page_of(e->payload);
    if (w[0] == w[1] && p2m_share_fill(p, gfn)) {
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
        /* A frame share_reclaim is taking away gains no new mappings: its
         * walk may have passed this GFN already. */
        if (frame_get(se->mfn)->flags & FRAME_F_VICTIM)
            return false;
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
    if (u->epoch == sh.epoch && u->hash == h && !(u->owner == p->owner && u->gfn == gfn)) {
        struct p2m *q = mm_vm_by_owner(u->owner);
        uint64_t qg = u->gfn;
        u->epoch = 0; /* consumed either way */
        /* The partner must still be what it was: resident, same salt,
         * and unchanged since it was hashed. */
        if (!q || !q->share || q->salt != p->salt || qg >= q->ngfn ||
            p2m_peek(q, qg)->state != P2M_RESIDENT || !(p2m_peek(q, qg)->flags & P2M_F_HASHED) ||
            p2m_peek(q, qg)->aux != (uint32_t)h)
            return false;
        if (!p2m_share_protect(p, gfn))
            return false;
        if (!p2m_share_protect(q, qg)) {
            p2m_share_unprotect(p, gfn);
            return false;
        }
        sh.st.compares++;
        if (memcmp(page_of(e->payload), page_of(p2m_peek(q, qg)->payload), PAGE_SIZE)) {
            sh.st.stale++; /* written since it was hashed (or a collision) */
            p2m_share_unprotect(p, gfn);
            p2m_share_unprotect(q, qg);
            return false;
        }
        if (!stable_room(p->salt)) { /* full, or this salt's share used up */
            p2m_share_unprotect(p, gfn);
            p2m_share_unprotect(q, qg);
            return false;
        }
        mfn_t m = p2m_share_promote(p, gfn);
        se = stable_insert(h, p->salt, m);
        share_charge(p, m, +1); /* its first mapping: promote made it 1 */
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
    u->epoch = sh.epoch;
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
        sh.gfn = p2m_next_touched(p, sh.gfn); /* untouched regions hold nothing to share */
        /* The policy slows the scan of a VM whose pages do not share
         * (p2m.share_every, mm/policy_alloc.c): it is visited only every
         * Nth round, its turn in the others is skipped at once. */
        if (sh.gfn < p->ngfn && p->share_every > 1 && sh.st.rounds % p->share_every &&
            sh.gfn == p2m_next_touched(p, 0))
            sh.gfn = p->ngfn;
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
        /* The GFNs of a map chunk without a resident page (shared,
         * same-filled, in the pool, never touched) are stepped over here,
         * entry by entry without a p2m call each: within a chunk the
         * entries are consecutive (p2m.h), and nothing here trims the map.
         * Each still counts as a visit, against n, and the run stops where
         * the budget is next looked at (every 8 visits). */
        struct p2m_entry *e = p2m_entry_rw(p, sh.gfn);
        sh.st.visited++;
        if (!p->share || !e) {
            sh.gfn++;
            continue;
        }
        while (e->state != P2M_RESIDENT && ((sh.gfn + 1) & (P2M_CHUNK_ENTRIES - 1)) &&
               sh.gfn + 1 < p->ngfn && k + 1 < n && ((k + 1) & 7) != 7) {
            e++;
            sh.gfn++;
            k++;
            sh.st.visited++;
        }
        if (e->state == P2M_RESIDENT)
            visit(p, sh.gfn, e);
        sh.gfn++;
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
    uint32_t i = sh.zobj_free;
    if (i == ZOBJ_NO_FRAME)
        return i;
    MM_ASSERT(i < sh.nzobj && !sh.zobj[i].refs);
    sh.zobj_free = (uint32_t)sh.zobj[i].handle;
    return i;
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
    z->handle = sh.zobj_free;
    sh.zobj_free = idx;
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

/* Candidates from a cursor over the stable table, a slot per unit. */
static void reclaim_select(uint64_t *budget, uint64_t want)
{
    sh.rc.n = 0;
    for (uint64_t k = 0; k < sh.size && *budget && sh.rc.n < SHARE_RECLAIM_VICTIMS &&
                         sh.rc.n < want;
         k++) {
        (*budget)--;
        sh.st.reclaim_work++;
        struct stable_ent *e = &sh.stable[sh.rc.select];
        sh.rc.select = (sh.rc.select + 1) & (sh.size - 1);
        if (e->state != SLOT_USED)
            continue;
        struct frame *f = frame_get(e->mfn);
        if (f->refcount > RECLAIM_MAX_REFS || f->gfn || (f->flags & FRAME_F_VICTIM))
            continue; /* widely mapped, or decoded from an object still alive */
        f->flags |= FRAME_F_VICTIM;
        unsigned i = sh.rc.n++;
        sh.rc.victim[i] = e->mfn;
        sh.rc.hash[i] = e->hash;
        sh.rc.salt[i] = e->salt;
        sh.rc.obj[i] = ZOBJ_NO_FRAME;
    }
}

static int victim_index(mfn_t m)
{
    for (unsigned i = 0; i < sh.rc.n; i++)
        if (sh.rc.victim[i] == m)
            return (int)i;
    return -1;
}

/* One GFN of the MARK walk: a victim mapped by a GFN accessed since the
 * last pass (its bit is cleared: the second chance), or by the GFN whose
 * fault this reclaim runs for, stays. */
static void mark_one(struct p2m *p, uint64_t gfn)
{
    const struct p2m_entry *e = p2m_peek(p, gfn);
    if (e->state != P2M_SHARED || !(frame_get(e->payload)->flags & FRAME_F_VICTIM))
        return;
    if (p2m_share_test_clear_accessed(p, gfn) || gfn == p->busy_gfn) {
        int i = victim_index(e->payload);
        frame_get(e->payload)->flags &= (uint8_t)~FRAME_F_VICTIM;
        MM_ASSERT(i >= 0);
        sh.rc.victim[i] = ZOBJ_NO_FRAME;
    }
}

/* Frames whose last mapping the REDIRECT walk took in this VM's chunk,
 * freed after its flush. */
static uint32_t pending[SHARE_RECLAIM_VICTIMS];
static unsigned npending;

static void redirect_one(struct p2m *p, uint64_t gfn)
{
    const struct p2m_entry *e = p2m_peek(p, gfn);
    if (e->state != P2M_SHARED || !(frame_get(e->payload)->flags & FRAME_F_VICTIM))
        return;
    mfn_t m = e->payload;
    int i = victim_index(m);
    MM_ASSERT(i >= 0 && sh.rc.obj[i] != ZOBJ_NO_FRAME);
    struct frame *f = frame_get(m);
    f->refcount--;
    share_charge(p, m, -1);
    sh.zobj[sh.rc.obj[i]].refs++;
    p2m_share_to_object(p, gfn, sh.rc.obj[i]);
    sh.st.reclaimed_gfns++;
    if (!f->refcount)
        pending[npending++] = (uint32_t)m;
}

/* Walks every VM's GFNs from the pass cursor, a GFN per unit, flushing
 * each VM's EPT at the end of its chunk. True when the walk is done. */
static bool reclaim_walk(uint64_t *budget, void (*one)(struct p2m *, uint64_t), uint64_t *freed)
{
    while (*budget) {
        struct p2m *p = mm_vm_at(sh.rc.vm);
        if (!p)
            return true;
        /* A GFN, or a region never touched, per unit. */
        uint64_t units = 0;
        while (units < *budget && sh.rc.gfn < p->ngfn) {
            uint64_t next = p2m_next_touched(p, sh.rc.gfn);
            units++;
            if (next != sh.rc.gfn) {
                sh.rc.gfn = next;
                continue;
            }
            one(p, sh.rc.gfn++);
        }
        *budget -= units;
        sh.st.reclaim_work += units;
        p2m_flush(p);
        /* No TLB of this VM reaches them now; other VMs flushed theirs
         * when the walk left them. */
        for (unsigned k = 0; k < npending; k++) {
            mfn_t m = pending[k];
            int i = victim_index(m);
            share_forget(m, sh.rc.hash[i], sh.rc.salt[i]); /* unlinks the object too */
            frame_free(m);
            (*freed)++;
            sh.st.reclaimed_frames++;
        }
        npending = 0;
        if (sh.rc.gfn >= p->ngfn) {
            sh.rc.vm++;
            sh.rc.gfn = 0;
        }
    }
    return !mm_vm_at(sh.rc.vm);
}

/* Each victim still cold is compressed once into one object, which the
 * pass holds and links to the frame as its decoded frame: from then on a
 * GFN of the frame may name the object or map the frame, either is
 * consistent, so the walk can be cut anywhere. Returns objects made. */
static unsigned reclaim_compress(void)
{
    static uint8_t buf[ZP_MAX_DATA];
    unsigned made = 0;
    for (unsigned i = 0; i < sh.rc.n; i++) {
        if (sh.rc.victim[i] == ZOBJ_NO_FRAME)
            continue;
        mfn_t m = sh.rc.victim[i];
        struct frame *f = frame_get(m);
        int len = cmp_compress_page(mm_phys_to_virt(m << PAGE_SHIFT), buf,
                                    (int)p2m_pool_max_len());
        uint32_t idx = len > 0 ? zobj_new() : ZOBJ_NO_FRAME;
        uint64_t h;
        if (idx != ZOBJ_NO_FRAME && zpool_store(buf, (unsigned)len, 0, idx, 0, &h) != ZP_STORED) {
            sh.zobj[idx].handle = sh.zobj_free; /* back on the free list */
            sh.zobj_free = idx;
            idx = ZOBJ_NO_FRAME;
        }
        if (idx == ZOBJ_NO_FRAME) {
            f->flags &= (uint8_t)~FRAME_F_VICTIM;
            sh.rc.victim[i] = ZOBJ_NO_FRAME;
            sh.st.reclaim_refused++;
            continue;
        }
        struct zobj *z = &sh.zobj[idx];
        z->handle = h;
        z->hash = sh.rc.hash[i];
        z->salt = sh.rc.salt[i];
        z->refs = 1; /* the pass's own */
        z->mfn = (uint32_t)m;
        f->gfn = idx + 1;
        sh.zobj_used++;
        sh.rc.obj[i] = idx;
        made++;
    }
    return made;
}

/* Ends the pass: frames still mapped stay shared (linked to their object
 * while GFNs name it), and the pass lets go of its objects. */
static void reclaim_end(void)
{
    for (unsigned i = 0; i < sh.rc.n; i++) {
        if (sh.rc.victim[i] != ZOBJ_NO_FRAME)
            frame_get(sh.rc.victim[i])->flags &= (uint8_t)~FRAME_F_VICTIM;
        if (sh.rc.obj[i] != ZOBJ_NO_FRAME)
            share_zobj_put(sh.rc.obj[i]);
    }
    sh.rc.n = 0;
    sh.rc.phase = RC_IDLE;
}

uint64_t share_reclaim(uint64_t want)
{
    uint64_t budget = SHARE_RECLAIM_BUDGET, freed = 0;
    if (!sh.on || !zpool_enabled() || !want)
        return 0;
    if (sh.rc.phase == RC_IDLE) {
        reclaim_select(&budget, want);
        if (!sh.rc.n)
            return 0;
        sh.st.reclaim_runs++;
        sh.rc.phase = RC_MARK;
        sh.rc.vm = 0;
        sh.rc.gfn = 0;
    }
    if (sh.rc.phase == RC_MARK) {
        if (!reclaim_walk(&budget, mark_one, &freed))
            return freed;
        if (!reclaim_compress()) {
            reclaim_end();
            return freed;
        }
        sh.rc.phase = RC_REDIRECT;
        sh.rc.vm = 0;
        sh.rc.gfn = 0;
    }
    if (reclaim_walk(&budget, redirect_one, &freed))
        reclaim_end();
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
    /* Charges: every entry's record adds up to its frame's reference
     * count, and every VM's charge is the sum of its parts. */
    uint64_t charge[MM_MAX_VMS] = { 0 };
    for (uint64_t i = 0; i < sh.size; i++) {
        const struct stable_ent *e = &sh.stable[i];
        if (e->state != SLOT_USED)
            continue;
        const struct frame *f = frame_get(e->mfn);
        if (f->next >= sh.size / 2) {
            if (bad++ < 8)
                pr_err(LS_MM, "share check: shared frame %#x has no charge record", e->mfn);
            continue;
        }
        const struct charge_rec *c = &sh.crec[f->next];
        uint64_t sum = 0;
        for (int k = 0; k < MM_MAX_VMS; k++) {
            if (!c->count[k])
                continue;
            sum += c->count[k];
            for (int v = 0; v < mm_vm_count() && v < MM_MAX_VMS; v++)
                if (mm_vm_at(v)->owner == c->owner[k])
                    charge[v] += c->count[k] * part(f->refcount);
        }
        if (sum != f->refcount && bad++ < 8)
            pr_err(LS_MM, "share check: shared frame %#x has %llu charged mappings, refcount %u",
                   e->mfn, (unsigned long long)sum, f->refcount);
    }
    for (int v = 0; v < mm_vm_count() && v < MM_MAX_VMS; v++)
        if (charge[v] != mm_vm_at(v)->shared_charge && bad++ < 8)
            pr_err(LS_MM, "share check: vm %s is charged %#llx for shared frames, its parts "
                          "add up to %#llx",
                   mm_vm_at(v)->name, (unsigned long long)mm_vm_at(v)->shared_charge,
                   (unsigned long long)charge[v]);
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
                   "%llu frames of %llu GFNs, %llu objects now, %llu decoded; table refused "
                   "%llu full + %llu over a salt's share (%llu each), longest probe %llu",
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
            (unsigned long long)sh.st.zobj_decoded, (unsigned long long)sh.st.table_full,
            (unsigned long long)sh.st.quota_refused, (unsigned long long)share_salt_quota(),
            (unsigned long long)sh.st.probe_max);
}

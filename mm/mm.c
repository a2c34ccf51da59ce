/* Machine-level accounting and its guarantees. Admission reserves frames;
 * allocation beyond a VM's reservation must leave the low mark and the
 * other VMs' unused reservations intact, and a VM at its limit reclaims
 * from itself first. Reclaim run here is direct reclaim (inside a fault):
 * on the VM at its limit or, below the low mark, on the machine in the
 * policy's order (mm/policy.c: policy_reclaim_machine). Also here: the
 * pool's compaction and the statistics lines. */
#include "mm/mm.h"
#include "mm/balloon.h"
#include "mm/policy_alloc.h"
#include "lib/fmt.h"
#include "mm/mm_backend.h"
#include "lib/log.h"
#include "mm/policy.h"
#include "mm/policy_admit.h"
#include "mm/share.h"
#include "mm/swap.h"
#include "mm/zpool.h"

static struct p2m *vms[MM_MAX_VMS];
static int nvms;
static struct mm_stats stats;

/* Compaction moved a pool object: tell the owner's p2m. */
static bool relocate(uint16_t owner, uint64_t gfn, uint64_t old_handle, uint64_t new_handle)
{
    if (owner == 0) /* a shared frame's object: gfn is its index */
        return gfn <= 0xffffffffu && share_zobj_relocated((uint32_t)gfn, old_handle, new_handle);
    struct p2m *p = mm_vm_by_owner(owner);
    /* A damaged header may name nobody. */
    return p && p2m_pool_relocated(p, gfn, old_handle, new_handle);
}

int mm_pool_init(uint64_t cap_frames, unsigned max_len, bool checksum)
{
    p2m_set_pool_params(max_len, checksum);
    return zpool_init(cap_frames, relocate);
}

void mm_periodic(void)
{
    struct zpool_stats zs;
    zpool_get_stats(&zs);
    /* Compact once a sixteenth of the pool (at least 4 frames) is slack. */
    uint64_t wasted = zpool_wasted_frames();
    if (wasted >= 4 && wasted * 16 >= zs.frames)
        zpool_compact(MM_COMPACT_MOVES * 8);
    policy_resize_tick(); /* shrinks waiting for their balloon */
}

void mm_set_watermark(uint64_t frames)
{
    policy_set_low_mark(frames);
}

uint64_t mm_watermark(void)
{
    return policy_low_mark();
}

/* A reservation covers the reserved pages and the metadata they need (at
 * most the overhead allowance of that size). */
static uint64_t reserved_charge(const struct p2m *q)
{
    return q->reserve ? q->reserve + P2M_OVERHEAD_ALLOWANCE(q->reserve) : 0;
}

static uint64_t owed(const struct p2m *q)
{
    uint64_t r = reserved_charge(q), c = p2m_charge(q);
    return r > c ? r - c : 0;
}

/* Within its reservation, a VM takes frames owed to nobody else. */
static bool within_reservation(const struct p2m *p)
{
    return p->count[P2M_RESIDENT] < p->reserve && p2m_charge(p) < reserved_charge(p);
}

/* Frames other VMs are still owed by their reservations. */
static uint64_t owed_to_others(const struct p2m *self)
{
    uint64_t sum = 0;
    for (int i = 0; i < nvms; i++)
        if (vms[i] != self)
            sum += owed(vms[i]);
    return sum;
}

uint64_t mm_owed_reservations(void)
{
    return owed_to_others(NULL);
}

uint64_t mm_usable_frames(void)
{
    struct frame_stats fs;
    frame_get_stats(&fs);
    return fs.count[FS_FREE] + fs.count[FS_VM] + fs.count[FS_SHARED] + fs.count[FS_POOL];
}

int mm_register(struct p2m *p)
{
    if (nvms >= MM_MAX_VMS)
        return -1;
    /* The decision is the admission policy's (mm/policy_admit.c). */
    struct admit_view v = {
        .free = frame_free_count(),
        .owed_others = owed_to_others(p),
        .watermark = mm_watermark(),
        .machine = mm_usable_frames(),
    };
    for (int i = 0; i < nvms; i++)
        v.admitted += policy_admit_size(vms[i]);
    char why[192];
    if (policy_admit_decide(p, owed(p), &v, why, sizeof(why))) {
        policy_admit_set_reason(why);
        pr_err(LS_MM, "%s", why);
        return -1;
    }
    vms[nvms++] = p;
    return 0;
}

void mm_unregister(struct p2m *p)
{
    for (int i = 0; i < nvms; i++) {
        if (vms[i] == p) {
            vms[i] = vms[--nvms];
            return;
        }
    }
}

/* May p take one more frame without eating into the watermark or into
 * reservations of others? */
static bool machine_allows(const struct p2m *p)
{
    uint64_t free = frame_free_count();
    if (!free)
        return false;
    if (within_reservation(p))
        return true; /* its own reservation: counted in free, owed to nobody else */
    /* A VM asked to inflate may need a frame to give one back (a guest
     * that zeroes pages on allocation touches each page its balloon
     * takes): it may use half the watermark. */
    uint64_t watermark = mm_watermark();
    uint64_t floor = p->bl.target > p->count[P2M_BALLOONED] ? watermark / 2 : watermark;
    return free > owed_to_others(p) + floor;
}

bool mm_resident_room(struct p2m *p)
{
    /* A shared frame becoming its last mapper's private one moves its whole
     * charge from the shared part to the private part: only the private
     * count itself must stay within the limit. */
    if (!p->limited || p->count[P2M_RESIDENT] < p->limit)
        return true;
    stats.allocs_over_limit++;
    stats.reclaim_runs++;
    p->direct_reclaim = true;
    stats.reclaimed += policy_reclaim_vm(p, MM_RECLAIM_BATCH, MM_RECLAIM_SCAN, P2M_RT_ALL, true);
    if (p->count[P2M_RESIDENT] < p->limit)
        return true;
    p->st.waits++;
    stats.waits++;
    return false;
}

int mm_vm_count(void)
{
    return nvms;
}

struct p2m *mm_vm_at(int i)
{
    return i >= 0 && i < nvms ? vms[i] : NULL;
}

struct p2m *mm_vm_by_owner(uint16_t owner)
{
    for (int i = 0; i < nvms; i++)
        if (vms[i]->owner == owner)
            return vms[i];
    return NULL;
}

uint64_t mm_charged(const struct p2m *p)
{
    return p2m_guest_charge(p);
}

/* At its limit: private pages first, then (when shared frames make part
 * of the charge) shared frames reclaimed whole, a bounded step. */
static bool charge_room(struct p2m *p)
{
    if (!p2m_at_limit(p))
        return true;
    stats.allocs_over_limit++;
    stats.reclaim_runs++;
    p->direct_reclaim = true;
    stats.reclaimed += policy_reclaim_vm(p, MM_RECLAIM_BATCH, MM_RECLAIM_SCAN, P2M_RT_ALL, true);
    if (p2m_at_limit(p) && p->shared_charge)
        stats.reclaimed += share_reclaim(MM_RECLAIM_BATCH);
    if (!p2m_at_limit(p))
        return true;
    p->st.waits++;
    stats.waits++;
    return false;
}

bool mm_charge_room(struct p2m *p)
{
    return charge_room(p);
}

/* One frame charged to p (a guest page or p's metadata), of state s. */
static mfn_t charged_frame(struct p2m *p, enum frame_state s)
{
    if (!charge_room(p))
        return MFN_INVALID;
    if (!machine_allows(p)) {
        /* Below the low mark: the state is low, whose techniques include
         * direct reclaim; one bounded batch. */
        stats.allocs_over_watermark++;
        stats.reclaim_runs++;
        p->direct_reclaim = true;
        policy_update();
        policy_order(PT_DIRECT);
        stats.reclaimed += policy_reclaim_machine(MM_RECLAIM_BATCH, MM_RECLAIM_SCAN, P2M_RT_ALL);
        if (!machine_allows(p)) {
            p->st.waits++;
            stats.waits++;
            return MFN_INVALID;
        }
    }
    mfn_t m = frame_alloc(s, p->owner);
    if (m == MFN_INVALID) {
        p->st.waits++;
        stats.waits++;
    }
    return m;
}

mfn_t mm_frame_for(struct p2m *p)
{
    return charged_frame(p, FS_VM);
}

mfn_t mm_meta_frame(struct p2m *p, enum frame_state s)
{
    mfn_t m = charged_frame(p, s);
    if (m != MFN_INVALID)
        p->meta++;
    return m;
}

uint64_t mm_reclaim_for_waiters(void)
{
    /* A whole turn after second chances of the largest VM (p2m_reclaim
     * caps each VM at twice its own size). */
    uint64_t max_scan = 0;
    for (int i = 0; i < nvms; i++)
        if (2 * vms[i]->ngfn > max_scan)
            max_scan = 2 * vms[i]->ngfn;
    stats.reclaim_runs++;
    /* Enough for several faults, so waiters do not come straight back. */
    uint64_t got = policy_reclaim_machine(MM_RECLAIM_BATCH * 4, max_scan, P2M_RT_ALL);
    stats.reclaimed += got;
    return got;
}

uint64_t mm_overcommit_permille(void)
{
    uint64_t usable = mm_usable_frames();
    uint64_t configured = 0;
    for (int i = 0; i < nvms; i++)
        configured += policy_admit_size(vms[i]); /* a resizable VM: its size now */
    return usable ? configured * 1000 / usable : 0;
}

void mm_get_stats(struct mm_stats *s)
{
    *s = stats;
}

/* x.yy from a ratio num/den. */
static const char *ratio(char *buf, unsigned n, uint64_t num, uint64_t den)
{
    if (!den)
        return "n/a";
    uint64_t r = num * 100 / den;
    fmt_snprintf(buf, n, "%llu.%02llu", (unsigned long long)(r / 100),
                 (unsigned long long)(r % 100));
    return buf;
}

void mm_print_vm(struct p2m *p)
{
    char a[16], b[16], c[16], d[16], e[16];
    pr_info(LS_MM, "vm %s: configured %s resident %s (peak %s) zero-reclaimed %llu ws %s "
                   "faults: demand-zero %llu refill %llu decompress %llu copy-on-write %llu "
                   "swap-in %llu spurious %llu; waits %llu invept %llu",
            p->name, fmt_size(a, sizeof(a), p->ngfn * PAGE_SIZE),
            fmt_size(b, sizeof(b), p->count[P2M_RESIDENT] * PAGE_SIZE),
            fmt_size(c, sizeof(c), p->st.peak_resident * PAGE_SIZE),
            (unsigned long long)p->st.zero_reclaimed,
            p->ad ? fmt_size(d, sizeof(d), p->st.ws_pages * PAGE_SIZE) : "n/a",
            (unsigned long long)p->st.faults[PF_DEMAND_ZERO],
            (unsigned long long)p->st.faults[PF_REFILL],
            (unsigned long long)p->st.faults[PF_DECOMPRESS],
            (unsigned long long)p->st.faults[PF_COW],
            (unsigned long long)p->st.faults[PF_SWAPIN],
            (unsigned long long)p->st.faults[PF_SPURIOUS], (unsigned long long)p->st.waits,
            (unsigned long long)p->st.invept);
    pr_info(LS_MM, "vm %s: metadata %llu frames (map top %llu, directories %llu, chunks %llu; "
                   "EPT tables %llu), charged %llu frames = resident %llu + metadata%s; sweep "
                   "round %llu entries, faults waiting for metadata %llu",
            p->name, (unsigned long long)p->meta, (unsigned long long)p->map_frames,
            (unsigned long long)p->st.map_dirs, (unsigned long long)p->st.map_chunks,
            (unsigned long long)(p->st.ept_tables + 1), (unsigned long long)p2m_charge(p),
            (unsigned long long)p->count[P2M_RESIDENT],
            p->limited ? "" : " (no limit)", (unsigned long long)p->st.sweep_visited,
            (unsigned long long)p->st.waits_meta);
    if (share_enabled() && p->share)
        pr_info(LS_MM, "vm %s: share: shared now %llu (salt %#llx), merged %llu (with another "
                       "VM's frame %llu), same-filled returned %llu, copy-on-write %llu "
                       "(last reference %llu)",
                p->name, (unsigned long long)p->count[P2M_SHARED], (unsigned long long)p->salt,
                (unsigned long long)p->st.share_merged, (unsigned long long)p->st.share_cross,
                (unsigned long long)p->st.share_zero, (unsigned long long)p->st.cow_copies,
                (unsigned long long)p->st.cow_last);
    if (swap_enabled())
        pr_info(LS_MM, "vm %s: swap: swapped now %llu, clean copies kept %llu; out %llu pages + "
                       "%llu pool objects, in %llu, dropped clean %llu, copies freed by writes "
                       "%llu, kept resident after a failed write %llu, read errors %llu, "
                       "corrupt %llu",
                p->name, (unsigned long long)p->count[P2M_SWAPPED],
                (unsigned long long)p->swap_cached, (unsigned long long)p->st.swap_out,
                (unsigned long long)p->st.swap_out_lz4,
                (unsigned long long)p->st.faults[PF_SWAPIN],
                (unsigned long long)p->st.swap_dropped,
                (unsigned long long)p->st.swap_cache_freed, (unsigned long long)p->st.swap_kept,
                (unsigned long long)p->st.swap_read_errors,
                (unsigned long long)p->st.swap_corrupt);
    balloon_print_vm(p);
    policy_alloc_print_vm(p);
    if (!p->compress || !zpool_enabled())
        return;
    uint64_t n = p->count[P2M_COMPRESSED];
    pr_info(LS_MM, "vm %s: pool: compressed now %llu (%s in %s, ratio %s), same-filled now "
                   "%llu (non-zero reclaims %llu), compressions %llu, decompressions %llu, "
                   "incompressible %llu (flagged now %llu), refused %llu, corrupt %llu",
            p->name, (unsigned long long)n, fmt_size(a, sizeof(a), n * PAGE_SIZE),
            fmt_size(b, sizeof(b), p->st.pool_bytes),
            ratio(e, sizeof(e), n * PAGE_SIZE, p->st.pool_bytes),
            (unsigned long long)p->count[P2M_FILLED], (unsigned long long)p->st.filled,
            (unsigned long long)p->st.compressed, (unsigned long long)p->st.faults[PF_DECOMPRESS],
            (unsigned long long)p->st.incompressible,
            (unsigned long long)p->st.incompressible_now, (unsigned long long)p->st.pool_refused,
            (unsigned long long)p->st.corrupt);
}

void mm_print_pool(void)
{
    struct zpool_stats z;
    char a[16], b[16], c[16], d[16], e[16];
    if (!zpool_enabled())
        return;
    zpool_get_stats(&z);
    pr_info(LS_MM, "pool: %llu pages in %llu frames (%s of %s cap, peak %llu frames), stored %s "
                   "(ratio %s, density %s), stores %llu loads %llu frees %llu, refused full %llu "
                   "no-memory %llu, compactions %llu moved %llu freed %llu frames, corrupt %llu",
            (unsigned long long)z.objects, (unsigned long long)z.frames,
            fmt_size(a, sizeof(a), z.frames * PAGE_SIZE),
            fmt_size(b, sizeof(b), z.cap_frames * PAGE_SIZE), (unsigned long long)z.peak_frames,
            fmt_size(c, sizeof(c), z.data_bytes),
            ratio(d, sizeof(d), z.objects * PAGE_SIZE, z.data_bytes),
            ratio(e, sizeof(e), z.data_bytes, z.frames * PAGE_SIZE), (unsigned long long)z.stores,
            (unsigned long long)z.loads, (unsigned long long)z.frees, (unsigned long long)z.full,
            (unsigned long long)z.nomem, (unsigned long long)z.compactions,
            (unsigned long long)z.moved, (unsigned long long)z.compact_freed,
            (unsigned long long)z.corrupt);
}

void mm_print_stats(void)
{
    char a[16];
    for (int i = 0; i < nvms; i++)
        mm_print_vm(vms[i]);
    mm_print_pool();
    share_print();
    swap_print();
    balloon_policy_print();
    policy_print();
    uint64_t oc = mm_overcommit_permille();
    pr_info(LS_MM, "machine: free %s, overcommit %llu.%02llu, reclaim runs %llu freed %llu, "
                   "waits %llu",
            fmt_size(a, sizeof(a), frame_free_count() * PAGE_SIZE),
            (unsigned long long)(oc / 1000), (unsigned long long)(oc % 1000 / 10),
            (unsigned long long)stats.reclaim_runs, (unsigned long long)stats.reclaimed,
            (unsigned long long)stats.waits);
}

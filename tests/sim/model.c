#include "tests/sim/model.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "mm/ept.h"
#include "mm/mm.h"
#include "mm/mm_backend.h"
#include "mm/share.h"
#include "mm/swap.h"
#include "mm/zpool.h"

struct sim_world *sim;
static uint8_t *arena;
static struct frame *table;

#define TAG_MAGIC 0x5349476d61676963ULL

/* ---- the mm/ backend -------------------------------------------------- */

void *mm_phys_to_virt(uint64_t pa)
{
    if (pa >= sim->frames * PAGE_SIZE) {
        fprintf(stderr, "sim: mm/ touched machine address %#llx outside the arena\n",
                (unsigned long long)pa);
        abort();
    }
    return arena + pa;
}

void mm_panic(const char *file, int line, const char *msg)
{
    fprintf(stderr, "sim: mm/ panic at %s:%d: %s\n", file, line, msg);
    abort();
}

static bool has(const char *s, size_t n, const char *w)
{
    size_t k = strlen(w);
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp(s + i, w, k))
            return true;
    return false;
}

void log_sink_write(const char *s, size_t n)
{
    if (getenv("SIM_VERBOSE"))
        fwrite(s, 1, n, stderr);
    if (has(s, n, "p2m check") || has(s, n, "zpool check") || has(s, n, "corrupt"))
        fwrite(s, 1, n, stderr);
}

/* INVEPT: the VM whose EPT this is loses every cached translation. */
void mm_invept(uint64_t eptp)
{
    for (int i = 0; i < sim->nvms; i++)
        if (sim->vm[i].live && sim->vm[i].p2m.eptp == eptp)
            memset(sim->vm[i].tlb, 0, sizeof(sim->vm[i].tlb));
}

/* ---- world ------------------------------------------------------------ */

/* The swap device: host memory standing in for a disk, small enough to
 * fill (the full path gets traffic), failing every 61st write (the
 * write-error path: pages stay resident, reclaim tries again). */
#define SIM_SWAP_SECTORS (6u << 11) /* 6 MiB of 512-byte sectors */
static uint8_t *swap_disk;
static uint64_t swap_writes;

static int swap_rw(struct blkdev *d, bool write, uint64_t lba, uint32_t count, void *buf)
{
    uint64_t off = lba * d->sector_size, len = (uint64_t)count * d->sector_size;
    if (write) {
        if (++swap_writes % 61 == 0) {
            snprintf(d->last_error, sizeof(d->last_error), "simulated write error");
            return BLK_EIO;
        }
        memcpy(swap_disk + off, buf, len);
    } else {
        memcpy(buf, swap_disk + off, len);
    }
    return BLK_OK;
}

static const struct blk_ops swap_ops = { .rw = swap_rw };
static struct blkdev swap_dev = {
    .name = "simswap", .kind = "memory", .model = "sim", .sector_size = 512,
    .sectors = SIM_SWAP_SECTORS, .max_sectors = 64, .ops = &swap_ops,
};

uint64_t sim_swap_write_errors(void)
{
    return swap_dev.st.errors;
}

void sim_init(uint64_t nframes)
{
    sim = calloc(1, sizeof(*sim));
    sim->frames = nframes;
    arena = aligned_alloc(4096, nframes * PAGE_SIZE);
    memset(arena, 0xa5, nframes * PAGE_SIZE); /* unzeroed frames are visible */
    table = calloc(nframes, sizeof(struct frame));
    frame_init(table, nframes);
    frame_add_free(1, nframes - 1);
    mm_set_watermark(16);
    /* A pool of 1/32 of the machine (it fills: refusals, write-back to swap),
     * checksums on (testing mode). */
    if (mm_pool_init(nframes / 32, 2048, true) || share_init(nframes, 256)) {
        fprintf(stderr, "sim: no memory for the pool's or the share scanner's tables\n");
        abort();
    }
    swap_disk = calloc(SIM_SWAP_SECTORS, 512);
    swap_writes = 0;
    swap_dev.failed = false;
    memset(&swap_dev.st, 0, sizeof(swap_dev.st));
    /* The injected write errors and the full device are expected here: no
     * warning per event (errors of mm/ itself are still printed). */
    log_set_level(LS_MM, LOG_ERR);
    log_set_level(LS_DRV, LOG_QUIET);
    if (swap_attach(&swap_dev, 0, SIM_SWAP_SECTORS, true)) {
        fprintf(stderr, "sim: swap_attach failed\n");
        abort();
    }
    /* A back-off of a cycle: retries depend on the sequence of accesses,
     * not on host time, so a seed replays exactly. */
    swap_set_clock(4);
}

void sim_fini(void)
{
    for (int i = 0; i < sim->nvms; i++)
        if (sim->vm[i].live)
            sim_remove_vm(i);
    share_fini(); /* before the pool: a reclaim pass cut short releases its objects */
    zpool_fini();
    swap_detach();
    free(swap_disk);
    free(arena);
    free(table);
    free(sim);
    sim = NULL;
}

int sim_add_vm(uint64_t ngfn, uint64_t reserve, uint64_t limit, bool ad)
{
    int i = sim->nvms;
    if (i >= SIM_MAX_VMS)
        return -1;
    struct sim_vm *v = &sim->vm[i];
    memset(v, 0, sizeof(*v));
    char name[16];
    snprintf(name, sizeof(name), "sim%d", i);
    if (p2m_init(&v->p2m, (uint16_t)(i + 1), name, ngfn, reserve, limit, ad))
        return -1;
    if (mm_register(&v->p2m)) {
        p2m_destroy(&v->p2m);
        return -1;
    }
    v->ngfn = ngfn;
    v->gen = calloc(ngfn, sizeof(uint64_t));
    v->live = true;
    sim->nvms++;
    return i;
}

void sim_remove_vm(int i)
{
    struct sim_vm *v = &sim->vm[i];
    mm_unregister(&v->p2m);
    p2m_destroy(&v->p2m);
    free(v->gen);
    v->gen = NULL;
    v->live = false;
}

static void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void violation(const char *fmt, ...)
{
    va_list ap;
    if (sim->c.violations++ < 20) {
        va_start(ap, fmt);
        fprintf(stderr, "sim: INVARIANT VIOLATION: ");
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\n");
        va_end(ap);
    }
}

/* ---- the EPT hardware -------------------------------------------------- */

/* Translation as the CPU would do it: TLB first, else a walk of the tables
 * in memory, setting A (and D on writes) in the leaf like the hardware. */
static bool translate(struct sim_vm *v, uint64_t gfn, bool write, uint64_t *mfn)
{
    struct sim_tlb_entry *t = &v->tlb[gfn % SIM_TLB];
    if (t->valid && t->gfn == gfn && (!write || t->writable)) {
        sim->c.tlb_hits++;
        /* A cached translation is only legitimate while EPT still grants it
         * and its frame still belongs to this page: anything else means
         * mm/ reduced a permission or reused a frame without INVEPT. */
        uint64_t *leaf = pt_entry(&pt_fmt_ept, v->p2m.ept_root, gfn << PAGE_SHIFT,
                                  PT_LEVEL_4K, false);
        struct frame *f = frame_get(t->mfn);
        if (!leaf || (*leaf & PT_ADDR_MASK) != t->mfn << PAGE_SHIFT || !(*leaf & EPT_R) ||
            (write && !(*leaf & EPT_W)))
            violation("%s gfn %#llx: stale TLB entry to frame %#llx used after the EPT "
                      "changed (missing INVEPT)",
                      v->p2m.name, (unsigned long long)gfn, (unsigned long long)t->mfn);
        const struct p2m_entry *pe = p2m_peek(&v->p2m, gfn);
        bool shared_ok = f->state == FS_SHARED && pe->state == P2M_SHARED &&
                         pe->payload == t->mfn && !write;
        if (!shared_ok && (f->state != FS_VM || f->owner != v->p2m.owner || f->gfn != gfn))
            violation("%s gfn %#llx: TLB reaches frame %#llx now owned by (%s, %u, %#llx)",
                      v->p2m.name, (unsigned long long)gfn, (unsigned long long)t->mfn,
                      frame_state_name(f->state), f->owner, (unsigned long long)f->gfn);
        *mfn = t->mfn;
        return true;
    }
    sim->c.walks++;
    uint64_t *leaf = pt_entry(&pt_fmt_ept, v->p2m.ept_root, gfn << PAGE_SHIFT, PT_LEVEL_4K,
                              false);
    if (!leaf || !(*leaf & EPT_R) || (write && !(*leaf & EPT_W)))
        return false;
    if (v->p2m.ad)
        *leaf |= EPT_A | (write ? EPT_D : 0);
    t->valid = true;
    t->gfn = gfn;
    t->mfn = (*leaf & PT_ADDR_MASK) >> PAGE_SHIFT;
    t->writable = *leaf & EPT_W;
    *mfn = t->mfn;
    return true;
}

/* Page content is a function of (gfn, generation), in kinds chosen by the
 * generation so that every reclaim path gets traffic: sparse tagged pages
 * (compress very well), text-like pages (compress moderately), pages of
 * pseudo-random words (LZ4 cannot shrink them: incompressible) and pages
 * of one repeated non-zero word (same-filled: no pool slot at all). */
enum page_kind { PK_SPARSE, PK_TEXT, PK_RANDOM, PK_FILLED, PK_COMMON };

static enum page_kind kind_of(uint64_t gen)
{
    switch (gen % 8) {
    case 3:
    case 4: return PK_COMMON;
    case 5: return PK_RANDOM;
    case 6: return PK_FILLED;
    case 7: return PK_TEXT;
    default: return PK_SPARSE;
    }
}

static uint64_t expected_word(uint64_t gfn, uint64_t gen, unsigned i)
{
    switch (kind_of(gen)) {
    case PK_RANDOM: {
        uint64_t x = ((gen << 9) | i) * 0x9e3779b97f4a7c15ULL;
        return x ^ (x >> 29) ^ gfn;
    }
    case PK_FILLED:
        return gen * 0x0101010101010101ULL | 1;
    case PK_COMMON: {
        /* One of 16 contents, the same in every page and VM that has it:
         * what the share scanner exists to find. */
        uint64_t k = (gen / 8) % 16, x = (k << 9 | i) * 0xd6e8feb86659fd93ULL;
        return i % 4 ? 0x206e6f6d6d6f6320ULL + k : x ^ (x >> 32); /* compresses ~3x */
    }
    case PK_TEXT:
        return i % 16 == 0 ? (TAG_MAGIC ^ gfn ^ i) : 0x2074786574206120ULL + i % 7 + (gen << 56);
    default:
        if (i == 0)
            return TAG_MAGIC ^ gfn;
        if (i == 1)
            return gen;
        if (i == 2)
            return (gfn * 0x9e3779b97f4a7c15ULL) ^ (gen * 0xc2b2ae3d27d4eb4fULL);
        if (i == gen % 500 + 8)
            return gen; /* content differs from page to page */
        if (i == 511)
            return ~gen;
        return 0;
    }
}

static void tag_page(uint64_t *w, uint64_t gfn, uint64_t gen)
{
    for (unsigned i = 0; i < 512; i++)
        w[i] = expected_word(gfn, gen, i);
}

/* Every word is checked: a decompression that got one byte wrong shows. */
static bool page_matches(const uint64_t *w, uint64_t gfn, uint64_t gen)
{
    if (!gen) {
        for (int i = 0; i < 512; i++)
            if (w[i])
                return false;
        return true;
    }
    for (unsigned i = 0; i < 512; i++)
        if (w[i] != expected_word(gfn, gen, i))
            return false;
    return true;
}

bool sim_access(int vmi, uint64_t gfn, enum sim_op op)
{
    struct sim_vm *v = &sim->vm[vmi];
    bool write = op != OP_READ;
    uint64_t mfn;
    for (int tries = 0;; tries++) {
        if (translate(v, gfn, write, &mfn))
            break;
        sim->c.faults++;
        uint64_t w0 = sim_fault_work();
        enum p2m_result r = p2m_fault(&v->p2m, gfn << PAGE_SHIFT,
                                      write ? P2M_ACCESS_W : P2M_ACCESS_R);
        uint64_t w = sim_fault_work() - w0;
        sim->c.fault_work_total += w;
        if (w > sim->c.fault_work_max) {
            sim->c.fault_work_max = w;
            sim->c.fault_work_at = sim->c.accesses;
        }
        if (r == P2M_WAIT) {
            sim->c.waits++;
            v->waits_in_a_row++;
            return false;
        }
        if (r == P2M_FAIL || r == P2M_CORRUPT || tries > 2) {
            violation("%s gfn %#llx: fault not resolved (%s)", v->p2m.name,
                      (unsigned long long)gfn,
                      r == P2M_FAIL ? "refused" : r == P2M_CORRUPT ? "corrupt" : "loops");
            return true;
        }
    }
    v->waits_in_a_row = 0;
    sim->c.accesses++;
    uint64_t *w = (uint64_t *)(arena + mfn * PAGE_SIZE);
    switch (op) {
    case OP_READ:
        if (!page_matches(w, gfn, v->gen[gfn]))
            violation("%s gfn %#llx: read back something else than generation %llu "
                      "(frame %#llx: %#llx %#llx ...)",
                      v->p2m.name, (unsigned long long)gfn, (unsigned long long)v->gen[gfn],
                      (unsigned long long)mfn, (unsigned long long)w[0],
                      (unsigned long long)w[1]);
        break;
    case OP_WRITE_TAG:
        v->gen[gfn] = ++sim->next_gen;
        tag_page(w, gfn, v->gen[gfn]);
        break;
    case OP_WRITE_ZERO:
        memset(w, 0, PAGE_SIZE);
        v->gen[gfn] = 0;
        break;
    }
    return true;
}

uint64_t sim_fault_work(void)
{
    struct share_stats ss;
    share_get_stats(&ss);
    uint64_t w = ss.probes + ss.reclaim_work;
    for (int i = 0; i < sim->nvms; i++)
        if (sim->vm[i].live)
            w += sim->vm[i].p2m.st.scanned;
    return w;
}

/* ---- invariants ---------------------------------------------------------- */

static uint64_t accounting(void)
{
    uint64_t bad = 0;
    struct frame_stats fs;
    frame_get_stats(&fs);
    uint64_t resident = 0, sum = 0;
    for (int i = 0; i < sim->nvms; i++)
        if (sim->vm[i].live)
            resident += sim->vm[i].p2m.count[P2M_RESIDENT];
    for (int s = 0; s < FS_STATE_COUNT; s++)
        sum += fs.count[s];
    if (fs.count[FS_VM] != resident) {
        violation("frames in VM state %llu, resident pages %llu",
                  (unsigned long long)fs.count[FS_VM], (unsigned long long)resident);
        bad++;
    }
    struct zpool_stats zs;
    zpool_get_stats(&zs);
    uint64_t compressed = share_zobj_count(); /* one pool object per shared frame */
    for (int i = 0; i < sim->nvms; i++)
        if (sim->vm[i].live)
            compressed += sim->vm[i].p2m.count[P2M_COMPRESSED] - sim->vm[i].p2m.shared_obj;
    if (fs.count[FS_POOL] != zs.frames || compressed != zs.objects) {
        violation("pool: %llu frames in pool state, pool holds %llu; %llu compressed pages, "
                  "%llu pool objects",
                  (unsigned long long)fs.count[FS_POOL], (unsigned long long)zs.frames,
                  (unsigned long long)compressed, (unsigned long long)zs.objects);
        bad++;
    }
    if (sum != sim->frames || frame_free_count() != fs.count[FS_FREE]) {
        violation("frame accounting: %llu counted of %llu", (unsigned long long)sum,
                  (unsigned long long)sim->frames);
        bad++;
    }
    return bad;
}

uint64_t sim_check_local(int vmi, uint64_t gfn)
{
    uint64_t before = sim->c.violations;
    struct sim_vm *v = &sim->vm[vmi];
    sim->c.local_checks++;
    accounting();
    const struct p2m_entry *e = p2m_peek(&v->p2m, gfn);
    uint64_t *leaf = pt_entry(&pt_fmt_ept, v->p2m.ept_root, gfn << PAGE_SHIFT, PT_LEVEL_4K,
                              false);
    if (e->state == P2M_RESIDENT) {
        struct frame *f = frame_get(e->payload);
        if (f->state != FS_VM || f->owner != v->p2m.owner || f->gfn != gfn)
            violation("%s gfn %#llx: frame %#llx back-pointer wrong", v->p2m.name,
                      (unsigned long long)gfn, (unsigned long long)e->payload);
        /* A page in the working-set sample (mm/p2m_sample.c) has no EPT
         * permission, or lost its leaf with an emptied table; its next
         * access maps it again. */
        bool sampled = (e->flags & P2M_F_SAMPLED) && (!leaf || !(*leaf & EPT_RWX));
        if (!sampled && (!leaf || (*leaf & PT_ADDR_MASK) != e->payload << PAGE_SHIFT))
            violation("%s gfn %#llx: EPT disagrees with p2m (flags %#x, leaf %#llx)",
                      v->p2m.name, (unsigned long long)gfn, e->flags,
                      (unsigned long long)(leaf ? *leaf : 0));
        else if ((e->flags & P2M_F_SWAPCACHE) && (*leaf & EPT_W))
            violation("%s gfn %#llx: writable although its swap copy is kept", v->p2m.name,
                      (unsigned long long)gfn);
        else if (!page_matches(mm_phys_to_virt(e->payload << PAGE_SHIFT), gfn, v->gen[gfn]))
            violation("%s gfn %#llx: content lost", v->p2m.name, (unsigned long long)gfn);
    } else if (e->state == P2M_SHARED) {
        struct frame *f = frame_get(e->payload);
        if (f->state != FS_SHARED || !f->refcount)
            violation("%s gfn %#llx: shared on frame %#llx in state %s refcount %u", v->p2m.name,
                      (unsigned long long)gfn, (unsigned long long)e->payload,
                      frame_state_name(f->state), f->refcount);
        if (!leaf || (*leaf & PT_ADDR_MASK) != e->payload << PAGE_SHIFT || (*leaf & EPT_W))
            violation("%s gfn %#llx: shared but EPT leaf %#llx", v->p2m.name,
                      (unsigned long long)gfn, leaf ? (unsigned long long)*leaf : 0ULL);
        else if (!page_matches(mm_phys_to_virt(e->payload << PAGE_SHIFT), gfn, v->gen[gfn]))
            violation("%s gfn %#llx: shared frame holds something else than generation %llu",
                      v->p2m.name, (unsigned long long)gfn, (unsigned long long)v->gen[gfn]);
    } else {
        if (leaf && (*leaf & EPT_RWX))
            violation("%s gfn %#llx: %s but mapped in EPT", v->p2m.name,
                      (unsigned long long)gfn, p2m_state_name(e->state));
        if ((e->state == P2M_UNPOPULATED || e->state == P2M_BALLOONED) && v->gen[gfn])
            violation("%s gfn %#llx: unpopulated but generation %llu was written",
                      v->p2m.name, (unsigned long long)gfn, (unsigned long long)v->gen[gfn]);
        if (e->state == P2M_FILLED) {
            for (unsigned i = 0; i < 512; i++) {
                if (e->payload != (v->gen[gfn] ? expected_word(gfn, v->gen[gfn], i) : 0)) {
                    violation("%s gfn %#llx: filled with %#llx, not generation %llu",
                              v->p2m.name, (unsigned long long)gfn,
                              (unsigned long long)e->payload, (unsigned long long)v->gen[gfn]);
                    break;
                }
            }
        }
        struct share_zobj z;
        if (e->state == P2M_COMPRESSED && (e->flags & P2M_F_SHARED_OBJ) &&
            !share_zobj_get((uint32_t)e->payload, &z))
            violation("%s gfn %#llx: names shared object %llu, which does not exist",
                      v->p2m.name, (unsigned long long)gfn, (unsigned long long)e->payload);
        if (e->state == P2M_COMPRESSED && !(e->flags & P2M_F_SHARED_OBJ) &&
            !zpool_check_object(e->payload, v->p2m.owner, gfn, e->aux))
            violation("%s gfn %#llx: compressed but the pool has no object for it",
                      v->p2m.name, (unsigned long long)gfn);
    }
    return sim->c.violations - before;
}

/* The content of a compressed or swapped page, read and decoded without
 * changing anything. */
static void check_compressed(struct sim_vm *v, uint64_t gfn)
{
    static uint64_t buf[512];
    if (p2m_read_page(&v->p2m, gfn, buf))
        violation("%s gfn %#llx: compressed copy unreadable", v->p2m.name,
                  (unsigned long long)gfn);
    else if (!page_matches(buf, gfn, v->gen[gfn]))
        violation("%s gfn %#llx: compressed copy is not generation %llu", v->p2m.name,
                  (unsigned long long)gfn, (unsigned long long)v->gen[gfn]);
}

uint64_t sim_check_full(void)
{
    uint64_t before = sim->c.violations;
    sim->c.full_checks++;
    accounting();
    for (int i = 0; i < sim->nvms; i++) {
        struct sim_vm *v = &sim->vm[i];
        if (!v->live)
            continue;
        uint64_t bad = p2m_check(&v->p2m);
        if (bad)
            violation("%s: p2m_check found %llu problems", v->p2m.name,
                      (unsigned long long)bad);
        for (uint64_t gfn = 0; gfn < v->ngfn; gfn++) {
            sim_check_local(i, gfn);
            if (p2m_peek(&v->p2m, gfn)->state == P2M_COMPRESSED ||
                p2m_peek(&v->p2m, gfn)->state == P2M_SWAPPED)
                check_compressed(v, gfn);
        }
    }
    uint64_t zbad = zpool_check();
    if (zbad)
        violation("zpool_check found %llu problems", (unsigned long long)zbad);
    uint64_t sbad = share_check();
    if (sbad)
        violation("share_check found %llu problems", (unsigned long long)sbad);
    /* Every shared frame's refcount is the number of GFNs mapping it, and
     * they all belong to VMs of one salt. */
    uint32_t *refs = calloc(sim->frames, sizeof(uint32_t));
    uint64_t *salt = calloc(sim->frames, sizeof(uint64_t));
    for (int i = 0; i < sim->nvms; i++) {
        struct sim_vm *v = &sim->vm[i];
        if (!v->live)
            continue;
        for (uint64_t gfn = 0; gfn < v->ngfn; gfn++) {
            const struct p2m_entry *e = p2m_peek(&v->p2m, gfn);
            if (e->state != P2M_SHARED)
                continue;
            if (refs[e->payload]++ && salt[e->payload] != v->p2m.salt)
                violation("frame %#llx shared by VMs of different salts",
                          (unsigned long long)e->payload);
            salt[e->payload] = v->p2m.salt;
        }
    }
    for (uint64_t m = 0; m < sim->frames; m++) {
        struct frame *f = frame_get(m);
        if ((f->state == FS_SHARED) != (refs[m] > 0) ||
            (f->state == FS_SHARED && f->refcount != refs[m]))
            violation("frame %#llx: %s with refcount %u, mapped by %u GFNs",
                      (unsigned long long)m, frame_state_name(f->state), f->refcount, refs[m]);
    }
    free(refs);
    free(salt);
    return sim->c.violations - before;
}

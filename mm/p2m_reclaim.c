/* The p2m's reclaim: the clock over EPT accessed bits picks victims, and
 * each goes down the chain (same-filled -> a value; clean swap copy ->
 * dropped; compressible -> the pool; the rest -> swap; the pool's coldest
 * objects -> swap); and the accessed/dirty sweep that keeps ages and the
 * working-set estimate, in bounded steps. Both trim the metadata that
 * empties. */
#include "mm/p2m.h"
#include "lib/log.h"
#include "lib/string.h"
#include "mm/compress.h"
#include "mm/ept.h"
#include "mm/hash.h"
#include "mm/mm.h"
#include "mm/mm_backend.h"
#include "mm/p2m_internal.h"
#include "mm/share.h"
#include "mm/swap.h"
#include "mm/trace.h"
#include "mm/zpool.h"

/* Is every 64-bit word of the page equal (to *v)? Most pages that are not
 * same-filled show it early: test a chunk at a time and stop at the first
 * difference. */
bool p2m_page_filled(mfn_t m, uint64_t *v)
{
    const uint64_t *w = mm_phys_to_virt(m << PAGE_SHIFT);
    uint64_t x = w[0];
    /* A compare and a branch a word (19 instructions per 8 words against
     * 27 for or-ing the differences). */
    for (int i = 0; i < 512; i += 8)
        if (w[i] != x || w[i + 1] != x || w[i + 2] != x || w[i + 3] != x || w[i + 4] != x ||
            w[i + 5] != x || w[i + 6] != x || w[i + 7] != x)
            return false;
    *v = x;
    return true;
}

enum compress_outcome { CO_STORED, CO_INCOMPRESSIBLE, CO_REFUSED };

/* Compresses the unmapped resident page gfn into the pool and frees its
 * frame; on failure the page stays resident (the caller maps it again). */
static enum compress_outcome compress_one(struct p2m *p, uint64_t gfn, struct p2m_entry *e)
{
    static uint8_t buf[ZP_MAX_DATA];
    const void *page = mm_phys_to_virt(e->payload << PAGE_SHIFT);
    uint64_t t0 = mm_now();
    int len = cmp_compress_page(page, buf, (int)p2m_pool.max_len);
    p->st.cmp_cycles += mm_now() - t0;
    if (len <= 0) {
        e->flags |= P2M_F_INCOMPRESSIBLE;
        p->st.incompressible++;
        p->st.incompressible_now++;
        return CO_INCOMPRESSIBLE;
    }
    uint32_t check = p2m_pool.checksum ? hash_check32(page, PAGE_SIZE, 0) : 0;
    uint64_t h;
    enum zpool_store_result r = zpool_store(buf, (unsigned)len, p->owner, gfn, check, &h);
    if (r == ZP_FULL && zpool_wasted_frames()) {
        zpool_compact(MM_COMPACT_MOVES);
        r = zpool_store(buf, (unsigned)len, p->owner, gfn, check, &h);
    }
    if (r != ZP_STORED) {
        p->st.pool_refused++;
        return CO_REFUSED;
    }
    frame_free(e->payload);
    p2m_set_state(p, gfn, e, P2M_COMPRESSED, h);
    e->aux = (uint32_t)len;
    e->age = 0; /* swap write-back takes entries the hand meets again */
    p->st.compressed++;
    p->st.pool_bytes += (uint64_t)len;
    p->cmp_bytes += (uint64_t)len;
    return CO_STORED;
}

#define WRITEBACK_BATCH 32 /* pool objects written back to swap per batch */

/* Unmapped, flushed pages of gfns[0..n) go to swap as whole pages, one
 * write per staging area. A page whose write fails is mapped again (it
 * stays resident; swap backs off and reclaim tries it later). Returns the
 * frames freed. */
static uint64_t swap_out_pages(struct p2m *p, const uint64_t *gfns, unsigned n)
{
    uint64_t freed = 0, loc[SWAP_STAGE_OBJECTS];
    uint32_t check[SWAP_STAGE_OBJECTS];
    uint8_t tc = trace_cause_enter(p, TC_SWAP);
    for (unsigned i = 0; i < n;) {
        unsigned k = 0;
        if (swap_can_write()) {
            while (i + k < n && k < SWAP_STAGE_OBJECTS) {
                const void *page =
                    mm_phys_to_virt(map_find(p, gfns[i + k])->payload << PAGE_SHIFT);
                if (!swap_stage(page, PAGE_SIZE, false))
                    break;
                check[k] = swap_check(page, PAGE_SIZE, p->owner, gfns[i + k]);
                k++;
            }
        }
        unsigned done = 0;
        enum swap_result r = k ? swap_commit(loc, &done) : SWAP_OFF;
        for (unsigned j = 0; j < done; j++, i++) {
            struct p2m_entry *e = map_find(p, gfns[i]);
            frame_free(e->payload);
            p2m_set_state(p, gfns[i], e, P2M_SWAPPED, loc[j]);
            e->aux = check[j];
            p->st.swap_out++;
            freed++;
        }
        if (r != SWAP_OK) {
            /* Full, or the write failed: the rest stays resident. */
            for (; i < n; i++) {
                ept_set(p, gfns[i], map_find(p, gfns[i])->payload, EPT_RWX);
                if (r == SWAP_EIO)
                    p->st.swap_kept++;
            }
            break;
        }
    }
    trace_cause_leave(p, tc);
    return freed;
}

/* The pool's coldest objects (gfns[0..n), compressed) are written back to
 * swap as they are, LZ4 bytes and all, and leave the pool. On an error
 * they stay in the pool. */
static void swap_out_objects(struct p2m *p, const uint64_t *gfns, unsigned n)
{
    static uint8_t buf[ZP_MAX_DATA];
    uint64_t loc[SWAP_STAGE_OBJECTS], which[SWAP_STAGE_OBJECTS];
    uint32_t check[SWAP_STAGE_OBJECTS];
    unsigned k = 0;
    if (!swap_can_write())
        return; /* the page writes of this batch just failed or filled it */
    for (unsigned i = 0; i < n && k < SWAP_STAGE_OBJECTS; i++) {
        struct p2m_entry *e = map_find(p, gfns[i]);
        uint32_t sum;
        /* A damaged object is left for its fault to report. */
        if (zpool_load(e->payload, p->owner, gfns[i], e->aux, buf, &sum))
            continue;
        if (!swap_stage(buf, e->aux, true))
            break;
        check[k] = swap_check(buf, e->aux, p->owner, gfns[i]);
        which[k++] = gfns[i];
    }
    unsigned done = 0;
    if (k)
        swap_commit(loc, &done);
    uint8_t tc = trace_cause_enter(p, TC_SWAP);
    for (unsigned j = 0; j < done; j++) {
        struct p2m_entry *e = map_find(p, which[j]);
        zpool_free(e->payload);
        p->st.pool_bytes -= e->aux;
        p2m_set_state(p, which[j], e, P2M_SWAPPED, loc[j]);
        e->aux = check[j];
        p->st.swap_out_lz4++;
    }
    trace_cause_leave(p, tc);
}

/* Is the pool nearly full (or did it just refuse a page), so that its
 * coldest entries should make room by going to swap? */
static bool pool_pressed(bool pool_room)
{
    if (!zpool_enabled())
        return false;
    if (!pool_room)
        return true;
    struct zpool_stats z;
    zpool_get_stats(&z);
    return z.frames * 16 >= z.cap_frames * 15;
}

/* One batch of p2m_reclaim: picks up to MM_RECLAIM_BATCH candidates from
 * the clock hand (at most *budget GFNs visited), unmaps them, flushes once,
 * then sends each down the chain: same-filled -> value; clean swap copy ->
 * dropped; compressible -> pool; otherwise -> swap. Compressed entries the
 * hand meets a second time are the pool's coldest: under pool pressure
 * they are written back to swap. Returns frames freed. */
static uint64_t reclaim_batch(struct p2m *p, uint64_t *budget, bool *pool_room, unsigned techs)
{
    uint64_t cand[MM_RECLAIM_BATCH], out[MM_RECLAIM_BATCH], wb[WRITEBACK_BATCH];
    unsigned n = 0, nout = 0, nwb = 0;
    bool compress = *pool_room;
    bool swap = (techs & P2M_RT_SWAP) && swap_can_write();
    bool filled_ok = techs & P2M_RT_FILLED;
    /* Never past a full turn in one batch: a GFN must not be a candidate
     * twice. */
    for (uint64_t visited = 0; *budget && n < MM_RECLAIM_BATCH && visited < p->ngfn;) {
        (*budget)--;
        struct p2m_entry *e = map_find(p, p->hand);
        if (!e) {
            /* A region never touched: one step past all of it. */
            uint64_t next = map_next(p, p->hand);
            visited += next - p->hand;
            p->hand = next < p->ngfn ? next : 0;
            continue;
        }
        uint64_t gfn = p->hand;
        visited++;
        p->hand = p->hand + 1 < p->ngfn ? p->hand + 1 : 0;
        if (e->state == P2M_COMPRESSED && !(e->flags & P2M_F_SHARED_OBJ)) {
            if (swap && e->age >= 1 && nwb < WRITEBACK_BATCH && gfn != p->busy_gfn)
                wb[nwb++] = gfn; /* written back below if the pool is pressed */
            else if (e->age < 0xffff)
                e->age++; /* the hand passed it once more, untouched */
            continue;
        }
        if (e->state != P2M_RESIDENT || (e->flags & P2M_F_SAMPLED))
            continue; /* a sampled page stays for its period (mm/p2m_sample.c) */
        p->st.scanned++;
        uint64_t v;
        if (!filled_ok || !p2m_page_filled(e->payload, &v)) {
            /* Not free to drop: only cold pages are worth compressing or
             * swapping, and a clean swap copy can always be dropped. */
            if (!compress && !swap && !((e->flags & P2M_F_SWAPCACHE) && (techs & P2M_RT_SWAP)))
                continue;
            uint64_t *l = ept_leaf(p, gfn);
            if (e->flags & P2M_F_INCOMPRESSIBLE) {
                if (l && (*l & EPT_D)) {
                    e->flags &= (uint8_t)~P2M_F_INCOMPRESSIBLE; /* written: try LZ4 again */
                    p->st.incompressible_now--;
                } else if (!swap) {
                    continue; /* unchanged since LZ4 gave up on it: only swap takes it */
                }
            }
            if (p->ad && l && (*l & EPT_A)) {
                *l &= ~EPT_A; /* second chance; flushed below with the unmaps */
                p->flush_pending = true;
                p->st.cold_skipped++;
                continue;
            }
        }
        /* Unmap first: once the flush below is done no vCPU can write it. */
        ept_clear(p, gfn);
        cand[n++] = gfn;
    }
    p2m_flush(p);
    uint64_t freed = 0;
    for (unsigned i = 0; i < n; i++) {
        struct p2m_entry *e = map_find(p, cand[i]);
        uint64_t v;
        /* Decide on the content as it is after the flush: a write between
         * the first look and the unmap (another CPU, later) counts. */
        if (filled_ok && p2m_page_filled(e->payload, &v)) {
            frame_free(e->payload);
            p2m_set_state(p, cand[i], e, v ? P2M_FILLED : P2M_UNPOPULATED, v);
            if (v)
                p->st.filled++;
            else
                p->st.zero_reclaimed++;
            freed++;
            continue;
        }
        if ((e->flags & P2M_F_SWAPCACHE) && (techs & P2M_RT_SWAP)) {
            /* Clean since it came back: the copy on swap is still its
             * content. No write. */
            const void *page = mm_phys_to_virt(e->payload << PAGE_SHIFT);
            uint32_t check = swap_check(page, PAGE_SIZE, p->owner, cand[i]);
            frame_free(e->payload);
            uint8_t tc = trace_cause_enter(p, TC_SWAP);
            p2m_set_state(p, cand[i], e, P2M_SWAPPED, SWAP_LOC(e->aux, PAGE_SIZE, 0));
            trace_cause_leave(p, tc);
            e->aux = check;
            p->st.swap_dropped++;
            freed++;
            continue;
        }
        if (*pool_room && !(e->flags & P2M_F_INCOMPRESSIBLE)) {
            enum compress_outcome o = compress_one(p, cand[i], e);
            if (o == CO_STORED) {
                freed++;
                continue;
            }
            if (o == CO_REFUSED)
                *pool_room = false; /* full: the rest goes to swap or stays */
        }
        if (swap) {
            out[nout++] = cand[i];
            continue;
        }
        ept_set(p, cand[i], e->payload, EPT_RWX);
    }
    if (nout)
        freed += swap_out_pages(p, out, nout);
    /* A refusal in this batch, or a pool nearly at its cap: make room. */
    if (nwb && pool_pressed(*pool_room))
        swap_out_objects(p, wb, nwb);
    /* EPT tables and map chunks this batch emptied go too. */
    for (unsigned i = 0; i < n; i++)
        p2m_trim(p, cand[i]);
    p2m_flush(p);
    return freed;
}

uint64_t p2m_reclaim(struct p2m *p, uint64_t want, uint64_t max_scan)
{
    return p2m_reclaim_with(p, want, max_scan, P2M_RT_ALL);
}

uint64_t p2m_reclaim_with(struct p2m *p, uint64_t want, uint64_t max_scan, unsigned techs)
{
    if (!p->count[P2M_RESIDENT] || !p->map || !(techs & P2M_RT_ALL))
        return 0;
    p->st.reclaim_scans++;
    bool pool_room = (techs & P2M_RT_COMPRESS) && p->compress &&
                     zpool_enabled();
    /* A full turn of the clock at most, plus one more so that pages given
     * a second chance at the start can be taken at the end. */
    uint64_t budget = max_scan < 2 * p->ngfn ? max_scan : 2 * p->ngfn, freed = 0;
    /* Batches until enough is freed: a batch can free nothing (every
     * candidate incompressible) while the clock has more to offer. */
    uint8_t tc = trace_cause_enter(p, TC_RECLAIM);
    while (freed < want && budget)
        freed += reclaim_batch(p, &budget, &pool_room, techs);
    trace_cause_leave(p, tc);
    return freed;
}

bool p2m_sweep_step(struct p2m *p, uint64_t budget)
{
    struct p2m_sweep *w = &p->sweep;
    if (!p->map)
        return true;
    if (!w->active) {
        memset(w, 0, sizeof(*w));
        w->active = true;
    }
    while (budget && w->cursor < p->ngfn) {
        budget--;
        uint64_t gfn = w->cursor;
        struct p2m_entry *e = map_find(p, gfn);
        if (!e) {
            w->cursor = map_next(p, gfn); /* an untouched region: one step */
            continue;
        }
        w->cursor++;
        w->visited++;
        uint64_t *l = e->state == P2M_RESIDENT && p->ad ? ept_leaf(p, gfn) : NULL;
        if (l) {
            if (*l & EPT_A) {
                w->accessed++;
                e->age = 0;
            } else if (e->age < 0xffff) {
                e->age++;
            }
            w->idle += e->age >= P2M_IDLE_SWEEPS;
            if (*l & EPT_D) {
                w->dirty++;
                if (e->flags & P2M_F_INCOMPRESSIBLE) {
                    /* Written since LZ4 gave up on it: worth another try. */
                    e->flags &= (uint8_t)~P2M_F_INCOMPRESSIBLE;
                    p->st.incompressible_now--;
                }
            }
            if (*l & (EPT_A | EPT_D)) {
                *l &= ~(EPT_A | EPT_D);
                p->flush_pending = true; /* else cached translations never set A again */
            }
        }
        /* The end of a chunk: it and its EPT table go if they emptied
         * (e is not used past this point). */
        if ((gfn & (P2M_CHUNK_ENTRIES - 1)) == P2M_CHUNK_ENTRIES - 1) {
            p2m_trim(p, gfn);
            if (p->ntrim >= P2M_TRIM_MAX / 2)
                p2m_flush(p);
        }
    }
    p2m_flush(p);
    if (w->cursor < p->ngfn)
        return false;
    w->active = false;
    p->st.sweep_visited = w->visited;
    if (!p->ad)
        return true;
    p->st.sweeps++;
    p->st.last_accessed = w->accessed;
    p->st.last_dirty = w->dirty;
    p->st.idle_pages = w->idle;
    /* EWMA with weight 1/4 for the newest sample. */
    p->st.ws_pages = p->st.sweeps == 1 ? w->accessed : (p->st.ws_pages * 3 + w->accessed) / 4;
    return true;
}

void p2m_sweep(struct p2m *p)
{
    p->sweep.active = false; /* a whole round from the start */
    p2m_sweep_step(p, UINT64_MAX);
}

/* Shared between the p2m's own files: p2m.c (states, life cycle, checks),
 * p2m_map.c (sparse map, EPT cache), p2m_fault.c, p2m_reclaim.c,
 * p2m_share.c, p2m_balloon.c. Not for callers outside the p2m. */
#ifndef MM_P2M_INTERNAL_H
#define MM_P2M_INTERNAL_H
#include "mm/ept.h"
#include "mm/p2m.h"

/* ---- the sparse map (p2m_map.c) ----
 * p->map holds, for every P2M_DIR_GFNS GFNs, the address of a directory
 * frame (| 1) or 0; a directory frame holds 512 such words for map chunks;
 * a chunk is one frame of P2M_CHUNK_ENTRIES entries. A missing chunk means
 * every GFN in it is unpopulated. The frame-table refcount of a chunk
 * counts its entries that are not unpopulated; that of a directory frame
 * its chunks. Both kinds are FS_HV frames owned by the VM and charged to
 * it (p->meta). */

/* gfn's entry, or NULL when its chunk does not exist (it is unpopulated).
 * gfn must be below p->ngfn. */
struct p2m_entry *map_find(const struct p2m *p, uint64_t gfn);
/* gfn's entry, creating its chunk (a charged frame: it may reclaim, and
 * returns NULL when the VM must wait). */
struct p2m_entry *map_slot(struct p2m *p, uint64_t gfn);
/* An entry of gfn's chunk left or entered the unpopulated state. */
void map_count(struct p2m *p, uint64_t gfn, int delta);
/* The first GFN >= gfn (below p->ngfn) whose chunk exists, or p->ngfn. */
uint64_t map_next(const struct p2m *p, uint64_t gfn);
/* Entries in use (not unpopulated) as gfn's chunk counts them. */
unsigned map_chunk_count(const struct p2m *p, uint64_t gfn);
/* A full walk of the metadata for p2m_check. */
struct map_census {
    uint64_t dirs, chunks, tables; /* frames found */
    uint64_t bad_counts;           /* tables whose refcount is not their present entries */
    uint64_t stray_leaves;         /* EPT leaves of GFNs neither resident nor shared */
};
void map_census(struct p2m *p, struct map_census *mc);
/* Frees every chunk and directory frame (the VM is gone). */
void map_destroy(struct p2m *p);

/* ---- the EPT cache (p2m_map.c) ----
 * Every EPT table's frame-table refcount counts its present entries, so
 * that a table left empty can be freed (after an INVEPT). Tables are
 * FS_PAGETABLE frames owned by the VM and charged to it. */

/* The level-1 entry of gfn, or NULL when its table does not exist. */
uint64_t *ept_leaf(struct p2m *p, uint64_t gfn);
/* Creates the tables above gfn's leaf (charged frames). 0, or -1: wait. */
int ept_path(struct p2m *p, uint64_t gfn);
/* Maps gfn to mfn with perms, creating missing tables (charged frames).
 * -1 when a table could not be had: the caller waits. */
int ept_set(struct p2m *p, uint64_t gfn, mfn_t mfn, uint64_t perms);
/* The fault path's one walk (p2m_fault.c): gfn's level-1 slot and the
 * frame of its table (for the table's count), or NULL when that table does
 * not exist. The table outlives reclaim while gfn is busy_gfn (p2m_trim),
 * so ept_set_slot may write the slot after a frame allocation. */
uint64_t *ept_slot(struct p2m *p, uint64_t gfn, struct frame **tf);
void ept_set_slot(struct p2m *p, uint64_t *slot, struct frame *tf, mfn_t mfn, uint64_t perms);
/* Writes gfn's leaf exactly as given (restoring one taken a moment ago,
 * accessed and dirty bits included); its table must exist. */
void ept_put(struct p2m *p, uint64_t gfn, uint64_t leaf);
/* Unmaps gfn (a flush becomes pending). */
void ept_clear(struct p2m *p, uint64_t gfn);
/* Queues for freeing the EPT table and the map chunk around gfn when they
 * have become empty (never those of the page whose fault is being
 * handled). Queued frames are unlinked now and freed by the next
 * p2m_flush, after the INVEPT. */
void p2m_trim(struct p2m *p, uint64_t gfn);
/* Frees every EPT table below the root (the VM is gone). */
void ept_destroy(struct p2m *p);

/* Frees what an entry holds (frame, shared reference, pool object or
 * shared object reference, swap slot) without changing its state; true if
 * it held something. The caller sets the new state next (or forgets the
 * entry, at destroy). */
bool p2m_release(struct p2m *p, struct p2m_entry *e);
/* The one place that changes an entry's state (p2m.c): the edge must be in
 * the table of legal edges (p2m_edge_legal), else the hypervisor panics;
 * keeps the counts, the chunk's use count, the edge statistics, and drops
 * resident-only flags (a swap-cache copy is freed unless the page goes
 * back to exactly that slot). */
void p2m_set_state(struct p2m *p, uint64_t gfn, struct p2m_entry *e, enum p2m_state s,
                   uint64_t payload);

/* ---- shared between the p2m's files ---- */
/* Pool parameters shared by every VM (p2m_set_pool_params). */
struct p2m_pool_params {
    unsigned max_len; /* largest compressed size the pool stores */
    bool checksum;    /* entries carry an XXH32 of the page */
};
extern struct p2m_pool_params p2m_pool;
/* One mapping of shared frame m goes away; the last one frees it. */
void p2m_drop_shared_ref(struct p2m *p, mfn_t m);
/* Decodes gfn's pool object into dst (one page): NULL, or what is wrong
 * with the stored copy. The object stays in the pool. */
const char *p2m_decompress_into(struct p2m *p, uint64_t gfn, const struct p2m_entry *e,
                                void *dst);
/* Is every 64-bit word of frame m equal (to *v)? */
bool p2m_page_filled(mfn_t m, uint64_t *v);
/* A write is coming to swap-cached gfn: its swap copy is stale; freed,
 * write permission given back. */
void p2m_drop_swap_copy(struct p2m *p, uint64_t gfn, struct p2m_entry *e);
/* ---- working-set sampling (p2m_sample.c) ---- */
/* The normal permissions of resident gfn's leaf (read-only while a swap
 * copy is valid). */
static inline uint64_t p2m_resident_perms(const struct p2m_entry *e)
{
    return e->flags & P2M_F_SWAPCACHE ? EPT_R | EPT_X : EPT_RWX;
}
/* An access to sampled gfn: its permissions come back (no flush needed)
 * and the touch is counted. */
void p2m_sample_touch(struct p2m *p, uint64_t gfn, struct p2m_entry *e);
/* e leaves RESIDENT while sampled (p2m_set_state): the flag goes. */
void p2m_sample_forget(struct p2m *p, struct p2m_entry *e);
#endif

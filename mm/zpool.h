/* The compressed pool: packs LZ4-compressed guest pages of many sizes into
 * machine frames, in the spirit of Linux's zsmalloc.
 *
 * Objects are grouped in size classes 32 bytes apart. A class keeps its
 * objects in "zspages" of 1 to 4 frames (not necessarily contiguous; an
 * object may straddle two of them and is copied in pieces), the frame count
 * chosen per class so that little of the zspage is left over. A 1500-byte
 * class, for example, uses 3 frames for 8 objects (2.3% left over) where
 * zbud would store 2 per frame (27% left over).
 *
 * Every object starts with a 16-byte header naming its owner, GFN, length
 * and check value, so that a load can tell a corrupted or misdirected entry
 * from a good one, and compaction can tell the p2m where an object moved.
 * A handle is (length << 48 | zspage index << 7 | slot): the length lives
 * in the handle, which the p2m keeps in hypervisor memory, so that freeing
 * and accounting never depend on the in-band header, which is data like
 * any other and may be damaged. A handle stays valid until freed or moved
 * by compaction (the relocate callback reports every move). */
#ifndef MM_ZPOOL_H
#define MM_ZPOOL_H
#include <stdbool.h>
#include <stdint.h>

#include "mm/frame.h"

#define ZP_HANDLE_INVALID (~0ULL)
#define ZP_HDR 16                /* header bytes in front of every object */
#define ZP_CLASS_STEP 32         /* size-class granularity */
#define ZP_MAX_ZSPAGE_FRAMES 4
#define ZP_MAX_OBJS 128          /* objects per zspage (bitmap size) */
#define ZP_MAX_DATA 3072         /* largest storable object (bytes, without header) */
#define ZP_NCLASSES ((ZP_MAX_DATA + ZP_HDR + ZP_CLASS_STEP - 1) / ZP_CLASS_STEP)

/* Called for every object compaction moves, before the old copy is freed.
 * Returns false when (owner, gfn) does not hold old_handle: the header was
 * damaged, and the move is undone (the object stays where it is, for its
 * owner's next load to report). */
typedef bool (*zpool_relocate_fn)(uint16_t owner, uint64_t gfn, uint64_t old_handle,
                                  uint64_t new_handle);

enum zpool_store_result { ZP_STORED, ZP_FULL, ZP_NOMEM, ZP_TOOBIG };

struct zpool_stats {
    uint64_t cap_frames;          /* most frames the pool may hold */
    uint64_t frames, zspages;     /* held now */
    uint64_t objects;             /* stored now */
    uint64_t data_bytes;          /* compressed bytes stored now (no headers) */
    uint64_t slot_bytes;          /* bytes of the slots they occupy */
    uint64_t stores, loads, frees;
    uint64_t full, nomem;         /* stores refused: cap reached / no free frame */
    uint64_t corrupt;             /* loads whose header did not match */
    uint64_t compactions, moved, compact_freed; /* runs, objects moved, frames freed */
    uint64_t unmovable;           /* objects compaction found damaged and left */
    uint64_t peak_frames;
};

/* Sets up an empty pool of at most cap_frames frames. The descriptor table
 * (48 bytes per possible zspage) comes from the frame allocator. Returns 0
 * or -1 when that table cannot be allocated. cap_frames 0: pool off. */
int zpool_init(uint64_t cap_frames, zpool_relocate_fn relocate);
/* Frees everything (the pool must be empty) and the descriptor table. */
void zpool_fini(void);
bool zpool_enabled(void);

/* Copies len bytes (1..ZP_MAX_DATA) into the pool, tagged with owner, gfn
 * and check. *handle receives the handle on ZP_STORED. */
enum zpool_store_result zpool_store(const void *data, unsigned len, uint16_t owner,
                                    uint64_t gfn, uint32_t check, uint64_t *handle);
/* Copies the object back into buf (at least len bytes) after checking that
 * its header says (owner, gfn, len). Returns 0 and *check, or -1 when the
 * handle or header does not match (the data is then not to be trusted). */
int zpool_load(uint64_t handle, uint16_t owner, uint64_t gfn, unsigned len, void *buf,
               uint32_t *check);
/* Releases an object (whatever its bytes say). A handle that does not name
 * a stored object is a hypervisor bug (panic). */
void zpool_free(uint64_t handle);

/* Moves objects out of sparsely used zspages into fuller ones of the same
 * class until no class has a whole zspage's worth of free slots, or
 * max_moves objects have moved. An object whose header does not check out
 * (magic, length within its class, owner agreeing) is left in place and
 * its class skipped for this run. Returns frames freed. */
uint64_t zpool_compact(uint64_t max_moves);
/* Frames compaction could free now: per class, whole zspages of free slots. */
uint64_t zpool_wasted_frames(void);

/* Does handle name a stored object with this header? */
bool zpool_check_object(uint64_t handle, uint16_t owner, uint64_t gfn, unsigned len);
/* Internal consistency: per-class counts, bitmaps, partial lists, frame
 * states. Returns violations (reported through the log). */
uint64_t zpool_check(void);
void zpool_get_stats(struct zpool_stats *st);

/* Test hook: flips one bit of a stored object's bytes (offset counts from
 * the start of the header). */
void zpool_debug_corrupt(uint64_t handle, unsigned offset);
#endif

/* Swap space: the last link of the reclaim chain. A range of a block
 * device (drivers/blk.h) holds a header and then slots; a page goes out
 * whole (incompressible pages) or as its compressed pool object (the
 * pool's coldest entries), each in a run of consecutive slots. Writes are
 * batched: the reclaimer stages several objects and swap_commit writes
 * them with one I/O into one run of slots found next-fit from a cursor
 * (clustering), so a batch is one multi-page transfer. Reads bring one
 * object back. p2m.c owns the page states; this file owns the device, the
 * slot bitmap and the I/O statistics.
 *
 * Location ("loc", the SWAPPED payload): bits 0..39 the first slot, bits
 * 40..52 the stored length in bytes (4096: a whole page), bit 63 set when
 * the bytes are an LZ4 object. */
#ifndef MM_SWAP_H
#define MM_SWAP_H
#include <stdbool.h>
#include <stdint.h>

#include "drivers/blk.h"
#include "mm/frame.h"

#define SWAP_MAGIC "HVSWAP01"
#define SWAP_STAGE_PAGES 16   /* largest batch write: 64 KiB */
#define SWAP_STAGE_OBJECTS 64

#define SWAP_LOC(slot, len, z) ((uint64_t)(slot) | (uint64_t)(len) << 40 | (uint64_t)(z) << 63)
#define SWAP_LOC_SLOT(loc) ((loc) & ((1ULL << 40) - 1))
#define SWAP_LOC_LEN(loc) ((unsigned)(((loc) >> 40) & 0x1fff))
#define SWAP_LOC_LZ4(loc) ((bool)((loc) >> 63))

enum swap_result { SWAP_OK = 0, SWAP_EIO = -1, SWAP_FULL = -2, SWAP_OFF = -3 };

struct swap_stats {
    uint64_t slots, used, peak_used;   /* data slots; in use (incl. cached copies) */
    uint32_t slot_bytes;
    uint64_t out_pages, out_lz4;       /* objects written: whole pages, pool objects */
    uint64_t out_bytes;
    uint64_t in_pages, in_lz4;         /* objects read back */
    uint64_t writes, reads;            /* I/O requests */
    uint64_t write_cycles, read_cycles;
    uint64_t write_errors, read_errors, check_errors;
    uint64_t full_events, clustered, scattered; /* batches in one run / split up */
    uint64_t retries_deferred;         /* swap-outs skipped while backing off */
    uint64_t quarantined;              /* frames a failed device may still access */
};

/* Takes sectors [first, first + count) of d as swap space. The first 4 KiB
 * hold the header: a device without one is refused unless format is set,
 * so that a wrong device name never overwrites a disk. Every slot starts
 * free (nothing survives a reboot). Returns 0, or -1 with the reason
 * logged. */
int swap_attach(struct blkdev *d, uint64_t first, uint64_t count, bool format);
/* Can d hold swap at all (sectors of 512 .. 4096 bytes)? 0, or -1 with the
 * reason logged. Asked before anything is read from the device. */
int swap_check_device(const struct blkdev *d);
/* Forgets the swap space (host tests; every slot must be free). */
void swap_detach(void);
bool swap_enabled(void);
/* TSC rate, for the back-off after a failed write and the rates printed. */
void swap_set_clock(uint64_t hz);
/* May reclaim send pages out now? Not when there is no swap, while it is
 * full, or during the back-off after a write error. */
bool swap_can_write(void);

/* Is the swap space full (reported, not yet below the resume mark)? */
bool swap_full(void);

/* Copies len bytes (1..4096) into the staging area. False when it has no
 * room left: commit first. */
bool swap_stage(const void *data, unsigned len, bool lz4);
unsigned swap_staged(void);
/* Writes everything staged; *done objects made it and loc[0 .. *done)
 * name them. SWAP_OK: all of them. SWAP_FULL: the first *done fitted
 * (the space is full now). SWAP_EIO: none (no slot stays allocated). The
 * staging area is empty afterwards either way. */
enum swap_result swap_commit(uint64_t *loc, unsigned *done);

/* Reads the object at loc. A whole page goes straight into page (a 4 KiB
 * frame of the caller's); an LZ4 object, or anything when page is NULL,
 * into an internal buffer. Returns where the bytes are, or NULL on an I/O
 * error (counted, logged by the block layer). After a NULL,
 * swap_read_lost() tells whether the device failed with the read still
 * outstanding: it may then write page at any time, and the caller must
 * give the frame up (swap_quarantine), never free or reuse it. Callers
 * whose buffer cannot be given up pass NULL and copy. */
const void *swap_read(uint64_t loc, void *page);
bool swap_read_lost(void);
/* Frame m (a VM frame, allocated) becomes the hypervisor's for good:
 * counted and logged, never freed. */
void swap_quarantine(mfn_t m);
/* The slots of loc are free again. */
void swap_free(uint64_t loc);
/* Is every slot of loc allocated? (p2m_check) */
bool swap_loc_valid(uint64_t loc);
/* Check value stored with a swapped page: XXH32 of the stored bytes,
 * seeded with owner and GFN so that a read returning another page's
 * data is caught too. */
uint32_t swap_check(const void *data, unsigned len, uint16_t owner, uint64_t gfn);

/* A swapped page failed its check after a good read (p2m.c). */
void swap_note_check_error(void);
void swap_get_stats(struct swap_stats *st);
/* "[mm] swap: ..." (nothing when there is no swap) */
void swap_print(void);
#endif

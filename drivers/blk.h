/* The block interface between the swap code (mm/swap.c) and the drivers
 * behind it (NVMe, ATA; a memory disk in the host tests). A device gives
 * its geometry and one transfer function; blk.c checks every request,
 * splits it at the device's largest transfer, times it and keeps the
 * statistics and the last error, so drivers stay small and every device
 * reports the same way.
 *
 * Buffers: any address in the hypervisor's identity direct map (its value
 * is its physical address), 4-byte aligned, physically contiguous (true of
 * every direct-map range). NVMe builds PRPs from it, ATA copies with PIO. */
#ifndef DRIVERS_BLK_H
#define DRIVERS_BLK_H
#include <stdbool.h>
#include <stdint.h>

#define BLK_MAX_DEVICES 8
#define BLK_NAME_MAX 12

/* Results: 0 or one of these. */
enum blk_error {
    BLK_OK = 0,
    BLK_EIO = -1,       /* the device reported an error for this request */
    BLK_ETIMEDOUT = -2, /* no completion in time; the driver reset the device */
    BLK_ERANGE = -3,    /* outside the device, empty, or misaligned buffer */
    BLK_ENODEV = -4,    /* the device is gone (failed reset) */
    BLK_ELOST = -5,     /* the device failed with this transfer outstanding: it may
                         * still read or write the buffer at any time, so the
                         * buffer must never be freed or reused */
};

struct blkdev;

struct blk_ops {
    /* Transfers count sectors (1 .. max_sectors) at lba. On an error the
     * driver writes a one-line reason into d->last_error. */
    int (*rw)(struct blkdev *d, bool write, uint64_t lba, uint32_t count, void *buf);
    /* Makes completed writes durable (volatile write cache). May be NULL. */
    int (*flush)(struct blkdev *d);
};

struct blk_stats {
    uint64_t reads, writes, flushes;       /* requests as the driver saw them */
    uint64_t read_sectors, write_sectors;
    uint64_t read_cycles, write_cycles;    /* inside the driver (instructions in Bochs) */
    uint64_t errors, timeouts, resets;
    uint64_t lost;                         /* transfers left outstanding (BLK_ELOST) */
};

struct blkdev {
    char name[BLK_NAME_MAX];   /* "nvme0", "ata2": what hv.cfg's swap key names */
    const char *kind;          /* "NVMe", "ATA", "memory" */
    char model[48];            /* from Identify, trimmed */
    uint32_t sector_size;      /* bytes, a power of two >= 512 */
    uint64_t sectors;          /* capacity */
    uint32_t max_sectors;      /* largest single transfer */
    const struct blk_ops *ops;
    void *priv;
    bool failed;               /* the driver gave up on it */
    char last_error[128];
    struct blk_stats st;
};

/* Read or write count sectors at lba, split into transfers the device
 * takes. A transfer that timed out (the driver has reset the device) is
 * issued once more. Returns 0 or a blk_error; an error is counted and
 * logged once per request with the device's reason. After BLK_ELOST the
 * caller owns a buffer it can never use again (d->st.lost counts them). */
int blk_read(struct blkdev *d, uint64_t lba, uint64_t count, void *buf);
int blk_write(struct blkdev *d, uint64_t lba, uint64_t count, const void *buf);
int blk_flush(struct blkdev *d);
const char *blk_strerror(int err);

/* blk_read into a buffer of buf_bytes: refused (BLK_ERANGE, reason in
 * d->last_error, nothing read) when count sectors of the device's size do
 * not fit. Every read into a fixed buffer goes through this: the sector
 * size is the device's word, and NVMe allows up to 1 MiB, ATA any power
 * of two. */
int blk_read_buf(struct blkdev *d, uint64_t lba, uint64_t count, void *buf, uint64_t buf_bytes);

/* Primary partition n (1..4) of the MBR in sector 0: *first and *count in
 * sectors. Refuses (-1, logged) a device whose sectors are not 512..4096
 * bytes before reading anything, a missing table or entry, a GPT
 * protective entry, and a partition that runs past the end of the device. */
int blk_mbr_partition(struct blkdev *d, unsigned n, uint64_t *first, uint64_t *count);

/* Destructive pattern test of sectors [lba, lba + count): transfers of
 * one sector, of sizes that cross pages at odd buffer offsets (multi-page
 * PRPs, PRP lists), of more than the device's largest transfer (split),
 * then the whole range in large transfers, each read back into a cleared
 * buffer and compared. buf is scratch of buf_bytes (at least 64 KiB + 4 KiB,
 * page aligned). Returns the number of mismatching or failed transfers
 * (0: PASS); reports the first few. */
uint64_t blk_selftest(struct blkdev *d, uint64_t lba, uint64_t count, uint8_t *buf,
                      uint64_t buf_bytes);

/* Device registry: drivers register what they find at boot. */
int blk_register(struct blkdev *d);
struct blkdev *blk_find(const char *name);
int blk_count(void);
struct blkdev *blk_get(int i);
/* Forgets every device (host tests). */
void blk_reset_registry(void);
/* "[drv] ata2: ATA 'BOCHS HARDDISK', 64.0 MiB, 512-byte sectors ..." */
void blk_print(const struct blkdev *d);
#endif

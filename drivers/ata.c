/* ATA disks by polled PIO (see ata.h). References: ATA8-ACS (commands and
 * IDENTIFY DEVICE data), ATA8-APT (registers, protocols, resets) and the
 * PCI IDE Controller Specification 1.0 (where the channels' ports are).
 * Nothing here uses interrupts or DMA: every wait polls the Status
 * register against a deadline, and a device that misses it is reset. */
#include "drivers/ata.h"
#include "arch/cpu.h"
#include "arch/tsc.h"
#include "drivers/blk.h"
#include "drivers/pci.h"
#include "lib/fmt.h"
#include "lib/log.h"
#include "lib/string.h"

/* Command block registers, offsets from the channel's command base. */
enum {
    REG_DATA = 0,
    REG_ERROR = 1,
    REG_COUNT = 2,
    REG_LBA_LO = 3,
    REG_LBA_MID = 4,
    REG_LBA_HI = 5,
    REG_DEVICE = 6,
    REG_STATUS = 7,  /* read */
    REG_COMMAND = 7, /* write */
};

#define ST_ERR 0x01
#define ST_DRQ 0x08
#define ST_DF 0x20
#define ST_BSY 0x80

/* Device control register (the control block's write side). */
#define CTL_NIEN 0x02 /* no INTRQ: we poll */
#define CTL_SRST 0x04

/* Error register bits (ATA8-ACS). */
#define ERR_ABRT 0x04
#define ERR_IDNF 0x10
#define ERR_UNC 0x40
#define ERR_ICRC 0x80

/* Device register: bit 6 selects LBA addressing; bits 7 and 5 are
 * obsolete but were "shall be one" in early ATA, and old devices care. */
#define DEV_BASE 0xe0
#define DEV_SLAVE 0x10

#define CMD_READ_SECTORS_EXT 0x24
#define CMD_WRITE_SECTORS_EXT 0x34
#define CMD_FLUSH_CACHE_EXT 0xea
#define CMD_IDENTIFY 0xec

/* Deadline for any one wait. Devices answer in milliseconds; the spec
 * allows more only for spin-up, which the firmware has already done. */
#define ATA_TIMEOUT_S 5
/* 256 keeps one command to 128 KiB of PIO; READ SECTORS EXT takes 65536. */
#define ATA_MAX_SECTORS 256
#define ATA_MAX_CONTROLLERS 2

struct ata_channel {
    uint16_t cmd; /* command block base */
    uint16_t ctl; /* Alternate Status (read) / Device Control (write) */
};

struct ata_disk {
    struct blkdev blk;
    struct ata_channel *ch;
    uint8_t dev; /* 0 or DEV_SLAVE */
};

static struct ata_channel channels[ATA_MAX_CONTROLLERS * 2];
static struct ata_disk disks[ATA_MAX_CONTROLLERS * 4];

static inline void insw_rep(uint16_t port, void *buf, uint64_t words)
{
    __asm__ volatile("rep insw" : "+D"(buf), "+c"(words) : "d"(port) : "memory");
}

static inline void outsw_rep(uint16_t port, const void *buf, uint64_t words)
{
    __asm__ volatile("rep outsw" : "+S"(buf), "+c"(words) : "d"(port) : "memory");
}

/* Status is not valid until 400 ns after a command or a device selection
 * (ATA8-APT); an I/O read takes at least 100 ns, so four reads of
 * Alternate Status (which, unlike Status, has no side effect) suffice. */
static void delay400(const struct ata_channel *ch)
{
    for (int i = 0; i < 4; i++)
        inb(ch->ctl);
}

/* Polls Status until none of the bits in clear is set and, if any is
 * nonzero, one of the bits in any is. Leaves the last status in *st. */
static int wait_for(const struct ata_channel *ch, uint8_t clear, uint8_t any, uint8_t *st)
{
    uint64_t deadline = rdtsc() + ATA_TIMEOUT_S * tsc_hz();
    for (;;) {
        *st = inb(ch->cmd + REG_STATUS);
        if (!(*st & clear) && (!any || (*st & any)))
            return 0;
        if (rdtsc() > deadline)
            return BLK_ETIMEDOUT;
        pause();
    }
}

/* Software reset of both devices on the channel: SRST held at least 5 us,
 * then at least 2 ms before BSY means anything (ATA8-APT). */
static int reset_channel(const struct ata_channel *ch)
{
    uint8_t st;
    outb(ch->ctl, CTL_NIEN | CTL_SRST);
    tsc_delay_us(5);
    outb(ch->ctl, CTL_NIEN);
    tsc_delay_us(2000);
    return wait_for(ch, ST_BSY, 0, &st);
}

/* Device selection protocol (ATA8-APT): the Device register may only be
 * written while the current device is idle, and the new one must be idle
 * before it takes a command. Both devices see every register write. */
static int select_dev(const struct ata_channel *ch, uint8_t dev, uint8_t *st)
{
    if (wait_for(ch, ST_BSY | ST_DRQ, 0, st))
        return BLK_ETIMEDOUT;
    outb(ch->cmd + REG_DEVICE, DEV_BASE | dev);
    delay400(ch);
    return wait_for(ch, ST_BSY | ST_DRQ, 0, st);
}

/* Loads a 48-bit command's registers and starts it. Each register is a
 * two-deep FIFO: the high-order ("previous") byte goes in first. */
static void issue(const struct ata_channel *ch, uint8_t cmd, uint64_t lba, uint32_t count)
{
    uint16_t p = ch->cmd;
    outb(p + REG_COUNT, (uint8_t)(count >> 8));
    outb(p + REG_LBA_LO, (uint8_t)(lba >> 24));
    outb(p + REG_LBA_MID, (uint8_t)(lba >> 32));
    outb(p + REG_LBA_HI, (uint8_t)(lba >> 40));
    outb(p + REG_COUNT, (uint8_t)count);
    outb(p + REG_LBA_LO, (uint8_t)lba);
    outb(p + REG_LBA_MID, (uint8_t)(lba >> 8));
    outb(p + REG_LBA_HI, (uint8_t)(lba >> 16));
    outb(p + REG_COMMAND, cmd);
    delay400(ch);
}

static const char *error_name(uint8_t e)
{
    if (e & ERR_ICRC)
        return "interface CRC error";
    if (e & ERR_UNC)
        return "uncorrectable data";
    if (e & ERR_IDNF)
        return "address not found";
    if (e & ERR_ABRT)
        return "aborted";
    return "no reason given";
}

/* Ends a failed command. r is BLK_ETIMEDOUT from a wait, or 0 when the
 * device ended the command with ERR or DF in status st. A device that
 * did not answer may still be mid-command: the reset makes the channel
 * usable again, and a device that does not come back from it is given up. */
static int fail(struct ata_disk *a, const char *what, int r, uint8_t st)
{
    char *msg = a->blk.last_error;
    size_t n = sizeof(a->blk.last_error);
    if (!r) {
        uint8_t e = inb(a->ch->cmd + REG_ERROR);
        fmt_snprintf(msg, n, "%s: %s (status 0x%02x, error 0x%02x: %s)", what,
                     st & ST_DF ? "device fault" : "device error", st, e, error_name(e));
        return BLK_EIO;
    }
    a->blk.st.resets++;
    if (reset_channel(a->ch)) {
        a->blk.failed = true;
        fmt_snprintf(msg, n, "%s: no answer (status 0x%02x), nor after a channel reset",
                     what, st);
        return BLK_ENODEV;
    }
    fmt_snprintf(msg, n, "%s: no answer in %d s (status 0x%02x); channel reset", what,
                 ATA_TIMEOUT_S, st);
    return BLK_ETIMEDOUT;
}

static int fail_at(struct ata_disk *a, bool write, uint64_t lba, int r, uint8_t st)
{
    char what[40];
    fmt_snprintf(what, sizeof(what), "%s at LBA %llu", write ? "write" : "read",
                 (unsigned long long)lba);
    return fail(a, what, r, st);
}

/* READ/WRITE SECTORS EXT by the PIO data-in/data-out protocols: the device
 * raises DRQ for each sector in turn, and after the last one is idle with
 * ERR or DF telling how the command ended (ATA8-APT PIO protocols). A read
 * error shows before its sector's data, a write error after it. */
static int ata_rw(struct blkdev *d, bool write, uint64_t lba, uint32_t count, void *buf)
{
    struct ata_disk *a = d->priv;
    const struct ata_channel *ch = a->ch;
    uint64_t words = d->sector_size / 2;
    uint16_t *p = buf;
    uint8_t st;
    int r = select_dev(ch, a->dev, &st);
    if (r)
        return fail_at(a, write, lba, r, st);
    issue(ch, write ? CMD_WRITE_SECTORS_EXT : CMD_READ_SECTORS_EXT, lba, count);
    for (uint32_t i = 0; i < count; i++, p += words) {
        r = wait_for(ch, ST_BSY, ST_DRQ | ST_ERR | ST_DF, &st);
        if (r || (st & (ST_ERR | ST_DF)))
            return fail_at(a, write, write && i ? lba + i - 1 : lba + i, r, st);
        if (write)
            outsw_rep(ch->cmd + REG_DATA, p, words);
        else
            insw_rep(ch->cmd + REG_DATA, p, words);
        delay400(ch); /* BSY for the next sector may lag the last word */
    }
    /* DRQ still set here would mean the device wants more data than we
     * asked for: the wait then times out and the channel is reset. */
    r = wait_for(ch, ST_BSY | ST_DRQ, 0, &st);
    if (r || (st & (ST_ERR | ST_DF)))
        return fail_at(a, write, lba + count - 1, r, st);
    return BLK_OK;
}

/* FLUSH CACHE EXT: no data, done when BSY clears. */
static int ata_flush(struct blkdev *d)
{
    struct ata_disk *a = d->priv;
    uint8_t st;
    int r = select_dev(a->ch, a->dev, &st);
    if (!r) {
        issue(a->ch, CMD_FLUSH_CACHE_EXT, 0, 0);
        r = wait_for(a->ch, ST_BSY | ST_DRQ, 0, &st);
    }
    if (r || (st & (ST_ERR | ST_DF)))
        return fail(a, "flush cache", r, st);
    return BLK_OK;
}

static const struct blk_ops ata_ops = { .rw = ata_rw, .flush = ata_flush };

/* Signatures left in LBA mid/high by a packet device that aborts IDENTIFY
 * DEVICE: parallel (ATA8-APT) and Serial ATA ATAPI. */
static bool atapi_signature(uint8_t mid, uint8_t hi)
{
    return (mid == 0x14 && hi == 0xeb) || (mid == 0x69 && hi == 0x96);
}

/* IDENTIFY DEVICE (ATA8-ACS) at one position, by PIO data-in.
 * Returns 1 with the 256 words in id, 0 if nothing is there, -1 (logged)
 * if whatever is there is of no use. */
static int identify(const struct ata_channel *ch, uint8_t dev, const char *name,
                    uint16_t *id)
{
    uint8_t st;
    int r = select_dev(ch, dev, &st);
    if (!r) {
        issue(ch, CMD_IDENTIFY, 0, 0);
        /* An absent device 1 reads as status 0 (device 0 answers for it);
         * a present one is BSY or has DRQ or ERR by now. */
        if (!inb(ch->cmd + REG_STATUS))
            return 0;
        r = wait_for(ch, ST_BSY, ST_DRQ | ST_ERR, &st);
    }
    if (r) {
        reset_channel(ch);
        pr_warn(LS_DRV, "%s: no answer to IDENTIFY DEVICE (status 0x%02x): ignored", name,
                st);
        return -1;
    }
    if (st & ST_ERR) {
        uint8_t mid = inb(ch->cmd + REG_LBA_MID), hi = inb(ch->cmd + REG_LBA_HI);
        if (atapi_signature(mid, hi))
            pr_info(LS_DRV, "%s: ATAPI (packet) device: ignored", name);
        else
            pr_warn(LS_DRV,
                    "%s: IDENTIFY DEVICE failed (status 0x%02x, error 0x%02x): ignored",
                    name, st, inb(ch->cmd + REG_ERROR));
        return -1;
    }
    insw_rep(ch->cmd + REG_DATA, id, 256);
    return 1;
}

/* Words 27..46: 40 characters, two per word with the first in the high
 * byte, padded with spaces (ATA8-ACS, IDENTIFY DEVICE data). */
static void copy_model(const uint16_t *id, char *out, size_t size)
{
    size_t n = 0;
    for (int w = 27; w <= 46 && n + 2 < size; w++) {
        out[n++] = (char)(id[w] >> 8);
        out[n++] = (char)id[w];
    }
    while (n && (out[n - 1] == ' ' || out[n - 1] == '\0'))
        n--;
    out[n] = '\0';
}

/* Logical sector size in bytes: 512 unless word 106 is valid (bits 15:14
 * = 01) and says (bit 12) that words 117..118 give it in words. */
static uint32_t sector_size(const uint16_t *id)
{
    if ((id[106] & 0xc000) != 0x4000 || !(id[106] & (1u << 12)))
        return 512;
    return 2 * ((uint32_t)id[117] | (uint32_t)id[118] << 16);
}

/* Fills the block device from IDENTIFY data; false (logged) for a disk
 * this driver cannot address. */
static bool describe(struct blkdev *d, const uint16_t *id)
{
    copy_model(id, d->model, sizeof(d->model));
    if (id[0] & 0x8000) {
        pr_info(LS_DRV, "%s: '%s' is not an ATA device: ignored", d->name, d->model);
        return false;
    }
    /* Word 83 (valid when bits 15:14 are 01), bit 10: the 48-bit Address
     * feature set, which READ/WRITE SECTORS EXT need. */
    if ((id[83] & 0xc000) != 0x4000 || !(id[83] & (1u << 10))) {
        pr_info(LS_DRV, "%s: '%s' has no 48-bit LBA: ignored", d->name, d->model);
        return false;
    }
    d->sector_size = sector_size(id);
    if (d->sector_size < 512 || (d->sector_size & (d->sector_size - 1))) {
        pr_info(LS_DRV, "%s: '%s' has %u-byte sectors: ignored", d->name, d->model,
                d->sector_size);
        return false;
    }
    /* Words 100..103: number of addressable sectors, low word first. */
    d->sectors = 0;
    for (int w = 103; w >= 100; w--)
        d->sectors = d->sectors << 16 | id[w];
    if (!d->sectors) {
        pr_info(LS_DRV, "%s: '%s' reports no sectors: ignored", d->name, d->model);
        return false;
    }
    d->kind = "ATA";
    d->max_sectors = ATA_MAX_SECTORS;
    d->ops = &ata_ops;
    return true;
}

/* Identifies both devices on a channel; index names the master. Returns
 * how many were registered. */
static int probe_channel(struct ata_channel *ch, int index)
{
    outb(ch->ctl, CTL_NIEN);
    /* With no device to drive it the bus floats high; hosts pull DD7 low
     * (ATA8-APT), so an empty channel reads 0xff or 0x7f. */
    if ((inb(ch->cmd + REG_STATUS) & 0x7f) == 0x7f) {
        pr_debug(LS_DRV, "ata: no devices at %#x", ch->cmd);
        return 0;
    }
    int found = 0;
    for (int i = 0; i < 2; i++) {
        struct ata_disk *a = &disks[index + i];
        struct blkdev *d = &a->blk;
        uint16_t id[256];
        memset(a, 0, sizeof(*a));
        fmt_snprintf(d->name, sizeof(d->name), "ata%d", index + i);
        a->ch = ch;
        a->dev = i ? DEV_SLAVE : 0;
        d->priv = a;
        if (identify(ch, a->dev, d->name, id) <= 0 || !describe(d, id))
            continue;
        if (blk_register(d))
            continue;
        blk_print(d);
        found++;
    }
    return found;
}

/* A channel's ports: the legacy ones in compatibility mode, else the I/O
 * BARs (PCI IDE Controller spec: BAR 2n is the command block, BAR 2n+1 the
 * control block, whose byte 2 is Alternate Status / Device Control). */
static bool channel_ports(const struct pci_dev *p, int c, struct ata_channel *ch)
{
    static const struct ata_channel legacy[2] = { { 0x1f0, 0x3f6 }, { 0x170, 0x376 } };
    if (!(p->prog_if & (1u << (2 * c)))) {
        *ch = legacy[c];
        return true;
    }
    uint32_t cmd = pci_read32(p->bus, p->dev, p->fn, (uint8_t)(0x10 + 8 * c));
    uint32_t ctl = pci_read32(p->bus, p->dev, p->fn, (uint8_t)(0x14 + 8 * c));
    if (!(cmd & 1) || !(ctl & 1) || !(cmd & ~3u) || !(ctl & ~3u))
        return false;
    ch->cmd = (uint16_t)(cmd & ~3u);
    ch->ctl = (uint16_t)((ctl & ~3u) + 2);
    return true;
}

/* Both channels of one controller; ctrl numbers it for the disk names. */
static int probe_controller(const struct pci_dev *p, int ctrl)
{
    /* Firmware that never booted from it may leave I/O decoding off. */
    uint32_t cmd = pci_read32(p->bus, p->dev, p->fn, 0x04);
    if (!(cmd & 1))
        pci_write32(p->bus, p->dev, p->fn, 0x04, cmd | 1);
    int found = 0;
    for (int c = 0; c < 2; c++) {
        struct ata_channel *ch = &channels[2 * ctrl + c];
        const char *chan = c ? "secondary" : "primary";
        if (!channel_ports(p, c, ch)) {
            pr_warn(LS_DRV, "ata: %02x:%02x.%x %s channel: native mode without I/O BARs",
                    p->bus, p->dev, p->fn, chan);
            continue;
        }
        pr_info(LS_DRV, "ata: %02x:%02x.%x %s channel at %#x/%#x (%s mode)", p->bus,
                p->dev, p->fn, chan, ch->cmd, ch->ctl,
                p->prog_if & (1u << (2 * c)) ? "native" : "compatibility");
        found += probe_channel(ch, 4 * ctrl + 2 * c);
    }
    return found;
}

/* Only PCI IDE controllers: legacy ports with none behind them are not
 * probed, since something else might live there. */
int ata_probe(void)
{
    int found = 0, ctrls = 0;
    for (int i = 0; i < pci_count(); i++) {
        const struct pci_dev *p = pci_get(i);
        if (p->class_code != 0x01 || p->subclass != 0x01)
            continue;
        if (ctrls == ATA_MAX_CONTROLLERS) {
            pr_warn(LS_DRV, "ata: more than %d IDE controllers: the rest are ignored",
                    ATA_MAX_CONTROLLERS);
            break;
        }
        found += probe_controller(p, ctrls++);
    }
    if (!ctrls)
        pr_info(LS_DRV, "ata: no IDE controller");
    return found;
}

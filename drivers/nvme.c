/* The NVMe driver (nvme.h): polled, synchronous, one I/O queue pair per
 * controller, namespace 1 only. References are to the NVM Express Base
 * Specification 1.4: 3.1 (registers), 4 (queues, PRPs, completions),
 * 5 (admin commands), 6 (NVM commands), 7.3 (resets), 7.6.1
 * (initialization). Register values, ring arithmetic, PRPs and status
 * texts come from nvme_proto.c; this file only talks to the hardware.
 *
 * Memory is identity mapped, so a pointer is its physical address: queue
 * memory, Identify data and the caller's buffers go to the controller as
 * they are. Interrupts are off: completions are found by polling the
 * phase bit, and every wait is bounded by the TSC. */
#include "drivers/nvme.h"
#include "arch/cpu.h"
#include "arch/memory.h"
#include "arch/msr.h"
#include "arch/pt.h"
#include "arch/tsc.h"
#include "drivers/blk.h"
#include "drivers/nvme_proto.h"
#include "drivers/pci.h"
#include "lib/fmt.h"
#include "lib/log.h"
#include "lib/string.h"
#include "mm/frame.h"
#include "mm/mm_backend.h"

#define NVME_MAX_CTRL 2        /* nvme0, nvme1 */
#define ADMIN_ENTRIES 32       /* the admin queue carries only set-up commands */
#define IO_ENTRIES 64          /* 64 commands of 64 bytes: one page */
#define MAX_XFER_PAGES 256     /* 1 MiB: our cap even when MDTS says "no limit" */
#define MIN_TIMEOUT_MS 2000    /* floor under CAP.TO for slow emulators */
/* A MAX_XFER_PAGES transfer from an unaligned buffer touches one page
 * more; PRP1 takes the first, the list the other MAX_XFER_PAGES (4.3),
 * with one slot per list page lost to the chain pointer. */
#define PRP_LIST_PAGES ((MAX_XFER_PAGES + NVME_PRPS_PER_PAGE - 2) / (NVME_PRPS_PER_PAGE - 1))
/* Admin SQ, admin CQ, I/O SQ, I/O CQ, Identify data, PRP lists. */
#define CTRL_PAGES (5 + PRP_LIST_PAGES)

/* Controller registers (3.1). */
enum {
    REG_CAP = 0x00, REG_VS = 0x08, REG_CC = 0x14, REG_CSTS = 0x1c,
    REG_AQA = 0x24, REG_ASQ = 0x28, REG_ACQ = 0x30,
};
#define CC_EN 1u
#define CSTS_RDY 1u
#define CSTS_CFS 2u

/* PCI command register (offset 4). */
#define PCI_CMD_MEM (1u << 1)
#define PCI_CMD_MASTER (1u << 2)
#define PCI_CMD_INTX_OFF (1u << 10)

enum { ADM_CREATE_SQ = 0x01, ADM_CREATE_CQ = 0x05, ADM_IDENTIFY = 0x06, ADM_SET_FEATURES = 0x09 };
enum { IO_FLUSH = 0x00, IO_WRITE = 0x01, IO_READ = 0x02 };
enum { CNS_NAMESPACE = 0, CNS_CONTROLLER = 1 };
#define FEAT_NUM_QUEUES 0x07
#define NSID 1

/* A submission queue entry (4.2): PRPs only, no fused commands. */
struct nvme_sqe {
    uint8_t opc;
    uint8_t flags;
    uint16_t cid;
    uint32_t nsid;
    uint64_t rsvd;
    uint64_t mptr;
    uint64_t prp1, prp2;
    uint32_t cdw10, cdw11, cdw12, cdw13, cdw14, cdw15;
};
_Static_assert(sizeof(struct nvme_sqe) == 64, "SQE size");

struct nvme_queue {
    uint16_t qid;
    uint16_t next_cid;
    struct nvme_ring ring;
    struct nvme_sqe *sq;
    volatile struct nvme_cqe *cq;   /* written by the controller */
};

struct nvme_ctrl {
    struct blkdev blk;
    const struct pci_dev *pci;
    volatile uint8_t *regs;
    struct nvme_cap cap;
    uint32_t timeout_ms;
    uint64_t timeout_cycles;
    struct nvme_queue admin, io;
    uint8_t *ident;                 /* one page of Identify data */
    uint64_t *prp_list[PRP_LIST_PAGES];
    uint64_t prp_phys[PRP_LIST_PAGES];
    uint32_t lba_shift;
};

static struct nvme_ctrl ctrls[NVME_MAX_CTRL];

static inline void barrier(void)
{
    __asm__ volatile("" ::: "memory");
}

static uint64_t phys(const volatile void *p)
{
    return (uint64_t)(uintptr_t)p; /* the identity map */
}

static uint32_t rd32(struct nvme_ctrl *c, uint32_t off)
{
    return *(volatile uint32_t *)(c->regs + off);
}

static void wr32(struct nvme_ctrl *c, uint32_t off, uint32_t v)
{
    *(volatile uint32_t *)(c->regs + off) = v;
}

/* 64-bit registers as two dword writes, low first (as Linux does): not
 * every controller takes 8-byte accesses. */
static void wr64(struct nvme_ctrl *c, uint32_t off, uint64_t v)
{
    wr32(c, off, (uint32_t)v);
    wr32(c, off + 4, (uint32_t)(v >> 32));
}

/* Polls CSTS.RDY until it equals ready, for at most the controller's
 * timeout (CAP.TO bounds both transitions, 3.1.1). */
static int wait_ready(struct nvme_ctrl *c, bool ready, const char *step)
{
    uint64_t t0 = rdtsc();
    for (;;) {
        uint32_t csts = rd32(c, REG_CSTS);
        if (csts == 0xffffffff) {
            pr_err(LS_DRV, "%s: %s: CSTS reads all ones: the controller is gone",
                   c->blk.name, step);
            return -1;
        }
        if (ready && (csts & CSTS_CFS)) {
            pr_err(LS_DRV, "%s: %s: controller fatal status (CSTS.CFS)", c->blk.name, step);
            return -1;
        }
        if (!!(csts & CSTS_RDY) == ready)
            return 0;
        if (rdtsc() - t0 > c->timeout_cycles) {
            pr_err(LS_DRV, "%s: %s: CSTS.RDY still %u after %u ms", c->blk.name, step,
                   !ready, c->timeout_ms);
            return -1;
        }
        pause();
    }
}

/* Submits cmd on q and polls for its completion. One command is in
 * flight at a time, so the ring never fills. Returns the completion's
 * status field, or -1 when none came in time. */
static uint32_t hold_nth, io_commands; /* nvme_test_hold */
static bool stuck_test;                /* nvme_test_stuck */

void nvme_test_hold(uint32_t nth)
{
    hold_nth = nth;
}

void nvme_test_stuck(bool on)
{
    stuck_test = on;
}

static int execute(struct nvme_ctrl *c, struct nvme_queue *q, struct nvme_sqe *cmd)
{
    cmd->cid = q->next_cid++;
    q->sq[nvme_sq_push(&q->ring)] = *cmd;
    barrier(); /* the entry (and any PRP list) is in memory before the doorbell */
    if (q->qid && hold_nth && ++io_commands == hold_nth)
        pr_warn(LS_DRV, "%s: test: not ringing the doorbell of I/O command %u", c->blk.name,
                hold_nth);
    else
        wr32(c, nvme_doorbell(q->qid, false, c->cap.dstrd), q->ring.sq_tail);
    struct nvme_cqe e;
    for (uint64_t t0 = rdtsc();;) {
        if (nvme_cq_take(&q->ring, &q->cq[q->ring.cq_head], &e)) {
            wr32(c, nvme_doorbell(q->qid, true, c->cap.dstrd), q->ring.cq_head);
            if (e.cid == cmd->cid) {
                barrier(); /* the caller reads the data only now */
                return e.status;
            }
            pr_warn(LS_DRV, "%s: queue %u: completion for command %u while waiting for %u",
                    c->blk.name, q->qid, e.cid, cmd->cid);
        } else if (rdtsc() - t0 > c->timeout_cycles) {
            return -1;
        } else {
            pause();
        }
    }
}

/* An admin command during set-up: any failure fails the set-up. */
static int admin(struct nvme_ctrl *c, struct nvme_sqe *cmd, const char *what)
{
    int st = execute(c, &c->admin, cmd);
    if (st < 0) {
        pr_err(LS_DRV, "%s: %s: no completion in %u ms", c->blk.name, what, c->timeout_ms);
        return -1;
    }
    struct nvme_status s = nvme_decode_status((uint16_t)st);
    if (!nvme_status_ok(s)) {
        pr_err(LS_DRV, "%s: %s: %s (sct %u sc %#x)", c->blk.name, what, nvme_status_text(s),
               s.sct, s.sc);
        return -1;
    }
    return 0;
}

/* Empty rings over zeroed completion memory (phase 0 reads as old). */
static void queue_reset(struct nvme_queue *q, uint16_t entries)
{
    memset((void *)q->cq, 0, (size_t)entries * sizeof(struct nvme_cqe));
    nvme_ring_init(&q->ring, entries);
}

/* One I/O queue pair, completion queue first (5: the SQ names its CQ).
 * Both are one physically contiguous page, as CAP.CQR may demand. */
static int create_io_queues(struct nvme_ctrl *c)
{
    struct nvme_queue *q = &c->io;
    uint32_t qsize = (uint32_t)(q->ring.entries - 1) << 16 | q->qid; /* 0's based size */
    struct nvme_sqe nq = { .opc = ADM_SET_FEATURES, .cdw10 = FEAT_NUM_QUEUES,
                           .cdw11 = 0 /* one SQ and one CQ, 0's based */ };
    struct nvme_sqe cq = { .opc = ADM_CREATE_CQ, .prp1 = phys(q->cq), .cdw10 = qsize,
                           .cdw11 = 1 /* physically contiguous, no interrupts */ };
    struct nvme_sqe sq = { .opc = ADM_CREATE_SQ, .prp1 = phys(q->sq), .cdw10 = qsize,
                           .cdw11 = (uint32_t)q->qid << 16 | 1 /* its CQ; contiguous */ };
    if (admin(c, &nq, "set features (number of queues)") ||
        admin(c, &cq, "create I/O completion queue") ||
        admin(c, &sq, "create I/O submission queue"))
        return -1;
    return 0;
}

/* Reset and bring-up (7.6.1): disable, wait for RDY = 0, give the admin
 * queue, enable, wait for RDY = 1, create the I/O queues. Clearing CC.EN
 * is a controller reset (7.3.2) that forgets every queue and command, so
 * this is also the recovery after a timeout. Returns 0; START_NO_RESET
 * when RDY never went to 0 (the controller did not reset: a command it
 * holds may still run); START_FAILED when a later step failed (the reset
 * itself happened). */
enum { START_NO_RESET = -1, START_FAILED = -2 };

static int ctrl_start(struct nvme_ctrl *c, bool recovery)
{
    if (recovery && stuck_test)
        pr_warn(LS_DRV, "%s: test: ignoring the reset (CC.EN stays 1)", c->blk.name);
    else
        wr32(c, REG_CC, rd32(c, REG_CC) & ~CC_EN);
    if (wait_ready(c, false, "disable"))
        return START_NO_RESET;
    queue_reset(&c->admin, c->admin.ring.entries);
    queue_reset(&c->io, c->io.ring.entries);
    wr32(c, REG_AQA, nvme_aqa(c->admin.ring.entries, c->admin.ring.entries));
    wr64(c, REG_ASQ, phys(c->admin.sq));
    wr64(c, REG_ACQ, phys(c->admin.cq));
    wr32(c, REG_CC, nvme_cc_enable());
    if (wait_ready(c, true, "enable") || create_io_queues(c))
        return START_FAILED;
    return 0;
}

/* For a controller given up on: Bus Master Enable off in the PCI command
 * register, after which the function may not issue memory requests (PCI
 * Local Bus 3.0, 6.2.2), so a command it still holds cannot reach memory.
 * The read back confirms the write arrived. Memory decoding stays on:
 * the registers can still be read for a diagnosis. */
static void stop_dma(struct nvme_ctrl *c)
{
    const struct pci_dev *p = c->pci;
    uint32_t cmd = pci_read32(p->bus, p->dev, p->fn, 0x04) & 0xffff;
    pci_write32(p->bus, p->dev, p->fn, 0x04, cmd & ~PCI_CMD_MASTER);
    uint32_t now = pci_read32(p->bus, p->dev, p->fn, 0x04) & 0xffff;
    if (now & PCI_CMD_MASTER)
        pr_err(LS_DRV, "%s: bus mastering still enabled after clearing it (PCI command %#x)",
               c->blk.name, now);
    else
        pr_warn(LS_DRV, "%s: bus mastering disabled (PCI command %#x -> %#x): the controller "
                        "can no longer reach memory", c->blk.name, cmd, now);
}

/* An uncached, non-executable 4 KiB mapping (SDM Vol. 3A 4.5): P, RW,
 * and PWT|PCD, which select PAT entry 3, UC as the firmware leaves it. */
#define PTE_MMIO (1ULL << 0 | 1ULL << 1 | 1ULL << 3 | 1ULL << 4)
#define PTE_NX (1ULL << 63)

/* Makes registers [addr, addr + len) reachable at their own address. The
 * identity map covers max(4 GiB, top of RAM), MMIO there being UC by the
 * MTRRs (paging_init), but firmware may put a 64-bit BAR far above it
 * (OVMF on q35: 0xe000000000). Such registers get identity pages of their
 * own, uncached by the page attributes. (A candidate for arch/memory.c
 * once a second driver needs it.) */
static int map_mmio(struct nvme_ctrl *c, uint64_t addr, uint64_t len)
{
    uint64_t top = memory_top() > (4ULL << 30) ? memory_top() : 4ULL << 30;
    uint64_t first = addr & ~(PAGE_SIZE - 1);
    uint64_t end = (addr + len + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
    if (end <= top)
        return 0;
    if (end > 1ULL << 47) { /* va = pa must be a canonical address */
        pr_err(LS_DRV, "%s: BAR0 at %#llx is beyond the identity-mappable range", c->blk.name,
               (unsigned long long)addr);
        return -1;
    }
    uint64_t nx = rdmsr(MSR_EFER) & EFER_NXE ? PTE_NX : 0;
    if (pt_map(&pt_fmt_host, (read_cr3() & PT_ADDR_MASK) >> PAGE_SHIFT, first, first,
               end - first, PTE_MMIO | nx, PT_LEVEL_4K)) {
        pr_err(LS_DRV, "%s: no page-table frames to map BAR0 at %#llx", c->blk.name,
               (unsigned long long)addr);
        return -1;
    }
    return 0;
}

/* BAR0 (the registers, a 64-bit memory BAR), then memory decoding and
 * bus mastering on, INTx off: we poll. */
static int map_bar(struct nvme_ctrl *c)
{
    const struct pci_dev *p = c->pci;
    uint32_t lo = pci_read32(p->bus, p->dev, p->fn, 0x10);
    uint64_t bar = lo & ~0xfull;
    if (lo & 1) {
        pr_err(LS_DRV, "%s: BAR0 is an I/O port BAR", c->blk.name);
        return -1;
    }
    if (((lo >> 1) & 3) == 2)
        bar |= (uint64_t)pci_read32(p->bus, p->dev, p->fn, 0x14) << 32;
    if (!bar) {
        pr_err(LS_DRV, "%s: BAR0 is not assigned", c->blk.name);
        return -1;
    }
    if (map_mmio(c, bar, NVME_PAGE))
        return -1;
    /* The status half is written as 0: its bits are write-1-to-clear. */
    uint32_t cmd = pci_read32(p->bus, p->dev, p->fn, 0x04) & 0xffff;
    pci_write32(p->bus, p->dev, p->fn, 0x04,
                cmd | PCI_CMD_MEM | PCI_CMD_MASTER | PCI_CMD_INTX_OFF);
    c->regs = mm_phys_to_virt(bar);
    return 0;
}

/* CAP (3.1.1): what we need is the NVM command set, 4 KiB pages and
 * queues of at least two entries. */
static int read_cap(struct nvme_ctrl *c)
{
    uint64_t cap = rd32(c, REG_CAP) | (uint64_t)rd32(c, REG_CAP + 4) << 32;
    nvme_decode_cap(cap, &c->cap);
    if (!c->cap.nvm_cmd_set || c->cap.mps_min > NVME_PAGE || c->cap.mqes < 2) {
        pr_err(LS_DRV, "%s: unsupported capabilities (CAP %#llx)", c->blk.name,
               (unsigned long long)cap);
        return -1;
    }
    if (map_mmio(c, phys(c->regs), nvme_doorbell(1, true, c->cap.dstrd) + 4))
        return -1;
    c->timeout_ms = c->cap.timeout_ms > MIN_TIMEOUT_MS ? c->cap.timeout_ms : MIN_TIMEOUT_MS;
    c->timeout_cycles = tsc_hz() / 1000 * c->timeout_ms;
    return 0;
}

/* Queue, Identify and PRP list pages, carved from one zeroed allocation.
 * A controller that fails later keeps them: it may still write there. */
static int alloc_memory(struct nvme_ctrl *c)
{
    mfn_t m = frame_alloc_contig(CTRL_PAGES, 1, FS_HV, 0);
    if (m == MFN_INVALID) {
        pr_err(LS_DRV, "%s: no memory for the queues", c->blk.name);
        return -1;
    }
    uint8_t *base = mm_phys_to_virt(m << PAGE_SHIFT);
    c->admin = (struct nvme_queue){ .qid = 0, .sq = (void *)base,
                                    .cq = (void *)(base + NVME_PAGE) };
    c->io = (struct nvme_queue){ .qid = 1, .sq = (void *)(base + 2 * NVME_PAGE),
                                 .cq = (void *)(base + 3 * NVME_PAGE) };
    nvme_ring_init(&c->admin.ring, ADMIN_ENTRIES);
    nvme_ring_init(&c->io.ring, c->cap.mqes < IO_ENTRIES ? (uint16_t)c->cap.mqes : IO_ENTRIES);
    c->ident = base + 4 * NVME_PAGE;
    for (unsigned i = 0; i < PRP_LIST_PAGES; i++) {
        c->prp_list[i] = (uint64_t *)(base + (5 + i) * NVME_PAGE);
        c->prp_phys[i] = phys(c->prp_list[i]);
    }
    return 0;
}

/* Copies an Identify ASCII field, space padded, without the padding. */
static void copy_trimmed(char *dst, size_t size, const uint8_t *src, size_t len)
{
    if (len > size - 1)
        len = size - 1;
    while (len && (src[len - 1] == ' ' || src[len - 1] == 0))
        len--;
    memcpy(dst, src, len);
    dst[len] = 0;
}

/* Identify controller (CNS 1): model, serial, MDTS. Returns the largest
 * transfer in pages. */
static int identify_controller(struct nvme_ctrl *c, uint32_t *max_pages)
{
    struct nvme_sqe id = { .opc = ADM_IDENTIFY, .prp1 = phys(c->ident), .cdw10 = CNS_CONTROLLER };
    if (admin(c, &id, "identify controller"))
        return -1;
    char serial[21];
    copy_trimmed(serial, sizeof(serial), c->ident + 4, 20);
    copy_trimmed(c->blk.model, sizeof(c->blk.model), c->ident + 24, 40);
    /* MDTS: 2^n pages of CAP.MPSMIN (4 KiB here); 0 means no limit. */
    uint8_t mdts = c->ident[77];
    *max_pages = MAX_XFER_PAGES;
    if (mdts && mdts < 31 && (1u << mdts) < MAX_XFER_PAGES)
        *max_pages = 1u << mdts;
    uint32_t vs = rd32(c, REG_VS);
    const struct pci_dev *p = c->pci;
    pr_info(LS_DRV, "%s: controller %02x:%02x.%x, NVMe %u.%u.%u, serial '%s': MQES %u, "
                    "CAP.TO %u ms, DSTRD %u, MDTS %u (%u KiB per transfer), "
                    "admin queue %u, I/O queue %u",
            c->blk.name, p->bus, p->dev, p->fn, vs >> 16, (vs >> 8) & 0xff, vs & 0xff, serial,
            c->cap.mqes, c->cap.timeout_ms, c->cap.dstrd, mdts, *max_pages * 4,
            c->admin.ring.entries, c->io.ring.entries);
    return 0;
}

/* Identify namespace 1 (CNS 0): size (NSZE) and the LBA format in use
 * (FLBAS indexes the LBAF table; LBADS is log2 of the sector size). */
static int identify_namespace(struct nvme_ctrl *c, uint32_t max_pages)
{
    struct nvme_sqe id = { .opc = ADM_IDENTIFY, .nsid = NSID, .prp1 = phys(c->ident),
                           .cdw10 = CNS_NAMESPACE };
    if (admin(c, &id, "identify namespace 1"))
        return -1;
    uint64_t nsze;
    uint32_t lbaf;
    memcpy(&nsze, c->ident, 8);
    memcpy(&lbaf, c->ident + 128 + 4 * (c->ident[26] & 0xf), 4);
    uint32_t ms = lbaf & 0xffff, lbads = (lbaf >> 16) & 0xff;
    uint64_t max_bytes = (uint64_t)max_pages * NVME_PAGE;
    /* Metadata would travel inside our buffers (extended LBAs) or need
     * its own pointer: only plain formats are taken. */
    if (!nsze || ms || lbads < 9 || lbads > 31 || (max_bytes >> lbads) == 0) {
        pr_err(LS_DRV, "%s: namespace 1 is unusable (size %llu, LBA format %#x)",
               c->blk.name, (unsigned long long)nsze, lbaf);
        return -1;
    }
    c->lba_shift = lbads;
    c->blk.sector_size = 1u << lbads;
    c->blk.sectors = nsze;
    c->blk.max_sectors = (uint32_t)(max_bytes >> lbads);
    return 0;
}

/* "write at LBA 1234" or "flush": how an error message starts. */
static int describe(char *buf, size_t size, const struct nvme_sqe *cmd)
{
    if (cmd->opc == IO_FLUSH)
        return fmt_snprintf(buf, size, "flush");
    return fmt_snprintf(buf, size, "%s at LBA %llu", cmd->opc == IO_WRITE ? "write" : "read",
                        (unsigned long long)cmd->cdw10 | (unsigned long long)cmd->cdw11 << 32);
}

/* After a timeout the command's fate is unknown: reset the controller,
 * which drops it, and build the queues again. A controller that does not
 * come back is given up with bus mastering off; if it did not even reset,
 * the command is still its to run, and the caller's buffer must never be
 * reused (BLK_ELOST). */
static int recover(struct nvme_ctrl *c)
{
    struct blkdev *d = &c->blk;
    d->st.resets++;
    pr_warn(LS_DRV, "%s: %s: resetting the controller", d->name, d->last_error);
    int r = ctrl_start(c, true);
    if (r == 0)
        return BLK_ETIMEDOUT;
    size_t n = strlen(d->last_error);
    fmt_snprintf(d->last_error + n, sizeof(d->last_error) - n, "; %s",
                 r == START_NO_RESET ? "no reset either: the command may still be outstanding"
                                     : "the reset failed");
    d->failed = true;
    stop_dma(c);
    return r == START_NO_RESET ? BLK_ELOST : BLK_ENODEV;
}

/* Runs one NVM command on the I/O queue and turns its outcome into a
 * blk_error with d->last_error. */
static int io(struct nvme_ctrl *c, struct nvme_sqe *cmd)
{
    struct blkdev *d = &c->blk;
    int st = execute(c, &c->io, cmd);
    if (st < 0) {
        int n = describe(d->last_error, sizeof(d->last_error), cmd);
        fmt_snprintf(d->last_error + n, sizeof(d->last_error) - n, ": no completion in %u ms",
                     c->timeout_ms);
        return recover(c);
    }
    struct nvme_status s = nvme_decode_status((uint16_t)st);
    if (nvme_status_ok(s))
        return BLK_OK;
    int n = describe(d->last_error, sizeof(d->last_error), cmd);
    fmt_snprintf(d->last_error + n, sizeof(d->last_error) - n, ": %s (sct %u sc %#x)",
                 nvme_status_text(s), s.sct, s.sc);
    return BLK_EIO;
}

/* Page i of a transfer whose first page is *(uint64_t *)ctx: the buffer
 * is physically contiguous (blk.h). */
static uint64_t buffer_page(void *ctx, uint64_t i)
{
    return *(uint64_t *)ctx + i * NVME_PAGE;
}

static int nvme_rw(struct blkdev *d, bool write, uint64_t lba, uint32_t count, void *buf)
{
    struct nvme_ctrl *c = d->priv;
    uint64_t addr = phys(buf), first = addr & ~(uint64_t)(NVME_PAGE - 1);
    struct nvme_sqe cmd = {
        .opc = write ? IO_WRITE : IO_READ, .nsid = NSID,
        .cdw10 = (uint32_t)lba, .cdw11 = (uint32_t)(lba >> 32),
        .cdw12 = count - 1, /* NLB, 0's based */
    };
    if (nvme_build_prps((uint64_t)count << c->lba_shift, (uint32_t)(addr - first), buffer_page,
                        &first, &cmd.prp1, &cmd.prp2, c->prp_list, c->prp_phys,
                        PRP_LIST_PAGES) < 0) {
        fmt_snprintf(d->last_error, sizeof(d->last_error),
                     "%s of %u sectors from %p: no PRPs for this buffer",
                     write ? "write" : "read", count, buf);
        return BLK_ERANGE;
    }
    return io(c, &cmd);
}

static int nvme_flush(struct blkdev *d)
{
    struct nvme_sqe cmd = { .opc = IO_FLUSH, .nsid = NSID };
    return io(d->priv, &cmd);
}

static const struct blk_ops nvme_ops = { .rw = nvme_rw, .flush = nvme_flush };

/* Brings up one controller as block device nvme<index>. */
static int ctrl_probe(struct nvme_ctrl *c, const struct pci_dev *p, int index)
{
    uint32_t max_pages;
    memset(c, 0, sizeof(*c));
    c->pci = p;
    fmt_snprintf(c->blk.name, sizeof(c->blk.name), "nvme%d", index);
    if (map_bar(c) || read_cap(c) || alloc_memory(c) || ctrl_start(c, false) ||
        identify_controller(c, &max_pages) || identify_namespace(c, max_pages)) {
        pr_err(LS_DRV, "%s: NVMe controller %02x:%02x.%x skipped", c->blk.name, p->bus,
               p->dev, p->fn);
        if (c->regs)
            stop_dma(c); /* it may hold an admin command naming our memory */
        return -1;
    }
    c->blk.kind = "NVMe";
    c->blk.ops = &nvme_ops;
    c->blk.priv = c;
    if (blk_register(&c->blk))
        return -1;
    blk_print(&c->blk);
    return 0;
}

int nvme_probe(void)
{
    int n = 0;
    for (int i = 0; i < pci_count(); i++) {
        const struct pci_dev *p = pci_get(i);
        if (p->class_code != 0x01 || p->subclass != 0x08 || p->prog_if != 0x02)
            continue;
        if (n == NVME_MAX_CTRL) {
            pr_warn(LS_DRV, "nvme: more than %d controllers: %02x:%02x.%x ignored",
                    NVME_MAX_CTRL, p->bus, p->dev, p->fn);
            continue;
        }
        if (ctrl_probe(&ctrls[n], p, n) == 0)
            n++;
    }
    return n;
}

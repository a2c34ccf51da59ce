/* The parts of NVMe that need no hardware: register fields, queue ring
 * arithmetic with the phase bit, PRP construction for multi-page
 * transfers, and status decoding (NVM Express Base Specification 1.4,
 * sections 3.1 registers, 4.1 queues, 4.3 PRPs, 4.6 completion entries).
 * Pure C, unit-tested on the host; drivers/nvme.c drives the controller
 * with it. */
#ifndef DRIVERS_NVME_PROTO_H
#define DRIVERS_NVME_PROTO_H
#include <stdbool.h>
#include <stdint.h>

#define NVME_PAGE 4096u                 /* CC.MPS = 0: 4 KiB memory pages */
#define NVME_PRPS_PER_PAGE (NVME_PAGE / 8)

/* Controller capabilities (CAP, offset 0). */
struct nvme_cap {
    uint32_t mqes;        /* largest queue, in entries (CAP.MQES + 1) */
    bool cqr;             /* queues must be physically contiguous */
    uint32_t timeout_ms;  /* CAP.TO x 500 ms: worst case for CSTS.RDY to follow CC.EN */
    uint32_t dstrd;       /* doorbell stride: 4 << CAP.DSTRD bytes */
    bool nvm_cmd_set;     /* CAP.CSS bit 0: the NVM command set */
    uint32_t mps_min, mps_max; /* smallest / largest memory page, bytes */
};
void nvme_decode_cap(uint64_t cap, struct nvme_cap *out);

/* CC value enabling the controller with 4 KiB pages, the NVM command set,
 * round-robin arbitration and 64/16-byte queue entries. */
uint32_t nvme_cc_enable(void);
/* AQA for admin queues of sq and cq entries. */
uint32_t nvme_aqa(uint32_t sq_entries, uint32_t cq_entries);
/* Byte offset of the submission-tail (cq = false) or completion-head
 * doorbell of queue qid. */
uint32_t nvme_doorbell(uint32_t qid, bool cq, uint32_t dstrd);

/* One queue pair's ring state. The submission ring is full when the tail
 * would reach the head the controller last reported (CQE.SQHD); the
 * completion ring's next entry is new when its phase bit equals ours, and
 * our phase flips every time the head wraps. */
struct nvme_ring {
    uint16_t entries;
    uint16_t sq_tail, sq_head;
    uint16_t cq_head;
    uint8_t phase;        /* expected phase of the next new completion */
};
void nvme_ring_init(struct nvme_ring *r, uint16_t entries);
bool nvme_sq_full(const struct nvme_ring *r);
/* Slot for the next command; advances the tail (ring the doorbell with
 * the new r->sq_tail). Call only when not full. */
uint16_t nvme_sq_push(struct nvme_ring *r);

/* A completion queue entry (16 bytes, as the controller writes it). */
struct nvme_cqe {
    uint32_t dw0;
    uint32_t rsvd;
    uint16_t sq_head;
    uint16_t sq_id;
    uint16_t cid;
    uint16_t status;      /* bit 0 phase, bits 15:1 status field */
};
_Static_assert(sizeof(struct nvme_cqe) == 16, "CQE size");
/* Is this entry new (its phase matches)? If so, consumes it: advances the
 * head (flipping the phase on wrap) and takes SQHD. Ring the completion
 * doorbell with r->cq_head afterwards. */
bool nvme_cq_take(struct nvme_ring *r, const volatile struct nvme_cqe *e, struct nvme_cqe *out);

/* Status field of a completion (phase bit stripped). */
struct nvme_status {
    uint8_t sct;          /* status code type: 0 generic, 1 command specific, 2 media */
    uint8_t sc;           /* status code */
    bool more, dnr;       /* more information in a log page; do not retry */
};
struct nvme_status nvme_decode_status(uint16_t cqe_status);
bool nvme_status_ok(struct nvme_status s);
/* A short description ("LBA out of range", "unrecovered read error", ...)
 * or a generic one naming the type for codes it does not know. */
const char *nvme_status_text(struct nvme_status s);

/* PRPs for a transfer of len bytes (1 .. NVME_PRPS_PER_PAGE * 512 pages)
 * whose pages are page_addr(ctx, 0 .. n-1) (page aligned) and whose first
 * byte is at offset off in page 0. Fills *prp1 and *prp2: prp2 is 0 for
 * one page, the second page for two, otherwise the physical address of a
 * PRP list held in list pages list[0..] whose physical addresses are
 * list_phys[]; a list page's last entry chains to the next list page when
 * more entries follow. Returns the number of list pages used (0 .. nlist),
 * or -1 when the transfer is empty, misaligned or needs more list pages
 * than given. */
int nvme_build_prps(uint64_t len, uint32_t off, uint64_t (*page_addr)(void *ctx, uint64_t i),
                    void *ctx, uint64_t *prp1, uint64_t *prp2, uint64_t *const *list,
                    const uint64_t *list_phys, unsigned nlist);
#endif

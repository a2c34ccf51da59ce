#include "drivers/nvme_proto.h"

void nvme_decode_cap(uint64_t cap, struct nvme_cap *out)
{
    out->mqes = (uint32_t)(cap & 0xffff) + 1;
    out->cqr = (cap >> 16) & 1;
    out->timeout_ms = (uint32_t)((cap >> 24) & 0xff) * 500;
    out->dstrd = 4u << ((cap >> 32) & 0xf);
    out->nvm_cmd_set = (cap >> 37) & 1;
    out->mps_min = NVME_PAGE << ((cap >> 48) & 0xf);
    out->mps_max = NVME_PAGE << ((cap >> 52) & 0xf);
}

uint32_t nvme_cc_enable(void)
{
    /* EN, CSS = 0 (NVM), MPS = 0 (4 KiB), AMS = 0 (round robin),
     * IOSQES = 6 (64 bytes), IOCQES = 4 (16 bytes). */
    return 1u | 6u << 16 | 4u << 20;
}

uint32_t nvme_aqa(uint32_t sq_entries, uint32_t cq_entries)
{
    return ((cq_entries - 1) & 0xfff) << 16 | ((sq_entries - 1) & 0xfff);
}

uint32_t nvme_doorbell(uint32_t qid, bool cq, uint32_t dstrd)
{
    return 0x1000 + (2 * qid + (cq ? 1 : 0)) * dstrd;
}

void nvme_ring_init(struct nvme_ring *r, uint16_t entries)
{
    r->entries = entries;
    r->sq_tail = r->sq_head = 0;
    r->cq_head = 0;
    r->phase = 1; /* the queue memory starts zeroed: phase 0 means "old" */
}

bool nvme_sq_full(const struct nvme_ring *r)
{
    return (uint16_t)((r->sq_tail + 1) % r->entries) == r->sq_head;
}

uint16_t nvme_sq_push(struct nvme_ring *r)
{
    uint16_t slot = r->sq_tail;
    r->sq_tail = (uint16_t)((r->sq_tail + 1) % r->entries);
    return slot;
}

bool nvme_cq_take(struct nvme_ring *r, const volatile struct nvme_cqe *e, struct nvme_cqe *out)
{
    uint16_t status = e->status;
    if ((status & 1) != r->phase)
        return false;
    out->dw0 = e->dw0;
    out->rsvd = e->rsvd;
    out->sq_head = e->sq_head;
    out->sq_id = e->sq_id;
    out->cid = e->cid;
    out->status = status;
    if (out->sq_head < r->entries)
        r->sq_head = out->sq_head;
    if (++r->cq_head == r->entries) {
        r->cq_head = 0;
        r->phase ^= 1;
    }
    return true;
}

struct nvme_status nvme_decode_status(uint16_t st)
{
    struct nvme_status s = {
        .sc = (uint8_t)(st >> 1),
        .sct = (uint8_t)((st >> 9) & 7),
        .more = (st >> 14) & 1,
        .dnr = (st >> 15) & 1,
    };
    return s;
}

bool nvme_status_ok(struct nvme_status s)
{
    return s.sct == 0 && s.sc == 0;
}

const char *nvme_status_text(struct nvme_status s)
{
    if (s.sct == 0) {
        switch (s.sc) {
        case 0x00: return "success";
        case 0x01: return "invalid command opcode";
        case 0x02: return "invalid field in command";
        case 0x03: return "command ID conflict";
        case 0x04: return "data transfer error";
        case 0x05: return "aborted: power loss notification";
        case 0x06: return "internal error";
        case 0x07: return "aborted by request";
        case 0x08: return "aborted: submission queue deleted";
        case 0x0b: return "invalid namespace or format";
        case 0x13: return "PRP offset invalid";
        case 0x80: return "LBA out of range";
        case 0x81: return "capacity exceeded";
        case 0x82: return "namespace not ready";
        default: return "generic command error";
        }
    }
    if (s.sct == 1) {
        switch (s.sc) {
        case 0x00: return "completion queue invalid";
        case 0x01: return "invalid queue identifier";
        case 0x02: return "invalid queue size";
        case 0x80: return "conflicting attributes";
        case 0x82: return "attempted write to read-only range";
        default: return "command-specific error";
        }
    }
    if (s.sct == 2) {
        switch (s.sc) {
        case 0x80: return "write fault";
        case 0x81: return "unrecovered read error";
        case 0x82: return "end-to-end guard check error";
        case 0x85: return "compare failure";
        case 0x86: return "access denied";
        default: return "media or data integrity error";
        }
    }
    return s.sct == 7 ? "vendor-specific error" : "unknown status code type";
}

int nvme_build_prps(uint64_t len, uint32_t off, uint64_t (*page_addr)(void *ctx, uint64_t i),
                    void *ctx, uint64_t *prp1, uint64_t *prp2, uint64_t *const *list,
                    const uint64_t *list_phys, unsigned nlist)
{
    if (!len || off >= NVME_PAGE || (off & 3))
        return -1; /* PRP1 may carry an offset, dword aligned */
    uint64_t pages = (off + len + NVME_PAGE - 1) / NVME_PAGE;
    for (uint64_t i = 0; i < pages; i++)
        if (page_addr(ctx, i) & (NVME_PAGE - 1))
            return -1;
    *prp1 = page_addr(ctx, 0) + off;
    *prp2 = 0;
    if (pages == 1)
        return 0;
    if (pages == 2) {
        *prp2 = page_addr(ctx, 1);
        return 0;
    }
    /* A list of pages 1 .. pages-1. Every list page but the last holds
     * 511 entries and a chain pointer in its last slot. */
    uint64_t entries = pages - 1, i = 1;
    unsigned used = 0;
    *prp2 = list_phys[0];
    while (entries) {
        if (used >= nlist)
            return -1;
        uint64_t *l = list[used];
        bool last = entries <= NVME_PRPS_PER_PAGE;
        unsigned n = last ? (unsigned)entries : NVME_PRPS_PER_PAGE - 1;
        for (unsigned k = 0; k < n; k++)
            l[k] = page_addr(ctx, i++);
        entries -= n;
        used++;
        if (!last) {
            if (used >= nlist)
                return -1;
            l[NVME_PRPS_PER_PAGE - 1] = list_phys[used];
        }
    }
    return (int)used;
}

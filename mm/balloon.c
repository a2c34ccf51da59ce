/* The balloon hypercalls (balloon.h, docs/hypercall.md). */
#include "mm/balloon.h"
#include "lib/string.h"
#include "mm/frame.h"

const char *hc_result_name(int64_t r)
{
    switch (r) {
    case HC_OK: return "ok";
    case HC_EPERM: return "not from CPL 0";
    case HC_ENOSYS: return "unknown function";
    case HC_EINVAL: return "bad GFN in batch";
    case HC_EFAULT: return "argument page not in guest RAM";
    case HC_E2BIG: return "batch size out of range";
    default: return "?";
    }
}

/* Reads the guest page at gpa (page aligned, guest RAM) without changing
 * its state. */
static int read_guest_page(struct p2m *p, uint64_t gpa, void *buf)
{
    if (gpa & (PAGE_SIZE - 1) || (gpa >> PAGE_SHIFT) >= p->ngfn)
        return -1;
    return p2m_read_page(p, gpa >> PAGE_SHIFT, buf);
}

/* RBX = GPA of a page of GFNs, RCX = how many. RBX back: how many were
 * done, or the index of the bad one with HC_EINVAL. */
static int64_t batch(struct p2m *p, struct hc_regs *r, bool inflate)
{
    static uint64_t list[HC_BATCH_MAX];
    uint64_t n = r->rcx;
    if (!n || n > HC_BATCH_MAX)
        return HC_E2BIG;
    if (read_guest_page(p, r->rbx, list))
        return HC_EFAULT;
    unsigned bad = 0;
    int rc = inflate ? p2m_balloon_inflate(p, list, (unsigned)n, &bad)
                     : p2m_balloon_deflate(p, list, (unsigned)n, &bad);
    r->rbx = rc ? bad : n;
    return rc ? HC_EINVAL : HC_OK;
}

static int64_t report_stats(struct p2m *p, struct balloon_stats *bs, uint64_t gpa)
{
    static uint64_t page[PAGE_SIZE / 8];
    if (read_guest_page(p, gpa, page))
        return HC_EFAULT;
    struct hc_guest_stats g;
    memcpy(&g, page, sizeof(g));
    /* An older or newer guest fills what it knows: keep only that. */
    uint64_t size = g.size < sizeof(g) ? g.size : sizeof(g);
    memset((uint8_t *)&g + size, 0, sizeof(g) - size);
    g.size = size;
    bs->guest = g;
    bs->stats_reports++;
    return HC_OK;
}

void hc_dispatch(struct p2m *p, struct balloon_stats *bs, unsigned cpl, struct hc_regs *r)
{
    uint64_t fn = r->rax;
    int64_t rc;
    if (fn < HC_FUNCTION_COUNT)
        bs->calls[fn]++;
    if (cpl != 0) {
        rc = HC_EPERM; /* guest user space must not steer the balloon */
    } else {
        switch (fn) {
        case HC_VERSION:
            r->rbx = HC_ABI_VERSION;
            r->rcx = HC_FEATURE_BALLOON | HC_FEATURE_STATS;
            rc = HC_OK;
            break;
        case HC_BALLOON_TARGET:
            r->rbx = p->balloon_target;
            r->rcx = p->count[P2M_BALLOONED];
            rc = HC_OK;
            break;
        case HC_BALLOON_INFLATE:
        case HC_BALLOON_DEFLATE:
            rc = batch(p, r, fn == HC_BALLOON_INFLATE);
            break;
        case HC_REPORT_STATS:
            rc = report_stats(p, bs, r->rbx);
            break;
        default:
            rc = HC_ENOSYS;
            break;
        }
    }
    if (rc)
        bs->rejected++;
    r->rax = (uint64_t)rc;
}

/* The balloon (balloon.h): the hypercalls of docs/hypercall.md, then the
 * targets. The machine-pressure policy that moves targets is policy code
 * (mm/policy_balloon.c). */
#include "mm/balloon.h"
#include "lib/fmt.h"
#include "lib/log.h"
#include "lib/string.h"
#include "mm/frame.h"
#include "mm/mm.h"
#include "mm/mm_backend.h"

const char *hc_result_name(int64_t r)
{
    switch (r) {
    case HC_OK: return "ok";
    case HC_EPERM: return "not from CPL 0";
    case HC_ENOSYS: return "unknown function";
    case HC_EINVAL: return "bad GFN in batch";
    case HC_EFAULT: return "argument page not in guest RAM";
    case HC_E2BIG: return "batch size out of range";
    case HC_EIO: return "argument page unreadable";
    case HC_EAGAIN: return "no frame for the record of a GFN now";
    default: return "?";
    }
}

/* Reads the guest page at gpa without changing its state: HC_EFAULT when
 * it is no page of guest RAM (the guest's mistake), HC_EIO when it is but
 * its stored copy cannot be read back (the hypervisor's loss). */
static int64_t read_guest_page(struct p2m *p, uint64_t gpa, void *buf)
{
    uint64_t gfn = gpa >> PAGE_SHIFT;
    if (gpa & (PAGE_SIZE - 1) || gfn >= p->ngfn || p2m_peek(p, gfn)->state == P2M_MMIO)
        return HC_EFAULT;
    return p2m_read_page(p, gfn, buf) ? HC_EIO : HC_OK;
}

/* RBX = GPA of a page of GFNs, RCX = how many. Back: RBX how many were
 * done and RCX how many of those were already in the state asked for, or
 * RBX the index of the bad one with HC_EINVAL or HC_EAGAIN (RCX kept). */
static int64_t batch(struct p2m *p, struct balloon_stats *bs, struct hc_regs *r, bool inflate)
{
    static uint64_t list[HC_BATCH_MAX];
    uint64_t n = r->rcx;
    if (!n || n > HC_BATCH_MAX)
        return HC_E2BIG;
    int64_t unreadable = read_guest_page(p, r->rbx, list);
    if (unreadable)
        return unreadable;
    unsigned bad = 0;
    int rc = inflate ? p2m_balloon_inflate(p, list, (unsigned)n, &bad)
                     : p2m_balloon_deflate(p, list, (unsigned)n, &bad);
    if (rc < 0) {
        r->rbx = bad;
        return rc == -2 ? HC_EAGAIN : HC_EINVAL;
    }
    r->rbx = n;
    r->rcx = (uint64_t)rc;
    if (inflate)
        bs->noop_inflate += (uint64_t)rc;
    else
        bs->noop_deflate += (uint64_t)rc;
    return HC_OK;
}

/* RBX = the first GFN to look at. Deflates every ballooned GFN among the
 * next HC_RELEASE_SCAN (a bounded call: the guest repeats it from the RBX
 * it got back until that is the end of RAM). Back: RBX where to go on
 * (the VM's GFN count when done), RCX how many this call deflated. */
static int64_t release(struct p2m *p, struct balloon_stats *bs, struct hc_regs *r)
{
    static uint64_t list[HC_BATCH_MAX];
    uint64_t g = r->rbx < p->ngfn ? r->rbx : p->ngfn;
    uint64_t end = p->ngfn - g > HC_RELEASE_SCAN ? g + HC_RELEASE_SCAN : p->ngfn;
    uint64_t done = 0;
    unsigned n = 0, bad;
    for (; g < end; g++) {
        if (p2m_peek(p, g)->state == P2M_BALLOONED)
            list[n++] = g;
        if (n == HC_BATCH_MAX || (n && g + 1 == end)) {
            /* Distinct ballooned RAM GFNs: deflate cannot refuse them. */
            if (p2m_balloon_deflate(p, list, n, &bad) < 0)
                return HC_EINVAL;
            done += n;
            n = 0;
        }
    }
    bs->released += done;
    r->rbx = end;
    r->rcx = done;
    return HC_OK;
}

static int64_t report_stats(struct p2m *p, struct balloon_stats *bs, uint64_t gpa)
{
    static uint64_t page[PAGE_SIZE / 8];
    int64_t unreadable = read_guest_page(p, gpa, page);
    if (unreadable)
        return unreadable;
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

static void report_reached(struct p2m *p);

/* BALLOON_TARGET's RCX from a driver with HC_GUEST_SHORT: the pages of the
 * target it cannot give now. Said (rate-limited per VM) and counted once
 * per target and shortfall: when it starts, or the target changed since.
 * More than the target is taken as the target (nothing to give beyond). */
static void guest_short(struct p2m *p, struct balloon_stats *bs, uint64_t pages)
{
    struct p2m_balloon *b = &p->bl;
    if (pages > b->target)
        pages = b->target;
    if (pages && (!b->guest_short || b->short_target != b->target)) {
        b->short_reports++;
        b->short_target = b->target;
        uint64_t held = b->target - pages;
        pr_limited(&bs->short_log, LS_MM, LOG_INFO, p->name, HC_SHORT_LOG_KIND,
                   "vm %s: balloon driver cannot meet its target of %llu pages: it holds %llu, "
                   "%llu short (its floor, no free memory, or a holdoff after its kernel needed "
                   "memory)",
                   p->name, (unsigned long long)b->target,
                   (unsigned long long)(b->guest_features & HC_GUEST_HELD ? b->guest_held : held),
                   (unsigned long long)pages);
    }
    b->guest_short = pages;
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
            r->rcx = HC_FEATURES;
            rc = HC_OK;
            break;
        case HC_BALLOON_TARGET:
            if (p->bl.guest_features & HC_GUEST_HELD)
                p->bl.guest_held = r->rbx;
            if (p->bl.guest_features & HC_GUEST_SHORT)
                guest_short(p, bs, r->rcx);
            r->rbx = p->bl.target;
            r->rcx = p->count[P2M_BALLOONED];
            p->bl.polls++;
            rc = HC_OK;
            break;
        case HC_BALLOON_INFLATE:
        case HC_BALLOON_DEFLATE:
            rc = batch(p, bs, r, fn == HC_BALLOON_INFLATE);
            break;
        case HC_BALLOON_RELEASE:
            rc = release(p, bs, r);
            break;
        case HC_GUEST_FEATURES:
            /* Bits this hypervisor does not know are dropped, not
             * refused: RBX tells the guest what is in force. */
            if ((p->bl.guest_features & HC_GUEST_HELD) && !(r->rbx & HC_GUEST_HELD))
                pr_info(LS_MM, "vm %s: balloon driver gone (guest features 0x%llx): ballooned "
                               "here now %llu, %llu released by BALLOON_RELEASE in all",
                        p->name, (unsigned long long)(r->rbx & HC_GUEST_KNOWN),
                        (unsigned long long)p->count[P2M_BALLOONED],
                        (unsigned long long)bs->released);
            p->bl.guest_features = r->rbx & HC_GUEST_KNOWN;
            if (!(p->bl.guest_features & HC_GUEST_SHORT))
                p->bl.guest_short = 0; /* nobody says so any more */
            if (p->bl.guest_features & HC_GUEST_HELD)
                p->bl.guest_held = p->count[P2M_BALLOONED]; /* until its first poll */
            r->rbx = p->bl.guest_features;
            r->rcx = HC_FEATURES;
            rc = HC_OK;
            break;
        case HC_REPORT_STATS:
            rc = report_stats(p, bs, r->rbx);
            break;
        default:
            rc = HC_ENOSYS;
            break;
        }
    }
    if (rc) {
        bs->rejected++;
        /* A guest can repeat a bad call as fast as it can exit: the line is
         * rate-limited per VM, the count is exact. */
        pr_limited(&bs->log, LS_MM, LOG_INFO, p->name, HC_LOG_KIND,
                   "vm %s: hypercall %llu from CPL %u refused: %s", p->name,
                   (unsigned long long)fn, cpl, hc_result_name(rc));
    }
    r->rax = (uint64_t)rc;
    /* A call can be the one that makes the balloon hold its target (the
     * last batch, or the driver giving up its count at unload): say so now,
     * not at a policy tick the VM may never see. */
    if (!rc)
        report_reached(p);
}

/* ---- Targets ---- */

static uint64_t max_target(const struct p2m *p)
{
    return p->ngfn > p->reserve ? p->ngfn - p->reserve : 0;
}

/* What the guest's balloon holds: its own count when it passes it
 * (HC_GUEST_HELD), else what is ballooned here (which misses the pages it
 * touched and still holds). */
static uint64_t guest_held(const struct p2m *p)
{
    return p->bl.guest_features & HC_GUEST_HELD ? p->bl.guest_held : p->count[P2M_BALLOONED];
}

static void update_target(struct p2m *p)
{
    uint64_t t = p->bl.set + p->bl.policy + p->bl.hold, max = max_target(p);
    t = t < p->bl.set || t > max ? max : t; /* (t < set: overflow) */
    if (t != p->bl.target) {
        p->bl.changed_free = frame_free_count();
        p->bl.changed_freed = p->st.balloon_freed;
    }
    p->bl.target = t;
}

/* Says once per target when the guest's balloon holds it, with what the
 * machine gained or lost meanwhile. */
static void report_reached(struct p2m *p)
{
    struct p2m_balloon *b = &p->bl;
    uint64_t held = guest_held(p);
    if (b->target == b->reported || held != b->target || !b->polls)
        return;
    uint64_t free = frame_free_count();
    char whose[64] = ""; /* the driver's count and ours differ by the pages it touched */
    if (b->guest_features & HC_GUEST_HELD)
        fmt_snprintf(whose, sizeof(whose), " (by the driver's count; %llu ballooned here)",
                     (unsigned long long)p->count[P2M_BALLOONED]);
    pr_info(LS_MM, "vm %s: balloon holds its target of %llu pages%s: machine free frames %llu -> "
                   "%llu (%s%llu) since the target changed, %llu frames freed by inflating",
            p->name, (unsigned long long)b->target, whose, (unsigned long long)b->changed_free,
            (unsigned long long)free, free >= b->changed_free ? "+" : "-",
            (unsigned long long)(free >= b->changed_free ? free - b->changed_free
                                                         : b->changed_free - free),
            (unsigned long long)(p->st.balloon_freed - b->changed_freed));
    b->reported = b->target;
}

uint64_t balloon_set_target(struct p2m *p, uint64_t pages)
{
    if (!p->bl.rate_tsc)
        p->bl.rate_tsc = mm_now(); /* the first rates count from here */
    p->bl.set = pages;
    update_target(p);
    return p->bl.target;
}

/* The part of the target that holds a resizable VM at its size. */
uint64_t balloon_set_hold(struct p2m *p, uint64_t pages)
{
    if (!p->bl.rate_tsc)
        p->bl.rate_tsc = mm_now();
    p->bl.hold = pages;
    update_target(p);
    return p->bl.target;
}

uint64_t balloon_held(const struct p2m *p)
{
    return guest_held(p);
}

/* ---- What the policy (mm/policy_balloon.c) works with ---- */

static uint64_t clock_hz;

void balloon_set_clock(uint64_t hz)
{
    clock_hz = hz;
}

uint64_t balloon_guest_held(const struct p2m *p)
{
    return guest_held(p);
}

void balloon_set_policy_part(struct p2m *p, uint64_t policy)
{
    p->bl.policy = policy;
    update_target(p);
}

void balloon_report_reached(struct p2m *p)
{
    report_reached(p);
}

/* ---- Statistics ---- */

/* Pages per second from a count over a TSC interval. */
static uint64_t per_second(uint64_t count, uint64_t ticks)
{
    uint64_t ms = clock_hz >= 1000 ? ticks / (clock_hz / 1000) : 0;
    return ms ? count * 1000 / ms : 0;
}

void balloon_print_vm(struct p2m *p)
{
    struct p2m_balloon *b = &p->bl;
    if (!b->target && !b->polls && !p->count[P2M_BALLOONED] && !p->st.balloon_inflated)
        return;
    uint64_t now = mm_now();
    uint64_t dt = now - b->rate_tsc;
    uint64_t in = per_second(p->st.balloon_inflated - b->rate_inflated, dt);
    uint64_t out = per_second(p->st.balloon_deflated - b->rate_deflated, dt);
    b->rate_tsc = now;
    b->rate_inflated = p->st.balloon_inflated;
    b->rate_deflated = p->st.balloon_deflated;
    char held[96] = "";
    if (b->guest_features & HC_GUEST_HELD)
        fmt_snprintf(held, sizeof(held), "; the driver holds %llu", (unsigned long long)b->guest_held);
    if (b->short_reports) {
        size_t l = strlen(held);
        fmt_snprintf(held + l, sizeof(held) - l, ", short %llu (said %llu times)",
                     (unsigned long long)b->guest_short, (unsigned long long)b->short_reports);
    }
    pr_info(LS_MM, "vm %s: balloon: target %llu pages (set %llu + policy %llu), ballooned now "
                   "%llu, inflated %llu deflated %llu (freed %llu), touched while ballooned "
                   "%llu; %llu/s in, %llu/s out since the last line; policy asked %llu gave "
                   "back %llu%s",
            p->name, (unsigned long long)b->target, (unsigned long long)b->set,
            (unsigned long long)b->policy, (unsigned long long)p->count[P2M_BALLOONED],
            (unsigned long long)p->st.balloon_inflated, (unsigned long long)p->st.balloon_deflated,
            (unsigned long long)p->st.balloon_freed, (unsigned long long)p->st.balloon_touched,
            (unsigned long long)in, (unsigned long long)out,
            (unsigned long long)b->policy_inflate, (unsigned long long)b->policy_release, held);
}

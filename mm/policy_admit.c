/* Admission and live resizing (policy_admit.h). */
#include "mm/policy_admit.h"
#include "lib/fmt.h"
#include "lib/log.h"
#include "lib/string.h"
#include "mm/balloon.h"
#include "mm/mm.h"
#include "mm/policy.h"

static uint32_t overcommit_max; /* thousandths; 0: none */
static char reason[192];

/* ---- Ratios and bands ---- */

/* guest : machine at most bound (thousandths)? Exact: no rounding. */
static bool within(uint64_t guest, uint64_t machine, uint64_t bound)
{
    return guest * 1000 <= bound * machine;
}

enum admit_band policy_admit_band(uint64_t guest_pages, uint64_t machine_pages)
{
    if (within(guest_pages, machine_pages, ADMIT_RECOMMENDED))
        return AB_RECOMMENDED;
    if (within(guest_pages, machine_pages, ADMIT_PRODUCTION))
        return AB_PRODUCTION;
    if (within(guest_pages, machine_pages, ADMIT_DEVELOPMENT))
        return AB_DEVELOPMENT;
    return AB_BEYOND;
}

const char *policy_admit_band_name(enum admit_band b)
{
    switch (b) {
    case AB_RECOMMENDED: return "recommended (at most 1.2:1)";
    case AB_PRODUCTION: return "production (above the recommended 1.2:1, at most 1.5:1)";
    case AB_DEVELOPMENT: return "development only (above 1.5:1, at most 2:1)";
    default: return "beyond the guidance (above 2:1: for experiments, expect reclaim to cost)";
    }
}

const char *policy_admit_ratio_str(char *buf, size_t n, uint64_t guest_pages,
                                   uint64_t machine_pages)
{
    if (!machine_pages)
        return "n/a";
    uint64_t r = (guest_pages * 100 + machine_pages - 1) / machine_pages;
    fmt_snprintf(buf, n, "%llu.%02llu", (unsigned long long)(r / 100),
                 (unsigned long long)(r % 100));
    return buf;
}

static const char *permille_str(char *buf, size_t n, uint64_t permille)
{
    if (permille % 10)
        fmt_snprintf(buf, n, "%llu.%03llu", (unsigned long long)(permille / 1000),
                     (unsigned long long)(permille % 1000));
    else
        fmt_snprintf(buf, n, "%llu.%02llu", (unsigned long long)(permille / 1000),
                     (unsigned long long)(permille % 1000 / 10));
    return buf;
}

void policy_admit_guidance(uint64_t guest_pages, uint64_t machine_pages)
{
    char a[16], b[16], r[16], m[16];
    pr_info(LS_MM, "overcommit guidance: production at most 1.5:1, recommended 1.2:1, "
                   "development at most 2:1; configured: %s of guest memory on %s of machine "
                   "memory = %s:1, %s; overcommit_max %s",
            fmt_size(a, sizeof(a), guest_pages * PAGE_SIZE),
            fmt_size(b, sizeof(b), machine_pages * PAGE_SIZE),
            policy_admit_ratio_str(r, sizeof(r), guest_pages, machine_pages),
            machine_pages ? policy_admit_band_name(policy_admit_band(guest_pages, machine_pages))
                          : "no machine memory",
            overcommit_max ? permille_str(m, sizeof(m), overcommit_max) : "none");
}

void policy_admit_set_max(uint32_t permille)
{
    overcommit_max = permille;
}

uint32_t policy_admit_max(void)
{
    return overcommit_max;
}

uint64_t policy_admit_size(const struct p2m *p)
{
    return p->rs.on ? p->rs.size : p->ngfn;
}

const char *policy_admit_reason(void)
{
    return reason;
}

void policy_admit_set_reason(const char *why)
{
    fmt_snprintf(reason, sizeof(reason), "%s", why);
}

/* ---- Admission ---- */

int policy_admit_decide(const struct p2m *p, uint64_t owed_self, const struct admit_view *v,
                        char *why, size_t n)
{
    char a[16], b[16], r[16], m[16];
    if (owed_self + v->owed_others + v->watermark > v->free) {
        fmt_snprintf(why, n, "vm %s: reservation of %llu frames (%llu with their metadata) "
                             "cannot be met (%llu free, %llu reserved by others, watermark %llu)",
                     p->name, (unsigned long long)p->reserve, (unsigned long long)owed_self,
                     (unsigned long long)v->free, (unsigned long long)v->owed_others,
                     (unsigned long long)v->watermark);
        return -1;
    }
    uint64_t guest = v->admitted + policy_admit_size(p);
    if (overcommit_max && !within(guest, v->machine, overcommit_max)) {
        fmt_snprintf(why, n, "vm %s: admitting it would make the overcommit ratio %s:1 (%s of "
                             "guest memory on %s of machine memory), above overcommit_max %s:1",
                     p->name, policy_admit_ratio_str(r, sizeof(r), guest, v->machine),
                     fmt_size(a, sizeof(a), guest * PAGE_SIZE),
                     fmt_size(b, sizeof(b), v->machine * PAGE_SIZE),
                     permille_str(m, sizeof(m), overcommit_max));
        return -1;
    }
    return 0;
}

/* ---- Live resizing ---- */

static void set_limit(struct p2m *p, uint64_t pages)
{
    p->rs.size = pages;
    p->limit = pages;
    p->limited = pages < p->ngfn;
}

void policy_resize_init(struct p2m *p, uint64_t boot)
{
    if (boot > p->ngfn)
        boot = p->ngfn;
    p->rs.on = true;
    p->rs.boot = boot;
    p->rs.want = boot;
    set_limit(p, boot);
    balloon_set_hold(p, p->ngfn - boot);
}

uint64_t policy_resize_floor(const struct p2m *p)
{
    uint64_t f = p->rs.boot / 4;
    return p->reserve > f ? p->reserve : f;
}

/* Guest pages of the registered VMs other than p. */
static uint64_t others_size(const struct p2m *p)
{
    uint64_t sum = 0;
    for (int i = 0; i < mm_vm_count(); i++)
        if (mm_vm_at(i) != p)
            sum += policy_admit_size(mm_vm_at(i));
    return sum;
}

#define MSG(...) fmt_snprintf(msg, n, __VA_ARGS__)

enum resize_rc policy_resize_request(struct p2m *p, uint64_t pages, char *msg, size_t n)
{
    char a[16], b[16], c[16], d[16];
    if (!p->rs.on) {
        MSG("mem: vm %s has no max_memory: its size (%s) is fixed at boot", p->name,
            fmt_size(a, sizeof(a), p->ngfn * PAGE_SIZE));
        return RS_REFUSED;
    }
    if (pages > p->ngfn) {
        p->rs.refused++;
        /* Sizes that print alike (1025 pages and 4M) are told in pages. */
        fmt_size(a, sizeof(a), pages * PAGE_SIZE);
        fmt_size(b, sizeof(b), p->ngfn * PAGE_SIZE);
        if (strcmp(a, b))
            MSG("mem: vm %s: %s is above its max_memory of %s", p->name, a, b);
        else
            MSG("mem: vm %s: %llu pages is above its max_memory of %llu pages (%s)", p->name,
                (unsigned long long)pages, (unsigned long long)p->ngfn, b);
        return RS_REFUSED;
    }
    uint64_t floor = policy_resize_floor(p);
    if (pages < floor) {
        p->rs.refused++;
        MSG("mem: vm %s: %s is below its floor of %s (its reservation, or a quarter of the "
            "%s it booted with)",
            p->name, fmt_size(a, sizeof(a), pages * PAGE_SIZE),
            fmt_size(b, sizeof(b), floor * PAGE_SIZE),
            fmt_size(c, sizeof(c), p->rs.boot * PAGE_SIZE));
        return RS_REFUSED;
    }
    uint64_t before = p->bl.target;
    fmt_size(a, sizeof(a), p->rs.size * PAGE_SIZE);
    fmt_size(b, sizeof(b), pages * PAGE_SIZE);
    if (pages >= p->rs.size) {
        /* Growing (or calling off a shrink still waiting): the limit first,
         * so the pages the balloon gives back can be used at once. */
        uint64_t guest = others_size(p) + pages, machine = mm_usable_frames();
        if (pages > p->rs.size && overcommit_max && !within(guest, machine, overcommit_max)) {
            p->rs.refused++;
            MSG("mem: vm %s: growing it to %s would make the overcommit ratio %s:1, above "
                "overcommit_max %s:1",
                p->name, b, policy_admit_ratio_str(c, sizeof(c), guest, machine),
                permille_str(d, sizeof(d), overcommit_max));
            return RS_REFUSED;
        }
        bool grew = pages > p->rs.size, called_off = p->rs.want < p->rs.size;
        p->rs.want = pages;
        set_limit(p, pages);
        uint64_t t = balloon_set_hold(p, p->ngfn - pages);
        if (grew)
            p->rs.grows++;
        MSG("vm %s: memory %s -> %s: limit %llu pages, balloon target %llu -> %llu pages%s", p->name,
            a, b, (unsigned long long)pages, (unsigned long long)before, (unsigned long long)t,
            called_off ? " (the shrink that was waiting is called off)" : "");
        return RS_DONE;
    }
    /* Shrinking needs a guest that gives the pages: the limit alone would
     * push its memory into compression and swap behind its back. */
    if (!balloon_listening(p)) {
        p->rs.refused++;
        MSG("mem: vm %s: cannot shrink from %s to %s: no balloon driver listens (%s); its "
            "memory stays %s",
            p->name, a, b, p->bl.polls ? "it has not polled for 3 s" : "it never polled", a);
        return RS_REFUSED;
    }
    p->rs.want = pages;
    p->rs.shrinks++;
    uint64_t t = balloon_set_hold(p, p->ngfn - pages);
    MSG("vm %s: memory %s -> %s: balloon target %llu -> %llu pages; the limit drops once the "
        "balloon holds them",
        p->name, a, b, (unsigned long long)before, (unsigned long long)t);
    policy_resize_step(p);
    return RS_PENDING;
}

bool policy_resize_step(struct p2m *p)
{
    if (!p->rs.on || p->rs.want >= p->rs.size)
        return false;
    uint64_t want = p->rs.want;
    if (balloon_held(p) < p->ngfn - want)
        return false;
    /* Pages the guest touched while ballooned (or shares it maps) can keep
     * its charge above the new limit: a bounded reclaim step on itself. */
    bool over = p2m_guest_charge(p) > want ||
                p2m_charge(p) > want + P2M_OVERHEAD_ALLOWANCE(want);
    if (over) {
        policy_reclaim_vm(p, MM_RECLAIM_BATCH, MM_RECLAIM_SCAN, P2M_RT_ALL, true);
        if (p2m_guest_charge(p) > want || p2m_charge(p) > want + P2M_OVERHEAD_ALLOWANCE(want))
            return false;
    }
    char a[16];
    set_limit(p, want);
    pr_info(LS_MM, "vm %s: memory now %s: its balloon holds %llu pages, limit lowered to %llu "
                   "pages (resident %llu)",
            p->name, fmt_size(a, sizeof(a), want * PAGE_SIZE),
            (unsigned long long)balloon_held(p), (unsigned long long)want,
            (unsigned long long)p->count[P2M_RESIDENT]);
    return true;
}

void policy_resize_tick(void)
{
    for (int i = 0; i < mm_vm_count(); i++)
        policy_resize_step(mm_vm_at(i));
}

/* The balloon policy (mm/policy.h): who is asked to inflate, how much, and
 * when the policy gives pages back. The balloon's mechanism (targets, the
 * hypercalls) is mm/balloon.c; the marks come from the machine memory
 * states (mm/policy.c). */
#include "mm/balloon.h"
#include "mm/policy_admit.h"
#include "lib/fmt.h"
#include "lib/log.h"
#include "mm/frame.h"
#include "mm/mm.h"
#include "mm/policy.h"

static bool policy_on = true;
static uint64_t tick;
static uint64_t calm;
static struct balloon_policy_stats pst;

bool balloon_policy_enabled(void)
{
    return policy_on;
}

void balloon_policy_get_stats(struct balloon_policy_stats *s)
{
    *s = pst;
}

static uint64_t idle_of(const struct p2m *p)
{
    uint64_t r = p->count[P2M_RESIDENT];
    uint64_t idle = p->ad ? p->st.idle_pages : r; /* no A/D bits: no better guess */
    if (idle > r)
        idle = r; /* the sweep's count is older than the last faults */
    uint64_t above = r > p->reserve ? r - p->reserve : 0;
    return idle < above ? idle : above;
}

/* The most the policy may make p's target: the guest keeps its
 * reservation and at least a quarter of its RAM. */
static uint64_t policy_cap(const struct p2m *p)
{
    /* A quarter of its size stays (for a resizable VM the size it has now,
     * not max_memory: the gap is held apart from the policy's part). */
    uint64_t size = policy_admit_size(p);
    uint64_t keep = size / 4 > p->reserve ? size / 4 : p->reserve;
    return p->ngfn > keep ? p->ngfn - keep : 0;
}

void balloon_policy_enable(bool on)
{
    policy_on = on;
    if (on)
        return;
    /* Off: what the policy asked for goes back at once; set targets stay. */
    for (int i = 0; i < mm_vm_count(); i++) {
        struct p2m *p = mm_vm_at(i);
        if (!p->bl.policy)
            continue;
        p->bl.policy_release += p->bl.policy;
        pst.released += p->bl.policy;
        balloon_set_policy_part(p, 0);
    }
}

static bool listening(const struct p2m *p)
{
    return p->bl.polls && tick - p->bl.heard_tick < BALLOON_LISTEN_TICKS;
}

/* For resizing (mm/policy_admit.c): a driver that polled since the last
 * policy tick counts at once, or one heard within BALLOON_LISTEN_TICKS. */
bool balloon_listening(const struct p2m *p)
{
    return p->bl.polls && (p->bl.polls != p->bl.polls_seen || listening(p));
}

/* Under pressure: asks the listening VMs for want pages (less what they
 * still owe), in proportion to their idle memory. */
static void ask(uint64_t want, bool needy_any, uint64_t free, uint64_t low)
{
    int n = mm_vm_count();
    uint64_t pending = 0;
    for (int i = 0; i < n; i++) {
        struct p2m *p = mm_vm_at(i);
        uint64_t held = balloon_guest_held(p);
        if (p->bl.target > held && listening(p))
            pending += p->bl.target - held;
    }
    if (needy_any && want < BALLOON_WAITER_ASK)
        want = BALLOON_WAITER_ASK; /* a waiter: enough for a good stretch */
    if (want <= pending)
        return; /* the guests are still giving what they were asked for */
    want -= pending;
    if (want < BALLOON_MIN_ASK && !needy_any)
        return; /* a few pages short: not worth a round trip through a guest */
    /* Donors: VMs with a listening driver and room under their cap,
     * weighed by idle memory. VMs that waited for frames themselves are
     * asked only when nobody else can give: then their own idle pages are
     * the way out. */
    uint64_t weight[MM_MAX_VMS] = { 0 }, total = 0;
    for (int pass = 0; pass < 2 && !total; pass++) {
        for (int i = 0; i < n && i < MM_MAX_VMS; i++) {
            struct p2m *p = mm_vm_at(i);
            weight[i] = 0;
            if (!listening(p))
                continue; /* no driver: asking would free nothing */
            if (!pass && p->bl.needy_tick && tick - p->bl.needy_tick < BALLOON_NEEDY_TICKS)
                continue; /* it is the one that needs memory */
            if (p->bl.target >= policy_cap(p))
                continue;
            /* Idle pages it was asked for and has not given yet are spoken
             * for: weigh (and cap) only the rest. */
            uint64_t idle = idle_of(p), held = balloon_guest_held(p);
            uint64_t asked = p->bl.target > held ? p->bl.target - held : 0;
            weight[i] = idle > asked ? idle - asked : 0;
            total += weight[i];
        }
    }
    if (!total) {
        pst.no_donor++;
        return;
    }
    char a[16], b[16];
    for (int i = 0; i < n && i < MM_MAX_VMS; i++) {
        if (!weight[i])
            continue;
        struct p2m *p = mm_vm_at(i);
        uint64_t share = (want * weight[i] + total - 1) / total;
        uint64_t room = policy_cap(p) - p->bl.target;
        if (share > room)
            share = room;
        if (share > weight[i])
            share = weight[i];
        if (!share)
            continue;
        uint64_t before = p->bl.target;
        balloon_set_policy_part(p, p->bl.policy + share);
        uint64_t added = p->bl.target - before;
        p->bl.policy_inflate += added;
        pst.asked += added;
        pr_info(LS_MM, "balloon policy: machine free %s, low mark %s%s: vm %s target %llu -> "
                       "%llu pages (idle %llu of %llu resident)",
                fmt_size(a, sizeof(a), free * PAGE_SIZE), fmt_size(b, sizeof(b), low * PAGE_SIZE),
                needy_any ? ", a VM waits for frames" : "", p->name, (unsigned long long)before,
                (unsigned long long)p->bl.target, (unsigned long long)weight[i],
                (unsigned long long)p->count[P2M_RESIDENT]);
    }
}

/* No pressure: gives back, a share per tick, what the machine can spare
 * above give_at. */
static void give_back(uint64_t free, uint64_t give_at)
{
    int n = mm_vm_count();
    uint64_t taken = 0;
    for (int i = 0; i < n; i++)
        taken += mm_vm_at(i)->bl.policy;
    if (!taken)
        return;
    uint64_t room = free - give_at; /* what the machine can give without new pressure */
    if (room > taken)
        room = taken;
    char a[16], b[16];
    for (int i = 0; i < n; i++) {
        struct p2m *p = mm_vm_at(i);
        if (!p->bl.policy)
            continue;
        uint64_t back = (room * p->bl.policy + taken - 1) / taken;
        if (back > p->bl.policy)
            back = p->bl.policy;
        if (!back)
            continue;
        uint64_t before = p->bl.target;
        balloon_set_policy_part(p, p->bl.policy - back);
        p->bl.policy_release += back;
        pst.released += back;
        pr_info(LS_MM, "balloon policy: machine free %s, above %s: vm %s target %llu -> %llu "
                       "pages (given back %llu)",
                fmt_size(a, sizeof(a), free * PAGE_SIZE),
                fmt_size(b, sizeof(b), give_at * PAGE_SIZE), p->name,
                (unsigned long long)before, (unsigned long long)p->bl.target,
                (unsigned long long)back);
    }
}

void balloon_policy_tick(void)
{
    tick++;
    pst.ticks++;
    int n = mm_vm_count();
    bool needy_any = false;
    /* Who listens, and who is short of frames. */
    for (int i = 0; i < n; i++) {
        struct p2m *p = mm_vm_at(i);
        if (p->bl.polls != p->bl.polls_seen || !p->bl.heard_tick) {
            if (p->bl.polls != p->bl.polls_seen)
                p->bl.heard_tick = tick;
            p->bl.polls_seen = p->bl.polls;
        }
        if (p->st.waits != p->bl.waits_seen) {
            /* Waiting at its own limit is its own business: others'
             * balloons cannot help it. */
            if (!p2m_at_limit(p))
                p->bl.needy_tick = tick;
            p->bl.waits_seen = p->st.waits;
        }
        if (p->bl.needy_tick && tick - p->bl.needy_tick < BALLOON_NEEDY_PRESSURE_TICKS)
            needy_any = true;
        balloon_report_reached(p);
    }
    if (!policy_on)
        return;

    enum mem_state s = policy_update();
    uint64_t m = policy_min_free(), owed = mm_owed_reservations();
    uint64_t low = policy_threshold(MS_SOFT) + owed;
    uint64_t high = policy_threshold(MS_CLEAR) + policy_hyst(MS_CLEAR) + owed;
    uint64_t free = frame_free_count();
    pst.last_low = low;
    pst.last_high = high;

    bool allowed = policy_techniques(s) & PT_BALLOON;
    if (allowed || needy_any) { /* a VM waiting below its limit asks in any state */
        pst.pressure_ticks++;
        calm = 0;
        if (allowed)
            policy_order(PT_BALLOON);
        ask(free < high ? high - free : 0, needy_any, free, low);
        return;
    }
    uint64_t give_at = high + m / 4;
    if (free < give_at) {
        calm = 0;
        return;
    }
    if (++calm < BALLOON_CALM_TICKS)
        return;
    give_back(free, give_at);
}

void balloon_policy_print(void)
{
    if (!pst.asked && !pst.pressure_ticks)
        return;
    char a[16], b[16];
    pr_info(LS_MM, "balloon policy: %s, %llu ticks, %llu under pressure (%llu with nobody to "
                   "ask); asked %llu pages, gave back %llu; marks low %s high %s",
            policy_on ? "on" : "off", (unsigned long long)pst.ticks,
            (unsigned long long)pst.pressure_ticks, (unsigned long long)pst.no_donor,
            (unsigned long long)pst.asked, (unsigned long long)pst.released,
            fmt_size(a, sizeof(a), pst.last_low * PAGE_SIZE),
            fmt_size(b, sizeof(b), pst.last_high * PAGE_SIZE));
}

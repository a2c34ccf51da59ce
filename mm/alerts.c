/* The seed's thresholds as alerts (alerts.h). */
#include "mm/alerts.h"
#include "lib/fmt.h"
#include "lib/log.h"
#include "lib/string.h"
#include "mm/mm.h"

static struct alert_config cfg = {
    ALERT_DEFAULT_BALLOON_PCT, ALERT_DEFAULT_SWAP_MBPS, ALERT_DEFAULT_ZIP_RATIO,
    ALERT_DEFAULT_SHARE_PCT, ALERT_DEFAULT_PERIODS,
};

static const char *const names[ALERT_COUNT] = {
    [ALERT_BALLOON] = "balloon", [ALERT_SWAP] = "swap", [ALERT_ZIP] = "zip",
    [ALERT_SHARE] = "share",
};

/* What each means, from the seed's table. */
static const char *const advice[ALERT_COUNT] = {
    [ALERT_BALLOON] = "investigate pressure",
    [ALERT_SWAP] = "add memory or reduce VMs",
    [ALERT_ZIP] = "compression overhead too high",
    [ALERT_SHARE] = "limited benefit",
};

const char *alert_name(enum alert_kind k)
{
    return (unsigned)k < ALERT_COUNT ? names[k] : "?";
}

void alerts_configure(const struct alert_config *c)
{
    cfg = *c;
    if (!cfg.periods)
        cfg.periods = 1;
}

void alerts_get_config(struct alert_config *c)
{
    *c = cfg;
}

static uint64_t threshold(enum alert_kind k)
{
    switch (k) {
    case ALERT_BALLOON: return cfg.balloon_pct;
    case ALERT_SWAP: return cfg.swap_mbps;
    case ALERT_ZIP: return cfg.zip_ratio;
    default: return cfg.share_pct;
    }
}

/* Low values are bad for the ratio and the share, high ones for the rest. */
static bool low_is_bad(enum alert_kind k)
{
    return k == ALERT_ZIP || k == ALERT_SHARE;
}

/* The clear level: a margin on the good side of the threshold. */
static uint64_t clear_level(enum alert_kind k, uint64_t t)
{
    switch (k) {
    case ALERT_BALLOON: return t * 8 / 10;
    case ALERT_SWAP: return t / 2;
    case ALERT_ZIP: return t * 11 / 10;
    default: return t * 12 / 10;
    }
}

/* Periods in a row that raise (bad) or clear (good) it. */
static uint32_t run_needed(enum alert_kind k)
{
    return k == ALERT_SWAP ? cfg.periods : 1;
}

static const char *unit(enum alert_kind k)
{
    switch (k) {
    case ALERT_BALLOON: return "% of memory ballooned";
    case ALERT_SWAP: return " MB/s of swap I/O";
    case ALERT_ZIP: return ":1 compression ratio";
    default: return "% saved by sharing";
    }
}

static const char *fix2(char *buf, unsigned n, uint64_t v)
{
    fmt_snprintf(buf, n, "%llu.%02llu", (unsigned long long)(v / 100),
                 (unsigned long long)(v % 100));
    return buf;
}

unsigned alert_step(struct alert_state *s, const char *who, const struct alert_sample *v)
{
    unsigned changed = 0;
    for (int k = 0; k < ALERT_COUNT; k++) {
        uint64_t t = threshold((enum alert_kind)k), val = v->value[k];
        unsigned bit = 1u << k;
        bool bad = false, good = true;
        if (t && v->valid[k]) {
            uint64_t c = clear_level((enum alert_kind)k, t);
            bad = low_is_bad((enum alert_kind)k) ? val < t : val > t;
            good = low_is_bad((enum alert_kind)k) ? val > c : val < c;
        }
        s->last[k] = v->valid[k] ? val : 0;
        if (bad) {
            s->good[k] = 0;
            if (s->bad[k] < UINT32_MAX)
                s->bad[k]++;
        } else if (good) {
            s->bad[k] = 0;
            if (s->good[k] < UINT32_MAX)
                s->good[k]++;
        } else {
            s->bad[k] = s->good[k] = 0; /* between the levels: neither run goes on */
        }
        char a[24], b[24];
        uint32_t need = run_needed((enum alert_kind)k);
        if (!(s->active & bit) && bad && s->bad[k] >= need) {
            s->active |= bit;
            changed |= bit;
            pr_info(LS_MM, "alert raised: %s: %s: %s%s (%s %s) for %u period%s: %s", who,
                    names[k], fix2(a, sizeof(a), val), unit((enum alert_kind)k),
                    low_is_bad((enum alert_kind)k) ? "below" : "above",
                    fix2(b, sizeof(b), t), need, need == 1 ? "" : "s", advice[k]);
        } else if ((s->active & bit) && good && (!t || s->good[k] >= need)) {
            s->active &= ~bit;
            changed |= bit;
            if (!t || !v->valid[k])
                pr_info(LS_MM, "alert cleared: %s: %s: %s", who, names[k],
                        t ? "no longer applies" : "disabled");
            else
                pr_info(LS_MM, "alert cleared: %s: %s: %s%s (%s %s) for %u period%s", who,
                        names[k], fix2(a, sizeof(a), val), unit((enum alert_kind)k),
                        low_is_bad((enum alert_kind)k) ? "above" : "below",
                        fix2(b, sizeof(b), clear_level((enum alert_kind)k, t)), need,
                        need == 1 ? "" : "s");
        }
    }
    return changed;
}

/* ---- the registry ---- */

static struct alert_state machine;
static struct {
    const struct p2m *p;
    struct alert_state s;
} vms[MM_MAX_VMS];

static struct alert_state *state_of(const struct p2m *p, bool make)
{
    if (!p)
        return &machine;
    int free_slot = -1;
    for (int i = 0; i < MM_MAX_VMS; i++) {
        if (vms[i].p == p)
            return &vms[i].s;
        if (!vms[i].p && free_slot < 0)
            free_slot = i;
    }
    if (!make || free_slot < 0)
        return NULL;
    vms[free_slot].p = p;
    memset(&vms[free_slot].s, 0, sizeof(vms[free_slot].s));
    return &vms[free_slot].s;
}

unsigned alerts_evaluate(const struct p2m *p, const struct alert_sample *v)
{
    struct alert_state *s = state_of(p, true);
    if (!s)
        return 0; /* more VMs than mm.c registers: cannot happen */
    char who[32];
    if (p)
        fmt_snprintf(who, sizeof(who), "vm %s", p->name);
    else
        fmt_snprintf(who, sizeof(who), "machine");
    return alert_step(s, who, v);
}

unsigned alerts_active(const struct p2m *p)
{
    struct alert_state *s = state_of(p, false);
    return s ? s->active : 0;
}

void alerts_forget(const struct p2m *p)
{
    if (!p) {
        memset(&machine, 0, sizeof(machine));
        return;
    }
    for (int i = 0; i < MM_MAX_VMS; i++)
        if (vms[i].p == p)
            vms[i].p = NULL;
}

static void print_active(const char *who, const struct alert_state *s, int *n)
{
    char a[24], b[24];
    for (int k = 0; k < ALERT_COUNT; k++) {
        if (!(s->active & (1u << k)))
            continue;
        (*n)++;
        pr_info(LS_CON, "alert %s: %s: %s%s (threshold %s): %s", who, names[k],
                fix2(a, sizeof(a), s->last[k]), unit((enum alert_kind)k),
                fix2(b, sizeof(b), threshold((enum alert_kind)k)), advice[k]);
    }
}

void alerts_print(void)
{
    int n = 0;
    print_active("machine", &machine, &n);
    for (int i = 0; i < MM_MAX_VMS; i++) {
        if (!vms[i].p)
            continue;
        char who[32];
        fmt_snprintf(who, sizeof(who), "vm %s", vms[i].p->name);
        print_active(who, &vms[i].s, &n);
    }
    if (!n)
        pr_info(LS_CON, "no alert is active");
    alerts_print_config();
}

void alerts_print_config(void)
{
    char a[4][24];
    const char *off = "off";
    pr_info(LS_MM, "alerts: balloon above %s%%, swap above %s MB/s for %u periods, zip ratio "
                   "below %s:1, sharing below %s%%",
            cfg.balloon_pct ? fix2(a[0], sizeof(a[0]), cfg.balloon_pct) : off,
            cfg.swap_mbps ? fix2(a[1], sizeof(a[1]), cfg.swap_mbps) : off, cfg.periods,
            cfg.zip_ratio ? fix2(a[2], sizeof(a[2]), cfg.zip_ratio) : off,
            cfg.share_pct ? fix2(a[3], sizeof(a[3]), cfg.share_pct) : off);
}

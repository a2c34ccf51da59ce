/* Statistics as data (stats_json.h, docs/stats.md): a small JSON writer
 * over lib/fmt, and the lines it writes. Field names follow esxtop's
 * memory panel where it has one. */
#include "mm/stats_json.h"
#include "lib/fmt.h"
#include "lib/log.h"
#include "lib/string.h"
#include "mm/alerts.h"
#include "mm/policy.h"
#include "mm/policy_admit.h"
#include "mm/mm.h"
#include "mm/mm_backend.h"
#include "mm/share.h"
#include "mm/swap.h"
#include "mm/zpool.h"

/* ---- the writer ----
 * Appends to a fixed buffer; commas are put between members by nesting
 * level. Once the buffer is full the line is marked and dropped whole (a
 * truncated object would be worse than none). */
#define JW_DEPTH 6

struct jw {
    char *buf;
    size_t cap, len;
    bool first[JW_DEPTH];
    int depth;
    bool overflow;
};

static void jw_put(struct jw *w, const char *s, size_t n)
{
    if (w->overflow || w->len + n >= w->cap) {
        w->overflow = true;
        return;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = 0;
}

__attribute__((format(printf, 2, 3))) static void jw_fmt(struct jw *w, const char *fmt, ...)
{
    char tmp[48];
    va_list ap;
    va_start(ap, fmt);
    int n = fmt_vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        w->overflow = true;
        return;
    }
    jw_put(w, tmp, (size_t)n);
}

static void jw_string(struct jw *w, const char *s)
{
    jw_put(w, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = { '\\', (char)c };
            jw_put(w, e, 2);
        } else if (c < 0x20 || c > 0x7e) {
            jw_fmt(w, "\\u%04x", c); /* names are ASCII; anything else is shown, not lost */
        } else {
            jw_put(w, (const char *)&c, 1);
        }
    }
    jw_put(w, "\"", 1);
}

/* Starts a member (key may be NULL inside an array). */
static void jw_key(struct jw *w, const char *key)
{
    if (!w->first[w->depth])
        jw_put(w, ",", 1);
    w->first[w->depth] = false;
    if (key) {
        jw_string(w, key);
        jw_put(w, ":", 1);
    }
}

static void jw_open(struct jw *w, const char *key, char c)
{
    if (w->depth >= 0)
        jw_key(w, key);
    jw_put(w, &c, 1);
    if (w->depth + 1 >= JW_DEPTH) {
        w->overflow = true;
        return;
    }
    w->first[++w->depth] = true;
}

static void jw_close(struct jw *w, char c)
{
    jw_put(w, &c, 1);
    if (w->depth >= 0)
        w->depth--;
}

static void jw_u64(struct jw *w, const char *key, uint64_t v)
{
    jw_key(w, key);
    jw_fmt(w, "%llu", (unsigned long long)v);
}

static void jw_str(struct jw *w, const char *key, const char *s)
{
    jw_key(w, key);
    jw_string(w, s);
}

static void jw_null(struct jw *w, const char *key)
{
    jw_key(w, key);
    jw_put(w, "null", 4);
}

/* A fixed-point number: v / 10^dec, as a JSON number ("12.345"). */
static void jw_fix(struct jw *w, const char *key, uint64_t v, unsigned dec)
{
    uint64_t scale = 1;
    for (unsigned i = 0; i < dec; i++)
        scale *= 10;
    jw_key(w, key);
    if (!dec)
        jw_fmt(w, "%llu", (unsigned long long)v);
    else
        jw_fmt(w, "%llu.%0*llu", (unsigned long long)(v / scale), (int)dec,
               (unsigned long long)(v % scale));
}

/* ---- readings kept between lines ---- */

enum { R_ZERO, R_SHARE, R_COMPRESS, R_SWAP, R_BALLOON, R_COUNT };
static const char *const reclaim_names[R_COUNT] = {
    "zero", "share", "compress", "swap", "balloon",
};

struct reading {
    uint64_t at; /* clock of the reading; 0: none yet */
    uint64_t faults[PF_KIND_COUNT];
    uint64_t swr, sww;
    uint64_t rec[R_COUNT];
};

static struct {
    const struct p2m *p;
    struct reading r;
} prev_vm[MM_MAX_VMS];

struct machine_reading {
    uint64_t at;
    uint64_t swr, sww, direct, hashed;
    uint64_t bg; /* frames background reclaim freed (mm/policy.c) */
};
static struct machine_reading prev_m;

static uint64_t hz = 1, start;
static uint64_t seq;
static char line[STATS_LINE_MAX];

void stats_set_clock(uint64_t ticks_per_second)
{
    hz = ticks_per_second ? ticks_per_second : 1;
    start = mm_now();
}

void stats_reset(void)
{
    memset(prev_vm, 0, sizeof(prev_vm));
    memset(&prev_m, 0, sizeof(prev_m));
    seq = 0;
    start = 0;
}

static struct reading *prev_of(const struct p2m *p)
{
    int free_slot = -1;
    for (int i = 0; i < MM_MAX_VMS; i++) {
        if (prev_vm[i].p == p)
            return &prev_vm[i].r;
        if (!prev_vm[i].p && free_slot < 0)
            free_slot = i;
    }
    if (free_slot < 0)
        return NULL;
    prev_vm[free_slot].p = p;
    memset(&prev_vm[free_slot].r, 0, sizeof(prev_vm[free_slot].r));
    return &prev_vm[free_slot].r;
}

static void forget(const struct p2m *p)
{
    for (int i = 0; i < MM_MAX_VMS; i++)
        if (prev_vm[i].p == p)
            prev_vm[i].p = NULL;
}

static uint64_t ms_between(uint64_t from, uint64_t to)
{
    return to > from ? (to - from) * 1000 / hz : 0;
}

/* Per second, times 100, of delta over ms milliseconds (0 when no time). */
static uint64_t rate100(uint64_t delta, uint64_t ms)
{
    return ms ? delta * 100000 / ms : 0;
}

static uint64_t sub(uint64_t now, uint64_t before)
{
    return now > before ? now - before : 0;
}

static void head(struct jw *w, const char *type, uint64_t now, enum stats_why why)
{
    static const char *const whys[] = { "period", "stop", "console" };
    jw_u64(w, "v", STATS_SCHEMA_VERSION);
    jw_str(w, "type", type);
    jw_fix(w, "t", ms_between(start, now), 3);
    jw_u64(w, "seq", seq);
    jw_str(w, "why", whys[why]);
}

static void jw_alerts(struct jw *w, unsigned active)
{
    jw_open(w, "alerts", '[');
    for (int k = 0; k < ALERT_COUNT; k++)
        if (active & (1u << k))
            jw_str(w, NULL, alert_name((enum alert_kind)k));
    jw_close(w, ']');
}

static void write_line(struct jw *w, const char *what)
{
    if (w->overflow) {
        pr_warn(LS_MM, "stats: the %s line is over %u bytes: dropped", what,
                (unsigned)STATS_LINE_MAX);
        return;
    }
    jw_put(w, "\n", 1);
    log_sink_write(w->buf, w->len);
}

static void jw_begin(struct jw *w)
{
    memset(w, 0, sizeof(*w));
    w->buf = line;
    w->cap = sizeof(line);
    w->depth = -1;
    jw_put(w, STATS_PREFIX, sizeof(STATS_PREFIX) - 1);
    jw_open(w, NULL, '{');
}

/* Pages granted: touched GFNs that hold anything (a frame, a value, a
 * pool object or a swap slot). */
static uint64_t granted(const struct p2m *p)
{
    return p->count[P2M_RESIDENT] + p->count[P2M_SHARED] + p->count[P2M_FILLED] +
           p->count[P2M_COMPRESSED] + p->count[P2M_SWAPPED];
}

/* The machine's sums of what the VM lines of one emission measured. */
struct totals {
    uint64_t memsz, grant, mctlsz, shrdsvd;
    uint64_t faults[PF_KIND_COUNT]; /* x100 per second */
    uint64_t rec[R_COUNT];          /* x100 per second */
};

static void take(const struct p2m *p, struct reading *r, uint64_t now)
{
    r->at = now;
    for (int k = 0; k < PF_KIND_COUNT; k++)
        r->faults[k] = p->st.faults[k];
    r->swr = p->st.faults[PF_SWAPIN];
    r->sww = p->st.swap_out + p->st.swap_out_lz4;
    r->rec[R_ZERO] = p->st.zero_reclaimed + p->st.filled + p->st.share_zero;
    r->rec[R_SHARE] = p->st.share_merged;
    r->rec[R_COMPRESS] = p->st.compressed;
    r->rec[R_SWAP] = p->st.swap_out + p->st.swap_dropped;
    r->rec[R_BALLOON] = p->st.balloon_inflated;
}

/* MB/s x100 of a page rate x100 (1 MB = 10^6 bytes). */
static uint64_t mbps100(uint64_t pages100)
{
    return pages100 * PAGE_SIZE / 1000000;
}

static void vm_line(struct p2m *p, uint64_t now, enum stats_why why, struct totals *tot)
{
    struct reading cur, *r = prev_of(p), none = { 0 };
    if (!r)
        r = &none;
    take(p, &cur, now);
    uint64_t ms = r->at ? ms_between(r->at, now) : ms_between(start, now);
    uint64_t shrd = p->count[P2M_SHARED];
    uint64_t shared_part = (p->shared_charge + (1ULL << 32) - 1) >> 32;
    uint64_t shrdsvd = shrd > shared_part ? shrd - shared_part : 0;
    uint64_t zip = p->count[P2M_COMPRESSED];
    uint64_t zip_frames = (p->st.pool_bytes + PAGE_SIZE - 1) / PAGE_SIZE;
    uint64_t grant = granted(p);
    uint64_t swr = rate100(sub(cur.swr, r->swr), ms), sww = rate100(sub(cur.sww, r->sww), ms);

    struct jw w;
    jw_begin(&w);
    head(&w, "vm", now, why);
    jw_str(&w, "vm", p->name);
    jw_u64(&w, "memsz", policy_admit_size(p)); /* its size now (mem NAME SIZE moves it) */
    jw_u64(&w, "grant", grant);
    jw_u64(&w, "consumed", mm_charged(p));
    jw_u64(&w, "ovhd", p->meta);
    jw_u64(&w, "reserve", p->reserve);
    if (p->limited)
        jw_u64(&w, "limit", p->limit);
    else
        jw_null(&w, "limit");
    /* Two working-set estimates: the accessed-bit sweep's moving average,
     * and ESX's statistical sample (mm/p2m_sample.c), which the idle tax
     * uses; null where the VM has no such estimate yet. */
    if (p->ad)
        jw_u64(&w, "tchd", p->st.ws_pages);
    else
        jw_null(&w, "tchd");
    if (p->smp.periods)
        jw_u64(&w, "actv", p2m_sample_active_pages(p));
    else
        jw_null(&w, "actv");
    jw_u64(&w, "idle", p->st.idle_pages);
    jw_u64(&w, "shrd", shrd);
    jw_u64(&w, "shrdsvd", shrdsvd);
    jw_u64(&w, "zero", p->count[P2M_FILLED]);
    jw_u64(&w, "mctlsz", p->count[P2M_BALLOONED]);
    jw_u64(&w, "mctltgt", p->bl.target);
    jw_u64(&w, "mctlmax", p->ngfn > p->reserve ? p->ngfn - p->reserve : 0);
    jw_u64(&w, "zip", zip);
    jw_u64(&w, "zipsaved", zip > zip_frames ? zip - zip_frames : 0);
    if (p->st.pool_bytes)
        jw_fix(&w, "zip_ratio", zip * PAGE_SIZE * 100 / p->st.pool_bytes, 2);
    else
        jw_null(&w, "zip_ratio");
    jw_u64(&w, "swcur", p->count[P2M_SWAPPED]);
    jw_null(&w, "swtgt"); /* no swap target exists yet: the policy (issue 18) may set one */
    jw_fix(&w, "swr_s", swr, 2);
    jw_fix(&w, "sww_s", sww, 2);
    jw_open(&w, "p2m", '{');
    for (int s = 0; s < P2M_STATE_COUNT; s++)
        jw_u64(&w, p2m_state_name((enum p2m_state)s), p->count[s]);
    jw_close(&w, '}');
    jw_open(&w, "faults_s", '{');
    for (int k = 0; k < PF_KIND_COUNT; k++) {
        uint64_t f = rate100(sub(cur.faults[k], r->faults[k]), ms);
        tot->faults[k] += f;
        jw_fix(&w, p2m_fault_name((enum p2m_fault_kind)k), f, 2);
    }
    jw_close(&w, '}');
    jw_open(&w, "faults", '{');
    for (int k = 0; k < PF_KIND_COUNT; k++)
        jw_u64(&w, p2m_fault_name((enum p2m_fault_kind)k), cur.faults[k]);
    jw_close(&w, '}');
    jw_open(&w, "reclaim_s", '{');
    for (int k = 0; k < R_COUNT; k++) {
        uint64_t v = rate100(sub(cur.rec[k], r->rec[k]), ms);
        tot->rec[k] += v;
        jw_fix(&w, reclaim_names[k], v, 2);
    }
    jw_close(&w, '}');
    /* Faults that had to reclaim themselves (issue 18: background reclaim
     * exists so that this stays near zero), cumulative per kind. */
    jw_open(&w, "direct", '{');
    for (int k = 0; k < PF_KIND_COUNT; k++)
        jw_u64(&w, p2m_fault_name((enum p2m_fault_kind)k), p->st.direct[k]);
    jw_close(&w, '}');
    jw_open(&w, "share", '{');
    jw_u64(&w, "merged", p->st.share_merged);
    jw_u64(&w, "cross", p->st.share_cross);
    jw_u64(&w, "zero", p->st.share_zero);
    jw_u64(&w, "cow", p->st.cow_copies);
    jw_u64(&w, "cow_last", p->st.cow_last);
    jw_close(&w, '}');
    jw_open(&w, "swap", '{');
    jw_u64(&w, "out", p->st.swap_out);
    jw_u64(&w, "out_lz4", p->st.swap_out_lz4);
    jw_u64(&w, "in", p->st.faults[PF_SWAPIN]);
    jw_u64(&w, "dropped", p->st.swap_dropped);
    jw_u64(&w, "cached", p->swap_cached);
    jw_close(&w, '}');
    jw_open(&w, "balloon", '{');
    jw_u64(&w, "inflated", p->st.balloon_inflated);
    jw_u64(&w, "deflated", p->st.balloon_deflated);
    jw_u64(&w, "set", p->bl.set);
    jw_u64(&w, "policy", p->bl.policy);
    jw_u64(&w, "polls", p->bl.polls);
    jw_close(&w, '}');
    jw_u64(&w, "waits", p->st.waits);

    if (why == STATS_PERIOD) {
        struct alert_sample a = { 0 };
        a.valid[ALERT_BALLOON] = p->ngfn != 0;
        a.value[ALERT_BALLOON] = p->ngfn ? p->count[P2M_BALLOONED] * 10000 / p->ngfn : 0;
        a.valid[ALERT_SWAP] = swap_enabled();
        a.value[ALERT_SWAP] = mbps100(swr + sww);
        a.valid[ALERT_ZIP] = zip >= ALERT_ZIP_MIN_PAGES && p->st.pool_bytes;
        a.value[ALERT_ZIP] = p->st.pool_bytes ? zip * PAGE_SIZE * 100 / p->st.pool_bytes : 0;
        struct share_stats ss;
        share_get_stats(&ss);
        a.valid[ALERT_SHARE] = share_enabled() && p->share && ss.rounds &&
                               grant >= ALERT_SHARE_MIN_PAGES;
        a.value[ALERT_SHARE] = grant ? shrdsvd * 10000 / grant : 0;
        alerts_evaluate(p, &a);
    }
    jw_alerts(&w, alerts_active(p));
    jw_close(&w, '}');
    write_line(&w, p->name);
    *r = cur;
    tot->memsz += p->ngfn;
    tot->grant += grant;
    tot->mctlsz += p->count[P2M_BALLOONED];
    tot->shrdsvd += shrdsvd;
}

const char *stats_machine_state(void)
{
    return policy_state_name(policy_state());
}

static void machine_line(uint64_t now, enum stats_why why, const struct totals *tot)
{
    struct mm_stats ms;
    struct zpool_stats z;
    struct swap_stats sw;
    struct share_stats sh;
    struct frame_stats fs;
    mm_get_stats(&ms);
    zpool_get_stats(&z);
    swap_get_stats(&sw);
    share_get_stats(&sh);
    frame_get_stats(&fs);
    struct policy_stats ps;
    policy_get_stats(&ps);
    struct machine_reading cur = {
        .bg = ps.bg_freed,
        .at = now,
        .swr = sw.in_pages + sw.in_lz4,
        .sww = sw.out_pages + sw.out_lz4,
        .direct = ms.reclaimed,
        .hashed = sh.hashed,
    };
    uint64_t dt = prev_m.at ? ms_between(prev_m.at, now) : ms_between(start, now);
    uint64_t swr = rate100(sub(cur.swr, prev_m.swr), dt);
    uint64_t sww = rate100(sub(cur.sww, prev_m.sww), dt);
    uint64_t refs = 0;
    for (int i = 0; i < mm_vm_count(); i++)
        refs += mm_vm_at(i)->count[P2M_SHARED];
    uint64_t sframes = fs.count[FS_SHARED];

    struct jw w;
    jw_begin(&w);
    head(&w, "machine", now, why);
    jw_u64(&w, "vms", (uint64_t)mm_vm_count());
    jw_u64(&w, "frames", mm_usable_frames());
    jw_u64(&w, "free", frame_free_count());
    jw_u64(&w, "min_free", policy_min_free());
    jw_str(&w, "state", stats_machine_state());
    jw_fix(&w, "overcommit", mm_overcommit_permille(), 3);
    jw_u64(&w, "memsz", tot->memsz);
    jw_u64(&w, "grant", tot->grant);
    jw_u64(&w, "mctlsz", tot->mctlsz);
    jw_u64(&w, "shared_frames", sframes);
    jw_u64(&w, "shrd", refs);
    jw_u64(&w, "shrdsvd", refs > sframes ? refs - sframes : 0);
    jw_u64(&w, "pool_pages", z.objects);
    jw_u64(&w, "pool_frames", z.frames);
    jw_u64(&w, "pool_cap", z.cap_frames);
    if (z.data_bytes)
        jw_fix(&w, "pool_ratio", z.objects * PAGE_SIZE * 100 / z.data_bytes, 2);
    else
        jw_null(&w, "pool_ratio");
    if (z.frames)
        jw_fix(&w, "pool_density", z.data_bytes * 100 / (z.frames * PAGE_SIZE), 2);
    else
        jw_null(&w, "pool_density");
    jw_u64(&w, "swap_slots", sw.slots);
    jw_u64(&w, "swap_used", sw.used);
    jw_fix(&w, "swr_s", swr, 2);
    jw_fix(&w, "sww_s", sww, 2);
    jw_fix(&w, "scan_s", rate100(sub(cur.hashed, prev_m.hashed), dt), 2);
    jw_u64(&w, "scan_rate", sh.rate);
    jw_u64(&w, "scan_rounds", sh.rounds);
    jw_open(&w, "faults_s", '{');
    for (int k = 0; k < PF_KIND_COUNT; k++)
        jw_fix(&w, p2m_fault_name((enum p2m_fault_kind)k), tot->faults[k], 2);
    jw_close(&w, '}');
    jw_open(&w, "reclaim_s", '{');
    for (int k = 0; k < R_COUNT; k++)
        jw_fix(&w, reclaim_names[k], tot->rec[k], 2);
    jw_close(&w, '}');
    /* Reclaim on the fault path (direct) and ahead of it (background). */
    jw_fix(&w, "direct_s", rate100(sub(cur.direct, prev_m.direct), dt), 2);
    jw_fix(&w, "bg_s", rate100(sub(cur.bg, prev_m.bg), dt), 2);
    jw_u64(&w, "reclaim_runs", ms.reclaim_runs);
    jw_u64(&w, "waits", ms.waits);

    if (why == STATS_PERIOD) {
        struct alert_sample a = { 0 };
        a.valid[ALERT_BALLOON] = tot->memsz != 0;
        a.value[ALERT_BALLOON] = tot->memsz ? tot->mctlsz * 10000 / tot->memsz : 0;
        a.valid[ALERT_SWAP] = swap_enabled();
        a.value[ALERT_SWAP] = mbps100(swr + sww);
        a.valid[ALERT_ZIP] = z.objects >= ALERT_ZIP_MIN_PAGES && z.data_bytes;
        a.value[ALERT_ZIP] = z.data_bytes ? z.objects * PAGE_SIZE * 100 / z.data_bytes : 0;
        a.valid[ALERT_SHARE] = share_enabled() && sh.rounds &&
                               tot->grant >= ALERT_SHARE_MIN_PAGES;
        a.value[ALERT_SHARE] =
            tot->grant ? (refs > sframes ? refs - sframes : 0) * 10000 / tot->grant : 0;
        alerts_evaluate(NULL, &a);
    }
    jw_alerts(&w, alerts_active(NULL));
    jw_close(&w, '}');
    write_line(&w, "machine");
    prev_m = cur;
}

void stats_emit_at(uint64_t now, enum stats_why why)
{
    struct totals tot = { 0 };
    seq++;
    for (int i = 0; i < mm_vm_count(); i++)
        vm_line(mm_vm_at(i), now, why, &tot);
    machine_line(now, why, &tot);
}

void stats_emit(enum stats_why why)
{
    stats_emit_at(mm_now(), why);
}

void stats_emit_vm_stop_at(struct p2m *p, uint64_t now)
{
    struct totals tot = { 0 };
    seq++;
    vm_line(p, now, STATS_STOP, &tot);
    forget(p);
    alerts_forget(p);
}

void stats_emit_vm_stop(struct p2m *p)
{
    stats_emit_vm_stop_at(p, mm_now());
}

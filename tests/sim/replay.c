/* replay: reads the transition traces a hypervisor dumped on its serial log
 * (mm/trace.c, format in docs/trace.md) and replays each against mm/:
 *
 *   replay LOG            every dump in LOG; exit 0 when all match, 1 on a
 *                         mismatch, 2 when the log cannot be decoded
 *   replay --selftest DIR traces made by the real mm/ on the simulator,
 *                         then replayed: clean, with overwritten entries,
 *                         corrupted, truncated and with forged entries
 *
 * What "replay against mm/" means here: each dump gets a fresh p2m of the
 * real mm/ code (on the simulator's machine) with the VM's size, and every
 * entry is applied through the real p2m_set_state, after checking that
 *   - its edge is legal by mm/'s own table (p2m_edge_legal: the hypervisor
 *     would have panicked on any other),
 *   - it is an edge its cause's mechanism takes (a reclaim never makes a
 *     page resident, a fault never compresses one, ...),
 *   - it starts where the GFN's previous entry ended (each from is the
 *     previous to; the first entry of a GFN in a window whose older entries
 *     were overwritten is taken as the state before the window),
 * and at the end the replayed p2m must hold, for every traced GFN, the
 * final state the hypervisor dumped from its own p2m. When the trace is
 * complete (every cause, nothing overwritten) every GFN is checked, traced
 * or not, and the replayed p2m's per-state counts must equal the
 * hypervisor's. Page contents are not in the trace, so which pages a
 * mechanism picked is not re-decided: the replay checks the state machine
 * the hypervisor ran, not its policy. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mm/balloon.h"
#include "mm/mm.h"
#include "mm/mm_backend.h"
#include "mm/p2m.h"
#include "mm/p2m_internal.h"
#include "mm/share.h"
#include "mm/trace.h"
#include "tests/sim/model.h"

/* ---- decoding ---- */

struct dump {
    char vm[32], why[16], mask[64];
    unsigned owner;
    uint64_t ngfn, tick_hz, recorded, entries, dropped, counts[P2M_STATE_COUNT];
    int header_line;
    uint8_t *ebytes, *mbytes;
    size_t elen, mlen, ecap, mcap;
    uint64_t elines, mlines;
    uint32_t crc;
    bool closed;
};

static int bad_input(const char *path, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad_input(const char *path, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "replay: %s:%d: ", path, line);
    vfprintf(stdout, fmt, ap);
    fprintf(stdout, "\n");
    va_end(ap);
    return 2;
}

static void append(uint8_t **buf, size_t *len, size_t *cap, const uint8_t *d, size_t n)
{
    if (*len + n > *cap) {
        *cap = (*len + n) * 2 + 4096;
        *buf = realloc(*buf, *cap);
    }
    memcpy(*buf + *len, d, n);
    *len += n;
}

static bool get_u64(const char *s, const char *key, uint64_t *v)
{
    char pat[32];
    snprintf(pat, sizeof(pat), " %s=", key);
    const char *p = strstr(s, pat);
    if (!p)
        return false;
    char *end;
    errno = 0;
    *v = strtoull(p + strlen(pat), &end, 10);
    return !errno && (*end == ' ' || *end == 0 || *end == ',');
}

static bool get_word(const char *s, const char *key, char *out, size_t cap)
{
    char pat[32];
    snprintf(pat, sizeof(pat), " %s=", key);
    const char *p = strstr(s, pat);
    if (!p)
        return false;
    p += strlen(pat);
    size_t n = strcspn(p, " ");
    if (!n || n >= cap)
        return false;
    memcpy(out, p, n);
    out[n] = 0;
    return true;
}

static int parse_header(const char *path, int ln, const char *s, struct dump *d)
{
    uint64_t v, owner;
    memset(d, 0, sizeof(*d));
    d->header_line = ln;
    if (!get_u64(s, "v", &v))
        return bad_input(path, ln, "trace header without a version");
    if (v != TRACE_VERSION)
        return bad_input(path, ln, "trace format version %llu, this replay reads %d",
                         (unsigned long long)v, TRACE_VERSION);
    if (!get_word(s, "vm", d->vm, sizeof(d->vm)) || !get_word(s, "why", d->why, sizeof(d->why)) ||
        !get_word(s, "mask", d->mask, sizeof(d->mask)) || !get_u64(s, "owner", &owner) ||
        !get_u64(s, "ngfn", &d->ngfn) || !get_u64(s, "tick_hz", &d->tick_hz) ||
        !get_u64(s, "recorded", &d->recorded) || !get_u64(s, "entries", &d->entries) ||
        !get_u64(s, "dropped", &d->dropped))
        return bad_input(path, ln, "trace header lacks a field (vm, why, mask, owner, ngfn, "
                                   "tick_hz, recorded, entries, dropped)");
    d->owner = (unsigned)owner;
    const char *c = strstr(s, " counts=");
    if (!c)
        return bad_input(path, ln, "trace header without counts");
    c += 8;
    for (int i = 0; i < P2M_STATE_COUNT; i++) {
        char *end;
        d->counts[i] = strtoull(c, &end, 10);
        if (end == c || (i < P2M_STATE_COUNT - 1 && *end != ','))
            return bad_input(path, ln, "trace header: counts needs %d numbers", P2M_STATE_COUNT);
        c = end + 1;
    }
    if (d->ngfn == 0 || d->ngfn > (1ULL << 32) || d->recorded != d->entries + d->dropped)
        return bad_input(path, ln, "trace header is inconsistent (ngfn %llu, recorded %llu != "
                                   "entries %llu + dropped %llu)",
                         (unsigned long long)d->ngfn, (unsigned long long)d->recorded,
                         (unsigned long long)d->entries, (unsigned long long)d->dropped);
    return 0;
}

/* "@hvtrace E|M VM N BASE64 CRC" */
static int parse_data(const char *path, int ln, char *s, struct dump *d)
{
    char kind = s[0], vm[32];
    unsigned long long idx;
    char b64[400];
    unsigned crc;
    int n = 0;
    if (sscanf(s, "%c %31s %llu %399s %8x%n", &kind, vm, &idx, b64, &crc, &n) != 5 ||
        (s[n] && s[n] != ' '))
        return bad_input(path, ln, "malformed trace data line");
    if (strcmp(vm, d->vm))
        return bad_input(path, ln, "trace line of vm %s inside the dump of vm %s", vm, d->vm);
    uint64_t *want = kind == 'E' ? &d->elines : &d->mlines;
    if (kind == 'E' && d->mlines)
        return bad_input(path, ln, "vm %s: entry line after the final-state lines", d->vm);
    if (idx != *want)
        return bad_input(path, ln, "vm %s: %c line %llu where %llu was due (a line is missing)",
                         d->vm, kind, idx, (unsigned long long)*want);
    uint8_t buf[300];
    long len = trace_unbase64(b64, strlen(b64), buf, sizeof(buf));
    if (len <= 0)
        return bad_input(path, ln, "vm %s: %c line %llu is not valid base64", d->vm, kind, idx);
    uint32_t got = trace_crc32(0, buf, (size_t)len);
    if (got != crc)
        return bad_input(path, ln, "vm %s: %c line %llu checksum mismatch (line says %08x, its "
                                   "data gives %08x): the log is damaged",
                         d->vm, kind, idx, crc, got);
    if (kind == 'E')
        append(&d->ebytes, &d->elen, &d->ecap, buf, (size_t)len);
    else
        append(&d->mbytes, &d->mlen, &d->mcap, buf, (size_t)len);
    d->crc = trace_crc32(d->crc, buf, (size_t)len);
    (*want)++;
    return 0;
}

static int parse_end(const char *path, int ln, const char *s, struct dump *d)
{
    char vm[32];
    unsigned long long el, ml;
    unsigned crc;
    if (sscanf(s, "Z %31s elines=%llu mlines=%llu crc=%8x", vm, &el, &ml, &crc) != 4)
        return bad_input(path, ln, "malformed trace end line");
    if (strcmp(vm, d->vm))
        return bad_input(path, ln, "trace end of vm %s inside the dump of vm %s", vm, d->vm);
    if (el != d->elines || ml != d->mlines)
        return bad_input(path, ln, "vm %s: dump says %llu entry and %llu map lines, %llu and "
                                   "%llu arrived", d->vm, el, ml,
                         (unsigned long long)d->elines, (unsigned long long)d->mlines);
    if (crc != d->crc)
        return bad_input(path, ln, "vm %s: dump checksum mismatch (%08x, data gives %08x)",
                         d->vm, crc, d->crc);
    if (d->elen != d->entries * sizeof(struct trace_entry))
        return bad_input(path, ln, "vm %s: header says %llu entries, the lines hold %zu bytes",
                         d->vm, (unsigned long long)d->entries, d->elen);
    d->closed = true;
    return 0;
}

/* ---- the replay of one dump ---- */

/* The edges each mechanism takes (mm/p2m_*.c): anything else under that
 * cause means the trace, or the cause marking, is wrong. */
static bool cause_takes(unsigned c, unsigned from, unsigned to)
{
#define E(a, b) (from == P2M_##a && to == P2M_##b)
    switch (c) {
    case TC_FAULT: /* demand-zero, refill, ballooned touched, decompress, shared object, COW */
        return E(UNPOPULATED, RESIDENT) || E(FILLED, RESIDENT) || E(BALLOONED, RESIDENT) ||
               E(COMPRESSED, RESIDENT) || E(COMPRESSED, SHARED) || E(SHARED, RESIDENT);
    case TC_LOAD: /* the hypervisor's own access populates like a fault; MMIO set-up */
        return E(UNPOPULATED, RESIDENT) || E(FILLED, RESIDENT) || E(BALLOONED, RESIDENT) ||
               E(COMPRESSED, RESIDENT) || E(COMPRESSED, SHARED) || E(SHARED, RESIDENT) ||
               E(UNPOPULATED, MMIO);
    case TC_RECLAIM: /* zero, same-filled, compressed */
        return E(RESIDENT, UNPOPULATED) || E(RESIDENT, FILLED) || E(RESIDENT, COMPRESSED);
    case TC_SWAP: /* swap-out, clean drop, pool write-back, swap-in */
        return E(RESIDENT, SWAPPED) || E(COMPRESSED, SWAPPED) || E(SWAPPED, RESIDENT);
    case TC_SHARE: /* promote, join, to a shared object, same-filled returned */
        return E(RESIDENT, SHARED) || E(SHARED, COMPRESSED) || E(RESIDENT, UNPOPULATED) ||
               E(RESIDENT, FILLED);
    case TC_BALLOON:
        return (to == P2M_BALLOONED && from != P2M_MMIO) || E(BALLOONED, UNPOPULATED);
    default:
        return true; /* unmarked: only legality speaks */
    }
#undef E
}

/* Puts a GFN in the state it had before the trace's window (its older
 * entries were overwritten): replay-only, not a transition. */
static void seed_state(struct p2m *p, uint64_t gfn, struct p2m_entry *e, unsigned s)
{
    if ((e->state == P2M_UNPOPULATED) != (s == P2M_UNPOPULATED))
        map_count(p, gfn, s == P2M_UNPOPULATED ? -1 : 1);
    p->count[e->state]--;
    p->count[s]++;
    e->state = (uint8_t)s;
}

#define MAX_REPORTS 8

/* Replays d in this process (a fresh simulator world). Returns 0 (match)
 * or 1 (mismatch); prints the verdict. */
static int replay_dump(const char *path, const struct dump *d)
{
    bool all_causes = !strcmp(d->mask, "all");
    bool complete = all_causes && d->dropped == 0;
    uint64_t ngfn = d->ngfn;
    sim_init(ngfn / 128 + 2048);
    int vi = sim_add_vm(ngfn, 0, 0, false);
    if (vi < 0) {
        printf("replay: %s: vm %s: cannot make a p2m of %llu GFNs\n", path, d->vm,
               (unsigned long long)ngfn);
        return 1;
    }
    struct p2m *p = &sim->vm[vi].p2m;
    uint8_t *seen = calloc(ngfn, 1);
    uint64_t n = d->entries, traced = 0, seeded = 0, errors = 0, reports = 0, gaps = 0;
    uint64_t by_cause[TC_COUNT] = { 0 }, first_t = 0, last_t = 0, t_hi = 0;
    uint32_t prev_t = 0, prev_seq = 0;
#define REPORT(...)                                                                       \
    do {                                                                                  \
        errors++;                                                                         \
        if (reports++ < MAX_REPORTS) {                                                    \
            printf("replay: %s: vm %s: ", path, d->vm);                                   \
            printf(__VA_ARGS__);                                                          \
            printf("\n");                                                                 \
        }                                                                                 \
    } while (0)
    for (uint64_t i = 0; i < n; i++) {
        struct trace_entry te;
        memcpy(&te, d->ebytes + i * sizeof(te), sizeof(te));
        unsigned from = te.edge >> 4, to = te.edge & 15, c = te.cause;
        if (i && te.seq <= prev_seq)
            REPORT("entry %llu: sequence number %u after %u (out of order)",
                   (unsigned long long)i, te.seq, prev_seq);
        if (i && te.t < prev_t)
            t_hi += 1ULL << 32; /* the 32-bit clock wrapped */
        uint64_t t = t_hi | te.t;
        if (!i)
            first_t = t;
        last_t = t;
        prev_t = te.t;
        prev_seq = te.seq;
        if (te.owner != d->owner || te.gfn >= ngfn || from >= P2M_STATE_COUNT ||
            to >= P2M_STATE_COUNT || c >= TC_COUNT) {
            REPORT("entry %llu is not valid (owner %u, gfn %#x, edge %#x, cause %u)",
                   (unsigned long long)i, te.owner, te.gfn, te.edge, c);
            continue;
        }
        by_cause[c]++;
        struct p2m_entry *e = map_slot(p, te.gfn);
        if (!e) {
            REPORT("entry %llu: no map chunk for gfn %#x (replay machine too small)",
                   (unsigned long long)i, te.gfn);
            break;
        }
        if (!p2m_edge_legal((enum p2m_state)from, (enum p2m_state)to)) {
            REPORT("entry %llu: gfn %#x: illegal edge %s -> %s (%s)", (unsigned long long)i,
                   te.gfn, p2m_state_name(from), p2m_state_name(to), trace_cause_name(c));
            continue;
        }
        if (!cause_takes(c, from, to))
            REPORT("entry %llu: gfn %#x: edge %s -> %s is not one the %s mechanism takes",
                   (unsigned long long)i, te.gfn, p2m_state_name(from), p2m_state_name(to),
                   trace_cause_name(c));
        if (e->state != from) {
            if (seen[te.gfn] && !all_causes)
                gaps++; /* an untraced cause moved it in between */
            else if (seen[te.gfn] || complete)
                REPORT("entry %llu: gfn %#x: continuity break: leaves %s, but %s", 
                       (unsigned long long)i, te.gfn, p2m_state_name(from),
                       seen[te.gfn] ? "its previous entry left it elsewhere"
                                    : "a complete trace starts every GFN unpopulated");
            else
                seeded++;
            seed_state(p, te.gfn, e, from);
        }
        if (!seen[te.gfn]) {
            seen[te.gfn] = 1;
            traced++;
        }
        p2m_set_state(p, te.gfn, e, (enum p2m_state)to, 0);
    }
    /* The hypervisor's final map. */
    uint8_t *final = malloc(ngfn);
    uint64_t at = 0, fcount[P2M_STATE_COUNT] = { 0 };
    size_t k = 0;
    while (k < d->mlen && at <= ngfn) {
        uint64_t v = 0;
        unsigned sh = 0;
        uint8_t b;
        do {
            b = d->mbytes[k++];
            v |= (uint64_t)(b & 0x7f) << sh;
            sh += 7;
        } while ((b & 0x80) && k < d->mlen && sh < 64);
        uint64_t len = v >> 3;
        unsigned s = v & 7;
        if (b & 0x80 || len == 0 || len > ngfn - at) {
            at = ngfn + 1;
            break;
        }
        memset(final + at, (int)s, len);
        fcount[s] += len;
        at += len;
    }
    int rc = 0;
    if (at != ngfn) {
        REPORT("the final map does not cover the VM's %llu GFNs", (unsigned long long)ngfn);
    } else {
        uint64_t checked = 0, mismatched = 0, moved = 0;
        for (uint64_t g = 0; g < ngfn; g++) {
            if (!seen[g] && !complete)
                continue;
            checked++;
            unsigned mine = p2m_peek(p, g)->state;
            if (mine != final[g] && !all_causes) {
                moved++; /* by a cause the mask left out */
            } else if (mine != final[g]) {
                mismatched++;
                REPORT("final state mismatch at gfn %#llx: the trace leaves it %s, the "
                       "hypervisor's p2m has it %s", (unsigned long long)g,
                       p2m_state_name(mine), p2m_state_name(final[g]));
            }
        }
        for (int s = 0; s < P2M_STATE_COUNT; s++)
            if (fcount[s] != d->counts[s])
                REPORT("the final map holds %llu %s GFNs, the header's counts %llu",
                       (unsigned long long)fcount[s], p2m_state_name(s),
                       (unsigned long long)d->counts[s]);
        if (complete)
            for (int s = 0; s < P2M_STATE_COUNT; s++)
                if (p->count[s] != d->counts[s])
                    REPORT("complete trace: replayed p2m has %llu %s pages, the hypervisor "
                           "%llu", (unsigned long long)p->count[s], p2m_state_name(s),
                           (unsigned long long)d->counts[s]);
        char causes[160];
        size_t cl = 0;
        causes[0] = 0;
        for (unsigned c = 0; c < TC_COUNT; c++)
            if (by_cause[c])
                cl += (size_t)snprintf(causes + cl, sizeof(causes) - cl, "%s%s %llu",
                                       cl ? ", " : "", trace_cause_name(c),
                                       (unsigned long long)by_cause[c]);
        char partial[256] = "";
        if (!all_causes)
            snprintf(partial, sizeof(partial), " (mask %s: %llu GFNs moved by untraced causes "
                     "after their last entry, %llu gaps between entries: not errors)", d->mask,
                     (unsigned long long)moved, (unsigned long long)gaps);
        double secs = d->tick_hz ? (double)(last_t - first_t) / (double)d->tick_hz : 0;
        printf("replay: vm %s (%s): %llu entries over %.2f s (recorded %llu, overwritten "
               "%llu), %llu GFNs traced (%llu entered the window mid-way), causes: %s; "
               "%llu GFNs checked%s, %llu mismatched%s: %s\n",
               d->vm, d->why, (unsigned long long)n, secs, (unsigned long long)d->recorded,
               (unsigned long long)d->dropped, (unsigned long long)traced,
               (unsigned long long)seeded, cl ? causes : "none",
               (unsigned long long)checked,
               complete ? " (complete trace: every GFN and the per-state counts)" : "",
               (unsigned long long)mismatched, partial, errors ? "MISMATCH" : "MATCH");
    }
    if (errors) {
        if (reports > MAX_REPORTS)
            printf("replay: %s: vm %s: ... %llu problems in all\n", path, d->vm,
                   (unsigned long long)errors);
        rc = 1;
    }
    free(final);
    free(seen);
#undef REPORT
    return rc;
}

/* Each dump is replayed in a child: a fresh simulator world every time. */
static int replay_child(const char *path, const struct dump *d)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("replay: fork");
        return 2;
    }
    if (pid == 0) {
        int rc = replay_dump(path, d);
        fflush(stdout);
        _exit(rc);
    }
    int st;
    if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st)) {
        printf("replay: %s: vm %s: the replay itself crashed\n", path, d->vm);
        return 1;
    }
    return WEXITSTATUS(st);
}

/* Replays every dump in path. 0: all match; 1: a mismatch; 2: undecodable. */
static int replay_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("replay: %s: %s\n", path, strerror(errno));
        return 2;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int ln = 0, rc = 0, dumps = 0;
    struct dump d;
    bool open_dump = false;
    memset(&d, 0, sizeof(d));
    while ((len = getline(&line, &cap, f)) >= 0) {
        ln++;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        char *s = strstr(line, "@hvtrace ");
        if (!s)
            continue;
        s += 9;
        int r = 0;
        if (s[0] == 'H' && s[1] == ' ') {
            if (open_dump) {
                r = bad_input(path, ln, "vm %s: a new dump begins before the dump of line %d "
                                        "ended", d.vm, d.header_line);
                break;
            }
            free(d.ebytes);
            free(d.mbytes);
            r = parse_header(path, ln, s + 1, &d);
            open_dump = !r;
        } else if (!open_dump) {
            r = bad_input(path, ln, "trace line outside a dump (its header is missing)");
        } else if ((s[0] == 'E' || s[0] == 'M') && s[1] == ' ') {
            r = parse_data(path, ln, s, &d);
        } else if (s[0] == 'Z' && s[1] == ' ') {
            r = parse_end(path, ln, s, &d);
            if (!r) {
                open_dump = false;
                dumps++;
                int v = replay_child(path, &d);
                rc = v > rc ? v : rc;
            }
        } else {
            r = bad_input(path, ln, "unknown trace line");
        }
        if (r) {
            rc = 2;
            open_dump = false;
            break;
        }
    }
    if (!rc && open_dump)
        rc = bad_input(path, ln, "vm %s: the log ends before the dump of line %d does",
                       d.vm, d.header_line);
    if (!rc && !dumps)
        rc = bad_input(path, ln, "no trace dump in this log (is trace = ... set in hv.cfg?)");
    free(d.ebytes);
    free(d.mbytes);
    free(line);
    fclose(f);
    if (rc != 2)
        printf("replay: %s: %d dump%s, %s\n", path, dumps, dumps == 1 ? "" : "s",
               rc ? "MISMATCH" : "all match");
    return rc;
}

/* ---- self-test: traces from the real mm/ on the simulator ---- */

static uint64_t rng = 88172645463325252ULL;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void emit_file(const char *line, size_t n, void *ctx)
{
    fwrite(line, 1, n, ctx);
}

enum forge { F_NONE, F_BYPASS, F_BREAK, F_ILLEGAL, F_CAUSE, F_PARTIAL };

/* Runs a small overcommitted VM (faults, zero and same-filled reclaim,
 * compression, swap with injected write errors, sharing, share reclaim,
 * balloon) with tracing into a ring of ring_frames, forges what f says,
 * and dumps to path. Exits the process (a child). */
static void generate(const char *path, uint32_t ring_frames, enum forge f, uint64_t accesses)
{
    sim_init(4096);
    log_set_level(LS_MM, LOG_QUIET);
    uint32_t mask = f == F_PARTIAL ? 1u << TC_RECLAIM | 1u << TC_BALLOON : TRACE_MASK_ALL;
    if (trace_init(mask, ring_frames, 1ULL << 32))
        _exit(3);
    const uint64_t ngfn = 2048;
    int vi = sim_add_vm(ngfn, 64, 600, true);
    struct p2m *p = &sim->vm[vi].p2m;
    p->compress = true;
    p->share = true;
    uint64_t gfns[16];
    for (uint64_t i = 0; i < accesses; i++) {
        uint64_t r = next_rand();
        uint64_t gfn = (r >> 8) % (r & 1 ? 256 : ngfn);
        enum sim_op op = (r >> 40) % 4 == 0 ? OP_WRITE_ZERO : (r >> 40) % 4 == 1 ? OP_READ
                                                                            : OP_WRITE_TAG;
        sim_access(vi, gfn, op);
        if (i % 500 == 0)
            share_scan(256);
        if (i % 5000 == 0)
            share_reclaim(8);
        if (i % 20000 == 0)
            p2m_sweep(p);
        if (i % 7000 == 0) {
            unsigned bad, n = 0;
            uint64_t base = 1024 + (r >> 20) % 900;
            for (unsigned k = 0; k < 16; k++)
                gfns[n++] = base + k;
            if (p2m_balloon_inflate(p, gfns, n, &bad) == 0)
                for (unsigned k = 0; k < n; k++)
                    sim->vm[vi].gen[gfns[k]] = 0; /* given up: reads as zero */
            if (i % 14000 == 0)
                p2m_balloon_deflate(p, gfns, n, &bad);
        }
    }
    /* The workload itself must be sound: the simulator's checks. */
    if (sim_check_full() || sim->c.violations) {
        printf("selftest: the simulator saw %llu invariant violations\n",
               (unsigned long long)sim->c.violations);
        _exit(6);
    }
    /* A resident GFN to forge around. */
    uint64_t g = 0;
    while (g < ngfn && p2m_peek(p, g)->state != P2M_RESIDENT)
        g++;
    if (g == ngfn)
        _exit(4);
    switch (f) {
    case F_BYPASS: /* a state change that did not go through p2m_set_state */
        p2m_entry_rw(p, g)->state = P2M_FILLED;
        p->count[P2M_RESIDENT]--;
        p->count[P2M_FILLED]++;
        break;
    case F_BREAK: /* an entry that does not start where the GFN was */
        trace_record(p, g, P2M_FILLED, P2M_RESIDENT);
        break;
    case F_ILLEGAL:
        trace_record(p, g, P2M_RESIDENT, P2M_MMIO);
        break;
    case F_CAUSE: { /* reclaim "making a page resident" */
        uint8_t tc = trace_cause_enter(p, TC_RECLAIM);
        trace_record(p, g, P2M_RESIDENT, P2M_SHARED);
        trace_cause_leave(p, tc);
        break;
    }
    default:
        break;
    }
    FILE *out = fopen(path, "w");
    if (!out)
        _exit(5);
    fprintf(out, "[hv] a line before the dump\n");
    trace_dump(p, "stop", emit_file, out);
    fprintf(out, "[hv] a line after it\n");
    fclose(out);
    struct trace_stats ts;
    trace_get_stats(&ts);
    printf("selftest: %s: %llu transitions recorded, %llu overwritten (ring of %llu)\n", path,
           (unsigned long long)ts.recorded, (unsigned long long)ts.dropped,
           (unsigned long long)ts.capacity);
    fflush(stdout);
    _exit(0);
}

static int spawn_generate(const char *path, uint32_t ring_frames, enum forge f, uint64_t n)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
        generate(path, ring_frames, f, n);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 99;
}

/* Runs replay on path in a child with its output captured to path.out;
 * checks the exit status and that the output holds want. */
static int expect_replay(const char *path, int want_rc, const char *want)
{
    char out[512];
    snprintf(out, sizeof(out), "%s.out", path);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(out, "w", stdout))
            _exit(98);
        int rc = replay_file(path);
        fflush(stdout);
        _exit(rc);
    }
    int st;
    waitpid(pid, &st, 0);
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 99;
    FILE *f = fopen(out, "r");
    char buf[1 << 16];
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    buf[n] = 0;
    if (f)
        fclose(f);
    bool ok = rc == want_rc && strstr(buf, want);
    printf("selftest: %-4s %s: exit %d (want %d), output %s /%s/\n", ok ? "ok" : "FAIL", path,
           rc, want_rc, strstr(buf, want) ? "has" : "LACKS", want);
    if (!ok)
        printf("---\n%s---\n", buf);
    return ok ? 0 : 1;
}

/* Copies src to dst with one change to the first line containing match:
 * byte flip at offset off from the end of the match (corrupt), or the rest
 * of the file cut from that line on (truncate). */
static int mutate(const char *src, const char *dst, const char *match, int off, bool cut)
{
    FILE *f = fopen(src, "r");
    if (!f)
        return -1;
    static char buf[1 << 24];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *m = strstr(buf, match);
    if (!m)
        return -1;
    if (cut) {
        n = (size_t)(m - buf);
    } else {
        char *c = m + strlen(match) + off;
        *c = *c == 'A' ? 'B' : 'A';
    }
    f = fopen(dst, "w");
    fwrite(buf, 1, n, f);
    fclose(f);
    return 0;
}

static int selftest(const char *dir)
{
    char p[9][512];
    const char *names[] = { "clean", "ring", "corrupt", "truncated", "bypass", "break",
                            "illegal", "cause", "partial" };
    mkdir(dir, 0755);
    for (int i = 0; i < 9; i++)
        snprintf(p[i], sizeof(p[i]), "%s/%s.log", dir, names[i]);
    int bad = 0;
    /* A ring that holds everything, and one that overwrites. */
    bad |= spawn_generate(p[0], 256, F_NONE, 60000);
    bad |= spawn_generate(p[1], 1, F_NONE, 60000);
    bad |= spawn_generate(p[4], 64, F_BYPASS, 60000);
    bad |= spawn_generate(p[5], 64, F_BREAK, 60000);
    bad |= spawn_generate(p[6], 64, F_ILLEGAL, 60000);
    bad |= spawn_generate(p[7], 64, F_CAUSE, 60000);
    bad |= spawn_generate(p[8], 256, F_PARTIAL, 60000);
    if (bad) {
        printf("selftest: FAIL: a trace could not be generated\n");
        return 1;
    }
    bad |= mutate(p[0], p[2], "@hvtrace E sim0 7 ", 5, false);
    bad |= mutate(p[0], p[3], "@hvtrace M sim0 0 ", 0, true);
    if (bad) {
        printf("selftest: FAIL: the clean trace is not as expected\n");
        return 1;
    }
    bad |= expect_replay(p[0], 0, "(complete trace: every GFN and the per-state counts), 0 "
                                  "mismatched: MATCH");
    bad |= expect_replay(p[1], 0, "mismatched: MATCH");
    bad |= expect_replay(p[1], 0, "entered the window mid-way");
    bad |= expect_replay(p[2], 2, "E line 7 checksum mismatch");
    bad |= expect_replay(p[3], 2, "the log ends before the dump");
    bad |= expect_replay(p[4], 1, "final state mismatch");
    bad |= expect_replay(p[5], 1, "continuity break");
    bad |= expect_replay(p[6], 1, "illegal edge resident -> mmio");
    bad |= expect_replay(p[7], 1, "is not one the reclaim mechanism takes");
    /* Causes left out of the mask move pages between entries: not errors. */
    bad |= expect_replay(p[8], 0, "causes: reclaim ");
    bad |= expect_replay(p[8], 0, "moved by untraced causes");
    printf("selftest: %s\n", bad ? "FAIL" : "PASS");
    return bad;
}

/* Cost of the hook: the real p2m_set_state taking U -> R -> U edges over
 * 4096 GFNs of a replay p2m (no frames behind them: only the state
 * machine's own work), tracing off and on; the best of seven rounds of
 * each, in TSC cycles per transition (the machine is shared). Built with
 * -DTRACE_NO_HOOK (build/replay-nohook) the hook is compiled out: the
 * difference between that build's "off" and this one's is the cost of
 * tracing when it is off. */
static int bench(uint64_t transitions)
{
    sim_init(4096);
    int vi = sim_add_vm(4096, 0, 0, false);
    struct p2m *p = &sim->vm[vi].p2m;
    struct p2m_entry *e[4096];
    for (unsigned g = 0; g < 4096; g++)
        e[g] = map_slot(p, g);
    double best[2] = { 1e30, 1e30 };
    for (int round = 0; round < 14; round++) {
        int on = round & 1;
        if (on)
            trace_init(TRACE_MASK_ALL, 64, 1ULL << 32);
        uint64_t t0 = mm_now();
        for (uint64_t i = 0; i < transitions; i++) {
            unsigned g = (unsigned)(i & 4095);
            p2m_set_state(p, g, e[g], e[g]->state == P2M_UNPOPULATED ? P2M_RESIDENT
                                                                    : P2M_UNPOPULATED, 0);
        }
        double c = (double)(mm_now() - t0) / (double)transitions;
        best[on] = c < best[on] ? c : best[on];
        trace_fini();
    }
    printf("bench%s: p2m_set_state, %llu transitions a round, best of 7: trace off %.1f "
           "cycles, on %.1f cycles per transition (on - off: %+.1f)\n",
#ifdef TRACE_NO_HOOK
           " (hook compiled out)",
#else
           "",
#endif
           (unsigned long long)transitions, best[0], best[1], best[1] - best[0]);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--selftest"))
        return selftest(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "--bench"))
        return bench(strtoull(argv[2], NULL, 10));
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: replay LOG | replay --selftest DIR | replay --bench TRANSITIONS\n");
        return 2;
    }
    return replay_file(argv[1]);
}

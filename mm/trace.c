/* The per-page transition trace (trace.h, docs/trace.md). */
#include "mm/trace.h"
#include "lib/fmt.h"
#include "lib/log.h"
#include "lib/string.h"
#include "mm/frame.h"
#include "mm/mm_backend.h"

uint32_t trace_mask;

/* The header prints eight counts; edges and map runs keep a state in 4 and 3 bits. */
_Static_assert(P2M_STATE_COUNT == 8, "trace dump format: eight p2m states");

static struct {
    struct trace_entry *ring;
    mfn_t first;
    uint64_t frames, cap;
    uint64_t head;              /* next slot */
    uint64_t total;             /* entries written, in all */
    uint64_t tick_hz;
    uint64_t rec[TRACE_OWNERS]; /* entries written per owner (last slot: the rest) */
} tr;

int trace_init(uint32_t mask, uint32_t nframes, uint64_t tsc_hz)
{
    trace_fini();
    if (!mask)
        return 0;
    if (!nframes)
        nframes = TRACE_FRAMES_DEFAULT;
    if (nframes > TRACE_FRAMES_MAX)
        nframes = TRACE_FRAMES_MAX;
    mfn_t m = frame_alloc_contig(nframes, 1, FS_HV, 0);
    if (m == MFN_INVALID) {
        pr_err(LS_MM, "trace: no %u contiguous frames for the ring: tracing is off", nframes);
        return -1;
    }
    tr.first = m;
    tr.frames = nframes;
    tr.ring = mm_phys_to_virt(m << PAGE_SHIFT);
    tr.cap = nframes * (PAGE_SIZE / sizeof(struct trace_entry));
    tr.tick_hz = tsc_hz >> TRACE_TSHIFT;
    trace_mask = (mask & TRACE_MASK_ALL) | 1u;
    char causes[64];
    trace_mask_text(trace_mask, causes, sizeof(causes));
    pr_info(LS_MM, "trace: p2m transitions of causes %s into a ring of %llu entries (%u "
                   "frames); dumped at VM stop and by the console's trace",
            causes, (unsigned long long)tr.cap, nframes);
    return 0;
}

void trace_fini(void)
{
    trace_mask = 0;
    if (tr.ring)
        frame_free_contig(tr.first, tr.frames);
    memset(&tr, 0, sizeof(tr));
}

void trace_record(const struct p2m *p, uint64_t gfn, unsigned from, unsigned to)
{
    unsigned c = p->tcause < TC_COUNT ? p->tcause : TC_OTHER;
    if (!(trace_mask & (1u << c)))
        return;
    struct trace_entry *e = &tr.ring[tr.head];
    e->t = (uint32_t)(mm_now() >> TRACE_TSHIFT);
    e->gfn = (uint32_t)gfn;
    e->edge = (uint8_t)(from << 4 | to);
    e->cause = (uint8_t)c;
    e->owner = p->owner;
    e->seq = (uint32_t)tr.total;
    tr.total++;
    tr.rec[p->owner < TRACE_OWNERS ? p->owner : TRACE_OWNERS - 1]++;
    if (++tr.head == tr.cap)
        tr.head = 0;
}

void trace_get_stats(struct trace_stats *s)
{
    s->mask = trace_mask;
    s->capacity = tr.cap;
    s->recorded = tr.total;
    s->dropped = tr.total > tr.cap ? tr.total - tr.cap : 0;
}

void trace_mask_text(uint32_t mask, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = 0;
    if ((mask & TRACE_MASK_ALL) == TRACE_MASK_ALL) {
        fmt_snprintf(buf, cap, "all");
        return;
    }
    for (unsigned c = 1; c < TC_COUNT; c++)
        if (mask & (1u << c))
            n += (size_t)fmt_snprintf(buf + n, n < cap ? cap - n : 0, "%s%s", n ? "," : "",
                                      trace_cause_name(c));
    if (!n)
        fmt_snprintf(buf, cap, "none");
}

/* ---- encodings ---- */

uint32_t trace_crc32(uint32_t crc, const void *data, size_t n)
{
    /* CRC-32 (IEEE 802.3, reflected), bit by bit: the dump is not a hot path. */
    const uint8_t *b = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= b[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1)));
    }
    return ~crc;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t trace_base64(const void *data, size_t n, char *out)
{
    const uint8_t *b = data;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)b[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)b[i + 1] << 8;
        if (i + 2 < n)
            v |= b[i + 2];
        out[o++] = b64[v >> 18 & 63];
        out[o++] = b64[v >> 12 & 63];
        out[o++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? b64[v & 63] : '=';
    }
    out[o] = 0;
    return o;
}

static int b64_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

long trace_unbase64(const char *s, size_t len, uint8_t *out, size_t cap)
{
    if (len % 4)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            if (s[i + k] == '=' && i + 4 == len && k >= 2) {
                v[k] = 0;
                pad++;
            } else if (pad || (v[k] = b64_val(s[i + k])) < 0) {
                return -1;
            }
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
                     (uint32_t)v[3];
        for (int k = 0; k < 3 - pad; k++) {
            if (o == cap)
                return -1;
            out[o++] = (uint8_t)(w >> (16 - 8 * k));
        }
    }
    return (long)o;
}

/* ---- the dump ---- */

static void emit_log(const char *line, size_t n, void *ctx)
{
    (void)ctx;
    log_sink_write(line, n);
}

struct dumper {
    trace_emit_fn emit;
    void *ctx;
    const char *vm;
    char kind;             /* 'E' entries, 'M' final map */
    uint8_t buf[TRACE_LINE_BYTES];
    unsigned fill;
    uint64_t lines[2];     /* E and M lines written */
    uint32_t crc;          /* over every decoded byte of the dump, in order */
};

static void dump_flush(struct dumper *d)
{
    if (!d->fill)
        return;
    char line[64 + TRACE_LINE_BYTES / 3 * 4 + 16];
    uint64_t *nl = &d->lines[d->kind == 'M'];
    int n = fmt_snprintf(line, sizeof(line), "@hvtrace %c %s %llu ", d->kind, d->vm,
                         (unsigned long long)*nl);
    n += (int)trace_base64(d->buf, d->fill, line + n);
    n += fmt_snprintf(line + n, sizeof(line) - (size_t)n, " %08x\n",
                      trace_crc32(0, d->buf, d->fill));
    d->emit(line, (size_t)n, d->ctx);
    d->crc = trace_crc32(d->crc, d->buf, d->fill);
    (*nl)++;
    d->fill = 0;
}

static void dump_bytes(struct dumper *d, const void *data, unsigned n)
{
    const uint8_t *b = data;
    for (unsigned i = 0; i < n; i++) {
        d->buf[d->fill++] = b[i];
        if (d->fill == TRACE_LINE_BYTES)
            dump_flush(d);
    }
}

/* One run of the final map: len GFNs in state s, as a LEB128 varint of
 * len << 3 | s. */
static void dump_run(struct dumper *d, uint64_t len, unsigned s)
{
    uint64_t v = len << 3 | s;
    do {
        uint8_t b = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            b |= 0x80;
        dump_bytes(d, &b, 1);
    } while (v);
}

uint64_t trace_dump(struct p2m *p, const char *why, trace_emit_fn emit, void *ctx)
{
    if (!tr.ring || !p->map)
        return 0;
    uint64_t t0 = mm_now();
    struct dumper d = { .emit = emit ? emit : emit_log, .ctx = ctx, .vm = p->name };
    uint64_t held = tr.total < tr.cap ? tr.total : tr.cap;
    uint64_t start = tr.total < tr.cap ? 0 : tr.head; /* the oldest entry */
    uint64_t n = 0;
    for (uint64_t i = 0; i < held; i++)
        n += tr.ring[(start + i) % tr.cap].owner == p->owner;
    uint64_t rec = tr.rec[p->owner < TRACE_OWNERS ? p->owner : TRACE_OWNERS - 1];
    char causes[64], line[400];
    trace_mask_text(trace_mask, causes, sizeof(causes));
    int len = fmt_snprintf(
        line, sizeof(line),
        "@hvtrace H v=%d vm=%s owner=%u why=%s ngfn=%llu mask=%s tick_hz=%llu recorded=%llu "
        "entries=%llu dropped=%llu counts=%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu\n",
        TRACE_VERSION, p->name, p->owner, why, (unsigned long long)p->ngfn, causes,
        (unsigned long long)tr.tick_hz, (unsigned long long)rec, (unsigned long long)n,
        (unsigned long long)(rec - n), (unsigned long long)p->count[0],
        (unsigned long long)p->count[1], (unsigned long long)p->count[2],
        (unsigned long long)p->count[3], (unsigned long long)p->count[4],
        (unsigned long long)p->count[5], (unsigned long long)p->count[6],
        (unsigned long long)p->count[7]);
    d.emit(line, (size_t)len, d.ctx);
    d.kind = 'E';
    for (uint64_t i = 0; i < held; i++) {
        const struct trace_entry *e = &tr.ring[(start + i) % tr.cap];
        if (e->owner == p->owner)
            dump_bytes(&d, e, sizeof(*e));
    }
    dump_flush(&d);
    /* The final state of every GFN, run-length coded; regions of the map
     * never touched are one run of unpopulated. */
    d.kind = 'M';
    uint64_t run = 0;
    unsigned cur = P2M_UNPOPULATED;
    for (uint64_t gfn = 0; gfn < p->ngfn;) {
        uint64_t next = p2m_next_touched(p, gfn);
        if (next > gfn) {
            if (cur != P2M_UNPOPULATED) {
                dump_run(&d, run, cur);
                run = 0;
                cur = P2M_UNPOPULATED;
            }
            run += next - gfn;
            gfn = next;
            continue;
        }
        unsigned s = p2m_peek(p, gfn)->state;
        if (s != cur) {
            if (run)
                dump_run(&d, run, cur);
            run = 0;
            cur = s;
        }
        run++;
        gfn++;
    }
    if (run)
        dump_run(&d, run, cur);
    dump_flush(&d);
    len = fmt_snprintf(line, sizeof(line), "@hvtrace Z %s elines=%llu mlines=%llu crc=%08x\n",
                       p->name, (unsigned long long)d.lines[0], (unsigned long long)d.lines[1],
                       d.crc);
    d.emit(line, (size_t)len, d.ctx);
    if (!emit && tr.tick_hz)
        pr_info(LS_MM, "vm %s: trace: %llu entries and the final map dumped in %llu lines "
                       "(%llu ms)", p->name, (unsigned long long)n,
                (unsigned long long)(d.lines[0] + d.lines[1] + 2),
                (unsigned long long)((mm_now() - t0) / ((tr.tick_hz << TRACE_TSHIFT) / 1000 + 1)));
    return n;
}

/* The per-page transition trace (docs/trace.md): a ring of p2m state
 * changes (time, VM, GFN, from, to, cause) in frames the hypervisor owns,
 * filled by p2m_set_state when hv.cfg's trace mask selects the cause, and
 * dumped on the serial log as base64 lines (at VM stop, on the console's
 * `trace`) together with the VM's final p2m state, so that a host tool
 * (tests/sim/replay.c) can replay it against mm/.
 *
 * The cause is a per-p2m context (p2m.tcause) set by each mechanism's
 * entry point (trace_cause_enter / trace_cause_leave), not a parameter
 * threaded through every path: a transition takes the cause of the
 * innermost mechanism running on that VM. With tracing off the whole cost
 * is those byte stores and one predicted-not-taken branch in
 * p2m_set_state. */
#ifndef MM_TRACE_H
#define MM_TRACE_H
#include <stddef.h>
#include <stdint.h>

#include "mm/p2m.h"

/* Causes, as recorded (4 bits). TC_OTHER: no mechanism said (a path
 * without a marker); always recorded when tracing is on, so that nothing
 * is lost silently. */
enum trace_cause {
    TC_OTHER = 0,
    TC_FAULT,   /* p2m_fault: demand-zero, refill, decompression, copy-on-write */
    TC_RECLAIM, /* p2m_reclaim: zero and same-filled pages, compression */
    TC_SHARE,   /* the share scanner and share reclaim (p2m_share_*) */
    TC_SWAP,    /* swap-out, clean drop, pool write-back, swap-in */
    TC_BALLOON, /* balloon inflate and deflate */
    TC_LOAD,    /* the hypervisor's own access (loader, devices), MMIO set-up */
    TC_COUNT
};
#define TRACE_MASK_ALL (((1u << TC_COUNT) - 1) & ~1u)
#define TRACE_FRAMES_DEFAULT 64u  /* 256 KiB: 16384 entries */
#define TRACE_FRAMES_MAX 65536u
#define TRACE_TSHIFT 12           /* entry time unit: 4096 TSC ticks */
#define TRACE_VERSION 1
#define TRACE_LINE_BYTES 192      /* decoded bytes per dump line (12 entries) */
#define TRACE_OWNERS 64

/* One entry, 16 bytes, little-endian as stored and as dumped. */
struct trace_entry {
    uint32_t t;     /* mm_now() >> TRACE_TSHIFT, low 32 bits (the decoder unwraps) */
    uint32_t gfn;
    uint8_t edge;   /* from << 4 | to (enum p2m_state) */
    uint8_t cause;  /* enum trace_cause */
    uint16_t owner; /* the p2m's owner id (VM id + 1) */
    uint32_t seq;   /* machine-wide entry number, low 32 bits */
};
_Static_assert(sizeof(struct trace_entry) == 16, "trace entry size");

static inline const char *trace_cause_name(unsigned c)
{
    static const char *const n[TC_COUNT] = { "other", "fault", "reclaim", "share",
                                             "swap",  "balloon", "load" };
    return c < TC_COUNT ? n[c] : "?";
}

/* The mask bit of a cause name of len bytes ("fault", ...), "all" for
 * every cause, 0 if unknown. */
static inline uint32_t trace_mask_bit(const char *s, size_t len)
{
    if (len == 3 && s[0] == 'a' && s[1] == 'l' && s[2] == 'l')
        return TRACE_MASK_ALL;
    for (unsigned c = 1; c < TC_COUNT; c++) {
        const char *n = trace_cause_name(c);
        size_t i = 0;
        while (i < len && n[i] && n[i] == s[i])
            i++;
        if (i == len && !n[i])
            return 1u << c;
    }
    return 0;
}

/* Non-zero while tracing: the mask of recorded causes (TC_OTHER's bit
 * included). Read by p2m_set_state on every transition. */
extern uint32_t trace_mask __attribute__((visibility("hidden"))); /* no GOT load */

/* Tracing with mask (TRACE_MASK_ALL bits) into a ring of nframes frames;
 * tick_hz: TSC ticks per second (for the dump header). 0, or -1 when the
 * frames cannot be had (tracing stays off; said on the log). */
int trace_init(uint32_t mask, uint32_t nframes, uint64_t tsc_hz);
/* Off, ring freed (tests). */
void trace_fini(void);

/* The slow half of the hook in p2m_set_state. */
void trace_record(const struct p2m *p, uint64_t gfn, unsigned from, unsigned to);
static inline void trace_transition(const struct p2m *p, uint64_t gfn, unsigned from,
                                    unsigned to)
{
#ifndef TRACE_NO_HOOK /* the baseline of make bench-trace: the hook compiled out */
    if (__builtin_expect(trace_mask != 0, 0))
        trace_record(p, gfn, from, to);
#endif
}

/* A mechanism's entry point: transitions of p until the matching leave
 * carry cause c. Returns what to restore. */
static inline uint8_t trace_cause_enter(struct p2m *p, enum trace_cause c)
{
    uint8_t old = p->tcause;
    p->tcause = (uint8_t)c;
    return old;
}
static inline void trace_cause_leave(struct p2m *p, uint8_t old)
{
    p->tcause = old;
}

/* Where dump lines go (each ends in '\n'): the log sink by default. */
typedef void (*trace_emit_fn)(const char *line, size_t n, void *ctx);
/* Dumps p's entries still in the ring and its final p2m state (format in
 * docs/trace.md); why: "stop", "console". emit NULL: the serial log.
 * Returns the number of entries dumped. */
uint64_t trace_dump(struct p2m *p, const char *why, trace_emit_fn emit, void *ctx);

struct trace_stats {
    uint32_t mask;
    uint64_t capacity;  /* entries the ring holds */
    uint64_t recorded;  /* entries written, in all */
    uint64_t dropped;   /* of them overwritten */
};
void trace_get_stats(struct trace_stats *s);
/* "all" or the cause names joined by commas. */
void trace_mask_text(uint32_t mask, char *buf, size_t cap);

/* The dump's encodings, shared with the host decoder (tests/sim/replay.c). */
uint32_t trace_crc32(uint32_t crc, const void *data, size_t n);
/* Base64 (RFC 4648, with padding) of n bytes into out (4 * ceil(n / 3) + 1
 * bytes); returns the length written (NUL not counted). */
size_t trace_base64(const void *data, size_t n, char *out);
/* Decodes len characters of base64; returns the byte count, or -1 on a
 * character that is not base64 or a length that is not a multiple of 4. */
long trace_unbase64(const char *s, size_t len, uint8_t *out, size_t cap);
#endif

/* libFuzzer target: the balloon hypercalls (mm/balloon.c hc_dispatch and
 * the p2m balloon transitions) from hostile guests, interleaved with guest
 * accesses, reclaim, sweeps and the share scanner on the simulator's
 * machine model (tests/sim/model.h), where every guest read is checked
 * against what the guest last wrote.
 *
 * Input: two bytes of set-up (machine size, VM count, limit, salts), then
 * operations read as a byte stream (an exhausted input reads as zeros).
 * A hypercall takes its function, CPL, registers and the GFN list it
 * writes into a guest page from the input. Each call is checked against a
 * reference computed independently before it: the result and registers,
 * the counters, "nothing changed" on every error (the whole p2m map and
 * its statistics), and on success every listed GFN in its new state with
 * what it held freed. A ballooned page's content is given up: the model
 * expects a zero page there from then on. Any violation aborts. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "mm/balloon.h"
#include "mm/console.h"
#include "mm/ept.h"
#include "mm/mm.h"
#include "mm/share.h"
#include "mm/swap.h"
#include "tests/sim/model.h"

#define NGFN 256
#define NMMIO 2          /* the last GFNs of every VM are a device region */
#define NRAM (NGFN - NMMIO)
#define FULL_EVERY 32    /* operations between whole-machine checks */

static struct balloon_stats bs[SIM_MAX_VMS];

/* ---- the input as a stream ----------------------------------------------------- */

/* The input, then (libFuzzer starts from inputs of a few bytes and grows
 * them slowly, and every input pays for a whole machine's set-up) a tail
 * of pseudo-random bytes seeded from the input, so that even a short
 * input is a program of a few hundred operations. Deterministic: an input
 * replays exactly. */
#define STREAM_MIN 1536

static const uint8_t *in;
static size_t in_len, in_pos;
static uint64_t tail;

static uint8_t next8(void)
{
    if (in_pos < in_len)
        return in[in_pos++];
    in_pos++;
    tail ^= tail << 13;
    tail ^= tail >> 7;
    tail ^= tail << 17;
    return (uint8_t)(tail >> 24);
}

static uint16_t next16(void)
{
    uint16_t lo = next8();
    return (uint16_t)(lo | next8() << 8);
}

/* One console line from the input: a well-formed command now and then
 * (so that targets do move), otherwise bytes of any value. */
static void console_line(struct sim_vm *v)
{
    static const char *const cmds[] = { "vms", "stats", "policy off", "policy on", "help",
                                        "balloon", "balloon a", "balloon a b c d" };
    char buf[96];
    uint8_t kind = next8();
    if (kind < 96)
        snprintf(buf, sizeof(buf), "balloon %s %u%s", v->p2m.name, (unsigned)next16(),
                 kind & 1 ? "p" : kind & 2 ? "K" : "");
    else if (kind < 160)
        snprintf(buf, sizeof(buf), "%s", cmds[kind % 8]);
    else
        buf[0] = 0;
    for (const char *c = buf; *c; c++)
        console_input(*c);
    for (unsigned n = next8() % 24; n; n--)
        console_input(next8()); /* noise: control bytes, backspaces, CR, LF */
    console_input('\n');
}

static bool more(void)
{
    return in_pos < in_len || in_pos < STREAM_MIN;
}

static void stream_start(const uint8_t *data, size_t size, size_t pos)
{
    in = data;
    in_len = size;
    in_pos = pos;
    tail = 0x9e3779b97f4a7c15ULL ^ size;
    for (size_t i = 0; i < size; i++)
        tail = (tail ^ data[i]) * 0x100000001b3ULL;
    if (!tail)
        tail = 1;
}

/* FUZZ_HC_STATS=1: what the calls came back with, at exit (to see that
 * good batches are frequent, not only refusals). */
static uint64_t results[8][8]; /* [function or 7 for unknown][-result] */
static uint64_t touched_ballooned;
static bool trace; /* FUZZ_HC_TRACE=1: every operation on stderr */

static void print_stats(void)
{
    static const char *const fn[] = { "version", "target", "inflate", "deflate", "stats",
                                      "release", "features", "unknown" };
    for (int f = 0; f < 8; f++)
        fprintf(stderr, "fuzz_hc: %-8s ok %llu eperm %llu enosys %llu einval %llu efault %llu "
                        "e2big %llu\n", fn[f],
                (unsigned long long)results[f][0], (unsigned long long)results[f][1],
                (unsigned long long)results[f][2], (unsigned long long)results[f][3],
                (unsigned long long)results[f][4], (unsigned long long)results[f][5]);
    fprintf(stderr, "fuzz_hc: ballooned pages touched again: %llu\n",
            (unsigned long long)touched_ballooned);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (getenv("FUZZ_HC_STATS"))
        atexit(print_stats);
    trace = getenv("FUZZ_HC_TRACE") != NULL;
    return 0;
}

/* ---- failures ---------------------------------------------------------------------- */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz_hc: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

static void fail_if_violated(void)
{
    if (sim->c.violations)
        die("invariant violated (see above)");
}

/* An unpopulated GFN becomes a device region through the p2m. The guest
 * never accesses it (the model would call the refused fault a
 * violation); the hypercalls may name it. */
static void make_mmio(struct p2m *p, uint64_t gfn)
{
    if (p2m_set_mmio(p, gfn))
        die("gfn %#llx cannot be made MMIO at set-up", (unsigned long long)gfn);
}

/* Balloon-specific invariants the model does not know: a ballooned GFN is
 * expected to read as zero (generation 0), is not mapped, and reads as
 * zero through p2m_read_page; MMIO GFNs stay MMIO. */
static void check_balloon(int vi)
{
    static uint64_t buf[512];
    struct sim_vm *v = &sim->vm[vi];
    struct p2m *p = &v->p2m;
    uint64_t ballooned = 0;
    for (uint64_t g = 0; g < v->ngfn; g++) {
        const struct p2m_entry *e = p2m_peek(p, g);
        if (g >= NRAM && e->state != P2M_MMIO)
            die("%s gfn %#llx: the MMIO GFN became %s", p->name, (unsigned long long)g,
                p2m_state_name(e->state));
        if (e->flags & P2M_F_MARK)
            die("%s gfn %#llx: batch mark left behind", p->name, (unsigned long long)g);
        if (e->state != P2M_BALLOONED)
            continue;
        ballooned++;
        if (v->gen[g])
            die("%s gfn %#llx: ballooned but the model expects generation %llu", p->name,
                (unsigned long long)g, (unsigned long long)v->gen[g]);
        uint64_t *l = pt_entry(&pt_fmt_ept, p->ept_root, g << PAGE_SHIFT, PT_LEVEL_4K, false);
        if (l && (*l & EPT_RWX))
            die("%s gfn %#llx: ballooned but mapped (%#llx)", p->name, (unsigned long long)g,
                (unsigned long long)*l);
        memset(buf, 0x5a, sizeof(buf));
        if (p2m_read_page(p, g, buf))
            die("%s gfn %#llx: ballooned page unreadable", p->name, (unsigned long long)g);
        for (int i = 0; i < 512; i++)
            if (buf[i])
                die("%s gfn %#llx: ballooned page does not read as zero", p->name,
                    (unsigned long long)g);
    }
    if (ballooned != p->count[P2M_BALLOONED])
        die("%s: %llu ballooned GFNs counted as %llu", p->name, (unsigned long long)ballooned,
            (unsigned long long)p->count[P2M_BALLOONED]);
}

/* Every swap slot in use is named by a page: a swapped page's run of
 * slots, or a swap-cached resident page's copy. (A leak would only show
 * when the device fills.) */
static void check_swap_slots(void)
{
    struct swap_stats s;
    swap_get_stats(&s);
    if (!s.slot_bytes)
        return;
    uint64_t named = 0;
    for (int i = 0; i < sim->nvms; i++) {
        struct sim_vm *v = &sim->vm[i];
        if (!v->live)
            continue;
        for (uint64_t g = 0; g < v->ngfn; g++) {
            const struct p2m_entry *e = p2m_peek(&v->p2m, g);
            if (e->state == P2M_SWAPPED)
                named += (SWAP_LOC_LEN(e->payload) + s.slot_bytes - 1) / s.slot_bytes;
            else if (e->state == P2M_RESIDENT && (e->flags & P2M_F_SWAPCACHE))
                named += PAGE_SIZE / s.slot_bytes;
        }
    }
    if (named != s.used)
        die("swap: %llu slots in use, pages name %llu", (unsigned long long)s.used,
            (unsigned long long)named);
}

static void check_full(void)
{
    sim_check_full();
    fail_if_violated();
    check_swap_slots();
    for (int i = 0; i < sim->nvms; i++)
        if (sim->vm[i].live)
            check_balloon(i);
}

/* ---- one hypercall ------------------------------------------------------------------- */

static bool holds_something(uint8_t state)
{
    return state == P2M_RESIDENT || state == P2M_SHARED || state == P2M_COMPRESSED ||
           state == P2M_SWAPPED;
}

/* Builds count GFNs (at most HC_BATCH_MAX) for a batch from the input.
 * A good batch (GFNs in the state the call needs) may shrink *rcx to the
 * GFNs it found, so that good batches stay frequent when few qualify. */
static void make_list(struct p2m *p, uint64_t *list, unsigned count, bool inflate,
                      uint64_t *rcx)
{
    uint8_t mode = next8();
    uint64_t start = next16() % NGFN, stride = (uint64_t)(next8() | 1);
    unsigned k = 0;
    switch (mode % 8) {
    case 0: /* explicit GFNs (some beyond RAM), then a run */
        for (; k < count && k < 24; k++)
            list[k] = next16() % (NGFN + 4);
        break;
    case 1: /* a run with an odd stride: distinct for up to NGFN entries */
        break;
    default: /* GFNs in the state the call needs: a good batch */
        for (uint64_t i = 0; i < NGFN && k < count; i++) {
            uint64_t g = (start + i * stride) % NGFN;
            if (g < NRAM && (p2m_peek(p, g)->state == P2M_BALLOONED) != inflate)
                list[k++] = g;
        }
        if (mode & 0x80 && k && k < count)
            *rcx = count = k;
        break;
    }
    for (uint64_t i = 0; k < count; k++, i++)
        list[k] = (start + i * stride) % NGFN;
    /* Now and then one entry spoiled. */
    uint8_t c = next8();
    if ((c & 0xc0) == 0xc0 && count) {
        unsigned at = (unsigned)(next8() % count);
        switch (c & 3) {
        case 0: list[at] = NGFN + (c & 0x70); break;
        case 1: list[at] = list[(at + 1) % count]; break; /* a duplicate */
        case 2: list[at] = UINT64_MAX - (c & 0xf); break;
        case 3: list[at] = ((uint64_t)1 << 32) | list[at]; break; /* truncation bait */
        }
    }
}

/* What hc_dispatch must answer, computed from the state before the call. */
struct expect {
    int64_t rax;
    uint64_t rbx, rcx;
    bool count_call, report;
    struct hc_guest_stats guest;
};

static bool gpa_ok(struct p2m *p, uint64_t gpa, uint64_t *page)
{
    if (gpa & (PAGE_SIZE - 1) || (gpa >> PAGE_SHIFT) >= p->ngfn)
        return false;
    return p2m_read_page(p, gpa >> PAGE_SHIFT, page) == 0;
}

static struct expect reference(struct p2m *p, struct balloon_stats *b, unsigned cpl,
                               const struct hc_regs *r, uint64_t *page)
{
    struct expect x = { .rax = HC_OK, .rbx = r->rbx, .rcx = r->rcx, .guest = b->guest };
    x.count_call = r->rax < HC_FUNCTION_COUNT;
    if (cpl) {
        x.rax = HC_EPERM;
        return x;
    }
    switch (r->rax) {
    case HC_VERSION:
        x.rbx = HC_ABI_VERSION;
        x.rcx = HC_FEATURES;
        return x;
    case HC_BALLOON_TARGET:
        x.rbx = p->bl.target;
        x.rcx = p->count[P2M_BALLOONED];
        return x;
    case HC_BALLOON_INFLATE:
    case HC_BALLOON_DEFLATE: {
        bool inflate = r->rax == HC_BALLOON_INFLATE;
        if (!r->rcx || r->rcx > HC_BATCH_MAX) {
            x.rax = HC_E2BIG;
            return x;
        }
        if (!gpa_ok(p, r->rbx, page)) {
            x.rax = HC_EFAULT;
            return x;
        }
        /* Refused: outside RAM, MMIO, twice. Already in the state
         * asked for: counted in RCX, left alone. */
        static uint8_t seen[NGFN];
        memset(seen, 0, sizeof(seen));
        uint64_t noop = 0;
        for (uint64_t i = 0; i < r->rcx; i++) {
            uint64_t g = page[i];
            if (g >= p->ngfn || p2m_peek(p, g)->state == P2M_MMIO || seen[g]) {
                x.rax = HC_EINVAL;
                x.rbx = i;
                return x;
            }
            seen[g] = 1;
            noop += (p2m_peek(p, g)->state == P2M_BALLOONED) == inflate;
        }
        x.rbx = r->rcx;
        x.rcx = noop;
        return x;
    }
    case HC_BALLOON_RELEASE: {
        uint64_t g = r->rbx < p->ngfn ? r->rbx : p->ngfn, n = 0;
        uint64_t end = p->ngfn - g > HC_RELEASE_SCAN ? g + HC_RELEASE_SCAN : p->ngfn;
        for (; g < end; g++)
            n += p2m_peek(p, g)->state == P2M_BALLOONED;
        x.rbx = end;
        x.rcx = n;
        return x;
    }
    case HC_GUEST_FEATURES:
        x.rbx = r->rbx & HC_GUEST_KNOWN;
        x.rcx = HC_FEATURES;
        return x;
    case HC_REPORT_STATS: {
        if (!gpa_ok(p, r->rbx, page)) {
            x.rax = HC_EFAULT;
            return x;
        }
        struct hc_guest_stats g;
        memcpy(&g, page, sizeof(g));
        uint64_t size = g.size < sizeof(g) ? g.size : sizeof(g);
        memset((uint8_t *)&g + size, 0, sizeof(g) - size);
        g.size = size;
        x.guest = g;
        x.report = true;
        return x;
    }
    default:
        x.rax = HC_ENOSYS;
        return x;
    }
}

static void hypercall(int vi)
{
    static uint64_t list[HC_BATCH_MAX], page[512], saved[512];
    static struct p2m_entry map0[NGFN];
    struct sim_vm *v = &sim->vm[vi];
    struct p2m *p = &v->p2m;
    struct balloon_stats *b = &bs[vi];

    /* Function and privilege. */
    uint8_t f = next8();
    static const uint64_t fns[8] = { HC_VERSION, HC_BALLOON_TARGET, HC_BALLOON_INFLATE,
                                     HC_BALLOON_INFLATE, HC_BALLOON_DEFLATE,
                                     HC_BALLOON_DEFLATE, HC_REPORT_STATS, 0 };
    uint64_t fn = fns[f & 7];
    if ((f & 7) == 6 && (f & 0x80))
        fn = f & 0x40 ? HC_BALLOON_RELEASE : HC_GUEST_FEATURES;
    if ((f & 7) == 7)
        fn = f & 0x80 ? UINT64_MAX - next8() : HC_FUNCTION_COUNT + next8();
    unsigned cpl = ((f >> 3) & 7) == 7 ? 1 + (f >> 6) % 3 : 0;

    /* The argument page and the count. */
    uint64_t lg = next16() % (NGFN + 8);
    uint8_t gm = next8();
    uint64_t gpa = lg << PAGE_SHIFT;
    if (gm % 16 == 0)
        gpa += 1 + next8() * 8u; /* unaligned */
    else if (gm % 16 == 1)
        gpa = UINT64_MAX << (gm >> 4); /* far beyond RAM */
    uint16_t c = next16();
    uint64_t count;
    switch (c >> 12) {
    case 0: case 1: case 2: case 3: case 4: case 5: case 6: case 7:
        count = 1 + (c & 0x3f); /* small batches: mostly good ones */
        break;
    case 8: case 9: case 10: case 11:
        count = c % (HC_BATCH_MAX + 40);
        break;
    case 12: count = 0; break;
    case 13: count = HC_BATCH_MAX; break;
    case 14: count = HC_BATCH_MAX + 1 + (c & 0xff); break;
    default: count = (uint64_t)(c & 7) << 32 | (c & 0xff); break; /* truncation bait */
    }

    /* Write the list (or the stats) into the page the way the guest's
     * driver would; the old content comes back afterwards, as the model
     * expects it there. */
    bool wrote = false;
    uint64_t *w = NULL;
    if ((gm & 0x8) == 0 && lg < NRAM && !(gpa & (PAGE_SIZE - 1)) && gpa >> PAGE_SHIFT == lg) {
        w = p2m_gfn_ptr(p, lg, true); /* may be NULL: ballooned, or no frame */
        if (w) {
            memcpy(saved, w, PAGE_SIZE);
            if (fn == HC_REPORT_STATS) {
                /* The structure and a word beyond it. */
                for (int i = 0; i < 9; i++)
                    w[i] = (uint64_t)next8() * 0x0101010101010101ULL ^ (uint64_t)i;
                uint8_t s = next8();
                w[0] = s < 0xf0 ? s : s == 0xff ? UINT64_MAX : 4096;
            } else {
                unsigned n = count <= HC_BATCH_MAX ? (unsigned)count : HC_BATCH_MAX;
                uint64_t fit = count;
                make_list(p, list, n, fn == HC_BALLOON_INFLATE, &fit);
                if (fit < n)
                    count = n = (unsigned)fit;
                memcpy(w, list, n * sizeof(uint64_t));
            }
            wrote = true;
        }
    }
    if (fn == HC_BALLOON_RELEASE && (gm & 1))
        gpa = lg; /* a GFN to start from (an address is one far beyond RAM) */
    else if (fn == HC_GUEST_FEATURES && (gm & 1))
        gpa = next8(); /* bits known and not */
    struct hc_regs r = { .rax = fn, .rbx = gpa, .rcx = count, .rdx = 0xd0d0d0d0d0d0d0d0ULL };
    struct expect x = reference(p, b, cpl, &r, page);
    for (uint64_t g = 0; g < NGFN; g++)
        map0[g] = *p2m_peek(p, g);
    uint64_t count0[P2M_STATE_COUNT];
    memcpy(count0, p->count, sizeof(count0));
    struct p2m_stats st0 = p->st;
    struct balloon_stats b0 = *b;
    uint64_t held = 0;
    if (x.rax == HC_OK && (fn == HC_BALLOON_INFLATE || fn == HC_BALLOON_DEFLATE))
        for (uint64_t i = 0; i < count; i++)
            held += holds_something(p2m_peek(p, page[i])->state);

    hc_dispatch(p, b, cpl, &r);
    results[fn < HC_FUNCTION_COUNT ? fn : 7][-x.rax & 7]++;
    if (trace) {
        fprintf(stderr, "hc %s fn %#llx cpl %u gpa %#llx (%s) count %#llx -> %lld rbx %#llx:",
                p->name, (unsigned long long)fn, cpl, (unsigned long long)gpa,
                wrote ? "written" : "as is", (unsigned long long)count, (long long)r.rax,
                (unsigned long long)r.rbx);
        for (uint64_t i = 0; i < count && i < 16 && x.rax != HC_E2BIG && x.rax != HC_EFAULT; i++)
            fprintf(stderr, " %#llx", (unsigned long long)page[i]);
        fprintf(stderr, "\n");
    }

    /* An inflate may find no frame for the record of a GFN never touched:
     * refused whole (nothing may change but metadata), whatever the batch
     * held. */
    if ((int64_t)r.rax == HC_EAGAIN && fn == HC_BALLOON_INFLATE &&
        (x.rax == HC_OK || x.rax == HC_EINVAL) && r.rbx < count) {
        x.rax = HC_EAGAIN;
        x.rbx = r.rbx;
    }
    if ((int64_t)r.rax != x.rax || r.rbx != x.rbx || r.rcx != x.rcx ||
        r.rdx != 0xd0d0d0d0d0d0d0d0ULL)
        die("%s fn %#llx cpl %u gpa %#llx count %#llx: got rax %lld rbx %#llx rcx %#llx, "
            "want %lld %#llx %#llx",
            p->name, (unsigned long long)fn, cpl, (unsigned long long)gpa,
            (unsigned long long)count, (long long)r.rax, (unsigned long long)r.rbx,
            (unsigned long long)r.rcx, (long long)x.rax, (unsigned long long)x.rbx,
            (unsigned long long)x.rcx);
    /* Counters. */
    for (int i = 0; i < HC_FUNCTION_COUNT; i++)
        if (b->calls[i] != b0.calls[i] + (x.count_call && (uint64_t)i == fn))
            die("%s: calls[%d] %llu after %llu", p->name, i, (unsigned long long)b->calls[i],
                (unsigned long long)b0.calls[i]);
    if (b->rejected != b0.rejected + (x.rax != HC_OK))
        die("%s: rejected %llu after %llu for result %lld", p->name,
            (unsigned long long)b->rejected, (unsigned long long)b0.rejected, (long long)x.rax);
    if (b->stats_reports != b0.stats_reports + x.report ||
        memcmp(&b->guest, &x.guest, sizeof(x.guest)))
        die("%s: guest stats report not as expected", p->name);

    bool batch_ok = x.rax == HC_OK && (fn == HC_BALLOON_INFLATE || fn == HC_BALLOON_DEFLATE);
    bool release_ok = x.rax == HC_OK && fn == HC_BALLOON_RELEASE;
    if (release_ok) {
        /* Every ballooned GFN of the stretch came back; nothing else moved. */
        uint64_t from = gpa < p->ngfn ? gpa : p->ngfn;
        for (uint64_t g = 0; g < NGFN; g++) {
            bool in = g >= from && g < x.rbx && map0[g].state == P2M_BALLOONED;
            if (in && p2m_peek(p, g)->state != P2M_UNPOPULATED)
                die("%s gfn %#llx: %s after a release", p->name, (unsigned long long)g,
                    p2m_state_name(p2m_peek(p, g)->state));
            if (!in && memcmp(&map0[g], p2m_peek(p, g), sizeof(map0[g])))
                die("%s gfn %#llx: changed by a release that had no business there", p->name,
                    (unsigned long long)g);
        }
        if (count0[P2M_BALLOONED] - p->count[P2M_BALLOONED] != x.rcx ||
            p->st.balloon_deflated != st0.balloon_deflated + x.rcx ||
            b->released != b0.released + x.rcx)
            die("%s: release counters wrong", p->name);
    } else if (!batch_ok) {
        /* Nothing changed at all. (Reading a compressed argument page
         * adds to the decompression cycle counters: those may move.) */
        st0.dc_lz4_cycles = p->st.dc_lz4_cycles;
        st0.dc_check_cycles = p->st.dc_check_cycles;
        /* Nor does metadata made or trimmed on the way (map chunks of a
         * refused inflate). */
        st0.map_chunks = p->st.map_chunks;
        st0.map_dirs = p->st.map_dirs;
        st0.ept_tables = p->st.ept_tables;
        st0.waits = p->st.waits;
        bool same_map = true;
        for (uint64_t g = 0; g < NGFN && same_map; g++)
            same_map = !memcmp(&map0[g], p2m_peek(p, g), sizeof(map0[g]));
        if (!same_map || memcmp(count0, p->count, sizeof(count0)) ||
            memcmp(&st0, &p->st, sizeof(st0)))
            die("%s: hypercall fn %#llx answered %lld but changed the p2m", p->name,
                (unsigned long long)fn, (long long)x.rax);
    } else {
        bool inflate = fn == HC_BALLOON_INFLATE;
        enum p2m_state want = inflate ? P2M_BALLOONED : P2M_UNPOPULATED;
        uint64_t moved = count - x.rcx; /* the no-ops are counted apart */
        if ((inflate ? b->noop_inflate - b0.noop_inflate : b->noop_deflate - b0.noop_deflate) !=
            x.rcx)
            die("%s: no-op counter wrong", p->name);
        for (uint64_t i = 0; i < count; i++) {
            uint64_t g = page[i];
            if (!inflate && map0[g].state != P2M_BALLOONED) {
                /* Not ballooned (touched, or never given): left alone. */
                if (memcmp(&map0[g], p2m_peek(p, g), sizeof(map0[g])))
                    die("%s gfn %#llx: not ballooned, but a deflate changed it", p->name,
                        (unsigned long long)g);
                continue;
            }
            if (p2m_peek(p, g)->state != want)
                die("%s gfn %#llx: %s after a good %s", p->name, (unsigned long long)g,
                    p2m_state_name(p2m_peek(p, g)->state), inflate ? "inflate" : "deflate");
            if (inflate)
                v->gen[g] = 0; /* given up: a zero page if ever touched again */
            else if (v->gen[g])
                die("%s gfn %#llx: deflated with generation %llu expected", p->name,
                    (unsigned long long)g, (unsigned long long)v->gen[g]);
        }
        int64_t dballoon = inflate ? (int64_t)moved : -(int64_t)moved;
        if ((int64_t)(p->count[P2M_BALLOONED] - count0[P2M_BALLOONED]) != dballoon ||
            p->st.balloon_inflated != st0.balloon_inflated + (inflate ? moved : 0) ||
            p->st.balloon_deflated != st0.balloon_deflated + (inflate ? 0 : moved) ||
            p->st.balloon_freed != st0.balloon_freed + (inflate ? held : 0))
            die("%s: balloon counters wrong after %s of %llu (freed %llu, want +%llu)",
                p->name, inflate ? "inflate" : "deflate", (unsigned long long)count,
                (unsigned long long)(p->st.balloon_freed - st0.balloon_freed),
                (unsigned long long)held);
        /* Nothing else moved. */
        for (uint64_t g = 0; g < NGFN; g++) {
            bool listed = false;
            for (uint64_t i = 0; i < count && !listed; i++)
                listed = page[i] == g;
            if (!listed && memcmp(&map0[g], p2m_peek(p, g), sizeof(map0[g])))
                die("%s gfn %#llx: changed but not in the batch", p->name,
                    (unsigned long long)g);
        }
    }
    /* The argument page gets its content back unless it was given up. */
    if (wrote) {
        if (p2m_peek(p, lg)->state == P2M_RESIDENT) {
            void *again = p2m_gfn_ptr(p, lg, false);
            if (again != w)
                die("%s gfn %#llx: the argument page moved during the call", p->name,
                    (unsigned long long)lg);
            memcpy(w, saved, PAGE_SIZE);
        } else if (p2m_peek(p, lg)->state != P2M_BALLOONED) {
            die("%s gfn %#llx: argument page became %s", p->name, (unsigned long long)lg,
                p2m_state_name(p2m_peek(p, lg)->state));
        }
    }
    /* Local checks on everything the call touched. */
    if (lg < NGFN)
        sim_check_local(vi, lg);
    if (batch_ok)
        for (uint64_t i = 0; i < count; i++)
            sim_check_local(vi, page[i]);
    if (release_ok)
        for (uint64_t g = gpa < NGFN ? gpa : NGFN; g < NGFN; g++)
            sim_check_local(vi, g);
    fail_if_violated();
}

/* ---- the program ------------------------------------------------------------------ */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    stream_start(data, size, 2);
    uint64_t frames = 256 + (uint64_t)(data[0] % 4) * 128;
    int want_vms = 1 + (data[0] >> 2) % 3;
    uint64_t limit = 40 + (uint64_t)data[1] % 200;
    sim_init(frames);
    log_set_level(LS_CON, LOG_QUIET); /* garbage lines get warnings: not worth printing */
    memset(bs, 0, sizeof(bs));
    int nvm = 0;
    for (int i = 0; i < want_vms; i++) {
        if (sim_add_vm(NGFN, 8, limit, i != 1) >= 0) {
            struct p2m *p = &sim->vm[nvm].p2m;
            p->salt = (data[1] >> (i + 4)) & 1; /* the input picks who shares */
            for (uint64_t g = NRAM; g < NGFN; g++)
                make_mmio(p, g);
            nvm++;
        }
    }
    if (nvm == 0) {
        sim_fini();
        return 0;
    }
    check_full();
    for (unsigned step = 1; more(); step++) {
        uint8_t op = next8();
        int vi = next8() % nvm;
        struct sim_vm *v = &sim->vm[vi];
        if (!v->live)
            continue;
        if (trace)
            fprintf(stderr, "step %u: op %u vm %d\n", step, op % 12, vi);
        switch (op % 12) {
        case 0: case 1: case 2: case 3: {
            /* Guest accesses, biased towards the GFNs batches name. */
            uint64_t g = next16() % NRAM;
            unsigned n = 1 + next8() % 8;
            for (unsigned k = 0; k < n; k++, g = (g + 1) % NRAM) {
                bool was = p2m_peek(&v->p2m, g)->state == P2M_BALLOONED;
                uint64_t t0 = v->p2m.st.balloon_touched, r0 = v->p2m.st.faults[PF_REFILL];
                bool done = sim_access(vi, g, (enum sim_op)((op >> 4) % 3));
                /* A ballooned page touched: one refill, counted as a touch. */
                if (v->p2m.st.balloon_touched != t0 + (done && was) ||
                    (done && was && v->p2m.st.faults[PF_REFILL] != r0 + 1))
                    die("%s gfn %#llx: balloon_touched %llu -> %llu, refills %llu -> %llu "
                        "for an access to a %s page",
                        v->p2m.name, (unsigned long long)g, (unsigned long long)t0,
                        (unsigned long long)v->p2m.st.balloon_touched, (unsigned long long)r0,
                        (unsigned long long)v->p2m.st.faults[PF_REFILL],
                        was ? "ballooned" : "not ballooned");
                if (done) {
                    touched_ballooned += was;
                    sim_check_local(vi, g);
                }
            }
            break;
        }
        case 4: case 5: case 6: case 7:
            hypercall(vi);
            break;
        case 8:
            p2m_reclaim(&v->p2m, 1 + next8() % 64, 1 + next8() * 4u);
            break;
        case 9:
            if (op & 0x80)
                share_reclaim(1 + next8() % 16);
            else
                share_scan(1 + next8() % 128 + (uint64_t)next8() * 4);
            break;
        case 10:
            if (op & 0x80)
                p2m_sweep(&v->p2m);
            else if (op & 0x40)
                balloon_policy_tick(); /* targets move; hypercalls read them */
            else if (op & 0x20)
                console_line(v);
            else
                balloon_set_target(&v->p2m, next16());
            break;
        case 11:
            check_full();
            break;
        }
        fail_if_violated();
        if (step % FULL_EVERY == 0)
            check_full();
    }
    check_full();
    sim_fini();
    return 0;
}

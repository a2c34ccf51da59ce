/* Debug: prints a sample of a VM's guest pages on the log, for building a
 * corpus of real guest memory (tests/rig/corpus.py turns the lines back
 * into a file of pages). One line per page:
 *   [dump] NAME GFN_HEX STATE BASE64(4096 bytes)
 * Pages that read as zero are not worth a line and are not counted. */
#include "mm/dump.h"
#include "lib/fmt.h"
#include "lib/log.h"
#include "mm/frame.h"

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void put_base64(const uint8_t *d, unsigned len)
{
    char out[256];
    unsigned n = 0;
    for (unsigned i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)d[i + 1] << 8;
        if (i + 2 < len)
            v |= d[i + 2];
        out[n++] = b64[(v >> 18) & 63];
        out[n++] = b64[(v >> 12) & 63];
        out[n++] = i + 1 < len ? b64[(v >> 6) & 63] : '=';
        out[n++] = i + 2 < len ? b64[v & 63] : '=';
        if (n + 4 > sizeof(out)) {
            log_sink_write(out, n);
            n = 0;
        }
    }
    log_sink_write(out, n);
}

static bool worth_dumping(const struct p2m *p, uint64_t gfn)
{
    const struct p2m_entry *e = p2m_peek(p, gfn);
    return e->state == P2M_RESIDENT || e->state == P2M_SHARED || e->state == P2M_COMPRESSED ||
           (e->state == P2M_FILLED && e->payload);
}

uint64_t mm_dump_pages(struct p2m *p, uint64_t n)
{
    static uint64_t page[PAGE_SIZE / 8];
    uint64_t candidates = 0, dumped = 0;
    if (!n || !p->map)
        return 0;
    for (uint64_t gfn = p2m_next_touched(p, 0); gfn < p->ngfn;
         gfn = p2m_next_touched(p, gfn + 1))
        candidates += worth_dumping(p, gfn);
    /* Every k-th candidate, spread over the whole of guest RAM; one that
     * reads as zero passes its turn to the next. */
    uint64_t k = candidates > n ? candidates / n : 1, seen = 0, owed = 0;
    for (uint64_t gfn = p2m_next_touched(p, 0); gfn < p->ngfn && dumped < n;
         gfn = p2m_next_touched(p, gfn + 1)) {
        if (!worth_dumping(p, gfn))
            continue;
        if (seen++ % k == 0)
            owed++;
        if (!owed || p2m_read_page(p, gfn, page))
            continue;
        uint64_t any = 0;
        for (unsigned i = 0; i < PAGE_SIZE / 8; i++)
            any |= page[i];
        if (!any)
            continue;
        owed--;
        char head[64];
        int h = fmt_snprintf(head, sizeof(head), "[dump] %s %llx %s ", p->name,
                             (unsigned long long)gfn, p2m_state_name(p2m_peek(p, gfn)->state));
        log_sink_write(head, (size_t)h);
        put_base64((const uint8_t *)page, PAGE_SIZE);
        log_sink_write("\n", 1);
        dumped++;
    }
    pr_info(LS_MM, "vm %s: dumped %llu pages (of %llu non-zero candidates)", p->name,
            (unsigned long long)dumped, (unsigned long long)candidates);
    return dumped;
}

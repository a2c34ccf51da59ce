#include "vmx/ept_dump.h"
#include "lib/fmt.h"
#include "mm/ept.h"
#include "mm/mm_backend.h"

#define EPT_PRESENT 7ULL            /* bits 2:0 */
#define EPT_MT(e) (((e) >> 3) & 7)  /* memory type of a leaf */
#define EPT_ADDR 0x000ffffffffff000ULL

static const char *const level_names[5] = { "", "PTE", "PDE", "PDPTE", "PML4E" };

static unsigned idx(uint64_t gpa, int level)
{
    return (unsigned)(gpa >> (12 + 9 * (level - 1))) & 511;
}

/* Bits maxphyaddr..51: reserved in every entry. */
static uint64_t above_maxphyaddr(const struct ept_walk_caps *c)
{
    unsigned m = c->maxphyaddr && c->maxphyaddr < 52 ? c->maxphyaddr : 52;
    return ((1ULL << 52) - 1) & ~((1ULL << m) - 1);
}

static bool is_leaf(uint64_t e, int level)
{
    return level == 1 || ((level == 2 || level == 3) && (e & EPT_LARGE));
}

const char *ept_entry_misconfig(uint64_t e, int level, const struct ept_walk_caps *c)
{
    if (!(e & EPT_PRESENT))
        return NULL;
    if ((e & (EPT_R | EPT_W)) == EPT_W)
        return "writable but not readable";
    if ((e & EPT_PRESENT) == EPT_X && !c->exec_only)
        return "execute-only, which this processor does not support";
    if (e & above_maxphyaddr(c))
        return "address bits above MAXPHYADDR set";
    if (level == 4 && (e & 0xf8))
        return "reserved bits 7:3 of a PML4E set";
    if (level == 3 && (e & EPT_LARGE) && !c->page_1g)
        return "1 GiB page, which this processor does not support";
    if (level == 2 && (e & EPT_LARGE) && !c->page_2m)
        return "2 MiB page, which this processor does not support";
    if (!is_leaf(e, level)) {
        if (e & 0xf8)
            return "reserved bits 7:3 of a table pointer set";
        return NULL;
    }
    unsigned mt = (unsigned)EPT_MT(e);
    if (mt == 2 || mt == 3 || mt == 7)
        return "reserved memory type";
    if (level == 3 && (e & 0x3ffff000ULL))
        return "reserved bits 29:12 of a 1 GiB page set";
    if (level == 2 && (e & 0x1ff000ULL))
        return "reserved bits 20:12 of a 2 MiB page set";
    return NULL;
}

struct out {
    char *buf;
    size_t len, pos;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
    if (o->pos + 1 >= o->len)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = fmt_vsnprintf(o->buf + o->pos, o->len - o->pos, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->pos += (size_t)n < o->len - o->pos ? (size_t)n : o->len - o->pos - 1;
}

/* Is mfn a frame the allocator holds as a page table? Anything else is
 * not followed. */
static bool table_frame(mfn_t mfn, const char **state)
{
    struct frame_stats fs;
    frame_get_stats(&fs);
    uint64_t nframes = 0;
    for (int s = 0; s < FS_STATE_COUNT; s++)
        nframes += fs.count[s];
    if (mfn >= nframes) {
        *state = "beyond the frame table";
        return false;
    }
    enum frame_state s = (enum frame_state)frame_get(mfn)->state;
    *state = frame_state_name(s);
    return s == FS_PAGETABLE;
}

int ept_format_walk(mfn_t root, uint64_t gpa, const struct ept_walk_caps *c, char *buf,
                    size_t len)
{
    struct out o = { buf, len, 0 };
    if (len)
        buf[0] = '\0';
    put(&o, "EPT walk of guest-physical %#llx (PML4 at %#llx):\n", (unsigned long long)gpa,
        (unsigned long long)(root << PAGE_SHIFT));
    const char *state;
    if (!table_frame(root, &state)) {
        put(&o, "  the PML4 frame is not an EPT table (%s): not read\n", state);
        return 0;
    }
    uint64_t table = root << PAGE_SHIFT;
    for (int l = 4; l >= 1; l--) {
        unsigned i = idx(gpa, l);
        uint64_t e = ((const uint64_t *)mm_phys_to_virt(table))[i];
        put(&o, "  %-5s[%3u] at %#llx = %016llx", level_names[l], i,
            (unsigned long long)(table + 8 * i), (unsigned long long)e);
        const char *bad = ept_entry_misconfig(e, l, c);
        if (bad) {
            put(&o, "  MISCONFIGURED: %s\n", bad);
            return l;
        }
        if (!(e & EPT_PRESENT)) {
            put(&o, "  not present\n");
            return 0;
        }
        if (is_leaf(e, l)) {
            uint64_t size = 1ULL << (12 + 9 * (l - 1));
            uint64_t ma = (e & EPT_ADDR & ~(size - 1)) | (gpa & (size - 1));
            put(&o, "  %s page, %c%c%c, memory type %u: machine address %#llx\n",
                l == 1 ? "4 KiB" : l == 2 ? "2 MiB" : "1 GiB", (e & EPT_R) ? 'r' : '-',
                (e & EPT_W) ? 'w' : '-', (e & EPT_X) ? 'x' : '-', (unsigned)EPT_MT(e),
                (unsigned long long)ma);
            return 0;
        }
        uint64_t next = e & EPT_ADDR;
        if (!table_frame(next >> PAGE_SHIFT, &state)) {
            put(&o, "  next table %#llx is not an EPT table (%s): not read\n",
                (unsigned long long)next, state);
            return 0;
        }
        put(&o, "\n");
        table = next;
    }
    return 0;
}

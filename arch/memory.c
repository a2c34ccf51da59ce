/* From the firmware's memory map to the frame allocator and the host page
 * tables. */
#include "arch/memory.h"
#include "arch/cpu.h"
#include "arch/msr.h"
#include "arch/pt.h"
#include "lib/fmt.h"
#include "lib/log.h"
#include "lib/string.h"
#include "mm/frame.h"
#include "mm/mm_backend.h"

#define LOW_MEMORY_END (1ULL << 20) /* below 1 MiB stays untouched */

static uint64_t ram_top; /* end of the highest RAM-like region */
static mfn_t host_root;

/* Linker-script symbols (linker.ld) bounding the image's sections. */
extern char __image_start[], __text_start[], __text_end[], __rodata_start[],
    __rodata_end[], __data_start[], __data_end[], __image_end[];

static const char *const kind_names[MEM_KIND_COUNT] = {
    [MEM_FREE] = "free",           [MEM_BOOT_SERVICES] = "boot-services",
    [MEM_HV] = "hypervisor",       [MEM_RUNTIME] = "firmware-runtime",
    [MEM_ACPI_RECLAIM] = "acpi",   [MEM_ACPI_NVS] = "acpi-nvs",
    [MEM_RESERVED] = "reserved",   [MEM_BAD] = "bad",
    [MEM_MMIO] = "mmio",           [MEM_PERSISTENT] = "persistent",
};

const char *mem_kind_name(enum mem_kind k)
{
    return (unsigned)k < MEM_KIND_COUNT ? kind_names[k] : "?";
}

static int is_ram(uint32_t k)
{
    return k == MEM_FREE || k == MEM_BOOT_SERVICES || k == MEM_HV ||
           k == MEM_RUNTIME || k == MEM_ACPI_RECLAIM || k == MEM_ACPI_NVS;
}

uint64_t memory_top(void)
{
    return ram_top;
}

void *mm_phys_to_virt(uint64_t pa)
{
    return (void *)pa; /* the direct map is the identity map */
}

void mm_panic(const char *file, int line, const char *msg)
{
    log_raw("\n*** PANIC: %s:%d: %s\n", file, line, msg);
    halt_forever();
}

void memory_print_map(const struct boot_info *bi)
{
    uint64_t bytes[MEM_KIND_COUNT] = { 0 };
    char a[16], b[16];
    pr_info(LS_ARCH, "memory map: %u regions from the firmware", bi->nregions);
    for (uint32_t i = 0; i < bi->nregions; i++) {
        const struct mem_region *r = &bi->region[i];
        bytes[r->kind] += r->pages * PAGE_SIZE;
        pr_debug(LS_ARCH, "  %#014llx-%#014llx %8s %s (efi type %u)",
                 (unsigned long long)r->base,
                 (unsigned long long)(r->base + r->pages * PAGE_SIZE - 1),
                 fmt_size(a, sizeof(a), r->pages * PAGE_SIZE), mem_kind_name(r->kind),
                 r->efi_type);
    }
    uint64_t ram = 0;
    for (int k = 0; k < MEM_KIND_COUNT; k++) {
        if (!bytes[k])
            continue;
        if (is_ram((uint32_t)k))
            ram += bytes[k];
        pr_info(LS_ARCH, "  %-16s %8s", kind_names[k], fmt_size(a, sizeof(a), bytes[k]));
    }
    pr_info(LS_ARCH, "memory map summary: RAM %s, top of RAM %s (%#llx)",
            fmt_size(a, sizeof(a), ram), fmt_size(b, sizeof(b), ram_top),
            (unsigned long long)ram_top);
}

int memory_init(const struct boot_info *bi)
{
    ram_top = 0;
    for (uint32_t i = 0; i < bi->nregions; i++) {
        const struct mem_region *r = &bi->region[i];
        uint64_t end = r->base + r->pages * PAGE_SIZE;
        if (is_ram(r->kind) && end > ram_top)
            ram_top = end;
    }
    uint64_t nframes = ram_top >> PAGE_SHIFT;
    uint64_t table_bytes = (frame_table_bytes(nframes) + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);

    /* The table goes at the top of the largest free region above 1 MiB. */
    const struct mem_region *best = NULL;
    for (uint32_t i = 0; i < bi->nregions; i++) {
        const struct mem_region *r = &bi->region[i];
        if (r->kind == MEM_FREE && r->base >= LOW_MEMORY_END &&
            (!best || r->pages > best->pages))
            best = r;
    }
    if (!best || best->pages * PAGE_SIZE < table_bytes + 64 * PAGE_SIZE) {
        pr_err(LS_MM, "no free region can hold the %llu-byte frame table",
               (unsigned long long)table_bytes);
        return -1;
    }
    uint64_t table_pa = best->base + best->pages * PAGE_SIZE - table_bytes;
    if (frame_init(mm_phys_to_virt(table_pa), nframes))
        return -1;

    for (uint32_t i = 0; i < bi->nregions; i++) {
        const struct mem_region *r = &bi->region[i];
        mfn_t first = r->base >> PAGE_SHIFT;
        uint64_t count = r->pages;
        if (!is_ram(r->kind))
            continue;
        /* Frames below 1 MiB stay with the firmware and legacy devices. */
        if (r->base < LOW_MEMORY_END) {
            uint64_t skip = (LOW_MEMORY_END - r->base) >> PAGE_SHIFT;
            if (skip >= count)
                continue;
            first += skip;
            count -= skip;
        }
        switch (r->kind) {
        case MEM_FREE: {
            uint64_t end = first + count;
            uint64_t tfirst = table_pa >> PAGE_SHIFT;
            if (r == best)
                end = tfirst;
            frame_add_free(first, end - first);
            if (r == best)
                frame_mark(tfirst, table_bytes >> PAGE_SHIFT, FS_HV);
            break;
        }
        case MEM_BOOT_SERVICES:
            frame_mark(first, count, FS_BOOT);
            break;
        case MEM_HV:
            frame_mark(first, count, FS_HV);
            break;
        default:
            break; /* firmware runtime and ACPI: not ours */
        }
    }
    char a[16];
    pr_info(LS_MM, "frame table: %llu frames (%s of RAM address space), %s at %#llx",
            (unsigned long long)nframes, fmt_size(a, sizeof(a), ram_top),
            fmt_size((char[16]){ 0 }, 16, table_bytes), (unsigned long long)table_pa);
    return 0;
}

uint64_t memory_reclaim_boot(const struct boot_info *bi)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < bi->nregions; i++) {
        const struct mem_region *r = &bi->region[i];
        if (r->kind != MEM_BOOT_SERVICES)
            continue;
        for (uint64_t p = 0; p < r->pages; p++) {
            mfn_t m = (r->base >> PAGE_SHIFT) + p;
            if (m < (LOW_MEMORY_END >> PAGE_SHIFT) || frame_get(m)->state != FS_BOOT)
                continue;
            frame_add_free(m, 1);
            n++;
        }
    }
    return n;
}

/* Host paging bits (SDM Vol. 3A 4.5). */
#define PTE_P (1ULL << 0)
#define PTE_RW (1ULL << 1)
#define PTE_NX (1ULL << 63)

static uint64_t nx_bit;

static int map_image_range(const char *start, const char *end, uint64_t flags)
{
    uint64_t s = (uint64_t)start & ~(PAGE_SIZE - 1);
    uint64_t e = ((uint64_t)end + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
    if (e <= s)
        return 0;
    return pt_map(&pt_fmt_host, host_root, s, s, e - s, flags, PT_LEVEL_4K);
}

int paging_init(const struct boot_info *bi)
{
    (void)bi;
    uint32_t a, b, c, d;
    cpuid(0x80000000, 0, &a, &b, &c, &d);
    nx_bit = 0;
    if (a >= 0x80000001) {
        cpuid(0x80000001, 0, &a, &b, &c, &d);
        if (d & (1u << 20))
            nx_bit = PTE_NX;
    }

    host_root = frame_alloc(FS_PAGETABLE, 0);
    if (host_root == MFN_INVALID)
        return -1;
    /* Everything below max(4 GiB, top of RAM): RAM, firmware, MMIO holes.
     * Cacheability comes from the MTRRs (MMIO holes are UC there). */
    uint64_t top = ram_top > (4ULL << 30) ? ram_top : (4ULL << 30);
    top = (top + (1ULL << 30) - 1) & ~((1ULL << 30) - 1);
    if (pt_map(&pt_fmt_host, host_root, 0, 0, top, PTE_P | PTE_RW | nx_bit, PT_LEVEL_2M))
        return -1;
    /* Page 0 unmapped: a NULL dereference faults instead of reading the IVT. */
    uint64_t *e0 = pt_entry(&pt_fmt_host, host_root, 0, PT_LEVEL_4K, true);
    if (!e0)
        return -1;
    *e0 = 0;

    /* The image: all of it read-only and non-executable, then text RX and
     * data RW (linker.ld puts every boundary on a page): nothing is both
     * writable and executable. */
    if (map_image_range(__image_start, __image_end, PTE_P | nx_bit) ||
        map_image_range(__text_start, __text_end, PTE_P) ||
        map_image_range(__data_start, __data_end, PTE_P | PTE_RW | nx_bit))
        return -1;

    if (nx_bit)
        wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_NXE);
    write_cr0(read_cr0() | CR0_WP); /* supervisor writes honour read-only */
    write_cr3(host_root << PAGE_SHIFT);

    struct frame_stats fs;
    frame_get_stats(&fs);
    pr_info(LS_ARCH, "page tables: identity map of %llu GiB with 2M pages, image W^X "
                     "(text %#llx-%#llx RX, rodata R, data RW%s), %llu table frames",
            (unsigned long long)(top >> 30), (unsigned long long)(uint64_t)__text_start,
            (unsigned long long)(uint64_t)__text_end, nx_bit ? "+NX" : ", no NX on this CPU",
            (unsigned long long)fs.count[FS_PAGETABLE]);
    return 0;
}

#include "vmx/linux.h"
#include "lib/fmt.h"
#include "lib/string.h"
#include "vmx/vm.h"

/* Setup header offsets (boot.rst, "The Real-Mode Kernel Header"). */
#define HDR_SETUP_SECTS 0x1f1
#define HDR_SYSSIZE 0x1f4
#define HDR_BOOT_FLAG 0x1fe
#define HDR_JUMP 0x200
#define HDR_MAGIC 0x202
#define HDR_VERSION 0x206
#define HDR_TYPE_OF_LOADER 0x210
#define HDR_LOADFLAGS 0x211
#define HDR_CODE32_START 0x214
#define HDR_RAMDISK_IMAGE 0x218
#define HDR_RAMDISK_SIZE 0x21c
#define HDR_HEAP_END_PTR 0x224
#define HDR_CMD_LINE_PTR 0x228
#define HDR_INITRD_ADDR_MAX 0x22c
#define HDR_KERNEL_ALIGNMENT 0x230
#define HDR_RELOCATABLE 0x234
#define HDR_XLOADFLAGS 0x236
#define HDR_CMDLINE_SIZE 0x238
#define HDR_PREF_ADDRESS 0x258
#define HDR_INIT_SIZE 0x260
/* boot_params fields outside the setup header. */
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE 0x0c4
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_E820_TABLE 0x2d0
#define E820_MAX 128

#define XLF_KERNEL_64 (1u << 0)
#define LOADED_HIGH 0x01
#define CAN_USE_HEAP 0x80
#define E820_RAM 1
#define E820_RESERVED 2
#define MIN_PROTOCOL 0x020c

static uint8_t r8(const uint8_t *k, unsigned off) { return k[off]; }
static uint16_t r16(const uint8_t *k, unsigned off)
{
    return (uint16_t)(k[off] | k[off + 1] << 8);
}
static uint32_t r32(const uint8_t *k, unsigned off)
{
    return (uint32_t)r16(k, off) | (uint32_t)r16(k, off + 2) << 16;
}
static uint64_t r64(const uint8_t *k, unsigned off)
{
    return (uint64_t)r32(k, off) | (uint64_t)r32(k, off + 4) << 32;
}
static void w8(uint8_t *p, unsigned off, uint8_t v) { p[off] = v; }
static void w16(uint8_t *p, unsigned off, uint16_t v) { memcpy(p + off, &v, 2); }
static void w32(uint8_t *p, unsigned off, uint32_t v) { memcpy(p + off, &v, 4); }

#define FAIL(...)                                                            \
    do {                                                                     \
        fmt_snprintf(err, errlen, __VA_ARGS__);                              \
        return -1;                                                           \
    } while (0)

static uint64_t load_address(const uint8_t *k)
{
    uint64_t pref = r64(k, HDR_PREF_ADDRESS);
    return pref ? pref : 0x1000000ULL;
}

int linux_check(const void *kernel, uint64_t size, uint64_t mem_bytes, char *err,
                size_t errlen)
{
    const uint8_t *k = kernel;
    if (size < 0x1000)
        FAIL("not a bzImage: %llu bytes is too small", (unsigned long long)size);
    if (memcmp(k + HDR_MAGIC, "HdrS", 4))
        FAIL("not a bzImage: no 'HdrS' boot header");
    if (r16(k, HDR_BOOT_FLAG) != 0xaa55)
        FAIL("not a bzImage: boot flag is %#x, not 0xaa55", r16(k, HDR_BOOT_FLAG));
    uint16_t ver = r16(k, HDR_VERSION);
    if (ver < MIN_PROTOCOL)
        FAIL("boot protocol %u.%02u is older than 2.12 (no 64-bit entry)", ver >> 8,
             ver & 0xff);
    if (!(r16(k, HDR_XLOADFLAGS) & XLF_KERNEL_64))
        FAIL("kernel has no 64-bit entry point (XLF_KERNEL_64 clear)");
    unsigned setup = r8(k, HDR_SETUP_SECTS) ? r8(k, HDR_SETUP_SECTS) : 4;
    uint64_t pm_off = (uint64_t)(setup + 1) * 512;
    if (pm_off >= size)
        FAIL("setup (%u sectors) is larger than the file", setup);
    /* syssize: the protected-mode part in 16-byte paragraphs (32 bits
     * since protocol 2.04). The build pads the file to exactly setup +
     * syssize * 16; a signed image carries its signature after that, so
     * only a shorter file is wrong: a copy cut short would load, and the
     * guest would die at its entry point. */
    uint64_t declared = pm_off + (uint64_t)r32(k, HDR_SYSSIZE) * 16;
    if (size < declared)
        FAIL("truncated: the file has %llu bytes, its header declares %llu "
             "(setup_sects %u, syssize %#x)",
             (unsigned long long)size, (unsigned long long)declared, setup,
             r32(k, HDR_SYSSIZE));
    uint64_t need = load_address(k) + r32(k, HDR_INIT_SIZE);
    if (need > mem_bytes)
        FAIL("kernel needs %llu MiB of guest RAM to decompress (load address %#llx + "
             "init_size %#x); the VM has %llu MiB",
             (unsigned long long)((need + (1 << 20) - 1) >> 20),
             (unsigned long long)load_address(k), r32(k, HDR_INIT_SIZE),
             (unsigned long long)(mem_bytes >> 20));
    return 0;
}

static void e820_add(uint8_t *bp, unsigned *n, uint64_t addr, uint64_t size, uint32_t type)
{
    uint8_t *e = bp + BP_E820_TABLE + 20 * *n;
    memcpy(e, &addr, 8);
    memcpy(e + 8, &size, 8);
    memcpy(e + 16, &type, 4);
    (*n)++;
}

int linux_load(struct vm *vm, const void *kernel, uint64_t ksize, const void *initrd,
               uint64_t isize, const char *cmdline, struct linux_entry *e, char *err,
               size_t errlen)
{
    const uint8_t *k = kernel;
    if (linux_check(kernel, ksize, vm->mem_bytes, err, errlen))
        return -1;
    unsigned setup = r8(k, HDR_SETUP_SECTS) ? r8(k, HDR_SETUP_SECTS) : 4;
    uint64_t pm_off = (uint64_t)(setup + 1) * 512;
    uint64_t load = load_address(k);
    memset(e, 0, sizeof(*e));
    e->protocol = r16(k, HDR_VERSION);
    e->load_addr = load;

    /* The protected-mode kernel at its preferred address. */
    if (vm_copy_to_guest(vm, load, k + pm_off, ksize - pm_off))
        FAIL("kernel does not fit in guest RAM");

    /* Command line. */
    uint32_t cmax = r32(k, HDR_CMDLINE_SIZE);
    size_t clen = strlen(cmdline);
    if (cmax && clen > cmax)
        FAIL("command line is %zu bytes; the kernel takes at most %u", clen, cmax);
    if (vm_copy_to_guest(vm, LINUX_CMDLINE, cmdline, clen + 1))
        FAIL("no room for the command line");

    /* Initrd: as high as allowed, page aligned, above the kernel's
     * decompression area. */
    if (isize) {
        uint64_t max = (uint64_t)r32(k, HDR_INITRD_ADDR_MAX) + 1;
        if (max > vm->mem_bytes)
            max = vm->mem_bytes;
        uint64_t addr = (max - isize) & ~0xfffULL;
        uint64_t kernel_end = load + r32(k, HDR_INIT_SIZE);
        if (isize > max || addr < kernel_end)
            FAIL("initrd of %llu MiB does not fit above the kernel (%llu MiB of RAM)",
                 (unsigned long long)(isize >> 20), (unsigned long long)(vm->mem_bytes >> 20));
        if (vm_copy_to_guest(vm, addr, initrd, isize))
            FAIL("initrd does not fit in guest RAM");
        e->initrd_addr = addr;
    }

    /* boot_params: zeroed, then the kernel's own setup header, then ours. */
    uint8_t *bp = vm_gpa_ptr(vm, LINUX_BOOT_PARAMS);
    if (!bp)
        FAIL("no guest RAM for boot_params");
    memset(bp, 0, 4096);
    unsigned hdr_end = 0x202 + r8(k, HDR_JUMP + 1);
    if (hdr_end > 0x290 || hdr_end <= HDR_SETUP_SECTS)
        hdr_end = 0x290;
    memcpy(bp + HDR_SETUP_SECTS, k + HDR_SETUP_SECTS, hdr_end - HDR_SETUP_SECTS);
    w8(bp, HDR_TYPE_OF_LOADER, 0xff);
    w8(bp, HDR_LOADFLAGS, (uint8_t)(r8(k, HDR_LOADFLAGS) | LOADED_HIGH | CAN_USE_HEAP));
    w16(bp, HDR_HEAP_END_PTR, 0xe000 - 0x200);
    w32(bp, HDR_CODE32_START, (uint32_t)load);
    w32(bp, HDR_CMD_LINE_PTR, (uint32_t)LINUX_CMDLINE);
    w32(bp, BP_EXT_CMD_LINE_PTR, 0);
    w32(bp, HDR_RAMDISK_IMAGE, (uint32_t)e->initrd_addr);
    w32(bp, HDR_RAMDISK_SIZE, (uint32_t)isize);
    w32(bp, BP_EXT_RAMDISK_IMAGE, (uint32_t)(e->initrd_addr >> 32));
    w32(bp, BP_EXT_RAMDISK_SIZE, (uint32_t)(isize >> 32));

    /* e820: conventional memory below the EBDA, the legacy hole, RAM. */
    unsigned n = 0;
    e820_add(bp, &n, 0, 0x9fc00, E820_RAM);
    e820_add(bp, &n, 0x9fc00, 0x400, E820_RESERVED);
    e820_add(bp, &n, 0xf0000, 0x10000, E820_RESERVED);
    e820_add(bp, &n, 0x100000, vm->mem_bytes - 0x100000, E820_RAM);
    w8(bp, BP_E820_ENTRIES, (uint8_t)n);

    /* GDT: __BOOT_CS = 0x10 (64-bit code), __BOOT_DS = 0x18. */
    uint64_t gdt[4] = { 0, 0, 0x00af9a000000ffffULL, 0x00cf92000000ffffULL };
    if (vm_copy_to_guest(vm, LINUX_GDT, gdt, sizeof(gdt)))
        FAIL("no guest RAM for the GDT");

    /* Identity map of the first 4 GiB with 2 MiB pages (the protocol asks
     * for the kernel, boot_params, command line and initrd to be mapped). */
    uint64_t pml4[512] = { 0 }, pdpt[512] = { 0 };
    pml4[0] = (LINUX_PML4 + 0x1000) | 3;
    for (int i = 0; i < 4; i++)
        pdpt[i] = (LINUX_PML4 + 0x2000 + 0x1000 * (uint64_t)i) | 3;
    if (vm_copy_to_guest(vm, LINUX_PML4, pml4, 4096) ||
        vm_copy_to_guest(vm, LINUX_PML4 + 0x1000, pdpt, 4096))
        FAIL("no guest RAM for page tables");
    for (int i = 0; i < 4; i++) {
        uint64_t *pd = vm_gpa_ptr(vm, LINUX_PML4 + 0x2000 + 0x1000 * (uint64_t)i);
        if (!pd)
            FAIL("no guest RAM for page tables");
        for (uint64_t j = 0; j < 512; j++)
            pd[j] = (((uint64_t)i << 30) + (j << 21)) | 0x83; /* P RW PS */
    }

    e->rip = load + 0x200; /* startup_64 */
    e->rsi = LINUX_BOOT_PARAMS;
    e->rsp = LINUX_STACK;
    e->cr3 = LINUX_PML4;
    e->gdt_base = LINUX_GDT;
    e->gdt_limit = sizeof(gdt) - 1;
    return 0;
}

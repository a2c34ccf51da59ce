/* vmx/linux.c (and vmx/vm_mem.c under it): the Linux boot-protocol loader,
 * run against a host-built struct vm whose guest RAM is a p2m over the
 * backend arena. The free list is scrambled first, so guest pages that are
 * neighbours live in machine frames that are not: a copy that runs over a
 * page boundary without going back through the map lands in the wrong
 * frame and the byte compares catch it. Kernel images are synthesized:
 * a setup header with exactly the fields under test, then a payload whose
 * every byte is a function of its offset. */
#include "tests/host/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mm/p2m.h"
#include "vmx/linux.h"
#include "vmx/vm.h"

#define MiB (1ULL << 20)

/* Setup header offsets (Documentation/arch/x86/boot.rst). */
#define H_SETUP_SECTS 0x1f1
#define H_SYSSIZE 0x1f4
#define H_BOOT_FLAG 0x1fe
#define H_JUMP 0x200
#define H_MAGIC 0x202
#define H_VERSION 0x206
#define H_TYPE_OF_LOADER 0x210
#define H_LOADFLAGS 0x211
#define H_CODE32_START 0x214
#define H_RAMDISK_IMAGE 0x218
#define H_RAMDISK_SIZE 0x21c
#define H_HEAP_END_PTR 0x224
#define H_CMD_LINE_PTR 0x228
#define H_INITRD_ADDR_MAX 0x22c
#define H_KERNEL_ALIGNMENT 0x230
#define H_RELOCATABLE 0x234
#define H_XLOADFLAGS 0x236
#define H_CMDLINE_SIZE 0x238
#define H_PREF_ADDRESS 0x258
#define H_INIT_SIZE 0x260
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE 0x0c4
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_E820_TABLE 0x2d0

/* ==== the VM ================================================================ */

static struct vm vm;
static bool vm_live;

/* Allocates every frame, then frees them in a scrambled order: the free
 * list (LIFO) then hands frames out with a stride of -37 (or the next
 * stride coprime to the frame count). */
static void scramble_free_list(uint64_t nframes)
{
    mfn_t *all = malloc(nframes * sizeof(*all));
    assert_non_null(all);
    uint64_t n = 0;
    for (;;) {
        mfn_t m = frame_alloc(FS_HV, 0);
        if (m == MFN_INVALID)
            break;
        all[n++] = m;
    }
    assert_int_equal(n, nframes);
    uint64_t stride = 37;
    for (;;) {
        uint64_t a = stride, b = n;
        while (b) {
            uint64_t t = a % b;
            a = b;
            b = t;
        }
        if (a == 1)
            break;
        stride++;
    }
    for (uint64_t k = 0; k < n; k++)
        frame_free(all[(k * stride) % n]);
    free(all);
}

/* A VM of mem_bytes guest RAM over an arena of host_frames machine frames
 * (guest pages are populated on first touch, so the arena can be smaller
 * than the guest). */
static void make_vm(uint64_t mem_bytes, uint64_t host_frames)
{
    backend_frames(host_frames, 0, host_frames);
    scramble_free_list(host_frames);
    memset(&vm, 0, sizeof(vm));
    snprintf(vm.name, sizeof(vm.name), "lx");
    vm.mem_bytes = mem_bytes;
    assert_int_equal(p2m_init(&vm.p2m, 1, "lx", mem_bytes >> PAGE_SHIFT,
                              mem_bytes >> PAGE_SHIFT, 0, false),
                     0);
    vm_live = true;
}

static uint8_t *kbuf;
static uint8_t *ibuf;

static int teardown(void **state)
{
    if (vm_live) {
        p2m_destroy(&vm.p2m);
        vm_live = false;
    }
    backend_free();
    free(kbuf);
    free(ibuf);
    kbuf = ibuf = NULL;
    return 0;
}

static uint8_t gbyte(uint64_t gpa)
{
    const uint8_t *p = vm_gpa_ptr(&vm, gpa);
    if (!p)
        fail_msg("guest address %#llx is not RAM", (unsigned long long)gpa);
    return *p;
}

static uint64_t gread(uint64_t gpa, int size)
{
    uint64_t v = 0;
    for (int i = 0; i < size; i++)
        v |= (uint64_t)gbyte(gpa + (uint64_t)i) << (8 * i);
    return v;
}

/* ==== synthesized bzImages ================================================== */

struct kparams {
    uint64_t payload; /* bytes after the setup sectors */
    uint8_t setup_sects;
    uint8_t jump; /* header end = 0x202 + jump */
    uint16_t version;
    uint16_t xloadflags;
    uint8_t loadflags;
    uint64_t pref;
    uint32_t init_size;
    uint32_t cmdline_size;
    uint32_t initrd_max;
};

static const struct kparams KP_DEFAULT = {
    .payload = 3 * 4096 + 123, /* four guest pages, the last partly */
    .setup_sects = 6,
    .jump = 0x66, /* header ends at 0x268 */
    .version = 0x020f,
    .xloadflags = 0x0003, /* XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G */
    .loadflags = 0x01,
    .pref = 0x1000000,
    .init_size = 0x800000,
    .cmdline_size = 2047,
    .initrd_max = 0x7fffffff,
};

static uint64_t ksize;

static uint64_t pm_offset(const struct kparams *kp)
{
    return ((uint64_t)(kp->setup_sects ? kp->setup_sects : 4) + 1) * 512;
}

/* Byte i of the protected-mode payload: no period of 256 or 4096. */
static uint8_t payload_byte(uint64_t i)
{
    return (uint8_t)(i * 131 + 17 + (i >> 8) * 7 + (i >> 12) * 3);
}

static uint8_t initrd_byte(uint64_t i)
{
    return (uint8_t)(0x5a ^ (i * 29) ^ (i >> 10));
}

static void put16(uint8_t *k, unsigned off, uint16_t v)
{
    memcpy(k + off, &v, 2);
}
static void put32(uint8_t *k, unsigned off, uint32_t v)
{
    memcpy(k + off, &v, 4);
}
static void put64(uint8_t *k, unsigned off, uint64_t v)
{
    memcpy(k + off, &v, 8);
}

static uint8_t *make_kernel(const struct kparams *kp)
{
    uint64_t pm = pm_offset(kp);
    ksize = pm + kp->payload;
    free(kbuf);
    kbuf = malloc(ksize);
    assert_non_null(kbuf);
    /* Setup sectors: a nonzero pattern everywhere, then the fields. */
    for (uint64_t i = 0; i < pm && i < ksize; i++)
        kbuf[i] = (uint8_t)(i * 7 + 3) | 1;
    kbuf[H_SETUP_SECTS] = kp->setup_sects;
    /* syssize in 16-byte paragraphs: the file is at least what the header
     * declares (a payload that is not a multiple of 16 has a tail beyond
     * it, as a signed image has its signature). */
    put32(kbuf, H_SYSSIZE, (uint32_t)(kp->payload / 16));
    put16(kbuf, H_BOOT_FLAG, 0xaa55);
    kbuf[H_JUMP] = 0xeb;
    kbuf[H_JUMP + 1] = kp->jump;
    memcpy(kbuf + H_MAGIC, "HdrS", 4);
    put16(kbuf, H_VERSION, kp->version);
    kbuf[H_LOADFLAGS] = kp->loadflags;
    put32(kbuf, H_CODE32_START, 0x100000);
    put32(kbuf, H_INITRD_ADDR_MAX, kp->initrd_max);
    put32(kbuf, H_KERNEL_ALIGNMENT, 0x200000);
    kbuf[H_RELOCATABLE] = 1;
    put16(kbuf, H_XLOADFLAGS, kp->xloadflags);
    put32(kbuf, H_CMDLINE_SIZE, kp->cmdline_size);
    put64(kbuf, H_PREF_ADDRESS, kp->pref);
    put32(kbuf, H_INIT_SIZE, kp->init_size);
    for (uint64_t i = 0; pm + i < ksize; i++)
        kbuf[pm + i] = payload_byte(i);
    return kbuf;
}

static uint8_t *make_initrd(uint64_t n)
{
    free(ibuf);
    ibuf = malloc(n ? n : 1);
    assert_non_null(ibuf);
    for (uint64_t i = 0; i < n; i++)
        ibuf[i] = initrd_byte(i);
    return ibuf;
}

static int check(uint64_t mem, char *err)
{
    err[0] = '\0';
    return linux_check(kbuf, ksize, mem, err, 256);
}

#define ASSERT_CONTAINS(s, sub)                                                          \
    do {                                                                                 \
        if (!strstr((s), (sub)))                                                         \
            fail_msg("\"%s\" does not contain \"%s\"", (s), (sub));                      \
    } while (0)

/* ==== vm_mem ================================================================ */

static void test_vm_mem_access(void **state)
{
    make_vm(8 * MiB, 256);
    assert_null(vm_gpa_ptr(&vm, 8 * MiB));
    assert_null(vm_gpa_ptr(&vm, UINT64_MAX));
    assert_non_null(vm_gpa_ptr(&vm, 8 * MiB - 1));
    /* Neighbouring guest pages are not neighbouring frames. */
    uint8_t *a = vm_gpa_ptr(&vm, 0x10000), *b = vm_gpa_ptr(&vm, 0x11000);
    assert_true(b != a + PAGE_SIZE);
    /* A fresh page reads as zero (the arena is full of 0xa5). */
    for (uint64_t i = 0; i < PAGE_SIZE; i++)
        assert_int_equal(a[i], 0);
    /* A copy over three page boundaries, from an odd offset. */
    uint8_t src[3 * PAGE_SIZE + 100];
    for (size_t i = 0; i < sizeof(src); i++)
        src[i] = payload_byte(i);
    assert_int_equal(vm_copy_to_guest(&vm, 0x20ff3, src, sizeof(src)), 0);
    for (size_t i = 0; i < sizeof(src); i++)
        if (gbyte(0x20ff3 + i) != src[i])
            fail_msg("byte %zu: %#x != %#x", i, gbyte(0x20ff3 + i), src[i]);
    assert_int_equal(gbyte(0x20ff2), 0);
    assert_int_equal(gbyte(0x20ff3 + sizeof(src)), 0);
    /* Up to the last byte of RAM, and not one beyond. */
    assert_int_equal(vm_copy_to_guest(&vm, 8 * MiB - 10, src, 10), 0);
    assert_int_equal(gbyte(8 * MiB - 1), src[9]);
    assert_int_equal(vm_copy_to_guest(&vm, 8 * MiB - 10, src, 11), -1);
    assert_int_equal(vm_copy_to_guest(&vm, 8 * MiB, src, 1), -1);
    assert_int_equal(vm_copy_to_guest(&vm, UINT64_MAX - 4, src, 10), -1);
    assert_int_equal(vm_copy_to_guest(&vm, 0, src, 0), 0);
}

/* ==== rejections ============================================================= */

static void test_check_accepts_default(void **state)
{
    char err[256];
    make_kernel(&KP_DEFAULT);
    assert_int_equal(check(32 * MiB, err), 0);
}

static void test_check_too_small(void **state)
{
    char err[256];
    struct kparams kp = KP_DEFAULT;
    make_kernel(&kp);
    err[0] = '\0';
    assert_int_equal(linux_check(kbuf, 0xfff, 32 * MiB, err, sizeof(err)), -1);
    assert_string_equal(err, "not a bzImage: 4095 bytes is too small");
    assert_int_equal(linux_check(kbuf, 0, 32 * MiB, err, sizeof(err)), -1);
    ASSERT_CONTAINS(err, "too small");
}

static void test_check_no_hdrs(void **state)
{
    char err[256];
    make_kernel(&KP_DEFAULT);
    kbuf[H_MAGIC + 3] = 's';
    assert_int_equal(check(32 * MiB, err), -1);
    ASSERT_CONTAINS(err, "not a bzImage");
    ASSERT_CONTAINS(err, "HdrS");
}

static void test_check_bad_boot_flag(void **state)
{
    char err[256];
    make_kernel(&KP_DEFAULT);
    put16(kbuf, H_BOOT_FLAG, 0x55aa);
    assert_int_equal(check(32 * MiB, err), -1);
    ASSERT_CONTAINS(err, "not a bzImage");
    /* An ELF vmlinux is not a bzImage either. */
    make_kernel(&KP_DEFAULT);
    memcpy(kbuf,
           "\x7f"
           "ELF",
           4);
    put16(kbuf, H_BOOT_FLAG, 0);
    assert_int_equal(check(32 * MiB, err), -1);
    ASSERT_CONTAINS(err, "not a bzImage");
}

static void test_check_protocol_2_11(void **state)
{
    char err[256];
    struct kparams kp = KP_DEFAULT;
    kp.version = 0x020b;
    make_kernel(&kp);
    assert_int_equal(check(32 * MiB, err), -1);
    assert_string_equal(err, "boot protocol 2.11 is older than 2.12 (no 64-bit entry)");
    kp.version = 0x0204;
    make_kernel(&kp);
    assert_int_equal(check(32 * MiB, err), -1);
    ASSERT_CONTAINS(err, "2.04");
    kp.version = 0x020c;
    make_kernel(&kp);
    assert_int_equal(check(32 * MiB, err), 0);
}

static void test_check_no_kernel64(void **state)
{
    char err[256];
    struct kparams kp = KP_DEFAULT;
    kp.xloadflags = 0x0002; /* can be loaded above 4G, but no 64-bit entry */
    make_kernel(&kp);
    assert_int_equal(check(32 * MiB, err), -1);
    ASSERT_CONTAINS(err, "XLF_KERNEL_64");
    kp.xloadflags = 0;
    make_kernel(&kp);
    assert_int_equal(check(32 * MiB, err), -1);
    ASSERT_CONTAINS(err, "XLF_KERNEL_64");
}

static void test_check_setup_beyond_file(void **state)
{
    char err[256];
    struct kparams kp = KP_DEFAULT;
    make_kernel(&kp);          /* 15995 bytes */
    kbuf[H_SETUP_SECTS] = 100; /* 101 * 512 = 51712 */
    assert_int_equal(check(32 * MiB, err), -1);
    assert_string_equal(err, "setup (100 sectors) is larger than the file");
    /* Setup sectors ending exactly at the end of the file: no kernel. */
    kp.payload = 0;
    kp.setup_sects = 31;
    make_kernel(&kp); /* 32 * 512 = 16384 bytes, all setup */
    assert_int_equal(check(32 * MiB, err), -1);
    ASSERT_CONTAINS(err, "larger than the file");
    kp.payload = 1;
    make_kernel(&kp);
    assert_int_equal(check(32 * MiB, err), 0);
}

/* A file shorter than its header declares (setup + syssize paragraphs)
 * is refused, naming both sizes; one as long or longer is taken. */
static void test_check_truncated(void **state)
{
    char err[256], want[256];
    struct kparams kp = KP_DEFAULT;
    kp.payload = 3 * 4096 + 128; /* a whole number of paragraphs */
    make_kernel(&kp);
    uint64_t pm = pm_offset(&kp), declared = pm + kp.payload;
    assert_int_equal(ksize, declared);
    assert_int_equal(check(32 * MiB, err), 0);
    /* One byte short. */
    assert_int_equal(linux_check(kbuf, ksize - 1, 32 * MiB, err, sizeof(err)), -1);
    snprintf(want, sizeof(want),
             "truncated: the file has %llu bytes, its header declares %llu "
             "(setup_sects 6, syssize 0x308)",
             (unsigned long long)(ksize - 1), (unsigned long long)declared);
    assert_string_equal(err, want);
    /* Cut a page in: the header is intact, most of the kernel is not. */
    assert_int_equal(linux_check(kbuf, 4096, 32 * MiB, err, sizeof(err)), -1);
    ASSERT_CONTAINS(err, "truncated: the file has 4096 bytes");
    /* A syssize as large as 32 bits allow: no overflow, refused. */
    put32(kbuf, H_SYSSIZE, 0xffffffffu);
    assert_int_equal(check(32 * MiB, err), -1);
    snprintf(want, sizeof(want), "its header declares %llu (setup_sects 6, syssize 0xffffffff)",
             (unsigned long long)(pm + 0xffffffffULL * 16));
    ASSERT_CONTAINS(err, want);
    /* Bytes after the declared end (a signature): fine. */
    put32(kbuf, H_SYSSIZE, (uint32_t)(kp.payload / 16 - 92));
    assert_int_equal(check(32 * MiB, err), 0);
    /* setup_sects 0 means 4: the declared size counts 5 sectors. */
    kp.setup_sects = 0;
    make_kernel(&kp);
    assert_int_equal(check(32 * MiB, err), 0);
    assert_int_equal(linux_check(kbuf, ksize - 16, 32 * MiB, err, sizeof(err)), -1);
    ASSERT_CONTAINS(err, "(setup_sects 4, syssize 0x308)");
}

/* linux_load refuses a truncated kernel before it writes anything. */
static void test_load_truncated(void **state)
{
    char err[256] = "";
    struct linux_entry e;
    make_vm(32 * MiB, 512);
    struct kparams kp = KP_DEFAULT;
    kp.payload = 3 * 4096 + 128;
    make_kernel(&kp);
    assert_int_equal(
        linux_load(&vm, kbuf, ksize - 4096, NULL, 0, "x", &e, err, sizeof(err)), -1);
    ASSERT_CONTAINS(err, "truncated");
    assert_int_equal(vm.p2m.count[P2M_RESIDENT], 0);
}

static void test_check_ram_too_small(void **state)
{
    char err[256];
    struct kparams kp = KP_DEFAULT;
    kp.init_size = 16 * MiB;
    make_kernel(&kp);
    assert_int_equal(check(24 * MiB, err), -1);
    ASSERT_CONTAINS(err, "needs 32 MiB");
    ASSERT_CONTAINS(err, "load address 0x1000000");
    ASSERT_CONTAINS(err, "init_size 0x1000000");
    ASSERT_CONTAINS(err, "the VM has 24 MiB");
    /* Exactly enough, and one byte short. */
    assert_int_equal(check(32 * MiB, err), 0);
    assert_int_equal(check(32 * MiB - 1, err), -1);
    /* Without pref_address the kernel goes to 16 MiB. */
    kp.pref = 0;
    make_kernel(&kp);
    assert_int_equal(check(32 * MiB - 4096, err), -1);
    ASSERT_CONTAINS(err, "load address 0x1000000");
}

static void test_load_rejects_what_check_rejects(void **state)
{
    char err[256] = "";
    struct linux_entry e;
    make_vm(32 * MiB, 512);
    struct kparams kp = KP_DEFAULT;
    kp.version = 0x020b;
    make_kernel(&kp);
    assert_int_equal(linux_load(&vm, kbuf, ksize, NULL, 0, "", &e, err, sizeof(err)), -1);
    ASSERT_CONTAINS(err, "2.11");
    kp = KP_DEFAULT;
    kp.init_size = 17 * MiB;
    make_kernel(&kp);
    assert_int_equal(linux_load(&vm, kbuf, ksize, NULL, 0, "", &e, err, sizeof(err)), -1);
    ASSERT_CONTAINS(err, "needs 33 MiB");
}

static void test_load_cmdline_too_long(void **state)
{
    char err[256] = "";
    struct linux_entry e;
    make_vm(32 * MiB, 512);
    struct kparams kp = KP_DEFAULT;
    kp.cmdline_size = 32;
    make_kernel(&kp);
    char line[64];
    memset(line, 'c', sizeof(line));
    line[33] = '\0';
    assert_int_equal(linux_load(&vm, kbuf, ksize, NULL, 0, line, &e, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "command line is 33 bytes; the kernel takes at most 32");
    /* cmdline_size excludes the NUL: 32 characters fit. */
    line[32] = '\0';
    assert_int_equal(linux_load(&vm, kbuf, ksize, NULL, 0, line, &e, err, sizeof(err)),
                     0);
    for (int i = 0; i < 32; i++)
        assert_int_equal(gbyte(LINUX_CMDLINE + (uint64_t)i), 'c');
    assert_int_equal(gbyte(LINUX_CMDLINE + 32), 0);
}

static void test_load_initrd_does_not_fit(void **state)
{
    char err[256] = "";
    struct linux_entry e;
    make_vm(32 * MiB, 2600);
    make_kernel(&KP_DEFAULT); /* kernel area 16..24 MiB */
    /* 9 MiB would have to start below 24 MiB. */
    make_initrd(9 * MiB);
    assert_int_equal(
        linux_load(&vm, kbuf, ksize, ibuf, 9 * MiB, "", &e, err, sizeof(err)), -1);
    ASSERT_CONTAINS(err, "initrd of 9 MiB does not fit");
    /* 8 MiB fits exactly: 24..32 MiB. */
    assert_int_equal(
        linux_load(&vm, kbuf, ksize, ibuf, 8 * MiB, "", &e, err, sizeof(err)), 0);
    assert_int_equal(e.initrd_addr, 24 * MiB);
    /* Larger than RAM altogether (must not wrap around). */
    make_initrd(1);
    assert_int_equal(
        linux_load(&vm, kbuf, ksize, ibuf, 40 * MiB, "", &e, err, sizeof(err)), -1);
    ASSERT_CONTAINS(err, "initrd of 40 MiB does not fit");
    /* initrd_addr_max below the kernel's end. */
    struct kparams kp = KP_DEFAULT;
    kp.initrd_max = 0x017fffff; /* 24 MiB - 1 */
    make_kernel(&kp);
    make_initrd(4096);
    assert_int_equal(linux_load(&vm, kbuf, ksize, ibuf, 4096, "", &e, err, sizeof(err)),
                     -1);
    ASSERT_CONTAINS(err, "does not fit");
}

static void test_load_out_of_host_memory(void **state)
{
    char err[256] = "";
    struct linux_entry e;
    /* 64 frames: the p2m map (128 entries per frame) and a few pages. */
    make_vm(32 * MiB, 64);
    struct kparams kp = KP_DEFAULT;
    kp.payload = 200 * 4096;
    make_kernel(&kp);
    assert_int_equal(linux_load(&vm, kbuf, ksize, NULL, 0, "", &e, err, sizeof(err)), -1);
    ASSERT_CONTAINS(err, "kernel does not fit");
}

/* ==== a successful load ===================================================== */

static const char CMDLINE[] = "console=ttyS0,115200 earlyprintk=serial panic=-1 quiet";

struct loaded {
    struct linux_entry e;
    uint64_t isize;
};

static struct loaded load_default(uint64_t mem, uint64_t isize)
{
    char err[256] = "";
    struct loaded l = {.isize = isize};
    make_vm(mem, 2048);
    make_kernel(&KP_DEFAULT);
    make_initrd(isize);
    memset(&l.e, 0x5c, sizeof(l.e));
    int r = linux_load(&vm, kbuf, ksize, isize ? ibuf : NULL, isize, CMDLINE, &l.e, err,
                       sizeof(err));
    if (r)
        fail_msg("linux_load: %s", err);
    return l;
}

static void test_load_kernel_placement(void **state)
{
    struct loaded l = load_default(32 * MiB, 0);
    uint64_t pm = pm_offset(&KP_DEFAULT);
    for (uint64_t i = 0; i < ksize - pm; i++) {
        uint8_t g = gbyte(0x1000000 + i);
        if (g != payload_byte(i))
            fail_msg("kernel byte %llu at %#llx: %#x, want %#x", (unsigned long long)i,
                     (unsigned long long)(0x1000000 + i), g, payload_byte(i));
    }
    /* Nothing before or after it. */
    assert_int_equal(gbyte(0x1000000 - 1), 0);
    assert_int_equal(gbyte(0x1000000 + (ksize - pm)), 0);
    /* Setup sectors are not loaded into low memory (only the header, in
     * boot_params): the real-mode area stays empty. */
    assert_int_equal(gbyte(0x90000), 0);
    assert_int_equal(gbyte(0x10000), 0);

    assert_int_equal(l.e.rip, 0x1000200);
    assert_int_equal(l.e.rsi, LINUX_BOOT_PARAMS);
    assert_int_equal(l.e.rsp, LINUX_STACK);
    assert_int_equal(l.e.cr3, LINUX_PML4);
    assert_int_equal(l.e.gdt_base, LINUX_GDT);
    assert_int_equal(l.e.gdt_limit, 31);
    assert_int_equal(l.e.load_addr, 0x1000000);
    assert_int_equal(l.e.initrd_addr, 0);
    assert_int_equal(l.e.protocol, 0x020f);
}

static void test_load_boot_params(void **state)
{
    load_default(32 * MiB, 0);
    const uint64_t bp = LINUX_BOOT_PARAMS;
    const unsigned hdr_end = 0x202 + KP_DEFAULT.jump; /* 0x268 */
    /* The setup header, copied from the image to its end... */
    for (unsigned off = H_SETUP_SECTS; off < hdr_end; off++) {
        bool ours = off == H_TYPE_OF_LOADER || off == H_LOADFLAGS ||
                    (off >= H_CODE32_START && off < H_CODE32_START + 4) ||
                    (off >= H_RAMDISK_IMAGE && off < H_RAMDISK_SIZE + 4) ||
                    (off >= H_HEAP_END_PTR && off < H_HEAP_END_PTR + 2) ||
                    (off >= H_CMD_LINE_PTR && off < H_CMD_LINE_PTR + 4);
        if (!ours && gbyte(bp + off) != kbuf[off])
            fail_msg("boot_params[%#x] = %#x, image has %#x", off, gbyte(bp + off),
                     kbuf[off]);
    }
    assert_int_equal(gread(bp + H_BOOT_FLAG, 2), 0xaa55);
    assert_int_equal(gread(bp + H_MAGIC, 4), 0x53726448); /* "HdrS" */
    assert_int_equal(gread(bp + H_VERSION, 2), 0x020f);
    assert_int_equal(gread(bp + H_PREF_ADDRESS, 8), 0x1000000);
    assert_int_equal(gread(bp + H_INIT_SIZE, 4), 0x800000);
    /* ...and not beyond it. */
    for (unsigned off = hdr_end; off < 0x290; off++)
        if (gbyte(bp + off))
            fail_msg("boot_params[%#x] = %#x beyond the header end %#x", off,
                     gbyte(bp + off), hdr_end);
    /* Everything before the header is zero but the e820 count. */
    for (unsigned off = 0; off < H_SETUP_SECTS; off++)
        if (off != BP_E820_ENTRIES && gbyte(bp + off))
            fail_msg("boot_params[%#x] = %#x, want 0", off, gbyte(bp + off));
    /* The loader's fields. */
    assert_int_equal(gbyte(bp + H_TYPE_OF_LOADER), 0xff);
    assert_int_equal(gbyte(bp + H_LOADFLAGS), 0x81); /* LOADED_HIGH | CAN_USE_HEAP */
    assert_int_equal(gread(bp + H_CODE32_START, 4), 0x1000000);
    assert_int_equal(gread(bp + H_HEAP_END_PTR, 2), 0xde00);
    assert_int_equal(gread(bp + H_CMD_LINE_PTR, 4), LINUX_CMDLINE);
    assert_int_equal(gread(bp + BP_EXT_CMD_LINE_PTR, 4), 0);
    assert_int_equal(gread(bp + H_RAMDISK_IMAGE, 4), 0);
    assert_int_equal(gread(bp + H_RAMDISK_SIZE, 4), 0);
    /* The command line. */
    for (size_t i = 0; i < sizeof(CMDLINE); i++)
        assert_int_equal(gbyte(LINUX_CMDLINE + i), (uint8_t)CMDLINE[i]);
    /* Past the e820 table, the page is zero. */
    for (unsigned off = BP_E820_TABLE + 4 * 20; off < 4096; off++)
        if (gbyte(bp + off))
            fail_msg("boot_params[%#x] = %#x, want 0", off, gbyte(bp + off));
}

static void test_load_loadflags_kept(void **state)
{
    char err[256] = "";
    struct linux_entry e;
    make_vm(32 * MiB, 512);
    struct kparams kp = KP_DEFAULT;
    kp.loadflags = 0x20; /* QUIET_FLAG from the image, LOADED_HIGH not set */
    make_kernel(&kp);
    assert_int_equal(linux_load(&vm, kbuf, ksize, NULL, 0, "", &e, err, sizeof(err)), 0);
    assert_int_equal(gbyte(LINUX_BOOT_PARAMS + H_LOADFLAGS), 0xa1);
    assert_int_equal(gbyte(LINUX_CMDLINE), 0);
}

static void test_load_initrd(void **state)
{
    const uint64_t isize = MiB + 5;
    struct loaded l = load_default(32 * MiB, isize);
    const uint64_t bp = LINUX_BOOT_PARAMS;
    uint64_t addr = l.e.initrd_addr;
    /* As high as possible, page aligned: (32 MiB - isize) & ~0xfff. */
    assert_int_equal(addr, 0x1eff000);
    assert_int_equal(addr & 0xfff, 0);
    assert_true(addr >= 0x1000000 + 0x800000);
    assert_true(addr + isize <= 32 * MiB);
    assert_int_equal(gread(bp + H_RAMDISK_IMAGE, 4), addr);
    assert_int_equal(gread(bp + H_RAMDISK_SIZE, 4), isize);
    assert_int_equal(gread(bp + BP_EXT_RAMDISK_IMAGE, 4), 0);
    assert_int_equal(gread(bp + BP_EXT_RAMDISK_SIZE, 4), 0);
    for (uint64_t i = 0; i < isize; i++) {
        uint8_t g = gbyte(addr + i);
        if (g != initrd_byte(i))
            fail_msg("initrd byte %llu: %#x, want %#x", (unsigned long long)i, g,
                     initrd_byte(i));
    }
    assert_int_equal(gbyte(addr + isize), 0);
    assert_int_equal(gbyte(addr - 1), 0);
}

static void test_load_initrd_below_addr_max(void **state)
{
    char err[256] = "";
    struct linux_entry e;
    make_vm(64 * MiB, 1024);
    struct kparams kp = KP_DEFAULT;
    kp.initrd_max = 0x01bfffff; /* 28 MiB - 1, below the 64 MiB of RAM */
    make_kernel(&kp);
    const uint64_t isize = 3 * 4096 + 1;
    make_initrd(isize);
    assert_int_equal(linux_load(&vm, kbuf, ksize, ibuf, isize, "x", &e, err, sizeof(err)),
                     0);
    assert_int_equal(e.initrd_addr, (28 * MiB - isize) & ~0xfffULL); /* 0x1bfc000 */
    assert_int_equal(e.initrd_addr, 0x1bfc000);
    assert_true(e.initrd_addr + isize <= 28 * MiB);
    assert_int_equal(gread(LINUX_BOOT_PARAMS + H_RAMDISK_IMAGE, 4), 0x1bfc000);
    assert_int_equal(gread(LINUX_BOOT_PARAMS + H_RAMDISK_SIZE, 4), isize);
    for (uint64_t i = 0; i < isize; i++)
        assert_int_equal(gbyte(e.initrd_addr + i), initrd_byte(i));
}

static void test_load_e820(void **state)
{
    static const struct {
        uint64_t addr, size;
        uint32_t type;
    } want[4] = {
        {0, 0x9fc00, 1},
        {0x9fc00, 0x400, 2},
        {0xf0000, 0x10000, 2},
        {0x100000, 48 * MiB - 0x100000, 1},
    };
    load_default(48 * MiB, 0);
    const uint64_t bp = LINUX_BOOT_PARAMS;
    assert_int_equal(gbyte(bp + BP_E820_ENTRIES), 4);
    for (int i = 0; i < 4; i++) {
        uint64_t e = bp + BP_E820_TABLE + 20 * (uint64_t)i;
        assert_int_equal(gread(e, 8), want[i].addr);
        assert_int_equal(gread(e + 8, 8), want[i].size);
        assert_int_equal(gread(e + 16, 4), want[i].type);
    }
    uint64_t last = bp + BP_E820_TABLE + 60;
    assert_int_equal(gread(last, 8) + gread(last + 8, 8), 48 * MiB);
    /* No fifth entry. */
    assert_int_equal(gread(bp + BP_E820_TABLE + 80, 8), 0);
    assert_int_equal(gread(bp + BP_E820_TABLE + 88, 8), 0);
    assert_int_equal(gread(bp + BP_E820_TABLE + 96, 4), 0);
}

static void test_load_gdt(void **state)
{
    load_default(32 * MiB, 0);
    assert_int_equal(gread(LINUX_GDT + 0, 8), 0);
    assert_int_equal(gread(LINUX_GDT + 8, 8), 0);
    assert_int_equal(gread(LINUX_GDT + 16, 8),
                     0x00af9a000000ffffULL); /* __BOOT_CS 0x10 */
    assert_int_equal(gread(LINUX_GDT + 24, 8),
                     0x00cf92000000ffffULL); /* __BOOT_DS 0x18 */
}

/* Walks the loader's page tables for va; returns the physical address, or
 * UINT64_MAX if unmapped. Requires 2 MiB leaves. */
static uint64_t walk(uint64_t va)
{
    uint64_t pml4e = gread(LINUX_PML4 + ((va >> 39) & 511) * 8, 8);
    if (!(pml4e & 1))
        return UINT64_MAX;
    assert_int_equal(pml4e & 0x80, 0);
    uint64_t pdpte = gread((pml4e & 0xffffffffff000ULL) + ((va >> 30) & 511) * 8, 8);
    if (!(pdpte & 1))
        return UINT64_MAX;
    assert_int_equal(pdpte & 0x80, 0);
    uint64_t pde = gread((pdpte & 0xffffffffff000ULL) + ((va >> 21) & 511) * 8, 8);
    if (!(pde & 1))
        return UINT64_MAX;
    assert_int_equal(pde & 0x83, 0x83); /* present, writable, 2 MiB page */
    return (pde & 0xfffffffe00000ULL) + (va & 0x1fffff);
}

static void test_load_page_tables(void **state)
{
    load_default(32 * MiB, 0);
    /* The structure: PML4[0] -> PDPT at +0x1000, PDPT[0..3] -> four PDs. */
    assert_int_equal(gread(LINUX_PML4, 8), (LINUX_PML4 + 0x1000) | 3);
    for (int i = 1; i < 512; i++)
        assert_int_equal(gread(LINUX_PML4 + 8 * (uint64_t)i, 8), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(gread(LINUX_PML4 + 0x1000 + 8 * (uint64_t)i, 8),
                         (LINUX_PML4 + 0x2000 + 0x1000 * (uint64_t)i) | 3);
    for (int i = 4; i < 512; i++)
        assert_int_equal(gread(LINUX_PML4 + 0x1000 + 8 * (uint64_t)i, 8), 0);
    /* Every 2 MiB of the first 4 GiB maps to itself. */
    for (uint64_t va = 0; va < (4ULL << 30); va += 2 * MiB)
        assert_int_equal(gread(LINUX_PML4 + 0x2000 + (va >> 21) * 8, 8), va | 0x83);
    static const uint64_t probe[] = {
        0,          0x7000,     0x8018,     0x20000,    0x1000000,  0x1000200,  0x1234567,
        0x3fffffff, 0x40000000, 0x80000000, 0xbfe00123, 0xfee00000, 0xffffffff,
    };
    for (unsigned i = 0; i < sizeof(probe) / sizeof(probe[0]); i++)
        assert_int_equal(walk(probe[i]), probe[i]);
    /* Nothing above 4 GiB. */
    assert_int_equal(walk(0x100000000ULL), UINT64_MAX);
    assert_int_equal(walk(0x8000000000ULL), UINT64_MAX);
    /* The tables do not overlap boot_params, the GDT or the command line. */
    assert_true(LINUX_PML4 + 0x6000 <= LINUX_CMDLINE);
    assert_true(LINUX_GDT + 32 <= LINUX_PML4);
    assert_true(LINUX_BOOT_PARAMS + 0x1000 <= LINUX_GDT);
}

/* pref_address not page aligned, and zero (the 16 MiB default). */
static void test_load_other_addresses(void **state)
{
    char err[256] = "";
    struct linux_entry e;
    make_vm(32 * MiB, 512);
    struct kparams kp = KP_DEFAULT;
    kp.pref = 0x1200800;
    kp.init_size = 4 * MiB;
    make_kernel(&kp);
    assert_int_equal(linux_load(&vm, kbuf, ksize, NULL, 0, "", &e, err, sizeof(err)), 0);
    assert_int_equal(e.rip, 0x1200a00);
    assert_int_equal(e.load_addr, 0x1200800);
    assert_int_equal(gread(LINUX_BOOT_PARAMS + H_CODE32_START, 4), 0x1200800);
    uint64_t pm = pm_offset(&kp);
    for (uint64_t i = 0; i < ksize - pm; i++)
        assert_int_equal(gbyte(0x1200800 + i), payload_byte(i));
    p2m_destroy(&vm.p2m);
    vm_live = false;

    make_vm(32 * MiB, 512);
    kp = KP_DEFAULT;
    kp.pref = 0;
    kp.setup_sects = 0; /* means 4 */
    make_kernel(&kp);
    assert_int_equal(pm_offset(&kp), 5 * 512);
    assert_int_equal(linux_load(&vm, kbuf, ksize, NULL, 0, "", &e, err, sizeof(err)), 0);
    assert_int_equal(e.rip, 0x1000200);
    assert_int_equal(e.load_addr, 0x1000000);
    for (uint64_t i = 0; i < ksize - 5 * 512; i++)
        assert_int_equal(gbyte(0x1000000 + i), payload_byte(i));
}

/* ==== the real kernel, when it has been fetched ============================= */

static void test_real_vmlinuz(void **state)
{
    const char *path = getenv("HV_GUEST_KERNEL");
    if (!path)
        path = "build/guest/vmlinuz";
    FILE *f = fopen(path, "rb");
    if (!f) {
        skip(); /* the only test allowed to skip: no kernel fetched */
        return;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    assert_true(n > 0x1000);
    kbuf = malloc((size_t)n);
    assert_non_null(kbuf);
    assert_int_equal(fread(kbuf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    ksize = (uint64_t)n;

    uint64_t pref, init = 0;
    memcpy(&pref, kbuf + H_PREF_ADDRESS, 8);
    memcpy(&init, kbuf + H_INIT_SIZE, 4);
    uint64_t need = (pref ? pref : 0x1000000) + init;
    uint64_t mem = (need + 16 * MiB) & ~(MiB - 1);
    char err[256] = "";
    if (linux_check(kbuf, ksize, mem, err, sizeof(err)))
        fail_msg("%s: %s", path, err);
    assert_int_equal(linux_check(kbuf, ksize, need - 1, err, sizeof(err)), -1);
    ASSERT_CONTAINS(err, "needs");
    /* Cut after 2 MiB (a download that stopped): its header is intact, and
     * it is refused as truncated, with both sizes. */
    uint32_t syssize;
    memcpy(&syssize, kbuf + H_SYSSIZE, 4);
    unsigned setup0 = kbuf[H_SETUP_SECTS] ? kbuf[H_SETUP_SECTS] : 4;
    uint64_t declared = (setup0 + 1) * 512ULL + (uint64_t)syssize * 16;
    assert_true(declared <= ksize && declared > 2 * MiB);
    char want[160];
    snprintf(want, sizeof(want), "truncated: the file has 2097152 bytes, its header declares %llu",
             (unsigned long long)declared);
    assert_int_equal(linux_check(kbuf, 2 * MiB, mem, err, sizeof(err)), -1);
    ASSERT_CONTAINS(err, want);
    assert_int_equal(linux_check(kbuf, declared - 1, mem, err, sizeof(err)), -1);
    ASSERT_CONTAINS(err, "truncated");
    assert_int_equal(linux_check(kbuf, declared, mem, err, sizeof(err)), 0);

    /* Load it for real and compare what landed. */
    unsigned setup = kbuf[H_SETUP_SECTS] ? kbuf[H_SETUP_SECTS] : 4;
    uint64_t pm = (setup + 1) * 512ULL;
    make_vm(mem, (ksize >> PAGE_SHIFT) + 256 + (mem >> PAGE_SHIFT) / 256 + 64);
    struct linux_entry e;
    if (linux_load(&vm, kbuf, ksize, NULL, 0, "console=ttyS0", &e, err, sizeof(err)))
        fail_msg("%s: %s", path, err);
    assert_int_equal(e.load_addr, pref ? pref : 0x1000000);
    assert_int_equal(e.rip, e.load_addr + 0x200);
    for (uint64_t i = 0; i < ksize - pm; i += 4093)
        assert_int_equal(gbyte(e.load_addr + i), kbuf[pm + i]);
    assert_int_equal(gbyte(e.load_addr + ksize - pm - 1), kbuf[ksize - 1]);
    assert_int_equal(gread(LINUX_BOOT_PARAMS + H_MAGIC, 4), 0x53726448);
    assert_int_equal(gbyte(LINUX_BOOT_PARAMS + H_TYPE_OF_LOADER), 0xff);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_vm_mem_access, teardown),
        cmocka_unit_test_teardown(test_check_accepts_default, teardown),
        cmocka_unit_test_teardown(test_check_too_small, teardown),
        cmocka_unit_test_teardown(test_check_no_hdrs, teardown),
        cmocka_unit_test_teardown(test_check_bad_boot_flag, teardown),
        cmocka_unit_test_teardown(test_check_protocol_2_11, teardown),
        cmocka_unit_test_teardown(test_check_no_kernel64, teardown),
        cmocka_unit_test_teardown(test_check_setup_beyond_file, teardown),
        cmocka_unit_test_teardown(test_check_truncated, teardown),
        cmocka_unit_test_teardown(test_load_truncated, teardown),
        cmocka_unit_test_teardown(test_check_ram_too_small, teardown),
        cmocka_unit_test_teardown(test_load_rejects_what_check_rejects, teardown),
        cmocka_unit_test_teardown(test_load_cmdline_too_long, teardown),
        cmocka_unit_test_teardown(test_load_initrd_does_not_fit, teardown),
        cmocka_unit_test_teardown(test_load_out_of_host_memory, teardown),
        cmocka_unit_test_teardown(test_load_kernel_placement, teardown),
        cmocka_unit_test_teardown(test_load_boot_params, teardown),
        cmocka_unit_test_teardown(test_load_loadflags_kept, teardown),
        cmocka_unit_test_teardown(test_load_initrd, teardown),
        cmocka_unit_test_teardown(test_load_initrd_below_addr_max, teardown),
        cmocka_unit_test_teardown(test_load_e820, teardown),
        cmocka_unit_test_teardown(test_load_gdt, teardown),
        cmocka_unit_test_teardown(test_load_page_tables, teardown),
        cmocka_unit_test_teardown(test_load_other_addresses, teardown),
        cmocka_unit_test_teardown(test_real_vmlinuz, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

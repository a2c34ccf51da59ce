/* UEFI entry: the only file that sees firmware types. It reads \hv\hv.cfg,
 * loads the files the config names, records the memory map and the ACPI
 * RSDP, leaves boot services and hands a struct boot_info to the core.
 * Any failure before ExitBootServices is reported (file, line, reason) on
 * serial and the firmware console, everything allocated is given back, and
 * control returns to the firmware with the error. */
#include <efi.h>

#include "arch/cpu.h"
#include "boot/bootinfo.h"
#include "boot/config.h"
#include "drivers/serial.h"
#include "lib/fmt.h"
#include "lib/log.h"
#include "lib/string.h"

#define CFG_PATH "\\hv\\hv.cfg"
#define MAX_FILE_SIZE (512ULL << 20)
#define EBS_RETRIES 8
#define MAX_ALLOCS (2 * CFG_MAX_VMS + 4)

#ifndef HV_VERSION
#define HV_VERSION "unknown"
#endif

static EFI_SYSTEM_TABLE *st;
static EFI_BOOT_SERVICES *bs;

/* Page allocations made before ExitBootServices, freed on failure. */
static struct {
    EFI_PHYSICAL_ADDRESS addr;
    UINTN pages;
} allocs[MAX_ALLOCS];
static int nallocs;

static const char *efi_status_name(EFI_STATUS s)
{
    switch (s) {
    case EFI_SUCCESS: return "EFI_SUCCESS";
    case EFI_LOAD_ERROR: return "EFI_LOAD_ERROR";
    case EFI_INVALID_PARAMETER: return "EFI_INVALID_PARAMETER";
    case EFI_UNSUPPORTED: return "EFI_UNSUPPORTED";
    case EFI_BUFFER_TOO_SMALL: return "EFI_BUFFER_TOO_SMALL";
    case EFI_DEVICE_ERROR: return "EFI_DEVICE_ERROR";
    case EFI_OUT_OF_RESOURCES: return "EFI_OUT_OF_RESOURCES";
    case EFI_VOLUME_CORRUPTED: return "EFI_VOLUME_CORRUPTED";
    case EFI_NOT_FOUND: return "EFI_NOT_FOUND";
    case EFI_ACCESS_DENIED: return "EFI_ACCESS_DENIED";
    case EFI_BAD_BUFFER_SIZE: return "EFI_BAD_BUFFER_SIZE";
    default: return "EFI error";
    }
}

/* Errors also go to the firmware console: on real hardware the screen may
 * be all the user has. */
static void conout_write(const char *s, size_t n)
{
    CHAR16 buf[128];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n')
            buf[k++] = L'\r';
        buf[k++] = (CHAR16)(unsigned char)s[i];
        if (k >= 126 || i + 1 == n) {
            buf[k] = 0;
            st->ConOut->OutputString(st->ConOut, buf);
            k = 0;
        }
    }
}

__attribute__((format(printf, 1, 2))) static void boot_error(const char *fmt, ...)
{
    char line[320];
    va_list ap;
    va_start(ap, fmt);
    int n = fmt_snprintf(line, sizeof(line), "[boot] error: ");
    fmt_vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    size_t len = strlen(line);
    if (len < sizeof(line) - 1)
        line[len++] = '\n';
    serial_write(line, len);
    conout_write(line, len);
}

static void *alloc_pages(UINTN bytes, EFI_STATUS *err)
{
    EFI_PHYSICAL_ADDRESS a = 0;
    UINTN pages = (bytes + 4095) / 4096;
    if (pages == 0)
        pages = 1;
    if (nallocs >= MAX_ALLOCS) {
        *err = EFI_OUT_OF_RESOURCES;
        return NULL;
    }
    *err = bs->AllocatePages(AllocateAnyPages, EfiLoaderData, pages, &a);
    if (EFI_ERROR(*err))
        return NULL;
    allocs[nallocs].addr = a;
    allocs[nallocs].pages = pages;
    nallocs++;
    return (void *)a;
}

static void free_all(void)
{
    while (nallocs > 0) {
        nallocs--;
        bs->FreePages(allocs[nallocs].addr, allocs[nallocs].pages);
    }
}

static void to_char16(CHAR16 *dst, size_t cap, const char *src)
{
    size_t i = 0;
    for (; src[i] && i + 1 < cap; i++)
        dst[i] = (CHAR16)(unsigned char)src[i];
    dst[i] = 0;
}

/* Reads a whole file of the boot volume into fresh pages. */
static EFI_STATUS read_file(EFI_FILE_HANDLE root, const char *path,
                            struct boot_file *out)
{
    CHAR16 wpath[CFG_PATH_MAX];
    EFI_FILE_HANDLE f;
    to_char16(wpath, CFG_PATH_MAX, path);
    EFI_STATUS s = root->Open(root, &f, wpath, EFI_FILE_MODE_READ, 0);
    if (EFI_ERROR(s))
        return s;

    EFI_GUID info_id = EFI_FILE_INFO_ID;
    UINT8 info_buf[SIZE_OF_EFI_FILE_INFO + 2 * CFG_PATH_MAX + 16];
    UINTN info_size = sizeof(info_buf);
    s = f->GetInfo(f, &info_id, &info_size, info_buf);
    if (EFI_ERROR(s))
        goto out;
    EFI_FILE_INFO *info = (EFI_FILE_INFO *)info_buf;
    if (info->Attribute & EFI_FILE_DIRECTORY) {
        s = EFI_ACCESS_DENIED;
        goto out;
    }
    if (info->FileSize > MAX_FILE_SIZE) {
        s = EFI_BAD_BUFFER_SIZE;
        goto out;
    }
    UINTN size = info->FileSize;
    void *buf = alloc_pages(size, &s);
    if (!buf)
        goto out;
    UINTN got = size;
    s = f->Read(f, &got, buf);
    if (!EFI_ERROR(s) && got != size)
        s = EFI_DEVICE_ERROR;
    out->data = buf;
    out->size = size;
out:
    f->Close(f);
    return s;
}

static enum mem_kind kind_of(UINT32 t)
{
    switch (t) {
    case EfiConventionalMemory: return MEM_FREE;
    case EfiBootServicesCode:
    case EfiBootServicesData: return MEM_BOOT_SERVICES;
    case EfiLoaderCode:
    case EfiLoaderData: return MEM_HV;
    case EfiRuntimeServicesCode:
    case EfiRuntimeServicesData: return MEM_RUNTIME;
    case EfiACPIReclaimMemory: return MEM_ACPI_RECLAIM;
    case EfiACPIMemoryNVS: return MEM_ACPI_NVS;
    case EfiUnusableMemory: return MEM_BAD;
    case EfiMemoryMappedIO:
    case EfiMemoryMappedIOPortSpace: return MEM_MMIO;
    case 14: return MEM_PERSISTENT; /* EfiPersistentMemory (UEFI 2.5) */
    default: return MEM_RESERVED;
    }
}

/* Converts the firmware map into sorted-by-firmware, merged regions. No
 * firmware call: safe after ExitBootServices. */
static void convert_map(struct boot_info *bi, UINT8 *map, UINTN map_size, UINTN desc_size)
{
    bi->nregions = 0;
    for (UINTN off = 0; off + desc_size <= map_size; off += desc_size) {
        EFI_MEMORY_DESCRIPTOR *d = (EFI_MEMORY_DESCRIPTOR *)(map + off);
        enum mem_kind k = kind_of(d->Type);
        struct mem_region *last = bi->nregions ? &bi->region[bi->nregions - 1] : NULL;
        if (last && last->kind == (uint32_t)k && last->efi_type == d->Type &&
            last->base + last->pages * 4096 == d->PhysicalStart) {
            last->pages += d->NumberOfPages;
            continue;
        }
        if (bi->nregions >= BOOT_MAX_REGIONS)
            continue; /* counted as absent: the core warns via the total */
        bi->region[bi->nregions++] = (struct mem_region){
            .base = d->PhysicalStart, .pages = d->NumberOfPages,
            .kind = (uint32_t)k, .efi_type = d->Type,
        };
    }
}

static uint64_t find_rsdp(void)
{
    EFI_GUID acpi20 = ACPI_20_TABLE_GUID, acpi10 = ACPI_TABLE_GUID;
    uint64_t v1 = 0;
    for (UINTN i = 0; i < st->NumberOfTableEntries; i++) {
        EFI_CONFIGURATION_TABLE *t = &st->ConfigurationTable[i];
        if (!memcmp(&t->VendorGuid, &acpi20, sizeof(EFI_GUID)))
            return (uint64_t)t->VendorTable;
        if (!memcmp(&t->VendorGuid, &acpi10, sizeof(EFI_GUID)))
            v1 = (uint64_t)t->VendorTable;
    }
    return v1;
}

static EFI_STATUS load_vm_files(EFI_FILE_HANDLE root, struct boot_info *bi)
{
    for (int i = 0; i < bi->cfg.nvms; i++) {
        const struct vm_config *vc = &bi->cfg.vm[i];
        struct {
            const char *what, *path;
            struct boot_file *dst;
        } files[2] = {
            { "kernel", vc->kernel, &bi->vm[i].kernel },
            { "initrd", vc->initrd, &bi->vm[i].initrd },
        };
        for (int j = 0; j < 2; j++) {
            if (!files[j].path[0])
                continue;
            EFI_STATUS s = read_file(root, files[j].path, files[j].dst);
            if (EFI_ERROR(s)) {
                boot_error("%s:%d: vm '%s': cannot load %s '%s': %s", CFG_PATH, vc->line,
                           vc->name, files[j].what, files[j].path, efi_status_name(s));
                return s;
            }
            if (files[j].dst->size == 0) {
                boot_error("%s:%d: vm '%s': %s '%s' is empty", CFG_PATH, vc->line,
                           vc->name, files[j].what, files[j].path);
                return EFI_LOAD_ERROR;
            }
            pr_info(LS_BOOT, "vm '%s': %s %s: %llu bytes", vc->name, files[j].what,
                    files[j].path, (unsigned long long)files[j].dst->size);
        }
    }
    return EFI_SUCCESS;
}

/* Leaves boot services. The map key goes stale whenever the firmware
 * allocates (even behind our back, e.g. a timer event), so retry with a
 * fresh map; between GetMemoryMap and ExitBootServices nothing may call the
 * firmware (UEFI 2.10, 7.4). */
static EFI_STATUS exit_boot_services(EFI_HANDLE image, struct boot_info *bi)
{
    UINTN map_size = 0, key, desc_size;
    UINT32 desc_ver;
    EFI_STATUS s = bs->GetMemoryMap(&map_size, NULL, &key, &desc_size, &desc_ver);
    if (s != EFI_BUFFER_TOO_SMALL)
        return s;
    /* Room for the descriptors our own allocation adds, and then some. */
    UINTN cap = map_size + 16 * desc_size;
    UINT8 *map = alloc_pages(cap, &s);
    if (!map)
        return s;
    for (int tries = 0; tries < EBS_RETRIES; tries++) {
        map_size = cap;
        s = bs->GetMemoryMap(&map_size, (EFI_MEMORY_DESCRIPTOR *)map, &key, &desc_size,
                             &desc_ver);
        if (EFI_ERROR(s))
            return s;
        s = bs->ExitBootServices(image, key);
        if (!EFI_ERROR(s)) {
            bi->efi_map_retries = (uint32_t)tries;
            convert_map(bi, map, map_size, desc_size);
            return EFI_SUCCESS;
        }
        if (s != EFI_INVALID_PARAMETER)
            return s;
    }
    return s;
}

EFI_STATUS efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *systab)
{
    uint64_t tsc0 = rdtsc();
    EFI_STATUS s;
    st = systab;
    bs = systab->BootServices;

    serial_init(COM1_PORT);
    log_raw("\n");
    pr_info(LS_HV, "hv %s: EPT memory-overcommit microhypervisor (tsc=%llu)", HV_VERSION,
            (unsigned long long)tsc0);
    static const char hello[] = "hv " HV_VERSION ": starting; the log is on COM1\n";
    conout_write(hello, sizeof(hello) - 1);
    bs->SetWatchdogTimer(0, 0, 0, NULL);

    EFI_GUID lip_guid = LOADED_IMAGE_PROTOCOL;
    EFI_GUID sfs_guid = SIMPLE_FILE_SYSTEM_PROTOCOL;
    EFI_LOADED_IMAGE *li;
    EFI_FILE_IO_INTERFACE *fs;
    EFI_FILE_HANDLE root;
    s = bs->HandleProtocol(image, &lip_guid, (void **)&li);
    if (EFI_ERROR(s)) {
        boot_error("no loaded-image protocol: %s", efi_status_name(s));
        return s;
    }
    s = bs->HandleProtocol(li->DeviceHandle, &sfs_guid, (void **)&fs);
    if (!EFI_ERROR(s))
        s = fs->OpenVolume(fs, &root);
    if (EFI_ERROR(s)) {
        boot_error("cannot open the boot volume: %s", efi_status_name(s));
        return s;
    }

    struct boot_info *bi = alloc_pages(sizeof(*bi), &s);
    if (!bi) {
        boot_error("cannot allocate boot info: %s", efi_status_name(s));
        goto fail;
    }
    memset(bi, 0, sizeof(*bi));
    bi->magic = BOOTINFO_MAGIC;
    bi->image_base = (uint64_t)li->ImageBase;
    bi->image_size = li->ImageSize;
    bi->tsc_at_entry = tsc0;

    struct boot_file cfg_file = { 0 };
    s = read_file(root, CFG_PATH, &cfg_file);
    if (EFI_ERROR(s)) {
        boot_error("%s: cannot read the configuration: %s", CFG_PATH, efi_status_name(s));
        goto fail;
    }
    struct cfg_error cerr;
    if (config_parse(cfg_file.data, cfg_file.size, &bi->cfg, &cerr)) {
        boot_error("%s:%d: %s", CFG_PATH, cerr.line, cerr.reason);
        s = EFI_INVALID_PARAMETER;
        goto fail;
    }
    pr_info(LS_BOOT, "%s: %d VM%s configured", CFG_PATH, bi->cfg.nvms,
            bi->cfg.nvms == 1 ? "" : "s");
    s = load_vm_files(root, bi);
    if (EFI_ERROR(s))
        goto fail;
    root->Close(root);

    bi->rsdp = find_rsdp();
    s = exit_boot_services(image, bi);
    if (EFI_ERROR(s)) {
        boot_error("ExitBootServices failed: %s", efi_status_name(s));
        goto fail;
    }
    /* The firmware is gone: from here on, only our own code runs. */
    hv_main(bi);

fail:
    free_all();
    boot_error("returning to the firmware with %s", efi_status_name(s));
    return s;
}

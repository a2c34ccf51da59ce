/* What boot/ hands to the core after ExitBootServices. No EFI types here:
 * the core never sees a firmware structure. */
#ifndef BOOT_BOOTINFO_H
#define BOOT_BOOTINFO_H
#include <stdint.h>

#include "boot/config.h"

#define BOOTINFO_MAGIC 0x6f666e69746f6f62ULL /* "bootinfo" */
#define BOOT_MAX_REGIONS 512

enum mem_kind {
    MEM_FREE,          /* conventional memory: free for the hypervisor */
    MEM_BOOT_SERVICES, /* firmware boot-services code/data: free once we own the machine */
    MEM_HV,            /* loader code/data: our image and what boot/ allocated */
    MEM_RUNTIME,       /* firmware runtime services: never touched */
    MEM_ACPI_RECLAIM,  /* ACPI tables (could be reclaimed after parsing) */
    MEM_ACPI_NVS,
    MEM_RESERVED,
    MEM_BAD,
    MEM_MMIO,
    MEM_PERSISTENT,
    MEM_KIND_COUNT
};

struct mem_region {
    uint64_t base;   /* bytes, 4 KiB aligned */
    uint64_t pages;  /* 4 KiB pages */
    uint32_t kind;   /* enum mem_kind */
    uint32_t efi_type;
};

struct boot_file {
    const void *data; /* in MEM_HV memory, page aligned */
    uint64_t size;
};

struct boot_vm {
    struct boot_file kernel;
    struct boot_file initrd; /* size 0 when absent */
};

struct boot_info {
    uint64_t magic;
    uint64_t image_base;   /* where the firmware loaded hv.efi */
    uint64_t image_size;
    uint64_t rsdp;         /* physical address of the ACPI RSDP, 0 if none */
    uint64_t tsc_at_entry; /* TSC when efi_main started */
    uint32_t nregions;
    uint32_t efi_map_retries; /* ExitBootServices retries on a stale key */
    struct mem_region region[BOOT_MAX_REGIONS];
    struct hv_config cfg;
    struct boot_vm vm[CFG_MAX_VMS];
};

const char *mem_kind_name(enum mem_kind k);

/* The core's entry point, called by boot/ on the firmware's stack after
 * ExitBootServices; never returns. */
__attribute__((noreturn)) void hv_main(struct boot_info *bi);
#endif

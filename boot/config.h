/* hv.cfg: the hypervisor's configuration file (format in README.md).
 * Pure C, no EFI: compiled into the image and into the host unit tests. */
#ifndef BOOT_CONFIG_H
#define BOOT_CONFIG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/log.h"

#define CFG_MAX_VMS 8
#define CFG_NAME_MAX 16     /* including the NUL */
#define CFG_PATH_MAX 128
#define CFG_CMDLINE_MAX 1024
#define CFG_LINE_MAX 1200
#define CFG_MIN_VM_MEMORY (1ULL << 20)
#define CFG_MAX_VM_MEMORY (1ULL << 40)
#define CFG_POOL_PCT_DEFAULT 20   /* compressed pool cap, % of machine memory (zswap's) */
#define CFG_POOL_PCT_MAX 75
#define CFG_POOL_MAX_DEFAULT 2048 /* store pages compressing to at most half a page */
#define CFG_POOL_MAX_MIN 256
#define CFG_POOL_MAX_MAX 3072
#define CFG_SHARE_RATE_DEFAULT 256 /* pages the share scanner visits per tick */
#define CFG_SHARE_MS_DEFAULT 20    /* scanner tick period */
#define CFG_DEV_MAX 12             /* block device name, including the NUL */
#define CFG_SWAP_MIN (64ULL << 10) /* smallest swap space */
#define CFG_IDLE_TAX_DEFAULT 75       /* % (ESX's) */
#define CFG_SAMPLE_PAGES_DEFAULT 100  /* pages per VM per period (ESX's) */
#define CFG_SAMPLE_PAGES_MAX 256
#define CFG_SAMPLE_PERIOD_DEFAULT 2000 /* ms: sized for Bochs */
#define CFG_SHARE_CPU_DEFAULT 5    /* % of the CPU the scanner may take from guests */
/* The seed's alert thresholds, times 100 (mm/alerts.h has the same). */
#define CFG_ALERT_BALLOON_PCT_DEFAULT 1000 /* 10% of a VM's memory ballooned */
#define CFG_ALERT_SWAP_MBPS_DEFAULT 10000  /* 100 MB/s of swap I/O, sustained */
#define CFG_ALERT_ZIP_RATIO_DEFAULT 150    /* compression ratio 1.5:1 */
#define CFG_ALERT_SHARE_PCT_DEFAULT 1500   /* 15% saved by sharing */
#define CFG_ALERT_PERIODS_DEFAULT 3        /* periods that make swap sustained */
#define CFG_RECLAIM_CPU_DEFAULT 5  /* % background reclaim may take (like the scanner) */

struct vm_config {
    char name[CFG_NAME_MAX];
    int line;               /* line of the [vm NAME] header */
    uint64_t memory;        /* bytes of guest RAM */
    uint64_t reserve;       /* bytes guaranteed resident (0: none) */
    uint64_t limit;         /* most resident bytes (0: no limit) */
    char kernel[CFG_PATH_MAX];
    char initrd[CFG_PATH_MAX]; /* "" when absent */
    char cmdline[CFG_CMDLINE_MAX];
    bool compress;          /* reclaim may compress its cold pages (default yes) */
    uint32_t dump_pages;    /* debug: print this many sampled pages when it stops */
    bool share;             /* the share scanner may merge its pages (default yes) */
    bool share_salt_set;    /* share_salt given: else a salt of its own */
    uint64_t share_salt;    /* VMs with equal salts may share frames */
    uint64_t balloon;       /* initial balloon target, bytes (docs/hypercall.md) */
    /* shares = low | normal | high (per MiB of memory) or a number
     * (mm/policy_alloc.h): shares_per_mib 5/10/20, or shares_abs. */
    uint8_t shares_per_mib; /* 0: not given (normal) */
    uint64_t shares_abs;    /* 0: by shares_per_mib */
    uint64_t max_memory;    /* bytes its memory map shows; 0: memory (no resizing) */
};

/* Deliberate faults for the test rig (crash = ...): they show the crash
 * dump and prove the image's W^X and NX mappings are enforced. */
enum crash_test {
    CRASH_NONE = 0,
    CRASH_WRITE_TEXT,  /* store into the hypervisor's own code */
    CRASH_EXEC_DATA,   /* jump into a data page */
    CRASH_NULL,        /* read through a NULL pointer */
    CRASH_UD,          /* ud2 */
};

/* swap_selftest = ...: destructive tests of the swap device at boot. */
enum swap_selftest {
    SWAP_TEST_NONE = 0,
    SWAP_TEST_ALL,  /* yes: the block device's pattern test, then the swap path */
    SWAP_TEST_SWAP, /* swap-only: the swap path alone (error injection runs) */
};

struct hv_config {
    signed char log_level[LS_COUNT]; /* -1: not set */
    bool poweroff;                   /* power off when done (default yes) */
    unsigned char crash;             /* enum crash_test */
    uint64_t watermark;              /* machine low watermark, bytes (0: default) */
    uint32_t stats_interval;         /* seconds between periodic stats lines (0: off) */
    uint32_t sweep_ms;               /* accessed/dirty sweep period (default 1000) */
    uint8_t pool_pct;                /* compressed pool cap, % of machine memory (0: off) */
    bool pool_check;                 /* pool entries carry a checksum of the page */
    uint32_t pool_max;               /* largest compressed size stored, bytes */
    uint32_t share_rate;             /* share scanner: GFNs per tick (0: off) */
    uint32_t share_ms;               /* share scanner tick period */
    uint8_t share_cpu;               /* its CPU budget while guests run, % */
    uint64_t min_free;               /* machine memory states' minimum free, bytes (0: ESX's
                                        sliding scale; mm/policy.h) */
    uint8_t reclaim_cpu;             /* background reclaim's CPU budget, % (0: off) */
    /* Swap space: a block device ("" = no swap), optionally a byte range or
     * an MBR primary partition of it. */
    char swap_dev[CFG_DEV_MAX];
    uint64_t swap_offset, swap_size; /* bytes; size 0 = to the end */
    uint8_t swap_partition;          /* 1..4, 0 = the whole device */
    bool swap_format;                /* write a swap header if there is none */
    uint8_t swap_selftest;           /* enum swap_selftest */
    uint32_t nvme_test_hold;         /* test rig: the Nth NVMe I/O command is lost */
    bool nvme_test_stuck;            /* test rig: the NVMe reset after it is not done */
    bool balloon_policy;             /* the hypervisor sets balloon targets under machine
                                        pressure (default yes; mm/balloon.c) */
    /* Alert thresholds (mm/alerts.h), times 100; 0 disables one. */
    uint32_t alert_balloon_pct, alert_swap_mbps, alert_zip_ratio, alert_share_pct;
    uint32_t alert_periods;          /* periods that make swap activity sustained */
    /* Allocation policy (mm/policy_alloc.h): idle memory tax (percent) and
     * the sampled working set (pages per VM per period, period in ms). */
    uint8_t idle_tax;
    uint32_t sample_pages, sample_period;
    bool alloc_seen[4];              /* shares (current VM), idle_tax, sample_* given */
    uint32_t overcommit_max;         /* most configured guest memory per machine memory,
                                        in thousandths (0: no limit; mm/policy_admit.c) */
    uint32_t trace_mask;             /* trace = causes: 1 << enum trace_cause (mm/trace.h);
                                        0: off */
    uint32_t trace_frames;           /* trace_frames = N: the ring's frames (0: default) */
    int nvms;
    struct vm_config vm[CFG_MAX_VMS];
};

struct cfg_error {
    int line;           /* 0 when the error concerns the whole file */
    char reason[192];
};

/* Parses text[0..len). Returns 0, or -1 with *err filled in; on error *cfg is
 * left in a defined (partially filled) state and must not be used. */
int config_parse(const char *text, size_t len, struct hv_config *cfg,
                 struct cfg_error *err);

/* "512M", "1G", "4096K", "65536" -> bytes. Returns 0 or -1. */
int config_parse_size(const char *s, uint64_t *out);
#endif

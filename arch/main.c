/* The core's start: from the firmware's hand-off to a machine the
 * hypervisor owns, then the capability report, device probes, self-tests
 * and the swap device; then, when VMs are configured and VMX is usable,
 * the memory manager (pool, scanner, balloon policy) and the VMs, run to
 * the end; then power-off. */
#include "arch/acpi.h"
#include "arch/cpu.h"
#include "arch/desc.h"
#include "arch/memory.h"
#include "arch/power.h"
#include "arch/storage.h"
#include "arch/tsc.h"
#include "boot/bootinfo.h"
#include "drivers/ata.h"
#include "drivers/blk.h"
#include "drivers/nvme.h"
#include "drivers/pci.h"
#include "drivers/serial.h"
#include "lib/fmt.h"
#include "lib/log.h"
#include "mm/compress.h"
#include "mm/policy_alloc.h"
#include "mm/frame.h"
#include "mm/balloon.h"
#include "mm/mm.h"
#include "mm/policy.h"
#include "mm/policy_admit.h"
#include "mm/share.h"
#include "mm/alerts.h"
#include "mm/stats_json.h"
#include "mm/trace.h"
#include "vmx/caps.h"
#include "vmx/sched.h"
#include "vmx/vmx.h"

#define MAIN_STACK_SIZE (64 * 1024)
static uint8_t main_stack[MAIN_STACK_SIZE] __attribute__((aligned(16)));

void stack_switch(void *top, void (*fn)(void *), void *arg);

static void apply_log_levels(const struct hv_config *cfg)
{
    for (int i = 0; i < LS_COUNT; i++)
        if (cfg->log_level[i] >= 0)
            log_set_level((enum log_subsys)i, (enum log_level)cfg->log_level[i]);
}

static void report_vms(const struct boot_info *bi)
{
    char a[16], b[16];
    uint64_t total = 0;
    for (int i = 0; i < bi->cfg.nvms; i++) {
        const struct vm_config *vc = &bi->cfg.vm[i];
        total += vc->memory;
        pr_info(LS_HV, "vm '%s': memory %s, kernel %s (%llu bytes), initrd %s (%llu bytes)",
                vc->name, fmt_size(a, sizeof(a), vc->memory), vc->kernel,
                (unsigned long long)bi->vm[i].kernel.size,
                vc->initrd[0] ? vc->initrd : "none",
                (unsigned long long)bi->vm[i].initrd.size);
    }
    if (bi->cfg.nvms) {
        uint64_t free_bytes = frame_free_count() * PAGE_SIZE;
        pr_info(LS_HV, "%d VMs with %s of guest memory on %s of free machine memory",
                bi->cfg.nvms, fmt_size(a, sizeof(a), total),
                fmt_size(b, sizeof(b), free_bytes));
    }
}

static struct vm vms[CFG_MAX_VMS];

/* Turns VMX on, builds every configured VM and runs them to the end. A VM
 * that cannot be built is reported and counted; the others still run. */
static int run_vms(const struct boot_info *bi, const struct vmx_caps *caps)
{
    if (vmx_on(caps)) {
        pr_err(LS_HV, "VMX could not be turned on");
        return bi->cfg.nvms;
    }
    int n = bi->cfg.nvms;
    if (bi->cfg.watermark)
        mm_set_watermark(bi->cfg.watermark >> PAGE_SHIFT);
    if (bi->cfg.min_free)
        policy_set_min_free(bi->cfg.min_free >> PAGE_SHIFT);
    policy_set_clock(tsc_hz());
    policy_configure(bi->cfg.share_ms ? bi->cfg.share_ms : 20, bi->cfg.share_cpu,
                     bi->cfg.reclaim_cpu);
    /* The pool's cap is a share of the memory guests can have: what is
     * free before any VM exists. */
    char a[16], b[16];
    uint64_t avail = frame_free_count(), cap = avail * bi->cfg.pool_pct / 100;
    if (mm_pool_init(cap, bi->cfg.pool_max, bi->cfg.pool_check)) {
        pr_err(LS_MM, "no memory for the compressed pool's table: compression is off");
        cap = 0;
        mm_pool_init(0, bi->cfg.pool_max, false);
    }
    if (cap)
        pr_info(LS_MM, "compressed pool: cap %s (%u%% of %s), pages stored when LZ4 brings them "
                       "to %u bytes or less, checksums %s",
                fmt_size(a, sizeof(a), cap * PAGE_SIZE), bi->cfg.pool_pct,
                fmt_size(b, sizeof(b), avail * PAGE_SIZE), bi->cfg.pool_max,
                bi->cfg.pool_check ? "on" : "off");
    else
        pr_info(LS_MM, "compressed pool: off");
    if (share_init(avail, bi->cfg.share_rate)) {
        pr_err(LS_MM, "no memory for the share scanner's tables: sharing is off");
        share_init(avail, 0);
    }
    share_set_clock(tsc_hz());
    if (share_enabled())
        pr_info(LS_MM, "page sharing: scanner visits %u pages every %u ms (adaptive, x1/4 .. x4) "
                       "within %u%% of the CPU, and any idle time; xxHash64 salted per VM unless "
                       "share_salt says otherwise",
                bi->cfg.share_rate, bi->cfg.share_ms, bi->cfg.share_cpu);
    else
        pr_info(LS_MM, "page sharing: off");
    balloon_set_clock(tsc_hz());
    stats_set_clock(tsc_hz());
    struct alert_config ac = {
        bi->cfg.alert_balloon_pct, bi->cfg.alert_swap_mbps, bi->cfg.alert_zip_ratio,
        bi->cfg.alert_share_pct, bi->cfg.alert_periods,
    };
    alerts_configure(&ac);
    alerts_print_config();
    balloon_policy_enable(bi->cfg.balloon_policy);
    policy_alloc_configure(bi->cfg.idle_tax, bi->cfg.sample_pages, bi->cfg.sample_period);
    pr_info(LS_MM, "allocation: shares per VM (normal %u per MiB), idle tax %u%%, working-set "
                   "sample %u pages every %u ms",
            ALLOC_SHARES_NORMAL, bi->cfg.idle_tax, bi->cfg.sample_pages, bi->cfg.sample_period);
    pr_info(LS_MM, "balloon: policy %s (under machine pressure, targets of VMs whose driver "
                   "listens grow in proportion to their idle memory); console commands on COM1: "
                   "type help",
            bi->cfg.balloon_policy ? "on" : "off");
    {
        char c[16], d[16], e[16];
        pr_info(LS_MM, "memory states: min_free %s (%s), high at %s free or more, clear %s, "
                       "soft %s, hard %s (the low mark), low below; background reclaim within "
                       "%u%% of the CPU%s",
                fmt_size(a, sizeof(a), policy_min_free() * PAGE_SIZE),
                bi->cfg.min_free ? "hv.cfg" : bi->cfg.watermark ? "from the watermark"
                                                                : "ESX's scale",
                fmt_size(b, sizeof(b), policy_threshold(MS_HIGH) * PAGE_SIZE),
                fmt_size(c, sizeof(c), policy_threshold(MS_CLEAR) * PAGE_SIZE),
                fmt_size(d, sizeof(d), policy_threshold(MS_SOFT) * PAGE_SIZE),
                fmt_size(e, sizeof(e), policy_threshold(MS_HARD) * PAGE_SIZE),
                bi->cfg.reclaim_cpu, bi->cfg.reclaim_cpu ? "" : " (off)");
    }
    uint64_t guest = 0;
    for (int i = 0; i < n; i++)
        guest += bi->cfg.vm[i].memory >> PAGE_SHIFT;
    policy_admit_set_max(bi->cfg.overcommit_max);
    policy_admit_guidance(guest, mm_usable_frames());
    if (bi->cfg.trace_mask) /* before any VM: its every transition is in the ring */
        trace_init(bi->cfg.trace_mask, bi->cfg.trace_frames, tsc_hz());
    for (int i = 0; i < n; i++)
        vm_create(&vms[i], i, &bi->cfg.vm[i], &bi->vm[i], caps);
    uint64_t oc = mm_overcommit_permille();
    pr_info(LS_MM, "after VM creation: %s free, watermark %s, overcommit %llu.%02llu%s",
            fmt_size(a, sizeof(a), frame_free_count() * PAGE_SIZE),
            fmt_size(b, sizeof(b), mm_watermark() * PAGE_SIZE), (unsigned long long)(oc / 1000),
            (unsigned long long)(oc % 1000 / 10), oc > 1000 ? " (overcommitted)" : "");
    struct sched_params sp = {
        .sweep_ms = bi->cfg.sweep_ms ? bi->cfg.sweep_ms : 1000,
        .share_ms = bi->cfg.share_ms ? bi->cfg.share_ms : 20,
        .share_cpu = bi->cfg.share_cpu,
        .stats_interval = bi->cfg.stats_interval,
        .wait_limit_ms = 5000,
    };
    return sched_run(vms, n, &sp);
}

/* crash = ... in hv.cfg: fault on purpose, from a few calls deep so the
 * stack trace has frames to show. */
static uint8_t crash_data_page[4096] __attribute__((aligned(4096)));

static __attribute__((noinline)) void crash_now(int kind, int depth)
{
    if (depth > 0) {
        crash_now(kind, depth - 1);
        __asm__ volatile("" ::: "memory"); /* keep the frames: no tail call */
        return;
    }
    pr_info(LS_HV, "crash test '%d': faulting on purpose", kind);
    switch (kind) {
    case CRASH_WRITE_TEXT:
        *(volatile uint8_t *)(uintptr_t)&crash_now = 0xcc;
        break;
    case CRASH_EXEC_DATA:
        crash_data_page[0] = 0xc3; /* ret: would run if NX were not enforced */
        ((void (*)(void))(uintptr_t)crash_data_page)();
        break;
    case CRASH_NULL:
        (void)*(volatile uint64_t *)(uintptr_t)0;
        break;
    default:
        __asm__ volatile("ud2");
        break;
    }
    pr_err(LS_HV, "FAIL: crash test %d did not fault", kind);
}

static void __attribute__((noreturn)) hv_main_on_own_stack(void *arg)
{
    struct boot_info *bi = arg;
    int failures = 0;

    desc_init();
    stack_register((uint64_t)main_stack, (uint64_t)main_stack + MAIN_STACK_SIZE);
    image_set_bounds(bi->image_base, bi->image_size);
    apply_log_levels(&bi->cfg);
    pr_info(LS_ARCH, "own GDT/TSS/IDT loaded (IST stacks for NMI, #DF, #MC); "
                     "image at %#llx, %llu bytes; ExitBootServices retries: %u",
            (unsigned long long)bi->image_base, (unsigned long long)bi->image_size,
            bi->efi_map_retries);

    if (memory_init(bi) || paging_init(bi)) {
        pr_err(LS_HV, "FAIL: memory set-up");
        power_off(POWER_FAIL);
    }
    /* Nothing firmware-owned is in use any more: stack, descriptor tables
     * and page tables are all ours. */
    uint64_t reclaimed = memory_reclaim_boot(bi);
    char a[16], b[16];
    pr_info(LS_MM, "reclaimed %s of boot-services memory; %s free",
            fmt_size(a, sizeof(a), reclaimed * PAGE_SIZE),
            fmt_size(b, sizeof(b), frame_free_count() * PAGE_SIZE));
    memory_print_map(bi);

    struct tsc_info ti;
    tsc_init(&ti);
    pr_info(LS_ARCH, "TSC: %llu.%03llu MHz (%s)", (unsigned long long)(ti.hz / 1000000),
            (unsigned long long)(ti.hz / 1000 % 1000), ti.source);

    acpi_init(bi->rsdp, NULL);

    struct vmx_caps caps;
    vmx_caps_probe(&caps);

    pci_enumerate();
    ata_probe();
    nvme_test_hold(bi->cfg.nvme_test_hold);
    nvme_test_stuck(bi->cfg.nvme_test_stuck);
    nvme_probe();

    if (frame_selftest())
        failures++;
    if (cmp_selftest())
        failures++;

    failures += storage_setup(&bi->cfg);
    report_vms(bi);
    /* The configuration asks for VMs: on a machine where none can run the
     * boot has failed at its job, whatever else passed. */
    bool vmx_missing = bi->cfg.nvms && !caps.usable;
    if (vmx_missing)
        pr_err(LS_HV, "FAIL: %d VM%s configured, but VMX is not usable here (%s): none can run",
               bi->cfg.nvms, bi->cfg.nvms == 1 ? " is" : "s are",
               caps.why_not ? caps.why_not : "no reason given");

    struct frame_stats fs;
    frame_get_stats(&fs);
    pr_info(LS_MM, "frames: %llu free, %llu hypervisor, %llu page tables, %llu boot",
            (unsigned long long)fs.count[FS_FREE], (unsigned long long)fs.count[FS_HV],
            (unsigned long long)fs.count[FS_PAGETABLE],
            (unsigned long long)fs.count[FS_BOOT]);
    uint64_t now = rdtsc();
    pr_info(LS_HV, "boot complete: tsc=%llu (%llu since efi_main), VMX %s",
            (unsigned long long)now, (unsigned long long)(now - bi->tsc_at_entry),
            caps.usable ? "usable" : "absent");
    if (failures)
        pr_err(LS_HV, "FAIL: %d self-test%s failed", failures, failures == 1 ? "" : "s");
    if (failures || vmx_missing)
        power_off(POWER_FAIL);
    pr_info(LS_HV, "PASS: all self-tests passed");
    if (bi->cfg.crash != CRASH_NONE) {
        crash_now(bi->cfg.crash, 3);
        power_off(POWER_FAIL);
    }
    if (bi->cfg.nvms && caps.usable) {
        int failed = run_vms(bi, &caps);
        if (failed) {
            pr_err(LS_HV, "FAIL: %d VM%s stopped with an error", failed,
                   failed == 1 ? "" : "s");
            power_off(POWER_FAIL);
        }
        pr_info(LS_HV, "all VMs ended cleanly");
    }
    if (!bi->cfg.poweroff) {
        pr_info(LS_HV, "poweroff = no: halting");
        halt_forever();
    }
    power_off(POWER_OK);
}

void hv_main(struct boot_info *bi)
{
    cli();
    if (bi->magic != BOOTINFO_MAGIC) {
        log_raw("[hv] error: bad boot info magic\n");
        halt_forever();
    }
    stack_switch(main_stack + MAIN_STACK_SIZE, hv_main_on_own_stack, bi);
    __builtin_unreachable();
}

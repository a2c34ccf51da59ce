/* The paravirtual balloon's hypervisor side: the hypercall functions of
 * docs/hypercall.md on one VM's p2m, each VM's target (hv.cfg, the
 * console, the policy), and the machine-pressure policy that raises and
 * lowers targets. Pure C (vmx/ decodes VMCALL and hands the registers
 * here; the host tests and a fuzz target call it directly). Every
 * argument comes from the guest and is checked. */
#ifndef MM_BALLOON_H
#define MM_BALLOON_H
#include <stdbool.h>
#include <stdint.h>

#include "lib/log.h"
#include "mm/p2m.h"
#include "mm/policy.h"

#define HC_ABI_VERSION 1
/* The hypervisor's features (CPUID 0x40000001 EBX, VERSION's RCX). */
#define HC_FEATURE_BALLOON (1u << 0)
#define HC_FEATURE_STATS (1u << 1)
#define HC_FEATURE_LENIENT (1u << 2)  /* a batch entry already in the state asked for is
                                         counted (RCX), not refused */
#define HC_FEATURE_RELEASE (1u << 3)  /* BALLOON_RELEASE */
#define HC_FEATURE_GUEST (1u << 4)    /* GUEST_FEATURES */
#define HC_FEATURES (HC_FEATURE_BALLOON | HC_FEATURE_STATS | HC_FEATURE_LENIENT | \
                     HC_FEATURE_RELEASE | HC_FEATURE_GUEST)
/* The guest's features (GUEST_FEATURES' RBX). */
#define HC_GUEST_DEFLATE_ON_OOM (1u << 0) /* gives pages back on its own before OOM kills */
#define HC_GUEST_HELD (1u << 1)           /* passes the pages its balloon holds in
                                             BALLOON_TARGET's RBX */
#define HC_GUEST_SHORT (1u << 2)          /* passes in BALLOON_TARGET's RCX the pages of the
                                             target it cannot give now (its floor, no
                                             free memory); 0 when it can */
#define HC_GUEST_KNOWN (HC_GUEST_DEFLATE_ON_OOM | HC_GUEST_HELD | HC_GUEST_SHORT)
#define HC_BATCH_MAX 512 /* GFNs per inflate/deflate call: one page of u64 */
#define HC_RELEASE_SCAN 65536 /* GFNs one BALLOON_RELEASE call looks at */

/* Function numbers (RAX). */
enum hc_function {
    HC_VERSION = 0,
    HC_BALLOON_TARGET = 1,
    HC_BALLOON_INFLATE = 2,
    HC_BALLOON_DEFLATE = 3,
    HC_REPORT_STATS = 4,
    HC_BALLOON_RELEASE = 5,
    HC_GUEST_FEATURES = 6,
    HC_FUNCTION_COUNT
};

/* Results (RAX after the call). */
enum hc_result {
    HC_OK = 0,
    HC_EPERM = -1,  /* not called from CPL 0 */
    HC_ENOSYS = -2, /* unknown function */
    HC_EINVAL = -3, /* a GFN in the batch is bad (RBX: its index) */
    HC_EFAULT = -4, /* the list or stats page is not a page of guest RAM */
    HC_E2BIG = -5,  /* count 0 or above HC_BATCH_MAX */
    HC_EIO = -6,    /* the list or stats page is guest RAM, but its stored copy
                       cannot be read back (swap read error, damaged copy) */
    HC_EAGAIN = -7, /* no frame now for the hypervisor's record of a GFN never touched
                       (RBX: its index); nothing changed: retry later */
};

/* What the guest last reported (HC_REPORT_STATS), in pages. */
struct hc_guest_stats {
    uint64_t size;            /* bytes of this structure the guest filled */
    uint64_t total, free, available;
    uint64_t swap_in, swap_out, major_faults, minor_faults;
};

struct hc_regs {
    uint64_t rax, rbx, rcx, rdx;
};

struct balloon_stats {
    uint64_t calls[HC_FUNCTION_COUNT];
    uint64_t cycles[HC_FUNCTION_COUNT]; /* in the handler (vmx/exit.c times it) */
    uint64_t rejected;        /* calls answered with an error */
    struct log_limit log;     /* the refusals' lines (rate-limited per VM) */
#define HC_LOG_KIND "refused hypercall"
    uint64_t stats_reports;
    uint64_t noop_inflate;    /* batch entries already ballooned when inflated */
    uint64_t noop_deflate;    /* ... not ballooned (touched, say) when deflated */
    uint64_t released;        /* GFNs BALLOON_RELEASE deflated */
    struct log_limit short_log; /* the "cannot meet its target" lines */
#define HC_SHORT_LOG_KIND "balloon short"
    struct hc_guest_stats guest;
};

/* Handles one hypercall of the VM whose p2m is p, called at privilege
 * level cpl: reads the function and arguments from r and writes the
 * results back into r. Never fails on guest input: errors go back to
 * the guest in RAX and are counted in *bs. */
void hc_dispatch(struct p2m *p, struct balloon_stats *bs, unsigned cpl, struct hc_regs *r);
const char *hc_result_name(int64_t r);

/* Targets. The guest is asked to hold target = set + policy + hold pages, never
 * more than its RAM less its reservation. */
#define BALLOON_TICK_MS 250      /* the pressure policy's period */
#define BALLOON_LISTEN_TICKS 12  /* a driver that polled within 3 s is listening */
#define BALLOON_NEEDY_TICKS 8    /* a VM that waited for a frame within 2 s is in need */
#define BALLOON_NEEDY_PRESSURE_TICKS 2 /* ... and makes pressure for this many ticks */
#define BALLOON_CALM_TICKS 8     /* 2 s without pressure before the policy gives back */
#define BALLOON_WAITER_ASK 1024  /* pages asked at least while a VM waits for frames */
#define BALLOON_MIN_ASK 64       /* smaller shortfalls wait (unless a VM waits) */

/* The target asked for by hv.cfg or the console, in pages. Returns the
 * target the guest will be given (clamped to RAM less the reservation). */
uint64_t balloon_set_target(struct p2m *p, uint64_t pages);
/* Live resizing (mm/policy_admit.c): the pages that hold a VM with
 * max_memory at its size, added to the target. Returns the new target. */
uint64_t balloon_set_hold(struct p2m *p, uint64_t pages);
/* What its balloon holds now (the driver's count when it passes one). */
uint64_t balloon_held(const struct p2m *p);
/* Did its driver poll within the last BALLOON_LISTEN_TICKS ticks? */
bool balloon_listening(const struct p2m *p);

/* For the balloon policy (mm/policy_balloon.c, declared in mm/policy.h):
 * what the guest's balloon holds (its own count when it passes it, else
 * what is ballooned here), the policy's part of the target, and the
 * "balloon holds its target" line when it does. */
uint64_t balloon_guest_held(const struct p2m *p);
void balloon_set_policy_part(struct p2m *p, uint64_t policy);
void balloon_report_reached(struct p2m *p);

/* Time base for rates (TSC ticks per second). */
void balloon_set_clock(uint64_t hz);
/* The VM's balloon line (target, ballooned, rates since its last line). */
void balloon_print_vm(struct p2m *p);
#endif

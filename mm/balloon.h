/* The paravirtual balloon's hypervisor side: the hypercall functions of
 * docs/hypercall.md, on one VM's p2m. Pure C (vmx/ decodes VMCALL and
 * hands the registers here; the host tests and a fuzz target call it
 * directly). Every argument comes from the guest and is checked. */
#ifndef MM_BALLOON_H
#define MM_BALLOON_H
#include <stdint.h>

#include "mm/p2m.h"

#define HC_ABI_VERSION 1
#define HC_FEATURE_BALLOON (1u << 0)
#define HC_FEATURE_STATS (1u << 1)
#define HC_BATCH_MAX 512 /* GFNs per inflate/deflate call: one page of u64 */

/* Function numbers (RAX). */
enum hc_function {
    HC_VERSION = 0,
    HC_BALLOON_TARGET = 1,
    HC_BALLOON_INFLATE = 2,
    HC_BALLOON_DEFLATE = 3,
    HC_REPORT_STATS = 4,
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
    uint64_t rejected;        /* calls answered with an error */
    uint64_t stats_reports;
    struct hc_guest_stats guest;
};

/* Handles one hypercall of the VM whose p2m is p, called at privilege
 * level cpl: reads the function and arguments from r and writes the
 * results back into r. Never fails on guest input: errors go back to
 * the guest in RAX and are counted in *bs. */
void hc_dispatch(struct p2m *p, struct balloon_stats *bs, unsigned cpl, struct hc_regs *r);
const char *hc_result_name(int64_t r);
#endif

/* Admission and live resizing: which VMs may start, and how a VM with
 * max_memory moves between a floor and max_memory at run time. Decisions
 * only: the p2m limit and the balloon target (mm/balloon.c) are the
 * mechanisms they drive. Pure C (the host tests drive it directly).
 *
 * Overcommit ratio = configured guest memory (for a resizable VM: its
 * current size, not max_memory) : the machine memory the hypervisor
 * manages for guests (mm_usable_frames). The seed's guidance bands:
 *   recommended   ratio <= 1.2:1
 *   production    ratio <= 1.5:1
 *   development   ratio <= 2:1
 *   beyond        above 2:1 (experiments: expect reclaim to cost)
 * overcommit_max (hv.cfg) refuses any VM, and any growth, that would take
 * the ratio above it. Reservations are admitted only when they fit in
 * free memory less the watermark and what other reservations are still
 * owed. */
#ifndef MM_POLICY_ADMIT_H
#define MM_POLICY_ADMIT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mm/p2m.h"

#define ADMIT_RECOMMENDED 1200 /* thousandths */
#define ADMIT_PRODUCTION 1500
#define ADMIT_DEVELOPMENT 2000

enum admit_band { AB_RECOMMENDED, AB_PRODUCTION, AB_DEVELOPMENT, AB_BEYOND };

/* The band of a ratio guest_pages : machine_pages (exact, no rounding). */
enum admit_band policy_admit_band(uint64_t guest_pages, uint64_t machine_pages);
const char *policy_admit_band_name(enum admit_band b);
/* "1.34" for 1.3333 (two decimals, rounded up, so a printed ratio is at
 * most a bound exactly when the ratio is). */
const char *policy_admit_ratio_str(char *buf, size_t n, uint64_t guest_pages,
                                   uint64_t machine_pages);
/* Prints the guidance with the configuration's ratio and its band. */
void policy_admit_guidance(uint64_t guest_pages, uint64_t machine_pages);

/* overcommit_max in thousandths (0: none). */
void policy_admit_set_max(uint32_t permille);
uint32_t policy_admit_max(void);

/* What the machine looks like to an admission decision (frames). */
struct admit_view {
    uint64_t free;          /* free frames now */
    uint64_t owed_others;   /* frames other VMs' reservations are still owed */
    uint64_t watermark;
    uint64_t machine;       /* machine memory for guests (the ratio's denominator) */
    uint64_t admitted;      /* guest pages of the VMs already admitted */
};
/* May p start? owed_self: frames its reservation (with metadata) still
 * needs. 0, or -1 with the reason (naming the VM) in why. */
int policy_admit_decide(const struct p2m *p, uint64_t owed_self, const struct admit_view *v,
                        char *why, size_t n);
/* The reason of the last refusal (mm_register's callers report it). */
const char *policy_admit_reason(void);
void policy_admit_set_reason(const char *why);

/* Guest pages a VM counts for in the ratio: its size when resizable. */
uint64_t policy_admit_size(const struct p2m *p);

/* ---- Live resizing ---- */

/* p (ngfn = max_memory) boots at boot pages: limit and balloon hold set. */
void policy_resize_init(struct p2m *p, uint64_t boot);
/* The least a VM may be resized to: its reservation, and a quarter of its
 * boot size (the balloon policy's own floor: a guest keeps a quarter). */
uint64_t policy_resize_floor(const struct p2m *p);

enum resize_rc {
    RS_DONE,    /* grown (or already that size): limit raised, balloon deflating */
    RS_PENDING, /* shrinking: the balloon inflates; the limit drops once it holds */
    RS_REFUSED, /* nothing changed; msg says why */
};
/* `mem NAME SIZE`: moves p towards pages. msg gets the line to print. */
enum resize_rc policy_resize_request(struct p2m *p, uint64_t pages, char *msg, size_t n);
/* A pending shrink completes once the balloon holds ngfn - want pages and
 * the guest's charge fits: then the limit drops (a bounded reclaim step on
 * the VM itself when what it touched while ballooned keeps it above).
 * True when the shrink completed now. */
bool policy_resize_step(struct p2m *p);
/* Every registered VM's step (mm_periodic, between slices). */
void policy_resize_tick(void);
#endif

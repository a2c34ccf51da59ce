/* Allocation policy: proportional shares with the idle memory tax, as ESX
 * (Waldspurger, "Memory Resource Management in VMware ESX Server",
 * OSDI'02, 5.1-5.3), and the self-tuning of compression and sharing.
 *
 * A VM with S shares holding P pages of which a fraction f is active (by
 * the sampled working set, mm/p2m_sample.c) has the adjusted
 * shares-per-page ratio rho = S / (P * (f + k * (1 - f))), k = 1 / (1 - tau),
 * tau the idle tax. Memory is revoked first from the VM with the lowest
 * rho (min-funding revocation) among those above their reservation; the
 * targets are the allocations at which every VM not held by a bound has
 * the same rho: target = S / (lambda * cost(f)), clamped to [reservation,
 * limit], the free parameter lambda set so that the targets add up to
 * the memory guests can have. Reservations are never reclaimed, limits
 * always hold (mm/mm.c enforces both; the targets respect them). */
#ifndef MM_POLICY_ALLOC_H
#define MM_POLICY_ALLOC_H
#include <stdbool.h>
#include <stdint.h>

#include "mm/p2m.h"

/* shares = low / normal / high: per MiB of configured memory (ESX's). */
#define ALLOC_SHARES_LOW 5
#define ALLOC_SHARES_NORMAL 10
#define ALLOC_SHARES_HIGH 20
#define ALLOC_SHARES_MAX (1ULL << 40)
#define ALLOC_IDLE_TAX_DEFAULT 75   /* percent, ESX's default */
#define ALLOC_IDLE_TAX_MAX 99       /* 100% would make an idle page cost infinite */
/* Sampling defaults, sized for Bochs: a Linux guest there runs a few
 * million instructions per second, so a period of a few seconds sees a
 * busy guest touch most of its sample and an idle one almost none. ESX
 * uses 100 pages per 60 s period. */
#define ALLOC_SAMPLE_PAGES_DEFAULT 100
#define ALLOC_SAMPLE_PERIOD_DEFAULT 2000 /* ms */
#define ALLOC_SAMPLE_PERIOD_MIN 100
#define ALLOC_SAMPLE_PERIOD_MAX 600000

/* Self-tuning thresholds (the seed's): compression below 1.5:1 does not
 * pay; sharing below 15% of a VM's pages has limited benefit. */
#define TUNE_CMP_RATIO_MIN 150    /* x100 */
#define TUNE_CMP_WINDOW 64        /* attempts judged together */
#define TUNE_CHANGE_MIN 64        /* pages changed before compression is retried ... */
#define TUNE_CHANGE_DIV 8         /* ... or this fraction of resident pages, the larger */
#define TUNE_SHARE_LOW_PCT 15
#define TUNE_SHARE_EVERY_MAX 8    /* slowest: the scanner visits a VM every 8th round */

/* A VM's shares from the configuration: an absolute number, or (absolute
 * 0) per_mib shares per MiB of ngfn pages (at least 1). */
uint64_t policy_alloc_shares(uint64_t ngfn, unsigned per_mib, uint64_t absolute);
/* Global parameters: idle tax (percent, 0 .. ALLOC_IDLE_TAX_MAX), sample
 * pages per VM per period (0: sampling off) and the period (ms). */
void policy_alloc_configure(unsigned idle_tax, unsigned sample_pages, unsigned period_ms);
unsigned policy_alloc_idle_tax(void);

/* The arithmetic, on plain numbers (unit tests): client i has shares,
 * holds pages, of which active_pm per mille are active, and is bounded by
 * [reserve, limit]. */
struct alloc_client {
    uint64_t shares, pages, reserve, limit;
    uint32_t active_pm;
    uint64_t target; /* out */
};
/* Targets adding up to total (or every client at a bound). */
void policy_alloc_targets(struct alloc_client *c, int n, uint64_t total, unsigned tax);
/* <0, 0, >0 as a's rho is below, equal to or above b's (tax in percent);
 * a client with no pages has an infinite rho. */
int policy_alloc_rho_cmp(const struct alloc_client *a, const struct alloc_client *b,
                         unsigned tax);
/* rho scaled for printing: shares per 1000 pages, idle tax included. */
uint64_t policy_alloc_rho_milli(const struct alloc_client *c, unsigned tax);

/* The active fraction the policy uses for p, per mille: the sampled one;
 * with sampling off the sweep's (A/D flags) or 1000. */
uint32_t policy_alloc_active_pm(const struct p2m *p);
/* Recomputes every registered VM's target (cheap: a few passes over the
 * VMs). Called from the policy tick. */
void policy_alloc_update(void);
uint64_t policy_alloc_target(const struct p2m *p);
/* The VM that should give memory first: the lowest rho among those whose
 * charge is above their reservation, or NULL. */
struct p2m *policy_alloc_victim(void);
/* The same, among the registered VMs (mm_vm_at order) not marked in
 * skip[] (reclaim_machine's rounds). */
struct p2m *policy_alloc_victim_skip(const bool *skip);

/* Between slices: ends sampling periods when due (now, ticks per ms),
 * recomputes the targets and runs the self-tuning. */
void policy_alloc_tick(uint64_t now, uint64_t ticks_per_ms);
/* The self-tuning alone (after a period; tests). */
void policy_tune(void);

struct policy_tune_stats {
    uint64_t compress_paused, compress_resumed; /* orders given */
    uint64_t share_slower, share_faster;
    uint64_t updates, periods;
};
void policy_alloc_get_stats(struct policy_tune_stats *s);
/* "[mm] vm NAME: alloc: ..." (shares, target, rho, both working sets). */
void policy_alloc_print_vm(const struct p2m *p);
/* Forget per-VM tuning records (tests). */
void policy_alloc_reset(void);
#endif

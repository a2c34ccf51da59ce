/* The memory policy: every decision about what is reclaimed, when, from
 * whom and by which technique (mechanisms - p2m, pool, share, swap,
 * balloon - take its orders). vmx/sched.c calls it at three places only:
 * policy_tick between slices, policy_idle when nobody runs, and
 * policy_waiter for a vCPU that waits for memory.
 *
 * Machine memory states, after ESX. min_free (frames) defaults to ESX's
 * sliding scale over the machine frames the hypervisor manages (6% of the
 * first 4 GiB, 4% of the next 8, 2% of the next 16, 1% of the rest);
 * min_free in hv.cfg overrides it. "Free" below is free frames less the
 * frames still owed to reservations (those are nobody else's).
 *
 *   state  entered when free falls below  techniques it enables
 *   high   (free >= 400% of min_free)     sharing at its base rate
 *   clear  400%                           sharing twice as fast
 *   soft   100%                           + balloon, same-filled reclaim
 *   hard   64%                            + compression and swap
 *   low    32% (the low mark; at the mark  + faults reclaim directly; beyond
 *          itself already low)              reservations, they wait
 *
 * A state is entered at once when free falls below its upper threshold,
 * and left upwards only when free is at least the better state's
 * threshold plus policy_hyst (a quarter of that threshold): a machine near a
 * threshold changes state once, not at every page. Soft and hard are one
 * reclaim episode: they are left only for clear (free at clear + margin,
 * where background reclaim and the balloon stop), never hard for soft,
 * and low only for hard. Otherwise hard's compression and swap, which
 * soft does not allow, would stop as soon as they lifted free just past
 * soft's threshold, and the machine would fall back at once
 * (policy-states: 65 soft <-> hard pairs in 250 s). Every change is one
 * log line with free memory and its cause.
 *
 * Limits are a VM's own contract: a VM near its limit is reclaimed from
 * with every technique in any state (in the background first, so that its
 * faults find room), as ESX enforces limits whatever the machine's state. */
#ifndef MM_POLICY_H
#define MM_POLICY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mm/p2m.h"

enum mem_state { MS_HIGH, MS_CLEAR, MS_SOFT, MS_HARD, MS_LOW, MS_COUNT };

/* Techniques, as bits. */
#define PT_SHARE (1u << 0)      /* the share scanner at its base rate */
#define PT_SHARE_FAST (1u << 1) /* ... twice per period */
#define PT_BALLOON (1u << 2)    /* balloon targets raised by the policy */
#define PT_FILLED (1u << 3)     /* background reclaim of same-filled pages */
#define PT_COMPRESS (1u << 4)   /* background compression (pages, shared frames) */
#define PT_SWAP (1u << 5)       /* background swap-out */
#define PT_DIRECT (1u << 6)     /* faults reclaim themselves, then wait */
#define PT_COUNT 7

const char *policy_state_name(enum mem_state s);
const char *policy_tech_name(unsigned bit_index);
/* The state as of the last evaluation (policy_update). */
enum mem_state policy_state(void);
/* Techniques state s enables. */
unsigned policy_techniques(enum mem_state s);
/* Does the current state enable technique t (a PT_ bit)? */
bool policy_allows(unsigned t);

/* min_free in frames. */
uint64_t policy_min_free(void);
/* ESX's sliding scale for a machine of frames frames. */
uint64_t policy_scale_min_free(uint64_t frames);
/* 0: the default again (from the low mark if one was set, else the scale). */
void policy_set_min_free(uint64_t frames);
/* The threshold (free frames) below which state s is entered from a better
 * one; MS_HIGH: 400% of min_free. */
uint64_t policy_threshold(enum mem_state s);
#define POLICY_HYST(min_free) ((min_free) / 16 ? (min_free) / 16 : 1)
/* The hysteresis margin for climbing into state s: free must reach
 * policy_threshold(s) + policy_hyst(s), where the margin is a quarter of
 * that threshold (at least POLICY_HYST): high is regained at 500% of
 * min_free, clear at 125%, hard (from low) at 40%. Why a quarter: a
 * booting guest takes and gives back several MiB (1/16 of min_free let
 * the machine flap clear <-> high at every swing), and background reclaim
 * and the balloon stop at clear + margin: with 1/16 there, two busy
 * guests on a 2:1 machine (policy-states) were soft again after every
 * 1 MiB they took. The price is reclaiming a little more before the
 * machine counts as better. */
uint64_t policy_hyst(enum mem_state s);
/* The low mark (frames): below it (plus what others are owed) a fault
 * beyond its VM's reservation reclaims directly, then waits. Default 32%
 * of min_free; set (hv.cfg watermark, tests), it also places min_free
 * when min_free is not set (min_free = low mark / 32%). 0: default. */
void policy_set_low_mark(uint64_t frames);
uint64_t policy_low_mark(void);

/* Free frames as the states see them (free less owed reservations). */
uint64_t policy_free(void);
/* Re-evaluates the state from free memory now (with hysteresis); logs a
 * change with its cause. */
enum mem_state policy_update(void);

/* Configuration (hv.cfg): the share scanner's period and CPU share, and
 * the background reclaim's CPU share (reclaim_cpu, %, 0 = off). */
#define POLICY_RECLAIM_CPU_DEFAULT 5
void policy_configure(uint32_t share_ms, uint32_t share_cpu, uint32_t reclaim_cpu);
void policy_set_clock(uint64_t hz);

/* Between slices: pool compaction, the balloon policy every
 * BALLOON_TICK_MS, the share scanner every share_ms, and background
 * reclaim within reclaim_cpu % of the time since the last call. */
void policy_tick(uint64_t now);
/* Nobody runs until deadline (TSC): background reclaim (no budget: the
 * CPU is free), then the scanner. */
void policy_idle(uint64_t deadline);

/* The verdict on a vCPU of p waiting for memory since wait_since (TSC),
 * when the machine had wait_free free frames. */
enum policy_wait { PW_RUN, PW_WAIT, PW_STOP };
enum policy_wait policy_waiter(struct p2m *p, uint64_t wait_since, uint64_t wait_free,
                               uint64_t now, uint64_t limit_ms, char *why, size_t whylen);

/* The VM the machine reclaims from next: the one furthest above its
 * reservation among those not yet tried (bit i of tried: mm_vm_at(i)).
 * NULL: nobody has pages above its reservation. *index gets its index. */
struct p2m *policy_pick_victim(uint32_t tried, int *index);
/* Machine reclaim: victims in policy_pick_victim's order, each scanning at
 * most max_scan pages with the techniques techs (P2M_RT_*), then shared
 * frames whole (when compression is allowed). Returns frames freed. */
uint64_t policy_reclaim_machine(uint64_t want, uint64_t max_scan, unsigned techs);
/* Reclaim from one VM with the techniques techs, less compression while
 * self-tuning has paused it for v (a recent ratio below 1.5:1). direct: a
 * frame is needed now (a fault, a waiter, a limit): when the paused
 * pass freed less than want, compression is used anyway (counted as
 * pause_overrides), since a poor ratio still frees frames and nothing
 * else may be left to reclaim (no swap). Returns frames freed. */
uint64_t policy_reclaim_vm(struct p2m *v, uint64_t want, uint64_t max_scan, unsigned techs,
                           bool direct);

/* One background reclaim run with at most max_cycles: VMs near their
 * limit first, then the machine back above its state's target. Returns
 * frames freed. Exposed for tests and the simulator. */
uint64_t policy_background(uint64_t max_cycles);
/* A VM's headroom target below its limit (frames): background reclaim
 * keeps limit - charge at least this. */
uint64_t policy_limit_headroom(const struct p2m *p);

/* Fault accounting (p2m_fault): a fault of kind (PF_*) took cycles. */
void policy_fault_done(struct p2m *p, int kind, uint64_t cycles);
/* Estimated pct-th percentile (1..100) of kind's fault cost in cycles,
 * interpolated inside its log2 bucket; 0 without faults. */
uint64_t policy_cost_percentile(const struct p2m *p, int kind, unsigned pct);

struct policy_stats {
    uint64_t ticks, transitions;
    uint64_t entered[MS_COUNT];     /* times each state was entered */
    uint64_t bg_runs, bg_freed;     /* background reclaim */
    uint64_t bg_limit_freed;        /* ... of it, keeping VMs below their limits */
    uint64_t bg_cycles;             /* spent in background reclaim */
    uint64_t tech_runs[PT_COUNT];   /* runs of each technique the policy ordered */
    uint64_t tech_denied[PT_COUNT]; /* ... asked for in a state that does not allow it */
    uint64_t share_ticks;
    uint64_t waiter_passes;         /* full reclaim passes for waiters */
    uint64_t pause_overrides;       /* direct reclaims that compressed a paused VM */
};
void policy_get_stats(struct policy_stats *s);
/* Records a run of technique t (a PT_ bit) ordered now; false (and
 * counted as denied) when the current state does not allow it. */
bool policy_order(unsigned t);

/* "[mm] vm NAME: direct reclaim ..." and the cost percentiles per kind. */
void policy_print_vm(struct p2m *p);
/* "[mm] policy: state ..." */
void policy_print(void);

/* The balloon policy (mm/policy_balloon.c). Every BALLOON_TICK_MS it sees
 * which drivers listen and which VMs wait for frames; in a state that
 * allows the balloon (soft or worse), or while a VM waits below its
 * limit, it asks for enough to bring free memory back to the clear
 * threshold plus policy_hyst(MS_CLEAR) (at least BALLOON_WAITER_ASK while a VM
 * waits), less what the guests were asked for and have not given yet,
 * from the VMs whose driver listens and that did not wait themselves
 * (those only when nobody else can give), in proportion to their idle
 * memory (resident pages unaccessed for P2M_IDLE_SWEEPS sweeps, less what
 * the VM was asked for and has not given yet), each at most that much
 * and never below a quarter of its RAM or its reservation. After
 * BALLOON_CALM_TICKS ticks with free above high + a quarter of min_free,
 * it gives back what it took, a share per tick. Marks: low = soft
 * threshold + owed, high = clear threshold + policy_hyst(MS_CLEAR) + owed (where the
 * state goes back to clear). */
struct balloon_policy_stats {
    uint64_t ticks, pressure_ticks;
    uint64_t asked, released;  /* pages added to and removed from targets */
    uint64_t no_donor;         /* pressure ticks with nobody to ask */
    uint64_t last_low, last_high;
};
/* Turning it off gives back at once what it asked for. */
void balloon_policy_enable(bool on);
bool balloon_policy_enabled(void);
/* One tick over the VMs registered with mm.c. */
void balloon_policy_tick(void);
void balloon_policy_get_stats(struct balloon_policy_stats *s);
void balloon_policy_print(void);
#endif

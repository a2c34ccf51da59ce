/* Statistics as data (issue 19; schema in docs/stats.md). Every statistics
 * period, at a VM's stop, at the end and on the console's `stats`, one line
 * per VM and one for the machine on the serial log:
 *
 *   @hvstat {"v":1,"type":"vm","t":12.345,"seq":3,"why":"period","vm":"a",...}
 *   @hvstat {"v":1,"type":"machine","t":12.345,"seq":3,"why":"period",...}
 *
 * Sizes are 4 KiB pages (integers); rates are per second over the time
 * since the subject's previous line, printed as fixed-point decimals (the
 * core has no floating point). The seed's alerts (mm/alerts.h) are
 * evaluated on every period's lines. Lines do not go through the 512-byte
 * log line buffer: each is formatted here and written to the sink whole. */
#ifndef MM_STATS_JSON_H
#define MM_STATS_JSON_H
#include <stddef.h>
#include <stdint.h>

#include "mm/p2m.h"

#define STATS_SCHEMA_VERSION 1
#define STATS_PREFIX "@hvstat "
#define STATS_LINE_MAX 3072

enum stats_why { STATS_PERIOD, STATS_STOP, STATS_CONSOLE };

/* Time base: TSC ticks per second; "t" counts from this call. */
void stats_set_clock(uint64_t hz);
/* Lines for every registered VM and the machine. Alerts are evaluated
 * when why is STATS_PERIOD. */
void stats_emit(enum stats_why why);
/* One VM's last line (why "stop"), before it is unregistered; forgets its
 * counters and alerts. */
void stats_emit_vm_stop(struct p2m *p);
/* The same at a given clock reading (host tests). */
void stats_emit_at(uint64_t now, enum stats_why why);
void stats_emit_vm_stop_at(struct p2m *p, uint64_t now);
/* Forgets every previous reading and the period counter (host tests). */
void stats_reset(void);

/* The machine state the machine line names: mm.c's interim view until the
 * policy (mm/policy.h, issue 18) provides policy_state_name(). */
const char *stats_machine_state(void);
#endif

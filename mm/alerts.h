/* The seed's monitoring table as alerts (issue 19, docs/stats.md). Four
 * conditions, evaluated on every statistics period for each VM and for the
 * machine as a whole:
 *
 *   balloon  ballooned pages above alert_balloon_pct of the memory size
 *            (default 10%): investigate pressure
 *   swap     swap I/O (reads + writes, 4 KiB pages, 1 MB = 10^6 bytes)
 *            above alert_swap_mbps (default 100 MB/s) for alert_periods
 *            consecutive periods (default 3): add memory or reduce VMs
 *   zip      compression ratio (pages stored / compressed bytes) below
 *            alert_zip_ratio (default 1.5:1), once at least
 *            ALERT_ZIP_MIN_PAGES are compressed: overhead too high
 *   share    sharing saves below alert_share_pct of the granted pages
 *            (default 15%), once the scanner finished a whole round over
 *            at least ALERT_SHARE_MIN_PAGES granted pages: limited benefit
 *
 * Every threshold is a fixed-point number times 100 (10% = 1000, 1.5:1 =
 * 150); 0 disables that alert. Hysteresis: an alert clears only once the
 * value is past its clear level, a margin on the good side of the
 * threshold (balloon 80% of it, swap half of it, zip 110%, share 120%).
 * The swap alert is raised after alert_periods consecutive periods above
 * the threshold and cleared after as many below the clear level; the
 * others are levels, raised and cleared on the first period past their
 * level. A period between the two levels breaks both runs. A value that
 * cannot be judged (no pool, sharing off, too little memory) counts as
 * good. Raising and clearing each print one "[mm] alert raised: ..." or
 * "[mm] alert cleared: ..." line. Pure C: tests/host/test_alerts.c. */
#ifndef MM_ALERTS_H
#define MM_ALERTS_H
#include <stdbool.h>
#include <stdint.h>

#include "mm/p2m.h"

enum alert_kind { ALERT_BALLOON, ALERT_SWAP, ALERT_ZIP, ALERT_SHARE, ALERT_COUNT };

#define ALERT_ZIP_MIN_PAGES 64     /* compressed pages before the ratio is judged */
#define ALERT_SHARE_MIN_PAGES 1024 /* granted pages (4 MiB) before sharing is judged */

struct alert_config {
    uint32_t balloon_pct;  /* x100: 1000 = 10% */
    uint32_t swap_mbps;    /* x100: 10000 = 100 MB/s */
    uint32_t zip_ratio;    /* x100: 150 = 1.5:1 */
    uint32_t share_pct;    /* x100: 1500 = 15% */
    uint32_t periods;      /* consecutive periods that make swap activity sustained */
};
#define ALERT_DEFAULT_BALLOON_PCT 1000
#define ALERT_DEFAULT_SWAP_MBPS 10000
#define ALERT_DEFAULT_ZIP_RATIO 150
#define ALERT_DEFAULT_SHARE_PCT 1500
#define ALERT_DEFAULT_PERIODS 3

/* One period's values, x100, and whether each can be judged. */
struct alert_sample {
    bool valid[ALERT_COUNT];
    uint64_t value[ALERT_COUNT];
};

/* One subject's (a VM's or the machine's) state. Zeroed: nothing active. */
struct alert_state {
    unsigned active;             /* bit (1 << kind) */
    uint32_t bad[ALERT_COUNT];   /* consecutive periods past the threshold */
    uint32_t good[ALERT_COUNT];  /* consecutive periods past the clear level */
    uint64_t last[ALERT_COUNT];  /* the last value seen (x100) */
};

/* Thresholds (the defaults above until set; arch/main.c sets hv.cfg's). */
void alerts_configure(const struct alert_config *c);
void alerts_get_config(struct alert_config *c);
/* One period for one subject: who is "machine" or "vm NAME". Prints a line
 * for each alert raised or cleared; returns the mask of those that changed. */
unsigned alert_step(struct alert_state *s, const char *who, const struct alert_sample *v);

/* The registry the statistics and the console use: one state per VM
 * (by its p2m) and one for the machine (p NULL). */
unsigned alerts_evaluate(const struct p2m *p, const struct alert_sample *v);
unsigned alerts_active(const struct p2m *p);
/* A stopped VM's alerts are forgotten (no clear line: it is gone). */
void alerts_forget(const struct p2m *p);
/* The console's `alerts`: every active alert, with its last value, and
 * the thresholds. */
void alerts_print(void);

const char *alert_name(enum alert_kind k);
/* "[mm] alerts: ..." at boot: the thresholds in force. */
void alerts_print_config(void);
#endif

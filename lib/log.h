/* Greppable log lines: "[subsys] message", with "error: " or "warning: "
 * after the prefix for those levels; messages about one VM say
 * "vm NAME: " first. Verbosity is per subsystem (LOG_ERR .. LOG_DEBUG);
 * the sink is chosen at link time: the serial console in the hypervisor,
 * stderr on the host. */
#ifndef LIB_LOG_H
#define LIB_LOG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* LOG_QUIET: not even errors (the simulator's injected device errors). */
enum log_level { LOG_QUIET = -1, LOG_ERR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* Subsystems with their own verbosity. */
enum log_subsys {
    LS_HV, LS_BOOT, LS_ARCH, LS_MM, LS_VMX, LS_DRV, LS_TEST, LS_CON, LS_COUNT
};

void log_set_level(enum log_subsys s, enum log_level l);
void log_set_all(enum log_level l);
int log_enabled(enum log_subsys s, enum log_level l);
void log_msg(enum log_subsys s, enum log_level l, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Raw output without prefix or newline (register dumps, tables). */
void log_raw(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Provided by the backend (arch/console.c or tests/host). */
void log_sink_write(const char *s, size_t n);

/* ---- Rate limiting ------------------------------------------------------
 * A message a guest can trigger from a VM exit (an unknown MSR, a refused
 * hypercall, a full swap device) must not cost a polled serial line per
 * exit. Each such message kind has a token bucket per owner (per VM, or
 * the machine for machine-wide events): LOG_LIMIT_BURST lines pass at
 * once, then one per LOG_LIMIT_PERIOD_MS; the rest are counted. The next
 * line that passes is preceded by "vm OWNER: N 'KIND' messages suppressed"
 * (owner NULL: a machine-wide bucket, no "vm" part), and
 * the owner's statistics print the totals (log_limit_report). Because the
 * state is the owner's, a VM that floods uses up only its own tokens.
 * A zeroed struct log_limit is a full bucket. Lines below the subsystem's
 * verbosity neither spend tokens nor count as suppressed. */
#define LOG_LIMIT_BURST 10
#define LOG_LIMIT_PERIOD_MS 1000

struct log_limit {
    uint64_t last;       /* clock when the bucket last gained a token */
    uint32_t spent;      /* tokens used of LOG_LIMIT_BURST */
    uint64_t printed;    /* lines that passed */
    uint64_t suppressed; /* lines dropped, in all */
    uint64_t pending;    /* dropped since the last line that passed */
};

/* The clock the buckets refill by (the TSC in the hypervisor, a fake one in
 * tests); without one (hz 0) a bucket never refills. */
void log_set_clock(uint64_t (*now)(void), uint64_t hz);
/* Whether a line of level l on s may be printed now; spends a token or
 * counts it as suppressed. When it passes after a suppression, prints the
 * "messages suppressed" line first. owner: the VM's name, or NULL. */
bool log_limit_pass(struct log_limit *lim, enum log_subsys s, enum log_level l,
                    const char *owner, const char *kind);
/* "vm OWNER: log: 'KIND' messages: N printed, M suppressed" when anything
 * was suppressed; nothing otherwise. */
void log_limit_report(const struct log_limit *lim, enum log_subsys s, const char *owner,
                      const char *kind);

/* A log_msg through the bucket lim. */
#define pr_limited(lim, s, l, owner, kind, ...)                              \
    do {                                                                     \
        if (log_limit_pass(lim, s, l, owner, kind))                          \
            log_msg(s, l, __VA_ARGS__);                                      \
    } while (0)

#define pr_err(s, ...) log_msg(s, LOG_ERR, __VA_ARGS__)
#define pr_warn(s, ...) log_msg(s, LOG_WARN, __VA_ARGS__)
#define pr_info(s, ...) log_msg(s, LOG_INFO, __VA_ARGS__)
#define pr_debug(s, ...) log_msg(s, LOG_DEBUG, __VA_ARGS__)
#endif

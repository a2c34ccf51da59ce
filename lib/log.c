#include "lib/log.h"
#include "lib/fmt.h"
#include <stdarg.h>

static const char *const subsys_name[LS_COUNT] = {
    [LS_HV] = "hv",   [LS_BOOT] = "boot", [LS_ARCH] = "arch", [LS_MM] = "mm",
    [LS_VMX] = "vmx", [LS_DRV] = "drv",   [LS_TEST] = "test", [LS_CON] = "con",
};

static unsigned char level[LS_COUNT] = {
    LOG_INFO, LOG_INFO, LOG_INFO, LOG_INFO, LOG_INFO, LOG_INFO, LOG_INFO, LOG_INFO,
};

void log_set_level(enum log_subsys s, enum log_level l)
{
    if ((unsigned)s < LS_COUNT)
        level[s] = (unsigned char)l;
}

void log_set_all(enum log_level l)
{
    for (int i = 0; i < LS_COUNT; i++)
        level[i] = (unsigned char)l;
}

int log_enabled(enum log_subsys s, enum log_level l)
{
    return (unsigned)s < LS_COUNT && l <= level[s];
}

void log_msg(enum log_subsys s, enum log_level l, const char *fmt, ...)
{
    if (!log_enabled(s, l))
        return;
    char line[512];
    static const char *const tag[] = { "error: ", "warning: ", "", "" };
    int n = fmt_snprintf(line, sizeof(line), "[%s] %s", subsys_name[s], tag[l]);
    va_list ap;
    va_start(ap, fmt);
    n += fmt_vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    log_sink_write(line, (size_t)n);
}

void log_raw(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = fmt_vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(buf) - 1)
        n = (int)sizeof(buf) - 1;
    log_sink_write(buf, (size_t)n);
}

/* ---- Rate limiting ---- */

static uint64_t (*clock_now)(void);
static uint64_t clock_hz;

void log_set_clock(uint64_t (*now)(void), uint64_t hz)
{
    clock_now = now;
    clock_hz = hz;
}

/* Gives back the tokens earned since lim->last, one per period. */
static void refill(struct log_limit *lim)
{
    if (!clock_now || !clock_hz)
        return;
    uint64_t now = clock_now();
    uint64_t period = clock_hz / 1000 * LOG_LIMIT_PERIOD_MS;
    if (!period)
        period = 1;
    if (!lim->spent || now < lim->last) {
        lim->last = now; /* full bucket (or a clock that went back): start here */
        return;
    }
    uint64_t earned = (now - lim->last) / period;
    if (!earned)
        return;
    if (earned >= lim->spent) {
        lim->spent = 0;
        lim->last = now;
    } else {
        lim->spent -= (uint32_t)earned;
        lim->last += earned * period;
    }
}

bool log_limit_pass(struct log_limit *lim, enum log_subsys s, enum log_level l,
                    const char *owner, const char *kind)
{
    if (!log_enabled(s, l))
        return false;
    refill(lim);
    if (lim->spent >= LOG_LIMIT_BURST) {
        lim->suppressed++;
        lim->pending++;
        return false;
    }
    lim->spent++;
    lim->printed++;
    if (lim->pending) {
        log_msg(s, l, "%s%s%s%llu '%s' messages suppressed", owner ? "vm " : "",
                owner ? owner : "", owner ? ": " : "", (unsigned long long)lim->pending, kind);
        lim->pending = 0;
    }
    return true;
}

void log_limit_report(const struct log_limit *lim, enum log_subsys s, const char *owner,
                      const char *kind)
{
    if (lim->suppressed)
        log_msg(s, LOG_INFO, "%s%s%slog: '%s' messages: %llu printed, %llu suppressed",
                owner ? "vm " : "", owner ? owner : "", owner ? ": " : "", kind,
                (unsigned long long)lim->printed, (unsigned long long)lim->suppressed);
}

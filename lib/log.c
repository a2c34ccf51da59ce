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

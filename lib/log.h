/* Greppable log lines: "[subsys] message", with "error: " or "warning: "
 * after the prefix for those levels; messages about one VM say
 * "vm NAME: " first. Verbosity is per subsystem (LOG_ERR .. LOG_DEBUG);
 * the sink is chosen at link time: the serial console in the hypervisor,
 * stderr on the host. */
#ifndef LIB_LOG_H
#define LIB_LOG_H
#include <stddef.h>

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

#define pr_err(s, ...) log_msg(s, LOG_ERR, __VA_ARGS__)
#define pr_warn(s, ...) log_msg(s, LOG_WARN, __VA_ARGS__)
#define pr_info(s, ...) log_msg(s, LOG_INFO, __VA_ARGS__)
#define pr_debug(s, ...) log_msg(s, LOG_DEBUG, __VA_ARGS__)
#endif

/* The hypervisor's log sink: the serial console. boot/ may install a second
 * sink (the firmware console) for the time before ExitBootServices. */
#include "arch/console.h"
#include "drivers/serial.h"
#include "lib/log.h"

static void (*extra_sink)(const char *s, size_t n);

void console_set_extra_sink(void (*fn)(const char *s, size_t n))
{
    extra_sink = fn;
}

void log_sink_write(const char *s, size_t n)
{
    serial_write(s, n);
    if (extra_sink)
        extra_sink(s, n);
}

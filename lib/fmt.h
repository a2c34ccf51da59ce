/* A small printf engine for the freestanding core, also linked into host
 * tests so that parsers format their errors identically everywhere.
 * Supports: %d %i %u %x %X %o %c %s %p %%, flags '-' '0' '+' ' ', width,
 * precision for strings, and the length modifiers hh h l ll z. */
#ifndef LIB_FMT_H
#define LIB_FMT_H
#include <stdarg.h>
#include <stddef.h>

int fmt_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int fmt_snprintf(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Human-readable size: "512M", "1.5G", "4096" (bytes). buf >= 16 bytes. */
const char *fmt_size(char *buf, size_t size, unsigned long long bytes);
#endif

#ifndef ARCH_CONSOLE_H
#define ARCH_CONSOLE_H
#include <stddef.h>
/* NULL removes it. Used by boot/ to mirror errors to the firmware console. */
void console_set_extra_sink(void (*fn)(const char *s, size_t n));
#endif

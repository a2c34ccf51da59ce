/* 16550 UART, polled. */
#ifndef DRIVERS_SERIAL_H
#define DRIVERS_SERIAL_H
#include <stddef.h>
#include <stdint.h>

#define COM1_PORT 0x3f8

void serial_init(uint16_t port);
void serial_write(const char *s, size_t n);
/* Non-blocking read: -1 when nothing is waiting. */
int serial_getc(void);
#endif

/* Polled 16550 driver for the host console. Transmit waits for THRE in the
 * line status register before every byte: Bochs (and real UARTs without a
 * FIFO) drop bytes written while the holding register is full. Receive
 * never waits: the scheduler polls for bytes between slices and hands them
 * to the serial console (mm/console.c). */
#include "drivers/serial.h"
#include "arch/cpu.h"

enum {
    UART_THR = 0, UART_RBR = 0, UART_DLL = 0, UART_IER = 1, UART_DLM = 1,
    UART_FCR = 2, UART_LCR = 3, UART_MCR = 4, UART_LSR = 5, UART_SCR = 7,
};
#define LCR_DLAB 0x80
#define LCR_8N1 0x03
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define SPIN_LIMIT 1000000 /* a missing UART must not hang the machine */

static uint16_t base;

void serial_init(uint16_t port)
{
    base = port;
    outb(base + UART_IER, 0x00);        /* polled: no interrupts */
    outb(base + UART_LCR, LCR_DLAB);
    outb(base + UART_DLL, 1);           /* 115200 baud */
    outb(base + UART_DLM, 0);
    outb(base + UART_LCR, LCR_8N1);
    outb(base + UART_FCR, 0x07);        /* enable and clear FIFOs */
    outb(base + UART_MCR, 0x03);        /* DTR, RTS */
}

static void put_byte(uint8_t c)
{
    for (int i = 0; i < SPIN_LIMIT; i++) {
        if (inb(base + UART_LSR) & LSR_THRE)
            break;
        pause();
    }
    outb(base + UART_THR, c);
}

void serial_write(const char *s, size_t n)
{
    if (!base)
        serial_init(COM1_PORT);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n')
            put_byte('\r');
        put_byte((uint8_t)s[i]);
    }
}

int serial_getc(void)
{
    if (!base || !(inb(base + UART_LSR) & LSR_DR))
        return -1;
    return inb(base + UART_RBR);
}

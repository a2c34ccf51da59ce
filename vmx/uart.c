/* 16550A UART as COM1. Transmission is instantaneous: a byte written to THR
 * goes to the VM's console line buffer at once, so THR is always empty and
 * the THR-empty interrupt fires again right after each write (as a real
 * UART does one character time later). Enough of the modem-control and
 * loopback logic exists for Linux's 8250 autoconfiguration to find a 16550A
 * with a working FIFO and interrupt. */
#include "vmx/devices.h"
#include "lib/log.h"
#include "lib/string.h"

enum { THR = 0, IER = 1, IIR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };
#define LCR_DLAB 0x80
#define IER_RDI 0x01  /* received data available */
#define IER_THRI 0x02 /* transmitter holding register empty */
#define MCR_LOOP 0x10
#define MCR_OUT2 0x08
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define IIR_NONE 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_FIFO 0xc0

void uart_init(struct uart16550 *u)
{
    memset(u, 0, sizeof(*u));
}

void uart_flush_line(struct uart16550 *u, const char *name)
{
    if (!u->line_len)
        return;
    u->line[u->line_len] = '\0';
    log_raw("[%s] %s\n", name, u->line);
    u->line_len = 0;
}

static void console_put(struct uart16550 *u, uint8_t c, const char *name)
{
    u->bytes_out++;
    if (c == '\n') {
        /* An empty line is still a line of output, unless the newline only
         * ends a line already flushed because it filled the buffer. */
        if (!u->line_len && !u->line_wrapped)
            log_raw("[%s]\n", name);
        uart_flush_line(u, name);
        u->line_wrapped = false;
        return;
    }
    if (c == '\r' || c == 0)
        return;
    if (c < 0x20 && c != '\t')
        c = '?'; /* keep the host log printable */
    if (c >= 0x7f)
        c = '?';
    u->line[u->line_len++] = (char)c;
    u->line_wrapped = false;
    if (u->line_len >= CONSOLE_LINE) {
        uart_flush_line(u, name);
        u->line_wrapped = true;
    }
}

static bool rx_ready(const struct uart16550 *u)
{
    return u->rx_count > 0;
}

void uart_write(struct uart16550 *u, uint16_t off, uint8_t v, const char *name)
{
    bool dlab = u->lcr & LCR_DLAB;
    switch (off) {
    case THR:
        if (dlab) {
            u->dll = v;
            return;
        }
        if (u->mcr & MCR_LOOP) {
            if (u->rx_count < UART_RX_SIZE) {
                u->rx[(u->rx_head + u->rx_count) % UART_RX_SIZE] = v;
                u->rx_count++;
            }
        } else {
            console_put(u, v, name);
        }
        u->thre_pending = true;
        return;
    case IER:
        if (dlab) {
            u->dlm = v;
            return;
        }
        /* Enabling THRI while THR is empty raises the interrupt at once. */
        if ((v & IER_THRI) && !(u->ier & IER_THRI))
            u->thre_pending = true;
        u->ier = v & 0x0f;
        return;
    case IIR: /* FCR on write */
        u->fcr = v;
        if (v & 0x02) /* clear receive FIFO */
            u->rx_count = 0;
        return;
    case LCR:
        u->lcr = v;
        return;
    case MCR:
        u->mcr = v & 0x1f;
        return;
    case SCR:
        u->scr = v;
        return;
    default:
        return; /* LSR and MSR are read-only */
    }
}

uint8_t uart_read(struct uart16550 *u, uint16_t off)
{
    bool dlab = u->lcr & LCR_DLAB;
    switch (off) {
    case THR: /* RBR */
        if (dlab)
            return u->dll;
        if (!rx_ready(u))
            return 0;
        {
            uint8_t c = u->rx[u->rx_head];
            u->rx_head = (uint8_t)((u->rx_head + 1) % UART_RX_SIZE);
            u->rx_count--;
            return c;
        }
    case IER:
        return dlab ? u->dlm : u->ier;
    case IIR: {
        uint8_t fifo = (u->fcr & 1) ? IIR_FIFO : 0;
        if ((u->ier & IER_RDI) && rx_ready(u))
            return fifo | IIR_RDI;
        if ((u->ier & IER_THRI) && u->thre_pending) {
            u->thre_pending = false; /* reading IIR clears a THRE source */
            return fifo | IIR_THRI;
        }
        return fifo | IIR_NONE;
    }
    case LCR:
        return u->lcr;
    case MCR:
        return u->mcr;
    case LSR:
        return (uint8_t)(LSR_THRE | LSR_TEMT | (rx_ready(u) ? LSR_DR : 0));
    case MSR:
        if (u->mcr & MCR_LOOP) {
            /* Loopback: CTS=RTS, DSR=DTR, RI=OUT1, DCD=OUT2. */
            return (uint8_t)(((u->mcr & 0x02) ? 0x10 : 0) | ((u->mcr & 0x01) ? 0x20 : 0) |
                             ((u->mcr & 0x04) ? 0x40 : 0) | ((u->mcr & 0x08) ? 0x80 : 0));
        }
        return 0xb0; /* DCD, DSR, CTS: a terminal is attached */
    case SCR:
        return u->scr;
    default:
        return 0xff;
    }
}

bool uart_irq_line(const struct uart16550 *u)
{
    /* On a PC the UART's interrupt reaches the PIC only with OUT2 set. */
    if (!(u->mcr & MCR_OUT2) || (u->mcr & MCR_LOOP))
        return false;
    return ((u->ier & IER_RDI) && rx_ready(u)) || ((u->ier & IER_THRI) && u->thre_pending);
}

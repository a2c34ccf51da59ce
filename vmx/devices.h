/* The guest-visible platform, version 1: 8259A PIC pair, 8254 PIT, 16550
 * UART (COM1, IRQ 4), CMOS RTC, i8042 stub with reset, port 0x92 and PCI
 * configuration space with one host bridge. The models are plain C over
 * their own state and an explicit clock (TSC ticks), with no VMX in them:
 * vmx/platform.c routes port I/O to them, and the host tests drive them
 * directly. */
#ifndef VMX_DEVICES_H
#define VMX_DEVICES_H
#include <stdbool.h>
#include <stdint.h>

struct pic8259 {
    uint8_t irr, isr, imr;
    uint8_t vector_base;
    uint8_t init_step;  /* 0: ready; 1..3: expecting ICW2..ICW4 */
    bool icw4_needed, single, auto_eoi, read_isr, special_mask;
    uint8_t lines;      /* current input levels, for edge detection */
    uint8_t elcr;       /* level-triggered inputs (ELCR, ports 0x4d0/0x4d1) */
};

struct pic_pair {
    struct pic8259 chip[2]; /* master, slave (on master IRQ 2) */
};

struct pit_channel {
    uint16_t reload;       /* 0 means 65536 */
    uint8_t mode;          /* 0..5 */
    uint8_t access;        /* 1 lo, 2 hi, 3 lo/hi */
    bool bcd;
    bool write_hi_next, read_hi_next;
    uint8_t write_lo;
    bool latched;
    uint16_t latch;
    bool status_latched;
    uint8_t status;
    bool armed;            /* a count has been written since the mode */
    bool gate;
    uint64_t start_tsc;    /* when counting started (count loaded) */
    uint64_t next_irq_tick; /* channel 0: PIT tick (since start) of the next edge */
    uint64_t next_irq_tsc;  /* ... and the TSC at which it is due */
};

struct pit8254 {
    struct pit_channel ch[3];
    uint64_t tsc_hz;
    uint64_t pit_per_tsc_q64;   /* PIT ticks per TSC tick, 0.64 fixed point */
    bool speaker_data;
};

#define UART_RX_SIZE 64
#define CONSOLE_LINE 240

struct uart16550 {
    uint8_t ier, lcr, mcr, scr, fcr, dll, dlm;
    bool thre_pending;  /* THR-empty interrupt pending (cleared by IIR read) */
    uint8_t rx[UART_RX_SIZE];
    uint8_t rx_head, rx_count;
    /* Console: guest output collected into lines. */
    char line[CONSOLE_LINE + 1];
    uint16_t line_len;
    bool line_wrapped;  /* the last flush was a full buffer, not a newline */
    uint64_t bytes_out;
};

struct rtc_cmos {
    uint8_t index;
    uint8_t reg_b;
    uint64_t epoch;        /* seconds since 1970 at boot */
    uint8_t ram[128];
};

struct platform {
    struct pic_pair pic;
    struct pit8254 pit;
    struct uart16550 uart;
    struct rtc_cmos rtc;
    uint32_t pci_addr;
    uint8_t port92;
    bool reset_requested;
    /* Where complete console lines go ("[name] line"). */
    const char *console_name;
};

/* PIC */
void pic_init(struct pic_pair *p);
/* Sets an input line level; a rising edge (or a high level on a
 * level-triggered input) raises the request. */
void pic_set_irq(struct pic_pair *p, int irq, bool level);
/* Highest-priority deliverable vector, or -1. */
int pic_pending_vector(const struct pic_pair *p);
/* Acknowledge: the CPU takes the interrupt (IRR -> ISR); returns the vector. */
int pic_ack(struct pic_pair *p);
void pic_write(struct pic_pair *p, uint16_t port, uint8_t v);
uint8_t pic_read(struct pic_pair *p, uint16_t port);

/* PIT */
void pit_init(struct pit8254 *t, uint64_t tsc_hz, uint64_t now);
void pit_write(struct pit8254 *t, uint16_t port, uint8_t v, uint64_t now);
uint8_t pit_read(struct pit8254 *t, uint16_t port, uint64_t now);
/* Port 0x61: gate of channel 2 (bit 0), speaker (bit 1), output of
 * channel 2 (bit 5), refresh toggle (bit 4). */
void pit_write_port61(struct pit8254 *t, uint8_t v, uint64_t now);
uint8_t pit_read_port61(struct pit8254 *t, uint64_t now);
/* Channel 0 interrupts due by now (0 or more; missed ticks are coalesced
 * to one). */
int pit_irq0_due(struct pit8254 *t, uint64_t now);
/* TSC of the next channel-0 interrupt, or UINT64_MAX. */
uint64_t pit_next_deadline(const struct pit8254 *t);

/* UART */
void uart_init(struct uart16550 *u);
void uart_write(struct uart16550 *u, uint16_t off, uint8_t v, const char *name);
uint8_t uart_read(struct uart16550 *u, uint16_t off);
bool uart_irq_line(const struct uart16550 *u);
void uart_flush_line(struct uart16550 *u, const char *name);

/* RTC */
void rtc_init(struct rtc_cmos *r, uint64_t epoch);
void rtc_write(struct rtc_cmos *r, uint16_t port, uint8_t v);
uint8_t rtc_read(struct rtc_cmos *r, uint16_t port, uint64_t seconds_since_boot);

/* Port dispatch for the whole platform: 1, 2 or 4 bytes. Returns false for
 * a port no device claims (reads then see all ones). */
bool platform_io(struct platform *pl, uint16_t port, int size, bool in, uint32_t *val,
                 uint64_t now, uint64_t tsc_hz);
void platform_init(struct platform *pl, const char *name, uint64_t tsc_hz, uint64_t now);
/* Propagates device interrupt lines into the PIC. */
void platform_update_irqs(struct platform *pl, uint64_t now);
#endif

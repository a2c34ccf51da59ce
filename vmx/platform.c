/* Port I/O routing for the guest platform, and the small devices that need
 * no file of their own: i8042 (absent, but its reset command works), port
 * 0x92, the reset-control register 0xCF9, POST port 0x80 and PCI
 * configuration mechanism #1 with a single i440FX host bridge. */
#include "vmx/devices.h"
#include "lib/string.h"

#define IRQ_PIT 0
#define IRQ_COM1 4
#define COM1 0x3f8
#define RTC_EPOCH 1767225600ULL /* 2026-01-01 00:00:00 UTC */

void platform_init(struct platform *pl, const char *name, uint64_t tsc_hz, uint64_t now)
{
    memset(pl, 0, sizeof(*pl));
    pl->console_name = name;
    pic_init(&pl->pic);
    pit_init(&pl->pit, tsc_hz, now);
    uart_init(&pl->uart);
    rtc_init(&pl->rtc, RTC_EPOCH);
    pl->port92 = 0x02; /* A20 enabled */
}

void platform_update_irqs(struct platform *pl, uint64_t now)
{
    if (pit_irq0_due(&pl->pit, now)) {
        pic_set_irq(&pl->pic, IRQ_PIT, true); /* an edge */
        pic_set_irq(&pl->pic, IRQ_PIT, false);
    }
    pic_set_irq(&pl->pic, IRQ_COM1, uart_irq_line(&pl->uart));
}

/* Configuration space of 00:00.0, an i440FX host bridge; nothing else. */
static uint32_t pci_read(uint32_t addr)
{
    if (!(addr & 0x80000000u))
        return 0xffffffffu;
    unsigned bus = (addr >> 16) & 0xff, dev = (addr >> 11) & 0x1f, fn = (addr >> 8) & 7;
    unsigned reg = addr & 0xfc;
    if (bus || dev || fn)
        return 0xffffffffu;
    switch (reg) {
    case 0x00: return 0x12378086u; /* device 1237, vendor 8086 */
    case 0x04: return 0x00000006u; /* memory + bus master enabled */
    case 0x08: return 0x06000002u; /* class 06:00:00, revision 2 */
    case 0x0c: return 0x00000000u; /* header type 0, single function */
    default: return 0;
    }
}

static uint32_t sub_read(uint32_t v, unsigned off, int size)
{
    v >>= 8 * off;
    return size == 4 ? v : v & ((1u << (8 * size)) - 1);
}

bool platform_io(struct platform *pl, uint16_t port, int size, bool in, uint32_t *val,
                 uint64_t now, uint64_t tsc_hz)
{
    uint8_t b = (uint8_t)*val;
    switch (port) {
    case 0x20: case 0x21: case 0xa0: case 0xa1: case 0x4d0: case 0x4d1:
        if (in)
            *val = pic_read(&pl->pic, port);
        else
            pic_write(&pl->pic, port, b);
        return true;
    case 0x40: case 0x41: case 0x42: case 0x43:
        if (in)
            *val = port == 0x43 ? 0xff : pit_read(&pl->pit, port, now);
        else
            pit_write(&pl->pit, port, b, now);
        return true;
    case 0x61:
        if (in)
            *val = pit_read_port61(&pl->pit, now);
        else
            pit_write_port61(&pl->pit, b, now);
        return true;
    case 0x70: case 0x71:
        if (in)
            *val = rtc_read(&pl->rtc, port, tsc_hz ? now / tsc_hz : 0);
        else
            rtc_write(&pl->rtc, port, b);
        return true;
    case 0x60: case 0x64:
        /* No keyboard controller: all-ones status makes Linux's i8042
         * driver report "no controller". Command 0xFE still pulses reset. */
        if (in)
            *val = 0xff;
        else if (port == 0x64 && b == 0xfe)
            pl->reset_requested = true;
        return true;
    case 0x92:
        if (in) {
            *val = pl->port92;
        } else {
            if (b & 1)
                pl->reset_requested = true;
            pl->port92 = b & 0x02;
        }
        return true;
    case 0xcf9:
        if (in)
            *val = 0;
        else if (b & 0x04)
            pl->reset_requested = true;
        return true;
    case 0x80:
        if (in)
            *val = 0xff;
        return true; /* POST codes and I/O delays */
    case 0xcf8: case 0xcfa: case 0xcfb:
        /* Mechanism #1 takes dword accesses at 0xCF8 only. */
        if (port != 0xcf8 || size != 4) {
            if (in)
                *val = 0xffffffffu;
            return true;
        }
        if (in)
            *val = pl->pci_addr;
        else
            pl->pci_addr = *val & 0x80fffffcu;
        return true;
    case 0xcfc: case 0xcfd: case 0xcfe: case 0xcff:
        if (in)
            *val = sub_read(pci_read(pl->pci_addr), port & 3, size);
        return true; /* writes: the host bridge has nothing to configure */
    default:
        break;
    }
    if (port >= COM1 && port < COM1 + 8) {
        if (in)
            *val = uart_read(&pl->uart, port - COM1);
        else
            uart_write(&pl->uart, port - COM1, b, pl->console_name);
        return true;
    }
    if (in)
        *val = 0xffffffffu;
    return false;
}

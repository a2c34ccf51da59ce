/* CMOS real-time clock: time of day from a fixed epoch plus the VM's
 * running time (deterministic in Bochs), status registers A-D, and the
 * rest of the 128 bytes of CMOS RAM as plain storage. No RTC interrupts. */
#include "vmx/devices.h"
#include "lib/string.h"

#define REG_A 0x0a
#define REG_B 0x0b
#define REG_C 0x0c
#define REG_D 0x0d
#define B_24H 0x02
#define B_BINARY 0x04

void rtc_init(struct rtc_cmos *r, uint64_t epoch)
{
    memset(r, 0, sizeof(*r));
    r->epoch = epoch;
    r->reg_b = B_24H; /* BCD, 24-hour, as PC firmware leaves it */
}

void rtc_write(struct rtc_cmos *r, uint16_t port, uint8_t v)
{
    if (port == 0x70) {
        r->index = v & 0x7f; /* bit 7 is the NMI mask */
        return;
    }
    if (r->index == REG_B)
        r->reg_b = v & 0x7f; /* no SET-bit freeze: time keeps running */
    else if (r->index >= 0x0e)
        r->ram[r->index] = v;
}

static uint8_t enc(const struct rtc_cmos *r, unsigned v)
{
    if (r->reg_b & B_BINARY)
        return (uint8_t)v;
    return (uint8_t)(((v / 10) << 4) | (v % 10));
}

/* Civil date from days since 1970-01-01 (proleptic Gregorian). */
static void civil(uint64_t days, unsigned *y, unsigned *m, unsigned *d)
{
    uint64_t z = days + 719468;
    uint64_t era = z / 146097;
    uint64_t doe = z - era * 146097;
    uint64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    uint64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    uint64_t mp = (5 * doy + 2) / 153;
    *d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    *m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    *y = (unsigned)(yoe + era * 400 + (*m <= 2));
}

uint8_t rtc_read(struct rtc_cmos *r, uint16_t port, uint64_t seconds_since_boot)
{
    if (port == 0x70)
        return r->index;
    uint64_t t = r->epoch + seconds_since_boot;
    unsigned sec = (unsigned)(t % 60), min = (unsigned)(t / 60 % 60),
             hour = (unsigned)(t / 3600 % 24);
    unsigned y, m, d;
    civil(t / 86400, &y, &m, &d);
    switch (r->index) {
    case 0x00: return enc(r, sec);
    case 0x02: return enc(r, min);
    case 0x04: return enc(r, hour);
    case 0x06: return enc(r, (unsigned)((t / 86400 + 4) % 7 + 1)); /* 1970-01-01: Thu */
    case 0x07: return enc(r, d);
    case 0x08: return enc(r, m);
    case 0x09: return enc(r, y % 100);
    case 0x32: return enc(r, y / 100);
    case REG_A: return 0x26; /* 32.768 kHz base, 1024 Hz rate, UIP clear */
    case REG_B: return r->reg_b;
    case REG_C: return 0;
    case REG_D: return 0x80; /* valid RAM and time */
    default: return r->index >= 0x0e ? r->ram[r->index] : 0;
    }
}

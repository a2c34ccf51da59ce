/* 8254 programmable interval timer. The counters are not ticked: their
 * value is computed from the TSC at the moment the guest looks, so a guest
 * that calibrates its TSC against the PIT (Linux does) gets the TSC's true
 * rate. Modes 0, 2, 3 and 4 are modelled (Linux uses 0 on channel 2 for
 * calibration, 2 periodic and 4 one-shot on channel 0); 1 and 5 behave as
 * their software-triggered counterparts. */
#include "vmx/devices.h"
#include "lib/string.h"

#define PIT_HZ 1193182ULL

/* floor((hi:lo) / d) for a quotient that fits in 64 bits; init only, so a
 * plain shift-and-subtract loop (no libgcc in the core). */
static uint64_t div128_64(uint64_t hi, uint64_t lo, uint64_t d)
{
    uint64_t q = 0, r = hi;
    for (int i = 63; i >= 0; i--) {
        bool carry = r >> 63;
        r = (r << 1) | ((lo >> i) & 1);
        if (carry || r >= d) {
            r -= d;
            q |= 1ULL << i;
        }
    }
    return q;
}

static uint32_t period(const struct pit_channel *c)
{
    return c->reload ? c->reload : 65536;
}

/* PIT ticks since the channel started counting: the TSC delta times
 * PIT_HZ / tsc_hz, in 0.64 fixed point (error below one tick per 2^64). */
static uint64_t elapsed(const struct pit8254 *t, const struct pit_channel *c, uint64_t now)
{
    if (!c->armed || !c->gate || now < c->start_tsc)
        return 0;
    return (uint64_t)(((unsigned __int128)(now - c->start_tsc) * t->pit_per_tsc_q64) >> 64);
}

/* First TSC at which `ticks` PIT ticks have passed: exact, rounded up. */
static uint64_t tsc_at(const struct pit8254 *t, const struct pit_channel *c, uint64_t ticks)
{
    uint64_t q = ticks / PIT_HZ, r = ticks % PIT_HZ;
    return c->start_tsc + q * t->tsc_hz + (r * t->tsc_hz + PIT_HZ - 1) / PIT_HZ;
}

static uint16_t count_now(const struct pit8254 *t, const struct pit_channel *c, uint64_t now)
{
    if (!c->armed)
        return c->reload;
    uint64_t e = elapsed(t, c, now);
    uint32_t p = period(c);
    switch (c->mode & 7) {
    case 2:
    case 3:
    case 6:
    case 7:
        return (uint16_t)(p - (uint32_t)(e % p));
    default: /* 0, 1, 4, 5: count down once, then wrap through 0xffff */
        return (uint16_t)(p - (uint32_t)(e & 0xffff));
    }
}

static bool out_now(const struct pit8254 *t, const struct pit_channel *c, uint64_t now)
{
    if (!c->armed)
        return (c->mode & 7) != 0;
    uint64_t e = elapsed(t, c, now);
    uint32_t p = period(c);
    switch (c->mode & 7) {
    case 0:
    case 1:
        return e >= p;
    case 3:
    case 7:
        return (e % p) < (p + 1) / 2;
    default:
        return true; /* modes 2 and 4 pulse low for a single tick */
    }
}

static bool periodic(const struct pit_channel *c)
{
    return (c->mode & 7) == 2 || (c->mode & 7) == 3 || (c->mode & 7) >= 6;
}

/* Channel 0 drives IRQ 0: its next edge is kept as a PIT tick count since
 * the count was loaded, so that firing at exactly the deadline moves it on
 * by whole periods (and missed periods coalesce into one interrupt). */
static void arm_irq(struct pit8254 *t, struct pit_channel *c)
{
    if (c != &t->ch[0])
        return;
    if (!c->armed || !c->gate) {
        c->next_irq_tsc = UINT64_MAX;
        return;
    }
    c->next_irq_tick = period(c);
    c->next_irq_tsc = tsc_at(t, c, c->next_irq_tick);
}

void pit_init(struct pit8254 *t, uint64_t tsc_hz, uint64_t now)
{
    memset(t, 0, sizeof(*t));
    t->tsc_hz = tsc_hz > PIT_HZ ? tsc_hz : 1000000000ULL;
    t->pit_per_tsc_q64 = div128_64(PIT_HZ, 0, t->tsc_hz);
    for (int i = 0; i < 3; i++) {
        t->ch[i].gate = i != 2; /* channel 2's gate is port 0x61 bit 0 */
        t->ch[i].access = 3;
        t->ch[i].next_irq_tsc = UINT64_MAX;
    }
    (void)now;
}

static void load_count(struct pit8254 *t, struct pit_channel *c, uint16_t v, uint64_t now)
{
    c->reload = v;
    c->armed = true;
    c->start_tsc = now;
    arm_irq(t, c);
}

void pit_write(struct pit8254 *t, uint16_t port, uint8_t v, uint64_t now)
{
    if (port == 0x43) {
        int sel = v >> 6;
        if (sel == 3) { /* read-back command */
            for (int i = 0; i < 3; i++) {
                if (!(v & (2u << i)))
                    continue;
                struct pit_channel *c = &t->ch[i];
                if (!(v & 0x20) && !c->latched) {
                    c->latch = count_now(t, c, now);
                    c->latched = true;
                    c->read_hi_next = false;
                }
                if (!(v & 0x10) && !c->status_latched) {
                    c->status = (uint8_t)((out_now(t, c, now) ? 0x80 : 0) |
                                          (c->armed ? 0 : 0x40) | (c->access << 4) |
                                          (c->mode << 1) | (c->bcd ? 1 : 0));
                    c->status_latched = true;
                }
            }
            return;
        }
        struct pit_channel *c = &t->ch[sel];
        uint8_t access = (v >> 4) & 3;
        if (access == 0) { /* counter latch command */
            if (!c->latched) {
                c->latch = count_now(t, c, now);
                c->latched = true;
                c->read_hi_next = false;
            }
            return;
        }
        c->access = access;
        c->mode = (v >> 1) & 7;
        c->bcd = v & 1;
        c->armed = false;
        c->write_hi_next = false;
        c->read_hi_next = false;
        c->latched = false;
        if (sel == 0)
            c->next_irq_tsc = UINT64_MAX;
        return;
    }
    struct pit_channel *c = &t->ch[port & 3];
    switch (c->access) {
    case 1:
        load_count(t, c, v, now);
        break;
    case 2:
        load_count(t, c, (uint16_t)(v << 8), now);
        break;
    default:
        if (!c->write_hi_next) {
            c->write_lo = v;
            c->write_hi_next = true;
        } else {
            c->write_hi_next = false;
            load_count(t, c, (uint16_t)(c->write_lo | v << 8), now);
        }
        break;
    }
}

uint8_t pit_read(struct pit8254 *t, uint16_t port, uint64_t now)
{
    struct pit_channel *c = &t->ch[port & 3];
    if (c->status_latched) {
        c->status_latched = false;
        return c->status;
    }
    uint16_t v = c->latched ? c->latch : count_now(t, c, now);
    uint8_t r;
    switch (c->access) {
    case 1:
        r = (uint8_t)v;
        c->latched = false;
        break;
    case 2:
        r = (uint8_t)(v >> 8);
        c->latched = false;
        break;
    default:
        r = c->read_hi_next ? (uint8_t)(v >> 8) : (uint8_t)v;
        if (c->read_hi_next)
            c->latched = false;
        c->read_hi_next = !c->read_hi_next;
        break;
    }
    return r;
}

void pit_write_port61(struct pit8254 *t, uint8_t v, uint64_t now)
{
    struct pit_channel *c = &t->ch[2];
    bool gate = v & 1;
    if (gate && !c->gate) {
        /* A rising gate (re)starts the count (modes 1, 5; and the common
         * "gate on, then poll OUT" calibration sequence in mode 0). */
        c->start_tsc = now;
    }
    c->gate = gate;
    t->speaker_data = v & 2;
}

uint8_t pit_read_port61(struct pit8254 *t, uint64_t now)
{
    const struct pit_channel *c = &t->ch[2];
    /* Bit 4 toggles with DRAM refresh (every 15 us); some code waits on it. */
    uint8_t refresh =
        (uint8_t)(((uint64_t)(((unsigned __int128)now * t->pit_per_tsc_q64) >> 64) / 18) & 1);
    return (uint8_t)((c->gate ? 1 : 0) | (t->speaker_data ? 2 : 0) | (refresh << 4) |
                     (out_now(t, c, now) ? 0x20 : 0));
}

int pit_irq0_due(struct pit8254 *t, uint64_t now)
{
    struct pit_channel *c = &t->ch[0];
    if (c->next_irq_tsc > now)
        return 0;
    if (!periodic(c)) {
        c->next_irq_tsc = UINT64_MAX; /* one-shot: fired */
        return 1;
    }
    uint64_t p = period(c);
    /* Skip to the first edge after now: missed periods coalesce. */
    uint64_t e = elapsed(t, c, now);
    uint64_t next = (e / p + 1) * p;
    if (next <= c->next_irq_tick)
        next = c->next_irq_tick + p;
    while (tsc_at(t, c, next) <= now)
        next += p;
    c->next_irq_tick = next;
    c->next_irq_tsc = tsc_at(t, c, next);
    return 1;
}

uint64_t pit_next_deadline(const struct pit8254 *t)
{
    return t->ch[0].next_irq_tsc;
}

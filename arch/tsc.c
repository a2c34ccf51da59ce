#include "arch/tsc.h"
#include "arch/cpu.h"
#include "lib/log.h"

static uint64_t hz;

/* PIT (8254) ports and channel 2 gate through port 0x61. */
#define PIT_CH2 0x42
#define PIT_CMD 0x43
#define PIT_GATE 0x61
#define PIT_HZ 1193182ULL

/* Counts TSC ticks over a fixed number of PIT ticks on channel 2 in mode 0
 * (interrupt on terminal count, output visible in port 0x61 bit 5). Takes
 * the best of a few runs: an SMI or emulator hiccup only lengthens a run. */
static uint64_t calibrate_pit(void)
{
    const uint32_t pit_ticks = 11932; /* ~10 ms */
    uint64_t best = 0;
    for (int run = 0; run < 3; run++) {
        uint8_t g = inb(PIT_GATE);
        outb(PIT_GATE, (uint8_t)((g & ~0x02) | 0x01)); /* gate on, speaker off */
        outb(PIT_CMD, 0xb0);                          /* ch2, lo/hi, mode 0, binary */
        outb(PIT_CH2, pit_ticks & 0xff);
        outb(PIT_CH2, pit_ticks >> 8);
        uint64_t t0 = rdtsc();
        uint64_t spins = 0;
        while (!(inb(PIT_GATE) & 0x20)) {
            if (++spins > 100000000ULL)
                return 0; /* no PIT */
        }
        uint64_t dt = rdtsc() - t0;
        if (!best || dt < best)
            best = dt;
    }
    return best * PIT_HZ / pit_ticks;
}

void tsc_init(struct tsc_info *out)
{
    uint32_t a, b, c, d, max;
    cpuid(0, 0, &max, &b, &c, &d);
    out->hz = 0;
    out->source = "none";
    if (max >= 0x15) {
        cpuid(0x15, 0, &a, &b, &c, &d);
        if (a && b && c) {
            out->hz = (uint64_t)c * b / a;
            out->source = "cpuid 0x15";
        }
    }
    if (!out->hz && max >= 0x16) {
        cpuid(0x16, 0, &a, &b, &c, &d);
        if (a & 0xffff) {
            out->hz = (uint64_t)(a & 0xffff) * 1000000ULL;
            out->source = "cpuid 0x16";
        }
    }
    /* CPUID states the nominal rate; emulators and some hypervisors run
     * the TSC at another one (Bochs: one tick per emulated instruction).
     * Measure anyway and trust the PIT when the two disagree by >10%. */
    uint64_t measured = calibrate_pit();
    if (!out->hz) {
        out->hz = measured;
        out->source = "PIT calibration";
    } else if (measured && (measured * 10 < out->hz * 9 || measured * 10 > out->hz * 11)) {
        pr_info(LS_ARCH, "TSC: %s says %llu kHz but the PIT measures %llu kHz; "
                         "using the measurement",
                out->source, (unsigned long long)(out->hz / 1000),
                (unsigned long long)(measured / 1000));
        out->hz = measured;
        out->source = "PIT calibration (CPUID value disagreed)";
    }
    if (!out->hz) {
        out->hz = 1000000000ULL;
        out->source = "guess (no PIT)";
        pr_warn(LS_ARCH, "TSC frequency unknown; assuming 1 GHz");
    }
    hz = out->hz;
}

uint64_t tsc_hz(void)
{
    return hz;
}

uint64_t tsc_to_us(uint64_t ticks)
{
    if (!hz)
        return 0;
    /* Split to avoid overflow without 128-bit division (no libgcc here). */
    return ticks / hz * 1000000ULL + ticks % hz * 1000000ULL / hz;
}

void tsc_delay_us(uint64_t us)
{
    uint64_t end = rdtsc() + us / 1000000ULL * hz + us % 1000000ULL * hz / 1000000ULL;
    while (rdtsc() < end)
        pause();
}

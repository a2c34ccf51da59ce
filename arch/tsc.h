#ifndef ARCH_TSC_H
#define ARCH_TSC_H
#include <stdint.h>

struct tsc_info {
    uint64_t hz;
    const char *source; /* "cpuid 0x15", "cpuid 0x16", "PIT calibration" */
};

/* Finds the TSC frequency: CPUID leaf 0x15 (crystal ratio), else 0x16
 * (base MHz), else calibration against PIT channel 2. */
void tsc_init(struct tsc_info *out);
uint64_t tsc_hz(void);
uint64_t tsc_to_us(uint64_t ticks);
/* Busy-wait (PIT-free once calibrated). */
void tsc_delay_us(uint64_t us);
#endif

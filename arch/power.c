#include "arch/power.h"
#include "arch/acpi.h"
#include "arch/cpu.h"
#include "arch/tsc.h"
#include "lib/log.h"

#define QEMU_DEBUG_EXIT_PORT 0xf4
#define BOCHS_SHUTDOWN_PORT 0x8900
#define SLP_EN (1u << 13)

void power_off(int status)
{
    cli();
    pr_info(LS_HV, "power-off: status %d (%s)", status, status ? "failure" : "success");

    /* QEMU with -device isa-debug-exit,iobase=0xf4: exits with
     * (value << 1) | 1. 0x10 -> 33 (success), 0x11 -> 35 (failure). */
    outb(QEMU_DEBUG_EXIT_PORT, (uint8_t)(0x10 | (status ? 1 : 0)));

    /* Bochs: the bytes of "Shutdown" to port 0x8900. */
    for (const char *p = "Shutdown"; *p; p++)
        outb(BOCHS_SHUTDOWN_PORT, (uint8_t)*p);

    const struct acpi_info *a = acpi_get();
    if (a->pm1a_cnt && a->s5_found) {
        outw((uint16_t)a->pm1a_cnt, (uint16_t)((a->slp_typ_a << 10) | SLP_EN));
        if (a->pm1b_cnt)
            outw((uint16_t)a->pm1b_cnt, (uint16_t)((a->slp_typ_b << 10) | SLP_EN));
    }
    /* Emulators act on these writes asynchronously: give them a moment
     * before declaring failure. */
    if (tsc_hz())
        tsc_delay_us(500000);
    else
        for (volatile unsigned long i = 0; i < 100000000UL; i++)
            ;
    log_raw("[hv] power-off failed: halting\n");
    halt_forever();
}

#ifndef ARCH_ACPI_H
#define ARCH_ACPI_H
#include <stdbool.h>
#include <stdint.h>

struct acpi_info {
    bool present;
    uint64_t fadt;
    uint32_t pm1a_cnt, pm1b_cnt; /* I/O ports, 0 if absent */
    uint16_t slp_typ_a, slp_typ_b;
    bool s5_found;
};

/* Validates the RSDP and tables it reaches (checksums), finds the FADT and
 * the \_S5 sleep type in the DSDT. Safe with rsdp == 0. */
void acpi_init(uint64_t rsdp, struct acpi_info *out);
const struct acpi_info *acpi_get(void);
#endif

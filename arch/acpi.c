/* Just enough ACPI to power off: RSDP -> XSDT/RSDT -> FADT -> PM1 control
 * ports and the DSDT's \_S5 package (ACPI 6.4, 5.2 and 7.4.2). */
#include "arch/acpi.h"
#include "lib/log.h"
#include "lib/string.h"

static struct acpi_info info;

const struct acpi_info *acpi_get(void)
{
    return &info;
}

static bool checksum_ok(const uint8_t *p, uint32_t len)
{
    uint8_t sum = 0;
    for (uint32_t i = 0; i < len; i++)
        sum = (uint8_t)(sum + p[i]);
    return sum == 0;
}

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* A table header of at most 16 MiB with a good checksum. */
static const uint8_t *table_at(uint64_t pa, const char *sig)
{
    if (!pa)
        return NULL;
    const uint8_t *t = (const uint8_t *)pa;
    uint32_t len = rd32(t + 4);
    if (len < 36 || len > (16u << 20))
        return NULL;
    if (sig && memcmp(t, sig, 4))
        return NULL;
    if (!checksum_ok(t, len)) {
        pr_warn(LS_ARCH, "ACPI table %.4s at %#llx has a bad checksum; ignored",
                (const char *)t, (unsigned long long)pa);
        return NULL;
    }
    return t;
}

/* AML: an integer element of a package (ZeroOp, OneOp, BytePrefix, or a raw
 * small value as some firmwares emit). Returns bytes consumed. */
static int aml_small_int(const uint8_t *p, uint16_t *v)
{
    if (p[0] == 0x0a) { /* BytePrefix */
        *v = p[1];
        return 2;
    }
    if (p[0] == 0x0b) { /* WordPrefix */
        *v = (uint16_t)(p[1] | p[2] << 8);
        return 3;
    }
    *v = p[0] == 0x01 ? 1 : p[0] == 0xff ? 0xff : p[0];
    return 1;
}

static void find_s5(const uint8_t *dsdt)
{
    uint32_t len = rd32(dsdt + 4);
    for (uint32_t i = 36; i + 12 < len; i++) {
        /* NameOp '_S5_' PackageOp */
        if (dsdt[i] != 0x08 || memcmp(dsdt + i + 1, "_S5_", 4) || dsdt[i + 5] != 0x12)
            continue;
        const uint8_t *p = dsdt + i + 6;
        p += 1 + (p[0] >> 6); /* PkgLength: bits 7-6 give the extra bytes */
        p++;                  /* NumElements */
        p += aml_small_int(p, &info.slp_typ_a);
        aml_small_int(p, &info.slp_typ_b);
        info.s5_found = true;
        return;
    }
}

void acpi_init(uint64_t rsdp_pa, struct acpi_info *out)
{
    memset(&info, 0, sizeof(info));
    if (!rsdp_pa) {
        pr_info(LS_ARCH, "ACPI: no RSDP from the firmware");
        goto done;
    }
    const uint8_t *rsdp = (const uint8_t *)rsdp_pa;
    if (memcmp(rsdp, "RSD PTR ", 8) || !checksum_ok(rsdp, 20)) {
        pr_warn(LS_ARCH, "ACPI: RSDP at %#llx is invalid", (unsigned long long)rsdp_pa);
        goto done;
    }
    uint8_t rev = rsdp[15];
    const uint8_t *root = NULL;
    int entry_size = 4;
    if (rev >= 2 && checksum_ok(rsdp, rd32(rsdp + 20) < 36 ? 36 : rd32(rsdp + 20))) {
        root = table_at(rd64(rsdp + 24), "XSDT");
        entry_size = 8;
    }
    if (!root) {
        root = table_at(rd32(rsdp + 16), "RSDT");
        entry_size = 4;
    }
    if (!root) {
        pr_warn(LS_ARCH, "ACPI: no valid RSDT/XSDT");
        goto done;
    }
    info.present = true;
    uint32_t n = (rd32(root + 4) - 36) / (uint32_t)entry_size;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *e = root + 36 + i * (uint32_t)entry_size;
        uint64_t pa = entry_size == 8 ? rd64(e) : rd32(e);
        const uint8_t *fadt = table_at(pa, "FACP");
        if (!fadt)
            continue;
        info.fadt = pa;
        uint32_t flen = rd32(fadt + 4);
        info.pm1a_cnt = rd32(fadt + 64);
        info.pm1b_cnt = rd32(fadt + 68);
        uint64_t dsdt = rd32(fadt + 40);
        if (flen >= 148 && rd64(fadt + 140))
            dsdt = rd64(fadt + 140);
        const uint8_t *d = table_at(dsdt, "DSDT");
        if (d)
            find_s5(d);
        break;
    }
    pr_info(LS_ARCH, "ACPI: rev %u, FADT %s, PM1a_CNT %#x, \\_S5 %s (SLP_TYPa=%u)",
            rev, info.fadt ? "found" : "missing", info.pm1a_cnt,
            info.s5_found ? "found" : "missing", info.slp_typ_a);
done:
    if (out)
        *out = info;
}

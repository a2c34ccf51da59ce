#include "drivers/pci.h"
#include "arch/cpu.h"
#include "lib/log.h"

#define PCI_CONFIG_ADDRESS 0xcf8
#define PCI_CONFIG_DATA 0xcfc

static struct pci_dev devs[PCI_MAX_DEVICES];
static int ndevs;

static uint32_t cfg_addr(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off)
{
    return 0x80000000u | (uint32_t)bus << 16 | (uint32_t)(dev & 31) << 11 |
           (uint32_t)(fn & 7) << 8 | (off & 0xfc);
}

uint32_t pci_read32(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off)
{
    outl(PCI_CONFIG_ADDRESS, cfg_addr(bus, dev, fn, off));
    return inl(PCI_CONFIG_DATA);
}

void pci_write32(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off, uint32_t v)
{
    outl(PCI_CONFIG_ADDRESS, cfg_addr(bus, dev, fn, off));
    outl(PCI_CONFIG_DATA, v);
}

const char *pci_class_name(uint8_t cls, uint8_t sub, uint8_t prog_if)
{
    switch (cls) {
    case 0x01:
        if (sub == 0x08 && prog_if == 0x02)
            return "NVMe controller";
        if (sub == 0x01)
            return "IDE controller";
        if (sub == 0x06)
            return "SATA controller";
        return "storage controller";
    case 0x02:
        return "network controller";
    case 0x03:
        return "display controller";
    case 0x06:
        switch (sub) {
        case 0x00: return "host bridge";
        case 0x01: return "ISA bridge";
        case 0x04: return "PCI-to-PCI bridge";
        case 0x80: return "bridge (other)";
        default: return "bridge";
        }
    case 0x0c:
        if (sub == 0x03)
            return "USB controller";
        if (sub == 0x05)
            return "SMBus controller";
        return "serial bus controller";
    default:
        return "device";
    }
}

static void record(uint8_t bus, uint8_t dev, uint8_t fn, uint32_t id)
{
    uint32_t cls = pci_read32(bus, dev, fn, 0x08);
    uint32_t hdr = pci_read32(bus, dev, fn, 0x0c);
    struct pci_dev d = {
        .bus = bus, .dev = dev, .fn = fn,
        .vendor = (uint16_t)id, .device = (uint16_t)(id >> 16),
        .class_code = (uint8_t)(cls >> 24), .subclass = (uint8_t)(cls >> 16),
        .prog_if = (uint8_t)(cls >> 8), .header_type = (uint8_t)(hdr >> 16),
    };
    pr_info(LS_DRV, "pci %02x:%02x.%x %04x:%04x class %02x:%02x:%02x (%s)", bus, dev,
            fn, d.vendor, d.device, d.class_code, d.subclass, d.prog_if,
            pci_class_name(d.class_code, d.subclass, d.prog_if));
    if (ndevs < PCI_MAX_DEVICES)
        devs[ndevs++] = d;
    else
        pr_warn(LS_DRV, "pci: more than %d functions; the rest are not recorded",
                PCI_MAX_DEVICES);
}

int pci_enumerate(void)
{
    ndevs = 0;
    for (int bus = 0; bus < 256; bus++) {
        for (int dev = 0; dev < 32; dev++) {
            uint32_t id = pci_read32((uint8_t)bus, (uint8_t)dev, 0, 0);
            if ((id & 0xffff) == 0xffff)
                continue;
            record((uint8_t)bus, (uint8_t)dev, 0, id);
            uint32_t hdr = pci_read32((uint8_t)bus, (uint8_t)dev, 0, 0x0c);
            if (!((hdr >> 16) & 0x80))
                continue; /* single-function device */
            for (int fn = 1; fn < 8; fn++) {
                id = pci_read32((uint8_t)bus, (uint8_t)dev, (uint8_t)fn, 0);
                if ((id & 0xffff) != 0xffff)
                    record((uint8_t)bus, (uint8_t)dev, (uint8_t)fn, id);
            }
        }
    }
    pr_info(LS_DRV, "pci: %d functions found", ndevs);
    return ndevs;
}

int pci_count(void)
{
    return ndevs;
}

const struct pci_dev *pci_get(int i)
{
    return i >= 0 && i < ndevs ? &devs[i] : NULL;
}

const struct pci_dev *pci_find_class(uint8_t cls, uint8_t sub, uint8_t prog_if)
{
    for (int i = 0; i < ndevs; i++)
        if (devs[i].class_code == cls && devs[i].subclass == sub &&
            devs[i].prog_if == prog_if)
            return &devs[i];
    return NULL;
}

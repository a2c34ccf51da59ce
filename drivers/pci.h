/* PCI configuration space through ports 0xCF8/0xCFC (mechanism #1). ACPI's
 * MCFG is not needed: Bochs has no ACPI tables and QEMU serves both. */
#ifndef DRIVERS_PCI_H
#define DRIVERS_PCI_H
#include <stdint.h>

#define PCI_MAX_DEVICES 64

struct pci_dev {
    uint8_t bus, dev, fn;
    uint16_t vendor, device;
    uint8_t class_code, subclass, prog_if, header_type;
};

uint32_t pci_read32(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off);
void pci_write32(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off, uint32_t v);

/* Scans every bus, records up to PCI_MAX_DEVICES functions and logs them. */
int pci_enumerate(void);
int pci_count(void);
const struct pci_dev *pci_get(int i);
/* First function with this class triple, or NULL. */
const struct pci_dev *pci_find_class(uint8_t cls, uint8_t sub, uint8_t prog_if);
const char *pci_class_name(uint8_t cls, uint8_t sub, uint8_t prog_if);
#endif

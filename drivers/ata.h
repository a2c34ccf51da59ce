/* ATA disks behind a PCI IDE controller (class 01:01), by polled PIO with
 * 48-bit LBA: the swap device in Bochs, which has no NVMe. Each disk found
 * is registered with the block layer as ata0 (primary master), ata1
 * (primary slave), ata2 (secondary master) or ata3 (secondary slave). */
#ifndef DRIVERS_ATA_H
#define DRIVERS_ATA_H

/* Finds the IDE controller and identifies the disks on both channels.
 * Returns the number of disks registered. */
int ata_probe(void);
#endif

/* Boot-time storage: the swap space named in hv.cfg (device, byte range
 * or MBR partition), its header check, and the device and swap-path
 * self-tests (swap_selftest = yes). */
#ifndef ARCH_STORAGE_H
#define ARCH_STORAGE_H
#include "boot/config.h"

/* Returns the number of failures (a configured swap device that cannot be
 * used counts as one; the hypervisor then runs without swap). */
int storage_setup(const struct hv_config *cfg);
#endif

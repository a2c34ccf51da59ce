/* The hypervisor's NVMe driver: one controller's namespace 1 as a block
 * device ("nvme0", "nvme1", ...), one I/O queue pair, polled completions.
 * Protocol details that need no hardware are in nvme_proto.c. */
#ifndef DRIVERS_NVME_H
#define DRIVERS_NVME_H

/* Finds NVMe controllers (PCI class 01:08:02), resets and enables each,
 * identifies it and namespace 1, creates the I/O queues and registers the
 * namespace. Returns the number of devices registered. */
int nvme_probe(void);
#endif

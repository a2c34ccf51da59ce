/* The hypervisor's NVMe driver: one controller's namespace 1 as a block
 * device ("nvme0", "nvme1", ...), one I/O queue pair, polled completions.
 * Protocol details that need no hardware are in nvme_proto.c. */
#ifndef DRIVERS_NVME_H
#define DRIVERS_NVME_H
#include <stdbool.h>
#include <stdint.h>

/* Finds NVMe controllers (PCI class 01:08:02), resets and enables each,
 * identifies it and namespace 1, creates the I/O queues and registers the
 * namespace. Returns the number of devices registered. */
int nvme_probe(void);
/* Test rig (nvme_test_hold = N in hv.cfg): the doorbell of the Nth I/O
 * command is never rung, so the command never reaches the controller and
 * the timeout path (reset, requeue) runs. 0: off. */
void nvme_test_hold(uint32_t nth);
/* Test rig (nvme_test_stuck = yes): the reset after a timeout is not done
 * (CC.EN stays 1), so the controller neither completes nor resets: the
 * driver gives it up with bus mastering off and reports the transfer as
 * lost (BLK_ELOST). */
void nvme_test_stuck(bool on);
#endif

/* EPT entries as the p2m code writes them (SDM Vol. 3C 29.3.2), built with
 * the shared walker of arch/pt.c. */
#ifndef MM_EPT_H
#define MM_EPT_H
#include <stdint.h>

#include "arch/pt.h"

#define EPT_R (1ULL << 0)
#define EPT_W (1ULL << 1)
#define EPT_X (1ULL << 2)
#define EPT_RWX (EPT_R | EPT_W | EPT_X)
#define EPT_MT_WB (6ULL << 3)
#define EPT_LARGE (1ULL << 7)
#define EPT_A (1ULL << 8)
#define EPT_D (1ULL << 9)
/* EPTP: write-back paging structures, 4-level walk, A/D enable (25.6.11). */
#define EPTP_WB 6ULL
#define EPTP_WALK4 (3ULL << 3)
#define EPTP_AD (1ULL << 6)

extern const struct pt_fmt pt_fmt_ept;

/* INVEPT for one EPT: provided by the VMX layer in the hypervisor and by
 * the hardware model in the simulator. */
void mm_invept(uint64_t eptp);
#endif

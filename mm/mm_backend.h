/* What mm/ needs from the world it runs in. Three implementations, chosen
 * at link time: arch/ and vmx/ (the hypervisor: the direct map is the
 * identity map; mm_invept is vmx/vmx.c's), tests/host/backend.c (an arena
 * of host memory standing in for machine memory) and the simulator's
 * tests/sim/model.c (the same, under a model of the EPT hardware). */
#ifndef MM_BACKEND_H
#define MM_BACKEND_H
#include <stdint.h>

/* Pointer through which the hypervisor reads and writes machine address pa. */
void *mm_phys_to_virt(uint64_t pa);

/* Cycle counter for cost accounting (both the hypervisor and the host
 * tests run on x86-64; in Bochs it counts emulated instructions). */
static inline uint64_t mm_now(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

/* A hypervisor bug: print and stop. Never called for guest misbehaviour. */
__attribute__((noreturn)) void mm_panic(const char *file, int line, const char *msg);

#define MM_ASSERT(c)                                                        \
    do {                                                                    \
        if (!(c))                                                           \
            mm_panic(__FILE__, __LINE__, "assertion failed: " #c);          \
    } while (0)
#endif

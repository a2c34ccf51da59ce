/* Hashes from the xxHash bundled with Debian's lz4 source (built
 * freestanding like lz4 itself): no hand-written hash in the hypervisor. */
#ifndef MM_HASH_H
#define MM_HASH_H
#include <stddef.h>
#include <stdint.h>

uint32_t hash32(const void *p, size_t len, uint32_t seed);
uint64_t hash64(const void *p, size_t len, uint64_t seed);
#endif

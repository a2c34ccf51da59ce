/* Hashes from the xxHash bundled with Debian's lz4 source (built
 * freestanding like lz4 itself): no hand-written hash in the hypervisor.
 *
 * hash64 is XXH64. hash_check32 is the low 32 bits of XXH64: the compressed
 * pool's integrity check (pool_check = yes) keeps a 32-bit value in each
 * object's header, and XXH64 reads 32 bytes per round against XXH32's 16,
 * so it costs about half as much per page on x86-64 (the pool lives in
 * memory only, nothing on disk depends on the old XXH32 value). hash32 is
 * XXH32, for the swap format (mm/swap.c), whose on-disk checks are XXH32. */
#ifndef MM_HASH_H
#define MM_HASH_H
#include <stddef.h>
#include <stdint.h>

uint32_t hash32(const void *p, size_t len, uint32_t seed);
uint64_t hash64(const void *p, size_t len, uint64_t seed);
uint32_t hash_check32(const void *p, size_t len, uint64_t seed);
#endif

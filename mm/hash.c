#include "mm/hash.h"
#include "xxhash.h"

uint32_t hash32(const void *p, size_t len, uint32_t seed)
{
    return XXH32(p, len, seed);
}

uint64_t hash64(const void *p, size_t len, uint64_t seed)
{
    return XXH64(p, len, seed);
}

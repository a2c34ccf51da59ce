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

uint32_t hash_check32(const void *p, size_t len, uint64_t seed)
{
    return (uint32_t)XXH64(p, len, seed);
}

/* xxhash.c keeps a streaming-state allocator the hypervisor never uses; the
 * freestanding build renames malloc/free to these (see the Makefile) so the
 * image needs no C library. They refuse every request. */
#include <stddef.h>

void *hv_xxh_malloc(size_t n);
void hv_xxh_free(void *p);

void *hv_xxh_malloc(size_t n)
{
    (void)n;
    return NULL;
}

void hv_xxh_free(void *p)
{
    (void)p;
}

/* Debug dump of sampled guest pages (dump_pages = N in hv.cfg). */
#ifndef MM_DUMP_H
#define MM_DUMP_H
#include <stdint.h>

#include "mm/p2m.h"

/* Prints up to n non-zero pages of p, sampled evenly over its RAM, as
 * "[dump] NAME GFN STATE BASE64" lines. Returns pages printed. */
uint64_t mm_dump_pages(struct p2m *p, uint64_t n);
#endif

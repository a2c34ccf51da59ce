/* The hypervisor's own objects (build/obj/..., built with CORE_CFLAGS)
 * linked into host programs. The Makefile copies each object with its
 * string symbols renamed (tests/bench/shipped.syms: memcpy -> hv_memcpy,
 * ...) and nothing else changed: the machine code is byte for byte the
 * image's, lz4.o and xxhash.o call the image's memcpy, and the host
 * program keeps libc's for itself and as the baseline. The core uses the
 * SysV calling convention (only calls into EFI are MS ABI), and its
 * -mno-red-zone and -fpic are harmless in a user process. */
#ifndef TESTS_BENCH_SHIPPED_H
#define TESTS_BENCH_SHIPPED_H
#include <stddef.h>
#include <stdint.h>

void *hv_memcpy(void *dst, const void *src, size_t n);
void *hv_memmove(void *dst, const void *src, size_t n);
void *hv_memset(void *dst, int c, size_t n);
int hv_memcmp(const void *a, const void *b, size_t n);
size_t hv_strlen(const char *s);
#endif

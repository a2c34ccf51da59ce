/* String instructions and word loops. The core is built -mgeneral-regs-only,
 * so there is no SSE to vectorise with; 8 bytes is the widest access.
 *
 * Copies and fills of 16 bytes or more use the quadword string forms
 * whatever the alignment (x86 allows unaligned quadwords): on CPUs with
 * ERMSB it hardly matters, but an emulator such as Bochs charges one
 * instruction per iteration, so a page costs 512 instead of 4096. The last
 * 1-7 bytes go as one overlapping quadword instead of a byte loop. Shorter
 * runs (lz4's literal runs, xxHash's tails) never start a string
 * instruction, whose start-up costs tens of cycles on real hardware: they
 * are two overlapping loads and stores of the largest size that fits.
 * Compares go a quadword at a time and find the first differing byte of a
 * differing quadword with one byte swap. */
#include "lib/string.h"
#include <stdint.h>

/* Unaligned accesses the compiler may not split, merge or turn into calls. */
typedef uint64_t __attribute__((may_alias, aligned(1))) u64_un;
typedef uint32_t __attribute__((may_alias, aligned(1))) u32_un;
typedef uint16_t __attribute__((may_alias, aligned(1))) u16_un;

static inline uint64_t ld64(const void *p) { return *(const u64_un *)p; }
static inline void st64(void *p, uint64_t v) { *(u64_un *)p = v; }

/* n < 16. Both halves are loaded before either is stored, so this is also
 * a correct memmove for overlapping buffers. */
static inline void copy_small(unsigned char *d, const unsigned char *s, size_t n)
{
    if (n >= 8) {
        uint64_t a = ld64(s), b = ld64(s + n - 8);
        st64(d, a);
        st64(d + n - 8, b);
    } else if (n >= 4) {
        uint32_t a = *(const u32_un *)s, b = *(const u32_un *)(s + n - 4);
        *(u32_un *)d = a;
        *(u32_un *)(d + n - 4) = b;
    } else if (n >= 2) {
        uint16_t a = *(const u16_un *)s, b = *(const u16_un *)(s + n - 2);
        *(u16_un *)d = a;
        *(u16_un *)(d + n - 2) = b;
    } else if (n) {
        *d = *s;
    }
}

void *memcpy(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    if (n < 16) {
        copy_small(d, s, n);
        return dst;
    }
    /* The tail quadword first: the buffers do not overlap, so it cannot be
     * overwritten by the run, and it covers the 0-7 bytes past n & ~7. */
    uint64_t tail = ld64(s + n - 8);
    size_t q = n / 8;
    void *dp = d;
    __asm__ volatile("rep movsq" : "+D"(dp), "+S"(s), "+c"(q) : : "memory");
    st64(d + n - 8, tail);
    return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    if (d == s || n == 0)
        return dst;
    if (n < 16) {
        copy_small(d, s, n);
        return dst;
    }
    if (d < s || d >= s + n)
        return memcpy(dst, src, n);
    /* Overlap with dst above src: quadwords from the top down. The first
     * 1-7 bytes (n % 8) are loaded before any store and stored last. */
    uint64_t head = ld64(s);
    size_t i = n;
    while (i >= 16) {
        i -= 8;
        st64(d + i, ld64(s + i));
    }
    /* 8 <= i < 16 bytes remain at the bottom: load both quadwords first. */
    uint64_t lo = head, hi = ld64(s + i - 8);
    st64(d + i - 8, hi);
    st64(d, lo);
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    unsigned char *d = dst;
    uint64_t v = (uint8_t)c * 0x0101010101010101ULL;
    if (n < 16) {
        if (n >= 8) {
            st64(d, v);
            st64(d + n - 8, v);
        } else if (n >= 4) {
            *(u32_un *)d = (uint32_t)v;
            *(u32_un *)(d + n - 4) = (uint32_t)v;
        } else {
            for (size_t i = 0; i < n; i++)
                d[i] = (unsigned char)c;
        }
        return dst;
    }
    size_t q = n / 8;
    void *dp = d;
    __asm__ volatile("rep stosq" : "+D"(dp), "+c"(q) : "a"(v) : "memory");
    if (n & 7)
        st64(d + n - 8, v);
    return dst;
}

/* The sign of the first differing byte of two quadwords that differ:
 * byte-swapped, memory order becomes numeric order. */
static inline int cmp_word(uint64_t a, uint64_t b)
{
    a = __builtin_bswap64(a);
    b = __builtin_bswap64(b);
    return a < b ? -1 : 1;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    /* Whole pages (the share scanner's merge check) are the common case:
     * eight quadwords a step, one branch for all eight, and one index
     * counting up to zero from below the blocks' end (its add sets the
     * loop's flag): 28 instructions per 64 bytes (1,811 a page), against
     * 16 per 32 four at a time (2,063). The block that differs is found
     * again word by word below. */
    size_t whole = n & ~(size_t)63, i = whole;
    const unsigned char *xe = x + whole, *ye = y + whole;
    for (ptrdiff_t k = -(ptrdiff_t)whole; k; k += 64) {
        uint64_t d = (ld64(xe + k) ^ ld64(ye + k)) | (ld64(xe + k + 8) ^ ld64(ye + k + 8)) |
                     (ld64(xe + k + 16) ^ ld64(ye + k + 16)) |
                     (ld64(xe + k + 24) ^ ld64(ye + k + 24)) |
                     (ld64(xe + k + 32) ^ ld64(ye + k + 32)) |
                     (ld64(xe + k + 40) ^ ld64(ye + k + 40)) |
                     (ld64(xe + k + 48) ^ ld64(ye + k + 48)) |
                     (ld64(xe + k + 56) ^ ld64(ye + k + 56));
        if (d) {
            i = whole + (size_t)k;
            break;
        }
    }
    for (; i + 8 <= n; i += 8) {
        uint64_t p = ld64(x + i), q = ld64(y + i);
        if (p != q)
            return cmp_word(p, q);
    }
    for (; i < n; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return 0;
}

size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

int strcmp(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return (unsigned char)*a - (unsigned char)*b;
}

int strncmp(const char *a, const char *b, size_t n)
{
    for (; n; n--, a++, b++) {
        if (*a != *b)
            return (unsigned char)*a - (unsigned char)*b;
        if (!*a)
            return 0;
    }
    return 0;
}

char *strchr(const char *s, int c)
{
    for (;; s++) {
        if (*s == (char)c)
            return (char *)s;
        if (!*s)
            return NULL;
    }
}

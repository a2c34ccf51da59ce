#include "lib/fmt.h"
#include <stdbool.h>
#include <stdint.h>

struct out {
    char *buf;
    size_t size;
    size_t len; /* would-be length, as C99 snprintf returns */
};

static void put(struct out *o, char c)
{
    if (o->len + 1 < o->size)
        o->buf[o->len] = c;
    o->len++;
}

static void put_padded(struct out *o, const char *s, size_t n, int width,
                       bool left, char pad)
{
    int fill = width > (int)n ? width - (int)n : 0;
    /* Zero padding goes after a sign or a 0x prefix. */
    if (!left && pad == '0' && n && (s[0] == '-' || s[0] == '+' || s[0] == ' ')) {
        put(o, *s++);
        n--;
    } else if (!left && pad == '0' && n > 2 && s[0] == '0' && s[1] == 'x') {
        put(o, *s++);
        put(o, *s++);
        n -= 2;
    }
    if (!left)
        while (fill-- > 0)
            put(o, pad);
    while (n--)
        put(o, *s++);
    if (left)
        while (fill-- > 0)
            put(o, ' ');
}

static size_t utoa(char *end, unsigned long long v, unsigned base, bool upper)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    size_t n = 0;
    do {
        *--end = digits[v % base];
        v /= base;
        n++;
    } while (v);
    return n;
}

int fmt_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct out o = { buf, size, 0 };

    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            put(&o, *fmt);
            continue;
        }
        fmt++;
        bool left = false, plus = false, space = false, alt = false;
        char pad = ' ';
        for (;; fmt++) {
            if (*fmt == '-')
                left = true;
            else if (*fmt == '0')
                pad = '0';
            else if (*fmt == '+')
                plus = true;
            else if (*fmt == ' ')
                space = true;
            else if (*fmt == '#')
                alt = true;
            else
                break;
        }
        int width = 0, prec = -1;
        if (*fmt == '*') {
            width = va_arg(ap, int);
            fmt++;
        } else {
            while (*fmt >= '0' && *fmt <= '9')
                width = width * 10 + (*fmt++ - '0');
        }
        if (*fmt == '.') {
            fmt++;
            prec = 0;
            if (*fmt == '*') {
                prec = va_arg(ap, int);
                fmt++;
            } else {
                while (*fmt >= '0' && *fmt <= '9')
                    prec = prec * 10 + (*fmt++ - '0');
            }
        }
        int lng = 0; /* -2 hh, -1 h, 0 int, 1 long, 2 long long / size_t */
        for (;; fmt++) {
            if (*fmt == 'l')
                lng++;
            else if (*fmt == 'h')
                lng--;
            else if (*fmt == 'z')
                lng = 2;
            else
                break;
        }

        char tmp[72];
        char *end = tmp + sizeof(tmp);
        switch (*fmt) {
        case 'd':
        case 'i': {
            long long v = lng >= 2 ? va_arg(ap, long long)
                          : lng == 1 ? va_arg(ap, long)
                                     : va_arg(ap, int);
            if (lng == -1)
                v = (short)v;
            else if (lng <= -2)
                v = (signed char)v;
            unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
            size_t n = utoa(end, u, 10, false);
            char *s = end - n;
            if (v < 0 || plus || space) {
                *--s = v < 0 ? '-' : plus ? '+' : ' ';
                n++;
            }
            put_padded(&o, s, n, width, left, pad);
            break;
        }
        case 'u':
        case 'x':
        case 'X':
        case 'o':
        case 'p': {
            unsigned long long v;
            unsigned base = *fmt == 'u' ? 10 : *fmt == 'o' ? 8 : 16;
            if (*fmt == 'p') {
                v = (uintptr_t)va_arg(ap, void *);
                alt = true;
            } else {
                v = lng >= 2 ? va_arg(ap, unsigned long long)
                    : lng == 1 ? va_arg(ap, unsigned long)
                               : va_arg(ap, unsigned int);
                if (lng == -1)
                    v = (unsigned short)v;
                else if (lng <= -2)
                    v = (unsigned char)v;
            }
            size_t n = utoa(end, v, base, *fmt == 'X');
            char *s = end - n;
            if (alt && base == 16) {
                *--s = 'x';
                *--s = '0';
                n += 2;
            }
            put_padded(&o, s, n, width, left, pad);
            break;
        }
        case 'c': {
            char c = (char)va_arg(ap, int);
            put_padded(&o, &c, 1, width, left, ' ');
            break;
        }
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (!s)
                s = "(null)";
            size_t n = 0;
            while ((prec < 0 || n < (size_t)prec) && s[n])
                n++;
            put_padded(&o, s, n, width, left, ' ');
            break;
        }
        case '%':
            put(&o, '%');
            break;
        case '\0':
            fmt--; /* a lone '%' at the end: stop after printing nothing */
            break;
        default:
            put(&o, '%');
            put(&o, *fmt);
            break;
        }
    }
    if (size)
        buf[o.len < size ? o.len : size - 1] = '\0';
    return (int)o.len;
}

int fmt_snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = fmt_vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

const char *fmt_size(char *buf, size_t size, unsigned long long bytes)
{
    static const char units[] = "KMGTP";
    if (bytes < 1024) {
        fmt_snprintf(buf, size, "%llu", bytes);
        return buf;
    }
    int u = -1;
    unsigned long long whole = bytes, rem = 0;
    while (whole >= 1024 && u < 4) {
        rem = whole % 1024;
        whole /= 1024;
        u++;
    }
    unsigned tenth = (unsigned)(rem * 10 / 1024);
    if (tenth)
        fmt_snprintf(buf, size, "%llu.%u%c", whole, tenth, units[u]);
    else
        fmt_snprintf(buf, size, "%llu%c", whole, units[u]);
    return buf;
}

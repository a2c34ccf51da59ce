/* lib/fmt.c: fmt_snprintf against known strings and against libc's snprintf
 * wherever the two are meant to agree, truncation, and fmt_size. */
#include "tests/host/backend.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

#include "lib/fmt.h"
#include "lib/log.h"

/* fmt_snprintf(fmt, ...) must produce want and return its length. */
#define EXPECT_FMT(want, ...)                                                \
    do {                                                                     \
        char got_[256];                                                      \
        memset(got_, 0x7e, sizeof(got_));                                    \
        int n_ = fmt_snprintf(got_, sizeof(got_), __VA_ARGS__);              \
        assert_string_equal(got_, want);                                     \
        assert_int_equal(n_, strlen(want));                                  \
    } while (0)

/* fmt_snprintf and libc snprintf must agree on text and return value. */
#define SAME_AS_LIBC(...)                                                    \
    do {                                                                     \
        char libc_[256], ours_[256];                                         \
        memset(ours_, 0x7e, sizeof(ours_));                                  \
        int nl_ = snprintf(libc_, sizeof(libc_), __VA_ARGS__);               \
        int no_ = fmt_snprintf(ours_, sizeof(ours_), __VA_ARGS__);           \
        if (strcmp(libc_, ours_) || nl_ != no_)                              \
            fail_msg("%s: libc \"%s\" (%d), fmt \"%s\" (%d)", #__VA_ARGS__,   \
                     libc_, nl_, ours_, no_);                                \
    } while (0)

static void test_conversions(void **state)
{
    EXPECT_FMT("42", "%d", 42);
    EXPECT_FMT("-42", "%i", -42);
    EXPECT_FMT("4294967295", "%u", 0xffffffffu);
    EXPECT_FMT("deadbeef", "%x", 0xdeadbeefu);
    EXPECT_FMT("DEADBEEF", "%X", 0xdeadbeefu);
    EXPECT_FMT("777", "%o", 0777u);
    EXPECT_FMT("A", "%c", 'A');
    EXPECT_FMT("hello", "%s", "hello");
    EXPECT_FMT("0x1234abcd", "%p", (void *)0x1234abcd);
    EXPECT_FMT("100%", "%d%%", 100);
    EXPECT_FMT("a%b", "a%%b");
    EXPECT_FMT("", "%s", "");
    EXPECT_FMT("0", "%x", 0u);
    EXPECT_FMT("0", "%o", 0u);
    EXPECT_FMT("plain text", "plain text");
    EXPECT_FMT("[x=1 y=-2 s=ok]", "[x=%d y=%d s=%s]", 1, -2, "ok");
}

static void test_negative_and_extremes(void **state)
{
    EXPECT_FMT("-1", "%d", -1);
    EXPECT_FMT("-2147483648", "%d", INT_MIN);
    EXPECT_FMT("2147483647", "%d", INT_MAX);
    EXPECT_FMT("-9223372036854775808", "%lld", LLONG_MIN);
    EXPECT_FMT("9223372036854775807", "%lld", LLONG_MAX);
    EXPECT_FMT("-9223372036854775808", "%ld", LONG_MIN);
    EXPECT_FMT("18446744073709551615", "%llu", ULLONG_MAX);
    EXPECT_FMT("ffffffffffffffff", "%llx", ULLONG_MAX);
    EXPECT_FMT("1777777777777777777777", "%llo", ULLONG_MAX);
    EXPECT_FMT("18446744073709551615", "%zu", SIZE_MAX);
    EXPECT_FMT("-5", "%zd", (ssize_t)-5);
    EXPECT_FMT("ffffffff", "%x", -1); /* int read as unsigned int */
}

/* hh and h truncate to char / short, signed or not. */
static void test_length_modifiers(void **state)
{
    EXPECT_FMT("ff", "%hhx", 0x1ff);
    EXPECT_FMT("-56", "%hhd", 200);
    EXPECT_FMT("0", "%hhu", 256);
    EXPECT_FMT("4464", "%hd", 70000);
    EXPECT_FMT("1", "%hu", 65537);
    EXPECT_FMT("-1", "%hd", 0xffff);
    EXPECT_FMT("123456789012", "%ld", 123456789012L);
    EXPECT_FMT("fedcba9876543210", "%lx", 0xfedcba9876543210UL);
}

static void test_width_and_flags(void **state)
{
    EXPECT_FMT("   42", "%5d", 42);
    EXPECT_FMT("42   |", "%-5d|", 42);
    EXPECT_FMT("00042", "%05d", 42);
    EXPECT_FMT("-0042", "%05d", -42);
    EXPECT_FMT("  -42", "%5d", -42);
    EXPECT_FMT("+42", "%+d", 42);
    EXPECT_FMT(" 42", "% d", 42);
    EXPECT_FMT("+0042", "%+05d", 42);
    { /* '-' wins over '0' (non-literal format: gcc warns about the combination) */
        const char *volatile f = "%-05d|";
        char b[16];
        assert_int_equal(fmt_snprintf(b, sizeof(b), f, 42), 6);
        assert_string_equal(b, "42   |");
    }
    EXPECT_FMT("123456", "%3d", 123456); /* width is a minimum */
    EXPECT_FMT("   ab", "%5s", "ab");
    EXPECT_FMT("ab   |", "%-5s|", "ab");
    EXPECT_FMT("    x", "%5c", 'x');
    EXPECT_FMT("x  |", "%-3c|", 'x');
    EXPECT_FMT("   42", "%*d", 5, 42);
    EXPECT_FMT("42   |", "%-*d|", 5, 42);
    EXPECT_FMT("0000beef", "%08x", 0xbeef);
}

/* '#' puts 0x before the digits, and zero padding goes between the two. */
static void test_alt_hex(void **state)
{
    EXPECT_FMT("0x00000000061b4000", "%#018llx", 0x61b4000ULL);
    EXPECT_FMT("0xff", "%#x", 0xff);
    EXPECT_FMT("      0xff", "%#10x", 0xff);
    EXPECT_FMT("0xff      |", "%-#10x|", 0xff);
    EXPECT_FMT("0x000000ff", "%#010x", 0xff);
    EXPECT_FMT("0xffffffffffffffff", "%#018llx", ULLONG_MAX); /* no room to pad */
    EXPECT_FMT("0x0000000000001000", "%#018lx", 0x1000UL);
}

static void test_string_precision(void **state)
{
    EXPECT_FMT("ab", "%.2s", "abcdef");
    EXPECT_FMT("     abc", "%8.3s", "abcdef");
    EXPECT_FMT("abc     |", "%-8.3s|", "abcdef");
    EXPECT_FMT("", "%.0s", "abcdef");
    EXPECT_FMT("abc", "%.10s", "abc");
    EXPECT_FMT("abcd", "%.*s", 4, "abcdefgh");
    EXPECT_FMT("abcdefgh", "%.*s", -1, "abcdefgh"); /* negative: no precision */
}

/* C99 7.19.6.1: with a precision, %s reads at most that many bytes and the
 * array needs no NUL. The sanitizer build catches a read of s[prec] (an
 * earlier version of lib/fmt.c tested s[n] before n < prec). */
static void test_string_precision_unterminated(void **state)
{
    static const char unterminated[3] = { 'x', 'y', 'z' };
    EXPECT_FMT("xyz", "%.3s", unterminated);
    EXPECT_FMT("xy", "%.2s", unterminated);
}

static void test_null_string(void **state)
{
    const char *volatile null = NULL; /* hide the NULL from -Wformat */
    EXPECT_FMT("(null)", "%s", null);
    EXPECT_FMT("  (null)", "%8s", null);
    EXPECT_FMT("(nu", "%.3s", null);
}

/* A lone '%' at the end prints nothing and does not read past the format. */
static void test_trailing_percent(void **state)
{
    const char *volatile f = "abc%"; /* non-literal: no -Wformat complaint */
    char buf[16];
    assert_int_equal(fmt_snprintf(buf, sizeof(buf), f, 0), 3);
    assert_string_equal(buf, "abc");
}

/* The return value is the would-be length; the buffer is always
 * NUL-terminated within size and nothing is written past it. */
static void test_truncation(void **state)
{
    char buf[32];

    memset(buf, 'Z', sizeof(buf));
    assert_int_equal(fmt_snprintf(buf, 5, "hello world"), 11);
    assert_string_equal(buf, "hell");
    assert_int_equal(buf[5], 'Z');

    memset(buf, 'Z', sizeof(buf));
    assert_int_equal(fmt_snprintf(buf, 1, "hello"), 5);
    assert_int_equal(buf[0], '\0');
    assert_int_equal(buf[1], 'Z');

    /* size 0 writes nothing at all (NULL is allowed then). */
    memset(buf, 'Z', sizeof(buf));
    assert_int_equal(fmt_snprintf(buf, 0, "hello %d", 42), 8);
    assert_int_equal(buf[0], 'Z');
    assert_int_equal(fmt_snprintf(NULL, 0, "%s=%#llx", "cr3", 0x1000ULL), 10);

    /* exactly fits / one short */
    memset(buf, 'Z', sizeof(buf));
    assert_int_equal(fmt_snprintf(buf, 6, "%05d", 42), 5);
    assert_string_equal(buf, "00042");
    assert_int_equal(fmt_snprintf(buf, 5, "%05d", 42), 5);
    assert_string_equal(buf, "0004");

    /* cut inside padding, inside a number, inside a 0x prefix */
    assert_int_equal(fmt_snprintf(buf, 4, "%10d", 7), 10);
    assert_string_equal(buf, "   ");
    assert_int_equal(fmt_snprintf(buf, 4, "%d", -123456), 7);
    assert_string_equal(buf, "-12");
    assert_int_equal(fmt_snprintf(buf, 2, "%#x", 0xab), 4);
    assert_string_equal(buf, "0");
}

/* Every truncation of a long mixed format: same prefix as the full output,
 * NUL-terminated, nothing written past size (checked byte by byte). */
static void test_truncation_all_sizes(void **state)
{
    char full[128], buf[160];
    int n = fmt_snprintf(full, sizeof(full), "%s|%-6d|%#012llx|%c|%5.2s|%%|%hhu",
                         "abc", -17, 0xfeedULL, 'q', "xyz", 300);
    assert_string_equal(full, "abc|-17   |0x000000feed|q|   xy|%|44");
    assert_int_equal(n, (int)strlen(full));
    for (size_t size = 0; size <= (size_t)n + 2; size++) {
        memset(buf, 'Z', sizeof(buf));
        int m = fmt_snprintf(buf, size, "%s|%-6d|%#012llx|%c|%5.2s|%%|%hhu", "abc",
                             -17, 0xfeedULL, 'q', "xyz", 300);
        assert_int_equal(m, n);
        if (size) {
            size_t len = size - 1 < (size_t)n ? size - 1 : (size_t)n;
            assert_memory_equal(buf, full, len);
            assert_int_equal(buf[len], '\0');
            for (size_t i = len + 1; i < sizeof(buf); i++)
                assert_int_equal(buf[i], 'Z');
        } else {
            for (size_t i = 0; i < sizeof(buf); i++)
                assert_int_equal(buf[i], 'Z');
        }
    }
}

/* A table of cases where the freestanding engine and C99 must agree. */
static void test_against_libc(void **state)
{
    static const int ints[] = { 0, 1, -1, 7, -7, 42, 1000, -99999, INT_MAX, INT_MIN };
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        int v = ints[i];
        SAME_AS_LIBC("%d", v);
        SAME_AS_LIBC("%i", v);
        SAME_AS_LIBC("%8d|%-8d|%08d", v, v, v);
        SAME_AS_LIBC("%+d|% d|%+08d|% 08d", v, v, v, v);
        SAME_AS_LIBC("%u|%x|%X|%o", (unsigned)v, (unsigned)v, (unsigned)v, (unsigned)v);
        SAME_AS_LIBC("%12u|%-12x|%012X|%12o", (unsigned)v, (unsigned)v, (unsigned)v,
                     (unsigned)v);
        SAME_AS_LIBC("%hd|%hu|%hx|%hhd|%hhu|%hhx", v, v, v, v, v, v);
        SAME_AS_LIBC("%*d|%-*d", 6, v, 9, v);
    }
    static const long long lls[] = { 0, 1, -1, 0x61b4000, -0x7fffffffffffLL,
                                     0x123456789abcdefLL, LLONG_MAX, LLONG_MIN };
    for (size_t i = 0; i < sizeof(lls) / sizeof(lls[0]); i++) {
        long long v = lls[i];
        unsigned long long u = (unsigned long long)v;
        SAME_AS_LIBC("%lld|%llu|%llx|%llX|%llo", v, u, u, u, u);
        SAME_AS_LIBC("%24lld|%-24llu|%024llx", v, u, u);
        SAME_AS_LIBC("%ld|%lu|%lx", (long)v, (unsigned long)u, (unsigned long)u);
        SAME_AS_LIBC("%zu|%zx|%zd", (size_t)u, (size_t)u, (ssize_t)v);
        if (u) { /* libc prints 0 without the 0x for '#' */
            SAME_AS_LIBC("%#llx|%#20llx|%#-20llx|%#020llx", u, u, u, u);
            SAME_AS_LIBC("%#018llx", u);
            SAME_AS_LIBC("%p", (void *)(uintptr_t)u);
        }
    }
    static const char *const strs[] = { "", "a", "hello", "with space", "0123456789abcdef" };
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        const char *s = strs[i];
        SAME_AS_LIBC("[%s]", s);
        SAME_AS_LIBC("[%10s][%-10s][%3s]", s, s, s);
        SAME_AS_LIBC("[%.0s][%.1s][%.4s][%7.2s][%-7.3s]", s, s, s, s, s);
        SAME_AS_LIBC("[%*s][%-*s][%.*s]", 12, s, 12, s, 3, s);
    }
    for (int c = 32; c < 127; c++)
        SAME_AS_LIBC("%c|%3c|%-3c|", c, c, c);
    SAME_AS_LIBC("%%|a%%b%%");
    SAME_AS_LIBC("%s=%d (%#x) %c%c %-4s|", "rax", 17, 17, 'o', 'k', "ok");
}

/* fmt_size: binary units, one decimal (truncated), none when it is .0 */
static void test_fmt_size(void **state)
{
    char buf[32];
    static const struct {
        unsigned long long bytes;
        const char *want;
    } cases[] = {
        { 0, "0" },
        { 1, "1" },
        { 1023, "1023" },
        { 1024, "1K" },
        { 1025, "1K" },
        { 1536, "1.5K" },
        { 2047, "1.9K" },
        { 4096, "4K" },
        { 1023ULL << 10, "1023K" },
        { 1ULL << 20, "1M" },
        { 512ULL << 20, "512M" },
        { 1536ULL << 20, "1.5G" },
        { 1ULL << 30, "1G" },
        { 3ULL << 40, "3T" },
        { 1ULL << 50, "1P" },
        { 1ULL << 60, "1024P" },
        { ULLONG_MAX, "16383.9P" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(buf, 'Z', sizeof(buf));
        const char *r = fmt_size(buf, 16, cases[i].bytes);
        assert_ptr_equal(r, buf);
        if (strcmp(buf, cases[i].want))
            fail_msg("fmt_size(%llu) = \"%s\", want \"%s\"", cases[i].bytes, buf,
                     cases[i].want);
    }
}

/* lib/log.c on top of fmt: "[subsys] tag: message\n", per-subsystem levels,
 * long lines cut but still ending in '\n'; log_raw adds nothing. */
static void test_log_lines(void **state)
{
    log_set_all(LOG_INFO);
    backend_log_clear();
    pr_err(LS_MM, "frame %#llx lost", 0x42ULL);
    pr_warn(LS_VMX, "no %s", "EPT");
    pr_info(LS_BOOT, "%d VMs", 2);
    pr_debug(LS_BOOT, "hidden at info");
    log_raw("raw %d|", 7);
    assert_string_equal(backend_log(), "[mm] error: frame 0x42 lost\n"
                                       "[vmx] warning: no EPT\n"
                                       "[boot] 2 VMs\n"
                                       "raw 7|");

    log_set_level(LS_MM, LOG_ERR);
    assert_true(log_enabled(LS_MM, LOG_ERR));
    assert_false(log_enabled(LS_MM, LOG_WARN));
    assert_true(log_enabled(LS_HV, LOG_INFO));
    assert_false(log_enabled(LS_COUNT, LOG_ERR));
    backend_log_clear();
    pr_warn(LS_MM, "filtered");
    pr_debug(LS_HV, "filtered");
    assert_string_equal(backend_log(), "");

    static char big[2000];
    memset(big, 'b', sizeof(big) - 1);
    backend_log_clear();
    pr_info(LS_HV, "%s", big);
    size_t n = strlen(backend_log());
    assert_int_equal(n, 511);
    assert_memory_equal(backend_log(), "[hv] bbb", 8);
    assert_int_equal(backend_log()[n - 1], '\n');
    log_set_all(LOG_INFO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conversions),
        cmocka_unit_test(test_negative_and_extremes),
        cmocka_unit_test(test_length_modifiers),
        cmocka_unit_test(test_width_and_flags),
        cmocka_unit_test(test_alt_hex),
        cmocka_unit_test(test_string_precision),
        cmocka_unit_test(test_null_string),
        cmocka_unit_test(test_trailing_percent),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_truncation_all_sizes),
        cmocka_unit_test(test_against_libc),
        cmocka_unit_test(test_fmt_size),
        cmocka_unit_test(test_log_lines),
        cmocka_unit_test(test_string_precision_unterminated), /* last: see there */
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

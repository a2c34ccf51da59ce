/* boot/config.c: the hv.cfg parser and config_parse_size.
 * Every input is handed to the parser in a malloc'd buffer of exactly its
 * length with no NUL after it, so the sanitizer build catches any read past
 * the end. */
#include "tests/host/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "boot/config.h"
#include "mm/trace.h"

static int parse_n(const char *text, size_t len, struct hv_config *cfg,
                   struct cfg_error *err)
{
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, text, len);
    int rc = config_parse(copy, len, cfg, err);
    free(copy);
    return rc;
}

static int parse(const char *text, struct hv_config *cfg, struct cfg_error *err)
{
    return parse_n(text, strlen(text), cfg, err);
}

/* The parse must fail with err.line == line and phrase in err.reason. */
static void check_error_n(const char *text, size_t len, int line, const char *phrase)
{
    static struct hv_config cfg;
    struct cfg_error err;
    int rc = parse_n(text, len, &cfg, &err);
    if (rc != -1 || err.line != line || !strstr(err.reason, phrase))
        fail_msg("input:\n%.*s\nexpected: rc -1, line %d, reason containing \"%s\"\n"
                 "got:      rc %d, line %d, reason \"%s\"",
                 (int)len, text, line, phrase, rc, err.line, err.reason);
}

static void check_error(const char *text, int line, const char *phrase)
{
    check_error_n(text, strlen(text), line, phrase);
}

/* The parse must succeed, with err cleared. */
static void check_ok(const char *text, struct hv_config *cfg)
{
    struct cfg_error err;
    int rc = parse(text, cfg, &err);
    if (rc != 0)
        fail_msg("input:\n%s\nexpected success, got line %d: %s", text, err.line,
                 err.reason);
    assert_int_equal(err.line, 0);
    assert_string_equal(err.reason, "");
}

/* A minimal valid VM section, for error tests that need one. */
#define VM_A "[vm a]\nmemory = 64M\nkernel = k\n"

/* ---- config_parse_size ------------------------------------------------- */

static uint64_t size_ok(const char *s)
{
    uint64_t v = 0xdeadbeef;
    if (config_parse_size(s, &v) != 0)
        fail_msg("config_parse_size(\"%s\") rejected", s);
    return v;
}

static void size_bad(const char *s)
{
    uint64_t v = 0x1234;
    if (config_parse_size(s, &v) != -1)
        fail_msg("config_parse_size(\"%s\") accepted: %llu", s, (unsigned long long)v);
    assert_int_equal(v, 0x1234); /* *out untouched on failure */
}

static void test_size_units(void **state)
{
    assert_int_equal(size_ok("512M"), 512ULL << 20);
    assert_int_equal(size_ok("1G"), 1ULL << 30);
    assert_int_equal(size_ok("4096K"), 4096ULL << 10);
    assert_int_equal(size_ok("2GiB"), 2ULL << 30);
    assert_int_equal(size_ok("1048576"), 1048576);
    assert_int_equal(size_ok("0"), 0);
    assert_int_equal(size_ok("1T"), 1ULL << 40);
    /* lower case units and the optional B / iB suffix */
    assert_int_equal(size_ok("16m"), 16ULL << 20);
    assert_int_equal(size_ok("3k"), 3ULL << 10);
    assert_int_equal(size_ok("5g"), 5ULL << 30);
    assert_int_equal(size_ok("8KB"), 8ULL << 10);
    assert_int_equal(size_ok("8Kb"), 8ULL << 10);
    assert_int_equal(size_ok("8KiB"), 8ULL << 10);
    assert_int_equal(size_ok("007M"), 7ULL << 20);
}

static void test_size_rejects(void **state)
{
    size_bad("");
    size_bad("12X");
    size_bad("M");
    size_bad("-1");
    size_bad("+1");
    size_bad(" 1M");
    size_bad("1M ");
    size_bad("1.5G");
    size_bad("0x10");
    size_bad("1MM");
    size_bad("1MiBB");
    size_bad("1iB");  /* iB needs a unit */
    size_bad("1B");   /* B alone is not a unit */
    size_bad("1KiX");
}

static void test_size_overflow(void **state)
{
    size_bad("99999999999T");
    size_bad("18446744073709551616");       /* 2^64 */
    size_bad("99999999999999999999999");
    size_bad("17179869184G");               /* 2^34 G = 2^64 */
    size_bad("16777216T");                  /* 2^24 T = 2^64 */
    assert_int_equal(size_ok("17179869183G"), 17179869183ULL << 30);
    assert_int_equal(size_ok("16777215T"), 16777215ULL << 40);
    assert_int_equal(size_ok("1844674407370955161"), 1844674407370955161ULL);
}

/* ---- valid files ------------------------------------------------------- */

/* Everything the format allows, in one file with a BOM and CRLF endings. */
static const char full_cfg[] =
    "\xef\xbb\xbf# hv.cfg for the tests\r\n"                       /* 1 */
    "; a comment of the other kind\r\n"                            /* 2 */
    "log = debug\r\n"                                              /* 3 */
    "log.mm = warn   # inline comment\r\n"                         /* 4 */
    "poweroff = no\r\n"                                            /* 5 */
    "\r\n"                                                         /* 6 */
    "[vm alpha]\r\n"                                               /* 7 */
    "memory = 512M\r\n"                                            /* 8 */
    "kernel = vmlinuz\r\n"                                         /* 9 */
    "initrd = boot/initrd.img ; comment\r\n"                       /* 10 */
    "cmdline = \"console=ttyS0 root=/dev/vda # not a comment\"\r\n" /* 11 */
    "\r\n"                                                         /* 12 */
    "  [ vm beta-2_X ]  \r\n"                                      /* 13 */
    "\tmemory\t=\t1G\r\n"                                          /* 14 */
    "kernel=/efi/linux/bzImage\r\n"                                /* 15 */
    "cmdline = quiet a=b c#d e;f   # real comment\r\n";            /* 16 */

static void test_full_config(void **state)
{
    static struct hv_config cfg;
    check_ok(full_cfg, &cfg);

    for (int i = 0; i < LS_COUNT; i++)
        assert_int_equal(cfg.log_level[i], i == LS_MM ? LOG_WARN : LOG_DEBUG);
    assert_false(cfg.poweroff);
    assert_int_equal(cfg.nvms, 2);

    const struct vm_config *a = &cfg.vm[0], *b = &cfg.vm[1];
    assert_string_equal(a->name, "alpha");
    assert_int_equal(a->line, 7);
    assert_int_equal(a->memory, 512ULL << 20);
    assert_string_equal(a->kernel, "\\hv\\vmlinuz");
    assert_string_equal(a->initrd, "\\hv\\boot\\initrd.img");
    assert_string_equal(a->cmdline, "console=ttyS0 root=/dev/vda # not a comment");

    assert_string_equal(b->name, "beta-2_X");
    assert_int_equal(b->line, 13);
    assert_int_equal(b->memory, 1ULL << 30);
    assert_string_equal(b->kernel, "\\efi\\linux\\bzImage");
    assert_string_equal(b->initrd, "");
    /* '#' and ';' start a comment only after whitespace; '=' is data */
    assert_string_equal(b->cmdline, "quiet a=b c#d e;f");
}

/* Same file with LF endings and without the BOM: same result. */
static void test_full_config_lf(void **state)
{
    static struct hv_config crlf, lf;
    static char text[sizeof(full_cfg)];
    size_t n = 0;
    for (const char *s = full_cfg + 3; *s; s++)
        if (*s != '\r')
            text[n++] = *s;
    text[n] = '\0';
    check_ok(full_cfg, &crlf);
    check_ok(text, &lf);
    assert_memory_equal(&crlf, &lf, sizeof(lf));
}

static void test_defaults(void **state)
{
    static struct hv_config cfg;
    check_ok("", &cfg);
    assert_int_equal(cfg.nvms, 0);
    assert_true(cfg.poweroff);
    for (int i = 0; i < LS_COUNT; i++)
        assert_int_equal(cfg.log_level[i], -1);

    check_ok("\xef\xbb\xbf", &cfg);
    assert_int_equal(cfg.nvms, 0);
    check_ok("# only a comment", &cfg); /* no final newline */
    assert_int_equal(cfg.nvms, 0);
    check_ok("\n\n  \t \r\n;x\n", &cfg);
    assert_int_equal(cfg.nvms, 0);
}

/* A last line without '\n' is parsed like any other. */
static void test_no_final_newline(void **state)
{
    static struct hv_config cfg;
    check_ok("[vm a]\nmemory = 64M\nkernel = k\ncmdline = last", &cfg);
    assert_int_equal(cfg.nvms, 1);
    assert_string_equal(cfg.vm[0].cmdline, "last");
}

/* "log = L" sets every subsystem not named by its own log.X key, in either
 * order. */
static void test_log_levels(void **state)
{
    static struct hv_config cfg;
    check_ok("log.mm = warn\nlog = debug\nlog.vmx = error\n", &cfg);
    for (int i = 0; i < LS_COUNT; i++)
        assert_int_equal(cfg.log_level[i], i == LS_MM    ? LOG_WARN
                                           : i == LS_VMX ? LOG_ERR
                                                         : LOG_DEBUG);
    check_ok("log.boot = info\n", &cfg);
    for (int i = 0; i < LS_COUNT; i++)
        assert_int_equal(cfg.log_level[i], i == LS_BOOT ? LOG_INFO : -1);
    check_ok("log.hv=error\nlog.boot=warn\nlog.arch=info\nlog.mm=debug\n"
             "log.vmx=error\nlog.drv=warn\nlog.test=info\nlog.con=warn\n",
             &cfg);
    static const signed char want[LS_COUNT] = { 0, 1, 2, 3, 0, 1, 2, 1 };
    assert_memory_equal(cfg.log_level, want, sizeof(want));
}

static void test_poweroff_values(void **state)
{
    static struct hv_config cfg;
    static const char *const yes[] = { "yes", "true", "1" };
    static const char *const no[] = { "no", "false", "0" };
    char text[64];
    for (int i = 0; i < 3; i++) {
        snprintf(text, sizeof(text), "poweroff = %s\n", yes[i]);
        check_ok(text, &cfg);
        assert_true(cfg.poweroff);
        snprintf(text, sizeof(text), "poweroff = %s\n", no[i]);
        check_ok(text, &cfg);
        assert_false(cfg.poweroff);
    }
    check_error("poweroff = maybe\n", 1, "must be yes or no");
    check_error("poweroff = YES\n", 1, "must be yes or no");
}

static void test_paths(void **state)
{
    static struct hv_config cfg;
    check_ok("[vm a]\nmemory = 1M\nkernel = a/b/c\ninitrd = \\x\\y\n", &cfg);
    assert_string_equal(cfg.vm[0].kernel, "\\hv\\a\\b\\c");
    assert_string_equal(cfg.vm[0].initrd, "\\x\\y");
    check_ok("[vm a]\nmemory = 1M\nkernel = \"my kernel\"   ; c\n", &cfg);
    assert_string_equal(cfg.vm[0].kernel, "\\hv\\my kernel");

    /* Longest relative path: "\hv\" + 123 bytes = 127 = CFG_PATH_MAX - 1. */
    char text[512], name[256];
    memset(name, 'p', 123);
    name[123] = '\0';
    snprintf(text, sizeof(text), "[vm a]\nmemory = 1M\nkernel = %s\n", name);
    check_ok(text, &cfg);
    assert_int_equal(strlen(cfg.vm[0].kernel), CFG_PATH_MAX - 1);
    /* One more byte does not fit. */
    name[123] = 'p';
    name[124] = '\0';
    snprintf(text, sizeof(text), "[vm a]\nmemory = 1M\nkernel = %s\n", name);
    check_error(text, 3, "too long");
    /* Far too long: stopped while converting. */
    memset(name, 'q', 200);
    name[200] = '\0';
    snprintf(text, sizeof(text), "[vm a]\nmemory = 1M\ninitrd = /%s\n", name);
    check_error(text, 3, "too long");

    check_error("[vm a]\nmemory = 1M\nkernel =\n", 3, "needs a file name");
    check_error("[vm a]\nmemory = 1M\nkernel = \"\"\n", 3, "needs a file name");
    check_error("[vm a]\nmemory = 1M\nkernel = k\xc3\xa9rnel\n", 3, "non-ASCII");
    check_error("[vm a]\nmemory = 1M\nkernel = k\x7f\n", 3, "non-printable");
}

static void test_memory_limits(void **state)
{
    static struct hv_config cfg;
    check_ok("[vm a]\nmemory = 1M\nkernel = k\n", &cfg);
    assert_int_equal(cfg.vm[0].memory, CFG_MIN_VM_MEMORY);
    check_ok("[vm a]\nmemory = 1T\nkernel = k\n", &cfg);
    assert_int_equal(cfg.vm[0].memory, CFG_MAX_VM_MEMORY);
    check_ok("[vm a]\nmemory = 1052672\nkernel = k\n", &cfg); /* 1M + 4K */
    assert_int_equal(cfg.vm[0].memory, 1052672);
}

static void test_cmdline(void **state)
{
    static struct hv_config cfg;
    check_ok("[vm a]\nmemory=1M\nkernel=k\ncmdline=\"\"\n", &cfg);
    assert_string_equal(cfg.vm[0].cmdline, "");
    check_ok("[vm a]\nmemory=1M\nkernel=k\ncmdline = \" padded ; # \"  # c\n", &cfg);
    assert_string_equal(cfg.vm[0].cmdline, " padded ; # ");
    check_ok("[vm a]\nmemory=1M\nkernel=k\ncmdline=#all comment\n", &cfg);
    assert_string_equal(cfg.vm[0].cmdline, "");

    /* CFG_CMDLINE_MAX - 1 bytes fit, one more does not. */
    static char text[CFG_LINE_MAX + 64];
    char *p = text + sprintf(text, "[vm a]\nmemory=1M\nkernel=k\ncmdline=");
    memset(p, 'c', CFG_CMDLINE_MAX - 1);
    p[CFG_CMDLINE_MAX - 1] = '\0';
    check_ok(text, &cfg);
    assert_int_equal(strlen(cfg.vm[0].cmdline), CFG_CMDLINE_MAX - 1);
    p[CFG_CMDLINE_MAX - 1] = 'c';
    p[CFG_CMDLINE_MAX] = '\0';
    check_error(text, 4, "cmdline is too long");
}

/* Names: up to CFG_NAME_MAX - 1 characters of [A-Za-z0-9_-]. */
static void test_vm_names(void **state)
{
    static struct hv_config cfg;
    check_ok("[vm abcdefghijklmno]\nmemory=1M\nkernel=k\n", &cfg); /* 15 */
    assert_string_equal(cfg.vm[0].name, "abcdefghijklmno");
    check_ok("[vm\tZ9_-]\nmemory=1M\nkernel=k\n", &cfg);
    assert_string_equal(cfg.vm[0].name, "Z9_-");
}

static void test_max_vms(void **state)
{
    static struct hv_config cfg;
    static char text[4096];
    size_t n = 0;
    for (int i = 0; i < CFG_MAX_VMS; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n,
                              "[vm v%d]\nmemory = %dM\nkernel = k%d\n", i, i + 1, i);
    check_ok(text, &cfg);
    assert_int_equal(cfg.nvms, CFG_MAX_VMS);
    for (int i = 0; i < CFG_MAX_VMS; i++) {
        char name[32], kernel[32];
        snprintf(name, sizeof(name), "v%d", i);
        snprintf(kernel, sizeof(kernel), "\\hv\\k%d", i);
        assert_string_equal(cfg.vm[i].name, name);
        assert_int_equal(cfg.vm[i].line, 3 * i + 1);
        assert_int_equal(cfg.vm[i].memory, (uint64_t)(i + 1) << 20);
        assert_string_equal(cfg.vm[i].kernel, kernel);
    }
    /* One more: rejected at its header, line 3 * CFG_MAX_VMS + 1. */
    snprintf(text + n, sizeof(text) - n, "[vm extra]\nmemory = 1M\nkernel = k\n");
    check_error(text, 3 * CFG_MAX_VMS + 1, "too many VMs");
}

/* The longest line is CFG_LINE_MAX bytes (without the '\n'). */
static void test_line_length(void **state)
{
    static struct hv_config cfg;
    static char text[CFG_LINE_MAX + 64];
    text[0] = '\n';
    memset(text + 1, '#', CFG_LINE_MAX);
    strcpy(text + 1 + CFG_LINE_MAX, "\npoweroff = no\n");
    check_ok(text, &cfg);
    assert_false(cfg.poweroff);
    /* One byte more on line 2. */
    memset(text + 1, '#', CFG_LINE_MAX + 1);
    strcpy(text + 2 + CFG_LINE_MAX, "\npoweroff = no\n");
    check_error(text, 2, "longer than 1200");
}

/* ---- errors: every one names its line --------------------------------- */

/* The compressed pool's keys: pool (a share of machine memory), pool_max,
 * pool_check; per VM, compress and dump_pages. Defaults: 20%, 2048 bytes,
 * checksums off, compression on, no dump. */
static void test_pool_keys(void **state)
{
    static struct hv_config cfg;
    check_ok(VM_A, &cfg);
    assert_int_equal(cfg.pool_pct, CFG_POOL_PCT_DEFAULT);
    assert_int_equal(cfg.pool_max, 2048);
    assert_false(cfg.pool_check);
    assert_true(cfg.vm[0].compress);
    assert_int_equal(cfg.vm[0].dump_pages, 0);
    check_ok("pool = 35%\npool_max = 1024\npool_check = yes\n" VM_A
             "compress = no\ndump_pages = 64\n[vm b]\nmemory = 8M\nkernel = k\n",
             &cfg);
    assert_int_equal(cfg.pool_pct, 35);
    assert_int_equal(cfg.pool_max, 1024);
    assert_true(cfg.pool_check);
    assert_false(cfg.vm[0].compress);
    assert_int_equal(cfg.vm[0].dump_pages, 64);
    assert_true(cfg.vm[1].compress); /* the default again for the next VM */
    check_ok("pool = 0\n" VM_A, &cfg);
    assert_int_equal(cfg.pool_pct, 0);
    check_ok("pool = 75%\n" VM_A, &cfg);
    assert_int_equal(cfg.pool_pct, 75);
}

static void test_err_pool_keys(void **state)
{
    check_error("pool = 76%\n" VM_A, 1, "above 75%");
    check_error("pool = 5000%\n" VM_A, 1, "above 75%");
    check_error("pool = -1\n" VM_A, 1, "needs a percentage");
    check_error("pool = 20 %\n" VM_A, 1, "needs a percentage");
    check_error("pool = 20%%\n" VM_A, 1, "needs a percentage");
    check_error("pool =\n" VM_A, 1, "needs a percentage");
    check_error("pool_max = 100\n" VM_A, 1, "out of range (256 .. 3072");
    check_error("pool_max = 4096\n" VM_A, 1, "out of range");
    check_error("pool_check = maybe\n" VM_A, 1, "must be yes or no");
    check_error(VM_A "pool = 10%\n", 4, "global key");
    check_error("compress = no\n" VM_A, 1, "belongs in a [vm NAME] section");
    check_error(VM_A "compress = sometimes\n", 4, "must be yes or no");
    check_error(VM_A "dump_pages = 70000\n", 4, "above 65536");
    check_error(VM_A "compress = no\ncompress = yes\n", 5, "set twice");
}

/* trace = causes | all | none, trace_frames = N (docs/trace.md). */
static void test_trace_keys(void **state)
{
    static struct hv_config cfg;
    check_ok(VM_A, &cfg);
    assert_int_equal(cfg.trace_mask, 0); /* off unless asked */
    assert_int_equal(cfg.trace_frames, 0);
    check_ok("trace = fault,reclaim,share,swap,balloon\ntrace_frames = 16\n" VM_A, &cfg);
    assert_int_equal(cfg.trace_mask, 1u << TC_FAULT | 1u << TC_RECLAIM | 1u << TC_SHARE |
                                         1u << TC_SWAP | 1u << TC_BALLOON);
    assert_int_equal(cfg.trace_frames, 16);
    check_ok("trace = all\n" VM_A, &cfg);
    assert_int_equal(cfg.trace_mask, TRACE_MASK_ALL);
    check_ok("trace = swap , load\n" VM_A, &cfg);
    assert_int_equal(cfg.trace_mask, 1u << TC_SWAP | 1u << TC_LOAD);
    check_ok("trace = none\n" VM_A, &cfg);
    assert_int_equal(cfg.trace_mask, 0);
    check_ok("trace_frames = 65536\n" VM_A, &cfg);
    assert_int_equal(cfg.trace_frames, TRACE_FRAMES_MAX);
}

static void test_err_trace_keys(void **state)
{
    check_error("trace = fault,paging\n" VM_A, 1, "unknown cause 'paging'");
    check_error("trace = fault,,swap\n" VM_A, 1, "unknown cause ''");
    check_error("trace = faults\n" VM_A, 1, "unknown cause 'faults'");
    check_error("trace =\n" VM_A, 1, "trace needs causes");
    check_error("trace = all\ntrace = swap\n" VM_A, 2, "'trace' is set twice");
    check_error("trace_frames = 0\n" VM_A, 1, "from 1 to 65536");
    check_error("trace_frames = 65537\n" VM_A, 1, "from 1 to 65536");
    check_error("trace_frames = 99999999999999999999\n" VM_A, 1, "from 1 to 65536");
    check_error("trace_frames = 12k\n" VM_A, 1, "not a number of frames");
    check_error(VM_A "trace = all\n", 4, "global key");
}

static void test_err_unknown_key(void **state)
{
    check_error(VM_A "foo = 1\n", 4, "unknown key 'foo'");
    check_error("colour = red\n", 1, "unknown key 'colour'");
    check_error("Memory = 1G\n", 1, "unknown key 'Memory'"); /* case matters */
}

static void test_err_bad_key(void **state)
{
    check_error("mem ory = 1G\n", 1, "bad key 'mem ory'");
    check_error("# c\n   = 5\n", 2, "missing key before '='");
    check_error("ke\"y = 5\n", 1, "bad key");
}

static void test_err_key_outside_section(void **state)
{
    check_error("memory = 1G\n", 1, "'memory' belongs in a [vm NAME] section");
    check_error("log = info\n\nkernel = k\n", 3, "'kernel' belongs in a [vm NAME]");
    check_error("\ninitrd = i\n", 2, "'initrd' belongs in a [vm NAME]");
    check_error("cmdline = x\n", 1, "'cmdline' belongs in a [vm NAME]");
}

static void test_err_global_key_in_section(void **state)
{
    check_error(VM_A "log = info\n", 4, "'log' is a global key");
    check_error(VM_A "poweroff = no\n", 4, "'poweroff' is a global key");
    check_error("[vm a]\nlog.mm = info\n", 2, "'log.mm' is a global key");
}

static void test_err_duplicate_key(void **state)
{
    check_error("[vm a]\nmemory = 1G\nkernel = k\nmemory = 2G\n", 4, "'memory' is set twice");
    check_error("[vm a]\nmemory = 1G\nkernel = k\nkernel = k\n", 4, "'kernel' is set twice");
    check_error("poweroff = yes\n#\npoweroff = no\n", 3, "'poweroff' is set twice");
    check_error("log = info\nlog = info\n", 2, "'log' is set twice");
    check_error("log.mm = info\nlog.hv = info\nlog.mm = warn\n", 3, "'log.mm' is set twice");
    /* The same key in two different VMs is fine. */
    static struct hv_config cfg;
    check_ok("[vm a]\nmemory=1M\nkernel=k\n[vm b]\nmemory=2M\nkernel=k\n", &cfg);
    assert_int_equal(cfg.nvms, 2);
}

static void test_err_duplicate_vm(void **state)
{
    check_error("# x\n[vm a]\nmemory = 1G\nkernel = k\n\n[vm a]\n", 6,
                "VM 'a' is defined twice (first on line 2)");
    check_error(VM_A "[vm b]\nmemory=1M\nkernel=k\n[vm b]\nmemory=1M\nkernel=k\n", 7,
                "VM 'b' is defined twice (first on line 4)");
}

/* A VM's missing key is reported at its [vm] header line, whether the next
 * section or the end of the file closes it. */
static void test_err_missing_required(void **state)
{
    check_error("[vm a]\nkernel = k\n\n[vm b]\nmemory = 1M\nkernel = k\n", 1,
                "VM 'a' has no 'memory'");
    check_error("# c\n[vm a]\nmemory = 1M\n\n\n", 2, "VM 'a' has no 'kernel'");
    check_error(VM_A "[vm b]\ninitrd = i\n", 4, "VM 'b' has no 'memory'");
    check_error(VM_A "[vm b]", 4, "VM 'b' has no 'memory'");
}

static void test_err_vm_name(void **state)
{
    check_error("[vm a.b]\n", 1, "VM name 'a.b' may hold only letters");
    check_error("\n[vm a b]\n", 2, "may hold only letters");
    check_error("[vm a/b]\n", 1, "may hold only letters");
    check_error("[vm abcdefghijklmnop]\n", 1, "is too long");  /* 16 */
    check_error("[vm \xc3\xa9t\xc3\xa9]\n", 1, "may hold only letters");
}

static void test_err_section(void **state)
{
    check_error("[global]\n", 1, "unknown section '[global]'");
    check_error("\n\n[vmx a]\n", 3, "unknown section");
    check_error("[VM a]\n", 1, "unknown section");
    check_error("[]\n", 1, "unknown section");
    /* No name. */
    check_error("[vm]\n", 1, "'[vm]' needs a name");
    check_error("[vm   ]\n", 1, "'[vm]' needs a name");
    check_error("[vm   ]\n", 1, "[vm");
    check_error("[vm a\n", 1, "must end with ']'");
    check_error(VM_A "[vm b] x\n", 4, "must end with ']'");
    check_error("[\n", 1, "must end with ']'");
}

static void test_err_missing_equals(void **state)
{
    check_error("[vm a]\nmemory 1G\n", 2, "expected 'key = value'");
    check_error("poweroff\n", 1, "expected 'key = value'");
}

static void test_err_quote(void **state)
{
    check_error(VM_A "cmdline = \"abc\n", 4, "unterminated or misplaced quote");
    check_error(VM_A "cmdline = \"abc\" def\n", 4, "unterminated or misplaced quote");
    check_error(VM_A "cmdline = \"\n", 4, "quote");
}

static void test_err_memory(void **state)
{
    check_error("[vm a]\nkernel = k\nmemory = 1048577\n", 3, "not a multiple of 4K");
    check_error("[vm a]\nmemory = 1025K\n", 2, "not a multiple of 4K");
    check_error("[vm a]\nmemory = 512K\n", 2, "out of range");
    check_error("[vm a]\nmemory = 1048575\n", 2, "out of range");
    check_error("[vm a]\nmemory = 0\n", 2, "out of range");
    check_error("[vm a]\nmemory = 2T\n", 2, "out of range");
    check_error("[vm a]\nmemory = 1025G\n", 2, "out of range");
    check_error("[vm a]\nmemory = 99999999999T\n", 2, "bad size '99999999999T'");
    check_error("[vm a]\nmemory = 12X\n", 2, "bad size '12X'");
    check_error("[vm a]\nmemory =\n", 2, "bad size");
    check_error("[vm a]\nmemory = \"\"\n", 2, "bad size");
}

static void test_err_control_bytes(void **state)
{
    static const char nul[] = "[vm a]\nmemory = 1M\nkernel = k\0x\n";
    check_error_n(nul, sizeof(nul) - 1, 3, "control byte 0x00");
    check_error("# ok\nlog = info\x01\n", 2, "control byte 0x01");
    check_error("\x1b[31m\n", 1, "control byte 0x1b");
    check_error("a = b\x0b\n", 1, "control byte 0x0b");
    /* Even in a comment: a binary file is rejected outright. */
    check_error("\n\n\n# \x02\n", 4, "control byte 0x02");
}

static void test_err_log(void **state)
{
    check_error("log = verbose\n", 1, "bad log level 'verbose'");
    check_error("log = DEBUG\n", 1, "bad log level");
    check_error("log.mm = loud\n", 1, "bad log level 'loud'");
    check_error("log.foo = info\n", 1, "unknown log subsystem 'log.foo'");
    check_error("log. = info\n", 1, "unknown log subsystem");
    check_error("log.mm.x = info\n", 1, "unknown log subsystem");
}

/* Line numbers count lines after a BOM and with CRLF endings alike. */
static void test_err_line_numbers_crlf(void **state)
{
    check_error("\xef\xbb\xbf# a\r\n\r\nfoo = 1\r\n", 3, "unknown key 'foo'");
    check_error("\xef\xbb\xbf[vm a]\r\nmemory = 1M\r\n", 1, "has no 'kernel'");
    check_error("\r\n\r\n\r\n\r\n[vm a\r\n", 5, "must end with ']'");
}

/* ---- fuzz --------------------------------------------------------------- */

static uint64_t rng = 0x243f6a8885a308d3ULL;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static bool valid_name(const char *s)
{
    if (!*s || strlen(s) >= CFG_NAME_MAX)
        return false;
    for (; *s; s++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", *s))
            return false;
    return true;
}

/* What every accepted file must satisfy. */
static void check_accepted(const struct hv_config *cfg, int lines)
{
    assert_in_range(cfg->nvms, 0, CFG_MAX_VMS);
    for (int i = 0; i < LS_COUNT; i++)
        assert_in_range(cfg->log_level[i] + 1, 0, LOG_DEBUG + 1);
    for (int i = 0; i < cfg->nvms; i++) {
        const struct vm_config *v = &cfg->vm[i];
        assert_true(valid_name(v->name));
        assert_in_range(v->line, 1, lines);
        assert_in_range(v->memory, CFG_MIN_VM_MEMORY, CFG_MAX_VM_MEMORY);
        assert_int_equal(v->memory & 0xfff, 0);
        assert_true(memchr(v->kernel, 0, CFG_PATH_MAX) != NULL);
        assert_int_equal(v->kernel[0], '\\');
        assert_true(memchr(v->initrd, 0, CFG_PATH_MAX) != NULL);
        assert_true(v->initrd[0] == '\0' || v->initrd[0] == '\\');
        assert_true(memchr(v->cmdline, 0, CFG_CMDLINE_MAX) != NULL);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(v->name, cfg->vm[j].name);
    }
}

static void test_fuzz(void **state)
{
    static const char base[] =
        "\xef\xbb\xbf# fuzz base\r\n"
        "log = info\n"
        "log.mm = debug ; x\n"
        "poweroff = yes\n"
        "[vm one]\n"
        "memory = 256M\n"
        "kernel = boot/vmlinuz\n"
        "initrd = \"/initrd.img\"\n"
        "cmdline = \"console=ttyS0 # q\" # c\n"
        "[vm two]\n"
        "memory = 4096K\n"
        "kernel = \\efi\\k\n";
    static const char interesting[] = "[]=#;\"\\/ \t\r\n\0vmMGKTiB0123456789.";
    enum { CAP = sizeof(base) + 8 * 1400 };
    static char buf[CAP];
    static struct hv_config cfg;
    int accepted = 0, rejected = 0;

    rng = 0x243f6a8885a308d3ULL;
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = sizeof(base) - 1;
        memcpy(buf, base, len);
        int nmut = 1 + (int)(next_rand() % 4);
        for (int m = 0; m < nmut; m++) {
            uint64_t r = next_rand();
            size_t pos = len ? (size_t)(next_rand() % (len + 1)) : 0;
            char c = (r & 0x100) ? interesting[(r >> 16) % (sizeof(interesting) - 1)]
                                 : (char)(r >> 24);
            switch (r % 6) {
            case 0: /* replace a byte */
                if (pos < len)
                    buf[pos] = c;
                break;
            case 1: /* insert a byte */
                if (len < CAP - 1) {
                    memmove(buf + pos + 1, buf + pos, len - pos);
                    buf[pos] = c;
                    len++;
                }
                break;
            case 2: /* delete a byte */
                if (pos < len) {
                    memmove(buf + pos, buf + pos + 1, len - pos - 1);
                    len--;
                }
                break;
            case 3: /* truncate */
                len = pos;
                break;
            case 4: { /* copy a span of up to 64 bytes to another place */
                size_t from = len ? (size_t)(next_rand() % len) : 0;
                size_t n = (size_t)(next_rand() % 65);
                if (from + n > len)
                    n = len - from;
                if (len + n <= CAP) {
                    char span[64];
                    memcpy(span, buf + from, n);
                    memmove(buf + pos + n, buf + pos, len - pos);
                    memcpy(buf + pos, span, n);
                    len += n;
                }
                break;
            }
            default: { /* insert a long run of one byte (overlong lines) */
                size_t n = 1100 + (size_t)(next_rand() % 200);
                if (len + n <= CAP) {
                    memmove(buf + pos + n, buf + pos, len - pos);
                    memset(buf + pos, c == '\n' ? 'x' : c, n);
                    len += n;
                }
                break;
            }
            }
        }
        int lines = 1;
        for (size_t i = 0; i < len; i++)
            lines += buf[i] == '\n';

        struct cfg_error err;
        memset(&err, 0x55, sizeof(err));
        int rc = parse_n(buf, len, &cfg, &err);
        if (rc == 0) {
            accepted++;
            assert_int_equal(err.line, 0);
            check_accepted(&cfg, lines);
        } else {
            rejected++;
            assert_int_equal(rc, -1);
            if (err.line < 0 || err.line > lines + 1 || err.reason[0] == '\0' ||
                !memchr(err.reason, 0, sizeof(err.reason)))
                fail_msg("iteration %d: bad error (line %d of %d, reason \"%.*s\")",
                         iter, err.line, lines, (int)sizeof(err.reason), err.reason);
        }
    }
    /* The mutations must exercise both outcomes. */
    print_message("fuzz: %d accepted, %d rejected\n", accepted, rejected);
    assert_true(accepted > 100);
    assert_true(rejected > 1000);
}

/* Swap keys: a device name, its range or partition, format and the
 * self-test mode; options without a device are refused. */
static void test_swap_keys(void **state)
{
    (void)state;
    static struct hv_config cfg;
    check_ok(VM_A, &cfg);
    assert_string_equal(cfg.swap_dev, "");
    assert_int_equal(cfg.swap_selftest, SWAP_TEST_NONE);
    check_ok("swap = ata2\nswap_offset = 1M\nswap_size = 64M\nswap_format = yes\n"
             "swap_selftest = swap-only\n" VM_A, &cfg);
    assert_string_equal(cfg.swap_dev, "ata2");
    assert_int_equal(cfg.swap_offset, 1 << 20);
    assert_int_equal(cfg.swap_size, 64 << 20);
    assert_true(cfg.swap_format);
    assert_int_equal(cfg.swap_selftest, SWAP_TEST_SWAP);
    check_ok("swap = nvme0\nswap_partition = 2\nswap_selftest = yes\n", &cfg);
    assert_string_equal(cfg.swap_dev, "nvme0");
    assert_int_equal(cfg.swap_partition, 2);
    assert_int_equal(cfg.swap_selftest, SWAP_TEST_ALL);
    check_ok("swap = none\n", &cfg);
    assert_string_equal(cfg.swap_dev, "");
    check_error("swap = /dev/sda\n", 1, "bad device name");
    check_error("swap = nvme0\nswap_size = 4K\n", 2, "below the smallest");
    check_error("swap = nvme0\nswap_partition = 5\n", 2, "MBR primary partition");
    check_error("swap = nvme0\nswap_selftest = maybe\n", 2, "yes, no or swap-only");
    check_error("swap_format = yes\n", 0, "need a device");
    check_error("swap = ata2\nswap_offset = 1M\nswap_partition = 1\n", 0, "give one");
    check_error(VM_A "swap = ata2\n", 4, "global key");
    check_error("swap = averyveryverylongname\n", 1, "too long");
}

/* balloon: a per-VM size, at most the VM's memory. */
static void test_balloon_key(void **state)
{
    (void)state;
    static struct hv_config cfg;
    check_ok(VM_A "balloon = 16M\n", &cfg);
    assert_int_equal(cfg.vm[0].balloon, 16 << 20);
    check_ok(VM_A, &cfg);
    assert_int_equal(cfg.vm[0].balloon, 0);
    check_error(VM_A "balloon = 128M\n", 1, "balloon is above its memory");
    check_error("balloon = 16M\n", 1, "belongs in a [vm NAME] section");
    check_error(VM_A "balloon = 5000\n", 4, "not a multiple of 4K");
    /* The pressure policy: on unless turned off, a global yes/no. */
    assert_true(cfg.balloon_policy);
    check_ok("balloon_policy = no\n" VM_A, &cfg);
    assert_false(cfg.balloon_policy);
    check_ok("balloon_policy = yes\n" VM_A, &cfg);
    assert_true(cfg.balloon_policy);
    check_error("balloon_policy = sometimes\n", 1, "must be yes or no");
    check_error(VM_A "balloon_policy = no\n", 4, "global key");
    check_error("balloon_policy = no\nballoon_policy = yes\n", 2, "twice");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size_units),
        cmocka_unit_test(test_size_rejects),
        cmocka_unit_test(test_size_overflow),
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_full_config_lf),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_no_final_newline),
        cmocka_unit_test(test_log_levels),
        cmocka_unit_test(test_poweroff_values),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_memory_limits),
        cmocka_unit_test(test_cmdline),
        cmocka_unit_test(test_vm_names),
        cmocka_unit_test(test_max_vms),
        cmocka_unit_test(test_line_length),
        cmocka_unit_test(test_pool_keys),
        cmocka_unit_test(test_swap_keys),
        cmocka_unit_test(test_balloon_key),
        cmocka_unit_test(test_err_pool_keys),
        cmocka_unit_test(test_trace_keys),
        cmocka_unit_test(test_err_trace_keys),
        cmocka_unit_test(test_err_unknown_key),
        cmocka_unit_test(test_err_bad_key),
        cmocka_unit_test(test_err_key_outside_section),
        cmocka_unit_test(test_err_global_key_in_section),
        cmocka_unit_test(test_err_duplicate_key),
        cmocka_unit_test(test_err_duplicate_vm),
        cmocka_unit_test(test_err_missing_required),
        cmocka_unit_test(test_err_vm_name),
        cmocka_unit_test(test_err_section),
        cmocka_unit_test(test_err_missing_equals),
        cmocka_unit_test(test_err_quote),
        cmocka_unit_test(test_err_memory),
        cmocka_unit_test(test_err_control_bytes),
        cmocka_unit_test(test_err_log),
        cmocka_unit_test(test_err_line_numbers_crlf),
        cmocka_unit_test(test_fuzz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

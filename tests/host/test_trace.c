/* mm/trace.c: the transition trace's encodings (CRC-32, base64), its ring
 * (overwriting, counted per VM), the causes the mechanisms mark, and the
 * dump's line structure. The simulator's replay (tests/sim/replay.c)
 * decodes and replays whole dumps. */
#include "tests/host/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mm/console.h"
#include "mm/mm.h"
#include "mm/p2m.h"
#include "mm/p2m_internal.h"
#include "mm/trace.h"

#define FRAMES 512

static struct p2m a, b;

static int setup(void **state)
{
    backend_frames(FRAMES, 1, FRAMES - 1);
    mm_set_watermark(4);
    return 0;
}

static int teardown(void **state)
{
    trace_fini();
    if (a.map) {
        mm_unregister(&a);
        p2m_destroy(&a);
    }
    if (b.map) {
        mm_unregister(&b);
        p2m_destroy(&b);
    }
    backend_free();
    return 0;
}

static void make(struct p2m *p, uint16_t owner, uint64_t ngfn)
{
    assert_int_equal(p2m_init(p, owner, owner == 1 ? "a" : "b", ngfn, 0, 0, true), 0);
    assert_int_equal(mm_register(p), 0);
}

static void test_crc32(void **state)
{
    /* The standard check value of CRC-32/ISO-HDLC (zlib's crc32). */
    assert_int_equal(trace_crc32(0, "123456789", 9), 0xcbf43926);
    assert_int_equal(trace_crc32(0, "", 0), 0);
    /* Chaining equals one pass. */
    assert_int_equal(trace_crc32(trace_crc32(0, "1234", 4), "56789", 5), 0xcbf43926);
}

static void test_base64(void **state)
{
    static const char *const in[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
    static const char *const out[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=",
                                       "Zm9vYmFy" };
    char enc[32];
    uint8_t dec[32];
    for (int i = 0; i < 7; i++) {
        size_t n = strlen(in[i]);
        assert_int_equal(trace_base64(in[i], n, enc), strlen(out[i]));
        assert_string_equal(enc, out[i]);
        assert_int_equal(trace_unbase64(enc, strlen(enc), dec, sizeof(dec)), (long)n);
        assert_memory_equal(dec, in[i], n);
    }
    /* Every byte value survives. */
    uint8_t all[256], back[256];
    char big[400];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    size_t n = trace_base64(all, 256, big);
    assert_int_equal(trace_unbase64(big, n, back, sizeof(back)), 256);
    assert_memory_equal(all, back, 256);
    /* Bad input is refused, never read past. */
    assert_int_equal(trace_unbase64("Zm9", 3, dec, sizeof(dec)), -1);      /* length */
    assert_int_equal(trace_unbase64("Zm9*", 4, dec, sizeof(dec)), -1);     /* character */
    assert_int_equal(trace_unbase64("Zg==Zm9v", 8, dec, sizeof(dec)), -1); /* padding inside */
    assert_int_equal(trace_unbase64("Z===", 4, dec, sizeof(dec)), -1);
    assert_int_equal(trace_unbase64("Zm9vYmFy", 8, dec, 5), -1);           /* room */
}

static void test_mask_names(void **state)
{
    assert_int_equal(trace_mask_bit("fault", 5), 1u << TC_FAULT);
    assert_int_equal(trace_mask_bit("balloon", 7), 1u << TC_BALLOON);
    assert_int_equal(trace_mask_bit("all", 3), TRACE_MASK_ALL);
    assert_int_equal(trace_mask_bit("faul", 4), 0);
    assert_int_equal(trace_mask_bit("faults", 6), 0);
    assert_int_equal(trace_mask_bit("other", 5), 0); /* always recorded, not selectable */
    char buf[64];
    trace_mask_text(TRACE_MASK_ALL, buf, sizeof(buf));
    assert_string_equal(buf, "all");
    trace_mask_text(1u << TC_SWAP | 1u << TC_FAULT | 1u, buf, sizeof(buf));
    assert_string_equal(buf, "fault,swap");
}

/* Faults, reclaim and the balloon each mark their transitions; the mask
 * keeps only what it names; tracing off records nothing. */
static void test_causes_and_mask(void **state)
{
    make(&a, 1, 64);
    struct trace_stats ts;
    assert_int_equal(p2m_fault(&a, 0, P2M_ACCESS_W), P2M_OK); /* not traced: off */
    trace_get_stats(&ts);
    assert_int_equal(ts.recorded, 0);
    assert_int_equal(trace_init(1u << TC_FAULT | 1u << TC_BALLOON, 1, 1 << 20), 0);
    for (int g = 1; g < 9; g++)
        assert_int_equal(p2m_fault(&a, (uint64_t)g * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
    trace_get_stats(&ts);
    assert_int_equal(ts.recorded, 8);
    /* Zero pages: reclaim's, which the mask leaves out. */
    assert_true(p2m_reclaim(&a, 4, 64) > 0);
    trace_get_stats(&ts);
    assert_int_equal(ts.recorded, 8);
    uint64_t g = 20;
    unsigned bad;
    assert_int_equal(p2m_balloon_inflate(&a, &g, 1, &bad), 0);
    trace_get_stats(&ts);
    assert_int_equal(ts.recorded, 9);
    assert_int_equal(a.tcause, TC_OTHER); /* every entry point restored it */
    trace_fini();
    assert_int_equal(trace_init(TRACE_MASK_ALL, 1, 1 << 20), 0);
    for (int g = 30; g < 34; g++)
        assert_int_equal(p2m_fault(&a, (uint64_t)g * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
    uint64_t got = p2m_reclaim(&a, 64, 128);
    assert_true(got >= 4);
    trace_get_stats(&ts);
    assert_int_equal(ts.recorded, 4 + got); /* the faults, then reclaim's */
    assert_int_equal(a.tcause, TC_OTHER);
}

struct capture {
    char *buf;
    size_t len, cap;
    int lines;
};

static void capture(const char *line, size_t n, void *ctx)
{
    struct capture *c = ctx;
    if (c->len + n + 1 > c->cap) {
        c->cap = (c->len + n + 1) * 2;
        c->buf = realloc(c->buf, c->cap);
    }
    memcpy(c->buf + c->len, line, n);
    c->len += n;
    c->buf[c->len] = 0;
    c->lines++;
    assert_int_equal(line[n - 1], '\n');
}

/* A ring of one frame (256 entries) overwritten by two VMs: the counts
 * per VM, and a dump whose every data line checks. */
static void test_ring_and_dump(void **state)
{
    make(&a, 1, 4096);
    make(&b, 2, 64);
    assert_int_equal(trace_init(TRACE_MASK_ALL, 1, 1 << 20), 0);
    assert_int_equal(p2m_fault(&b, 0, P2M_ACCESS_W), P2M_OK); /* b: 1, overwritten below */
    for (uint64_t g = 0; g < 300; g++)
        assert_int_equal(p2m_fault(&a, g * PAGE_SIZE, P2M_ACCESS_R), P2M_OK);
    struct trace_stats ts;
    trace_get_stats(&ts);
    assert_int_equal(ts.capacity, 256);
    assert_int_equal(ts.recorded, 301);
    assert_int_equal(ts.dropped, 45);
    struct capture c = { 0 };
    assert_int_equal(trace_dump(&a, "console", capture, &c), 256);
    assert_non_null(strstr(c.buf, "@hvtrace H v=1 vm=a owner=1 why=console ngfn=4096 mask=all "
                                  "tick_hz=256 recorded=300 entries=256 dropped=44 "
                                  "counts=3796,300,0,0,0,0,0,0\n"));
    /* 256 entries of 16 bytes in lines of 192 bytes: 22 E lines; then the
     * map (two runs: 300 resident, 3796 unpopulated) and the end line. */
    assert_non_null(strstr(c.buf, "@hvtrace Z a elines=22 mlines=1 crc="));
    assert_int_equal(c.lines, 1 + 22 + 1 + 1);
    /* Every data line's checksum is that of its decoded bytes, and the
     * last entry is the last fault (gfn 299, unpopulated -> resident). */
    uint8_t last[TRACE_LINE_BYTES];
    long lastn = 0;
    for (char *l = strstr(c.buf, "@hvtrace E "); l; l = strstr(l + 1, "@hvtrace E ")) {
        char vm[8], b64[300];
        unsigned idx, crc;
        assert_int_equal(sscanf(l, "@hvtrace E %7s %u %299s %x", vm, &idx, b64, &crc), 4);
        lastn = trace_unbase64(b64, strlen(b64), last, sizeof(last));
        assert_true(lastn > 0 && lastn % 16 == 0);
        assert_int_equal(trace_crc32(0, last, (size_t)lastn), crc);
    }
    struct trace_entry e;
    memcpy(&e, last + lastn - 16, 16);
    assert_int_equal(e.gfn, 299);
    assert_int_equal(e.edge, P2M_UNPOPULATED << 4 | P2M_RESIDENT);
    assert_int_equal(e.cause, TC_FAULT);
    assert_int_equal(e.owner, 1);
    assert_int_equal(e.seq, 300);
    /* b's only entry was overwritten: an empty window, its map still dumped. */
    c.len = 0;
    c.lines = 0;
    assert_int_equal(trace_dump(&b, "stop", capture, &c), 0);
    assert_non_null(strstr(c.buf, "recorded=1 entries=0 dropped=1"));
    assert_non_null(strstr(c.buf, "@hvtrace Z b elines=0 mlines=1 "));
    free(c.buf);
}

/* Off: no ring, nothing dumped, no frames held. */
static void test_off(void **state)
{
    make(&a, 1, 64);
    uint64_t before = frame_free_count();
    assert_int_equal(trace_init(0, 64, 1 << 20), 0);
    assert_int_equal(frame_free_count(), before);
    struct capture c = { 0 };
    assert_int_equal(trace_dump(&a, "stop", capture, &c), 0);
    assert_int_equal(c.lines, 0);
    assert_int_equal(trace_init(TRACE_MASK_ALL, 4, 1 << 20), 0);
    assert_int_equal(frame_free_count(), before - 4);
    trace_fini();
    assert_int_equal(frame_free_count(), before);
    /* A ring larger than the machine: refused, tracing stays off. */
    assert_int_equal(trace_init(TRACE_MASK_ALL, 4096, 1 << 20), -1);
    assert_int_equal(trace_mask, 0);
}

static void console(const char *cmd)
{
    char buf[CONSOLE_LINE_MAX + 1];
    snprintf(buf, sizeof(buf), "%s", cmd);
    backend_log_clear();
    console_exec(buf);
}

/* The console's trace: off, an unknown VM, one VM, every VM; the dump goes
 * to the serial log (the log sink). */
static void test_console(void **state)
{
    make(&a, 1, 64);
    make(&b, 2, 32);
    console("trace");
    assert_non_null(strstr(backend_log(), "[con] trace: off (set trace = "));
    assert_int_equal(trace_init(TRACE_MASK_ALL, 1, 1 << 20), 0);
    assert_int_equal(p2m_fault(&a, 3 * PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
    assert_int_equal(p2m_fault(&b, 0, P2M_ACCESS_W), P2M_OK);
    assert_int_equal(p2m_fault(&b, PAGE_SIZE, P2M_ACCESS_W), P2M_OK);
    console("trace nosuch");
    assert_non_null(strstr(backend_log(), "[con] warning: trace: no running VM is called "
                                          "'nosuch'"));
    assert_null(strstr(backend_log(), "@hvtrace"));
    console("trace b");
    assert_non_null(strstr(backend_log(), "[con] trace: 3 entries recorded, 0 overwritten "
                                          "(ring of 256)"));
    assert_non_null(strstr(backend_log(), "@hvtrace H v=1 vm=b owner=2 why=console ngfn=32 "
                                          "mask=all tick_hz=256 recorded=2 entries=2 "
                                          "dropped=0 counts=30,2,0,0,0,0,0,0\n"));
    assert_null(strstr(backend_log(), "vm=a"));
    assert_non_null(strstr(backend_log(), "[mm] vm b: trace: 2 entries and the final map "
                                          "dumped in 4 lines"));
    console("trace");
    assert_non_null(strstr(backend_log(), "@hvtrace H v=1 vm=a "));
    assert_non_null(strstr(backend_log(), "@hvtrace Z a elines=1 mlines=1 crc="));
    assert_non_null(strstr(backend_log(), "@hvtrace H v=1 vm=b "));
    console("trace a b");
    assert_non_null(strstr(backend_log(), "unknown command or wrong arguments"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_mask_names),
        cmocka_unit_test_setup_teardown(test_causes_and_mask, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ring_and_dump, setup, teardown),
        cmocka_unit_test_setup_teardown(test_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_console, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

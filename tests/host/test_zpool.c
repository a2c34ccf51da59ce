/* The compressed pool (mm/zpool.c) on its own and behind the p2m. On its
 * own: round trips of synthetic pages and of real program bytes (busybox,
 * and pages dumped from Linux guests when build/corpus/linux-pages.bin
 * exists), every size class, density against zbud's two objects per frame,
 * the frame cap and the allocator's free-frame floor, handles that name no
 * object, compaction with its relocate callback (whole and budget-limited),
 * and damage found by the header check or by LZ4 plus the checksum. Behind
 * the p2m: reclaim compresses cold pages and decompression faults bring
 * them back, corruption stops the page (P2M_CORRUPT) without ever handing
 * out wrong content, same-filled and incompressible pages, the second
 * chance, a full pool, compaction relocating p2m handles, and the pool
 * switched off. */
#include "tests/host/backend.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mm/compress.h"
#include "mm/ept.h"
#include "mm/hash.h"
#include "mm/mm.h"
#include "mm/p2m.h"
#include "mm/zpool.h"

#define FRAMES 4096     /* 16 MiB machine */
#define OWNER 7         /* owner id of the objects the tests store themselves */
#define CMP_CAP 2048    /* the pool's default threshold */
#define BATCH 256       /* pages per round-trip batch */
#define MAX_CORPUS 8192 /* pages read from the Linux dump at most */

static struct p2m vm;

/* ---- deterministic content ------------------------------------------------ */

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static uint64_t rng; /* reseeded by every test's setup */

static uint64_t next_rand(void)
{
    return xorshift(&rng);
}

static const char *const sentences[] = {
    "The guest touched a page it had never used, so it got a zeroed frame.",
    "Reclaim looks at cold pages first and compresses what shrinks enough.",
    "A same-filled page needs no frame at all: one word says what it holds.",
    "INVEPT must complete before the frame is reused or its content read.",
    "The pool packs objects of many sizes into zspages of up to four frames.",
    "Compaction moves objects out of sparse zspages and frees the frames.",
    "error: handle %u names no object in class %u",
    "warning: vm %u waited %u times for memory",
    "info: %u pages resident, %u compressed, %u same-filled",
    "the quick brown fox jumps over the lazy dog",
};
#define NSENTENCES (sizeof(sentences) / sizeof(sentences[0]))

/* Text: numbered lines of log-like sentences with numbers in them. */
static void fill_text(uint8_t *p, uint64_t seed)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 0x1234567;
    size_t i = 0;
    unsigned line = (unsigned)(seed % 1000) * 50;
    while (i < CMP_PAGE) {
        uint64_t r = xorshift(&x);
        char tmp[160];
        int n = snprintf(tmp, sizeof(tmp), "%6u  ", ++line);
        n += snprintf(tmp + n, sizeof(tmp) - (size_t)n, sentences[r % NSENTENCES],
                      (unsigned)(r >> 20) % 4096, (unsigned)(r >> 40) % 97,
                      (unsigned)(r >> 50) % 13);
        tmp[n++] = '\n';
        for (int k = 0; k < n && i < CMP_PAGE; k++)
            p[i++] = (uint8_t)tmp[k];
    }
}

static void fill_random(uint8_t *p, uint64_t seed)
{
    uint64_t x = seed * 0x2545f4914f6cdd1dULL + 99;
    for (size_t i = 0; i < CMP_PAGE; i += 8) {
        uint64_t v = xorshift(&x);
        memcpy(p + i, &v, 8);
    }
}

/* Mixed: text with a 32-byte run of random bytes every 256 bytes. */
static void fill_mixed(uint8_t *p, uint64_t seed)
{
    uint8_t noise[CMP_PAGE];
    fill_text(p, seed);
    fill_random(noise, seed ^ 0xabcdef);
    for (size_t i = 0; i < CMP_PAGE; i += 256)
        memcpy(p + i + 128, noise + i, 32);
}

/* Sparse: mostly zero, a handful of scattered words. */
static void fill_sparse(uint8_t *p, uint64_t seed)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 7;
    memset(p, 0, CMP_PAGE);
    for (int k = 0; k < 24; k++) {
        uint64_t r = xorshift(&x);
        uint64_t v = xorshift(&x);
        memcpy(p + (r % (CMP_PAGE / 8)) * 8, &v, 8);
    }
}

/* Small structured records, as in a kernel slab: ids counting up, small
 * fields, pointers into one region. */
struct rec {
    uint32_t id;
    uint16_t kind, flags;
    uint64_t next;
    uint32_t size, refs;
    char name[8];
};
_Static_assert(sizeof(struct rec) == 32, "record size");

static void fill_records(uint8_t *p, uint64_t seed)
{
    static const char *const names[] = {"inode", "dentry", "task", "vma"};
    uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 3;
    uint64_t base = 0xffff888000000000ULL + (seed % 4096) * PAGE_SIZE;
    struct rec r;
    for (unsigned i = 0; i < CMP_PAGE / sizeof(r); i++) {
        uint64_t v = xorshift(&x);
        unsigned kind = (i / 8 + (unsigned)seed) % 4;
        memset(&r, 0, sizeof(r));
        r.id = (uint32_t)(seed * 1000 + i);
        r.kind = (uint16_t)kind;
        r.flags = (uint16_t)(v % 16 == 0);
        r.next = i + 1 < CMP_PAGE / sizeof(r) ? base + (i + 1) * sizeof(r) : 0;
        r.size = 64u << kind;
        r.refs = 1 + (uint32_t)((v >> 12) % 8 == 0);
        snprintf(r.name, sizeof(r.name), "%s", names[kind]);
        memcpy(p + i * sizeof(r), &r, sizeof(r));
    }
}

/* An object's bytes, from its length and seed. */
static void fill_obj(uint8_t *b, unsigned len, uint64_t seed)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ULL + len;
    for (unsigned i = 0; i < len; i++)
        b[i] = (uint8_t)(xorshift(&x) >> 24);
}

/* Slot bytes of an object of len bytes: header and data rounded up to the
 * 32-byte class step (zpool.h). */
static unsigned slot_of(unsigned len)
{
    return (len + ZP_HDR + ZP_CLASS_STEP - 1) / ZP_CLASS_STEP * ZP_CLASS_STEP;
}

static struct zpool_stats pool_stats(void)
{
    struct zpool_stats st;
    zpool_get_stats(&st);
    return st;
}

/* Handle layout (mm/zpool.h): length << 48 | zspage << 7 | slot. */
#define ZP_LOC ((1ULL << 48) - 1)
#define LEN1400 ((uint64_t)1400 << 48)

/* ---- objects the tests store themselves ---------------------------------- */

/* Object i has gfn i, so that the relocate callback can find it. */
#define MAX_OBJS 4096
struct obj {
    uint64_t handle;
    unsigned len;
    uint64_t seed;
    bool live;
};
static struct obj objs[MAX_OBJS];
static unsigned nobjs;
static uint64_t relocations;
static bool relocate_checks; /* the callback also checks both copies exist */

static bool test_relocate(uint16_t owner, uint64_t gfn, uint64_t old_handle,
                          uint64_t new_handle)
{
    relocations++;
    assert_int_equal(owner, OWNER);
    assert_true(gfn < nobjs);
    struct obj *o = &objs[gfn];
    assert_true(o->live);
    assert_int_equal(o->handle, old_handle);
    assert_int_not_equal(old_handle, new_handle);
    if (relocate_checks) {
        /* Called before the old copy is freed: both name the object. */
        assert_true(zpool_check_object(old_handle, OWNER, gfn, o->len));
        assert_true(zpool_check_object(new_handle, OWNER, gfn, o->len));
    }
    o->handle = new_handle;
    return true;
}

/* Stores a new object of len bytes; returns its index, or -1 with *why. */
static int obj_store(unsigned len, enum zpool_store_result *why)
{
    static uint8_t buf[ZP_MAX_DATA];
    assert_true(nobjs < MAX_OBJS);
    unsigned i = nobjs;
    struct obj *o = &objs[i];
    o->len = len;
    o->seed = next_rand();
    fill_obj(buf, len, o->seed);
    enum zpool_store_result r =
        zpool_store(buf, len, OWNER, i, (uint32_t)o->seed, &o->handle);
    if (why)
        *why = r;
    if (r != ZP_STORED)
        return -1;
    o->live = true;
    nobjs++;
    return (int)i;
}

static void obj_free(unsigned i)
{
    assert_true(objs[i].live);
    zpool_free(objs[i].handle);
    objs[i].live = false;
}

/* Object i loads through its current handle with its own bytes. */
static void obj_verify(unsigned i)
{
    static uint8_t want[ZP_MAX_DATA], got[ZP_MAX_DATA];
    struct obj *o = &objs[i];
    uint32_t check = 0;
    assert_true(zpool_check_object(o->handle, OWNER, i, o->len));
    assert_int_equal(zpool_load(o->handle, OWNER, i, o->len, got, &check), 0);
    assert_int_equal(check, (uint32_t)o->seed);
    fill_obj(want, o->len, o->seed);
    assert_memory_equal(got, want, o->len);
}

static void verify_live(void)
{
    for (unsigned i = 0; i < nobjs; i++)
        if (objs[i].live)
            obj_verify(i);
}

static void free_live(void)
{
    for (unsigned i = 0; i < nobjs; i++)
        if (objs[i].live)
            obj_free(i);
}

/* ---- set-up ------------------------------------------------------------- */

static int setup(void **state)
{
    backend_frames(FRAMES, 1, FRAMES - 1);
    mm_set_watermark(4);
    backend_log_clear();
    rng = 0x853c49e6748fea9bULL;
    memset(objs, 0, sizeof(objs));
    nobjs = 0;
    relocations = 0;
    relocate_checks = false;
    memset(&vm, 0, sizeof(vm));
    return 0;
}

static int teardown(void **state)
{
    if (vm.map) {
        mm_unregister(&vm);
        p2m_destroy(&vm);
    }
    free_live();
    zpool_fini();
    backend_free();
    return 0;
}

/* ---- round trips ---------------------------------------------------------- */

struct rt_count {
    unsigned pages, fitted;
    uint64_t bytes; /* compressed bytes of those that fitted */
};

/* Compresses each of n pages with capacity cap; those that fit go into the
 * pool, then come back through zpool_load and LZ4 and are compared byte for
 * byte; everything is freed again. Every buffer is malloc'd at exactly its
 * size, so the sanitizer build catches any overrun. */
static void round_trip_batch(const uint8_t *pages, unsigned n, uint64_t first_id, int cap,
                             struct rt_count *c)
{
    uint64_t handle[BATCH];
    int len[BATCH];
    uint32_t sum[BATCH];
    assert_true(n <= BATCH);
    uint8_t *cbuf = malloc((size_t)cap);
    uint8_t *out = malloc(CMP_PAGE);
    assert_non_null(cbuf);
    assert_non_null(out);
    for (unsigned i = 0; i < n; i++) {
        const uint8_t *pg = pages + (size_t)i * CMP_PAGE;
        len[i] = cmp_compress_page(pg, cbuf, cap);
        assert_true(len[i] >= 0 && len[i] <= cap);
        c->pages++;
        if (!len[i])
            continue;
        c->fitted++;
        c->bytes += (uint64_t)len[i];
        sum[i] = hash_check32(pg, CMP_PAGE, 0);
        assert_int_equal(
            zpool_store(cbuf, (unsigned)len[i], OWNER, first_id + i, sum[i], &handle[i]),
            ZP_STORED);
    }
    assert_int_equal(zpool_check(), 0);
    for (unsigned i = 0; i < n; i++) {
        if (!len[i])
            continue;
        uint8_t *exact = malloc((size_t)len[i]);
        assert_non_null(exact);
        uint32_t check = 0;
        assert_int_equal(
            zpool_load(handle[i], OWNER, first_id + i, (unsigned)len[i], exact, &check),
            0);
        assert_int_equal(check, sum[i]);
        memset(out, 0x5a, CMP_PAGE);
        assert_int_equal(cmp_decompress_page(exact, len[i], out), 0);
        assert_memory_equal(out, pages + (size_t)i * CMP_PAGE, CMP_PAGE);
        free(exact);
        zpool_free(handle[i]);
    }
    free(cbuf);
    free(out);
    struct zpool_stats st = pool_stats();
    assert_int_equal(st.objects, 0);
    assert_int_equal(st.frames, 0);
    assert_int_equal(st.data_bytes, 0);
    assert_int_equal(zpool_check(), 0);
}

/* Round-trips every page of a file, BATCH pages at a time (a short last
 * page padded with zeros). Returns pages read, at most max_pages. */
static unsigned round_trip_file(const char *path, unsigned max_pages, int cap,
                                struct rt_count *c)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    uint8_t *pages = malloc((size_t)BATCH * CMP_PAGE);
    assert_non_null(pages);
    unsigned total = 0;
    for (;;) {
        unsigned n = 0;
        while (n < BATCH && total + n < max_pages) {
            uint8_t *pg = pages + (size_t)n * CMP_PAGE;
            size_t got = fread(pg, 1, CMP_PAGE, f);
            if (!got)
                break;
            memset(pg + got, 0, CMP_PAGE - got);
            n++;
            if (got < CMP_PAGE)
                break;
        }
        if (!n)
            break;
        round_trip_batch(pages, n, total, cap, c);
        total += n;
        if (n < BATCH || total >= max_pages)
            break;
    }
    free(pages);
    fclose(f);
    return total;
}

/* Text, mixed, sparse and record pages all fit in 2048 bytes and survive
 * the pool and LZ4 unchanged. */
static void test_round_trip_synthetic(void **state)
{
    static void (*const fill[])(uint8_t *, uint64_t) = {fill_text, fill_mixed,
                                                        fill_sparse, fill_records};
    static const char *const name[] = {"text", "mixed", "sparse", "records"};
    assert_int_equal(zpool_init(1024, test_relocate), 0);
    assert_true(zpool_enabled());
    uint8_t *pages = malloc((size_t)BATCH * CMP_PAGE);
    assert_non_null(pages);
    for (unsigned k = 0; k < 4; k++) {
        for (unsigned i = 0; i < 64; i++)
            fill[k](pages + (size_t)i * CMP_PAGE, k * 1000 + i);
        struct rt_count c = {0};
        round_trip_batch(pages, 64, k * 1000, CMP_CAP, &c);
        print_message("  %-8s %u/%u pages fit, %llu bytes on average\n", name[k],
                      c.fitted, c.pages,
                      (unsigned long long)(c.fitted ? c.bytes / c.fitted : 0));
        assert_int_equal(c.fitted, c.pages);
    }
    free(pages);
    assert_int_equal(relocations, 0);
}

/* Real program bytes: every page of the busybox binary the guests run, and
 * pages of real Linux guests when the corpus has been dumped. LZ4 leaves
 * most x86 code above 2048 bytes, so busybox also goes through with the
 * largest object the pool takes. */
static void test_round_trip_program_pages(void **state)
{
    static const int caps[] = {CMP_CAP, ZP_MAX_DATA};
    assert_int_equal(zpool_init(1024, test_relocate), 0);
    for (unsigned k = 0; k < 2; k++) {
        struct rt_count c = {0};
        unsigned n = round_trip_file("/bin/busybox", ~0u, caps[k], &c);
        assert_true(n >= 64); /* busybox must be there, and is about 2 MB */
        print_message("  /bin/busybox: %u pages, %u fit in %d bytes (%llu on average)\n",
                      n, c.fitted, caps[k],
                      (unsigned long long)(c.fitted ? c.bytes / c.fitted : 0));
        assert_true(c.fitted > 0);
        if (caps[k] == ZP_MAX_DATA)
            assert_true(c.fitted > n / 4);
    }
    struct rt_count l = {0};
    unsigned n = round_trip_file("build/corpus/linux-pages.bin", MAX_CORPUS, CMP_CAP, &l);
    if (n)
        print_message(
            "  linux-pages.bin: %u pages, %u fit in %d bytes (%llu on average)\n", n,
            l.fitted, CMP_CAP, (unsigned long long)(l.fitted ? l.bytes / l.fitted : 0));
}

/* Random bytes do not shrink to 2048: cmp_compress_page says 0. */
static void test_random_pages_do_not_fit(void **state)
{
    uint8_t *page = malloc(CMP_PAGE), *cbuf = malloc(CMP_CAP);
    assert_non_null(page);
    assert_non_null(cbuf);
    for (unsigned i = 0; i < 32; i++) {
        fill_random(page, i);
        assert_int_equal(cmp_compress_page(page, cbuf, CMP_CAP), 0);
    }
    free(page);
    free(cbuf);
}

/* ---- size classes and density ----------------------------------------------- */

/* Every length from 1 to ZP_MAX_DATA (in steps of 7, and the largest) is
 * stored, counted and read back; the pool is consistent after every
 * operation; lengths outside 1..ZP_MAX_DATA are refused. */
static void test_size_classes(void **state)
{
    assert_int_equal(zpool_init(1024, test_relocate), 0);
    uint8_t buf[16] = {0};
    uint64_t h = 12345;
    assert_int_equal(zpool_store(buf, 0, OWNER, 0, 0, &h), ZP_TOOBIG);
    assert_int_equal(zpool_store(buf, ZP_MAX_DATA + 1, OWNER, 0, 0, &h), ZP_TOOBIG);
    assert_int_equal(h, 12345);
    uint64_t data = 0, slots = 0;
    for (unsigned len = 1;; len += 7) {
        if (len > ZP_MAX_DATA)
            len = ZP_MAX_DATA;
        enum zpool_store_result why;
        assert_true(obj_store(len, &why) >= 0);
        data += len;
        slots += slot_of(len);
        assert_int_equal(zpool_check(), 0);
        if (len == ZP_MAX_DATA)
            break;
    }
    struct zpool_stats st = pool_stats();
    assert_int_equal(st.objects, nobjs);
    assert_int_equal(st.data_bytes, data);
    assert_int_equal(st.slot_bytes, slots);
    assert_true(st.frames * PAGE_SIZE >= slots);
    assert_true(st.frames <= st.cap_frames);
    for (unsigned i = 0; i < nobjs; i++)
        obj_verify(i);
    /* Free the odd ones, check the rest, then the even ones. */
    for (unsigned i = 1; i < nobjs; i += 2) {
        obj_free(i);
        assert_int_equal(zpool_check(), 0);
    }
    for (unsigned i = 0; i < nobjs; i += 2)
        obj_verify(i);
    for (unsigned i = 0; i < nobjs; i += 2) {
        obj_free(i);
        assert_int_equal(zpool_check(), 0);
    }
    st = pool_stats();
    assert_int_equal(st.objects, 0);
    assert_int_equal(st.frames, 0);
    assert_int_equal(st.zspages, 0);
    assert_int_equal(st.data_bytes, 0);
    assert_int_equal(st.slot_bytes, 0);
    assert_int_equal(st.stores, nobjs);
    assert_int_equal(st.frees, nobjs);
}

/* 1000 objects of 1400 bytes: zbud would need 500 frames. */
static void test_density_beats_zbud(void **state)
{
    assert_int_equal(zpool_init(1024, test_relocate), 0);
    for (unsigned i = 0; i < 1000; i++)
        assert_true(obj_store(1400, NULL) >= 0);
    struct zpool_stats st = pool_stats();
    double density = (double)st.data_bytes / (double)(st.frames * PAGE_SIZE);
    print_message("  1000 x 1400 bytes in %llu frames (zbud: 500): density %.3f\n",
                  (unsigned long long)st.frames, density);
    assert_true(st.frames < 500);
    assert_true(density > 0.5);
    assert_int_equal(st.peak_frames, st.frames);
    assert_int_equal(zpool_check(), 0);
    for (unsigned i = 0; i < 1000; i += 97)
        obj_verify(i);
}

/* A load must name the object exactly: owner, GFN and length. */
static void test_load_checks_header(void **state)
{
    uint8_t buf[ZP_MAX_DATA];
    uint32_t check;
    assert_int_equal(zpool_init(64, test_relocate), 0);
    int i = obj_store(700, NULL);
    assert_true(i >= 0);
    uint64_t h = objs[i].handle;
    assert_int_equal(zpool_load(h, OWNER + 1, (uint64_t)i, 700, buf, &check), -1);
    assert_int_equal(zpool_load(h, OWNER, (uint64_t)i + 1, 700, buf, &check), -1);
    assert_int_equal(zpool_load(h, OWNER, (uint64_t)i | 1ULL << 32, 700, buf, &check),
                     -1);
    assert_int_equal(zpool_load(h, OWNER, (uint64_t)i, 699, buf, &check), -1);
    assert_int_equal(zpool_load(h, OWNER, (uint64_t)i, ZP_MAX_DATA + 1, buf, &check), -1);
    assert_false(zpool_check_object(h, OWNER, (uint64_t)i, 701));
    assert_false(zpool_check_object(h, OWNER + 1, (uint64_t)i, 700));
    assert_int_equal(pool_stats().corrupt, 5);
    obj_verify((unsigned)i);
    assert_int_equal(pool_stats().loads, 1);
}

/* ---- limits ------------------------------------------------------------------- */

/* Storing until ZP_FULL never takes the pool beyond its cap, and freeing
 * everything gives every frame back. The documented 1500-byte class (3
 * frames for 8 objects) fills a 30-frame pool with exactly 80 objects. */
static void test_fill_until_full(void **state)
{
    uint64_t free0 = backend_free_and_meta();
    assert_int_equal(zpool_init(30, test_relocate), 0);
    uint64_t free1 = backend_free_and_meta();
    assert_true(free1 < free0); /* the descriptor table */
    enum zpool_store_result why = ZP_STORED;
    while (obj_store(1500 - ZP_HDR, &why) >= 0)
        ;
    assert_int_equal(why, ZP_FULL);
    struct zpool_stats st = pool_stats();
    assert_int_equal(st.objects, 80);
    assert_int_equal(st.frames, 30);
    assert_int_equal(st.full, 1);
    assert_int_equal(backend_free_and_meta(), free1 - 30);
    /* Full stays full, and a refused store changes nothing. */
    assert_int_equal(obj_store(1500 - ZP_HDR, &why), -1);
    assert_int_equal(why, ZP_FULL);
    assert_int_equal(zpool_check(), 0);
    for (unsigned i = 0; i < nobjs; i++)
        obj_verify(i);
    for (unsigned i = 0; i < nobjs; i++)
        obj_free(i);
    assert_int_equal(backend_free_and_meta(), free1);
    assert_int_equal(zpool_check(), 0);

    /* Random lengths until the first refusal. */
    unsigned first = nobjs;
    while (obj_store(100 + (unsigned)(next_rand() % 2900), &why) >= 0)
        ;
    assert_int_equal(why, ZP_FULL);
    st = pool_stats();
    assert_true(st.frames <= 30);
    assert_true(st.frames > 30 - ZP_MAX_ZSPAGE_FRAMES);
    assert_int_equal(zpool_check(), 0);
    for (unsigned i = first; i < nobjs; i++)
        obj_verify(i);
    for (unsigned i = first; i < nobjs; i++)
        obj_free(i);
    assert_int_equal(backend_free_and_meta(), free1);
    assert_int_equal(pool_stats().frames, 0);
    assert_int_equal(zpool_check(), 0);
    zpool_fini();
    assert_int_equal(backend_free_and_meta(), free0);
}

/* On a small machine the frame allocator runs dry before the cap: the pool
 * says ZP_NOMEM and leaves its floor of 32 free frames alone. */
static void test_nomem_keeps_floor(void **state)
{
    backend_frames(160, 1, 159);
    uint64_t free0 = backend_free_and_meta();
    assert_int_equal(zpool_init(1000, test_relocate), 0);
    uint64_t free1 = backend_free_and_meta();
    enum zpool_store_result why = ZP_STORED;
    while (obj_store(1400, &why) >= 0)
        ;
    assert_int_equal(why, ZP_NOMEM);
    struct zpool_stats st = pool_stats();
    assert_int_equal(st.nomem, 1);
    assert_int_equal(st.full, 0);
    assert_true(backend_free_and_meta() >= 32);
    assert_true(backend_free_and_meta() < 32 + ZP_MAX_ZSPAGE_FRAMES);
    assert_int_equal(free1 - backend_free_and_meta(), st.frames);
    /* A slot freed in a zspage the pool holds is used again. */
    uint64_t frames = pool_stats().frames;
    obj_free(nobjs - 1);
    assert_true(obj_store(1400, NULL) >= 0);
    assert_int_equal(pool_stats().frames, frames);
    /* The floor exactly: with 33 free frames a one-frame zspage (the
     * 128-byte class) may still come, with 32 no zspage of any class. */
    mfn_t held[ZP_MAX_ZSPAGE_FRAMES];
    unsigned nheld = 0;
    while (backend_free_and_meta() > 33) {
        assert_true(nheld < ZP_MAX_ZSPAGE_FRAMES);
        held[nheld] = frame_alloc(FS_HV, 0);
        assert_int_not_equal(held[nheld], MFN_INVALID);
        nheld++;
    }
    assert_true(obj_store(128 - ZP_HDR, &why) >= 0);
    assert_int_equal(backend_free_and_meta(), 32);
    assert_int_equal(obj_store(3000, &why), -1);
    assert_int_equal(why, ZP_NOMEM);
    assert_int_equal(obj_store(64 - ZP_HDR, &why), -1);
    assert_int_equal(why, ZP_NOMEM);
    assert_true(obj_store(128 - ZP_HDR - 5, &why) >= 0); /* a partial zspage: no frame */
    assert_int_equal(pool_stats().nomem, 3);             /* with the first refusal */
    while (nheld)
        frame_free(held[--nheld]);
    assert_int_equal(zpool_check(), 0);
    verify_live();
    free_live();
    assert_int_equal(backend_free_and_meta(), free1);
    zpool_fini();
    assert_int_equal(backend_free_and_meta(), free0);
}

/* Handles that name no object: freed (zspage still live or released),
 * slot beyond the class, descriptor beyond the table, the invalid handle.
 * Loads and checks say no; a free panics and leaves the pool intact. */
static void test_bad_handles(void **state)
{
    assert_int_equal(zpool_init(64, test_relocate), 0);
    for (unsigned i = 0; i < 3; i++)
        assert_true(obj_store(1400, NULL) >= 0);
    assert_int_equal((objs[0].handle & ZP_LOC) >> 7, (objs[2].handle & ZP_LOC) >> 7); /* one zspage */
    uint64_t gone = objs[1].handle;
    obj_free(1);
    assert_false(zpool_check_object(gone, OWNER, 1, 1400));
    uint8_t buf[ZP_MAX_DATA];
    uint32_t check;
    assert_int_equal(zpool_load(gone, OWNER, 1, 1400, buf, &check), -1);
    EXPECT_PANIC(zpool_free(gone));
    EXPECT_PANIC(zpool_free(ZP_HANDLE_INVALID));
    EXPECT_PANIC(zpool_free(objs[0].handle | 127)); /* the class has far fewer slots */
    EXPECT_PANIC(zpool_free(LEN1400 | (uint64_t)64 << 7)); /* no such descriptor */
    EXPECT_PANIC(zpool_free(LEN1400 | (uint64_t)5 << 7));  /* a descriptor not in use */
    EXPECT_PANIC(zpool_free((objs[0].handle & ZP_LOC) | (uint64_t)100 << 48)); /* wrong class */
    EXPECT_PANIC(zpool_free(objs[0].handle & ZP_LOC));  /* length 0 */
    assert_false(zpool_check_object((objs[0].handle & ZP_LOC) | (uint64_t)1401 << 48, OWNER, 0,
                                    1401)); /* same class, other length */
    assert_false(zpool_check_object(ZP_HANDLE_INVALID, OWNER, 1, 1400));
    assert_int_equal(zpool_check(), 0);
    obj_verify(0);
    obj_verify(2);
    /* Once the zspage is released its handles are dead too. */
    uint64_t h0 = objs[0].handle;
    obj_free(0);
    obj_free(2);
    assert_int_equal(pool_stats().frames, 0);
    assert_false(zpool_check_object(h0, OWNER, 0, 1400));
    EXPECT_PANIC(zpool_free(h0));
    assert_int_equal(zpool_check(), 0);
    assert_int_equal(pool_stats().frees, 3);
}

/* ---- compaction ------------------------------------------------------------------ */

/* Objects of lengths spread over many classes, then a scattered 75% freed. */
static void fragment(unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        assert_true(obj_store(64 + (unsigned)(next_rand() % 2400), NULL) >= 0);
    for (unsigned i = 0; i < n; i++)
        if (next_rand() % 4)
            obj_free(i);
    assert_int_equal(zpool_check(), 0);
}

/* A compaction without a budget: frames drop by what it reports, every
 * move is reported, survivors read back through their new handles, and no
 * class is left with a whole zspage of free slots. */
static void test_compact_all(void **state)
{
    assert_int_equal(zpool_init(2048, test_relocate), 0);
    relocate_checks = true;
    fragment(2000);
    uint64_t wasted = zpool_wasted_frames();
    struct zpool_stats before = pool_stats();
    assert_true(wasted > 0);
    uint64_t freed = zpool_compact(1ULL << 40);
    struct zpool_stats after = pool_stats();
    print_message(
        "  %llu objects in %llu frames, %llu wasted: compaction moved %llu, freed "
        "%llu frames\n",
        (unsigned long long)before.objects, (unsigned long long)before.frames,
        (unsigned long long)wasted, (unsigned long long)relocations,
        (unsigned long long)freed);
    assert_true(freed > 0);
    assert_int_equal(freed, wasted);
    assert_int_equal(after.frames, before.frames - freed);
    assert_int_equal(after.compact_freed, freed);
    assert_int_equal(after.compactions, 1);
    assert_int_equal(after.moved, relocations);
    assert_int_equal(after.objects, before.objects);
    assert_int_equal(after.data_bytes, before.data_bytes);
    assert_int_equal(zpool_wasted_frames(), 0);
    assert_int_equal(zpool_check(), 0);
    verify_live();
    /* Nothing left to do. */
    uint64_t moved = relocations;
    assert_int_equal(zpool_compact(1ULL << 40), 0);
    assert_int_equal(relocations, moved);
    free_live();
    assert_int_equal(pool_stats().frames, 0);
}

/* A budget bounds the moves of one compaction; repeated small ones reach
 * the same end. */
static void test_compact_budget(void **state)
{
    assert_int_equal(zpool_init(2048, test_relocate), 0);
    relocate_checks = true;
    fragment(1500);
    assert_true(zpool_wasted_frames() > 0);
    assert_int_equal(zpool_compact(0), 0);
    assert_int_equal(relocations, 0);
    uint64_t frames0 = pool_stats().frames, freed = 0;
    for (int round = 0; round < 10000 && zpool_wasted_frames(); round++) {
        uint64_t r0 = relocations, m0 = pool_stats().moved;
        freed += zpool_compact(5);
        assert_true(relocations - r0 <= 5);
        assert_int_equal(pool_stats().moved - m0, relocations - r0);
        assert_int_equal(zpool_check(), 0);
    }
    assert_int_equal(zpool_wasted_frames(), 0);
    assert_int_equal(pool_stats().frames, frames0 - freed);
    verify_live();
}

/* ---- damage ---------------------------------------------------------------------- */

/* A flipped header byte: identity and length bytes fail the load; the
 * check value comes back changed, for the caller's checksum to catch. */
static void test_corrupt_header(void **state)
{
    assert_int_equal(zpool_init(64, test_relocate), 0);
    int i = obj_store(900, NULL);
    assert_true(i >= 0);
    struct obj *o = &objs[i];
    uint8_t buf[ZP_MAX_DATA];
    for (unsigned off = 0; off < ZP_HDR; off++) {
        uint32_t check = (uint32_t)o->seed;
        zpool_debug_corrupt(o->handle, off);
        int r = zpool_load(o->handle, OWNER, (uint64_t)i, o->len, buf, &check);
        if (off < 12) { /* magic, length, owner, GFN */
            assert_int_equal(r, -1);
            assert_false(zpool_check_object(o->handle, OWNER, (uint64_t)i, o->len));
        } else { /* the check value */
            assert_int_equal(r, 0);
            assert_int_not_equal(check, (uint32_t)o->seed);
        }
        if (off < 4) /* magic or length: the pool's own check sees it too */
            assert_int_not_equal(zpool_check(), 0);
        zpool_debug_corrupt(o->handle, off); /* flip it back */
        obj_verify((unsigned)i);
    }
    assert_int_equal(pool_stats().corrupt, 12);
    assert_int_equal(zpool_check(), 0);
}

/* A flipped data byte: LZ4 refuses the stream, or what it decodes fails
 * the page's checksum, or (a bit LZ4 does not depend on) the page comes
 * back intact. Never a wrong page with the right checksum. */
static void test_corrupt_data(void **state)
{
    assert_int_equal(zpool_init(64, test_relocate), 0);
    uint8_t *page = malloc(CMP_PAGE), *out = malloc(CMP_PAGE), *cbuf = malloc(CMP_CAP);
    assert_non_null(page);
    assert_non_null(out);
    assert_non_null(cbuf);
    fill_mixed(page, 42);
    int len = cmp_compress_page(page, cbuf, CMP_CAP);
    assert_true(len > 0);
    uint32_t sum = hash_check32(page, CMP_PAGE, 0);
    uint64_t h;
    assert_int_equal(zpool_store(cbuf, (unsigned)len, OWNER, 9, sum, &h), ZP_STORED);
    unsigned refused = 0, caught = 0, intact = 0;
    for (unsigned off = ZP_HDR; off < slot_of((unsigned)len); off++) {
        zpool_debug_corrupt(h, off);
        uint32_t check = 0;
        assert_int_equal(zpool_load(h, OWNER, 9, (unsigned)len, cbuf, &check), 0);
        assert_int_equal(check, sum);
        if (cmp_decompress_page(cbuf, len, out))
            refused++;
        else if (memcmp(out, page, CMP_PAGE))
            caught += hash_check32(out, CMP_PAGE, 0) != sum;
        else
            intact++;
        if (off >= ZP_HDR + (unsigned)len)
            assert_memory_equal(out, page, CMP_PAGE); /* slack */
        zpool_debug_corrupt(h, off);
    }
    print_message(
        "  %d data bytes + %u slack: %u refused by LZ4, %u caught by the checksum, "
        "%u intact\n",
        len, slot_of((unsigned)len) - ZP_HDR - (unsigned)len, refused, caught, intact);
    assert_int_equal(refused + caught + intact, slot_of((unsigned)len) - ZP_HDR);
    assert_true(refused > 0);
    zpool_free(h);
    free(page);
    free(out);
    free(cbuf);
}

/* ---- behind the p2m --------------------------------------------------------------- */

#define NGFN 512
static uint8_t expect[NGFN][CMP_PAGE];

static void make_vm(uint64_t ngfn)
{
    assert_true(ngfn <= NGFN);
    assert_int_equal(p2m_init(&vm, 1, "z", ngfn, 0, 0, true), 0);
    assert_int_equal(mm_register(&vm), 0);
}

/* Faults gfn in for writing and gives it content (also kept in expect). */
static void put_page(uint64_t gfn, void (*fill)(uint8_t *, uint64_t), uint64_t seed)
{
    assert_int_equal(p2m_fault(&vm, gfn << PAGE_SHIFT, P2M_ACCESS_W), P2M_OK);
    uint8_t *p = p2m_gfn_ptr(&vm, gfn, false);
    assert_non_null(p);
    if (fill)
        fill(expect[gfn], seed);
    else
        memset(expect[gfn], (int)seed, CMP_PAGE);
    memcpy(p, expect[gfn], CMP_PAGE);
}

static void assert_page(uint64_t gfn)
{
    static uint8_t buf[CMP_PAGE];
    memset(buf, 0x5a, sizeof(buf));
    assert_int_equal(p2m_read_page(&vm, gfn, buf), 0);
    assert_memory_equal(buf, expect[gfn], CMP_PAGE);
}

static uint64_t *leaf(uint64_t gfn)
{
    return pt_entry(&pt_fmt_ept, vm.ept_root, gfn << PAGE_SHIFT, PT_LEVEL_4K, false);
}

/* Reclaims until nothing more goes; returns frames freed. */
static uint64_t reclaim_all(void)
{
    uint64_t total = 0, got;
    while ((got = p2m_reclaim(&vm, 64, vm.ngfn)) > 0)
        total += got;
    return total;
}

/* Cold text pages go to the pool; p2m_read_page sees them without a
 * change; faults (and the hypervisor's own access) bring them back,
 * freeing their objects. */
static void test_p2m_compress_round_trip(void **state)
{
    assert_int_equal(mm_pool_init(512, CMP_CAP, true), 0);
    make_vm(64);
    for (uint64_t g = 0; g < 32; g++)
        put_page(g, g % 2 ? fill_text : fill_records, g);
    uint64_t free0 = backend_free_and_meta();
    assert_int_equal(p2m_reclaim(&vm, 64, vm.ngfn), 32);
    assert_int_equal(vm.count[P2M_COMPRESSED], 32);
    assert_int_equal(vm.count[P2M_RESIDENT], 0);
    assert_int_equal(vm.st.compressed, 32);
    struct zpool_stats st = pool_stats();
    assert_int_equal(st.objects, 32);
    assert_int_equal(vm.st.pool_bytes, st.data_bytes);
    assert_int_equal(backend_free_and_meta(), free0 + 32 - st.frames);
    assert_int_equal(p2m_check(&vm), 0);
    for (uint64_t g = 0; g < 32; g++) {
        assert_int_equal(p2m_peek(&vm, g)->state, P2M_COMPRESSED);
        assert_true(p2m_peek(&vm, g)->aux > 0 && p2m_peek(&vm, g)->aux <= CMP_CAP);
        assert_true(zpool_check_object(p2m_peek(&vm, g)->payload, vm.owner, g, p2m_peek(&vm, g)->aux));
        assert_null(leaf(g) && (*leaf(g) & EPT_RWX) ? (void *)1 : NULL);
        assert_page(g);
        assert_int_equal(p2m_peek(&vm, g)->state, P2M_COMPRESSED);
    }
    for (uint64_t g = 0; g < 31; g++) {
        assert_int_equal(p2m_fault(&vm, g << PAGE_SHIFT, P2M_ACCESS_R), P2M_OK);
        assert_int_equal(p2m_peek(&vm, g)->state, P2M_RESIDENT);
        assert_memory_equal(backend_frame(p2m_peek(&vm, g)->payload), expect[g], CMP_PAGE);
        assert_int_equal(pool_stats().objects, 31 - g);
    }
    assert_int_equal(vm.st.faults[PF_DECOMPRESS], 31);
    uint8_t *p = p2m_gfn_ptr(&vm, 31, true);
    assert_non_null(p);
    assert_memory_equal(p, expect[31], CMP_PAGE);
    assert_int_equal(p2m_peek(&vm, 31)->state, P2M_RESIDENT);
    st = pool_stats();
    assert_int_equal(st.objects, 0);
    assert_int_equal(st.frames, 0);
    assert_int_equal(vm.st.pool_bytes, 0);
    assert_int_equal(vm.count[P2M_COMPRESSED], 0);
    assert_int_equal(p2m_check(&vm), 0);
    assert_int_equal(zpool_check(), 0);
}

/* A damaged data byte: the fault says P2M_CORRUPT and logs it, the page
 * stays compressed (nothing leaked, no frame mapped) and the p2m stays
 * consistent; a damaged header byte is refused too. Repaired, the page
 * comes back. */
static void test_p2m_corrupt_fault(void **state)
{
    assert_int_equal(mm_pool_init(64, CMP_CAP, true), 0);
    make_vm(16);
    put_page(5, fill_text, 5);
    put_page(6, fill_text, 6);
    assert_int_equal(p2m_reclaim(&vm, 64, vm.ngfn), 2);
    assert_int_equal(p2m_peek(&vm, 5)->state, P2M_COMPRESSED);
    uint64_t h = p2m_peek(&vm, 5)->payload;
    unsigned off = ZP_HDR + p2m_peek(&vm, 5)->aux / 2;
    zpool_debug_corrupt(h, off);
    backend_log_clear();
    uint64_t free0 = backend_free_and_meta();
    assert_int_equal(p2m_fault(&vm, 5 << PAGE_SHIFT, P2M_ACCESS_R), P2M_CORRUPT);
    assert_non_null(strstr(backend_log(), "corrupt"));
    assert_int_equal(p2m_peek(&vm, 5)->state, P2M_COMPRESSED);
    assert_int_equal(p2m_peek(&vm, 5)->payload, h);
    assert_int_equal(vm.st.corrupt, 1);
    assert_int_equal(vm.st.faults[PF_DECOMPRESS], 0);
    assert_int_equal(backend_free_and_meta(), free0);
    assert_int_equal(pool_stats().objects, 2);
    assert_int_equal(p2m_check(&vm), 0);
    uint8_t buf[CMP_PAGE];
    assert_int_equal(p2m_read_page(&vm, 5, buf), -1);
    assert_null(p2m_gfn_ptr(&vm, 5, true));
    assert_int_equal(p2m_peek(&vm, 5)->state, P2M_COMPRESSED);
    /* The other page is unaffected. */
    assert_page(6);
    zpool_debug_corrupt(h, off);

    /* The owner byte of the header. */
    zpool_debug_corrupt(h, 4);
    backend_log_clear();
    assert_int_equal(p2m_fault(&vm, 5 << PAGE_SHIFT, P2M_ACCESS_R), P2M_CORRUPT);
    assert_non_null(strstr(backend_log(), "corrupt"));
    assert_int_equal(p2m_peek(&vm, 5)->state, P2M_COMPRESSED);
    zpool_debug_corrupt(h, 4);

    assert_int_equal(p2m_fault(&vm, 5 << PAGE_SHIFT, P2M_ACCESS_R), P2M_OK);
    assert_memory_equal(p2m_gfn_ptr(&vm, 5, false), expect[5], CMP_PAGE);
    assert_int_equal(vm.st.faults[PF_DECOMPRESS], 1);
    assert_int_equal(p2m_check(&vm), 0);
    assert_int_equal(zpool_check(), 0);
}

/* Every byte of one object's slot flipped in turn, checksum mode: each
 * fault is P2M_CORRUPT or hands back exactly the right page. */
static void test_p2m_corrupt_every_offset(void **state)
{
    assert_int_equal(mm_pool_init(64, CMP_CAP, true), 0);
    make_vm(8);
    put_page(3, fill_mixed, 3);
    assert_int_equal(p2m_reclaim(&vm, 64, vm.ngfn), 1);
    assert_int_equal(p2m_peek(&vm, 3)->state, P2M_COMPRESSED);
    unsigned len = p2m_peek(&vm, 3)->aux, slot = slot_of(len);
    unsigned corrupt = 0, ok = 0;
    for (unsigned off = 0; off < slot; off++) {
        uint64_t h = p2m_peek(&vm, 3)->payload;
        assert_int_equal(p2m_peek(&vm, 3)->state, P2M_COMPRESSED);
        zpool_debug_corrupt(h, off);
        enum p2m_result r = p2m_fault(&vm, 3 << PAGE_SHIFT, P2M_ACCESS_R);
        if (r == P2M_CORRUPT) {
            corrupt++;
            assert_int_equal(p2m_peek(&vm, 3)->state, P2M_COMPRESSED);
            assert_int_equal(p2m_peek(&vm, 3)->payload, h);
            zpool_debug_corrupt(h, off);
            continue;
        }
        assert_int_equal(r, P2M_OK);
        assert_true(off >= ZP_HDR); /* every header byte is checked */
        ok++;
        assert_int_equal(p2m_peek(&vm, 3)->state, P2M_RESIDENT);
        assert_memory_equal(backend_frame(p2m_peek(&vm, 3)->payload), expect[3], CMP_PAGE);
        /* Back into the pool for the next offset (same content, same length). */
        assert_int_equal(p2m_reclaim(&vm, 64, vm.ngfn), 1);
        assert_int_equal(p2m_peek(&vm, 3)->aux, len);
        /* A flip in the slack survives the new store into the same slot:
         * undo it (one in the data was overwritten with good bytes). */
        if (p2m_peek(&vm, 3)->payload == h && off >= ZP_HDR + len)
            zpool_debug_corrupt(h, off);
    }
    print_message("  %u-byte object in a %u-byte slot: %u flips caught, %u harmless\n",
                  len, slot, corrupt, ok);
    assert_int_equal(vm.st.corrupt, corrupt);
    assert_true(corrupt >= ZP_HDR + len / 2);
    assert_int_equal(p2m_check(&vm), 0);
    assert_int_equal(zpool_check(), 0);
    assert_int_equal(p2m_fault(&vm, 3 << PAGE_SHIFT, P2M_ACCESS_R), P2M_OK);
    assert_memory_equal(backend_frame(p2m_peek(&vm, 3)->payload), expect[3], CMP_PAGE);
}

/* Same-filled pages need no pool object: FILLED for a non-zero word,
 * UNPOPULATED for zero. A random page stays resident, flagged, and is
 * not retried until its EPT dirty bit says it was written. */
static void test_p2m_same_filled_and_incompressible(void **state)
{
    assert_int_equal(mm_pool_init(64, CMP_CAP, false), 0);
    make_vm(16);
    put_page(0, NULL, 0x01);
    put_page(1, NULL, 0x00);
    put_page(2, fill_random, 2);
    put_page(3, fill_text, 3);
    assert_int_equal(p2m_reclaim(&vm, 64, vm.ngfn), 3);
    assert_int_equal(p2m_peek(&vm, 0)->state, P2M_FILLED);
    assert_int_equal(p2m_peek(&vm, 0)->payload, 0x0101010101010101ULL);
    assert_int_equal(p2m_peek(&vm, 1)->state, P2M_UNPOPULATED);
    assert_int_equal(p2m_peek(&vm, 2)->state, P2M_RESIDENT);
    assert_true(p2m_peek(&vm, 2)->flags & P2M_F_INCOMPRESSIBLE);
    assert_int_equal(p2m_peek(&vm, 3)->state, P2M_COMPRESSED);
    assert_int_equal(vm.st.filled, 1);
    assert_int_equal(vm.st.zero_reclaimed, 1);
    assert_int_equal(vm.st.compressed, 1);
    assert_int_equal(vm.st.incompressible, 1);
    assert_int_equal(vm.st.incompressible_now, 1);
    assert_int_equal(pool_stats().objects, 1);
    assert_int_equal(p2m_check(&vm), 0);
    assert_page(0);
    assert_page(1);
    assert_page(2);
    assert_page(3);

    assert_int_equal(p2m_fault(&vm, 0, P2M_ACCESS_R), P2M_OK);
    assert_int_equal(vm.st.faults[PF_REFILL], 1);
    assert_memory_equal(backend_frame(p2m_peek(&vm, 0)->payload), expect[0], CMP_PAGE);
    assert_int_equal(p2m_fault(&vm, 1 << PAGE_SHIFT, P2M_ACCESS_R), P2M_OK);
    assert_memory_equal(backend_frame(p2m_peek(&vm, 1)->payload), expect[1], CMP_PAGE);

    /* Not written since: not tried again. */
    assert_int_equal(p2m_reclaim(&vm, 64, vm.ngfn), 2); /* pages 0 and 1 again */
    assert_int_equal(vm.st.incompressible, 1);
    assert_int_equal(p2m_peek(&vm, 2)->state, P2M_RESIDENT);
    assert_true(p2m_peek(&vm, 2)->flags & P2M_F_INCOMPRESSIBLE);
    /* Dirty: tried again, still random. */
    *leaf(2) |= EPT_D;
    assert_int_equal(p2m_reclaim(&vm, 64, vm.ngfn), 0);
    assert_int_equal(vm.st.incompressible, 2);
    assert_int_equal(vm.st.incompressible_now, 1);
    assert_true(p2m_peek(&vm, 2)->flags & P2M_F_INCOMPRESSIBLE);
    assert_int_equal(p2m_check(&vm), 0);
    /* Written with text: dirty, compressed this time. */
    fill_text(expect[2], 22);
    memcpy(p2m_gfn_ptr(&vm, 2, false), expect[2], CMP_PAGE);
    *leaf(2) |= EPT_D;
    assert_int_equal(p2m_reclaim(&vm, 64, vm.ngfn), 1);
    assert_int_equal(p2m_peek(&vm, 2)->state, P2M_COMPRESSED);
    assert_int_equal(vm.st.incompressible_now, 0);
    assert_page(2);
    assert_int_equal(p2m_check(&vm), 0);
    assert_int_equal(zpool_check(), 0);
}

/* A page whose EPT accessed bit is set gets a second chance: the bit is
 * cleared and the page stays; the next pass takes it. */
static void test_p2m_second_chance(void **state)
{
    assert_int_equal(mm_pool_init(64, CMP_CAP, false), 0);
    make_vm(8);
    put_page(1, fill_text, 1);
    put_page(2, fill_text, 2);
    *leaf(1) |= EPT_A;
    assert_int_equal(p2m_reclaim(&vm, 64, vm.ngfn), 1);
    assert_int_equal(p2m_peek(&vm, 1)->state, P2M_RESIDENT);
    assert_int_equal(p2m_peek(&vm, 2)->state, P2M_COMPRESSED);
    assert_int_equal(vm.st.cold_skipped, 1);
    assert_int_equal(*leaf(1) & EPT_A, 0);
    assert_int_equal(p2m_check(&vm), 0);
    assert_int_equal(p2m_reclaim(&vm, 64, vm.ngfn), 1);
    assert_int_equal(p2m_peek(&vm, 1)->state, P2M_COMPRESSED);
    assert_page(1);
    assert_page(2);
}

/* A pool too small for the VM: reclaim stores what fits, counts the
 * refusal, and leaves the rest resident and mapped. Destroying the VM
 * returns every pool frame. */
static void test_p2m_pool_full(void **state)
{
    uint64_t free0 = backend_free_and_meta();
    assert_int_equal(mm_pool_init(8, CMP_CAP, false), 0);
    uint64_t free1 = backend_free_and_meta();
    make_vm(128);
    for (uint64_t g = 0; g < 100; g++)
        put_page(g, fill_text, g);
    uint64_t freed = reclaim_all();
    struct zpool_stats st = pool_stats();
    assert_true(freed > 0);
    assert_int_equal(freed, vm.count[P2M_COMPRESSED]);
    assert_true(vm.count[P2M_RESIDENT] > 0);
    assert_true(vm.st.pool_refused >= 1);
    assert_true(st.frames <= 8);
    assert_true(st.full >= 1);
    assert_int_equal(p2m_check(&vm), 0);
    for (uint64_t g = 0; g < 100; g++)
        assert_page(g);
    mm_unregister(&vm);
    p2m_destroy(&vm);
    assert_int_equal(pool_stats().frames, 0);
    assert_int_equal(pool_stats().objects, 0);
    assert_int_equal(zpool_check(), 0);
    assert_int_equal(backend_free_and_meta(), free1);
    zpool_fini();
    assert_int_equal(backend_free_and_meta(), free0);
}

/* Pages of many compressed sizes go to the pool; a scattered 75% come
 * back; mm_periodic compacts, and mm's relocate callback keeps every p2m
 * handle right. */
static void test_p2m_compaction_relocates(void **state)
{
    assert_int_equal(mm_pool_init(1024, CMP_CAP, true), 0);
    make_vm(NGFN);
    for (uint64_t g = 0; g < 400; g++) {
        /* Text with g % 8 runs of noise: compressed sizes over many classes. */
        put_page(g, fill_text, g);
        uint8_t noise[CMP_PAGE];
        fill_random(noise, g);
        for (unsigned k = 0; k < g % 8; k++)
            memcpy(expect[g] + k * 512, noise + k * 512, 96);
        memcpy(p2m_gfn_ptr(&vm, g, false), expect[g], CMP_PAGE);
    }
    reclaim_all();
    assert_int_equal(vm.count[P2M_COMPRESSED], 400);
    for (uint64_t g = 0; g < 400; g++)
        if (next_rand() % 4)
            assert_int_equal(p2m_fault(&vm, g << PAGE_SHIFT, P2M_ACCESS_R), P2M_OK);
    uint64_t wasted = zpool_wasted_frames();
    struct zpool_stats before = pool_stats();
    assert_true(wasted >= 4 && wasted * 16 >= before.frames); /* mm_periodic's trigger */
    mm_periodic();
    struct zpool_stats after = pool_stats();
    print_message(
        "  %llu pages in %llu frames, %llu wasted: %llu moved, %llu frames freed\n",
        (unsigned long long)before.objects, (unsigned long long)before.frames,
        (unsigned long long)wasted, (unsigned long long)(after.moved - before.moved),
        (unsigned long long)after.compact_freed);
    assert_true(after.moved > before.moved);
    assert_int_equal(after.frames, before.frames - after.compact_freed);
    assert_int_equal(zpool_wasted_frames(), 0);
    assert_int_equal(p2m_check(&vm), 0);
    assert_int_equal(zpool_check(), 0);
    for (uint64_t g = 0; g < 400; g++)
        assert_page(g);
    for (uint64_t g = 0; g < 400; g++) {
        if (p2m_peek(&vm, g)->state != P2M_COMPRESSED)
            continue;
        assert_int_equal(p2m_fault(&vm, g << PAGE_SHIFT, P2M_ACCESS_R), P2M_OK);
        assert_memory_equal(backend_frame(p2m_peek(&vm, g)->payload), expect[g], CMP_PAGE);
    }
    assert_int_equal(pool_stats().frames, 0);
}

/* Pool off: reclaim still drops same-filled pages, and nothing else. */
static void test_p2m_pool_off(void **state)
{
    assert_int_equal(mm_pool_init(0, CMP_CAP, false), 0);
    assert_false(zpool_enabled());
    make_vm(8);
    put_page(0, fill_text, 0);
    put_page(1, NULL, 0x01);
    put_page(2, NULL, 0x00);
    put_page(3, fill_random, 3);
    assert_int_equal(p2m_reclaim(&vm, 64, vm.ngfn), 2);
    assert_int_equal(p2m_peek(&vm, 0)->state, P2M_RESIDENT);
    assert_int_equal(p2m_peek(&vm, 0)->flags, 0);
    assert_int_equal(p2m_peek(&vm, 1)->state, P2M_FILLED);
    assert_int_equal(p2m_peek(&vm, 2)->state, P2M_UNPOPULATED);
    assert_int_equal(p2m_peek(&vm, 3)->state, P2M_RESIDENT);
    assert_int_equal(p2m_peek(&vm, 3)->flags, 0);
    assert_int_equal(vm.st.compressed, 0);
    assert_int_equal(vm.st.incompressible, 0);
    assert_int_equal(vm.st.pool_refused, 0);
    assert_int_equal(p2m_reclaim(&vm, 64, vm.ngfn), 0);
    assert_int_equal(vm.count[P2M_RESIDENT], 2);
    assert_int_equal(pool_stats().objects, 0);
    assert_int_equal(zpool_compact(100), 0);
    assert_int_equal(p2m_check(&vm), 0);
    for (uint64_t g = 0; g < 4; g++)
        assert_page(g);
}

/* ---- damaged headers: the pool never trusts its in-band bytes ---------------- */

static uint64_t plain_moves;
static bool plain_relocate(uint16_t owner, uint64_t gfn, uint64_t old_handle,
                           uint64_t new_handle)
{
    plain_moves++;
    return owner == OWNER; /* a damaged owner names nobody */
}

static uint64_t put_plain(unsigned len, uint64_t gfn)
{
    uint8_t buf[ZP_MAX_DATA];
    memset(buf, (int)gfn, sizeof(buf));
    uint64_t h;
    assert_int_equal(zpool_store(buf, len, OWNER, gfn, 0, &h), ZP_STORED);
    return h;
}

/* Freeing an object whose header length was damaged: accounting comes from
 * the handle, so the empty pool is consistent. */
static void test_free_damaged_object(void **state)
{
    assert_int_equal(zpool_init(64, plain_relocate), 0);
    uint64_t h = put_plain(900, 1);
    zpool_debug_corrupt(h, 2); /* header length 900 -> 916 */
    zpool_free(h);
    assert_int_equal(pool_stats().data_bytes, 0);
    assert_int_equal(pool_stats().objects, 0);
    assert_int_equal(zpool_check(), 0);
}

/* Compaction meeting a damaged magic, length or owner leaves the object in
 * place (counted, logged) instead of panicking, reading or writing past
 * its slot, or overwriting a healthy neighbour; its owner's load reports
 * it and its free works. */
static void compact_with_damage(unsigned len, unsigned per_zspage_hint, unsigned offset)
{
    (void)per_zspage_hint;
    assert_int_equal(zpool_init(64, plain_relocate), 0);
    uint8_t frame0[64];
    memcpy(frame0, backend_frame(0), sizeof(frame0));
    uint64_t h[22];
    for (int i = 0; i < 22; i++)
        h[i] = put_plain(len, (uint64_t)i);
    zpool_free(h[5]);
    for (int i = 11; i < 21; i++)
        zpool_free(h[i]);
    h[5] = 0;
    for (int i = 11; i < 21; i++)
        h[i] = 0;
    zpool_debug_corrupt(h[21], offset);
    plain_moves = 0;
    zpool_compact(100);
    assert_int_equal(pool_stats().unmovable, 1);
    assert_memory_equal(frame0, backend_frame(0), sizeof(frame0)); /* nothing outside */
    for (int i = 0; i < 21; i++)
        if (h[i])
            assert_true(zpool_check_object(h[i], OWNER, (uint64_t)i, len));
    uint8_t buf[ZP_MAX_DATA];
    uint32_t check;
    assert_int_equal(zpool_load(h[21], OWNER, 21, len, buf, &check), -1);
    for (int i = 0; i < 22; i++)
        if (h[i])
            zpool_free(h[i]);
    assert_int_equal(pool_stats().frames, 0);
    assert_int_equal(pool_stats().data_bytes, 0);
}

static void test_compact_damaged_magic(void **state)
{
    compact_with_damage(1400, 11, 0);
    assert_int_equal(plain_moves, 0);
    assert_non_null(strstr(backend_log(), "damaged header"));
}

static void test_compact_damaged_length(void **state)
{
    /* 1423 -> 1439 stays in the 1440 class but no longer names the handle. */
    compact_with_damage(1423, 11, 2);
}

static void test_compact_damaged_length_small_class(void **state)
{
    /* 495 -> 511: a 527-byte object would overrun a 512-byte slot. */
    compact_with_damage(495, 8, 2);
}

static void test_compact_damaged_owner(void **state)
{
    /* Magic and length intact, owner changed: the relocate callback finds
     * no such page and the move is undone. */
    compact_with_damage(1400, 11, 4);
    assert_int_equal(plain_moves, 1);
    assert_int_equal(zpool_check(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip_synthetic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip_program_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_pages_do_not_fit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_classes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_density_beats_zbud, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_checks_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fill_until_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nomem_keeps_floor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_handles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compact_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compact_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_p2m_compress_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_p2m_corrupt_fault, setup, teardown),
        cmocka_unit_test_setup_teardown(test_p2m_corrupt_every_offset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_p2m_same_filled_and_incompressible, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_p2m_second_chance, setup, teardown),
        cmocka_unit_test_setup_teardown(test_p2m_pool_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_p2m_compaction_relocates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_p2m_pool_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_damaged_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compact_damaged_magic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compact_damaged_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compact_damaged_length_small_class, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compact_damaged_owner, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

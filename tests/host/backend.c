/* Host implementation of mm/mm_backend.h and the log sink; see backend.h. */
#include "tests/host/backend.h"
#include "mm/mm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"

static uint8_t *arena;
static uint64_t arena_frames;
static struct frame *table;

void backend_free(void)
{
    free(arena);
    free(table);
    arena = NULL;
    table = NULL;
    arena_frames = 0;
}

void backend_init(uint64_t nframes)
{
    backend_free();
    assert_true(nframes > 0);
    arena = aligned_alloc(PAGE_SIZE, nframes * PAGE_SIZE);
    assert_non_null(arena);
    memset(arena, BACKEND_ARENA_FILL, nframes * PAGE_SIZE);
    arena_frames = nframes;
}

void backend_frames(uint64_t nframes, uint64_t first_free, uint64_t nfree)
{
    backend_init(nframes);
    table = calloc(nframes, sizeof(*table));
    assert_non_null(table);
    assert_int_equal(frame_table_bytes(nframes), nframes * sizeof(*table));
    assert_int_equal(frame_init(table, nframes), 0);
    if (nfree)
        frame_add_free(first_free, nfree);
}

uint64_t backend_nframes(void)
{
    return arena_frames;
}

void *mm_phys_to_virt(uint64_t pa)
{
    if (!arena || pa >= arena_frames * PAGE_SIZE)
        fail_msg("mm_phys_to_virt(%#llx) outside the %llu-frame arena",
                 (unsigned long long)pa, (unsigned long long)arena_frames);
    return arena + pa;
}

void *backend_frame(mfn_t mfn)
{
    return mm_phys_to_virt(mfn << PAGE_SHIFT);
}

/* ---- mm_panic ------------------------------------------------------------ */

static jmp_buf *panic_jb;
static int panic_count;
static char panic_msg[256];

void backend_panic_arm(jmp_buf *jb)
{
    panic_jb = jb;
}

void backend_panic_disarm(void)
{
    panic_jb = NULL;
}

const char *backend_panic_msg(void)
{
    return panic_msg;
}

int backend_panic_count(void)
{
    return panic_count;
}

void mm_panic(const char *file, int line, const char *msg)
{
    snprintf(panic_msg, sizeof(panic_msg), "%s:%d: %s", file, line, msg);
    panic_count++;
    if (panic_jb) {
        jmp_buf *jb = panic_jb;
        panic_jb = NULL;
        longjmp(*jb, 1);
    }
    fprintf(stderr, "mm_panic: %s\n", panic_msg);
    abort();
}

/* ---- log sink ------------------------------------------------------------ */

#define LOG_CAP (64 * 1024)
static char log_buf[LOG_CAP];
static size_t log_len;

void log_sink_write(const char *s, size_t n)
{
    static int verbose = -1;
    if (verbose < 0)
        verbose = getenv("HV_TEST_VERBOSE") != NULL;
    if (verbose)
        fwrite(s, 1, n, stderr);
    size_t room = LOG_CAP - 1 - log_len;
    if (n > room)
        n = room;
    memcpy(log_buf + log_len, s, n);
    log_len += n;
    log_buf[log_len] = '\0';
}

const char *backend_log(void)
{
    return log_buf;
}

void backend_log_clear(void)
{
    log_len = 0;
    log_buf[0] = '\0';
}

/* INVEPT for mm/p2m.c: the unit tests model no TLB; count the calls. */
static uint64_t invept_calls;
void mm_invept(uint64_t eptp)
{
    (void)eptp;
    invept_calls++;
}

uint64_t backend_invept_calls(void)
{
    return invept_calls;
}

uint64_t backend_free_and_meta(void)
{
    uint64_t n = frame_free_count();
    for (int i = 0; i < mm_vm_count(); i++)
        n += mm_vm_at(i)->meta;
    return n;
}

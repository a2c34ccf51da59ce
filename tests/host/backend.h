/* Host stand-ins for what the core gets from arch/: machine memory for mm/
 * (mm/mm_backend.h), a testable mm_panic, and the log sink (lib/log.h).
 *
 * Machine memory is an arena of host memory: machine address pa lives at
 * arena + pa. The arena is filled with a garbage pattern when created, so a
 * test sees it whenever the allocator forgets to zero a frame. */
#ifndef TESTS_HOST_BACKEND_H
#define TESTS_HOST_BACKEND_H
/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "mm/frame.h"
#include "mm/mm_backend.h"

/* Byte the arena is filled with before any test touches it. */
#define BACKEND_ARENA_FILL 0xa5

/* Allocates a machine-memory arena of nframes 4 KiB frames (replacing any
 * earlier one). mm_phys_to_virt() fails the running test for addresses past
 * its end. */
void backend_init(uint64_t nframes);
/* backend_init(nframes), a zeroed frame table, frame_init, then
 * frame_add_free(first_free, nfree): the rest of the frames stay ABSENT. */
void backend_frames(uint64_t nframes, uint64_t first_free, uint64_t nfree);
/* Releases the arena and the frame table. */
void backend_free(void);
/* Host pointer to machine frame mfn (checked like mm_phys_to_virt). */
void *backend_frame(mfn_t mfn);
uint64_t backend_nframes(void);
/* How often mm/ asked for INVEPT. */
uint64_t backend_invept_calls(void);
/* Free frames plus the metadata frames (map, EPT tables) of every
 * registered VM: unchanged by metadata coming and going, so tests that
 * count the frames a transition frees compare this. */
uint64_t backend_free_and_meta(void);

/* ---- mm_panic ---------------------------------------------------------- */
/* Arming makes the next mm_panic longjmp to *jb instead of aborting. */
void backend_panic_arm(jmp_buf *jb);
void backend_panic_disarm(void);
/* Message ("file:line: msg") of the last panic, and how many there were. */
const char *backend_panic_msg(void);
int backend_panic_count(void);

/* Runs stmt and fails the test unless it calls mm_panic. Whatever stmt had
 * done before the panic stays done. */
#define EXPECT_PANIC(stmt)                                                   \
    do {                                                                     \
        jmp_buf expect_panic_jb_;                                            \
        int expect_panic_before_ = backend_panic_count();                    \
        backend_panic_arm(&expect_panic_jb_);                                \
        if (setjmp(expect_panic_jb_) == 0) {                                 \
            stmt;                                                            \
            backend_panic_disarm();                                          \
            fail_msg("expected mm_panic from: %s", #stmt);                   \
        }                                                                    \
        backend_panic_disarm();                                              \
        assert_int_equal(backend_panic_count(), expect_panic_before_ + 1);   \
    } while (0)

/* ---- log capture -------------------------------------------------------- */
/* Everything written to log_sink_write since the last clear (NUL-terminated;
 * the capture holds the first 64 KiB). Echoed to stderr when the environment
 * has HV_TEST_VERBOSE. */
const char *backend_log(void);
void backend_log_clear(void);
#endif

/* Pure helpers of the VMX layer: the VM-entry interruption information of
 * an injected exception (vmx/event.h).
 *
 * Covered: deliver-error-code set for a #GP in protected mode only (a
 * real-mode guest's VM entry fails with it), never for exceptions without
 * an error code. */
#include "tests/host/backend.h"

#include <stdio.h>
#include <string.h>

#include "vmx/event.h"

/* ==== exception injection ==================================================== */

static void test_exception_info(void **state)
{
    (void)state;
    const uint64_t pe = 1, real = 0x60000010; /* CD NW ET, PE clear */
    /* #GP(0) in protected (or long) mode: an error code is pushed. */
    uint32_t i = vmx_exception_info(13, true, pe | 0x80000000ULL);
    assert_int_equal(i, INTR_INFO_VALID | INTR_TYPE_HW_EXCEPTION | 13 | INTR_INFO_DELIVER_CODE);
    /* The same in real mode: none, or VM entry fails. */
    i = vmx_exception_info(13, true, real);
    assert_int_equal(i, INTR_INFO_VALID | INTR_TYPE_HW_EXCEPTION | 13);
    assert_int_equal(i & INTR_INFO_DELIVER_CODE, 0);
    /* #UD has no error code in any mode. */
    assert_int_equal(vmx_exception_info(6, false, pe), INTR_INFO_VALID | INTR_TYPE_HW_EXCEPTION | 6);
    assert_int_equal(vmx_exception_info(6, false, real), INTR_INFO_VALID | INTR_TYPE_HW_EXCEPTION | 6);
    /* #PF, #DF in protected mode keep theirs. */
    assert_true(vmx_exception_info(14, true, pe) & INTR_INFO_DELIVER_CODE);
    assert_false(vmx_exception_info(8, true, 0) & INTR_INFO_DELIVER_CODE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exception_info),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

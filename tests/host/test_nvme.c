/* drivers/nvme_proto.c: NVMe logic that needs no controller. CAP decoding
 * and the values written to CC, AQA and the doorbells; submission and
 * completion ring arithmetic with the phase bit across many wraps; status
 * decoding; PRP construction for one page, two pages, a list, a chained
 * list, and refusals. */
#include "tests/host/backend.h"

#include <stdlib.h>
#include <string.h>

#include "drivers/nvme_proto.h"

static void test_cap_and_registers(void **state)
{
    struct nvme_cap c;
    /* MQES 2047, CQR, TO 0x28 (20 s), DSTRD 0, CSS NVM, MPSMIN 0, MPSMAX 4 */
    uint64_t cap = 0x7ffULL | 1ULL << 16 | 0x28ULL << 24 | 1ULL << 37 | 4ULL << 52;
    nvme_decode_cap(cap, &c);
    assert_int_equal(c.mqes, 2048);
    assert_true(c.cqr);
    assert_int_equal(c.timeout_ms, 20000);
    assert_int_equal(c.dstrd, 4);
    assert_true(c.nvm_cmd_set);
    assert_int_equal(c.mps_min, 4096);
    assert_int_equal(c.mps_max, 65536);
    nvme_decode_cap(3ULL << 32, &c);
    assert_int_equal(c.dstrd, 32);
    assert_false(c.nvm_cmd_set);
    assert_int_equal(c.mqes, 1);
    assert_int_equal(nvme_cc_enable(), 0x00460001);
    assert_int_equal(nvme_aqa(32, 64), 63u << 16 | 31u);
    assert_int_equal(nvme_doorbell(0, false, 4), 0x1000);
    assert_int_equal(nvme_doorbell(0, true, 4), 0x1004);
    assert_int_equal(nvme_doorbell(1, false, 4), 0x1008);
    assert_int_equal(nvme_doorbell(1, true, 32), 0x1000 + 3 * 32);
}

/* A model controller completes every command at once, writing entries
 * with its own phase, which flips whenever its tail wraps. */
static void test_rings_over_many_wraps(void **state)
{
    enum { N = 8 };
    struct nvme_cqe cq[N];
    memset(cq, 0, sizeof(cq));
    struct nvme_ring r;
    nvme_ring_init(&r, N);
    uint16_t ctl_tail = 0, ctl_sqhead = 0;
    uint8_t ctl_phase = 1;
    struct nvme_cqe out;
    assert_false(nvme_cq_take(&r, &cq[0], &out)); /* zeroed memory is not new */
    unsigned submitted = 0, completed = 0;
    for (int round = 0; round < 50; round++) {
        /* Fill the submission ring: N - 1 commands fit. */
        unsigned k = 0;
        while (!nvme_sq_full(&r)) {
            uint16_t slot = nvme_sq_push(&r);
            assert_true(slot < N);
            k++;
        }
        assert_int_equal(k, round == 0 ? N - 1 : k);
        submitted += k;
        /* The controller consumes up to the tail and completes them. */
        while (ctl_sqhead != r.sq_tail) {
            ctl_sqhead = (uint16_t)((ctl_sqhead + 1) % N);
            struct nvme_cqe *e = &cq[ctl_tail];
            e->cid = (uint16_t)completed;
            e->sq_head = ctl_sqhead;
            e->status = ctl_phase; /* success */
            if (++ctl_tail == N) {
                ctl_tail = 0;
                ctl_phase ^= 1;
            }
            assert_true(e == &cq[r.cq_head]); /* the host consumes each at once */
            assert_true(nvme_cq_take(&r, e, &out));
            assert_int_equal(out.cid, (uint16_t)completed);
            assert_true(nvme_status_ok(nvme_decode_status(out.status)));
            completed++;
            assert_false(nvme_cq_take(&r, &cq[r.cq_head], &out)); /* nothing newer */
        }
        assert_int_equal(r.sq_head, r.sq_tail);
        assert_int_equal(r.cq_head, ctl_tail);
        assert_int_equal(r.phase, ctl_phase);
    }
    assert_int_equal(submitted, completed);
    assert_true(completed > 5 * N);
}

static void test_status(void **state)
{
    /* SCT 2, SC 0x81, DNR, phase 1 */
    uint16_t st = 1 | 0x81 << 1 | 2 << 9 | 1 << 15;
    struct nvme_status s = nvme_decode_status(st);
    assert_int_equal(s.sct, 2);
    assert_int_equal(s.sc, 0x81);
    assert_true(s.dnr);
    assert_false(s.more);
    assert_false(nvme_status_ok(s));
    assert_string_equal(nvme_status_text(s), "unrecovered read error");
    s = nvme_decode_status(0x80 << 1 | 1 << 14);
    assert_string_equal(nvme_status_text(s), "LBA out of range");
    assert_true(s.more);
    assert_string_equal(nvme_status_text(nvme_decode_status(0x80 << 1 | 2 << 9)), "write fault");
    assert_string_equal(nvme_status_text(nvme_decode_status(0x55 << 1)), "generic command error");
    assert_string_equal(nvme_status_text(nvme_decode_status(0x3 << 9)), "unknown status code type");
    assert_true(nvme_status_ok(nvme_decode_status(1)));
}

/* Pages of a transfer: 0x100000, 0x200000, ... (page aligned), or one
 * misaligned page when ctx says so. */
static uint64_t page_of(void *ctx, uint64_t i)
{
    uint64_t bad = ctx ? *(uint64_t *)ctx : ~0ULL;
    return (i + 1) * 0x100000 + (i == bad ? 8 : 0);
}

static uint64_t *lists[3];
static const uint64_t list_phys[3] = { 0xa000, 0xb000, 0xc000 };

static void test_prps(void **state)
{
    for (int i = 0; i < 3; i++)
        lists[i] = calloc(512, 8);
    uint64_t p1, p2;
    /* one page, with an offset */
    assert_int_equal(nvme_build_prps(512, 1024, page_of, NULL, &p1, &p2, lists, list_phys, 3), 0);
    assert_int_equal(p1, 0x100000 + 1024);
    assert_int_equal(p2, 0);
    /* an offset that pushes 4 KiB over two pages */
    assert_int_equal(nvme_build_prps(4096, 100, page_of, NULL, &p1, &p2, lists, list_phys, 3), 0);
    assert_int_equal(p1, 0x100000 + 100);
    assert_int_equal(p2, 0x200000);
    /* three pages: a list of two */
    assert_int_equal(nvme_build_prps(3 * 4096, 0, page_of, NULL, &p1, &p2, lists, list_phys, 3), 1);
    assert_int_equal(p2, 0xa000);
    assert_int_equal(lists[0][0], 0x200000);
    assert_int_equal(lists[0][1], 0x300000);
    /* 513 pages: 512 entries fill one list page exactly */
    assert_int_equal(nvme_build_prps(513 * 4096ULL, 0, page_of, NULL, &p1, &p2, lists, list_phys, 3), 1);
    assert_int_equal(lists[0][511], 513 * 0x100000ULL);
    /* 514 pages: 511 entries, a chain pointer, then 2 entries */
    assert_int_equal(nvme_build_prps(514 * 4096ULL, 0, page_of, NULL, &p1, &p2, lists, list_phys, 3), 2);
    assert_int_equal(lists[0][510], 512 * 0x100000ULL); /* page 511 */
    assert_int_equal(lists[0][511], 0xb000);
    assert_int_equal(lists[1][0], 513 * 0x100000ULL); /* page 512 */
    assert_int_equal(lists[1][1], 514 * 0x100000ULL); /* page 513, the last */
    /* refusals: not enough list pages, empty, misaligned page or offset */
    assert_int_equal(nvme_build_prps(514 * 4096ULL, 0, page_of, NULL, &p1, &p2, lists, list_phys, 1), -1);
    assert_int_equal(nvme_build_prps(0, 0, page_of, NULL, &p1, &p2, lists, list_phys, 3), -1);
    uint64_t bad = 2;
    assert_int_equal(nvme_build_prps(4 * 4096, 0, page_of, &bad, &p1, &p2, lists, list_phys, 3), -1);
    assert_int_equal(nvme_build_prps(4096, 2, page_of, NULL, &p1, &p2, lists, list_phys, 3), -1);
    assert_int_equal(nvme_build_prps(4096, 4096, page_of, NULL, &p1, &p2, lists, list_phys, 3), -1);
    for (int i = 0; i < 3; i++)
        free(lists[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cap_and_registers),
        cmocka_unit_test(test_rings_over_many_wraps),
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_prps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

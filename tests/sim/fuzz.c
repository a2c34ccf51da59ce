/* libFuzzer target: random operation sequences against the real mm/ code
 * under the simulator's hardware model. Each input is a program: two bytes
 * of set-up (machine size, limits), then 4-byte operations. Any invariant
 * violation aborts, which libFuzzer reports with the input that caused it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mm/mm.h"
#include "mm/share.h"
#include "tests/sim/model.h"

#define NGFN 300

static void fail_if_violated(void)
{
    if (sim->c.violations) {
        fprintf(stderr, "fuzz: invariant violated\n");
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint64_t frames = 256 + (uint64_t)(data[0] % 4) * 128; /* 1.0 to 1.75 MiB */
    uint64_t limit = 40 + (uint64_t)data[1] % 200;
    sim_init(frames);
    int nvm = 0;
    for (int i = 0; i < 3; i++) {
        if (sim_add_vm(NGFN, 8, limit, i != 1) >= 0) {
            /* Sharing: the input picks which VMs share a salt. */
            sim->vm[nvm].p2m.salt = (data[1] >> (i + 4)) & 1;
            nvm++;
        }
    }
    if (nvm == 0) {
        sim_fini();
        return 0;
    }
    for (size_t i = 2; i + 4 <= size; i += 4) {
        const uint8_t *op = data + i;
        int vm = op[1] % nvm;
        uint64_t gfn = ((uint64_t)op[2] | (uint64_t)op[3] << 8) % NGFN;
        struct sim_vm *v = &sim->vm[vm];
        if (!v->live)
            continue;
        switch (op[0] % 9) {
        case 0: case 1: case 2: case 3: case 4:
            if (sim_access(vm, gfn, (enum sim_op)(op[0] % 3)))
                sim_check_local(vm, gfn);
            break;
        case 5:
            p2m_sweep(&v->p2m);
            break;
        case 6:
            p2m_reclaim(&v->p2m, 1 + op[2] % 64, 1 + op[3] * 4u);
            break;
        case 7:
            /* Touch the whole VM once, then check everything. */
            sim_check_full();
            break;
        case 8:
            if (op[1] & 0x80)
                share_reclaim(1 + op[2] % 16);
            else
                share_scan(1 + op[2] % 128 + (uint64_t)op[3] * 4);
            break;
        }
        fail_if_violated();
    }
    sim_check_full();
    fail_if_violated();
    sim_fini();
    return 0;
}

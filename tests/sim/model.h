/* The simulator's world: machine memory (an arena), the EPT hardware
 * (walks the tables mm/ built, caches translations in a TLB that only
 * INVEPT empties, sets accessed/dirty flags) and synthetic guests whose
 * every read is checked against what they last wrote. The real mm/ code
 * runs on top, unchanged. */
#ifndef SIM_MODEL_H
#define SIM_MODEL_H
#include <stdbool.h>
#include <stdint.h>

#include "mm/p2m.h"

#define SIM_MAX_VMS 8
#define SIM_TLB 64

enum sim_op { OP_READ, OP_WRITE_TAG, OP_WRITE_ZERO };

struct sim_tlb_entry {
    bool valid;
    uint64_t gfn;
    uint64_t mfn;
    bool writable;
};

struct sim_vm {
    struct p2m p2m;
    bool live;
    uint64_t ngfn;
    uint64_t *gen;          /* expected content: 0 = zero page, else generation */
    struct sim_tlb_entry tlb[SIM_TLB];
    uint64_t waits_in_a_row;
};

struct sim_counters {
    uint64_t accesses, faults, waits, tlb_hits, walks, full_checks, local_checks;
    uint64_t violations;
    /* The work of single faults (sim_fault_work units), the largest one
     * and the access it happened at. */
    uint64_t fault_work_max, fault_work_at, fault_work_total;
};

struct sim_world {
    struct sim_vm vm[SIM_MAX_VMS];
    int nvms;
    uint64_t frames;        /* machine frames in the arena */
    uint64_t next_gen;
    struct sim_counters c;
};

extern struct sim_world *sim;

/* Machine of nframes frames (all free but frame 0). */
void sim_init(uint64_t nframes);
void sim_fini(void);
int sim_add_vm(uint64_t ngfn, uint64_t reserve, uint64_t limit, bool ad);
void sim_remove_vm(int i);
/* One guest access through the modelled EPT. Returns false if the vCPU
 * had to wait for memory (nothing happened). */
bool sim_access(int vm, uint64_t gfn, enum sim_op op);
/* Invariants. Local: O(1) accounting plus the given page. Full: every GFN
 * of every VM (content, p2m_check, frame ownership, accounting). Both
 * return the number of violations found (also added to sim->c). */
uint64_t sim_check_local(int vm, uint64_t gfn);
/* Writes the simulated swap device failed on purpose. */
uint64_t sim_swap_write_errors(void);
uint64_t sim_check_full(void);
/* Work done by mm/ so far, in units whose count per fault must stay
 * bounded (exit context): GFNs and stable-table slots share_reclaim
 * examined, stable-table slots probed by lookups, inserts and deletions,
 * and resident pages p2m_reclaim inspected, summed over every VM. */
uint64_t sim_fault_work(void);
#endif

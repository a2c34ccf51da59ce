/* Exceptions in the hypervisor are hypervisor bugs (guests get their own
 * exits): print everything needed to debug from the serial log alone, then
 * stop. The only recoverable faults are the #GPs of rdmsr_safe/wrmsr_safe. */
#include <stddef.h>

#include "arch/cpu.h"
#include "arch/desc.h"
#include "arch/msr.h"
#include "lib/log.h"

/* isr.S pushes GPRs in this order; pin it. */
_Static_assert(offsetof(struct exc_frame, r15) == 0, "isr.S push order");
_Static_assert(offsetof(struct exc_frame, rax) == 14 * 8, "isr.S push order");
_Static_assert(offsetof(struct exc_frame, vector) == 15 * 8, "isr.S vector slot");
_Static_assert(offsetof(struct exc_frame, error) == 16 * 8, "isr.S error slot");
_Static_assert(offsetof(struct exc_frame, rip) == 17 * 8, "CPU frame");
_Static_assert(sizeof(struct exc_frame) == 22 * 8, "frame size");

extern char rdmsr_safe_insn[], rdmsr_safe_fixup[];
extern char wrmsr_safe_insn[], wrmsr_safe_fixup[];

static const char *const exc_names[32] = {
    "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow",
    "#BR bound range", "#UD invalid opcode", "#NM device not available",
    "#DF double fault", "coprocessor segment overrun", "#TS invalid TSS",
    "#NP segment not present", "#SS stack fault", "#GP general protection",
    "#PF page fault", "reserved 15", "#MF x87 FP error", "#AC alignment check",
    "#MC machine check", "#XM SIMD FP", "#VE virtualization", "#CP control protection",
    "reserved 22", "reserved 23", "reserved 24", "reserved 25", "reserved 26",
    "reserved 27", "#HV hypervisor injection", "#VC VMM communication",
    "#SX security", "reserved 31",
};

#define MAX_STACKS 8
static struct { uint64_t lo, hi; } stacks[MAX_STACKS];
static int nstacks;
static uint64_t img_base, img_size;

void stack_register(uint64_t lo, uint64_t hi)
{
    if (nstacks < MAX_STACKS) {
        stacks[nstacks].lo = lo;
        stacks[nstacks].hi = hi;
        nstacks++;
    }
}

void image_set_bounds(uint64_t base, uint64_t size)
{
    img_base = base;
    img_size = size;
}

static int on_known_stack(uint64_t p)
{
    for (int i = 0; i < nstacks; i++)
        if (p >= stacks[i].lo && p + 16 <= stacks[i].hi)
            return 1;
    return 0;
}

static void print_addr(int depth, uint64_t a)
{
    if (a >= img_base && a < img_base + img_size)
        log_raw("  #%-2d %016llx  hv.efi+%#llx\n", depth, (unsigned long long)a,
                (unsigned long long)(a - img_base));
    else
        log_raw("  #%-2d %016llx  (outside the image)\n", depth, (unsigned long long)a);
}

/* Walks the frame-pointer chain (the core is built with frame pointers).
 * Only frames on stacks the hypervisor owns are followed, so a corrupted
 * rbp ends the walk instead of faulting again. Resolve the offsets with
 * `addr2line -e build/hv.so OFFSET`. */
void stack_trace(uint64_t rbp, uint64_t rip)
{
    log_raw("stack trace (addr2line -e build/hv.so <offset>):\n");
    print_addr(0, rip);
    for (int depth = 1; depth < 24; depth++) {
        if (!rbp || (rbp & 7) || !on_known_stack(rbp)) {
            if (rbp)
                log_raw("  (frame pointer %#llx is not on a known stack: end)\n",
                        (unsigned long long)rbp);
            break;
        }
        uint64_t *fp = (uint64_t *)rbp;
        uint64_t ret = fp[1];
        if (!ret)
            break;
        print_addr(depth, ret);
        if (fp[0] <= rbp) /* stacks grow down: callers are at higher addresses */
            break;
        rbp = fp[0];
    }
}

static void dump(struct exc_frame *f)
{
    uint64_t efer = 0;
    rdmsr_safe(MSR_EFER, &efer);
    const char *name = f->vector < 32 ? exc_names[f->vector] : "external interrupt";
    log_raw("\n*** PANIC: CPU exception %llu (%s) in the hypervisor, error code %#llx\n",
            (unsigned long long)f->vector, name, (unsigned long long)f->error);
    if (f->vector == 14) {
        log_raw("page fault at %#018llx: %s, %s, %s%s%s\n", (unsigned long long)read_cr2(),
                (f->error & 1) ? "protection violation" : "page not present",
                (f->error & 2) ? "write" : "read",
                (f->error & 4) ? "user" : "supervisor",
                (f->error & 16) ? ", instruction fetch" : "",
                (f->error & 8) ? ", reserved bit set" : "");
    }
    log_raw("RIP %016llx CS %04llx RFLAGS %016llx\n", (unsigned long long)f->rip,
            (unsigned long long)f->cs, (unsigned long long)f->rflags);
    log_raw("RSP %016llx SS %04llx\n", (unsigned long long)f->rsp,
            (unsigned long long)f->ss);
    log_raw("RAX %016llx RBX %016llx RCX %016llx RDX %016llx\n",
            (unsigned long long)f->rax, (unsigned long long)f->rbx,
            (unsigned long long)f->rcx, (unsigned long long)f->rdx);
    log_raw("RSI %016llx RDI %016llx RBP %016llx\n", (unsigned long long)f->rsi,
            (unsigned long long)f->rdi, (unsigned long long)f->rbp);
    log_raw("R8  %016llx R9  %016llx R10 %016llx R11 %016llx\n",
            (unsigned long long)f->r8, (unsigned long long)f->r9,
            (unsigned long long)f->r10, (unsigned long long)f->r11);
    log_raw("R12 %016llx R13 %016llx R14 %016llx R15 %016llx\n",
            (unsigned long long)f->r12, (unsigned long long)f->r13,
            (unsigned long long)f->r14, (unsigned long long)f->r15);
    log_raw("CR0 %016llx CR2 %016llx CR3 %016llx CR4 %016llx EFER %016llx\n",
            (unsigned long long)read_cr0(), (unsigned long long)read_cr2(),
            (unsigned long long)read_cr3(), (unsigned long long)read_cr4(),
            (unsigned long long)efer);
    if (img_size)
        log_raw("image at %#llx size %#llx\n", (unsigned long long)img_base,
                (unsigned long long)img_size);
    stack_trace(f->rbp, f->rip);
}

void exception_dispatch(struct exc_frame *f)
{
    if (f->vector == 13) {
        if (f->rip == (uint64_t)rdmsr_safe_insn) {
            f->rip = (uint64_t)rdmsr_safe_fixup;
            return;
        }
        if (f->rip == (uint64_t)wrmsr_safe_insn) {
            f->rip = (uint64_t)wrmsr_safe_fixup;
            return;
        }
    }
    if (f->vector == 2) {
        pr_warn(LS_ARCH, "NMI received at RIP %#llx; continuing",
                (unsigned long long)f->rip);
        return;
    }
    dump(f);
    log_raw("*** PANIC: halted\n");
    halt_forever();
}

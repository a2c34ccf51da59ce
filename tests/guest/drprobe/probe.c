/* drprobe: a guest of a few KiB (no Linux) that checks that the CPU state
 * a guest reaches without VM exits is its own. Two or more VMs run it with
 * different ids ("id=N" on the command line). Each first checks that what
 * it finds is the reset state (another VM's values would show here), then
 * writes values of its own into DR0-DR3, DR6, DR7, CR8, the syscall MSRs,
 * KERNEL_GS_BASE, FS/GS base, XMM0 and the x87 control word, and spins.
 * Whenever the TSC jumps (its vCPU was descheduled: another VM ran) it
 * reads everything back. It also checks that CR4.OSXSAVE and CR4.PKE are
 * refused with #GP (XSAVE and PKU state is not switched between VMs).
 * Lines: "DRPROBE vm=N PASS ..." or "DRPROBE vm=N FAIL ..."; then it halts
 * with interrupts off, which the hypervisor takes as a power-off. */
#include <stdint.h>

#define COM1 0x3f8
#define GOAL_SWITCHES 20

static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static void putc_(char c)
{
    outb(COM1, (uint8_t)c);
}

static void puts_(const char *s)
{
    while (*s)
        putc_(*s++);
}

static void puthex(uint64_t v)
{
    puts_("0x");
    int started = 0;
    for (int i = 60; i >= 0; i -= 4) {
        unsigned d = (unsigned)(v >> i) & 15;
        if (d || started || i == 0) {
            putc_((char)(d < 10 ? '0' + d : 'a' + d - 10));
            started = 1;
        }
    }
}

static void putdec(uint64_t v)
{
    char b[24];
    int n = 0;
    do {
        b[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        putc_(b[--n]);
}

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t)hi << 32 | lo;
}

static inline uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return (uint64_t)hi << 32 | lo;
}

static inline void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

#define DR(n)                                                                \
    static inline uint64_t get_dr##n(void)                                   \
    {                                                                        \
        uint64_t v;                                                          \
        __asm__ volatile("mov %%db" #n ", %0" : "=r"(v));                    \
        return v;                                                            \
    }                                                                        \
    static inline void set_dr##n(uint64_t v)                                 \
    {                                                                        \
        __asm__ volatile("mov %0, %%db" #n : : "r"(v));                      \
    }
DR(0)
DR(1)
DR(2)
DR(3)
DR(6)
DR(7)

static inline uint64_t get_cr8(void)
{
    uint64_t v;
    __asm__ volatile("mov %%cr8, %0" : "=r"(v));
    return v;
}

static inline void set_cr8(uint64_t v)
{
    __asm__ volatile("mov %0, %%cr8" : : "r"(v));
}

static inline uint64_t get_cr4(void)
{
    uint64_t v;
    __asm__ volatile("mov %%cr4, %0" : "=r"(v));
    return v;
}

static inline uint64_t get_xmm0(void)
{
    uint64_t v;
    __asm__ volatile("movq %%xmm0, %0" : "=r"(v));
    return v;
}

static inline void set_xmm0(uint64_t v)
{
    __asm__ volatile("movq %0, %%xmm0" : : "r"(v));
}

static inline uint16_t get_fcw(void)
{
    uint16_t v;
    __asm__ volatile("fnstcw %0" : "=m"(v));
    return v;
}

static inline void set_fcw(uint16_t v)
{
    __asm__ volatile("fldcw %0" : : "m"(v));
}

#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SFMASK 0xc0000084
#define MSR_FS_BASE 0xc0000100
#define MSR_GS_BASE 0xc0000101
#define MSR_KERNEL_GS_BASE 0xc0000102

static unsigned id;

static void memset_(void *p, int c, unsigned long n)
{
    volatile uint8_t *b = p; /* volatile: no call to a memset that is not there */
    while (n--)
        *b++ = (uint8_t)c;
}

/* ---- #GP catcher for the CR4 checks ---- */

volatile uint32_t gp_hits;
extern char gp_stub[];
__asm__(".text\n"
        "gp_stub:\n"
        "    addq $8, %rsp\n"      /* the error code */
        "    addq $3, (%rsp)\n"    /* past mov %rax, %cr4 (0f 22 e0) */
        "    incl gp_hits(%rip)\n"
        "    iretq\n");

static uint64_t idt[2 * 14] __attribute__((aligned(16)));

static void idt_init(void)
{
    uint64_t h = (uint64_t)gp_stub;
    /* 64-bit interrupt gate, selector 0x10 (the loader's code segment). */
    idt[2 * 13] = (h & 0xffff) | (0x10ULL << 16) | (0x8eULL << 40) | ((h >> 16 & 0xffff) << 48);
    idt[2 * 13 + 1] = h >> 32;
    struct {
        uint16_t limit;
        uint64_t base;
    } __attribute__((packed)) d = { sizeof(idt) - 1, (uint64_t)idt };
    __asm__ volatile("lidt %0" : : "m"(d));
}

/* Tries to set CR4 bits; 1 when the attempt raised #GP. */
static int cr4_refused(uint64_t bits)
{
    uint32_t before = gp_hits;
    uint64_t v = get_cr4() | bits;
    __asm__ volatile(".byte 0x0f, 0x22, 0xe0" : : "a"(v) : "memory"); /* mov %rax, %cr4 */
    int refused = gp_hits != before;
    if (!refused) { /* put it back: nothing of it may stay */
        v &= ~bits;
        __asm__ volatile(".byte 0x0f, 0x22, 0xe0" : : "a"(v) : "memory");
    }
    return refused;
}

/* ---- the state ---- */

struct state {
    uint64_t dr[4], dr6, dr7, cr8, star, lstar, cstar, sfmask, fs, gs, kgs, xmm0;
    uint64_t fcw;
};

static const char *const names[] = { "DR0",   "DR1",   "DR2",    "DR3",     "DR6",
                                     "DR7",   "CR8",   "STAR",   "LSTAR",   "CSTAR",
                                     "SFMASK", "FS_BASE", "GS_BASE", "KERNEL_GS_BASE",
                                     "XMM0",  "x87 control word" };

static void read_state(struct state *s)
{
    s->dr[0] = get_dr0();
    s->dr[1] = get_dr1();
    s->dr[2] = get_dr2();
    s->dr[3] = get_dr3();
    s->dr6 = get_dr6() & 0xf; /* B0-B3: the bits a write keeps */
    s->dr7 = get_dr7() & 0xff;  /* L0-G3 */
    s->cr8 = get_cr8();
    s->star = rdmsr(MSR_STAR);
    s->lstar = rdmsr(MSR_LSTAR);
    s->cstar = rdmsr(MSR_CSTAR);
    s->sfmask = rdmsr(MSR_SFMASK);
    s->fs = rdmsr(MSR_FS_BASE);
    s->gs = rdmsr(MSR_GS_BASE);
    s->kgs = rdmsr(MSR_KERNEL_GS_BASE);
    s->xmm0 = get_xmm0();
    s->fcw = get_fcw() & 0x1f3f;
}

static void mine(struct state *s)
{
    uint64_t n = id;
    for (int i = 0; i < 4; i++)
        s->dr[i] = 0x00007e0000000000ULL | n << 20 | (uint64_t)(i + 1) << 12;
    s->dr6 = 1u << ((n - 1) & 3);
    s->dr7 = 1u << (2 * ((n - 1) & 3)); /* L0 / L1 / ..: fetch breakpoints never hit */
    s->cr8 = n & 15;
    s->star = (0x10 + 8 * n) << 32;
    s->lstar = 0x00007f1000000000ULL | n;
    s->cstar = 0x00007f2000000000ULL | n;
    s->sfmask = 0x100 | n;
    s->fs = 0x00007f3000000000ULL | n;
    s->gs = 0x00007f4000000000ULL | n;
    s->kgs = 0x00007f5000000000ULL | n;
    s->xmm0 = 0x5a5a5a5a00000000ULL | n;
    s->fcw = (0x037f ^ ((n & 3) << 10)) & 0x1f3f; /* rounding control */
}

static void write_state(const struct state *s)
{
    set_dr0(s->dr[0]);
    set_dr1(s->dr[1]);
    set_dr2(s->dr[2]);
    set_dr3(s->dr[3]);
    set_dr6(0xffff0ff0 | s->dr6);
    set_dr7(0x400 | s->dr7);
    set_cr8(s->cr8);
    wrmsr(MSR_STAR, s->star);
    wrmsr(MSR_LSTAR, s->lstar);
    wrmsr(MSR_CSTAR, s->cstar);
    wrmsr(MSR_SFMASK, s->sfmask);
    wrmsr(MSR_FS_BASE, s->fs);
    wrmsr(MSR_GS_BASE, s->gs);
    wrmsr(MSR_KERNEL_GS_BASE, s->kgs);
    set_xmm0(s->xmm0);
    set_fcw((uint16_t)s->fcw);
}

/* Index of the first field that differs, or -1. */
static int compare(const struct state *want, const struct state *got)
{
    const uint64_t *w = (const uint64_t *)want, *g = (const uint64_t *)got;
    for (unsigned i = 0; i < sizeof(*want) / 8; i++)
        if (w[i] != g[i])
            return (int)i;
    return -1;
}

static void head(void)
{
    puts_("DRPROBE vm=");
    putdec(id);
    putc_(' ');
}

static int report(const char *when, const struct state *want, const struct state *got)
{
    int i = compare(want, got);
    if (i < 0)
        return 0;
    head();
    puts_("FAIL: ");
    puts_(when);
    puts_(": ");
    puts_(names[i]);
    puts_(" is ");
    puthex(((const uint64_t *)got)[i]);
    puts_(", want ");
    puthex(((const uint64_t *)want)[i]);
    putc_('\n');
    return 1;
}

void probe_main(const uint8_t *boot_params)
{
    const char *cmd = (const char *)(uintptr_t) * (const uint32_t *)(boot_params + 0x228);
    for (const char *p = cmd; p && *p; p++)
        if (p[0] == 'i' && p[1] == 'd' && p[2] == '=') {
            for (p += 3; *p >= '0' && *p <= '9'; p++)
                id = id * 10 + (unsigned)(*p - '0');
            break;
        }
    if (!id) {
        puts_("DRPROBE FAIL: no id=N on the command line\n");
        return;
    }
    /* SSE on (CR4.OSFXSR/OSXMMEXCPT are the guest's: no exit). */
    uint64_t cr4 = get_cr4() | 0x600;
    __asm__ volatile(".byte 0x0f, 0x22, 0xe0" : : "a"(cr4) : "memory");
    __asm__ volatile("fninit");

    /* What a new VM finds: the reset state, nobody's leftovers. */
    struct state want, got;
    memset_(&want, 0, sizeof(want));
    want.fcw = 0x037f & 0x1f3f;
    read_state(&got);
    if (report("at start", &want, &got))
        return;

    idt_init();
    int bad = 0;
    if (!cr4_refused(1ULL << 18)) {
        head();
        puts_("FAIL: CR4.OSXSAVE was accepted\n");
        bad = 1;
    }
    if (!cr4_refused(1ULL << 22)) {
        head();
        puts_("FAIL: CR4.PKE was accepted\n");
        bad = 1;
    }
    if (bad)
        return;

    mine(&want);
    write_state(&want);
    read_state(&got);
    if (report("right after writing", &want, &got))
        return;

    uint32_t a, b, hz, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(hz), "=d"(d) : "a"(0x15), "c"(0));
    uint64_t gap = (hz ? hz : 1000000000u) / 1000 * 2; /* 2 ms: the vCPU did not run */
    uint64_t alone = gap * 500;                         /* 1 s without one: others are done */
    uint64_t last = rdtsc(), since = last;
    unsigned switches = 0;
    while (switches < GOAL_SWITCHES) {
        uint64_t t = rdtsc();
        if (t - last > gap) {
            switches++;
            since = t;
            read_state(&got);
            if (report("after another VM ran", &want, &got))
                return;
        }
        last = t;
        if (t - since > alone)
            break;
    }
    read_state(&got);
    if (report("at the end", &want, &got))
        return;
    head();
    puts_("PASS: DR0-3/DR6/DR7/CR8/MSRs/FPU kept across ");
    putdec(switches);
    puts_(" deschedules; CR4.OSXSAVE and CR4.PKE refused\n");
}

__asm__(".section .text.entry, \"ax\"\n"
        ".globl probe_entry\n"
        "probe_entry:\n"
        "    movq %rsi, %rdi\n"
        "    andq $-16, %rsp\n"
        "    call probe_main\n"
        "1:  cli\n"
        "    hlt\n"
        "    jmp 1b\n"
        ".text\n");

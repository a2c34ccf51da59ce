/* The hypervisor's own GDT, TSS and IDT, loaded right after
 * ExitBootServices so that no firmware structure stays in use. NMI, #DF and
 * #MC run on their own IST stacks (SDM Vol. 3A 6.14.5): they can arrive
 * with a broken stack pointer. */
#include "arch/desc.h"
#include "lib/string.h"

struct __attribute__((packed)) tss64 {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3;
    uint16_t iomap_base;
};
_Static_assert(sizeof(struct tss64) == 104, "TSS layout (SDM Vol. 3A 8.7)");

struct __attribute__((packed)) idt_entry {
    uint16_t off0;
    uint16_t sel;
    uint8_t ist;
    uint8_t type; /* P | DPL | type 0xE: 64-bit interrupt gate */
    uint16_t off1;
    uint32_t off2;
    uint32_t zero;
};
_Static_assert(sizeof(struct idt_entry) == 16, "IDT gate");

struct __attribute__((packed)) dtr {
    uint16_t limit;
    uint64_t base;
};

#define IST_STACK_SIZE 16384
static uint8_t ist_stack[3][IST_STACK_SIZE] __attribute__((aligned(16)));
static struct tss64 tss __attribute__((aligned(16)));
static uint64_t gdt[5] __attribute__((aligned(16)));
static struct idt_entry idt[256] __attribute__((aligned(16)));

extern char isr_stubs[];
void desc_load(const struct dtr *gdtr, const struct dtr *idtr);
void tss_load(uint16_t sel);

static void set_gate(int vec, uint64_t handler, int ist)
{
    idt[vec] = (struct idt_entry){
        .off0 = (uint16_t)handler,
        .sel = SEL_CODE64,
        .ist = (uint8_t)ist,
        .type = 0x8e,
        .off1 = (uint16_t)(handler >> 16),
        .off2 = (uint32_t)(handler >> 32),
    };
}

void desc_init(void)
{
    memset(&tss, 0, sizeof(tss));
    for (int i = 0; i < 3; i++) {
        tss.ist[i] = (uint64_t)&ist_stack[i][IST_STACK_SIZE];
        stack_register((uint64_t)ist_stack[i], (uint64_t)&ist_stack[i][IST_STACK_SIZE]);
    }
    tss.iomap_base = sizeof(tss); /* no I/O bitmap */

    uint64_t t = (uint64_t)&tss;
    gdt[0] = 0;
    gdt[1] = 0x00af9a000000ffffULL; /* 64-bit code, DPL 0 */
    gdt[2] = 0x00cf92000000ffffULL; /* data, DPL 0 */
    /* 16-byte TSS descriptor: type 9 (available 64-bit TSS), present. */
    gdt[3] = (sizeof(tss) - 1) | ((t & 0xffffff) << 16) | (0x89ULL << 40) |
             (((t >> 24) & 0xff) << 56);
    gdt[4] = t >> 32;

    for (int v = 0; v < 256; v++)
        set_gate(v, (uint64_t)isr_stubs + 16 * (uint64_t)v, 0);
    idt[2].ist = IST_NMI;
    idt[8].ist = IST_DF;
    idt[18].ist = IST_MC;

    struct dtr gdtr = { sizeof(gdt) - 1, (uint64_t)gdt };
    struct dtr idtr = { sizeof(idt) - 1, (uint64_t)idt };
    desc_load(&gdtr, &idtr);
    tss_load(SEL_TSS);
}

uint64_t desc_gdt_base(void)
{
    return (uint64_t)gdt;
}

uint64_t desc_idt_base(void)
{
    return (uint64_t)idt;
}

uint64_t desc_tss_base(void)
{
    return (uint64_t)&tss;
}

/* 8259A programmable interrupt controller pair, as Linux drives it in PIC
 * mode: ICW1-4 initialisation, masks, specific and non-specific EOI, IRR/ISR
 * reads through OCW3, auto-EOI, cascade on master input 2, ELCR for
 * level-triggered inputs. Special fully nested mode and rotation are not
 * modelled (Linux does not use them). */
#include "vmx/devices.h"
#include "lib/string.h"

#define ICW1_INIT 0x10
#define ICW1_ICW4 0x01
#define ICW1_SINGLE 0x02
#define OCW3_SELECT 0x08
#define CASCADE_IRQ 2

static void chip_reset(struct pic8259 *c)
{
    uint8_t elcr = c->elcr, lines = c->lines;
    memset(c, 0, sizeof(*c));
    c->elcr = elcr;
    c->lines = lines;
}

void pic_init(struct pic_pair *p)
{
    memset(p, 0, sizeof(*p));
    p->chip[0].imr = p->chip[1].imr = 0xff;
}

/* Highest-priority bit of a mask (IR0 highest), or -1. */
static int top_bit(uint8_t m)
{
    for (int i = 0; i < 8; i++)
        if (m & (1u << i))
            return i;
    return -1;
}

/* The request a chip would present to its CPU (or master), or -1. */
static int chip_pending(const struct pic8259 *c)
{
    int req = top_bit(c->irr & ~c->imr);
    if (req < 0)
        return -1;
    int srv = top_bit(c->isr);
    if (srv >= 0 && srv <= req)
        return -1; /* a same or higher priority interrupt is in service */
    return req;
}

static void slave_to_master(struct pic_pair *p)
{
    bool level = chip_pending(&p->chip[1]) >= 0;
    struct pic8259 *m = &p->chip[0];
    /* The cascade input follows the slave's output level. */
    if (level)
        m->irr |= 1u << CASCADE_IRQ;
    else
        m->irr &= (uint8_t)~(1u << CASCADE_IRQ);
}

void pic_set_irq(struct pic_pair *p, int irq, bool level)
{
    if (irq < 0 || irq > 15 || irq == CASCADE_IRQ)
        return;
    struct pic8259 *c = &p->chip[irq >> 3];
    uint8_t bit = (uint8_t)(1u << (irq & 7));
    bool was = c->lines & bit;
    if (level)
        c->lines |= bit;
    else
        c->lines &= (uint8_t)~bit;
    if (c->elcr & bit) {
        if (level)
            c->irr |= bit;
        else
            c->irr &= (uint8_t)~bit;
    } else if (level && !was) {
        c->irr |= bit; /* edge-triggered: latch the rising edge */
    }
    slave_to_master(p);
}

int pic_pending_vector(const struct pic_pair *p)
{
    int m = chip_pending(&p->chip[0]);
    if (m < 0)
        return -1;
    if (m == CASCADE_IRQ) {
        int s = chip_pending(&p->chip[1]);
        if (s < 0)
            return -1;
        return p->chip[1].vector_base + s;
    }
    return p->chip[0].vector_base + m;
}

static void chip_ack(struct pic8259 *c, int irq)
{
    uint8_t bit = (uint8_t)(1u << irq);
    if (!(c->elcr & bit))
        c->irr &= (uint8_t)~bit;
    if (!c->auto_eoi)
        c->isr |= bit;
}

int pic_ack(struct pic_pair *p)
{
    int m = chip_pending(&p->chip[0]);
    if (m < 0)
        return -1;
    int vec;
    if (m == CASCADE_IRQ) {
        int s = chip_pending(&p->chip[1]);
        if (s < 0)
            return -1;
        chip_ack(&p->chip[1], s);
        vec = p->chip[1].vector_base + s;
    } else {
        vec = p->chip[0].vector_base + m;
    }
    chip_ack(&p->chip[0], m);
    slave_to_master(p);
    return vec;
}

static void chip_write(struct pic8259 *c, bool data, uint8_t v)
{
    if (!data) {
        if (v & ICW1_INIT) {
            chip_reset(c);
            c->icw4_needed = v & ICW1_ICW4;
            c->single = v & ICW1_SINGLE;
            c->init_step = 1;
            return;
        }
        if (v & OCW3_SELECT) {
            if (v & 0x02)
                c->read_isr = v & 0x01;
            if (v & 0x40)
                c->special_mask = v & 0x20;
            return;
        }
        /* OCW2: EOI commands. */
        uint8_t cmd = v >> 5;
        if (cmd == 1) { /* non-specific EOI */
            int srv = top_bit(c->isr);
            if (srv >= 0)
                c->isr &= (uint8_t)~(1u << srv);
        } else if (cmd == 3) { /* specific EOI */
            c->isr &= (uint8_t)~(1u << (v & 7));
        }
        return;
    }
    switch (c->init_step) {
    case 1:
        c->vector_base = v & 0xf8;
        c->init_step = c->single ? (c->icw4_needed ? 3 : 0) : 2;
        return;
    case 2: /* ICW3: cascade wiring, fixed here */
        c->init_step = c->icw4_needed ? 3 : 0;
        return;
    case 3:
        c->auto_eoi = v & 0x02;
        c->init_step = 0;
        return;
    default:
        c->imr = v; /* OCW1 */
        return;
    }
}

void pic_write(struct pic_pair *p, uint16_t port, uint8_t v)
{
    if (port == 0x4d0 || port == 0x4d1) {
        /* ELCR: IRQ 0, 1, 2, 8, 13 are always edge-triggered. */
        p->chip[port & 1].elcr = v & (port == 0x4d0 ? 0xf8 : 0xde);
        return;
    }
    struct pic8259 *c = &p->chip[(port & 0x80) ? 1 : 0];
    chip_write(c, port & 1, v);
    slave_to_master(p);
}

uint8_t pic_read(struct pic_pair *p, uint16_t port)
{
    if (port == 0x4d0 || port == 0x4d1)
        return p->chip[port & 1].elcr;
    struct pic8259 *c = &p->chip[(port & 0x80) ? 1 : 0];
    if (port & 1)
        return c->imr;
    return c->read_isr ? c->isr : c->irr;
}

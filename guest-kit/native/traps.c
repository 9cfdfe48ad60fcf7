/*
 * <paravane/traps.h> for the plain kernel: a real IDT of interrupt gates
 * to native/traps-entry.S's stubs (selector 0x08, DPL 0 but #BP at 3; and
 * vector 32 for IRQ 0, native/platform.c's tick),
 * handlers by vector, the faulting address from %cr2, and one way back
 * (iretq). The same handlers run in both builds.
 */
#include <paravane/guest.h>
#include <paravane/traps.h>

extern const unsigned long trap_entries[TRAP_VECTORS];

struct idt_gate {
    uint16_t offset_lo, selector;
    uint8_t ist, type_attr;
    uint16_t offset_mid;
    uint32_t offset_hi, zero;
};

/* The exceptions, then vector 32: IRQ 0 once native/platform.c has remapped the PIC there. */
#define IRQ0_VECTOR 32
extern char irq0_entry[];
static struct idt_gate idt[IRQ0_VECTOR + 1] __attribute__((aligned(16)));

void traps_init(void)
{
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } idtr = { sizeof(idt) - 1, (uint64_t)idt };

    for (unsigned int v = 0; v <= IRQ0_VECTOR; v++) {
        unsigned long a = v == IRQ0_VECTOR ? (unsigned long)irq0_entry : trap_entries[v];

        idt[v] = (struct idt_gate){
            .offset_lo = (uint16_t)a, .selector = 0x08, .ist = 0,
            /* Present, a 64-bit interrupt gate (0xe); DPL 3 for #BP, so int3 works from any mode. */
            .type_attr = (uint8_t)(0x8e | (v == TRAP_BP ? 0x60 : 0)),
            .offset_mid = (uint16_t)(a >> 16), .offset_hi = (uint32_t)(a >> 32), .zero = 0,
        };
    }
    asm volatile("lidt %0" : : "m"(idtr));
}

/* A plain kernel has one way back, iretq. */
unsigned int trap_return_mode(unsigned int mode)
{
    (void)mode;
    return TRAP_RETURN_IRETQ;
}

unsigned long trap_cr2(void)
{
    unsigned long cr2;

    asm volatile("mov %%cr2, %0" : "=r"(cr2));
    return cr2;
}

/* Called by traps-entry.S with every exception's frame. */
void native_trap_dispatch(struct trap_frame *f)
{
    trap_handle(f);
}

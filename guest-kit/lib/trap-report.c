/*
 * What the PV and the plain (native/) builds share of <paravane/traps.h>:
 * the handlers by vector, the vectors' names and the default handler's
 * report. Each build has its own trap table and entry, and its own
 * trap_cr2() (PV: vcpu_info's copy; native: %cr2).
 */
#include <paravane/guest.h>
#include <paravane/traps.h>

static const char *const names[TRAP_VECTORS] = {
    "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow",
    "#BR bound range", "#UD invalid opcode", "#NM device not available",
    "#DF double fault", "coprocessor segment overrun", "#TS invalid TSS",
    "#NP segment not present", "#SS stack fault", "#GP general protection",
    "#PF page fault", "reserved vector", "#MF x87 error", "#AC alignment check",
    "#MC machine check", "#XM SIMD error", "#VE virtualization exception",
    "#CP control protection", "reserved vector", "reserved vector",
    "reserved vector", "reserved vector", "reserved vector", "reserved vector",
    "#HV hypervisor injection", "#VC VMM communication", "#SX security exception",
    "reserved vector",
};

const char *trap_name(unsigned int vector)
{
    if (vector == TRAP_EVENT_UPCALL)
        return "event upcall";
    return vector < TRAP_VECTORS ? names[vector] : "not an exception";
}

void trap_default_handler(struct trap_frame *f)
{
    printk("trap: %s (vector %lu), error code %#lx, at rip %#lx", trap_name(f->vector),
           f->vector, f->error_code, f->rip);
    if (f->vector == TRAP_PF)
        printk(", cr2 %#lx", trap_cr2());
    printk("\n");
    printk("trap: rax %016lx rbx %016lx rcx %016lx rdx %016lx\n", f->rax, f->rbx, f->rcx, f->rdx);
    printk("trap: rsi %016lx rdi %016lx rbp %016lx rsp %016lx\n", f->rsi, f->rdi, f->rbp, f->rsp);
    printk("trap: r8  %016lx r9  %016lx r10 %016lx r11 %016lx\n", f->r8, f->r9, f->r10, f->r11);
    printk("trap: r12 %016lx r13 %016lx r14 %016lx r15 %016lx\n", f->r12, f->r13, f->r14, f->r15);
    printk("trap: cs %#x (saved event mask %u) ss %#lx rflags %#lx\n", TRAP_CS_SELECTOR(f->cs),
           TRAP_CS_SAVED_MASK(f->cs), f->ss, f->rflags);
    printk("trap: no handler for vector %lu: shutting down with SHUTDOWN_crash\n", f->vector);
    shutdown(SHUTDOWN_crash);
}

static trap_handler_t handlers[TRAP_VECTORS];

void trap_set_handler(unsigned int vector, trap_handler_t h)
{
    if (vector >= TRAP_VECTORS) {
        printk("trap_set_handler: vector %u is not 0-%u\n", vector, TRAP_VECTORS - 1);
        shutdown(SHUTDOWN_crash);
    }
    handlers[vector] = h;
}

void trap_handle(struct trap_frame *f)
{
    trap_handler_t h = f->vector < TRAP_VECTORS ? handlers[f->vector] : NULL;

    if (h == NULL)
        trap_default_handler(f);
    h(f);
}

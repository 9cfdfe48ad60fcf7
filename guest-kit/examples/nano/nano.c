/*
 * nano: the costs a virtualization mode puts on single operations, after
 * Adams & Agesen (ASPLOS'06), in one source for both kernels (PV and
 * PLATFORM=native): a call and return (the native-speed reference), a
 * port read (`in` from port 0x80: emulated under PV's virtual IOPL, a
 * device access natively), the interrupt flag off and on (PV the event
 * mask, natively cli and sti), a write of the task priority (natively
 * CR8; a PV kernel has none, and says so), a divide error taken by the kernel's
 * handler and returned from, an int3 the same way, and an empty system
 * call from a user program (PV: bounced by the hypervisor to the kernel
 * and back by the iret hypercall; natively syscall and sysretq). Each runs OPS times,
 * timed with the TSC; each line gives the cycles per operation, and the
 * kernel checks every fault reached its handler. Prints
 *   nano: <operation> <cycles per op> cycles per op (<n> ops)
 * and "nano: <n> faults handled" before powering off.
 */
#include <paravane/guest.h>
#include <paravane/platform.h>
#include <paravane/traps.h>

#define OPS 2000u

static volatile unsigned long handled;

/* The divide error's handler: past the 2-byte div (f7 f1: div %ecx), which the fault left undone. */
static void on_divide(struct trap_frame *f)
{
    handled++;
    f->rip += 2;
}

/* int3 is a trap: rip is already past it. */
static void on_breakpoint(struct trap_frame *f)
{
    (void)f;
    handled++;
}

/* The user program (PLATFORM_USER_TEXT, its data PLATFORM_USER_DATA): OPS empty system calls, timed, then exit. */
static uint64_t user_cycles PLATFORM_USER_DATA;
static uint8_t user_stack[4096] PLATFORM_USER_DATA __attribute__((aligned(16)));

static void PLATFORM_USER_TEXT user_program(void)
{
    uint64_t t = platform_cycles();

    for (unsigned int i = 0; i < OPS; i++)
        platform_user_syscall(0, 0);
    user_cycles = platform_cycles() - t;
    platform_user_syscall(PLATFORM_SYS_EXIT, 7);
    for (;;)
        ;
}

static __attribute__((noinline)) unsigned long callee(unsigned long x)
{
    asm volatile("" : "+r"(x));
    return x + 1;
}

static void report(const char *what, uint64_t cycles)
{
    printk("nano: %s %lu cycles per op (%u ops)\n", what, (unsigned long)(cycles / OPS), OPS);
}

int main(start_info_t *si)
{
    uint64_t t;
    unsigned long x = 0;
    long rc;

    (void)si;
    traps_init();
    trap_set_handler(TRAP_DE, on_divide);
    trap_set_handler(TRAP_BP, on_breakpoint);
    rc = platform_io_init();
    if (rc != 0) {
        printk("nano: %s: the kernel may not use ports: %ld\n", platform_name(), rc);
        return 1;
    }
    printk("nano: platform %s\n", platform_name());

    t = platform_cycles();
    for (unsigned int i = 0; i < OPS; i++)
        x = callee(x);
    report("call/ret", platform_cycles() - t);

    t = platform_cycles();
    for (unsigned int i = 0; i < OPS; i++)
        x += platform_inb(0x80);
    report("in", platform_cycles() - t);

    t = platform_cycles();
    for (unsigned int i = 0; i < OPS; i++) {
        platform_irq_disable();
        platform_irq_enable();
    }
    platform_irq_disable();
    report("irq off/on", platform_cycles() - t);

    if (platform_set_priority(0) == 0) {
        t = platform_cycles();
        for (unsigned int i = 0; i < OPS; i++)
            platform_set_priority(0);
        report("cr8 write", platform_cycles() - t);
    } else {
        printk("nano: cr8 write: no CR8 on platform %s\n", platform_name());
    }

    t = platform_cycles();
    for (unsigned int i = 0; i < OPS; i++) {
        unsigned int eax = 1, edx = 0, zero = 0;

        asm volatile("div %%ecx" : "+a"(eax), "+d"(edx) : "c"(zero));
    }
    report("divide error", platform_cycles() - t);

    t = platform_cycles();
    for (unsigned int i = 0; i < OPS; i++)
        asm volatile("int3");
    report("int3", platform_cycles() - t);

    rc = platform_user_init();
    if (rc == 0)
        rc = platform_user_run(user_program, user_stack + sizeof(user_stack));
    if (rc != 7) {
        printk("nano: %s: the user program did not run to its exit: %ld\n", platform_name(), rc);
        return 1;
    }
    report("syscall", user_cycles);

    printk("nano: %lu faults handled\n", handled);
    asm volatile("" : : "r"(x));
    return handled == 2 * OPS ? 0 : 1;
}

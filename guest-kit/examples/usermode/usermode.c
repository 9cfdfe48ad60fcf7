/*
 * usermode: a PV kernel that runs a user program in guest user mode
 * (<paravane/user.h>) and checks what Xen's x86-64 PV ABI promises:
 *
 *   - system calls: arguments in, result back, the frame from user mode
 *     (cs RPL 3, the user's rip and rsp), on the kernel stack;
 *   - the GS bases swap between kernel and user mode;
 *   - exceptions in user mode reach the kernel with cs RPL 3 on the kernel
 *     stack: a read of kernel memory (#PF, U set, not present: user mode
 *     runs on tables without the kernel), a write to user text (#PF), ud2,
 *     int3 (DPL 3), int $0x80 (DPL 0: #GP), and the two hypercall
 *     instructions, the port `out` and vmcall (#GP(0): no hypercall from
 *     user mode);
 *   - a syscall forged with a bare `out` to the syscall port and hostile
 *     flags in r11 (IOPL 3, NT, VM, IF clear): the frame and the return
 *     carry only the flags a guest may set;
 *   - an event upcall (VIRQ_TIMER) while user code spins.
 *
 * It then times SYSCALLS empty system calls (user -> kernel -> user) and
 * prints "usermode: <n> syscalls, <t> ns each".
 *   - the failsafe callback, given an iret frame whose code selector
 *     cannot be loaded.
 *
 * One line per check ("ok <what>" or "FAIL <what>: ..."), then
 * "usermode: <n> ok, <m> failed". Returns 0 (poweroff) when all passed.
 *
 * The command line picks a failure case instead, which the hypervisor
 * must end by crashing the domain (a line starting with FAIL means it
 * survived):
 *   nousertables  an iret to user mode before any user tables exist
 *   nohandler     a user-mode ud2 after set_trap_table(NULL)
 *   nokstack      a user-mode ud2 with no kernel stack (stack_switch 0)
 *   nofailsafe    an iret to an unloadable code selector, no failsafe callback
 */
#include <paravane/guest.h>
#include <paravane/check.h>
#include <paravane/events.h>
#include <paravane/mmu.h>
#include <paravane/time.h>
#include <paravane/traps.h>
#include <paravane/user.h>
#include <xen/callback.h>

/* The user program's system calls. */
enum { SYS_EXIT, SYS_WRITE, SYS_ADD, SYS_KERNEL_GS, SYS_FRAME, SYS_FLAGS, SYS_NOP };

#define EXIT_STATUS 42
#define BAD_CS 0x1230

/* --- The user image: code and data user mode can reach. */

static char user_stack[2 * PAGE_SIZE] __user_data __attribute__((aligned(16)));
static char user_hello[] __user_data = "hello from guest user mode\n";
/* What the user program saw, for the kernel to check after it ends. */
static struct {
    long sum, kernel_gs, frame_rsp, bad_write;
    uint64_t user_gs, rsp_at_syscall, forged_frame_flags, flags_after_forged;
    unsigned long bench_n;
    volatile unsigned long ticks;
    unsigned long spins;
} user_seen __user_data;
/* What user GS points at: its first word reads back in user mode through %gs. */
static uint64_t user_gs_word __user_data = 0x7573657267730000UL;   /* "usergs" */

/* A kernel word user mode must not reach (its tables do not map the kernel), and GS's target in kernel mode. */
static uint64_t kernel_secret = 0x5ec2e7;
static uint64_t kernel_gs_word = 0x6b65726e656c0000UL;              /* "kernel" */

/* Each faulting probe sets r12 to its instruction's length; the kernel's handler skips it. */
#define USER_PROBE(insn, len, ...) \
    __asm__ volatile("movq $" #len ", %%r12\n\t" insn : : __VA_ARGS__ : "r12", "rax", "memory")

__user_text static void user_main(void)
{
    uint64_t rsp;
    unsigned long spins = 0;

    user_syscall3(SYS_WRITE, (long)user_hello, sizeof(user_hello) - 1, 0);
    user_seen.bad_write = user_syscall3(SYS_WRITE, (long)&kernel_secret, 8, 0);
    user_seen.sum = user_syscall3(SYS_ADD, 40, 2, 0);
    __asm__ volatile("movq %%gs:0, %0" : "=r"(user_seen.user_gs));
    user_seen.kernel_gs = user_syscall1(SYS_KERNEL_GS, 0);
    __asm__ volatile("movq %%rsp, %0" : "=r"(rsp));
    user_seen.rsp_at_syscall = rsp;
    user_seen.frame_rsp = user_syscall1(SYS_FRAME, 0);

    USER_PROBE("movq (%%rdi), %%rax", 3, "D"(&kernel_secret));         /* #PF: the kernel is not mapped */
    USER_PROBE("movq %%rax, (%%rdi)", 3, "D"((void *)user_main));       /* #PF: user text is read-only */
    USER_PROBE("ud2", 2, "D"(0));
    USER_PROBE("int3", 0, "D"(0));                                       /* a trap: rip is already past it */
    USER_PROBE("int $0x80", 2, "D"(0));                                  /* DPL 0: #GP((0x80 << 3) | 2) */
    USER_PROBE("out %%al, $0xe0", 2, "D"(0));                            /* the hypercall port: #GP(0) */
    USER_PROBE("vmcall", 3, "D"(0));                                     /* #GP(0), not a hypercall */

    /* A syscall by hand: the port `out` of the hypervisor's syscall stub, with r11 (the rflags to return with) forged. */
    __asm__ volatile("leaq 1f(%%rip), %%rcx\n\t"
                     "movq $0x27000, %%r11\n\t"      /* IOPL 3, NT, VM; IF clear */
                     "out %%al, $0xe4\n"
                     "1:\n\t"
                     "pushfq\n\t"
                     "popq %1"
                     : "=a"(user_seen.forged_frame_flags), "=r"(user_seen.flags_after_forged)
                     : "a"((long)SYS_FLAGS) : "rcx", "r11", "memory");

    /* An event while in user mode: the kernel's timer handler counts it in user_seen.ticks. */
    while (user_seen.ticks == 0 && spins < 4000000000UL)
        spins++;
    user_seen.spins = spins;
    user_syscall1(SYS_EXIT, EXIT_STATUS);
}

/* Empty system calls, user_seen.bench_n of them. */
__user_text static void user_bench(void)
{
    unsigned long i;

    for (i = 0; i < user_seen.bench_n; i++)
        user_syscall1(SYS_NOP, 0);
    user_syscall1(SYS_EXIT, 0);
}

#define SYSCALLS 1000

/* --- The kernel. */

/* Traps taken from user mode, in order. */
#define MAX_TRAPS 16
static struct trap_frame traps[MAX_TRAPS];
static uint64_t trap_cr2s[MAX_TRAPS];
static unsigned int n_traps;
/* A syscall's frame, and whether any syscall arrived from kernel mode (never should). */
static struct trap_frame syscall_frame;
static unsigned int syscalls_not_from_user;
/* The timer's upcall: whether it interrupted user mode. */
static unsigned int upcalls_from_user;

static int in_user_data(const void *p, unsigned long len)
{
    extern char __user_data_start[], __user_data_end[];
    unsigned long a = (unsigned long)p;

    return a >= (unsigned long)__user_data_start && a < (unsigned long)__user_data_end &&
           len <= (unsigned long)__user_data_end - a;
}

static long user_sys(struct trap_frame *f)
{
    uint64_t gs;

    if (!trap_from_user(f))
        syscalls_not_from_user++;
    switch (f->rax) {
    case SYS_EXIT:
        user_exit((long)f->rdi);
    case SYS_WRITE:
        /* The pointer is the user program's: only its own data may be read. */
        if (!in_user_data((const void *)f->rdi, f->rsi))
            return -XEN_EFAULT;
        printk("user: %.*s", (int)f->rsi, (const char *)f->rdi);
        return (long)f->rsi;
    case SYS_ADD:
        return (long)(f->rdi + f->rsi);
    case SYS_KERNEL_GS:
        __asm__ volatile("movq %%gs:0, %0" : "=r"(gs));
        return (long)gs;
    case SYS_FRAME:
        syscall_frame = *f;
        return (long)f->rsp;
    case SYS_FLAGS:
        return (long)f->rflags;
    case SYS_NOP:
        return 0;
    default:
        return -XEN_ENOSYS;
    }
}

static void user_trap(struct trap_frame *f)
{
    if (!trap_from_user(f))
        trap_default_handler(f);
    if (n_traps < MAX_TRAPS) {
        trap_cr2s[n_traps] = f->vector == TRAP_PF ? trap_cr2() : 0;
        traps[n_traps++] = *f;
    }
    f->rip += f->r12;
}

static void timer_fired(evtchn_port_t port, void *arg)
{
    const struct trap_frame *f = evtchn_upcall_frame();

    (void)port;
    (void)arg;
    if (f != NULL && trap_from_user(f)) {
        upcalls_from_user++;
        user_seen.ticks++; /* what the user program spins on */
    } else if (upcalls_from_user == 0) {
        timer_set(now_ns() + 2 * NSEC_PER_MSEC); /* came while the kernel ran (a slow host): again, for the user's spin */
    }
}

/* The checks on one trap taken in user mode. */
static void check_trap(unsigned int i, const char *what, unsigned int vector, uint64_t error_code)
{
    char name[96];
    const struct trap_frame *f = &traps[i];

    if (i >= n_traps) {
        check_record(0, what, "no trap", "a trap from user mode");
        return;
    }
    snprintf(name, sizeof(name), "%s: vector", what);
    check_eq(name, (long)f->vector, vector);
    snprintf(name, sizeof(name), "%s: error code", what);
    check_hex(name, f->error_code, error_code);
    snprintf(name, sizeof(name), "%s: cs is the user selector (RPL 3)", what);
    check_hex(name, TRAP_CS_SELECTOR(f->cs), FLAT_USER_CS);
    snprintf(name, sizeof(name), "%s: rsp on the user stack", what);
    check_record(in_user_data((void *)f->rsp, 8), name, "elsewhere", "inside user_stack");
}

static void run_checks(void)
{
    long status, rc;
    callback_register_t fs = {
        .type = CALLBACKTYPE_failsafe, .flags = CALLBACKF_mask_events, .address = 0,
    };
    extern void failsafe_probe(unsigned long cs);
    extern char failsafe_entry[], failsafe_target[];
    extern uint64_t failsafe_frame[11], failsafe_iret_rsp;
    unsigned int i;

    for (i = 0; i < TRAP_VECTORS; i++)
        trap_set_handler(i, user_trap);
    check_eq("set the kernel GS base", HYPERVISOR_set_segment_base(SEGBASE_GS_KERNEL, (unsigned long)&kernel_gs_word), 0);
    check_eq("set the user GS base", HYPERVISOR_set_segment_base(SEGBASE_GS_USER, (unsigned long)&user_gs_word), 0);
    check_eq("timer_bind", timer_bind(timer_fired, NULL) >= 0, 1);
    /*
     * Meant to fall due while the user program spins at its end; one that
     * comes earlier (the traps and syscalls before took longer on a loaded
     * host) is set again by the handler until one interrupts user mode.
     */
    check_eq("timer_set 2 ms ahead", timer_set(now_ns() + 2 * NSEC_PER_MSEC), 0);

    status = user_run(user_main, user_stack + sizeof(user_stack));
    check_eq("user_run returns the user program's exit status", status, EXIT_STATUS);
    check_eq("syscall ADD(40, 2)", user_seen.sum, 42);
    check_hex("user mode reads its own GS base", user_seen.user_gs, user_gs_word);
    check_hex("a syscall handler reads the kernel GS base", (uint64_t)user_seen.kernel_gs, kernel_gs_word);
    check_eq("every syscall frame came from user mode", syscalls_not_from_user, 0);
    check_hex("syscall frame: cs is the user selector", TRAP_CS_SELECTOR(syscall_frame.cs), FLAT_USER_CS);
    check_hex("syscall frame: rsp is the user's", syscall_frame.rsp, user_seen.rsp_at_syscall);
    check_hex("syscall frame: rcx is the return rip", syscall_frame.rcx, syscall_frame.rip);
    check_eq("a write from outside the user's data is refused", user_seen.bad_write, -XEN_EFAULT);

    check_trap(0, "read of kernel memory", TRAP_PF, TRAP_PF_USER);
    check_hex("read of kernel memory: cr2", trap_cr2s[0], (uint64_t)&kernel_secret);
    check_trap(1, "write to user text", TRAP_PF, TRAP_PF_USER | TRAP_PF_WRITE | TRAP_PF_PRESENT);
    check_hex("write to user text: cr2", trap_cr2s[1], (uint64_t)user_main);
    check_trap(2, "ud2", TRAP_UD, 0);
    check_trap(3, "int3", TRAP_BP, 0);
    check_trap(4, "int $0x80 (DPL 0)", TRAP_GP, (0x80 << 3) | 2);
    check_trap(5, "out to the hypercall port", TRAP_GP, 0);
    check_trap(6, "vmcall", TRAP_GP, 0);
    check_eq("traps taken in user mode", n_traps, 7);
    check_ge("timer events while user code spun", (long)user_seen.ticks, 1);
    check_ge("of which upcalls that interrupted user mode", upcalls_from_user, 1);
    check_eq("kernel_secret is untouched", (long)kernel_secret, 0x5ec2e7);
    check_hex("forged syscall: the frame's rflags lose IOPL, NT and VM, and IF says events were enabled",
              user_seen.forged_frame_flags & 0x27200, X86_EFLAGS_IF);
    check_hex("forged syscall: user mode resumes with IOPL 0, no NT, no VM", user_seen.flags_after_forged & 0x27000, 0);

    /* The failsafe callback: an iret frame with a code selector that cannot be loaded. */
    fs.address = (xen_callback_t)failsafe_entry;
    check_eq("register the failsafe callback", HYPERVISOR_callback_op(CALLBACKOP_register, &fs), 0);
    failsafe_probe(BAD_CS);
    local_events_enable();
    check_hex("failsafe frame: rip is the iret's", failsafe_frame[6], (uint64_t)failsafe_target);
    check_hex("failsafe frame: cs is the one that failed", failsafe_frame[7] & 0xffff, BAD_CS);
    check_hex("failsafe frame: rsp is the iret's", failsafe_frame[9], failsafe_iret_rsp);
    check_hex("failsafe frame: ds, es, fs, gs are null", failsafe_frame[2] | failsafe_frame[3] | failsafe_frame[4] | failsafe_frame[5], 0);
    fs.address = 0;
    rc = HYPERVISOR_callback_op(CALLBACKOP_register, &fs);
    check_eq("unregister the failsafe callback (address 0)", rc, 0);

    /* The cost of a system call: user -> kernel -> user, two exits and two page-table switches. */
    {
        uint64_t t0, t1;

        user_seen.bench_n = SYSCALLS;
        t0 = now_ns();
        status = user_run(user_bench, user_stack + sizeof(user_stack));
        t1 = now_ns();
        check_eq("the syscall loop exits with 0", status, 0);
        printk("usermode: %u syscalls, %lu ns each\n", SYSCALLS, (unsigned long)((t1 - t0) / SYSCALLS));
    }
}

/* A failure case: prints what it does, does it; the hypervisor must crash the domain. */
static int failure_case(const char *mode)
{
    if (strcmp(mode, "nousertables") == 0) {
        printk("usermode: iret to user mode with no user tables\n");
        user_run(user_main, user_stack + sizeof(user_stack));
    } else if (strcmp(mode, "nohandler") == 0 || strcmp(mode, "nokstack") == 0) {
        check_eq("user_init", user_init(user_sys), 0);
        if (mode[2] == 'h')
            HYPERVISOR_set_trap_table(NULL);
        else
            HYPERVISOR_stack_switch(FLAT_KERNEL_SS, 0);
        printk("usermode: a user program that faults, with %s\n", mode[2] == 'h' ? "no trap handlers" : "no kernel stack");
        user_run(user_main, user_stack + sizeof(user_stack));
    } else if (strcmp(mode, "nofailsafe") == 0) {
        extern void failsafe_probe(unsigned long cs);

        printk("usermode: iret to code selector %#x with no failsafe callback\n", BAD_CS);
        failsafe_probe(BAD_CS);
    } else {
        printk("usermode: unknown failure case \"%s\" (nousertables, nohandler, nokstack, nofailsafe)\n", mode);
        return 1;
    }
    printk("FAIL usermode %s: the domain survived\n", mode);
    return 1;
}

int main(start_info_t *si)
{
    const char *cmdline = (const char *)si->cmd_line;

    traps_init();
    evtchn_init();
    if (cmdline[0] != '\0')
        return failure_case(cmdline);
    if (user_init(user_sys) != 0)
        return 1;
    run_checks();
    printk("usermode: %u ok, %u failed\n", check_passed, check_failed);
    return check_failed ? 1 : 0;
}

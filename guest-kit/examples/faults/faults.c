/*
 * faults: takes, one at a time, each exception a CPL-3 PV guest kernel can
 * raise here, through <paravane/traps.h>, and checks what the handler got
 * and what the return restored. One line per check: "ok <what>" or
 * "FAIL <what>: got <x> expected <y>" ("skip <what>: <why>" when the
 * machine cannot raise it: #AC without CR0.AM, #NM where the CPU ignores
 * the guest's CR0.TS, as kvm_pvm's does), then
 * "faults: <n> ok, <m> failed, <k> skipped (transport <t>)". Returns 0
 * (poweroff) when every check passed, 1 (crash) otherwise.
 *
 * The command line picks a failure case instead, one the hypervisor must
 * end by crashing the domain (the guest prints what it is about to do,
 * then faults; a line starting with FAIL means it survived):
 *   notable    ud2 before any trap table is registered
 *   nohandler  set_trap_table(NULL) after traps_init (Xen: clears the
 *              whole table), then ud2
 *   badstack   ud2 with rsp at an unmapped address
 *   rostack    ud2 with rsp at the top of a read-only page
 *   xenstack   ud2 with rsp in the hypervisor's area
 * Expectations are Xen's for a 64-bit PV domU.
 */
#include <paravane/guest.h>
#include <paravane/check.h>
#include <paravane/events.h>
#include <paravane/mmu.h>
#include <paravane/traps.h>

/* --- The probes (probes.S). */

enum { R_RAX, R_RBX, R_RCX, R_RDX, R_RSI, R_RDI, R_RBP, R_R8, R_R9, R_R10, R_R11,
       R_R12, R_R13, R_R14, R_R15, R_GPRS };

static const char *const reg_names[R_GPRS] = {
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11",
    "r12", "r13", "r14", "r15",
};

/* Every register a probe starts with (in) or ends with (out); probes.S knows the offsets. */
struct probe_regs {
    uint64_t r[R_GPRS];
    uint64_t rsp, rflags;
};
_Static_assert(sizeof(struct probe_regs) == 17 * 8, "probe_regs: probes.S offsets");

void probe_run(const struct probe_regs *in, struct probe_regs *out, const void *probe);
uint64_t probe_xmm0(void);
void fault_on_stack(unsigned long rsp) __attribute__((noreturn));
void fault_survived(void) __attribute__((noreturn));
/* rsp while a probe runs: what the frame's rsp must be. */
extern unsigned long probe_rsp;

#define PROBE_SYMBOLS(n) extern char n[], n##_at[], n##_after[]
PROBE_SYMBOLS(probe_de);
PROBE_SYMBOLS(probe_db);
PROBE_SYMBOLS(probe_bp);
PROBE_SYMBOLS(probe_int3);
PROBE_SYMBOLS(probe_ud);
PROBE_SYMBOLS(probe_nm);
PROBE_SYMBOLS(probe_ss);
PROBE_SYMBOLS(probe_gp_hlt);
PROBE_SYMBOLS(probe_gp_addr);
PROBE_SYMBOLS(probe_gp_int);
PROBE_SYMBOLS(probe_pf_read);
PROBE_SYMBOLS(probe_pf_write);
PROBE_SYMBOLS(probe_pf_exec);
PROBE_SYMBOLS(probe_mf);
PROBE_SYMBOLS(probe_ac);
PROBE_SYMBOLS(probe_xm);
extern char fault_on_stack_at[];

/* Addresses the probes use. */
#define UNMAPPED       0x0000500000000000UL   /* checked to be unmapped before use */
#define NON_CANONICAL  0x0000800000000000UL   /* the first address past the lower half */
#define SIGN_BIT       0x8000000000000000UL   /* rsp + this is non-canonical */

/* A page the #PF probe makes read-only for a moment, and a word in it. */
static uint64_t ro_page[PAGE_SIZE / 8] __attribute__((aligned(PAGE_SIZE)));
/* An aligned word: the #AC probe reads 4 bytes from its second byte. */
static uint64_t ac_word;

/* What the handler does besides recording the frame and setting H_* registers. */
#define DO_SKIP      0x01   /* resume at <probe>_after (else retry the instruction, or, for a trap, go on) */
#define DO_CLEAR_TF  0x02
#define DO_CLEAR_AC  0x04
#define DO_FPU_ON    0x08   /* fpu_taskswitch(0) */
#define DO_MASK      0x10   /* set evtchn_upcall_mask (the return must restore the saved one) */

/* Where the frame's rip must be. */
enum { RIP_AT, RIP_AFTER, RIP_RDX };

/* Before the probe runs. */
enum { SETUP_NONE, SETUP_TS, SETUP_RO_PAGE };

struct probe {
    const char *name;
    const char *code, *at, *after;
    unsigned int vector;
    uint64_t error_code;
    /* #PF from an instruction fetch: the I/D bit is reported only with NX on. */
    int insn_bit_optional;
    int rip;
    unsigned int does;
    int setup;
    /* rdx at the start (NULL: the pattern). For #PF it is also the expected cr2. */
    const void *rdx;
    /* No exception is not a failure but a skip, for this reason. */
    const char *optional;
    /* Run again with TRAP_RETURN_IRETQ. */
    int iretq_too;
};

#define CODE(n) .code = n, .at = n##_at, .after = n##_after

static const struct probe probes[] = {
    { "#DE divq by zero", CODE(probe_de), TRAP_DE, 0, 0, RIP_AT, DO_SKIP, SETUP_NONE, NULL, NULL, 0 },
    { "#DB single step (TF set by popfq)", CODE(probe_db), TRAP_DB, 0, 0, RIP_AFTER, DO_CLEAR_TF,
      SETUP_NONE, NULL, NULL, 1 },
    { "#BP int3", CODE(probe_bp), TRAP_BP, 0, 0, RIP_AFTER, 0, SETUP_NONE, NULL, NULL, 1 },
    { "#BP int $3", CODE(probe_int3), TRAP_BP, 0, 0, RIP_AFTER, 0, SETUP_NONE, NULL, NULL, 0 },
    { "#UD ud2", CODE(probe_ud), TRAP_UD, 0, 0, RIP_AT, DO_SKIP, SETUP_NONE, NULL, NULL, 1 },
    { "#NM SSE with CR0.TS set, retried", CODE(probe_nm), TRAP_NM, 0, 0, RIP_AT, DO_FPU_ON,
      SETUP_TS, NULL, "no #NM came: the virtual CR0.TS does not reach the CPU on this host", 1 },
    { "#SS rsp-based non-canonical load", CODE(probe_ss), TRAP_SS, 0, 0, RIP_AT, DO_SKIP,
      SETUP_NONE, (const void *)SIGN_BIT, NULL, 0 },
    { "#GP hlt", CODE(probe_gp_hlt), TRAP_GP, 0, 0, RIP_AT, DO_SKIP, SETUP_NONE, NULL, NULL, 0 },
    { "#GP non-canonical load", CODE(probe_gp_addr), TRAP_GP, 0, 0, RIP_AT, DO_SKIP, SETUP_NONE,
      (const void *)NON_CANONICAL, NULL, 0 },
    { "#GP int $0x40 (DPL 0)", CODE(probe_gp_int), TRAP_GP, (0x40 << 3) | 2, 0, RIP_AT, DO_SKIP,
      SETUP_NONE, NULL, NULL, 1 },
    { "#PF read of an unmapped page", CODE(probe_pf_read), TRAP_PF, 0, 0, RIP_AT, DO_SKIP,
      SETUP_NONE, (const void *)(UNMAPPED + 0x123), NULL, 0 },
    { "#PF write to an unmapped page", CODE(probe_pf_write), TRAP_PF, TRAP_PF_WRITE, 0, RIP_AT,
      DO_SKIP, SETUP_NONE, (const void *)(UNMAPPED + 0x458), NULL, 1 },
    { "#PF write to a read-only page", CODE(probe_pf_write), TRAP_PF,
      TRAP_PF_PRESENT | TRAP_PF_WRITE, 0, RIP_AT, DO_SKIP, SETUP_RO_PAGE, &ro_page[3], NULL, 0 },
    { "#PF jump to an unmapped page", CODE(probe_pf_exec), TRAP_PF, TRAP_PF_INSN, 1, RIP_RDX,
      DO_SKIP, SETUP_NONE, (const void *)(UNMAPPED + 0x780), NULL, 0 },
    { "#MF x87 divide by zero, unmasked", CODE(probe_mf), TRAP_MF, 0, 0, RIP_AT, DO_SKIP,
      SETUP_NONE, NULL, NULL, 0 },
    { "#AC misaligned load with EFLAGS.AC, retried", CODE(probe_ac), TRAP_AC, 0, 0, RIP_AT,
      DO_CLEAR_AC, SETUP_NONE, (const char *)&ac_word + 1, "alignment checks are off (CR0.AM clear)", 0 },
    { "#XM SSE divide by zero, unmasked", CODE(probe_xm), TRAP_XM, 0, 0, RIP_AT, DO_SKIP,
      SETUP_NONE, NULL, NULL, 0 },
};

/* --- The handler: records the first frame, then resumes as the probe says. */

/* Registers the handler sets, which the return must bring back. */
#define H_RAX 0x00000000aaaa0001UL
#define H_RCX 0x00000000cccc0002UL
#define H_R11 0x000000001111b003UL
#define H_R15 0x0000000015150004UL

static const struct probe *running;
static struct {
    unsigned int count;
    struct trap_frame f;
    unsigned long cr2;
    unsigned int mask;   /* evtchn_upcall_mask while the handler ran */
} seen;

static vcpu_info_t *vcpu(void)
{
    return &HYPERVISOR_shared_info->vcpu_info[0];
}

static void probe_handler(struct trap_frame *f)
{
    const struct probe *p = running;

    if (++seen.count == 1) {
        seen.f = *f;
        seen.cr2 = trap_cr2();
        seen.mask = vcpu()->evtchn_upcall_mask;
    }
    if (p == NULL || seen.count > 3) {
        printk("FAIL %s: trap %u while %s\n", trap_name(f->vector), seen.count,
               p != NULL ? p->name : "no probe runs");
        trap_default_handler(f);
    }
    if (p->does & DO_FPU_ON)
        HYPERVISOR_fpu_taskswitch(0);
    if (p->does & DO_CLEAR_TF)
        f->rflags &= ~(uint64_t)X86_EFLAGS_TF;
    if (p->does & DO_CLEAR_AC)
        f->rflags &= ~(uint64_t)X86_EFLAGS_AC;
    if (p->does & DO_MASK)
        local_events_disable();
    if (p->does & DO_SKIP)
        f->rip = (unsigned long)p->after;
    f->rax = H_RAX;
    f->rcx = H_RCX;
    f->r11 = H_R11;
    f->r15 = H_R15;
}

/* --- Checks. */

static unsigned int skipped;

struct word {
    const char *name;
    uint64_t got, expected;
};

/* One check over several words: ok, or FAIL with the first that differs. */
static void check_words(const char *what, const struct word *w, unsigned int n)
{
    char got[64], expected[64];
    unsigned int i;

    for (i = 0; i < n; i++) {
        if (w[i].got != w[i].expected) {
            snprintf(got, sizeof(got), "%s %#lx", w[i].name, (unsigned long)w[i].got);
            snprintf(expected, sizeof(expected), "%s %#lx", w[i].name, (unsigned long)w[i].expected);
            check_record(0, what, got, expected);
            return;
        }
    }
    check_record(1, what, "", "");
}

/* The frame's registers in probe_regs order. */
static void frame_regs(const struct trap_frame *f, uint64_t r[R_GPRS])
{
    r[R_RAX] = f->rax; r[R_RBX] = f->rbx; r[R_RCX] = f->rcx; r[R_RDX] = f->rdx;
    r[R_RSI] = f->rsi; r[R_RDI] = f->rdi; r[R_RBP] = f->rbp; r[R_R8] = f->r8;
    r[R_R9] = f->r9; r[R_R10] = f->r10; r[R_R11] = f->r11; r[R_R12] = f->r12;
    r[R_R13] = f->r13; r[R_R14] = f->r14; r[R_R15] = f->r15;
}

static const char *mode_name(unsigned int mode)
{
    return mode == TRAP_RETURN_IRETQ ? "iretq" : "iret hypercall";
}

/*
 * Runs probe p once with return mode `mode`, and checks the trap, the
 * frame, the registers the handler saw and those the return restored.
 */
static void run(const struct probe *p, unsigned int mode)
{
    struct probe_regs in, out;
    struct word w[R_GPRS + 4];
    char what[160];
    uint64_t regs[R_GPRS], rip, mask, error;
    unsigned int i, n;

    trap_return_mode(mode);
    for (i = 0; i < R_GPRS; i++)
        in.r[i] = 0x0101010101010101UL * (i + 1);  /* rax 0x0101..., rbx 0x0202..., r15 0x0f0f... */
    if (p->rdx != NULL)
        in.r[R_RDX] = (uint64_t)p->rdx;
    in.rsp = in.rflags = 0;
    memset(&out, 0, sizeof(out));
    memset(&seen, 0, sizeof(seen));
    mask = vcpu()->evtchn_upcall_mask;

    if (p->setup == SETUP_TS) {
        snprintf(what, sizeof(what), "%s [%s]: fpu_taskswitch(1) returns 0", p->name, mode_name(mode));
        check_eq(what, HYPERVISOR_fpu_taskswitch(1), 0);
    } else if (p->setup == SETUP_RO_PAGE) {
        snprintf(what, sizeof(what), "%s [%s]: the page is made read-only", p->name, mode_name(mode));
        check_eq(what, mmu_set_readonly(ro_page), 0);
    }
    running = p;
    probe_run(&in, &out, p->code);
    running = NULL;
    if (p->setup == SETUP_TS)
        HYPERVISOR_fpu_taskswitch(0);       /* in case no #NM came: later probes use SSE */
    else if (p->setup == SETUP_RO_PAGE)
        mmu_set_writable(ro_page);

    if (seen.count == 0 && p->optional != NULL) {
        printk("skip %s [%s]: %s\n", p->name, mode_name(mode), p->optional);
        skipped++;
        return;
    }

    /* The trap: once, this vector, this error code, at this instruction. */
    rip = p->rip == RIP_AT ? (uint64_t)p->at : p->rip == RIP_AFTER ? (uint64_t)p->after
                                                                    : (uint64_t)p->rdx;
    error = p->error_code;
    if (p->insn_bit_optional && seen.f.error_code == (error & ~(uint64_t)TRAP_PF_INSN))
        error = seen.f.error_code;
    n = 0;
    w[n++] = (struct word){ "traps taken", seen.count, 1 };
    w[n++] = (struct word){ "vector", seen.f.vector, p->vector };
    w[n++] = (struct word){ "error code", seen.f.error_code, error };
    w[n++] = (struct word){ "rip", seen.f.rip, rip };
    snprintf(what, sizeof(what), "%s [%s]: vector %u, error code %#lx%s, rip %s",
             p->name, mode_name(mode), p->vector, (unsigned long)p->error_code,
             p->insn_bit_optional ? " (I/D only with NX)" : "",
             p->rip == RIP_AT ? "at the instruction" : p->rip == RIP_AFTER ? "after it" : "the target");
    check_words(what, w, n);
    if (seen.count == 0)
        return;

    /* The frame: from kernel mode, with the event mask as it was. */
    n = 0;
    w[n++] = (struct word){ "cs (selector | saved mask << 32)", seen.f.cs,
                            (FLAT_KERNEL_CS & ~3UL) | (mask << 32) };
    w[n++] = (struct word){ "rflags.IF", seen.f.rflags & X86_EFLAGS_IF, mask ? 0 : X86_EFLAGS_IF };
    w[n++] = (struct word){ "rsp", seen.f.rsp, probe_rsp };
    w[n++] = (struct word){ "ss", seen.f.ss, FLAT_KERNEL_SS };
    w[n++] = (struct word){ "evtchn_upcall_mask in the handler", seen.mask, mask };
    if (p->vector == TRAP_DB)
        w[n++] = (struct word){ "rflags.TF", seen.f.rflags & X86_EFLAGS_TF, X86_EFLAGS_TF };
    if (p->vector == TRAP_AC)
        w[n++] = (struct word){ "rflags.AC", seen.f.rflags & X86_EFLAGS_AC, X86_EFLAGS_AC };
    snprintf(what, sizeof(what), "%s [%s]: frame cs %#x (kernel mode), saved mask %lu, "
             "IF %s, rsp and ss as at the fault%s", p->name, mode_name(mode), FLAT_KERNEL_CS & ~3,
             (unsigned long)mask, mask ? "clear" : "set",
             p->vector == TRAP_DB ? ", TF set" : p->vector == TRAP_AC ? ", AC set" : "");
    check_words(what, w, n);

    if (p->vector == TRAP_PF) {
        snprintf(what, sizeof(what), "%s [%s]: trap_cr2() is the address", p->name, mode_name(mode));
        check_hex(what, seen.cr2, (uint64_t)p->rdx);
    }

    /* The handler saw the faulting code's registers. */
    frame_regs(&seen.f, regs);
    for (i = 0; i < R_GPRS; i++)
        w[i] = (struct word){ reg_names[i], regs[i], in.r[i] };
    snprintf(what, sizeof(what), "%s [%s]: the handler sees the registers of the faulting code",
             p->name, mode_name(mode));
    check_words(what, w, R_GPRS);

    /* The return: the handler's rax, rcx, r11 and r15, the rest untouched, the stack balanced. */
    in.r[R_RAX] = H_RAX;
    in.r[R_RCX] = H_RCX;
    in.r[R_R11] = H_R11;
    in.r[R_R15] = H_R15;
    for (i = 0; i < R_GPRS; i++)
        w[i] = (struct word){ reg_names[i], out.r[i], in.r[i] };
    n = R_GPRS;
    w[n++] = (struct word){ "rsp", out.rsp, probe_rsp };
    w[n++] = (struct word){ "rflags.TF|AC", out.rflags & (X86_EFLAGS_TF | X86_EFLAGS_AC), 0 };
    w[n++] = (struct word){ "evtchn_upcall_mask", vcpu()->evtchn_upcall_mask, mask };
    snprintf(what, sizeof(what), "%s [%s]: the return restores the handler's rax, rcx, r11, r15, "
             "the other registers, rsp and the event mask", p->name, mode_name(mode));
    check_words(what, w, n);

    if (p->vector == TRAP_NM) {
        snprintf(what, sizeof(what), "%s [%s]: the retried instruction ran, with the handler's rax",
                 p->name, mode_name(mode));
        check_hex(what, probe_xmm0(), H_RAX);
    }
}

/*
 * #BP with events unmasked: the frame saves mask 0 (IF set), entry leaves
 * events unmasked (flags bit 2 clear), the handler masks them, and the
 * return must unmask them again.
 */
static void run_unmasked(unsigned int mode)
{
    static const struct probe bp = { "#BP int3 with events unmasked", CODE(probe_bp), TRAP_BP, 0, 0,
                                     RIP_AFTER, DO_MASK, SETUP_NONE, NULL, NULL, 0 };

    if (vcpu()->evtchn_upcall_pending) {
        printk("skip %s [%s]: an event is pending\n", bp.name, mode_name(mode));
        skipped++;
        return;
    }
    local_events_enable();
    run(&bp, mode);
    local_events_disable();
}

static void check_unmapped(const char *what, unsigned long va)
{
    uint64_t pte = 0;
    long rc = mmu_lookup(va, &pte, NULL);

    check_record(rc == -XEN_ENOENT || (rc == 0 && !(pte & _PAGE_PRESENT)), what,
                 "a mapping", "none");
}

static void all_checks(void)
{
    unsigned int i, v;

    traps_init();
    for (v = 0; v < TRAP_VECTORS; v++)
        trap_set_handler(v, probe_handler);
    check_unmapped("the #PF probes' page is unmapped", UNMAPPED);

    for (i = 0; i < ARRAY_SIZE(probes); i++)
        run(&probes[i], TRAP_RETURN_IRET_HYPERCALL);
    for (i = 0; i < ARRAY_SIZE(probes); i++)
        if (probes[i].iretq_too)
            run(&probes[i], TRAP_RETURN_IRETQ);
    run_unmasked(TRAP_RETURN_IRET_HYPERCALL);
    run_unmasked(TRAP_RETURN_IRETQ);
    trap_return_mode(TRAP_RETURN_IRET_HYPERCALL);
}

/* --- The failure cases. */

static const char *failure;

/* The handler for a fault that must never reach the guest. */
static void survived_handler(struct trap_frame *f)
{
    printk("FAIL %s: the guest's %s handler ran at rip %#lx; the domain should have been crashed\n",
           failure, trap_name(f->vector), f->rip);
    shutdown(SHUTDOWN_crash);
}

void fault_survived(void)
{
    printk("FAIL %s: execution went on past the ud2; the domain should have been crashed\n", failure);
    shutdown(SHUTDOWN_crash);
}

/* ud2 on the kit's stack; the domain must not come back. */
static void __attribute__((noreturn)) ud2_here(void)
{
    console_flush();
    asm volatile("ud2");
    fault_survived();
}

static int failure_case(const char *mode)
{
    static uint64_t ro_stack[PAGE_SIZE / 8] __attribute__((aligned(PAGE_SIZE)));
    unsigned long rsp;

    failure = mode;
    if (strcmp(mode, "notable") == 0) {
        printk("faults: notable: no trap table is registered; ud2 must crash the domain\n");
        ud2_here();
    }
    traps_init();
    trap_set_handler(TRAP_UD, survived_handler);
    if (strcmp(mode, "nohandler") == 0) {
        static const struct probe bp = { "#BP int3 before the table is cleared", CODE(probe_bp),
                                         TRAP_BP, 0, 0, RIP_AFTER, 0, SETUP_NONE, NULL, NULL, 0 };

        trap_set_handler(TRAP_BP, probe_handler);
        run(&bp, TRAP_RETURN_IRET_HYPERCALL);
        check_eq("nohandler: set_trap_table(NULL) (clears the table) returns 0",
                 HYPERVISOR_set_trap_table(NULL), 0);
        printk("faults: nohandler: the trap table is cleared; ud2 must crash the domain\n");
        ud2_here();
    }
    if (strcmp(mode, "badstack") == 0) {
        rsp = UNMAPPED + PAGE_SIZE;
        check_unmapped("badstack: the stack page is unmapped", UNMAPPED);
    } else if (strcmp(mode, "rostack") == 0) {
        rsp = (unsigned long)ro_stack + PAGE_SIZE;
        check_eq("rostack: the stack page is made read-only", mmu_set_readonly(ro_stack), 0);
    } else if (strcmp(mode, "xenstack") == 0) {
        rsp = HYPERVISOR_VIRT_START + 0x10000;
    } else {
        printk("faults: unknown command line \"%s\": use nothing (all checks), notable, nohandler,"
               " badstack, rostack or xenstack\n", mode);
        return 1;
    }
    printk("faults: %s: ud2 at %p with rsp %#lx must crash the domain (no bounce frame can be written)\n",
           mode, (void *)fault_on_stack_at, rsp);
    console_flush();
    fault_on_stack(rsp);
}

int main(start_info_t *si)
{
    const char *cmdline = (const char *)si->cmd_line;

    if (cmdline[0] != '\0')
        return failure_case(cmdline);
    printk("faults: taking exceptions with the %s transport\n", hypercall_transport());
    all_checks();
    printk("faults: %u ok, %u failed, %u skipped (transport %s)\n", check_passed, check_failed,
           skipped, hypercall_transport());
    return check_failed == 0 ? 0 : 1;
}

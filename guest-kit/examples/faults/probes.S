/*
 * faults: the code that faults. probe_run() loads every register from a
 * struct probe_regs and jumps to a probe; each probe raises one exception
 * at its label <name>_at and, once the handler has resumed it (at
 * <name>_after, or by retrying <name>_at), jumps to probe_back, which
 * stores every register, rsp and rflags and returns to probe_run's caller.
 * Also the failure cases' stack switch (fault_on_stack).
 * Inputs: none from outside the guest.
 */
#include <paravane/asm.h>
#include <paravane/traps.h>

/* struct probe_regs (faults.c): rax, rbx, rcx, rdx, rsi, rdi, rbp, r8-r15, then rsp and rflags. */
#define P_RAX    0x00
#define P_RBX    0x08
#define P_RCX    0x10
#define P_RDX    0x18
#define P_RSI    0x20
#define P_RDI    0x28
#define P_RBP    0x30
#define P_R8     0x38
#define P_R9     0x40
#define P_R10    0x48
#define P_R11    0x50
#define P_R12    0x58
#define P_R13    0x60
#define P_R14    0x68
#define P_R15    0x70
#define P_RSP    0x78
#define P_RFLAGS 0x80

/* MXCSR: all exceptions masked (the reset value), and the same with divide-by-zero (ZM, bit 9) unmasked. */
#define MXCSR_DEFAULT     0x1f80
#define MXCSR_ZM_UNMASKED 0x1d80
/* x87 control word: the fninit value, and the same with ZM (bit 2) unmasked. */
#define FCW_ZM_UNMASKED   0x037b

        .code64
        .text

/*
 * void probe_run(const struct probe_regs *in, struct probe_regs *out, const void *probe)
 * Saves the C callee-saved registers, records rsp (the probe runs with
 * it: probe_rsp), loads all fifteen registers from in and jumps to probe.
 */
        .globl probe_run
        .type probe_run, @function
probe_run:
        PUSH_CALLEE_SAVED
        movq %rsi, probe_out(%rip)
        movq %rdx, probe_target(%rip)
        movq %rsp, probe_rsp(%rip)
        movq P_RAX(%rdi), %rax
        movq P_RBX(%rdi), %rbx
        movq P_RCX(%rdi), %rcx
        movq P_RDX(%rdi), %rdx
        movq P_RSI(%rdi), %rsi
        movq P_RBP(%rdi), %rbp
        movq P_R8(%rdi), %r8
        movq P_R9(%rdi), %r9
        movq P_R10(%rdi), %r10
        movq P_R11(%rdi), %r11
        movq P_R12(%rdi), %r12
        movq P_R13(%rdi), %r13
        movq P_R14(%rdi), %r14
        movq P_R15(%rdi), %r15
        movq P_RDI(%rdi), %rdi
        jmp *probe_target(%rip)

/* Where every probe ends: stores the registers as they are into *out. */
probe_back:
        pushq %rdi
        movq probe_out(%rip), %rdi
        movq %rax, P_RAX(%rdi)
        movq %rbx, P_RBX(%rdi)
        movq %rcx, P_RCX(%rdi)
        movq %rdx, P_RDX(%rdi)
        movq %rsi, P_RSI(%rdi)
        movq %rbp, P_RBP(%rdi)
        movq %r8, P_R8(%rdi)
        movq %r9, P_R9(%rdi)
        movq %r10, P_R10(%rdi)
        movq %r11, P_R11(%rdi)
        movq %r12, P_R12(%rdi)
        movq %r13, P_R13(%rdi)
        movq %r14, P_R14(%rdi)
        movq %r15, P_R15(%rdi)
        popq %rax
        movq %rax, P_RDI(%rdi)
        movq %rsp, P_RSP(%rdi)
        pushfq
        popq %rax
        movq %rax, P_RFLAGS(%rdi)
        movq probe_rsp(%rip), %rsp
        POP_CALLEE_SAVED
        ret
        .size probe_run, . - probe_run

/* PROBE name: starts probe `name`; the faulting instruction follows, then PROBE_END. */
.macro PROBE name
        .globl \name, \name\()_at, \name\()_after
\name\():
.endm
.macro AT name
\name\()_at:
.endm
.macro AFTER name
\name\()_after:
.endm

/* #DE: divide by a zero in memory (so every register keeps its pattern). */
PROBE probe_de
AT probe_de
        divq zero_quad(%rip)
AFTER probe_de
        jmp probe_back

/* #DB: popfq sets TF; the trap comes after the next instruction (the nop). */
PROBE probe_db
        pushfq
        orl $X86_EFLAGS_TF, (%rsp)
        popfq
AT probe_db
        nop
AFTER probe_db
        jmp probe_back

/* #BP: int3 (one byte, 0xcc); a trap, so rip is past it. */
PROBE probe_bp
AT probe_bp
        int3
AFTER probe_bp
        jmp probe_back

/* #BP: int $3 (two bytes, 0xcd 0x03), allowed because vector 3 has DPL 3. */
PROBE probe_int3
AT probe_int3
        .byte 0xcd, 0x03                /* int $3: gas would pick int3 */
AFTER probe_int3
        jmp probe_back

/* #UD: ud2. */
PROBE probe_ud
AT probe_ud
        ud2
AFTER probe_ud
        jmp probe_back

/* #NM: an SSE instruction while the virtual CR0.TS is set; the handler clears TS and retries. */
PROBE probe_nm
AT probe_nm
        movq %rax, %xmm0
AFTER probe_nm
        jmp probe_back

/* #SS: an rsp-based access at a non-canonical address (rsp + rdx, rdx = 1 << 63). */
PROBE probe_ss
AT probe_ss
        movq (%rsp,%rdx,1), %rax
AFTER probe_ss
        jmp probe_back

/* #GP(0): hlt is privileged, and the guest kernel runs at CPL 3. */
PROBE probe_gp_hlt
AT probe_gp_hlt
        hlt
AFTER probe_gp_hlt
        jmp probe_back

/* #GP(0): a load from the non-canonical address in rdx. */
PROBE probe_gp_addr
AT probe_gp_addr
        movq (%rdx), %rax
AFTER probe_gp_addr
        jmp probe_back

/* #GP((0x40 << 3) | 2): int $0x40, a vector whose DPL (0, not registered) forbids it. */
PROBE probe_gp_int
AT probe_gp_int
        int $0x40
AFTER probe_gp_int
        jmp probe_back

/* #PF: a read from the address in rdx. */
PROBE probe_pf_read
AT probe_pf_read
        movq (%rdx), %rax
AFTER probe_pf_read
        jmp probe_back

/* #PF: a write to the address in rdx. */
PROBE probe_pf_write
AT probe_pf_write
        movq %rax, (%rdx)
AFTER probe_pf_write
        jmp probe_back

/* #PF: an instruction fetch from the address in rdx; rip in the frame is rdx. */
PROBE probe_pf_exec
AT probe_pf_exec
        jmp *%rdx
AFTER probe_pf_exec
        jmp probe_back

/* #MF: an x87 divide by zero with ZM unmasked is raised at the next waiting instruction (fwait). */
PROBE probe_mf
        fninit
        fldcw fcw_zm_unmasked(%rip)
        fldz
        fld1
        fdiv %st(1), %st                /* st0 = 1 / 0: ZE pending */
AT probe_mf
        fwait
AFTER probe_mf
        fninit
        jmp probe_back

/*
 * #AC: with EFLAGS.AC set, a misaligned access at CPL 3 faults if CR0.AM
 * is set. The handler clears AC in the frame and retries. cmpl changes no
 * register. AC is cleared afterwards, in case no #AC came.
 */
PROBE probe_ac
        pushfq
        orl $X86_EFLAGS_AC, (%rsp)
        popfq
AT probe_ac
        cmpl $0, (%rdx)
AFTER probe_ac
        pushfq
        andl $~X86_EFLAGS_AC, (%rsp)
        popfq
        jmp probe_back

/* #XM: SSE divide by zero with ZM unmasked in MXCSR (CR4.OSXMMEXCPT set; otherwise #UD). */
PROBE probe_xm
        ldmxcsr mxcsr_zm_unmasked(%rip)
        movss float_one(%rip), %xmm0
        xorps %xmm1, %xmm1
AT probe_xm
        divss %xmm1, %xmm0
AFTER probe_xm
        ldmxcsr mxcsr_default(%rip)     /* masks it again and clears ZE */
        jmp probe_back

/* uint64_t probe_xmm0(void): the low quadword of xmm0 (C here is built without SSE). */
        .globl probe_xmm0
        .type probe_xmm0, @function
probe_xmm0:
        movq %xmm0, %rax
        ret
        .size probe_xmm0, . - probe_xmm0

/*
 * void fault_on_stack(unsigned long rsp): executes ud2 with rsp as given,
 * so the hypervisor cannot write the bounce frame. The domain must be
 * crashed; if execution comes back past the ud2, it takes the kit's own
 * stack back and reports (fault_survived, faults.c).
 */
        .globl fault_on_stack
        .type fault_on_stack, @function
fault_on_stack:
        movq %rdi, %rsp
        .globl fault_on_stack_at
fault_on_stack_at:
        ud2
        leaq survived_stack_top(%rip), %rsp
        call fault_survived
        ud2
        .size fault_on_stack, . - fault_on_stack

        .section .rodata
        .balign 8
zero_quad:
        .quad 0
mxcsr_default:
        .long MXCSR_DEFAULT
mxcsr_zm_unmasked:
        .long MXCSR_ZM_UNMASKED
float_one:
        .float 1.0
fcw_zm_unmasked:
        .word FCW_ZM_UNMASKED

        .bss
        .balign 8
probe_out:
        .skip 8
probe_target:
        .skip 8
        .globl probe_rsp
probe_rsp:
        .skip 8
        .balign 16
        .skip 4096
survived_stack_top:

        .section .note.GNU-stack, "", @progbits

/*
 * Exceptions in a PV guest kernel: a virtual IDT of entry stubs for
 * vectors 0-31 (set_trap_table), a C handler per vector with the
 * interrupted registers in a struct trap_frame, and two ways back (the
 * iret hypercall, or a plain iretq). See docs/guest-kit.md.
 *
 * How an exception arrives (Xen's x86-64 PV ABI): the hypervisor writes a
 * bounce frame on the guest kernel stack, low to high
 *
 *   rcx, r11, [error code], rip, cs | saved_mask << 32, rflags, rsp, ss
 *
 * (the error code only for the vectors in TRAP_ERROR_CODE_VECTORS), and
 * enters the vector's handler with rsp at rcx. When kernel mode was
 * interrupted, cs has its RPL bits cleared (0xe030). Bits 32-39 of the cs
 * word hold vcpu_info.evtchn_upcall_mask as it was, and rflags.IF is its
 * inverse. For #PF the faulting address is in vcpu_info.arch.cr2 and the
 * error code's U bit says guest user mode (clear for the kernel).
 *
 * One vCPU: nothing here locks. Not in guest.h: include it.
 */
#ifndef __PARAVANE_TRAPS_H__
#define __PARAVANE_TRAPS_H__

/* Vectors 0-31 have entry stubs; higher ones are not registered. */
#define TRAP_VECTORS 32

/* Vectors for which the CPU (and so the bounce frame) has an error code: 8, 10-14, 17, 21, 29, 30. */
#define TRAP_ERROR_CODE_VECTORS 0x60227d00

#define TRAP_DE  0   /* divide error */
#define TRAP_DB  1   /* debug */
#define TRAP_NMI 2
#define TRAP_BP  3   /* breakpoint (int3); the only vector with DPL 3 */
#define TRAP_OF  4
#define TRAP_BR  5
#define TRAP_UD  6   /* invalid opcode */
#define TRAP_NM  7   /* device not available (virtual CR0.TS set) */
#define TRAP_DF  8
#define TRAP_TS  10
#define TRAP_NP  11
#define TRAP_SS  12  /* stack-segment fault */
#define TRAP_GP  13  /* general protection */
#define TRAP_PF  14  /* page fault */
#define TRAP_MF  16  /* x87 floating-point error */
#define TRAP_AC  17  /* alignment check */
#define TRAP_MC  18
#define TRAP_XM  19  /* SIMD floating-point exception */
#define TRAP_VE  20
#define TRAP_CP  21

/* #PF error code bits (U is clear for faults in guest kernel mode). */
#define TRAP_PF_PRESENT 0x01
#define TRAP_PF_WRITE   0x02
#define TRAP_PF_USER    0x04
#define TRAP_PF_RSVD    0x08
#define TRAP_PF_INSN    0x10   /* instruction fetch (reported when NX is on) */

/* RFLAGS bits a handler may want. */
#define X86_EFLAGS_TF 0x00000100
#define X86_EFLAGS_IF 0x00000200
#define X86_EFLAGS_AC 0x00040000

/*
 * The vector field of an event upcall's frame (lib/events.c): not an
 * exception, but the upcall arrives on the same kind of bounce frame (with
 * no error code) and leaves through the same two returns.
 */
#define TRAP_EVENT_UPCALL 0x100

/* How a handler's frame is resumed: see trap_return_mode(). */
#define TRAP_RETURN_IRET_HYPERCALL 0
#define TRAP_RETURN_IRETQ          1

/* struct trap_frame offsets, for lib/traps-entry.S (checked in lib/traps.c). */
#define TRAP_FRAME_VECTOR 0x78
#define TRAP_FRAME_CS     0x90
#define TRAP_FRAME_SS     0xa8
#define TRAP_FRAME_SIZE   0xb0

#ifndef __ASSEMBLY__
#include <stdint.h>
#include <xen/xen.h>

/*
 * The interrupted state, on the kernel stack below the place it was
 * interrupted. A handler may change any field; the return resumes the
 * frame as the handler left it (rip, rsp, rflags and every register).
 */
struct trap_frame {
    /* The general registers at the fault; rcx and r11 come from the bounce frame. */
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    /* 0-31, or TRAP_EVENT_UPCALL in an event upcall's frame. */
    uint64_t vector;
    /* The CPU's error code (32 bits), or 0 for a vector without one. */
    uint64_t error_code;
    /* The hardware-style frame. For a fault rip is the faulting instruction, for a trap (#DB, #BP) the next one. */
    uint64_t rip;
    /*
     * Bits 0-15: the selector; RPL 0 (0xe030) means guest kernel mode was
     * interrupted. Bits 32-39: the saved evtchn_upcall_mask, which the
     * iretq return restores (TRAP_CS_SAVED_MASK).
     */
    uint64_t cs;
    /* IF is the inverse of the saved mask; the iret hypercall restores the mask from it. */
    uint64_t rflags;
    uint64_t rsp;
    uint64_t ss;
};

#define TRAP_CS_SELECTOR(cs)   ((unsigned int)((cs) & 0xffff))
#define TRAP_CS_SAVED_MASK(cs) ((unsigned int)(((cs) >> 32) & 0xff))

/* A handler: called with events as they were (the kit does not mask them on entry). */
typedef void (*trap_handler_t)(struct trap_frame *f);

/*
 * Maps shared_info (HYPERVISOR_shared_info), then registers the kit's
 * entry stubs for vectors 0-31 with set_trap_table: cs FLAT_KERNEL_CS, DPL
 * 0 except #BP (DPL 3, so int3 works from any mode), and flags bit 2 clear:
 * exceptions are synchronous, so entry leaves the event mask as it was
 * (set it in a handler that needs events masked). Every vector starts with
 * the default handler. Shuts the domain down (SHUTDOWN_crash) if either
 * hypercall fails. Call it again to re-register the table.
 */
void traps_init(void);

/* Sets vector's handler; NULL restores trap_default_handler. vector must be < TRAP_VECTORS. */
void trap_set_handler(unsigned int vector, trap_handler_t h);

/* Runs f's handler, or trap_default_handler if its vector has none (the kit's entry code calls it, in both builds). */
void trap_handle(struct trap_frame *f);

/*
 * Prints the trap (name, vector, error code, rip, cr2 for #PF) and the
 * registers, then shuts the domain down with SHUTDOWN_crash. Handlers may
 * call it for what they do not recognise.
 */
void trap_default_handler(struct trap_frame *f) __attribute__((noreturn));

/*
 * The faulting address of the last #PF, from vcpu_info[0].arch.cr2 (a PV
 * kernel cannot read %cr2). Read it before anything can fault again.
 */
unsigned long trap_cr2(void);

/*
 * How every later handler's frame is resumed; returns the previous mode.
 *
 *   TRAP_RETURN_IRET_HYPERCALL (the default, as Linux does) the iret
 *     hypercall: the stub pops back to rip, cs, rflags, rsp, ss, pushes a
 *     flags word 0 and the hypervisor restores everything, rcx, r11 and
 *     rax included, and sets evtchn_upcall_mask from rflags.IF.
 *   TRAP_RETURN_IRETQ (as Mini-OS does) a plain iretq, no exit: the stub
 *     ORs RPL 3 into cs and ss, writes the saved mask (cs bits 32-39) to
 *     evtchn_upcall_mask, restores the registers and executes iretq. The
 *     window: once the mask is written, an event can be delivered before
 *     the iretq, on the stack below the frame. An event already pending
 *     would wait for the next exit, so when the mask becomes 0 with
 *     evtchn_upcall_pending set the stub uses the hypercall instead. A
 *     frame from guest user mode (cs RPL 3) also always takes the
 *     hypercall, which switches page tables.
 */
unsigned int trap_return_mode(unsigned int mode);

/*
 * "#PF page fault" and the like for 0-31 ("reserved vector" where none),
 * "event upcall" for TRAP_EVENT_UPCALL, "not an exception" otherwise.
 */
const char *trap_name(unsigned int vector);

/* The shared_info page, mapped by shared_info_map() (NULL before). */
extern shared_info_t *HYPERVISOR_shared_info;

/*
 * Maps the shared_info frame (start_info->shared_info) read-write at a
 * page of the kit's and sets HYPERVISOR_shared_info, once; later calls do
 * nothing. traps_init(), evtchn_init() and the time functions call it.
 * Shuts the domain down (SHUTDOWN_crash) if the mapping fails.
 */
void shared_info_map(void);

_Static_assert(__builtin_offsetof(struct trap_frame, vector) == TRAP_FRAME_VECTOR, "trap_frame.vector");
_Static_assert(__builtin_offsetof(struct trap_frame, cs) == TRAP_FRAME_CS, "trap_frame.cs");
_Static_assert(__builtin_offsetof(struct trap_frame, ss) == TRAP_FRAME_SS, "trap_frame.ss");
_Static_assert(sizeof(struct trap_frame) == TRAP_FRAME_SIZE, "trap_frame size");
#endif /* !__ASSEMBLY__ */

#endif /* __PARAVANE_TRAPS_H__ */

/*
 * The entry stubs for vectors 0-31, the event upcall and the syscall from
 * user mode, and the path around trap_dispatch() (lib/traps.c),
 * evtchn_upcall() (lib/events.c) and user_syscall() (lib/user.c): the
 * hypervisor's bounce frame in, a struct trap_frame for C, and the two
 * ways back. Also the way into user mode and back out of it (user_enter,
 * user_leave). See <paravane/traps.h>, <paravane/events.h> and
 * <paravane/user.h>.
 * Inputs: the bounce frame (written by the hypervisor, trusted) and the
 * frame a handler edited (the guest's own).
 */
#include <paravane/asm.h>
#include <paravane/hypercall.h>
#include <paravane/traps.h>
#include <paravane/user.h>
#include <xen/arch-x86/xen.h>

/* vcpu_info fields (vcpu_info[0] is at the start of shared_info; checked in lib/traps.c). */
#define VCPU_INFO_UPCALL_PENDING 0
#define VCPU_INFO_UPCALL_MASK    1

        .code64
        .text

/*
 * One stub per vector. The bounce frame starts with rcx and r11: pop them
 * back into their registers, leaving the native-looking [error code,] rip,
 * cs, rflags, rsp, ss. Push an error code of 0 where the CPU has none, so
 * every frame is alike, then the vector.
 */
.macro TRAP_ENTRY vector
        .type trap_entry_\vector, @function
trap_entry_\vector:
        popq %rcx
        popq %r11
        .if ((TRAP_ERROR_CODE_VECTORS >> \vector) & 1) == 0
        pushq $0
        .endif
        pushq $\vector
        jmp trap_common
        .size trap_entry_\vector, . - trap_entry_\vector
        .pushsection .rodata
        .quad trap_entry_\vector
        .popsection
.endm


/* trap_entries[v]: the stub for vector v (lib/traps.c builds the trap table from it). */
        .pushsection .rodata
        .balign 8
        .globl trap_entries
        .type trap_entries, @object
trap_entries:
        .popsection

        .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
        TRAP_ENTRY \v
        .endr

        .pushsection .rodata
        .size trap_entries, . - trap_entries
        .popsection

/*
 * The event upcall (CALLBACKTYPE_event, registered by evtchn_init()). Its
 * bounce frame is an exception's without an error code, and the
 * hypervisor has masked events: make it a struct trap_frame with error
 * code 0 and vector TRAP_EVENT_UPCALL, and take the common path to
 * evtchn_upcall().
 */
        .globl evtchn_upcall_entry
        .type evtchn_upcall_entry, @function
evtchn_upcall_entry:
        popq %rcx
        popq %r11
        pushq $0
        pushq $TRAP_EVENT_UPCALL
        SAVE_REGS
        leaq evtchn_upcall(%rip), %rax
        jmp entry_call
        .size evtchn_upcall_entry, . - evtchn_upcall_entry

/*
 * The syscall callback (CALLBACKTYPE_syscall, registered by user_init()):
 * user mode ran `syscall`. The hypervisor switched to kernel mode and put
 * the frame on the kernel stack like an upcall's: rcx, r11 (the return rip
 * and rflags), rip, cs (RPL 3), rflags, rsp, ss. Make it a struct
 * trap_frame with vector TRAP_SYSCALL for user_syscall().
 */
        .globl user_syscall_entry
        .type user_syscall_entry, @function
user_syscall_entry:
        popq %rcx
        popq %r11
        pushq $0
        pushq $TRAP_SYSCALL
        SAVE_REGS
        leaq user_syscall(%rip), %rax
        jmp entry_call
        .size user_syscall_entry, . - user_syscall_entry


/*
 * Saves the registers below the vector (so rsp is a struct trap_frame),
 * calls trap_dispatch(frame) (or, from entry_call, the function in rax) on
 * a 16-byte aligned stack, and returns the way it answers.
 */
        .type trap_common, @function
trap_common:
        SAVE_REGS
        leaq trap_dispatch(%rip), %rax
entry_call:
        cld                             /* the hypervisor leaves DF as it was; C needs it clear */
        movq %rsp, %rdi
        movq %rsp, %rbx                 /* callee-saved: the frame, across the call */
        andq $-16, %rsp                 /* Xen aligns the bounce frame; do not rely on it */
        call *%rax
        movq %rbx, %rsp
        cmpl $TRAP_RETURN_IRETQ, %eax
        je .Lreturn_iretq

/*
 * (a) The iret hypercall. Everything is back in its register; the stack
 * holds rip, cs, rflags, rsp, ss. Push the flags word (0: not
 * VGCF_in_syscall, so rcx and r11 are restored as well), then rcx, r11 and
 * rax, making struct iret_context {rax, r11, rcx, flags, rip, cs, rflags,
 * rsp, ss} at rsp, and call. The hypervisor resumes the frame, rax taken
 * from the context; the call never returns here.
 */
.Lreturn_hypercall:
        POP_REGS
        addq $16, %rsp                  /* the vector and the error code */
        pushq $0
/* From here on: the stack holds flags, rip, cs, rflags, rsp, ss; rcx, r11 and rax what the frame restores. */
iret_frame:
#if defined(GUEST_HYPERCALL_PAGE)
        /* The hypervisor's iret stub pushes rcx, r11, rax and issues the call itself. */
        jmp hypercall_page + __HYPERVISOR_iret * HYPERCALL_STUB_SIZE
#else
        pushq %rcx
        pushq %r11
        pushq %rax
        movl $__HYPERVISOR_iret, %eax
#if defined(GUEST_HYPERCALL_VMCALL)
        vmcall
#else
        syscall
#endif
        ud2                             /* iret does not return */
#endif

/*
 * (b) A plain iretq, from kernel mode to kernel mode: both run at CPL 3,
 * so the selectors get RPL 3 back (the bounce frame cleared cs's). The
 * event mask saved in cs bits 32-39 goes back to vcpu_info first; if that
 * unmasks events and one is pending already, nothing would deliver it
 * before the next exit, so return through the hypercall instead.
 */
.Lreturn_iretq:
        orb $3, TRAP_FRAME_CS(%rsp)
        orb $3, TRAP_FRAME_SS(%rsp)
        movq HYPERVISOR_shared_info(%rip), %rax
        movzbl TRAP_FRAME_CS + 4(%rsp), %ecx
        movb %cl, VCPU_INFO_UPCALL_MASK(%rax)
        testb %cl, %cl
        jnz 1f
        cmpb $0, VCPU_INFO_UPCALL_PENDING(%rax)
        jne .Lreturn_hypercall
1:      POP_REGS
        addq $16, %rsp                  /* the vector and the error code */
        iretq
        .size trap_common, . - trap_common

/*
 * long user_enter(unsigned long rip, unsigned long rsp): saves the
 * kernel's callee-saved registers and stack pointer, then irets to user
 * mode at rip on rsp (cs FLAT_USER_CS, RPL 3, so the hypervisor switches
 * to the user tables; IF set, so events are enabled there), every other
 * register zero. It returns only through user_leave(status), with status.
 */
        .globl user_enter
        .type user_enter, @function
user_enter:
        PUSH_CALLEE_SAVED
        movq %rsp, user_kernel_rsp(%rip)
        pushq $FLAT_USER_SS
        pushq %rsi
        pushq $(X86_EFLAGS_IF | 2)
        pushq $FLAT_USER_CS
        pushq %rdi
        pushq $0                        /* flags: not VGCF_in_syscall */
        CLEAR_REGS
        jmp iret_frame
        .size user_enter, . - user_enter

/*
 * void user_leave(long status): back to where user_enter() was called,
 * which returns status. Called in kernel mode, on the kernel stack a
 * bounce from user mode left: that stack is abandoned.
 */
        .globl user_leave
        .type user_leave, @function
user_leave:
        movq user_kernel_rsp(%rip), %rsp
        movq %rdi, %rax
        POP_CALLEE_SAVED
        ret
        .size user_leave, . - user_leave

        .bss
        .balign 8
user_kernel_rsp:
        .quad 0

        .section .note.GNU-stack, "", @progbits

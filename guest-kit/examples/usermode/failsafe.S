/*
 * failsafe_probe(cs): an iret hypercall to failsafe_target with code
 * selector cs, which cannot be loaded. The hypervisor gives the frame to
 * the failsafe callback (failsafe_entry), which copies its 11 words (rcx,
 * r11, ds, es, fs, gs, rip, cs, rflags, rsp, ss) to failsafe_frame and
 * returns from failsafe_probe. failsafe_iret_rsp is the rsp the iret
 * frame asked for.
 */
#include <paravane/asm.h>
#include <paravane/hypercall.h>
#include <xen/arch-x86/xen.h>

#if !defined(GUEST_HYPERCALL_PAGE)
#error "usermode is built with the hypercall page (HYPERCALL=page)"
#endif

        .text
        .globl failsafe_probe
        .type failsafe_probe, @function
failsafe_probe:
        PUSH_CALLEE_SAVED
        movq %rsp, failsafe_iret_rsp(%rip)  /* also where failsafe_entry returns from */
        movq %rsp, %rax
        pushq $FLAT_KERNEL_SS
        pushq %rax
        pushq $0x202                    /* IF: events enabled after the return */
        pushq %rdi
        leaq failsafe_target(%rip), %rax
        pushq %rax
        pushq $0                        /* flags */
        jmp hypercall_page + __HYPERVISOR_iret * HYPERCALL_STUB_SIZE
        .globl failsafe_target
failsafe_target:
        ud2                             /* a return the hypervisor should not have made */
        .size failsafe_probe, . - failsafe_probe

        .globl failsafe_entry
        .type failsafe_entry, @function
failsafe_entry:
        movl $11, %ecx
        movq %rsp, %rsi
        leaq failsafe_frame(%rip), %rdi
        cld
        rep movsq
        movq failsafe_iret_rsp(%rip), %rsp
        POP_CALLEE_SAVED
        ret
        .size failsafe_entry, . - failsafe_entry

        .bss
        .balign 8
        .globl failsafe_iret_rsp
failsafe_iret_rsp:
        .quad 0
        .globl failsafe_frame
failsafe_frame:
        .fill 11, 8, 0

        .section .note.GNU-stack, "", @progbits

/*
 * events: the code an upcall interrupts. upcall_probe() loads every
 * register with a pattern (rax 0x0101..., rbx 0x0202..., ..., r15
 * 0x0f0f..., as faults' probes), spins until upcall_probe_flag is set (a
 * handler sets it from an upcall that arrives while the loop runs), then
 * stores every register, rsp and rflags in upcall_probe_out.
 * Inputs: none from outside the guest.
 */

#include <paravane/asm.h>

        .code64
        .text

/* void upcall_probe(void) */
        .globl upcall_probe
        .type upcall_probe, @function
upcall_probe:
        PUSH_CALLEE_SAVED
        movq %rsp, upcall_probe_rsp(%rip)
        movabsq $0x0101010101010101, %rax
        movabsq $0x0202020202020202, %rbx
        movabsq $0x0303030303030303, %rcx
        movabsq $0x0404040404040404, %rdx
        movabsq $0x0505050505050505, %rsi
        movabsq $0x0606060606060606, %rdi
        movabsq $0x0707070707070707, %rbp
        movabsq $0x0808080808080808, %r8
        movabsq $0x0909090909090909, %r9
        movabsq $0x0a0a0a0a0a0a0a0a, %r10
        movabsq $0x0b0b0b0b0b0b0b0b, %r11
        movabsq $0x0c0c0c0c0c0c0c0c, %r12
        movabsq $0x0d0d0d0d0d0d0d0d, %r13
        movabsq $0x0e0e0e0e0e0e0e0e, %r14
        movabsq $0x0f0f0f0f0f0f0f0f, %r15
        .globl upcall_probe_spin
upcall_probe_spin:
        pause
        cmpl $0, upcall_probe_flag(%rip)
        je upcall_probe_spin
        .globl upcall_probe_spin_end
upcall_probe_spin_end:
        movq %rax, upcall_probe_out + 0x00(%rip)
        movq %rbx, upcall_probe_out + 0x08(%rip)
        movq %rcx, upcall_probe_out + 0x10(%rip)
        movq %rdx, upcall_probe_out + 0x18(%rip)
        movq %rsi, upcall_probe_out + 0x20(%rip)
        movq %rdi, upcall_probe_out + 0x28(%rip)
        movq %rbp, upcall_probe_out + 0x30(%rip)
        movq %r8,  upcall_probe_out + 0x38(%rip)
        movq %r9,  upcall_probe_out + 0x40(%rip)
        movq %r10, upcall_probe_out + 0x48(%rip)
        movq %r11, upcall_probe_out + 0x50(%rip)
        movq %r12, upcall_probe_out + 0x58(%rip)
        movq %r13, upcall_probe_out + 0x60(%rip)
        movq %r14, upcall_probe_out + 0x68(%rip)
        movq %r15, upcall_probe_out + 0x70(%rip)
        movq %rsp, upcall_probe_out + 0x78(%rip)
        pushfq
        popq upcall_probe_out + 0x80(%rip)
        POP_CALLEE_SAVED
        ret
        .size upcall_probe, . - upcall_probe

        .bss
        .balign 8
        .globl upcall_probe_out, upcall_probe_rsp, upcall_probe_flag
/* rax, rbx, rcx, rdx, rsi, rdi, rbp, r8-r15, then rsp and rflags. */
upcall_probe_out:
        .skip 17 * 8
upcall_probe_rsp:
        .skip 8
upcall_probe_flag:
        .skip 8

        .section .note.GNU-stack, "", @progbits

/*
 * Assembly helpers for guests and the kit (include from .S files only).
 */
#ifndef __PARAVANE_ASM_H__
#define __PARAVANE_ASM_H__

#ifdef __ASSEMBLY__
/* The System V callee-saved registers, for code that leaves a C caller's frame and comes back to it. */
.macro PUSH_CALLEE_SAVED
        pushq %rbx
        pushq %rbp
        pushq %r12
        pushq %r13
        pushq %r14
        pushq %r15
.endm

/* Undoes PUSH_CALLEE_SAVED. */
.macro POP_CALLEE_SAVED
        popq %r15
        popq %r14
        popq %r13
        popq %r12
        popq %rbp
        popq %rbx
.endm

/* Pushes the general registers, rax first: with the vector and error code above, a struct trap_frame (<paravane/traps.h>). */
.macro SAVE_REGS
        pushq %rax
        pushq %rbx
        pushq %rcx
        pushq %rdx
        pushq %rsi
        pushq %rdi
        pushq %rbp
        pushq %r8
        pushq %r9
        pushq %r10
        pushq %r11
        pushq %r12
        pushq %r13
        pushq %r14
        pushq %r15
.endm

/* Pops what SAVE_REGS pushed, back into the registers: rsp is left at the vector. */
.macro POP_REGS
        popq %r15
        popq %r14
        popq %r13
        popq %r12
        popq %r11
        popq %r10
        popq %r9
        popq %r8
        popq %rbp
        popq %rdi
        popq %rsi
        popq %rdx
        popq %rcx
        popq %rbx
        popq %rax
.endm

/* Zeroes every general register but rsp: what a kernel shows a user program it enters. */
.macro CLEAR_REGS
        xorl %eax, %eax
        xorl %ebx, %ebx
        xorl %ecx, %ecx
        xorl %edx, %edx
        xorl %esi, %esi
        xorl %edi, %edi
        xorl %ebp, %ebp
        xorl %r8d, %r8d
        xorl %r9d, %r9d
        xorl %r10d, %r10d
        xorl %r11d, %r11d
        xorl %r12d, %r12d
        xorl %r13d, %r13d
        xorl %r14d, %r14d
        xorl %r15d, %r15d
.endm
#endif

#endif /* __PARAVANE_ASM_H__ */

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
#endif

#endif /* __PARAVANE_ASM_H__ */

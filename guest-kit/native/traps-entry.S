/*
 * The plain kernel's exception entry: an IDT stub per vector 0-31 that
 * completes the CPU's frame into a struct trap_frame (<paravane/traps.h>:
 * an error code of 0 where the CPU pushes none, the vector, then the
 * general registers), calls native_trap_dispatch with it, restores the
 * registers as the handler left them and returns with iretq.
 */
#include <paravane/asm.h>
#include <paravane/traps.h>

        .text
        .macro STUB vector
        .balign 16
trap_stub_\vector:
        .if ((TRAP_ERROR_CODE_VECTORS >> \vector) & 1) == 0
        pushq $0
        .endif
        pushq $\vector
        jmp trap_common
        .endm

        .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
        STUB \v
        .endr

trap_common:
        SAVE_REGS
        cld
        movq %rsp, %rdi                 /* the frame; 16-byte aligned (the CPU aligned it, 0xb0 bytes pushed) */
        call native_trap_dispatch
        POP_REGS
        addq $16, %rsp                  /* vector, error code */
        iretq

/*
 * IRQ 0 (the PIT's counter 0, at vector 32 after the PIC is remapped):
 * the caller-saved registers around native_irq0 (which sends the PIC its
 * EOI), then iretq. The CPU aligned rsp to 16 and pushed 40 bytes; the 9
 * pushes here make 112, so the call is aligned.
 */
        .globl irq0_entry
        .balign 16
irq0_entry:
        pushq %rax
        pushq %rcx
        pushq %rdx
        pushq %rsi
        pushq %rdi
        pushq %r8
        pushq %r9
        pushq %r10
        pushq %r11
        cld
        call native_irq0
        popq %r11
        popq %r10
        popq %r9
        popq %r8
        popq %rdi
        popq %rsi
        popq %rdx
        popq %rcx
        popq %rax
        iretq

        .section .rodata
        .balign 8
        .globl trap_entries
trap_entries:
        .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
        .quad trap_stub_\v
        .endr

        .section .note.GNU-stack, "", @progbits

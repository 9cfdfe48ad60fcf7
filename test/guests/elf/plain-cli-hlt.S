/* A plain kernel that halts with interrupts off: it can never run again, so fv-trap ends it with the reason. */
        .text
        .globl _start
_start:
        cli
        hlt
        jmp _start

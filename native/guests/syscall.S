/* Hypercall transport probe: where does syscall at CPL 3 land? The host sets
 * LSTAR to `entry` (CODE_GPA + 0x100); entry reports its CS on PORT_A, so the
 * host learns the privilege level syscall entered. */
#include "layout.h"
        .code64
        .globl _start
_start:
        syscall
        DONE
        .org 0x100
entry:
        movl %cs, %eax
        outl %eax, $PORT_A
        DONE

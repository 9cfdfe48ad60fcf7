/* Spins at CPL 3 forever, counting in rax: only a deadline or a kick stops it. */
#include "layout.h"
        .code64
        .globl _start
_start:
1:      incq %rax
        jmp 1b

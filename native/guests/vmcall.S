/* Hypercall transport probe: does vmcall at CPL 3 exit, fault or fall through? */
#include "layout.h"
        .code64
        .globl _start
_start:
        xorl %eax, %eax
        vmcall
        DONE

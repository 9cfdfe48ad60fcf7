/* Can guest code at CPL 3 use the start of the upper half (L4 slot 256,
 * where Xen maps the M2P)? The host maps slot 256 like slot 0; this reads
 * the guest's own first code bytes through it and reports them on PORT_A
 * (a #PF shows up on PORT_FAULT instead). */
#include "layout.h"
        .code64
        .globl _start
_start:
        movabs $0xffff800000000000 + CODE_GPA, %rbx
        movl (%rbx), %eax
        outl %eax, $PORT_A
        DONE

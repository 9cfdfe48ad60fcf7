/* Translation probe: reads the word at 0x100000 and reports it on PORT_A,
 * forever. Tests change the page-table entry for 0x100000 from the host and
 * check which frame the guest then reads. */
#include "layout.h"
        .code64
        .globl _start
_start:
1:      movl 0x100000, %eax
        outl %eax, $PORT_A
        jmp 1b

/* Port I/O: an out of 4 bytes, an in of 1 byte, then an out of 2 bytes of
 * what the host supplied to the in. */
#include "layout.h"
        .code64
        .globl _start
_start:
        movl $0xabcd1234, %eax
        outl %eax, $PORT_A
        inb $PORT_B, %al
        movzbl %al, %eax
        addl $0x100, %eax
        outw %ax, $PORT_C
        DONE

/* MMIO: a write and a read where no memory is, then a write to read-only
 * memory and a read of the same location. */
#include "layout.h"
        .code64
        .globl _start
_start:
        movl $0xdeadbeef, MMIO_GPA
        movq MMIO_GPA + 8, %rax
        outl %eax, $PORT_A
        movl $0x11223344, RO_GPA + 0x10
        movl RO_GPA + 0x10, %eax
        outl %eax, $PORT_B
        DONE

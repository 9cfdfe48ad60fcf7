/* Exception stubs, one per vector, 16 bytes apart: at CPL 0 (where port
 * access needs no permission) report the vector number on PORT_FAULT. */
#include "layout.h"
        .code64
        .text
        .globl _start
_start:
        vector = 0
        .rept 256
        .balign 16
        movb $vector, %al
        outb %al, $PORT_FAULT
        hlt
        jmp . - 1
        vector = vector + 1
        .endr

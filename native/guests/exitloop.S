/* The exit benchmark's guest: an out to an open port, forever. */
#include "layout.h"
        .code64
        .globl _start
_start:
1:      outb %al, $PORT_A
        jmp 1b

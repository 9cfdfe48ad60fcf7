/* Registers: rax = rax + rbx, rcx = ~rcx, then report. */
#include "layout.h"
        .code64
        .globl _start
_start:
        addq %rbx, %rax
        notq %rcx
        outb %al, $PORT_A
        jmp _start

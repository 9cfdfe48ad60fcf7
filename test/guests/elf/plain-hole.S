/* A plain kernel that reads the monitor's address range (Xen's reserved L4 slots): fv-trap must crash it alone, with the reason. */
#include "plain.h"
        .text
        .globl _start
_start:
        movw $0x3f8, %dx
        movb $'h', %al
        outb %al, %dx
        movabsq $0xffff808000000000, %rbx
        movq (%rbx), %rax
        POWEROFF

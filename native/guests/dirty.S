/* Dirty logging: phase 1 writes pages 0, 3, 17 and 511 of the dirty slot;
 * phase 2 (the next run) writes page 5 and reads page 6. */
#include "layout.h"
        .code64
        .globl _start
_start:
        movq $1, DIRTY_GPA + 0 * 4096
        movq $1, DIRTY_GPA + 3 * 4096
        movq $1, DIRTY_GPA + 17 * 4096 + 8
        movb $1, DIRTY_GPA + 511 * 4096 + 4095
        outb %al, $PORT_A
        movq $2, DIRTY_GPA + 5 * 4096
        movq DIRTY_GPA + 6 * 4096, %rbx
        DONE

/* Executes ud2: the #UD goes to the CPL-0 stub, which reports vector 6. */
#include "layout.h"
        .code64
        .globl _start
_start:
        ud2

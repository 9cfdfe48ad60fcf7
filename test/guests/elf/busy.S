/* A domain that only computes: it spins forever, never making a hypercall
 * (the scheduler tests and benchmarks share the CPU between such domains). */
#include "guest.h"

TEST_GUEST_NOTES

        .text
        .code64
        .globl _start
_start:
1:      inc %rax
        jmp 1b

        HYPERCALL_PAGE

/* Null-hypercall benchmark guest (`npm run bench -- hypercall`). rbx holds
 * the number of calls per entry path (the bench sets it before the first
 * run; 0 means 20000). For each path -- hypercall page, vmcall, syscall --
 * it makes an eighth as many warm-up calls (plus one), then times rbx calls of
 * pvbench_op(PVBENCHOP_nop) with rdtsc. It writes the three TSC deltas and
 * the count to the console as four raw 64-bit words, then powers off. */
#include "guest.h"
#include <paravane/pvbench.h>

TEST_GUEST_NOTES

.macro NOP path
        mov $PVBENCHOP_nop, %edi
        HCALL \path, __HYPERVISOR_pvbench_op
.endm


        .text
        .code64
        .globl _start
_start:
        test %rbx, %rbx
        jnz 1f
        mov $20000, %ebx
1:      mov %rbx, result + 24(%rip)
        TIMED %rbx, result, NOP page
        TIMED %rbx, result+8, NOP vmcall
        TIMED %rbx, result+16, NOP syscall
        CONSOLE_WRITE result, 32
        SHUTDOWN SHUTDOWN_poweroff, reason

        HYPERCALL_PAGE

        .data
        .balign 8
result: .fill 4, 8, 0
reason: .long 0

/* An exception whose bounce frame cannot be written: a #UD handler is
 * registered, then the stack pointer is moved to an unmapped address and
 * ud2 executed. Xen crashes such a domain; so must paravane. */
#include "guest.h"
#include <xen/xen.h>

TEST_GUEST_NOTES

        .text
        .code64
        .globl _start
_start:
        lea traps(%rip), %rdi
        HCALL page, __HYPERVISOR_set_trap_table
        test %rax, %rax
        jnz 1f
        movabs $0x0000400000000000, %rsp
        ud2
1:      hlt

handler:
        jmp handler

        HYPERCALL_PAGE

        .data
        .balign 16
traps:  .byte 6, 0
        .word FLAT_KERNEL_CS
        .long 0
        .quad handler
        .quad 0, 0

/* update_va_mapping on KVM: page A is read (so the engine has cached its
 * translation), unmapped, then mapped to page B's frame -- an addition,
 * which needs no flush -- and read again. Reports both words read through
 * A and the three results, then powers off. */
#include "guest.h"
#include <xen/xen.h>

TEST_GUEST_NOTES

        .text
        .code64
        .globl _start
_start:
        FIRST_L1 %rbx
        ENTRY_VA page_b, %rbx, %rdi
        mov (%rdi), %r13                         /* B's entry */
        mov page_a(%rip), %rax                   /* use A's translation */
        mov %rax, result(%rip)
        lea page_a(%rip), %rdi                   /* unmap A */
        xor %esi, %esi
        xor %edx, %edx
        HCALL page, __HYPERVISOR_update_va_mapping
        mov %rax, result + 16(%rip)
        lea page_a(%rip), %rdi                   /* map A to B's frame */
        mov %r13, %rsi
        mov $UVMF_INVLPG, %edx
        HCALL page, __HYPERVISOR_update_va_mapping
        mov %rax, result + 24(%rip)
        mov page_a(%rip), %rax
        mov %rax, result + 8(%rip)
        CONSOLE_WRITE result, 32
        SHUTDOWN SHUTDOWN_poweroff, reason

        HYPERCALL_PAGE

        .data
        .balign 4096
page_a: .quad 0xaaaaaaaa
        .balign 4096
page_b: .quad 0xbbbbbbbb
        .balign 4096
result: .fill 4, 8, 0
reason: .long 0

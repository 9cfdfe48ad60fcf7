/* Writable page tables: the guest writes its own L1 entries through their
 * read-only mapping, as PV kernels do; paravane emulates each store as a
 * validated update (then asks for an INVLPG, as Xen's guests must before
 * they can count on the new mapping). The first L1 of the bootstrap tables maps 0-2 MiB and
 * is the fourth table frame (L4, L3, L2, L1 at pt_base). Steps:
 *   1. mov: remap page A to page B's frame; A then reads B's marker;
 *   2. lock cmpxchg: remap A back to its own frame;
 *   3. 4-byte mov to the entry's low half: remap A to B again;
 * and reports the three words read through A, then powers off. */
#include "guest.h"
#include <xen/xen.h>

TEST_GUEST_NOTES

        .text
        .code64
        .globl _start
_start:
        FIRST_L1 %rbx
        ENTRY_VA page_a, %rbx, %rdi              /* VA of A's entry */
        ENTRY_VA page_b, %rbx, %rsi              /* VA of B's entry */
        mov (%rdi), %r12                         /* A's entry */
        mov (%rsi), %r13                         /* B's entry */
        /* 1. mov %reg, (mem) */
        mov %r13, (%rdi)
        push %rdi
        INVLPG page_a
        pop %rdi
        mov page_a(%rip), %rax
        mov %rax, result(%rip)
        /* 2. lock cmpxchg: expected old value in rax */
        mov %r13, %rax
        lock cmpxchg %r12, (%rdi)
        jne 9f
        push %rdi
        INVLPG page_a
        pop %rdi
        mov page_a(%rip), %rax
        mov %rax, result + 8(%rip)
        /* 3. 4-byte store to the low half (the frame number's low bits and flags) */
        mov %r13d, (%rdi)
        INVLPG page_a
        mov page_a(%rip), %rax
        mov %rax, result + 16(%rip)
        CONSOLE_WRITE result, 24
        SHUTDOWN SHUTDOWN_poweroff, reason
9:      ud2

        HYPERCALL_PAGE

        .data
        .balign 4096
page_a: .quad 0xaaaaaaaa
        .balign 4096
page_b: .quad 0xbbbbbbbb
        .balign 4096
result: .fill 3, 8, 0
reason: .long 0

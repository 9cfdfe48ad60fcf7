/* A hostile use of writable page tables: the guest stores an entry that
 * would map its own L1 writable. The store must be refused (the fault then
 * stands, and with no trap handler the domain is destroyed with the
 * reason); nothing may change. */
#include "guest.h"

TEST_GUEST_NOTES

        .text
        .code64
        .globl _start
_start:
        FIRST_L1 %rbx
        mov %rbx, %rax
        L1_ENTRY_VA %rbx, %rdi                   /* VA of the L1's own entry */
        mov (%rdi), %rax
        or $2, %rax                              /* make it writable */
        mov %rax, (%rdi)
        SHUTDOWN SHUTDOWN_poweroff, reason       /* not reached */

        HYPERCALL_PAGE

        .data
reason: .long 0

/* A hostile use of writable page tables with a read-modify-write form: the
 * guest sets the RW bit of the entry that maps its own L1 with LOCK ORB, a
 * 1-byte store into the entry. The merged entry must be refused as an
 * 8-byte store of it would be (the fault then stands, and with no trap
 * handler the domain is destroyed with the reason); nothing may change. */
#include "guest.h"

TEST_GUEST_NOTES

        .text
        .code64
        .globl _start
_start:
        FIRST_L1 %rbx
        mov %rbx, %rax
        L1_ENTRY_VA %rbx, %rdi                   /* VA of the L1's own entry */
        lock orb $2, (%rdi)                      /* make it writable */
        SHUTDOWN SHUTDOWN_poweroff, reason       /* not reached */

        HYPERCALL_PAGE

        .data
reason: .long 0

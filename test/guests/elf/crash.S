/* Prints a line, then executes ud2 with no trap handler registered: the
 * hypervisor must destroy this domain alone, with the reason. */
#include "guest.h"

TEST_GUEST_NOTES

        .text
        .code64
        .globl _start
_start:
        CONSOLE_WRITE msg, (msgend - msg)
        .globl fault
fault:  ud2

        HYPERCALL_PAGE

        .data
msg:    .ascii "about to fault\n"
msgend:

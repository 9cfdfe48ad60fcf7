/* Shuts down with SHUTDOWN_reboot: `paravane run` reports the reason and
 * exits 1, since it does not restart domains. */
#include "guest.h"

TEST_GUEST_NOTES

        .text
        .code64
        .globl _start
_start:
        SHUTDOWN SHUTDOWN_reboot, reason

        HYPERCALL_PAGE

        .data
reason: .long 0

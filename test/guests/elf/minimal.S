/* The smallest well-formed PV kernel image for the ELF loader tests: Xen's
 * ELF notes (type numbers from the generated <xen/elfnote.h>), a hypercall
 * page, and an entry point. It is parsed, not run. */
#include "guest.h"

TEST_GUEST_NOTES
ELFNOTE(XEN_ELFNOTE_FEATURES, .asciz, "!writable_page_tables|pae_pgdir_above_4gb")

        .text
        .code64
        .globl _start
_start:
        jmp _start

        HYPERCALL_PAGE

        .data
value:  .quad 42
        .bss
        .fill 8192, 1, 0

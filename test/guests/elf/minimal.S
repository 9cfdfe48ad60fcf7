/* The smallest well-formed PV kernel image for the ELF loader tests: Xen's
 * ELF notes (type numbers from the generated <xen/elfnote.h>), a hypercall
 * page, and an entry point. It is parsed, not run. */
#include <xen/elfnote.h>

#define ELFNOTE(type, directive, value)          \
        .pushsection .note.Xen, "a", @note;      \
        .balign 4;                               \
        .long 2f - 1f;                           \
        .long 4f - 3f;                           \
        .long type;                              \
1:      .asciz "Xen";                            \
2:      .balign 4;                               \
3:      directive value;                         \
4:      .balign 4;                               \
        .popsection

ELFNOTE(XEN_ELFNOTE_GUEST_OS, .asciz, "paravane-test")
ELFNOTE(XEN_ELFNOTE_XEN_VERSION, .asciz, "xen-3.0")
ELFNOTE(XEN_ELFNOTE_LOADER, .asciz, "generic")
ELFNOTE(XEN_ELFNOTE_HYPERCALL_PAGE, .quad, hypercall_page)
ELFNOTE(XEN_ELFNOTE_FEATURES, .asciz, "!writable_page_tables|pae_pgdir_above_4gb")

        .text
        .code64
        .globl _start
_start:
        jmp _start

        .balign 4096
        .globl hypercall_page
hypercall_page:
        .fill 4096, 1, 0

        .data
value:  .quad 42
        .bss
        .fill 8192, 1, 0

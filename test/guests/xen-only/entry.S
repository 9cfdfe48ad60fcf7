/* A PV kernel's entry and notes, written against Xen's own public headers
 * (Debian's libxen-dev, /usr/include/xen), not paravane's guest kit: the
 * Xen ELF notes, the hypercall page and _start. Linked low (VIRT_BASE 0,
 * image at 2 MiB) by xen-only.lds. */
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

ELFNOTE(XEN_ELFNOTE_GUEST_OS,       .asciz, "xen-only-test")
ELFNOTE(XEN_ELFNOTE_XEN_VERSION,    .asciz, "xen-3.0")
ELFNOTE(XEN_ELFNOTE_LOADER,         .asciz, "generic")
ELFNOTE(XEN_ELFNOTE_VIRT_BASE,      .quad,  0)
ELFNOTE(XEN_ELFNOTE_PADDR_OFFSET,   .quad,  0)
ELFNOTE(XEN_ELFNOTE_ENTRY,          .quad,  _start)
ELFNOTE(XEN_ELFNOTE_HYPERCALL_PAGE, .quad,  hypercall_page)
ELFNOTE(XEN_ELFNOTE_FEATURES,       .asciz, "!writable_page_tables")

        .code64
        .section .text.entry, "ax", @progbits
        .globl _start
_start:
        /* rsi = start_info; rsp = top of the builder's one-page boot stack,
         * which is 16-byte aligned and is the only stack this guest uses. */
        cld
        leaq __bss_start(%rip), %rdi
        leaq __bss_end(%rip), %rcx
        subq %rdi, %rcx
        xorl %eax, %eax
        rep stosb
        movq %rsi, %rdi
        call xen_only_main
        ud2

        .section .text.hypercall_page, "ax", @progbits
        .balign 4096
        .globl hypercall_page
hypercall_page:
        .fill 4096, 1, 0xcc

        .section .note.GNU-stack, "", @progbits

/*
 * The kit's boot code: Xen's ELF notes, the entry point and the hypercall
 * page. Linked first by guest.lds, so _start is at VIRT_BASE (pfn 0) and
 * hypercall_page at VIRT_BASE + 0x1000 (pfn 1).
 *
 * Entry state (Xen's x86-64 PV protocol): CPL 3, cs 0xe033, ss 0xe02b,
 * rsi = virtual address of start_info, rsp = top of a one-page boot stack,
 * event delivery masked. Nothing else may be assumed.
 */
#include <xen/elfnote.h>
#include <paravane/elfnote-asm.h>
#include <paravane/pte.h>

/* Numbers that are addresses come from the linker: __virt_base is set in
 * guest.lds, so the note and the link address cannot disagree. */
ELFNOTE(XEN_ELFNOTE_GUEST_OS,       .asciz, "paravane-guest-kit")
ELFNOTE(XEN_ELFNOTE_GUEST_VERSION,  .asciz, "0.1")
ELFNOTE(XEN_ELFNOTE_XEN_VERSION,    .asciz, "xen-3.0")
ELFNOTE(XEN_ELFNOTE_LOADER,         .asciz, "generic")
ELFNOTE(XEN_ELFNOTE_VIRT_BASE,      .quad,  __virt_base)
ELFNOTE(XEN_ELFNOTE_PADDR_OFFSET,   .quad,  0)
ELFNOTE(XEN_ELFNOTE_ENTRY,          .quad,  _start)
ELFNOTE(XEN_ELFNOTE_HYPERCALL_PAGE, .quad,  hypercall_page)
ELFNOTE(XEN_ELFNOTE_FEATURES,       .asciz, "!writable_page_tables")

#define STACK_SIZE (4 * PAGE_SIZE)

        .code64
        .section .text.entry, "ax", @progbits
        .globl _start
        .type _start, @function
_start:
        cld
        /* Clear .bss; rep stosb uses rdi, rcx and al, so rsi survives. */
        leaq __bss_start(%rip), %rdi
        leaq __bss_end(%rip), %rcx
        subq %rdi, %rcx
        xorl %eax, %eax
        rep stosb
        /* Leave the builder's boot page for our own stack, then C. */
        leaq boot_stack_top(%rip), %rsp
        xorl %ebp, %ebp
        movq %rsi, %rdi
        call guest_start
        ud2                             /* guest_start does not return */
        .size _start, . - _start

        /* Filled by the hypervisor with 128 stubs of 32 bytes; int3 until then. */
        .section .text.hypercall_page, "ax", @progbits
        .balign PAGE_SIZE
        .globl hypercall_page
        .type hypercall_page, @object
hypercall_page:
        .fill PAGE_SIZE, 1, 0xcc
        .size hypercall_page, PAGE_SIZE

        .section .bss.boot_stack, "aw", @nobits
        .balign 16
boot_stack:
        .skip STACK_SIZE
boot_stack_top:

        .section .note.GNU-stack, "", @progbits

/* Shuts down with SHUTDOWN_reboot: `paravane run` reports the reason and
 * exits 1, since it does not restart domains. */
#include <xen/elfnote.h>
#include <xen/xen.h>
#include <xen/sched.h>

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

        .text
        .code64
        .globl _start
_start:
        movl $SHUTDOWN_reboot, reason(%rip)
        mov $SCHEDOP_shutdown, %edi
        lea reason(%rip), %rsi
        call hypercall_page + __HYPERVISOR_sched_op * 32
        ud2

        .balign 4096
        .globl hypercall_page
hypercall_page:
        .fill 4096, 1, 0

        .data
reason: .long 0

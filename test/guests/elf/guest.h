/* Shared by the assembly test guests: Xen's notes, the hypercall page, and
 * hypercall and shutdown macros. Include with -D__ASSEMBLY__. */
#ifndef TEST_GUEST_H
#define TEST_GUEST_H
#include <xen/elfnote.h>
#include <xen/xen.h>
#include <xen/sched.h>
#include <paravane/elfnote-asm.h>

/* The notes every test guest carries (GUEST_OS "paravane-test"). */
#define TEST_GUEST_NOTES                                                 \
        ELFNOTE(XEN_ELFNOTE_GUEST_OS, .asciz, "paravane-test");          \
        ELFNOTE(XEN_ELFNOTE_XEN_VERSION, .asciz, "xen-3.0");             \
        ELFNOTE(XEN_ELFNOTE_LOADER, .asciz, "generic");                  \
        ELFNOTE(XEN_ELFNOTE_HYPERCALL_PAGE, .quad, hypercall_page)

/* The page the hypervisor fills with stubs: put it in .text, page aligned. */
#define HYPERCALL_PAGE                                                   \
        .balign 4096;                                                    \
        .globl hypercall_page;                                           \
hypercall_page:                                                          \
        .fill 4096, 1, 0

/* Issue hypercall \nr through \path (page, vmcall or syscall); the
 * arguments are already in rdi, rsi, rdx, r10, r8. */
.macro HCALL path, nr
        mov $\nr, %eax
        .ifc \path,page
        call hypercall_page + \nr * 32
        .endif
        .ifc \path,vmcall
        vmcall
        .endif
        .ifc \path,syscall
        syscall
        .endif
.endm

/* console_io(CONSOLEIO_write, \len, \label) through the page. */
.macro CONSOLE_WRITE label, len
        mov $CONSOLEIO_write, %edi
        mov $\len, %esi
        lea \label(%rip), %rdx
        call hypercall_page + __HYPERVISOR_console_io * 32
.endm

/* sched_op(SCHEDOP_shutdown, &{reason}) through the page; \slot is a
 * 4-byte scratch variable in .data. Does not return. */
.macro SHUTDOWN reason, slot
        movl $\reason, \slot(%rip)
        mov $SCHEDOP_shutdown, %edi
        lea \slot(%rip), %rsi
        call hypercall_page + __HYPERVISOR_sched_op * 32
        ud2
.endm
/* mmuext_op(MMUEXT_INVLPG_LOCAL of \label's page) through the page, with
 * the op built on the stack; as Xen, an update is seen for sure only after
 * the guest asks for the flush. Clobbers rax, rdi, rsi, rdx, r10, rcx, r11. */
.macro INVLPG label
        sub $32, %rsp
        movl $MMUEXT_INVLPG_LOCAL, (%rsp)
        lea \label(%rip), %rax
        mov %rax, 8(%rsp)
        movq $0, 16(%rsp)
        mov %rsp, %rdi
        mov $1, %esi
        xor %edx, %edx
        mov $0x7ff0, %r10d                      /* DOMID_SELF */
        call hypercall_page + __HYPERVISOR_mmuext_op * 32
        add $32, %rsp
.endm

/* start_info.pt_base: the VA of the bootstrap L4. */
#define START_INFO_PT_BASE 88

/* \l1 = the VA of the first bootstrap L1 (it maps the image at 1 MiB), from
 * start_info in rsi: the tables are the L4, an L3, an L2, then the L1s. */
.macro FIRST_L1 l1
        mov START_INFO_PT_BASE(%rsi), \l1
        add $3 * 4096, \l1
.endm

/* \dst = the VA of the entry in the L1 at \l1 that maps the address in rax (clobbers rax). */
.macro L1_ENTRY_VA l1, dst
        shr $12, %rax
        and $511, %rax
        lea (\l1, %rax, 8), \dst
.endm

/* \dst = the VA of the entry that maps \label's page in the L1 at \l1 (clobbers rax). */
.macro ENTRY_VA label, l1, dst
        lea \label(%rip), %rax
        L1_ENTRY_VA \l1, \dst
.endm
/* Benchmark loop: runs `\op` an eighth of \count times (plus one) as a
 * warm-up, then \count times between two rdtsc, and stores the TSC delta
 * at \slot. \count is a register the op leaves alone; uses r13, r14, rax
 * and rdx. */
.macro TIMED count, slot, op:vararg
        mov \count, %r13
        shr $3, %r13
        inc %r13
1:      \op
        dec %r13
        jnz 1b
        rdtsc
        shl $32, %rdx
        or %rax, %rdx
        mov %rdx, %r14
        mov \count, %r13
2:      \op
        dec %r13
        jnz 2b
        rdtsc
        shl $32, %rdx
        or %rax, %rdx
        sub %r14, %rdx
        mov %rdx, \slot(%rip)
.endm

/* A trap table entry (struct trap_info) for set_trap_table: vector, flags
 * (the DPL in bits 0-1), Xen's flat kernel code selector, the handler. */
.macro TRAP vector, flags, handler
        .byte \vector, \flags
        .word FLAT_KERNEL_CS
        .long 0
        .quad \handler
.endm

/* A handler's return, once it has popped rcx and r11 off Xen's bounce
 * frame: through the iret hypercall (flags 0: not VGCF_in_syscall) ... */
.macro IRET_HYPERCALL
        pushq $0
        jmp hypercall_page + __HYPERVISOR_iret * 32
.endm

/* ... or with a plain iretq to kernel mode, RPL 3 put back into cs and ss
 * (as Mini-OS returns). */
.macro IRETQ_KERNEL
        orq $3, 8(%rsp)
        orq $3, 32(%rsp)
        iretq
.endm

#endif

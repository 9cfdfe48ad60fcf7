/* Exception delivery as Xen does it (set_trap_table, bounce frames, iret).
 * Registers handlers for #DE, #BP (DPL 3), #UD and #PF, then:
 *   1. ud2 with rcx, r11 set: the handler records the frame's rip and cs,
 *      skips the ud2 and returns through the iret hypercall;
 *   2. int3: the handler records rip (after the int3) and returns with a
 *      plain iretq (RPL 3 OR-ed into cs and ss, as Mini-OS does);
 *   3. div by zero: the handler skips the div, sets rax and returns through
 *      the iret hypercall, which restores rax from the frame;
 *   4. a read of an unmapped address: the handler records the error code
 *      and rip, skips the load and returns through the iret hypercall.
 * It writes pairs of words (seen, expected) to the console, then powers off. */
#include "guest.h"
#include <xen/xen.h>

TEST_GUEST_NOTES

#define UNMAPPED 0x0000400000000000     /* canonical, never mapped */

        .text
        .code64
        .globl _start
_start:
        lea stack_top(%rip), %rsp
        lea traps(%rip), %rdi
        HCALL page, __HYPERVISOR_set_trap_table
        test %rax, %rax
        jnz 9f
        /* 1. #UD */
        mov $0x1111, %rcx
        mov $0x2222, %r11
ud_at:  ud2
        mov %rcx, seen_rcx(%rip)
        mov %r11, seen_r11(%rip)
        /* 2. #BP */
        int3
bp_after:
        /* 3. #DE */
        xor %edx, %edx
        mov $7, %eax
        xor %ecx, %ecx
de_at:  div %rcx
        mov %rax, seen_rax(%rip)
        /* 4. #PF */
        movabs $UNMAPPED, %rax
pf_at:  mov (%rax), %rbx
        /* Expected values. */
        lea ud_at(%rip), %rax
        mov %rax, want_ud_rip(%rip)
        lea bp_after(%rip), %rax
        mov %rax, want_bp_rip(%rip)
        lea de_at(%rip), %rax
        mov %rax, want_de_rip(%rip)
        lea pf_at(%rip), %rax
        mov %rax, want_pf_rip(%rip)
        CONSOLE_WRITE result, (result_end-result)
        SHUTDOWN SHUTDOWN_poweroff, reason
9:      ud2

/* Each handler starts on Xen's bounce frame: rcx, r11, [error], rip, cs, rflags, rsp, ss. */
ud_handler:
        pop %rcx
        pop %r11
        mov (%rsp), %rax
        mov %rax, seen_ud_rip(%rip)
        mov 8(%rsp), %rax
        mov %rax, seen_ud_cs(%rip)
        addq $2, (%rsp)                 /* past the ud2 */
        IRET_HYPERCALL

bp_handler:
        pop %rcx
        pop %r11
        push %rax
        mov 8(%rsp), %rax
        mov %rax, seen_bp_rip(%rip)
        pop %rax
        IRETQ_KERNEL

de_handler:
        pop %rcx
        pop %r11
        mov (%rsp), %rax
        mov %rax, seen_de_rip(%rip)
        addq $3, (%rsp)                 /* past div %rcx */
        mov $0x1234, %eax               /* the iret stub pushes rax: the interrupted code gets it */
        IRET_HYPERCALL

pf_handler:
        pop %rcx
        pop %r11
        pop %rax                        /* the error code */
        mov %rax, seen_pf_err(%rip)
        mov (%rsp), %rax
        mov %rax, seen_pf_rip(%rip)
        addq $3, (%rsp)                 /* past mov (%rax),%rbx */
        IRET_HYPERCALL

        HYPERCALL_PAGE

        .data
        .balign 16
traps:  TRAP 0, 0, de_handler
        TRAP 3, 3, bp_handler
        TRAP 6, 0, ud_handler
        TRAP 14, 0, pf_handler
        .quad 0, 0
result:
seen_ud_rip:    .quad 0
want_ud_rip:    .quad 0
seen_ud_cs:     .quad 0
                .quad FLAT_KERNEL_CS64 & ~3
seen_rcx:       .quad 0
                .quad 0x1111
seen_r11:       .quad 0
                .quad 0x2222
seen_bp_rip:    .quad 0
want_bp_rip:    .quad 0
seen_de_rip:    .quad 0
want_de_rip:    .quad 0
seen_rax:       .quad 0
                .quad 0x1234
seen_pf_err:    .quad 0
                .quad 0                 /* read, not present, kernel mode: no bits */
seen_pf_rip:    .quad 0
want_pf_rip:    .quad 0
result_end:
reason: .long 0
        .bss
        .balign 16
        .fill 4096, 1, 0
stack_top:

/* The timer advance keeps the guest's state. Binds VIRQ_TIMER, then polls
 * its port with every register and the arithmetic flags and DF set to known
 * values. No event callback is registered, so the poll returns straight to
 * the guest when Xen's default periodic timer (10 ms from boot) raises the
 * VIRQ; the hypervisor ends that sleep through the timer-advance wait stub.
 * After the poll: rax must be 0 and every other register and flag as set.
 * Writes "ok" or "FAIL" to the console, then powers off. */
#include "guest.h"
#include <xen/event_channel.h>

TEST_GUEST_NOTES

/* CF PF AF ZF SF OF and DF: what the poll must leave as it found. */
#define FLAGS_SET   0xcd5
#define PATTERN(n)  (0x5a5a000000000000 + (n))

/* \op applied to every register the poll must keep (rax is its result;
 * rdi, rsi carry its arguments), each with its own pattern. */
.macro EACH_REG op
        \op rbx, 1
        \op rcx, 2
        \op rdx, 3
        \op rbp, 4
        \op r8, 5
        \op r9, 6
        \op r10, 7
        \op r11, 8
        \op r12, 9
        \op r13, 10
        \op r14, 11
        \op r15, 12
.endm
.macro SET_REG reg, n
        movabs $PATTERN(\n), %\reg
.endm
.macro CHECK_REG reg, n
        movabs $PATTERN(\n), %rax
        cmp %rax, %\reg
        jne fail
.endm

        .text
        .code64
        .globl _start
_start:
        lea stack_top(%rip), %rsp
        movl $VIRQ_TIMER, bind(%rip)
        movl $0, bind+4(%rip)
        mov $EVTCHNOP_bind_virq, %edi
        lea bind(%rip), %rsi
        HCALL page, __HYPERVISOR_event_channel_op
        test %rax, %rax
        jnz fail
        mov bind+8(%rip), %eax
        mov %eax, port(%rip)
        lea port(%rip), %rax
        mov %rax, poll(%rip)
        movl $1, poll+8(%rip)
        movq $0, poll+16(%rip)

        mov $SCHEDOP_poll, %edi
        lea poll(%rip), %rsi
        EACH_REG SET_REG
        push $(FLAGS_SET | 2)
        popfq
        mov $__HYPERVISOR_sched_op, %eax
        call hypercall_page + __HYPERVISOR_sched_op * 32
        /* mov changes no flag: keep rax, then read the flags. */
        mov %rax, seen_rax(%rip)
        pushfq
        pop %rax
        cld
        and $FLAGS_SET, %rax
        cmp $FLAGS_SET, %rax
        jne fail
        cmpq $0, seen_rax(%rip)
        jne fail
        EACH_REG CHECK_REG
        CONSOLE_WRITE ok, 3
        SHUTDOWN SHUTDOWN_poweroff, reason
fail:
        cld
        CONSOLE_WRITE failed, 5
        SHUTDOWN SHUTDOWN_poweroff, reason

        .data
ok:     .ascii "ok\n"
failed: .ascii "FAIL\n"
        .balign 8
bind:   .fill 12, 1, 0
port:   .long 0
        .balign 8
poll:   .fill 24, 1, 0
seen_rax: .quad 0
reason: .long 0
        .balign 16
        .fill 4096, 1, 0
stack_top:

        .text
        HYPERCALL_PAGE

/* The PV console ring (start_info.console.domU): writes a line into the
 * `out` ring and notifies its port; then waits (SCHEDOP_poll on the port)
 * for host input in the `in` ring, up to a newline, and writes it back as
 * "got: <line>" the same way; then powers off. The console page follows
 * start_info and the xenstore page in the initial mapping. */
#include "guest.h"
#include <xen/xen.h>
#include <xen/event_channel.h>

TEST_GUEST_NOTES

#define SI_CONSOLE_EVTCHN  0x50         /* start_info.console.domU.evtchn */
#define IN_OFF    0
#define OUT_OFF   1024
#define IN_CONS   3072
#define IN_PROD   3076
#define OUT_CONS  3080
#define OUT_PROD  3084

        .text
        .code64
        .globl _start
_start:
        lea stack_top(%rip), %rsp
        mov SI_CONSOLE_EVTCHN(%rsi), %eax
        mov %eax, port(%rip)
        lea 2*4096(%rsi), %r15                  /* the console page */
        lea hello(%rip), %rsi
        mov $hello_len, %ecx
        call put
        call notify
        /* Wait for a line of input. */
        lea line(%rip), %r14
1:      mov IN_CONS(%r15), %eax
        cmp IN_PROD(%r15), %eax
        jne 2f
        call wait
        jmp 1b
2:      mov %eax, %edx
        and $1023, %edx
        movzbl IN_OFF(%r15,%rdx), %ebx
        inc %eax
        mov %eax, IN_CONS(%r15)
        mov %bl, (%r14)
        inc %r14
        cmp $10, %bl
        jne 1b
        lea got(%rip), %rsi
        mov $5, %ecx
        call put
        lea line(%rip), %rsi
        mov %r14, %rcx
        sub %rsi, %rcx
        call put
        call notify
        SHUTDOWN SHUTDOWN_poweroff, reason

/* put: copies rcx bytes from rsi into the out ring (room is ample here). */
put:    mov OUT_PROD(%r15), %eax
3:      test %ecx, %ecx
        jz 4f
        mov %eax, %edx
        and $2047, %edx
        movzbl (%rsi), %ebx
        mov %bl, OUT_OFF(%r15,%rdx)
        inc %rsi
        inc %eax
        dec %ecx
        jmp 3b
4:      mov %eax, OUT_PROD(%r15)
        ret

/* notify: EVTCHNOP_send on the console port. */
notify: mov $EVTCHNOP_send, %edi
        lea port(%rip), %rsi
        HCALL page, __HYPERVISOR_event_channel_op
        ret

/* wait: SCHEDOP_poll on the console port, no timeout. */
wait:   lea port(%rip), %rax
        mov %rax, poll(%rip)
        movl $1, poll+8(%rip)
        movq $0, poll+16(%rip)
        mov $SCHEDOP_poll, %edi
        lea poll(%rip), %rsi
        HCALL page, __HYPERVISOR_sched_op
        ret

        HYPERCALL_PAGE

        .data
hello:  .ascii "hello from the ring\n"
        hello_len = . - hello
got:    .ascii "got: "
        .balign 8
port:   .long 0
        .long 0
poll:   .quad 0, 0, 0
reason: .long 0
line:   .fill 256, 1, 0
        .bss
        .balign 16
        .fill 4096, 1, 0
stack_top:

/* Trap-path benchmark guest (`npm run bench -- trap`). rbx holds the number
 * of operations per kind (the bench sets it before the first run; 0 means
 * 20000). For each kind it makes an eighth as many warm-up operations (plus
 * one), then times rbx of them with rdtsc:
 *   0. rdmsr of FS_BASE: a #GP the hypervisor's emulator completes;
 *   1. Xen's forced-emulation CPUID (ud2a; .ascii "xen"; cpuid): a #UD the
 *      emulator completes;
 *   2. ud2: #UD bounced to the guest's handler, which skips it and returns
 *      through the iret hypercall (as a Xen PV kernel returns);
 *   3. int3: #BP bounced to the guest's handler, which returns with a plain
 *      iretq (the kernel-to-kernel return Mini-OS uses).
 * It writes the four TSC deltas and the count to the console as five raw
 * 64-bit words, then powers off. */
#include "guest.h"
#include <xen/xen.h>

TEST_GUEST_NOTES

#define MSR_FS_BASE 0xc0000100

.macro OP kind
        .if \kind == 0
        mov $MSR_FS_BASE, %ecx
        rdmsr
        .endif
        .if \kind == 1
        xor %eax, %eax
        .byte 0x0f, 0x0b                /* ud2a */
        .ascii "xen"
        cpuid
        .endif
        .if \kind == 2
        ud2
        .endif
        .if \kind == 3
        int3
        .endif
.endm

/* r12 = operations per kind, r13 = loop counter, r14 = start TSC; result at \slot. */
.macro TIME kind, slot
        mov %r12, %r13
        shr $3, %r13
        inc %r13
1:      OP \kind
        dec %r13
        jnz 1b
        rdtsc
        shl $32, %rdx
        or %rax, %rdx
        mov %rdx, %r14
        mov %r12, %r13
2:      OP \kind
        dec %r13
        jnz 2b
        rdtsc
        shl $32, %rdx
        or %rax, %rdx
        sub %r14, %rdx
        mov %rdx, \slot(%rip)
.endm

        .text
        .code64
        .globl _start
_start:
        lea stack_top(%rip), %rsp
        mov %rbx, %r12
        test %r12, %r12
        jnz 1f
        mov $20000, %r12d
1:      mov %r12, result + 32(%rip)
        lea traps(%rip), %rdi
        HCALL page, __HYPERVISOR_set_trap_table
        test %rax, %rax
        jnz 9f
        TIME 0, result
        TIME 1, result + 8
        TIME 2, result + 16
        TIME 3, result + 24
        CONSOLE_WRITE result, 40
        SHUTDOWN SHUTDOWN_poweroff, reason
9:      ud2

/* Xen's bounce frame: rcx, r11, rip, cs, rflags, rsp, ss. */
ud_handler:
        pop %rcx
        pop %r11
        addq $2, (%rsp)                 /* past the ud2 */
        pushq $0                        /* flags: not VGCF_in_syscall */
        jmp hypercall_page + __HYPERVISOR_iret * 32

bp_handler:
        pop %rcx
        pop %r11
        orq $3, 8(%rsp)                 /* cs: back to RPL 3 */
        orq $3, 32(%rsp)                /* ss */
        iretq

        HYPERCALL_PAGE

        .data
        .balign 16
traps:  /* vector, flags (DPL), cs, address */
        .byte 3, 3
        .word FLAT_KERNEL_CS
        .long 0
        .quad bp_handler
        .byte 6, 0
        .word FLAT_KERNEL_CS
        .long 0
        .quad ud_handler
        .quad 0, 0
result: .fill 5, 8, 0
reason: .long 0
        .bss
        .balign 16
        .fill 4096, 1, 0
stack_top:

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
        TIMED %r12, result, OP 0
        TIMED %r12, result+8, OP 1
        TIMED %r12, result+16, OP 2
        TIMED %r12, result+24, OP 3
        CONSOLE_WRITE result, 40
        SHUTDOWN SHUTDOWN_poweroff, reason
9:      ud2

/* Xen's bounce frame: rcx, r11, rip, cs, rflags, rsp, ss. */
ud_handler:
        pop %rcx
        pop %r11
        addq $2, (%rsp)                 /* past the ud2 */
        IRET_HYPERCALL

bp_handler:
        pop %rcx
        pop %r11
        IRETQ_KERNEL

        HYPERCALL_PAGE

        .data
        .balign 16
traps:  TRAP 3, 3, bp_handler
        TRAP 6, 0, ud_handler
        .quad 0, 0
result: .fill 5, 8, 0
reason: .long 0
        .bss
        .balign 16
        .fill 4096, 1, 0
stack_top:

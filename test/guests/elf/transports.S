/* The same hypercalls through each entry path: the hypercall page, vmcall
 * and syscall. For each path the guest records, as 64-bit words:
 *   xen_version(XENVER_version), pvbench echo (rax, result), console_io
 *   write from a non-canonical address (-EFAULT), hypercall 60 (-ENOSYS),
 *   whether rbx, rbp and r12-r15 survived every call (1 = yes), and pvbench
 *   ret of 0x123456789abcdef0, 0xffffffff00000000 and -5 (results wider
 *   than 32 bits, and a negative one).
 * It then writes the three 9-word rows to the console as raw bytes and
 * powers off. Tests decode the bytes. */
#include "guest.h"
#include <xen/version.h>
#include <paravane/pvbench.h>

TEST_GUEST_NOTES

.macro SENTINELS
        mov $0x1111, %rbx
        mov $0x2222, %rbp
        mov $0x3333, %r12
        mov $0x4444, %r13
        mov $0x5555, %r14
        mov $0x6666, %r15
.endm

.macro CHECK row
        cmp $0x1111, %rbx; jne 8f
        cmp $0x2222, %rbp; jne 8f
        cmp $0x3333, %r12; jne 8f
        cmp $0x4444, %r13; jne 8f
        cmp $0x5555, %r14; jne 8f
        cmp $0x6666, %r15; jne 8f
        jmp 9f
8:      movq $0, \row + 40(%rip)
9:
.endm

.macro ROW path, row
        movq $1, \row + 40(%rip)
        SENTINELS
        mov $XENVER_version, %edi
        xor %esi, %esi
        HCALL \path, __HYPERVISOR_xen_version
        mov %rax, \row + 0(%rip)
        CHECK \row
        movq $41, echo(%rip)
        mov $PVBENCHOP_echo, %edi
        lea echo(%rip), %rsi
        HCALL \path, __HYPERVISOR_pvbench_op
        mov %rax, \row + 8(%rip)
        mov echo + 8(%rip), %rax
        mov %rax, \row + 16(%rip)
        CHECK \row
        mov $CONSOLEIO_write, %edi
        mov $16, %esi
        movabs $0x0000800000000000, %rdx   /* non-canonical */
        HCALL \path, __HYPERVISOR_console_io
        mov %rax, \row + 24(%rip)
        CHECK \row
        HCALL \path, 60
        mov %rax, \row + 32(%rip)
        CHECK \row
        mov $PVBENCHOP_ret, %edi
        movabs $0x123456789abcdef0, %rsi
        HCALL \path, __HYPERVISOR_pvbench_op
        mov %rax, \row + 48(%rip)
        CHECK \row
        mov $PVBENCHOP_ret, %edi
        movabs $0xffffffff00000000, %rsi
        HCALL \path, __HYPERVISOR_pvbench_op
        mov %rax, \row + 56(%rip)
        CHECK \row
        mov $PVBENCHOP_ret, %edi
        mov $-5, %rsi
        HCALL \path, __HYPERVISOR_pvbench_op
        mov %rax, \row + 64(%rip)
        CHECK \row
.endm

        .text
        .code64
        .globl _start
_start:
        ROW page, rows
        ROW vmcall, rows + 72
        ROW syscall, rows + 144
        CONSOLE_WRITE rows, 216
        SHUTDOWN SHUTDOWN_poweroff, reason

        HYPERCALL_PAGE

        .data
        .balign 8
echo:   .quad 0, 0
rows:   .fill 27, 8, 0
reason: .long 0

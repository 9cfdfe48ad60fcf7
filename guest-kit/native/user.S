/*
 * The plain kernel's user mode (native/user.c): entering CPL 3 with iretq,
 * the syscall entry, and the way back to the kernel when the user program
 * exits. One CPU, one user program at a time: the kernel's stack and the
 * user's are kept in two words.
 */
#include <paravane/asm.h>

        .text

/* long native_user_enter(entry %rdi, stack %rsi): runs entry at CPL 3 until native_user_exit(status). */
        .globl native_user_enter
        .type native_user_enter, @function
native_user_enter:
        PUSH_CALLEE_SAVED
        movq %rsp, kernel_rsp(%rip)
        pushq $0x1b                     /* ss: user data, RPL 3 */
        pushq %rsi                      /* rsp */
        pushq $0x2                      /* rflags: IF clear */
        pushq $0x23                     /* cs: 64-bit user code, RPL 3 */
        pushq %rdi                      /* rip */
        CLEAR_REGS
        iretq
        .size native_user_enter, . - native_user_enter

/* void native_user_exit(status %rdi): native_user_enter returns status (from the syscall handler). */
        .globl native_user_exit
        .type native_user_exit, @function
native_user_exit:
        movq %rdi, %rax
        movq kernel_rsp(%rip), %rsp
        POP_CALLEE_SAVED
        ret
        .size native_user_exit, . - native_user_exit

/*
 * syscall from CPL 3 (LSTAR): rcx = the user's rip, r11 its rflags, the
 * stack still the user's. On the kernel's stack (below native_user_enter's
 * frame) it keeps what the C handler may clobber, calls
 * native_syscall(nr, a0, a1, a2) and returns with sysretq: as on Linux only
 * rax (the result), rcx and r11 change for the user.
 */
        .globl native_syscall_entry
        .type native_syscall_entry, @function
native_syscall_entry:
        movq %rsp, user_rsp(%rip)
        movq kernel_rsp(%rip), %rsp
        pushq %rcx
        pushq %r11
        pushq %rdi
        pushq %rsi
        pushq %rdx
        pushq %r8
        pushq %r9
        pushq %r10
        subq $8, %rsp                   /* kernel_rsp is 8 mod 16; 9 words more: the call is aligned */
        movq %rdx, %rcx                 /* a2 */
        movq %rsi, %rdx                 /* a1 */
        movq %rdi, %rsi                 /* a0 */
        movq %rax, %rdi                 /* nr */
        cld
        call native_syscall
        addq $8, %rsp
        popq %r10
        popq %r9
        popq %r8
        popq %rdx
        popq %rsi
        popq %rdi
        popq %r11
        popq %rcx
        movq user_rsp(%rip), %rsp
        sysretq
        .size native_syscall_entry, . - native_syscall_entry

        .bss
        .balign 8
kernel_rsp:
        .quad 0
user_rsp:
        .quad 0

        .section .note.GNU-stack, "", @progbits

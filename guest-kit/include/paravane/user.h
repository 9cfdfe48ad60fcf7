/*
 * Guest user mode: a PV kernel runs a user program, as Xen's x86-64 PV
 * ABI has it. The kernel and its user programs both run at CPL 3; they are
 * kept apart by page tables. The hypervisor runs user mode on the user
 * base pointer (MMUEXT_NEW_USER_BASEPTR), which maps only the user image,
 * and the kernel on its own tables. Every way out of user mode (a syscall,
 * an exception, an event upcall) switches to the kernel's tables and stack
 * (stack_switch) and arrives in the kernel with a bounce frame whose cs has
 * RPL 3; an iret hypercall to a frame with cs RPL 3 goes back. User mode
 * cannot make hypercalls: the hypercall port and vmcall give it #GP, and
 * `syscall` is the kernel's system call. See docs/guest-kit.md.
 *
 * The user image is what the guest marks __user_text (code) and
 * __user_data (data, the user stack too): the linker script puts each in
 * pages of its own, and user_init() maps those pages, at the same
 * addresses, in the user tables (text read-only, data read-write, no
 * execute). User code must reach nothing else: it runs on tables that do
 * not map the kernel. Keep it to __user_text functions and the inline
 * user_syscall*() below (no kit calls, no string functions the compiler
 * may call for you).
 *
 * One vCPU: nothing here locks. Not in guest.h: include it.
 */
#ifndef __PARAVANE_USER_H__
#define __PARAVANE_USER_H__

#include <paravane/traps.h>

/* The vector field of a syscall's frame (struct trap_frame): not an exception. */
#define TRAP_SYSCALL 0x101

#ifndef __ASSEMBLY__
#include <stdint.h>

/* Places a function in the user image (noinline: it must not be copied into kernel code). */
#define __user_text __attribute__((section(".user.text"), noinline, used))
/* Places an object in the user image (read-write for user mode). */
#define __user_data __attribute__((section(".user.data")))

/*
 * A system call from user mode: f->rax holds the number and f->rdi,
 * f->rsi, f->rdx, f->r10, f->r8, f->r9 the arguments (Linux's convention;
 * rcx and r11 hold the return rip and rflags, as `syscall` left them).
 * Returns what user mode gets in rax. Runs on the kernel stack with events
 * masked. To end the user program instead, call user_exit().
 */
typedef long (*user_syscall_t)(struct trap_frame *f);

/*
 * Builds the user tables for the user image, pins their L4 and loads it
 * as the user base pointer; gives the hypervisor a kernel stack for
 * entries from user mode (stack_switch) and registers the syscall entry
 * (CALLBACKTYPE_syscall, events masked) calling `handler`. Needs
 * traps_init() first (a syscall frame is resumed like a trap's). Returns 0
 * or the failing hypercall's error (-XEN_E*), having printed which.
 */
long user_init(user_syscall_t handler);

/*
 * Runs user code at `entry` on the stack `stack_top` (both in the user
 * image), events enabled, until it ends: returns the status given to
 * user_exit(). The kernel's registers are not shown to user mode (all are
 * zero at entry). The event mask is as before when it returns.
 */
long user_run(void (*entry)(void), void *stack_top);

/*
 * Ends the user program from kernel code entered from it (the syscall
 * handler, a trap handler whose frame has cs RPL 3, or an event handler
 * under one): user_run() returns `status`. Never returns.
 */
void user_exit(long status) __attribute__((noreturn));

/* Whether a frame interrupted guest user mode (cs RPL 3; the kernel's own frames have RPL 0). */
static inline int trap_from_user(const struct trap_frame *f)
{
    return (f->cs & 3) == 3;
}

/* System calls from user code (inline, so they land in the __user_text caller). */
static inline __attribute__((always_inline)) long user_syscall3(long nr, long a, long b, long c)
{
    long ret;
    register long r10 __asm__("r10") = 0;

    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
    return ret;
}

static inline __attribute__((always_inline)) long user_syscall1(long nr, long a)
{
    return user_syscall3(nr, a, 0, 0);
}

#endif /* !__ASSEMBLY__ */

#endif /* __PARAVANE_USER_H__ */

/*
 * Hypercalls from C: _hypercall0.._hypercall5, hypercall() for any number,
 * and named wrappers for the hypercalls the examples use.
 *
 * Convention (Xen x86-64 PV): number in rax, arguments in rdi, rsi, rdx,
 * r10, r8, result in rax (>= 0, or a negated XEN_E* value). The argument
 * registers, rcx and r11 are clobbered. The transport is chosen when the
 * guest is built (guest.mk: HYPERCALL=page|vmcall|syscall):
 *
 *   GUEST_HYPERCALL_PAGE     call hypercall_page + nr * 32 (the default):
 *                            the stub the hypervisor wrote sets rax itself.
 *   GUEST_HYPERCALL_VMCALL   vmcall, executed inline; the hypervisor traps it.
 *   GUEST_HYPERCALL_SYSCALL  syscall from guest-kernel mode, as Xen's stubs do.
 *
 * Assembly (-D__ASSEMBLY__) sees the transport defines and the stub
 * constants only.
 */
#ifndef __PARAVANE_HYPERCALL_H__
#define __PARAVANE_HYPERCALL_H__

#include <xen/xen.h>
#include <xen/errno.h>
#include <xen/memory.h>
#include <xen/sched.h>
#include <xen/version.h>
#include <paravane/pvbench.h>

#if defined(GUEST_HYPERCALL_PAGE) + defined(GUEST_HYPERCALL_VMCALL) + defined(GUEST_HYPERCALL_SYSCALL) > 1
#error "define at most one of GUEST_HYPERCALL_PAGE, GUEST_HYPERCALL_VMCALL, GUEST_HYPERCALL_SYSCALL"
#endif
#if !defined(GUEST_HYPERCALL_VMCALL) && !defined(GUEST_HYPERCALL_SYSCALL) && !defined(GUEST_HYPERCALL_PAGE)
#define GUEST_HYPERCALL_PAGE 1
#endif

/* Stubs in the hypercall page, and the size of each. */
#define HYPERCALL_PAGE_STUBS     128
#define HYPERCALL_STUB_SIZE      32

#ifndef __ASSEMBLY__

/* The page the hypervisor fills with stubs (lib/entry.S; XEN_ELFNOTE_HYPERCALL_PAGE). */
extern char hypercall_page[4096];

/* The transport this object was compiled for: "page", "vmcall" or "syscall". */
const char *hypercall_transport(void);

#define __hc_inline static inline __attribute__((always_inline))

/*
 * __HYPERCALL(nr, ret, clobbers, operands...): one hypercall. `ret` carries
 * the number into rax and the result out of it; `operands` bind the
 * arguments that are used ("+D"(a1), "+S"(a2), "+d"(a3), "+r"(r10),
 * "+r"(r8)) and `clobbers` names the argument registers that are not (a
 * debug Xen poisons those), each with a leading comma.
 * The page transport calls the stub directly when nr is a compile-time
 * constant ("i"), and through a register holding its address otherwise.
 */
#define __HC_UNUSED0 , "rdi", "rsi", "rdx", "r10", "r8"
#define __HC_UNUSED1 , "rsi", "rdx", "r10", "r8"
#define __HC_UNUSED2 , "rdx", "r10", "r8"
#define __HC_UNUSED3 , "r10", "r8"
#define __HC_UNUSED4 , "r8"
#define __HC_UNUSED5
#if defined(GUEST_HYPERCALL_PAGE)
#define HYPERCALL_TRANSPORT "page"
#define __HYPERCALL(nr, ret, clobbers, ...)                                    \
    do {                                                                       \
        if (__builtin_constant_p(nr))                                          \
            asm volatile("call hypercall_page + %c[stub]"                      \
                         : "+a"(ret), ##__VA_ARGS__                            \
                         : [stub] "i"(__builtin_constant_p(nr) ? (nr) * HYPERCALL_STUB_SIZE : 0) \
                         : "rcx", "r11", "memory" clobbers);                   \
        else                                                                   \
            asm volatile("call *%[stub]"                                       \
                         : "+a"(ret), ##__VA_ARGS__                            \
                         : [stub] "r"(hypercall_page + (nr) * HYPERCALL_STUB_SIZE) \
                         : "rcx", "r11", "memory" clobbers);                   \
    } while (0)
/* Numbers past the page have no stub: refuse them here, as Xen would. */
#define __HYPERCALL_NO_STUB(nr) ((nr) >= HYPERCALL_PAGE_STUBS)
#else
#if defined(GUEST_HYPERCALL_VMCALL)
#define HYPERCALL_TRANSPORT "vmcall"
#define __HYPERCALL_INSN    "vmcall"
#else
#define HYPERCALL_TRANSPORT "syscall"
#define __HYPERCALL_INSN    "syscall"
#endif
#define __HYPERCALL(nr, ret, clobbers, ...)                                    \
    asm volatile(__HYPERCALL_INSN                                              \
                 : "+a"(ret), ##__VA_ARGS__                                    \
                 :                                                             \
                 : "rcx", "r11", "memory" clobbers)
/* The hypervisor answers every number itself (-ENOSYS if unknown). */
#define __HYPERCALL_NO_STUB(nr) 0
#endif

__hc_inline long _hypercall0(unsigned long nr)
{
    long ret = (long)nr;

    if (__HYPERCALL_NO_STUB(nr))
        return -XEN_ENOSYS;
    __HYPERCALL(nr, ret, __HC_UNUSED0);
    return ret;
}

__hc_inline long _hypercall1(unsigned long nr, unsigned long a1)
{
    long ret = (long)nr;

    if (__HYPERCALL_NO_STUB(nr))
        return -XEN_ENOSYS;
    __HYPERCALL(nr, ret, __HC_UNUSED1, "+D"(a1));
    return ret;
}

__hc_inline long _hypercall2(unsigned long nr, unsigned long a1, unsigned long a2)
{
    long ret = (long)nr;

    if (__HYPERCALL_NO_STUB(nr))
        return -XEN_ENOSYS;
    __HYPERCALL(nr, ret, __HC_UNUSED2, "+D"(a1), "+S"(a2));
    return ret;
}

__hc_inline long _hypercall3(unsigned long nr, unsigned long a1, unsigned long a2,
                             unsigned long a3)
{
    long ret = (long)nr;

    if (__HYPERCALL_NO_STUB(nr))
        return -XEN_ENOSYS;
    __HYPERCALL(nr, ret, __HC_UNUSED3, "+D"(a1), "+S"(a2), "+d"(a3));
    return ret;
}

__hc_inline long _hypercall4(unsigned long nr, unsigned long a1, unsigned long a2,
                             unsigned long a3, unsigned long a4)
{
    long ret = (long)nr;
    register unsigned long r10 asm("r10") = a4;

    if (__HYPERCALL_NO_STUB(nr))
        return -XEN_ENOSYS;
    __HYPERCALL(nr, ret, __HC_UNUSED4, "+D"(a1), "+S"(a2), "+d"(a3), "+r"(r10));
    return ret;
}

__hc_inline long _hypercall5(unsigned long nr, unsigned long a1, unsigned long a2,
                             unsigned long a3, unsigned long a4, unsigned long a5)
{
    long ret = (long)nr;
    register unsigned long r10 asm("r10") = a4;
    register unsigned long r8 asm("r8") = a5;

    if (__HYPERCALL_NO_STUB(nr))
        return -XEN_ENOSYS;
    __HYPERCALL(nr, ret, __HC_UNUSED5, "+D"(a1), "+S"(a2), "+d"(a3), "+r"(r10), "+r"(r8));
    return ret;
}

/* Any hypercall, known or not, with all five argument registers loaded. */
__hc_inline long hypercall(unsigned long nr, unsigned long a1, unsigned long a2,
                           unsigned long a3, unsigned long a4, unsigned long a5)
{
    return _hypercall5(nr, a1, a2, a3, a4, a5);
}

/* console_io: CONSOLEIO_write `count` bytes from buf, or CONSOLEIO_read into it. */
__hc_inline long HYPERVISOR_console_io(unsigned int cmd, unsigned int count, void *buf)
{
    return _hypercall3(__HYPERVISOR_console_io, cmd, count, (unsigned long)buf);
}

/* xen_version: XENVER_* sub-command; arg is its IN/OUT structure (or NULL). */
__hc_inline long HYPERVISOR_xen_version(unsigned int cmd, void *arg)
{
    return _hypercall2(__HYPERVISOR_xen_version, cmd, (unsigned long)arg);
}

/* sched_op: SCHEDOP_* sub-command; arg is its structure (or NULL). */
__hc_inline long HYPERVISOR_sched_op(unsigned int cmd, void *arg)
{
    return _hypercall2(__HYPERVISOR_sched_op, cmd, (unsigned long)arg);
}

/*
 * multicall: runs the `count` calls of `calls` in one hypercall, storing
 * each one's return value in its entry's `result`; returns 0, or an error
 * for the list itself. One exit for several requests: e.g. an event sent
 * and a SCHEDOP_poll for the answer.
 */
__hc_inline long HYPERVISOR_multicall(multicall_entry_t *calls, unsigned int count)
{
    return _hypercall2(__HYPERVISOR_multicall, (unsigned long)calls, count);
}

/* vm_assist: VMASST_CMD_enable/disable of a VMASST_TYPE_*. */
__hc_inline long HYPERVISOR_vm_assist(unsigned int cmd, unsigned int type)
{
    return _hypercall2(__HYPERVISOR_vm_assist, cmd, type);
}

/* physdev_op: PHYSDEVOP_* sub-command; arg is its structure (set_iopl: the virtual IOPL). */
__hc_inline long HYPERVISOR_physdev_op(unsigned int cmd, void *arg)
{
    return _hypercall2(__HYPERVISOR_physdev_op, cmd, (unsigned long)arg);
}

/* memory_op: XENMEM_* sub-command; arg is its IN/OUT structure. */
__hc_inline long HYPERVISOR_memory_op(unsigned int cmd, void *arg)
{
    return _hypercall2(__HYPERVISOR_memory_op, cmd, (unsigned long)arg);
}

/*
 * set_trap_table: installs the entries of table up to the first with
 * address 0 (vector, DPL and mask flags, cs, handler); others stay as they
 * were. NULL clears the whole virtual IDT.
 */
__hc_inline long HYPERVISOR_set_trap_table(const trap_info_t *table)
{
    return _hypercall1(__HYPERVISOR_set_trap_table, (unsigned long)table);
}

/* fpu_taskswitch: sets (set != 0) or clears the virtual CR0.TS. */
__hc_inline long HYPERVISOR_fpu_taskswitch(int set)
{
    return _hypercall1(__HYPERVISOR_fpu_taskswitch, (unsigned long)set);
}

/* stack_switch: the kernel stack (ss, sp) for events that interrupt guest user mode. */
__hc_inline long HYPERVISOR_stack_switch(unsigned long ss, unsigned long sp)
{
    return _hypercall2(__HYPERVISOR_stack_switch, ss, sp);
}

/* set_segment_base: SEGBASE_FS, SEGBASE_GS_USER, SEGBASE_GS_KERNEL or SEGBASE_GS_USER_SEL. */
__hc_inline long HYPERVISOR_set_segment_base(unsigned int which, unsigned long base)
{
    return _hypercall2(__HYPERVISOR_set_segment_base, which, base);
}

/* set_callbacks: the event, failsafe and syscall entry points (the 64-bit form). */
__hc_inline long HYPERVISOR_set_callbacks(unsigned long event, unsigned long failsafe,
                                          unsigned long syscall)
{
    return _hypercall3(__HYPERVISOR_set_callbacks, event, failsafe, syscall);
}

/* callback_op: CALLBACKOP_* sub-command (<xen/callback.h>); arg is its structure. */
__hc_inline long HYPERVISOR_callback_op(int cmd, const void *arg)
{
    return _hypercall2(__HYPERVISOR_callback_op, (unsigned long)cmd, (unsigned long)arg);
}

/* set_timer_op: the vCPU's one-shot timer at absolute system time `timeout` ns (0 cancels it). */
__hc_inline long HYPERVISOR_set_timer_op(uint64_t timeout)
{
    return _hypercall1(__HYPERVISOR_set_timer_op, timeout);
}

/* vcpu_op: VCPUOP_* sub-command (<xen/vcpu.h>) for vCPU `vcpu`; arg is its structure (or NULL). */
__hc_inline long HYPERVISOR_vcpu_op(int cmd, unsigned int vcpu, void *arg)
{
    return _hypercall3(__HYPERVISOR_vcpu_op, (unsigned long)cmd, vcpu, (unsigned long)arg);
}

/* event_channel_op: EVTCHNOP_* sub-command (<xen/event_channel.h>); arg is its structure. */
__hc_inline long HYPERVISOR_event_channel_op(int cmd, void *arg)
{
    return _hypercall2(__HYPERVISOR_event_channel_op, (unsigned long)cmd, (unsigned long)arg);
}

/* pvbench_op (paravane's): PVBENCHOP_* sub-command; arg is its structure. */
__hc_inline long HYPERVISOR_pvbench_op(unsigned int cmd, void *arg)
{
    return _hypercall2(__HYPERVISOR_pvbench_op, cmd, (unsigned long)arg);
}

#endif /* !__ASSEMBLY__ */

#endif /* __PARAVANE_HYPERCALL_H__ */

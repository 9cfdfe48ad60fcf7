/*
 * What the kit's own files share and guests do not see: the C entry points
 * lib/traps-entry.S calls, and how they tell it to return.
 */
#ifndef __PARAVANE_LIB_INTERNAL_H__
#define __PARAVANE_LIB_INTERNAL_H__

#include <paravane/traps.h>

/* A compiler barrier: memory the hypervisor shares is read and written where the code says. */
#define barrier() asm volatile("" ::: "memory")

/* An exception's frame: runs its handler (lib/traps.c). Returns a TRAP_RETURN_* for the stub. */
unsigned int trap_dispatch(struct trap_frame *f);

/* An event upcall's frame: runs the port handlers (lib/events.c). Returns a TRAP_RETURN_* for the stub. */
unsigned int evtchn_upcall(struct trap_frame *f);

/* How to resume f under the return mode now in force (trap_return_mode()). */
unsigned int trap_resume_how(const struct trap_frame *f);

/* The upcall's entry stub (lib/traps-entry.S), registered as CALLBACKTYPE_event. */
extern char evtchn_upcall_entry[];

/* A syscall's frame from user mode: runs the guest's handler (lib/user.c). Returns a TRAP_RETURN_* for the stub. */
unsigned int user_syscall(struct trap_frame *f);

/* The syscall callback's entry stub (lib/traps-entry.S), registered as CALLBACKTYPE_syscall. */
extern char user_syscall_entry[];

/* Into user mode at rip on rsp; returns the status user_leave() is given (lib/traps-entry.S). */
long user_enter(unsigned long rip, unsigned long rsp);
void user_leave(long status) __attribute__((noreturn));

#endif /* __PARAVANE_LIB_INTERNAL_H__ */

/*
 * The boot contract between lib/entry.S and the guest's own code.
 *
 * The guest defines `int main(start_info_t *si)`. entry.S clears .bss,
 * switches to a 16 KiB stack in .bss and calls guest_start(), which stores
 * the start_info pointer the hypervisor passed in rsi and calls main(). When
 * main returns, the domain shuts down: SHUTDOWN_poweroff if it returned 0,
 * SHUTDOWN_crash otherwise. Event delivery stays masked unless the guest
 * asks for it (evtchn_init() and local_events_enable(), <paravane/events.h>).
 */
#ifndef __PARAVANE_START_H__
#define __PARAVANE_START_H__

#include <xen/xen.h>
#include <xen/sched.h>

/* The start_info page (virtual address from rsi at entry); set before main. */
extern start_info_t *start_info;

/* The guest's entry point, written by the guest. */
int main(start_info_t *si);

/* Flushes the console and ends the domain with a SHUTDOWN_* reason. */
void shutdown(unsigned int reason) __attribute__((noreturn));

/* Called by _start only. */
void guest_start(start_info_t *si) __attribute__((noreturn));

#endif /* __PARAVANE_START_H__ */

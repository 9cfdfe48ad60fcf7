/*
 * Event channels in a PV guest kernel, Xen's 2-level ABI: bind ports,
 * give each a C handler, send, mask, close; the event upcall that runs
 * the handlers; and the virtual interrupt flag (vcpu_info.evtchn_upcall_mask).
 * See docs/guest-kit.md.
 *
 * The protocol (Xen's, in shared memory): raising an event on port p sets
 * bit p of shared_info.evtchn_pending; if bit p of evtchn_mask is clear and
 * bit p / 64 of the vCPU's evtchn_pending_sel was clear, the hypervisor
 * sets that selector bit and evtchn_upcall_pending. Whenever the vCPU
 * resumes with evtchn_upcall_pending set and evtchn_upcall_mask clear, it
 * enters the event callback on a bounce frame (rcx, r11, rip, cs | saved
 * mask << 32, rflags, rsp, ss: an exception's, without an error code) with
 * events masked. The kit's callback (lib/traps-entry.S, evtchn_upcall() in
 * lib/events.c) then loops until evtchn_upcall_pending stays clear: clear
 * it, take the selector with xchg, and for each selected word, each port
 * pending and not masked, clear its pending bit (a locked btr) and call
 * its handler. It returns the way traps return (trap_return_mode()); the
 * return restores the mask saved in the frame (0: events enabled).
 *
 * One vCPU: every port notifies vCPU 0. Not in guest.h: include it.
 */
#ifndef __PARAVANE_EVENTS_H__
#define __PARAVANE_EVENTS_H__

#include <stdint.h>
#include <xen/xen.h>
#include <xen/event_channel.h>
#include <paravane/traps.h>

/* Ports the 2-level ABI has (0 is never handed out). */
#define EVTCHN_PORTS EVTCHN_2L_NR_CHANNELS

/* A port's handler: runs in the upcall, with events masked, once per event (events raised while it waits merge into one). */
typedef void (*evtchn_handler_t)(evtchn_port_t port, void *arg);

/*
 * Maps shared_info (shared_info_map()), masks every port (as Linux and
 * Mini-OS do at boot: nothing is delivered before it has a handler), and
 * registers the kit's upcall entry with callback_op(CALLBACKOP_register,
 * CALLBACKTYPE_event). Events stay masked as they were (they are at
 * boot): call local_events_enable(). Shuts the domain down
 * (SHUTDOWN_crash) if the registration fails. Later calls do nothing.
 */
void evtchn_init(void);

/*
 * Bind helpers: each returns the new port (> 0) or -XEN_E* from
 * event_channel_op. Each calls evtchn_init() first if the guest has not
 * (a port bound without it would never be delivered), so timer_bind() and
 * periodic_start() work without it too. The new port is returned masked, with no handler:
 * evtchn_set_handler() unmasks it, so an event raised in between (an
 * interdomain port starts pending) reaches the handler rather than
 * nobody. Ports notify vCPU 0.
 */
/* EVTCHNOP_alloc_unbound: a port in this domain that `remote_dom` (or DOMID_SELF) may bind to. */
int evtchn_alloc_unbound(domid_t remote_dom);
/* EVTCHNOP_bind_interdomain: connects to `remote_port`, left unbound for us by `remote_dom`. The port starts pending. */
int evtchn_bind_interdomain(domid_t remote_dom, evtchn_port_t remote_port);
/* EVTCHNOP_bind_virq: VIRQ_* `virq` on vCPU 0 (VIRQ_TIMER: see <paravane/time.h>, timer_bind()). */
int evtchn_bind_virq(uint32_t virq);
/* EVTCHNOP_bind_ipi: a port that evtchn_send() raises on this vCPU itself. */
int evtchn_bind_ipi(void);

/* EVTCHNOP_send: raises an event at the other end (interdomain), or here (IPI). 0 or -XEN_E*. */
long evtchn_send(evtchn_port_t port);

/*
 * EVTCHNOP_close: masks the port, forgets its handler, closes it (the
 * other end of an interdomain channel goes back to unbound) and clears its
 * pending bit. 0 or -XEN_E* (then the port keeps its handler and mask).
 */
long evtchn_close(evtchn_port_t port);

/* EVTCHNOP_status for a port of this domain into *st. 0 or -XEN_E*. */
long evtchn_status(evtchn_port_t port, evtchn_status_t *st);

/*
 * Sets port's handler and arg and unmasks the port (evtchn_unmask(): an
 * event already pending is delivered); h == NULL masks it instead. A
 * pending port whose handler is NULL is masked by the upcall and left
 * pending, so no event is dropped for want of a handler. Shuts the domain
 * down if port >= EVTCHN_PORTS.
 */
void evtchn_set_handler(evtchn_port_t port, evtchn_handler_t h, void *arg);

/* Sets the port's mask bit (a locked bts): its events stay pending and raise no upcall. */
void evtchn_mask(evtchn_port_t port);

/*
 * Clears the port's mask bit, without a hypercall, as Linux does for a
 * port bound to its own vCPU: if the port is pending, sets its selector
 * bit and evtchn_upcall_pending as the hypervisor would have, and, if
 * events are enabled, forces the upcall at once with a cheap hypercall
 * (xen_version). EVTCHNOP_unmask (HYPERVISOR_event_channel_op) does the
 * same in the hypervisor; it is what a port bound to another vCPU needs.
 */
void evtchn_unmask(evtchn_port_t port);

/* Whether port's pending bit is set (the event has not been taken by the upcall yet). */
int evtchn_is_pending(evtchn_port_t port);
/* Whether port's mask bit is set. */
int evtchn_is_masked(evtchn_port_t port);
/* Clears port's pending bit: drops an event nobody should see. */
void evtchn_clear(evtchn_port_t port);

/* Upcalls taken since boot. */
unsigned long evtchn_upcall_count(void);
/* The frame the running upcall interrupted (rip, cs with the saved mask, rsp, ...), or NULL outside one. */
const struct trap_frame *evtchn_upcall_frame(void);

/*
 * The virtual interrupt flag: vcpu_info[0].evtchn_upcall_mask. Disabling
 * sets the mask: upcalls wait. Enabling clears it and, if an upcall is
 * pending already (nothing would deliver it before the next exit), forces
 * it with a cheap hypercall, as Linux does. Need evtchn_init().
 */
void local_events_enable(void);
void local_events_disable(void);
/* Whether events are enabled (the mask is clear). */
int local_events_enabled(void);
/* Disables events and returns the previous mask, for local_events_restore(). */
unsigned int local_events_save(void);
/* Puts back the mask local_events_save() returned (enabling forces a pending upcall). */
void local_events_restore(unsigned int saved);

/* Delivers a pending upcall now, if events are enabled: one cheap hypercall (xen_version). */
void evtchn_force_upcall(void);

#endif /* __PARAVANE_EVENTS_H__ */

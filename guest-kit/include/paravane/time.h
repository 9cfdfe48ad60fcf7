/*
 * Time in a PV guest kernel: system time and the wallclock read from
 * shared memory (no hypercall), the vCPU's one-shot timer and VIRQ_TIMER, a
 * periodic timer built on it, and the two ways to sleep (SCHEDOP_block,
 * SCHEDOP_poll). See docs/guest-kit.md.
 *
 * System time is nanoseconds since the hypervisor started (on Xen: since
 * the host booted), one clock for every domain. vcpu_info.time maps the
 * TSC onto it (Xen's seqlock: version odd while the hypervisor updates):
 *
 *   now = system_time + (((tsc - tsc_timestamp) << tsc_shift) * tsc_to_system_mul) >> 32
 *
 * (>> -tsc_shift when the shift is negative; the product is 96 bits wide).
 * shared_info's wc_sec (+ wc_sec_hi << 32) and wc_nsec are the UTC time at
 * system time 0, under their own seqlock (wc_version).
 *
 * One vCPU. Not in guest.h: include it.
 */
#ifndef __PARAVANE_TIME_H__
#define __PARAVANE_TIME_H__

#include <stdint.h>
#include <paravane/events.h>

#define NSEC_PER_USEC 1000ULL
#define NSEC_PER_MSEC 1000000ULL
#define NSEC_PER_SEC  1000000000ULL

/*
 * System time now, in ns: rdtsc and vcpu_info[0].time, no exit. With
 * XEN_PVCLOCK_TSC_STABLE_BIT in time.flags (paravane always sets it) the
 * reading is the formula's; without, it never goes below the last one.
 */
uint64_t now_ns(void);

/* UTC now: shared_info's wallclock at system time 0 plus now_ns(). nsec may be NULL. */
void wallclock(uint64_t *sec, uint32_t *nsec);

/*
 * The vCPU's one-shot timer: VIRQ_TIMER once system time reaches
 * deadline_ns (at once if it has already). Replaces the previous deadline.
 * VCPUOP_set_singleshot_timer; 0 or -XEN_E*.
 */
long timer_set(uint64_t deadline_ns);
/* Cancels the one-shot timer (VCPUOP_stop_singleshot_timer). 0 or -XEN_E*. */
long timer_cancel(void);

/*
 * Xen's periodic timer, which raises VIRQ_TIMER every 10 ms from boot:
 * period_ns 0 stops it (VCPUOP_stop_periodic_timer), else sets it
 * (VCPUOP_set_periodic_timer; at least 1 ms). 0 or -XEN_E*.
 */
long timer_xen_periodic(uint64_t period_ns);

/*
 * Binds VIRQ_TIMER (the first call; evtchn_init() first), stops Xen's
 * periodic timer, and makes h its handler (NULL: masks the port). Returns
 * the port or -XEN_E*. A VIRQ_TIMER handler must expect spurious calls:
 * check now_ns() against the deadline it waits for.
 */
int timer_bind(evtchn_handler_t h, void *arg);

/*
 * A periodic timer on top of the one-shot one (Xen's own stopped):
 * h(deadline, arg) runs in the upcall for deadline = start + period,
 * start + 2 * period, ..., where start is now_ns() at the call; each
 * deadline once, in order, none skipped. The next deadline is armed
 * before h runs; if it has already passed (the vCPU was late by a whole
 * period), it fires at once, so a late vCPU catches up. Takes over
 * VIRQ_TIMER (timer_bind()). period_ns >= 100 us. Returns 0 or -XEN_E*.
 */
typedef void (*periodic_handler_t)(uint64_t deadline_ns, void *arg);
long periodic_start(uint64_t period_ns, periodic_handler_t h, void *arg);
/* Stops the periodic timer (and cancels the one-shot timer). */
void periodic_stop(void);

/*
 * SCHEDOP_block: enables events (clears evtchn_upcall_mask) and sleeps
 * until an upcall is pending; returns after the upcall's handlers ran,
 * with events enabled. Race-free waiting: disable events, test the
 * condition, block(), disable again, test again.
 */
long block(void);

/*
 * Blocks until `cond` holds, race-free: tested with events disabled,
 * block() between tests; returns with events enabled. `cond` is evaluated
 * once more than the wake-ups (it may read the clock).
 */
#define block_until(cond)            \
    do {                             \
        local_events_disable();      \
        while (!(cond)) {            \
            block();                 \
            local_events_disable();  \
        }                            \
        local_events_enable();       \
    } while (0)

/*
 * SCHEDOP_poll: sleeps until one of ports[0..n) is pending (masked ports
 * count) or system time timeout_ns (0: no timeout). Events stay as they
 * are (poll with them disabled to take nothing in an upcall). Returns 0,
 * or -XEN_EINVAL for n > 128 or a port that is not bound. Xen may return
 * early (spurious wakeups): check what you wait for.
 */
long poll(const evtchn_port_t *ports, unsigned int n, uint64_t timeout_ns);

/* Sleeps until system time deadline_ns: poll with no ports, again until it has passed. */
void sleep_until(uint64_t deadline_ns);

#endif /* __PARAVANE_TIME_H__ */

/*
 * Time: system time and wallclock from shared memory, the one-shot and
 * periodic timers on VIRQ_TIMER, block and poll. See <paravane/time.h>.
 * Inputs: vcpu_info.time and shared_info's wallclock (written by the
 * hypervisor, trusted).
 */
#include <paravane/guest.h>
#include <paravane/time.h>
#include "internal.h"

/* The shortest period periodic_start() takes. */
#define PERIOD_MIN_NS (100 * NSEC_PER_USEC)

static shared_info_t *shared(void)
{
    if (__builtin_expect(HYPERVISOR_shared_info == NULL, 0))
        shared_info_map();
    return HYPERVISOR_shared_info;
}

/* rdtsc, not executed before the loads before it (lfence orders it, as Linux's rdtsc_ordered). */
static uint64_t rdtsc_ordered(void)
{
    uint32_t lo, hi;

    asm volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi) :: "memory");
    return ((uint64_t)hi << 32) | lo;
}

/* (delta * mul) >> 32 without losing the high bits: the product needs up to 96. */
static uint64_t scale(uint64_t delta, uint32_t mul)
{
    return (uint64_t)(((unsigned __int128)delta * mul) >> 32);
}

/*
 * The last reading, for a TSC the hypervisor does not call stable (vCPUs
 * on CPUs whose TSCs differ): then, as Linux does, never go below it.
 */
static uint64_t last_now;

uint64_t now_ns(void)
{
    const volatile vcpu_time_info_t *t = &shared()->vcpu_info[0].time;
    uint32_t version, mul;
    uint64_t stamp, system, tsc, delta, now;
    int8_t shift;
    uint8_t flags;

    do {
        version = t->version;
        barrier();
        stamp = t->tsc_timestamp;
        system = t->system_time;
        mul = t->tsc_to_system_mul;
        shift = t->tsc_shift;
        flags = t->flags;
        tsc = rdtsc_ordered();
        barrier();
    } while ((version & 1) || version != t->version);
    delta = tsc > stamp ? tsc - stamp : 0;
    if (shift >= 0)
        delta <<= shift;
    else
        delta >>= -shift;
    now = system + scale(delta, mul);
    if (flags & XEN_PVCLOCK_TSC_STABLE_BIT)
        return now;
    if (now < last_now)
        return last_now;
    last_now = now;
    return now;
}

void wallclock(uint64_t *sec, uint32_t *nsec)
{
    const volatile shared_info_t *s = shared();
    uint32_t version, ns;
    uint64_t base, total;

    do {
        version = s->wc_version;
        barrier();
        base = ((uint64_t)s->wc_sec_hi << 32) | s->wc_sec;
        ns = s->wc_nsec;
        barrier();
    } while ((version & 1) || version != s->wc_version);
    total = ns + now_ns();
    *sec = base + total / NSEC_PER_SEC;
    if (nsec != NULL)
        *nsec = (uint32_t)(total % NSEC_PER_SEC);
}

long timer_set(uint64_t deadline_ns)
{
    vcpu_set_singleshot_timer_t t = { .timeout_abs_ns = deadline_ns, .flags = 0 };

    return HYPERVISOR_vcpu_op(VCPUOP_set_singleshot_timer, 0, &t);
}

long timer_cancel(void)
{
    return HYPERVISOR_vcpu_op(VCPUOP_stop_singleshot_timer, 0, NULL);
}

long timer_xen_periodic(uint64_t period_ns)
{
    vcpu_set_periodic_timer_t p = { .period_ns = period_ns };

    if (period_ns == 0)
        return HYPERVISOR_vcpu_op(VCPUOP_stop_periodic_timer, 0, NULL);
    return HYPERVISOR_vcpu_op(VCPUOP_set_periodic_timer, 0, &p);
}

static int timer_port;   /* 0: VIRQ_TIMER not bound yet */

int timer_bind(evtchn_handler_t h, void *arg)
{
    long rc;
    int port;

    if (timer_port == 0) {
        port = evtchn_bind_virq(VIRQ_TIMER);
        if (port < 0)
            return port;
        timer_port = port;
        rc = timer_xen_periodic(0);
        if (rc != 0)
            return (int)rc;
    }
    evtchn_set_handler(timer_port, h, arg);
    return timer_port;
}

/* --- The periodic timer: one deadline at a time on the one-shot timer. */

static struct {
    uint64_t period, next;       /* period 0: stopped */
    periodic_handler_t h;
    void *arg;
} periodic;

static void periodic_tick(evtchn_port_t port, void *arg)
{
    uint64_t due;

    (void)port;
    (void)arg;
    if (periodic.period == 0)
        return;
    if (now_ns() < periodic.next) {
        timer_set(periodic.next);   /* spurious, or early: wait on */
        return;
    }
    /* The handler first, the next deadline after: the handler runs as soon
     * after its deadline as it can, not one hypercall later. The deadlines
     * are absolute, so arming late shifts none of them. The handler may stop
     * the timer, or restart it with another period. */
    due = periodic.next;
    periodic.next += periodic.period;
    periodic.h(due, periodic.arg);
    if (periodic.period != 0)
        timer_set(periodic.next);
}

long periodic_start(uint64_t period_ns, periodic_handler_t h, void *arg)
{
    unsigned int saved;
    int port;

    if (period_ns < PERIOD_MIN_NS || h == NULL)
        return -XEN_EINVAL;
    port = timer_bind(periodic_tick, NULL);
    if (port < 0)
        return port;
    saved = local_events_save();
    periodic.h = h;
    periodic.arg = arg;
    periodic.period = period_ns;
    periodic.next = now_ns() + period_ns;
    local_events_restore(saved);
    return timer_set(periodic.next);
}

void periodic_stop(void)
{
    periodic.period = 0;
    timer_cancel();
}

/* --- Sleeping. */

long block(void)
{
    return HYPERVISOR_sched_op(SCHEDOP_block, NULL);
}

long poll(const evtchn_port_t *ports, unsigned int n, uint64_t timeout_ns)
{
    sched_poll_t p = { .nr_ports = n, .timeout = timeout_ns };

    /* IN only: the cast drops const. */
    set_xen_guest_handle(p.ports, (evtchn_port_t *)(uintptr_t)ports);
    return HYPERVISOR_sched_op(SCHEDOP_poll, &p);
}

void sleep_until(uint64_t deadline_ns)
{
    while (now_ns() < deadline_ns)
        poll(NULL, 0, deadline_ns);
}

/*
 * events: checks event channels and timers through <paravane/events.h>
 * and <paravane/time.h> in one domain: delivery, the virtual interrupt
 * flag, port masks, EVTCHNOP_unmask, a loopback interdomain channel,
 * EVTCHNOP_status, VIRQ_TIMER and the one-shot timer, SCHEDOP_poll, and an
 * upcall into running code in both return modes. One line per check:
 * "ok <what>" or "FAIL <what>: got <x> expected <y>", then
 * "events: <n> ok, <m> failed (transport <t>)". Returns 0 (poweroff) when
 * every check passed, 1 (crash) otherwise. Expectations are Xen's for a
 * 64-bit PV domU; times are checked only against generous bounds (a timer
 * may be a few ms late on a loaded host).
 */
#include <paravane/guest.h>
#include <paravane/check.h>
#include <paravane/events.h>
#include <paravane/time.h>
#include <paravane/traps.h>

/* Generous upper bounds: "at once" means well before a timeout this long. */
#define AT_ONCE_NS   (200 * NSEC_PER_MSEC)
#define LONG_TIMEOUT (2 * NSEC_PER_SEC)

/* What one port's handler saw. */
struct counter {
    unsigned int n;
    unsigned int mask;                 /* evtchn_upcall_mask inside the handler */
    evtchn_port_t port;
    uint64_t when;                     /* now_ns() at entry */
    struct trap_frame frame;           /* the interrupted frame */
};

static void count_event(evtchn_port_t port, void *arg)
{
    struct counter *c = arg;

    c->when = now_ns();
    c->n++;
    c->port = port;
    c->mask = HYPERVISOR_shared_info->vcpu_info[0].evtchn_upcall_mask;
    if (evtchn_upcall_frame() != NULL)
        c->frame = *evtchn_upcall_frame();
}

static volatile vcpu_info_t *vcpu(void)
{
    return &HYPERVISOR_shared_info->vcpu_info[0];
}

static unsigned int count(const struct counter *c)
{
    return *(const volatile unsigned int *)&c->n;
}

/* --- Delivery and the virtual interrupt flag. */

static void check_delivery(void)
{
    static struct counter ipi_c;
    unsigned long upcalls;
    unsigned int i;
    int ipi;

    check_eq("evtchn_init masks every port (port 1)", evtchn_is_masked(1), 1);
    check_eq("evtchn_init masks every port (port 4095)", evtchn_is_masked(EVTCHN_PORTS - 1), 1);
    check_eq("events start disabled (evtchn_upcall_mask 1)", local_events_enabled(), 0);

    ipi = evtchn_bind_ipi();
    check_ge("bind_ipi returns a port", ipi, 1);
    if (ipi < 1)
        return;
    check_eq("a new port is returned masked", evtchn_is_masked(ipi), 1);
    evtchn_set_handler(ipi, count_event, &ipi_c);
    check_eq("evtchn_set_handler unmasks it", evtchn_is_masked(ipi), 0);

    upcalls = evtchn_upcall_count();
    check_eq("send on an IPI port returns 0", evtchn_send(ipi), 0);
    check_eq("with events disabled, the event stays pending", evtchn_is_pending(ipi), 1);
    check_eq("with events disabled, evtchn_upcall_pending is set", vcpu()->evtchn_upcall_pending, 1);
    check_eq("with events disabled, no upcall and no handler ran",
             (long)(evtchn_upcall_count() - upcalls) + count(&ipi_c), 0);

    local_events_enable();
    check_eq("local_events_enable delivers it at once (forced upcall)", count(&ipi_c), 1);
    check_eq("the handler got its port", ipi_c.port, ipi);
    check_eq("the upcall took the pending bit", evtchn_is_pending(ipi), 0);
    check_eq("the upcall cleared evtchn_upcall_pending", vcpu()->evtchn_upcall_pending, 0);
    check_eq("the handler ran with events masked", ipi_c.mask, 1);
    check_hex("the upcall frame: vector TRAP_EVENT_UPCALL", ipi_c.frame.vector, TRAP_EVENT_UPCALL);
    check_hex("the upcall frame: cs 0xe030 (kernel mode), saved mask 0", ipi_c.frame.cs,
              FLAT_KERNEL_CS & ~3UL);
    check_hex("the upcall frame: rflags.IF set", ipi_c.frame.rflags & X86_EFLAGS_IF, X86_EFLAGS_IF);
    check_hex("the upcall frame: ss", ipi_c.frame.ss, FLAT_KERNEL_SS);
    check_eq("after the upcall events are enabled again", local_events_enabled(), 1);

    check_eq("send with events enabled returns 0", evtchn_send(ipi), 0);
    check_eq("... and the handler has run when the send returns", count(&ipi_c), 2);

    local_events_disable();
    for (i = 0; i < 3; i++)
        evtchn_send(ipi);
    local_events_enable();
    check_eq("three sends while disabled are one event", count(&ipi_c), 3);

    check_eq("close of the IPI port returns 0", evtchn_close(ipi), 0);
    check_eq("close of a closed port: -EINVAL", evtchn_close(ipi), -XEN_EINVAL);
    check_eq("send on a closed port: -EINVAL", evtchn_send(ipi), -XEN_EINVAL);
}

/* --- Port masks and EVTCHNOP_unmask. */

static void check_masks(void)
{
    static struct counter c;
    evtchn_unmask_t op;
    unsigned long upcalls;
    int p;

    p = evtchn_bind_ipi();
    check_ge("bind_ipi for the mask checks", p, 1);
    if (p < 1)
        return;
    evtchn_set_handler(p, count_event, &c);

    evtchn_mask(p);
    upcalls = evtchn_upcall_count();
    evtchn_send(p);
    check_eq("a masked port: the event stays pending", evtchn_is_pending(p), 1);
    check_eq("a masked port: no evtchn_upcall_pending", vcpu()->evtchn_upcall_pending, 0);
    check_eq("a masked port: no upcall, with events enabled",
             (long)(evtchn_upcall_count() - upcalls) + count(&c), 0);
    op.port = p;
    check_eq("EVTCHNOP_unmask returns 0", HYPERVISOR_event_channel_op(EVTCHNOP_unmask, &op), 0);
    check_eq("EVTCHNOP_unmask clears the mask bit", evtchn_is_masked(p), 0);
    check_eq("EVTCHNOP_unmask delivers the pending event when it returns", count(&c), 1);

    evtchn_mask(p);
    evtchn_send(p);
    check_eq("masked again, the next event waits", count(&c), 1);
    evtchn_unmask(p);
    check_eq("evtchn_unmask (in the guest) delivers it", count(&c), 2);

    evtchn_mask(p);
    evtchn_send(p);
    local_events_disable();
    evtchn_unmask(p);
    check_eq("evtchn_unmask with events disabled: nothing yet", count(&c), 2);
    check_eq("... but evtchn_upcall_pending is set", vcpu()->evtchn_upcall_pending, 1);
    local_events_enable();
    check_eq("... and enabling events delivers it", count(&c), 3);

    /* No handler: the upcall masks the port and leaves the event pending for the next handler. */
    evtchn_set_handler(p, NULL, NULL);
    check_eq("evtchn_set_handler(NULL) masks the port", evtchn_is_masked(p), 1);
    evtchn_unmask(p);
    evtchn_send(p);
    check_eq("an event without a handler: the upcall masks the port", evtchn_is_masked(p), 1);
    check_eq("... and leaves it pending", evtchn_is_pending(p), 1);
    evtchn_set_handler(p, count_event, &c);
    check_eq("... for the next handler, which gets it", count(&c), 4);

    op.port = EVTCHN_PORTS;
    check_eq("EVTCHNOP_unmask of port 4096: -EINVAL", HYPERVISOR_event_channel_op(EVTCHNOP_unmask, &op),
             -XEN_EINVAL);
    check_eq("close of the mask checks' port", evtchn_close(p), 0);
}

/* --- A loopback interdomain channel, and EVTCHNOP_status. */

static void check_status_is(const char *what, evtchn_port_t port, uint32_t status,
                            uint32_t dom, uint32_t remote_port)
{
    evtchn_status_t st;
    char w[160];
    long rc = evtchn_status(port, &st);

    snprintf(w, sizeof(w), "%s: status returns 0", what);
    check_eq(w, rc, 0);
    snprintf(w, sizeof(w), "%s: state", what);
    check_eq(w, st.status, status);
    snprintf(w, sizeof(w), "%s: vcpu 0", what);
    check_eq(w, st.vcpu, 0);
    if (status == EVTCHNSTAT_unbound) {
        snprintf(w, sizeof(w), "%s: unbound.dom", what);
        check_eq(w, st.u.unbound.dom, dom);
    } else if (status == EVTCHNSTAT_interdomain) {
        snprintf(w, sizeof(w), "%s: interdomain.dom", what);
        check_eq(w, st.u.interdomain.dom, dom);
        snprintf(w, sizeof(w), "%s: interdomain.port", what);
        check_eq(w, st.u.interdomain.port, remote_port);
    } else if (status == EVTCHNSTAT_virq) {
        snprintf(w, sizeof(w), "%s: virq", what);
        check_eq(w, st.u.virq, dom);
    }
}

static void check_loopback(void)
{
    static struct counter cu, cl;
    evtchn_status_t st;
    domid_t self;
    int u, l;

    u = evtchn_alloc_unbound(DOMID_SELF);
    check_ge("alloc_unbound(DOMID_SELF) returns a port", u, 1);
    if (u < 1)
        return;
    check_eq("status of the unbound port returns 0", evtchn_status(u, &st), 0);
    check_eq("status: EVTCHNSTAT_unbound", st.status, EVTCHNSTAT_unbound);
    self = st.u.unbound.dom;
    check_record(self != DOMID_SELF && self < DOMID_FIRST_RESERVED,
                 "status: unbound.dom is our own domain id, not DOMID_SELF", "DOMID_SELF or reserved",
                 "a domain id");
    printk("events: this is domain %u\n", self);
    check_eq("send on an unbound port returns 0 (dropped)", evtchn_send(u), 0);
    check_eq("... and raises nothing", evtchn_is_pending(u), 0);

    check_eq("bind_interdomain to a port that is not unbound: -EINVAL",
             evtchn_bind_interdomain(DOMID_SELF, EVTCHN_PORTS - 1), -XEN_EINVAL);
    check_eq("bind_interdomain to a domain that does not exist: -ESRCH",
             evtchn_bind_interdomain(DOMID_FIRST_RESERVED - 1, 1), -XEN_ESRCH);

    l = evtchn_bind_interdomain(DOMID_SELF, u);
    check_ge("bind_interdomain(DOMID_SELF, the unbound port) returns a port", l, 1);
    if (l < 1)
        return;
    check_eq("the new local port starts pending", evtchn_is_pending(l), 1);
    check_status_is("the unbound port, now connected", u, EVTCHNSTAT_interdomain, self, l);
    check_status_is("the new port", l, EVTCHNSTAT_interdomain, self, u);
    check_eq("a second bind to the same port: -EINVAL", evtchn_bind_interdomain(DOMID_SELF, u),
             -XEN_EINVAL);

    evtchn_set_handler(u, count_event, &cu);
    evtchn_set_handler(l, count_event, &cl);
    check_eq("the new port's first event reaches its handler", count(&cl), 1);
    check_eq("... and the other end saw nothing", count(&cu), 0);
    evtchn_send(l);
    check_eq("send on one end raises the other", count(&cu), 1);
    evtchn_send(u);
    check_eq("... and back", count(&cl), 2);

    check_eq("close of one end returns 0", evtchn_close(l), 0);
    check_status_is("the closed end", l, EVTCHNSTAT_closed, 0, 0);
    check_status_is("the other end is unbound again", u, EVTCHNSTAT_unbound, self, 0);
    check_eq("send on it returns 0 (dropped)", evtchn_send(u), 0);
    check_eq("close of the other end returns 0", evtchn_close(u), 0);

    check_status_is("port 0 (reserved)", 0, EVTCHNSTAT_closed, 0, 0);
    check_eq("status of port 4096: -EINVAL", evtchn_status(EVTCHN_PORTS, &st), -XEN_EINVAL);
}

/* --- VIRQ_TIMER, the one-shot timer and SCHEDOP_poll. */

static struct counter timer_c;
static int timer_port;

/* Waits, events disabled between checks, until the timer handler has run `n` times or `limit` passes. */
static void wait_timer(unsigned int n, uint64_t limit)
{
    block_until(count(&timer_c) >= n || now_ns() >= limit);
}

static void check_timer(void)
{
    uint64_t t0, deadline, took;
    unsigned int n;

    timer_port = timer_bind(count_event, &timer_c);
    check_ge("timer_bind binds VIRQ_TIMER", timer_port, 1);
    if (timer_port < 1)
        return;
    check_status_is("the VIRQ_TIMER port", timer_port, EVTCHNSTAT_virq, VIRQ_TIMER, 0);
    check_eq("VIRQ_TIMER bound twice: -EEXIST", evtchn_bind_virq(VIRQ_TIMER), -XEN_EEXIST);
    check_eq("VIRQ 24 (NR_VIRQS): -EINVAL", evtchn_bind_virq(24), -XEN_EINVAL);
    check_eq("send on a VIRQ port: -EINVAL", evtchn_send(timer_port), -XEN_EINVAL);

    /* One-shot: at (not before) the deadline. */
    n = count(&timer_c);
    deadline = now_ns() + 3 * NSEC_PER_MSEC;
    check_eq("timer_set returns 0", timer_set(deadline), 0);
    wait_timer(n + 1, deadline + LONG_TIMEOUT);
    check_eq("a one-shot timer fires once, blocking until it does", count(&timer_c), n + 1);
    check_record(timer_c.when >= deadline, "... not before its deadline", "early", "at or after");
    printk("events: the one-shot timer came %lu us after its deadline\n",
           (unsigned long)((timer_c.when - deadline) / NSEC_PER_USEC));

    n = count(&timer_c);
    t0 = now_ns();
    timer_set(t0 - 1);
    wait_timer(n + 1, t0 + LONG_TIMEOUT);
    took = now_ns() - t0;
    check_eq("a deadline in the past fires at once", count(&timer_c), n + 1);
    check_record(took < AT_ONCE_NS, "... well before any timeout", "late", "at once");

    /*
     * Cancelled, and Xen's periodic timer stopped by timer_bind: nothing
     * comes. 20 ms between setting and cancelling: a loaded host can stall
     * the guest for milliseconds in between.
     */
    n = count(&timer_c);
    t0 = now_ns();
    timer_set(t0 + 20 * NSEC_PER_MSEC);
    check_eq("timer_cancel returns 0", timer_cancel(), 0);
    sleep_until(t0 + 40 * NSEC_PER_MSEC);
    check_eq("a cancelled timer does not fire, nor Xen's 10 ms periodic timer (stopped)",
             count(&timer_c) - n + evtchn_is_pending(timer_port), 0);
    check_eq("VCPUOP_set_periodic_timer below 1 ms: -EINVAL", timer_xen_periodic(NSEC_PER_MSEC / 2),
             -XEN_EINVAL);
}

static void check_poll(void)
{
    evtchn_port_t ports[129];
    uint64_t t0, took;
    long rc;
    int p;
    unsigned int i;

    p = evtchn_bind_ipi();
    check_ge("bind_ipi for the poll checks", p, 1);
    if (p < 1 || timer_port < 1)
        return;
    /* Masked ports, events disabled: poll is the only thing that notices. */
    local_events_disable();

    ports[0] = p;
    t0 = now_ns();
    rc = poll(ports, 1, t0 + 5 * NSEC_PER_MSEC);
    took = now_ns() - t0;
    check_eq("poll with a timeout returns 0", rc, 0);
    check_record(took >= 5 * NSEC_PER_MSEC, "... after the timeout, nothing being pending", "early",
                 "after 5 ms");
    printk("events: poll with a 5 ms timeout returned after %lu us\n",
           (unsigned long)(took / NSEC_PER_USEC));

    evtchn_send(p);
    t0 = now_ns();
    rc = poll(ports, 1, t0 + LONG_TIMEOUT);
    took = now_ns() - t0;
    check_eq("poll on an already pending (masked) port returns 0", rc, 0);
    check_record(took < AT_ONCE_NS, "... at once", "waited", "at once");
    evtchn_clear(p);

    evtchn_mask(timer_port);
    ports[1] = timer_port;
    t0 = now_ns();
    timer_set(t0 + 3 * NSEC_PER_MSEC);
    rc = poll(ports, 2, t0 + LONG_TIMEOUT);
    took = now_ns() - t0;
    check_eq("poll wakes when a listed masked port (VIRQ_TIMER) becomes pending", rc, 0);
    check_record(evtchn_is_pending(timer_port) && took >= 3 * NSEC_PER_MSEC && took < AT_ONCE_NS,
                 "... at the timer, the port pending", "not so", "pending after 3 ms");
    evtchn_clear(timer_port);
    evtchn_unmask(timer_port);

    ports[0] = EVTCHN_PORTS - 1;
    check_eq("poll on a port that is not bound: -EINVAL", poll(ports, 1, 0), -XEN_EINVAL);
    for (i = 0; i < ARRAY_SIZE(ports); i++)
        ports[i] = p;
    check_eq("poll on 129 ports: -EINVAL", poll(ports, 129, 0), -XEN_EINVAL);
    evtchn_send(p);
    check_eq("poll on 128 ports, one pending: 0", poll(ports, 128, now_ns() + LONG_TIMEOUT), 0);
    evtchn_clear(p);
    check_eq("close of the poll checks' port", evtchn_close(p), 0);
    local_events_enable();
}

/* --- An upcall into running code, in both return modes. */

void upcall_probe(void);
extern char upcall_probe_spin[], upcall_probe_spin_end[];
extern uint64_t upcall_probe_out[17], upcall_probe_rsp;
extern volatile uint32_t upcall_probe_flag;

static void probe_tick(evtchn_port_t port, void *arg)
{
    (void)port;
    (void)arg;
    count_event(port, &timer_c);
    upcall_probe_flag = 1;
}

static void check_upcall_in_code(unsigned int mode)
{
    static const char *const names[15] = {
        "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11",
        "r12", "r13", "r14", "r15",
    };
    const char *mode_name = mode == TRAP_RETURN_IRETQ ? "iretq" : "iret hypercall";
    char what[160], got[64], expected[64];
    uint64_t t0, rip;
    unsigned int i, bad = 15;

    if (timer_port < 1)
        return;
    trap_return_mode(mode);
    timer_bind(probe_tick, NULL);
    upcall_probe_flag = 0;
    t0 = now_ns();
    /* Far enough ahead that a loaded host's stall cannot make it fire before the loop spins. */
    timer_set(t0 + 20 * NSEC_PER_MSEC);
    upcall_probe();                     /* spins, events enabled, until the timer's upcall */
    printk("events: [%s] the timer's upcall reached the spinning code %lu us after it was set\n",
           mode_name, (unsigned long)((timer_c.when - t0) / NSEC_PER_USEC));
    rip = timer_c.frame.rip;
    snprintf(what, sizeof(what), "[%s] an upcall interrupts running code: the frame's rip is in the "
             "spin loop", mode_name);
    check_record(rip >= (uint64_t)upcall_probe_spin && rip <= (uint64_t)upcall_probe_spin_end, what,
                 "elsewhere", "in the loop");
    snprintf(what, sizeof(what), "[%s] ... its rsp is the loop's", mode_name);
    check_hex(what, timer_c.frame.rsp, upcall_probe_rsp);
    for (i = 0; i < 15; i++)
        if (upcall_probe_out[i] != 0x0101010101010101UL * (i + 1)) {
            bad = i;
            break;
        }
    snprintf(what, sizeof(what), "[%s] ... and the return restores every register, rsp and IF", mode_name);
    if (bad < 15) {
        snprintf(got, sizeof(got), "%s %#lx", names[bad], (unsigned long)upcall_probe_out[bad]);
        snprintf(expected, sizeof(expected), "%s %#lx", names[bad], 0x0101010101010101UL * (bad + 1));
        check_record(0, what, got, expected);
    } else if (upcall_probe_out[15] != upcall_probe_rsp) {
        check_hex(what, upcall_probe_out[15], upcall_probe_rsp);
    } else {
        check_hex(what, upcall_probe_out[16] & X86_EFLAGS_IF, X86_EFLAGS_IF);
    }
    snprintf(what, sizeof(what), "[%s] ... and events are enabled after it", mode_name);
    check_eq(what, local_events_enabled(), 1);
    timer_bind(count_event, &timer_c);
    trap_return_mode(TRAP_RETURN_IRET_HYPERCALL);
}

int main(start_info_t *si)
{
    (void)si;
    printk("events: event channels and timers with the %s transport\n", hypercall_transport());
    traps_init();
    evtchn_init();
    check_delivery();
    check_masks();
    check_loopback();
    check_timer();
    check_poll();
    check_upcall_in_code(TRAP_RETURN_IRET_HYPERCALL);
    check_upcall_in_code(TRAP_RETURN_IRETQ);
    printk("events: %u ok, %u failed (transport %s)\n", check_passed, check_failed,
           hypercall_transport());
    return check_failed == 0 ? 0 : 1;
}

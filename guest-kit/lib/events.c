/*
 * Event channels: the bind helpers, masks, the virtual interrupt flag and
 * evtchn_upcall(), which lib/traps-entry.S calls with each upcall's frame.
 * See <paravane/events.h>.
 * Inputs: shared_info's bitmaps and vcpu_info (written by the hypervisor,
 * trusted), frames from the entry stub.
 */
#include <paravane/guest.h>
#include <paravane/events.h>
#include "internal.h"

#define BITS_PER_WORD 64

static struct {
    evtchn_handler_t h;
    void *arg;
} handlers[EVTCHN_PORTS];

/* The port has no handler (its mask is the caller's to set). */
static void forget(evtchn_port_t port)
{
    handlers[port].h = NULL;
    handlers[port].arg = NULL;
}

static int initialised;
static unsigned long upcalls;
static const struct trap_frame *upcall_frame;

/* shared_info, mapped at the first use (traps_init() or evtchn_init() may not have run yet). */
static shared_info_t *shared(void)
{
    if (__builtin_expect(HYPERVISOR_shared_info == NULL, 0))
        shared_info_map();
    return HYPERVISOR_shared_info;
}

static volatile vcpu_info_t *vcpu(void)
{
    return &shared()->vcpu_info[0];
}

/*
 * A port bound before evtchn_init() would never be delivered (no callback
 * registered, every port masked): binding initialises the events first.
 */
static void ensure_init(void)
{
    if (!initialised)
        evtchn_init();
}

/* Locked bit operations on a bitmap shared with the hypervisor (bit < EVTCHN_PORTS). */
static int sync_test_and_clear_bit(unsigned int bit, volatile xen_ulong_t *map)
{
    int was;

    asm volatile("lock btrq %[b], %[w]"
                 : "=@ccc"(was), [w] "+m"(map[bit / BITS_PER_WORD])
                 : [b] "r"((xen_ulong_t)(bit % BITS_PER_WORD))
                 : "memory");
    return was;
}

static int sync_test_and_set_bit(unsigned int bit, volatile xen_ulong_t *map)
{
    int was;

    asm volatile("lock btsq %[b], %[w]"
                 : "=@ccc"(was), [w] "+m"(map[bit / BITS_PER_WORD])
                 : [b] "r"((xen_ulong_t)(bit % BITS_PER_WORD))
                 : "memory");
    return was;
}

static int test_bit(unsigned int bit, const volatile xen_ulong_t *map)
{
    return (map[bit / BITS_PER_WORD] >> (bit % BITS_PER_WORD)) & 1;
}

static void check_port(const char *what, evtchn_port_t port)
{
    if (port >= EVTCHN_PORTS) {
        printk("%s: port %u is not below %u\n", what, port, EVTCHN_PORTS);
        shutdown(SHUTDOWN_crash);
    }
}

/* --- The virtual interrupt flag. */

void evtchn_force_upcall(void)
{
    /* Any hypercall will do: the hypervisor delivers a pending upcall whenever the vCPU resumes. */
    HYPERVISOR_xen_version(XENVER_version, NULL);
}

void local_events_disable(void)
{
    vcpu()->evtchn_upcall_mask = 1;
    barrier();
}

void local_events_enable(void)
{
    volatile vcpu_info_t *v = vcpu();

    barrier();
    v->evtchn_upcall_mask = 0;
    barrier();
    /* Set while masked: no exit is coming to deliver it, so make one. */
    if (v->evtchn_upcall_pending)
        evtchn_force_upcall();
}

int local_events_enabled(void)
{
    return !(vcpu()->evtchn_upcall_mask & 1);
}

unsigned int local_events_save(void)
{
    volatile vcpu_info_t *v = vcpu();
    unsigned int old = v->evtchn_upcall_mask;

    v->evtchn_upcall_mask = 1;
    barrier();
    return old;
}

void local_events_restore(unsigned int saved)
{
    if (saved & 1)
        local_events_disable();
    else
        local_events_enable();
}

/* --- Ports. */

void evtchn_mask(evtchn_port_t port)
{
    check_port("evtchn_mask", port);
    sync_test_and_set_bit(port, shared()->evtchn_mask);
}

void evtchn_unmask(evtchn_port_t port)
{
    shared_info_t *s = shared();
    volatile vcpu_info_t *v = vcpu();

    check_port("evtchn_unmask", port);
    sync_test_and_clear_bit(port, s->evtchn_mask);
    /*
     * What the hypervisor does for an event on an unmasked port: if the
     * selector bit was clear, nobody has been told of this word yet.
     */
    if (test_bit(port, s->evtchn_pending) &&
        !sync_test_and_set_bit(port / BITS_PER_WORD, (volatile xen_ulong_t *)&v->evtchn_pending_sel))
        v->evtchn_upcall_pending = 1;
    barrier();
    if (v->evtchn_upcall_pending && !(v->evtchn_upcall_mask & 1))
        evtchn_force_upcall();
}

int evtchn_is_pending(evtchn_port_t port)
{
    check_port("evtchn_is_pending", port);
    return test_bit(port, shared()->evtchn_pending);
}

int evtchn_is_masked(evtchn_port_t port)
{
    check_port("evtchn_is_masked", port);
    return test_bit(port, shared()->evtchn_mask);
}

void evtchn_clear(evtchn_port_t port)
{
    check_port("evtchn_clear", port);
    sync_test_and_clear_bit(port, shared()->evtchn_pending);
}

void evtchn_set_handler(evtchn_port_t port, evtchn_handler_t h, void *arg)
{
    unsigned int saved;

    check_port("evtchn_set_handler", port);
    if (h == NULL) {
        evtchn_mask(port);
        forget(port);
        return;
    }
    /* The upcall reads both: change them with events masked. */
    saved = local_events_save();
    handlers[port].arg = arg;
    handlers[port].h = h;
    local_events_restore(saved);
    evtchn_unmask(port);
}

/*
 * A new port from a bind: masked before anything can be delivered on it,
 * whatever the hypervisor did with its mask bit (Xen leaves it as it was,
 * paravane clears it), so that its first event waits for a handler.
 */
static int new_port(long rc, evtchn_port_t port, unsigned int saved)
{
    if (rc == 0)
        evtchn_set_handler(port, NULL, NULL);
    local_events_restore(saved);
    return rc == 0 ? (int)port : (int)rc;
}

int evtchn_alloc_unbound(domid_t remote_dom)
{
    evtchn_alloc_unbound_t op = { .dom = DOMID_SELF, .remote_dom = remote_dom };
    ensure_init();
    unsigned int saved = local_events_save();
    long rc = HYPERVISOR_event_channel_op(EVTCHNOP_alloc_unbound, &op);

    return new_port(rc, op.port, saved);
}

int evtchn_bind_interdomain(domid_t remote_dom, evtchn_port_t remote_port)
{
    evtchn_bind_interdomain_t op = { .remote_dom = remote_dom, .remote_port = remote_port };
    ensure_init();
    unsigned int saved = local_events_save();
    long rc = HYPERVISOR_event_channel_op(EVTCHNOP_bind_interdomain, &op);

    return new_port(rc, op.local_port, saved);
}

int evtchn_bind_virq(uint32_t virq)
{
    evtchn_bind_virq_t op = { .virq = virq, .vcpu = 0 };
    ensure_init();
    unsigned int saved = local_events_save();
    long rc = HYPERVISOR_event_channel_op(EVTCHNOP_bind_virq, &op);

    return new_port(rc, op.port, saved);
}

int evtchn_bind_ipi(void)
{
    evtchn_bind_ipi_t op = { .vcpu = 0 };
    ensure_init();
    unsigned int saved = local_events_save();
    long rc = HYPERVISOR_event_channel_op(EVTCHNOP_bind_ipi, &op);

    return new_port(rc, op.port, saved);
}

long evtchn_send(evtchn_port_t port)
{
    evtchn_send_t op = { .port = port };

    return HYPERVISOR_event_channel_op(EVTCHNOP_send, &op);
}

long evtchn_close(evtchn_port_t port)
{
    evtchn_close_t op = { .port = port };
    unsigned int saved, was_masked;
    long rc;

    if (port >= EVTCHN_PORTS)
        return HYPERVISOR_event_channel_op(EVTCHNOP_close, &op);   /* the hypervisor's answer */
    saved = local_events_save();
    was_masked = sync_test_and_set_bit(port, shared()->evtchn_mask);
    rc = HYPERVISOR_event_channel_op(EVTCHNOP_close, &op);
    if (rc == 0) {
        forget(port);
        evtchn_clear(port);
    } else if (!was_masked) {
        sync_test_and_clear_bit(port, shared()->evtchn_mask);
    }
    local_events_restore(saved);
    return rc;
}

long evtchn_status(evtchn_port_t port, evtchn_status_t *st)
{
    memset(st, 0, sizeof(*st));
    st->dom = DOMID_SELF;
    st->port = port;
    return HYPERVISOR_event_channel_op(EVTCHNOP_status, st);
}

/* --- The upcall. */

unsigned long evtchn_upcall_count(void)
{
    return upcalls;
}

const struct trap_frame *evtchn_upcall_frame(void)
{
    return upcall_frame;
}

/* Runs port's handler; a port without one is masked and left pending for evtchn_set_handler(). */
static void deliver(evtchn_port_t port)
{
    evtchn_handler_t h = handlers[port].h;

    if (h == NULL) {
        evtchn_mask(port);
        return;
    }
    if (sync_test_and_clear_bit(port, shared()->evtchn_pending))
        h(port, handlers[port].arg);
}

unsigned int evtchn_upcall(struct trap_frame *f)
{
    shared_info_t *s = shared();
    volatile vcpu_info_t *v = vcpu();
    const struct trap_frame *outer = upcall_frame;
    xen_ulong_t sel, pending;
    unsigned int word, bit;

    upcalls++;
    upcall_frame = f;
    do {
        /*
         * Clear the flag before taking the selector: an event marked after
         * the xchg sets both again and the loop comes round once more.
         */
        v->evtchn_upcall_pending = 0;
        barrier();
        sel = __atomic_exchange_n((xen_ulong_t *)&v->evtchn_pending_sel, 0, __ATOMIC_SEQ_CST);
        while (sel != 0) {
            word = __builtin_ctzl(sel);
            sel &= sel - 1;
            pending = ((volatile xen_ulong_t *)s->evtchn_pending)[word] &
                      ~((volatile xen_ulong_t *)s->evtchn_mask)[word];
            while (pending != 0) {
                bit = __builtin_ctzl(pending);
                pending &= pending - 1;
                deliver(word * BITS_PER_WORD + bit);
            }
        }
        barrier();
    } while (v->evtchn_upcall_pending);
    upcall_frame = outer;
    return trap_resume_how(f);
}

void evtchn_init(void)
{
    callback_register_t cb = {
        .type = CALLBACKTYPE_event,
        .flags = 0,
        .address = (xen_callback_t)evtchn_upcall_entry,
    };
    unsigned int w;
    long rc;

    if (initialised)
        return;
    shared_info_map();
    for (w = 0; w < EVTCHN_PORTS / BITS_PER_WORD; w++)
        __atomic_store_n(&shared()->evtchn_mask[w], ~(xen_ulong_t)0, __ATOMIC_SEQ_CST);
    rc = HYPERVISOR_callback_op(CALLBACKOP_register, &cb);
    if (rc != 0) {
        printk("evtchn_init: registering the event callback failed: %ld\n", rc);
        shutdown(SHUTDOWN_crash);
    }
    initialised = 1;
}

/*
 * pingpong: two domains bounce events over an interdomain event channel
 * and the client measures round trips with now_ns(). The command line
 * says the role and the peer:
 *
 *   role=server peer=<domid> [rounds=<n>] [warmup=<w>] [wait=block|spin|poll]
 *   role=client peer=<domid> [port=<p>] [rounds=<n>] [warmup=<w>] [wait=block|spin|poll]
 *
 * The rendezvous needs nothing but the peer's domain id. The server's
 * first act is EVTCHNOP_alloc_unbound for the peer; it prints the port
 * (the lowest free one: 1 in a domain with no other port yet). The client
 * binds to port=<p> if given; otherwise it tries the peer's ports 1-63 in
 * turn, and the first the peer left unbound for it is the one (a port
 * not left for us gives -EINVAL, so nothing else can be taken). While
 * every try fails with -EINVAL (the server has not run yet) it yields
 * (SCHEDOP_yield) and tries again, for up to 10 s. The client's new port
 * starts pending (Xen's rule, so nothing raised before the bind is lost):
 * that first event means "connected", not a pong.
 *
 * Then the client sends a ping and waits for the pong, <n> times (default
 * 200), after <w> untimed warm-up round trips (default 0: the hypervisor's
 * code is compiled and its caches filled as it runs, so the first rounds
 * are slower than the rest); the server answers each ping, and must be
 * given the same <w>. wait=block (the default) waits
 * with events disabled around SCHEDOP_block; wait=spin waits with events
 * enabled in a busy loop, so the event arrives as an upcall into running
 * code; wait=poll keeps events disabled and makes one multicall of the
 * send and a SCHEDOP_poll on the port, then clears the port's pending bit
 * itself: no upcall, and one exit per side per round (the cheapest wait a
 * PV guest has). All give up when 10 s pass without an event (a watchdog
 * on VIRQ_TIMER; the poll's timeout for wait=poll). Output:
 *
 *   server: pingpong: server port <p> for domain <peer>, <n> rounds, wait <w>
 *           pingpong: server answered <n + w> pings
 *   client: pingpong: client bound port <l> to domain <peer> port <p> after <k> tries, wait <w>
 *           pingpong: <n> round trips, median <m> us, min <a> us, p99 <q> us, max <x> us (wait <w>)
 *
 * (times in microseconds with one decimal) *
 * then "pingpong: <k> ok, <f> failed" and poweroff (crash if a check failed).
 */
#include <paravane/guest.h>
#include <paravane/check.h>
#include <paravane/events.h>
#include <paravane/time.h>
#include <paravane/traps.h>

#define DEFAULT_ROUNDS 200
#define MAX_ROUNDS     10000
#define MAX_WARMUP     100000
#define SCAN_PORTS     63                  /* the client tries the peer's ports 1..SCAN_PORTS */
#define GIVE_UP_NS     (10 * NSEC_PER_SEC)

/* --- The command line: key=value words. */

/* Copies the value of `key=` into buf (empty if absent); returns whether it was there. */
static int arg(const char *cmdline, const char *key, char *buf, size_t size)
{
    size_t klen = strlen(key), n;
    const char *p = cmdline;

    buf[0] = '\0';
    while (*p != '\0') {
        while (*p == ' ')
            p++;
        if (strncmp(p, key, klen) == 0 && p[klen] == '=') {
            p += klen + 1;
            for (n = 0; p[n] != '\0' && p[n] != ' ' && n + 1 < size; n++)
                buf[n] = p[n];
            buf[n] = '\0';
            return 1;
        }
        while (*p != '\0' && *p != ' ')
            p++;
    }
    return 0;
}

/* The value of `key=` as a number, `fallback` if absent, -1 if not a number. */
static long arg_uint(const char *cmdline, const char *key, long fallback)
{
    char buf[24];
    const char *p = buf;
    long v = 0;

    if (!arg(cmdline, key, buf, sizeof(buf)))
        return fallback;
    if (*p == '\0')
        return -1;
    for (; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
    }
    return v;
}

/* --- Waiting for events. */

enum wait_mode { WAIT_BLOCK, WAIT_SPIN, WAIT_POLL };
static enum wait_mode mode;
static const char *const mode_names[] = { "block", "spin", "poll" };
#define spin (mode == WAIT_SPIN)
static volatile unsigned int received;   /* events on the channel */
static volatile int timed_out;           /* a watchdog period passed without an event */
static unsigned int received_at_watch;
static uint64_t watch_deadline;

static void on_event(evtchn_port_t port, void *arg)
{
    (void)port;
    (void)arg;
    received++;
}

/*
 * VIRQ_TIMER: the watchdog, every GIVE_UP_NS (a one-shot timer re-armed
 * here, so the rounds themselves make no timer hypercall): no event since
 * the last time means the peer is gone. VIRQ_TIMER can come early or
 * spuriously (a tick of Xen's periodic timer, raised before timer_bind()
 * stopped it): only the deadline counts.
 */
static void on_timer(evtchn_port_t port, void *arg)
{
    uint64_t now = now_ns();

    (void)port;
    (void)arg;
    if (now < watch_deadline) {
        timer_set(watch_deadline);
        return;
    }
    if (received == received_at_watch) {
        timed_out = 1;
        return;
    }
    received_at_watch = received;
    watch_deadline = now + GIVE_UP_NS;
    timer_set(watch_deadline);
}

static int start_watchdog(void)
{
    int rc;

    received_at_watch = received;
    watch_deadline = now_ns() + GIVE_UP_NS;
    rc = timer_bind(on_timer, NULL);
    if (rc < 0) {
        printk("FAIL pingpong: binding VIRQ_TIMER: %d\n", rc);
        return rc;
    }
    return (int)timer_set(watch_deadline);
}

/* Waits until `received` reaches `target`; returns 0, or -1 if the watchdog fired first. */
static int wait_for(unsigned int target)
{
    if (spin) {
        /* Events enabled and the vCPU busy: the event comes as an upcall into this loop. */
        local_events_enable();
        while (received < target && !timed_out)
            asm volatile("pause");
    } else {
        /* Test with events disabled; SCHEDOP_block enables them while asleep. */
        block_until(received >= target || timed_out);
    }
    return received >= target ? 0 : -1;
}

/*
 * wait=poll: with events disabled, one multicall sends on the port (if
 * `send_first`) and polls it until it is pending or GIVE_UP_NS pass; the
 * pending bit is then cleared here, as no upcall will. Returns 0 once
 * `received` reaches `target`, -1 on a timeout or a failed call.
 */
static int poll_for(evtchn_port_t port, unsigned int target, int send_first)
{
    evtchn_send_t send = { .port = port };
    evtchn_port_t ports[1] = { port };
    uint64_t until = now_ns() + GIVE_UP_NS;
    multicall_entry_t mc[2];
    sched_poll_t p;
    unsigned int n = 0, k;

    set_xen_guest_handle(p.ports, ports);
    p.nr_ports = 1;
    p.timeout = until;
    if (send_first) {
        mc[n].op = __HYPERVISOR_event_channel_op;
        mc[n].args[0] = EVTCHNOP_send;
        mc[n].args[1] = (unsigned long)&send;
        n++;
    }
    mc[n].op = __HYPERVISOR_sched_op;
    mc[n].args[0] = SCHEDOP_poll;
    mc[n].args[1] = (unsigned long)&p;
    n++;
    if (send_first || !evtchn_is_pending(port)) {
        if (HYPERVISOR_multicall(mc, n) != 0)
            return -1;
        for (k = 0; k < n; k++)
            if (mc[k].result != 0)
                return -1;
    }
    while (!evtchn_is_pending(port)) {
        if (now_ns() >= until)
            return -1;
        if (poll(ports, 1, until) != 0)
            return -1;
    }
    evtchn_clear(port);
    received++;
    return received >= target ? 0 : -1;
}

/* Waits for event `target` on `port`, in the chosen mode; wait=poll may send on the port first. */
static int wait_round(evtchn_port_t port, unsigned int target, int send_first)
{
    if (mode == WAIT_POLL)
        return poll_for(port, target, send_first);
    return wait_for(target);
}

/* --- The two roles. */

static int server(domid_t peer, unsigned int rounds, unsigned int warmup)
{
    evtchn_status_t st;
    unsigned int i;
    int port;

    port = evtchn_alloc_unbound(peer);
    check_ge("alloc_unbound for the peer returns a port", port, 1);
    if (port < 1)
        return 1;
    printk("pingpong: server port %d for domain %u, %u rounds, wait %s\n", port, peer, rounds,
           mode_names[mode]);
    evtchn_set_handler(port, on_event, NULL);
    if (start_watchdog() != 0)
        return 1;

    if (mode == WAIT_POLL)
        local_events_disable();
    rounds += warmup;
    for (i = 0; i < rounds; i++) {
        /* wait=poll: the previous pong goes out in the same multicall as the poll. */
        if (wait_round(port, i + 1, mode == WAIT_POLL && i > 0) != 0) {
            printk("FAIL pingpong: server: no ping %u from domain %u for 10 s\n", i + 1, peer);
            return 1;
        }
        if (i == 0) {
            check_eq("status of the server's port after the first ping returns 0", evtchn_status(port, &st), 0);
            check_eq("... EVTCHNSTAT_interdomain", st.status, EVTCHNSTAT_interdomain);
            check_eq("... connected to the peer", st.u.interdomain.dom, peer);
        }
        if (mode != WAIT_POLL && evtchn_send(port) != 0) {
            printk("FAIL pingpong: server: send failed\n");
            return 1;
        }
    }
    if (mode == WAIT_POLL && evtchn_send(port) != 0) {
        printk("FAIL pingpong: server: send failed\n");
        return 1;
    }
    printk("pingpong: server answered %u pings\n", rounds);
    return 0;
}

/* Binds to the peer's port `want`, or the first of its ports 1..SCAN_PORTS left unbound for us. */
static int connect_to_peer(domid_t peer, long want, evtchn_port_t *remote, unsigned int *tries)
{
    uint64_t until = now_ns() + GIVE_UP_NS;
    evtchn_port_t p, first = want > 0 ? want : 1, last = want > 0 ? want : SCAN_PORTS;
    int rc;

    for (*tries = 1;; (*tries)++) {
        for (p = first; p <= last; p++) {
            rc = evtchn_bind_interdomain(peer, p);
            if (rc > 0) {
                *remote = p;
                return rc;
            }
            if (rc != -XEN_EINVAL)
                return rc;            /* -ESRCH (no such domain) and the like: no point waiting */
        }
        if (now_ns() >= until)
            return -XEN_EINVAL;
        HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    }
}

static void sort(uint64_t *v, unsigned int n)
{
    unsigned int i, j;
    uint64_t x;

    for (i = 1; i < n; i++) {
        x = v[i];
        for (j = i; j > 0 && v[j - 1] > x; j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
}

/* Prints "<label> <t> us", t in ns shown in microseconds with one decimal. */
static void print_us(const char *label, uint64_t t)
{
    uint64_t tenths = (t + 50) / 100;

    printk("%s %lu.%lu us", label, (unsigned long)(tenths / 10), (unsigned long)(tenths % 10));
}

static int client(domid_t peer, long want_port, unsigned int rounds, unsigned int warmup)
{
    static uint64_t rtt[MAX_ROUNDS];
    evtchn_port_t remote = 0;
    evtchn_status_t st;
    unsigned int tries, i;
    uint64_t t0;
    int port;

    port = connect_to_peer(peer, want_port, &remote, &tries);
    check_ge("bind_interdomain to the server's port returns a port", port, 1);
    if (port < 1)
        return 1;
    printk("pingpong: client bound port %d to domain %u port %u after %u tries, wait %s\n", port, peer,
           remote, tries, mode_names[mode]);
    check_eq("status of the client's port returns 0", evtchn_status(port, &st), 0);
    check_eq("... EVTCHNSTAT_interdomain", st.status, EVTCHNSTAT_interdomain);
    check_eq("... to the peer", st.u.interdomain.dom, peer);
    check_eq("... its port", st.u.interdomain.port, remote);
    check_eq("the new port starts pending", evtchn_is_pending(port), 1);
    /* The handler unmasks the port: its first event, the bind's, arrives now. */
    evtchn_set_handler(port, on_event, NULL);
    local_events_enable();
    check_eq("that first event reaches the handler as soon as it is set", received, 1);
    received = 0;
    if (start_watchdog() != 0)
        return 1;

    if (mode == WAIT_POLL)
        local_events_disable();
    for (i = 0; i < warmup + rounds; i++) {
        t0 = now_ns();
        if (mode != WAIT_POLL && evtchn_send(port) != 0) {
            printk("FAIL pingpong: client: send failed\n");
            return 1;
        }
        if (wait_round(port, i + 1, mode == WAIT_POLL) != 0) {
            printk("FAIL pingpong: client: no pong %u from domain %u for 10 s\n", i + 1, peer);
            return 1;
        }
        if (i >= warmup)
            rtt[i - warmup] = now_ns() - t0;
    }
    sort(rtt, rounds);
    printk("pingpong: %u round trips,", rounds);
    print_us(" median", rtt[rounds / 2]);
    print_us(", min", rtt[0]);
    print_us(", p99", rtt[(rounds * 99 + 99) / 100 - 1]);
    print_us(", max", rtt[rounds - 1]);
    printk(" (wait %s)\n", mode_names[mode]);
    return 0;
}

int main(start_info_t *si)
{
    const char *cmdline = (const char *)si->cmd_line;
    char role[16], wait[16];
    long peer = arg_uint(cmdline, "peer", -1);
    long rounds = arg_uint(cmdline, "rounds", DEFAULT_ROUNDS);
    long port = arg_uint(cmdline, "port", 0);
    long warmup = arg_uint(cmdline, "warmup", 0);
    int rc;

    arg(cmdline, "role", role, sizeof(role));
    if (!arg(cmdline, "wait", wait, sizeof(wait)))
        memcpy(wait, "block", sizeof("block"));
    mode = strcmp(wait, "spin") == 0 ? WAIT_SPIN : strcmp(wait, "poll") == 0 ? WAIT_POLL : WAIT_BLOCK;
    if ((strcmp(role, "server") != 0 && strcmp(role, "client") != 0) || peer < 0 ||
        peer >= DOMID_FIRST_RESERVED || rounds < 1 || rounds > MAX_ROUNDS || port < 0 ||
        port >= EVTCHN_PORTS || warmup < 0 || warmup > MAX_WARMUP ||
        (mode == WAIT_BLOCK && strcmp(wait, "block") != 0)) {
        printk("pingpong: bad command line \"%s\": role=server|client peer=<domid> [port=<p>] "
               "[rounds=<1-%u>] [warmup=<0-%u>] [wait=block|spin|poll]\n", cmdline, MAX_ROUNDS, MAX_WARMUP);
        return 1;
    }
    traps_init();
    evtchn_init();
    if (strcmp(role, "server") == 0)
        rc = server((domid_t)peer, (unsigned int)rounds, (unsigned int)warmup);
    else
        rc = client((domid_t)peer, port, (unsigned int)rounds, (unsigned int)warmup);
    printk("pingpong: %u ok, %u failed\n", check_passed, check_failed);
    return rc == 0 && check_failed == 0 ? 0 : 1;
}

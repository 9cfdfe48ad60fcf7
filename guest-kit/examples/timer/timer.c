/*
 * timer: a periodic timer on VIRQ_TIMER (periodic_start(), on the one-shot
 * timer) for a fixed number of ticks, blocking between them, measuring
 * its own lateness: handler entry (now_ns()) minus the tick's deadline.
 * Command line (all optional): ticks=<n> (default 500, at most 20000),
 * period_us=<us> (default 2000, at least 100).
 *
 * Checks, one "ok"/"FAIL" line each: now_ns() never goes backwards (a
 * tight loop, and every reading during the run); every tick comes at or
 * after its deadline; the deadlines the handler got are start + k * period
 * for k = 1..n, each once, in order, with no period up to the last tick
 * left without a call; the run took at least n periods; the wallclock is
 * after 2026-01-01. "lost" (printed, not checked: a last tick late by a
 * whole period on a loaded host is the host's doing) is the periods that
 * elapsed on the clock from the timer's start to the end of the run, less
 * the ticks counted: the ticks a guest counting timer events would be
 * short. The periodic helper calls the handler once for every deadline
 * that passed, late or not, so "lost" can only come from the last tick;
 * "a period or more late" counts the ticks that a timer coalescing missed
 * periods into one event (Xen's periodic timer) would have lost.
 * Prints, in this stable form,
 *
 *   timer: <n> ticks of <p> us, lost <l>, lateness min <a> us median <m> us p99 <q> us max <x> us
 *   timer: a period or more late: <k> of <n> ticks
 *
 * (the lateness figures with one decimal)
 *   timer: <k> ok, <f> failed
 *
 * and powers off if nothing failed (crashes otherwise).
 */
#include <paravane/guest.h>
#include <paravane/check.h>
#include <paravane/events.h>
#include <paravane/time.h>
#include <paravane/traps.h>

#define MAX_TICKS       20000
#define DEFAULT_TICKS   500
#define DEFAULT_PERIOD  2000            /* us */
#define MIN_PERIOD      100             /* us */
/* 2026-01-01T00:00:00Z as a Unix time. */
#define WALLCLOCK_FLOOR 1767225600UL

/* --- The command line: key=value words. */

/* The unsigned value of `key=` in the command line, or `fallback`; -1 if it is not a number. */
static long arg_uint(const char *cmdline, const char *key, long fallback)
{
    size_t klen = strlen(key);
    const char *p = cmdline;
    long v;

    while (*p != '\0') {
        while (*p == ' ')
            p++;
        if (strncmp(p, key, klen) == 0 && p[klen] == '=') {
            p += klen + 1;
            if (*p < '0' || *p > '9')
                return -1;
            for (v = 0; *p >= '0' && *p <= '9'; p++)
                v = v * 10 + (*p - '0');
            return (*p == '\0' || *p == ' ') ? v : -1;
        }
        while (*p != '\0' && *p != ' ')
            p++;
    }
    return fallback;
}

/* --- The run. */

static struct {
    unsigned int want;               /* ticks to take */
    uint64_t period;                 /* ns */
    volatile unsigned int ticks;     /* taken so far */
    uint64_t first_deadline, last_deadline;
    unsigned int out_of_order;       /* deadlines that were not the previous one plus a period */
    uint64_t last_now;               /* the latest now_ns() reading */
    unsigned int backwards;          /* readings below the one before */
    int64_t lateness[MAX_TICKS];     /* ns */
} run;

/* Every reading of the clock goes through here, so any step back is counted. */
static uint64_t clock_now(void)
{
    uint64_t t = now_ns();

    if (t < run.last_now)
        run.backwards++;
    else
        run.last_now = t;
    return t;
}

static void tick(uint64_t deadline, void *arg)
{
    uint64_t now = clock_now();
    unsigned int i = run.ticks;

    (void)arg;
    if (i >= run.want)
        return;
    run.lateness[i] = (int64_t)(now - deadline);
    if (i == 0)
        run.first_deadline = deadline;
    else if (deadline != run.last_deadline + run.period)
        run.out_of_order++;
    run.last_deadline = deadline;
    run.ticks = i + 1;
    if (i + 1 == run.want)
        periodic_stop();
}

/* Sorts v[0..n) in place (Shell sort: no recursion, no allocation). */
static void sort(int64_t *v, unsigned int n)
{
    static const unsigned int gaps[] = { 4071, 1750, 701, 301, 132, 57, 23, 10, 4, 1 };
    unsigned int g, i, j, gap;
    int64_t x;

    for (g = 0; g < ARRAY_SIZE(gaps); g++) {
        gap = gaps[g];
        for (i = gap; i < n; i++) {
            x = v[i];
            for (j = i; j >= gap && v[j - gap] > x; j -= gap)
                v[j] = v[j - gap];
            v[j] = x;
        }
    }
}

/* ns as tenths of a us, rounded toward minus infinity (lateness can only be negative if a tick came early). */
static long tenths(int64_t ns)
{
    return (long)(ns >= 0 ? ns / 100 : -((-ns + 99) / 100));
}

/* Prints " <name> <x.y> us" for ns. */
static void put_us(const char *name, int64_t ns)
{
    long t = tenths(ns);

    printk(" %s %s%ld.%ld us", name, t < 0 ? "-" : "", (t < 0 ? -t : t) / 10, (t < 0 ? -t : t) % 10);
}

int main(start_info_t *si)
{
    const char *cmdline = (const char *)si->cmd_line;
    long ticks = arg_uint(cmdline, "ticks", DEFAULT_TICKS);
    long period_us = arg_uint(cmdline, "period_us", DEFAULT_PERIOD);
    uint64_t t0, t1, start, t_end, sec, periods, gaps, elapsed, lost;
    unsigned int late;
    uint32_t nsec;
    unsigned int i, n;
    long rc;

    if (ticks < 1 || ticks > MAX_TICKS || period_us < MIN_PERIOD) {
        printk("timer: bad command line \"%s\": ticks=<1-%u> period_us=<%u or more>\n", cmdline,
               MAX_TICKS, MIN_PERIOD);
        return 1;
    }
    run.want = (unsigned int)ticks;
    run.period = (uint64_t)period_us * NSEC_PER_USEC;
    traps_init();
    evtchn_init();

    /* The clock alone: a tight loop must never see it step back. */
    for (i = 0; i < 100000; i++)
        clock_now();
    check_eq("now_ns() never goes backwards in 100000 readings", run.backwards, 0);

    printk("timer: %u ticks of %lu us, blocking between them\n", run.want, period_us);
    /* The timer starts somewhere between t0 and t1 (periodic_start makes
     * hypercalls, and the host may be off the CPU for a while in between). */
    t0 = clock_now();
    rc = periodic_start(run.period, tick, NULL);
    t1 = clock_now();
    check_eq("periodic_start returns 0", rc, 0);
    if (rc != 0)
        return 1;
    /* Each wake-up reads the clock too, so that a step back in it is seen. */
    block_until((clock_now(), run.ticks >= run.want));
    t_end = clock_now();

    n = run.ticks;
    /* Periods from the start to the last tick's deadline, each of which should have had its call. */
    start = n ? run.first_deadline - run.period : t0;
    periods = (run.last_deadline - start) / run.period;
    gaps = periods > n ? periods - n : 0;
    /* Deadlines the clock says had passed at the end (the first was a period after the timer started), against the ticks counted. */
    elapsed = n ? (t_end - (run.first_deadline - run.period)) / run.period : 0;
    lost = elapsed > n ? elapsed - n : 0;
    sort(run.lateness, n);
    printk("timer: %u ticks of %lu us, lost %lu, lateness", n, period_us, (unsigned long)lost);
    put_us("min", run.lateness[0]);
    put_us("median", run.lateness[n / 2]);
    put_us("p99", run.lateness[(n * 99 + 99) / 100 - 1]);
    put_us("max", run.lateness[n - 1]);
    printk("\n");
    for (late = 0; late < n && run.lateness[n - 1 - late] >= (int64_t)run.period; late++)
        ;
    printk("timer: a period or more late: %u of %u ticks\n", late, n);

    check_eq("every tick came at or after its deadline (min lateness >= 0)", run.lateness[0] >= 0, 1);
    check_eq("the deadlines were start + k * period, each once, in order", run.out_of_order, 0);
    check_eq("no tick lost: one call per period up to the last tick", gaps, 0);
    check_record(start >= t0 && start <= t1, "the first deadline was one period after periodic_start",
                 "not", "was");
    check_record(t_end - start >= (uint64_t)n * run.period, "the run took at least ticks * period",
                 "less", "at least");
    check_eq("now_ns() never went backwards during the run", run.backwards, 0);

    wallclock(&sec, &nsec);
    printk("timer: wallclock %lu.%09u s since 1970\n", (unsigned long)sec, nsec);
    check_record(sec >= WALLCLOCK_FLOOR, "the wallclock is after 2026-01-01", "before", "after");
    check_record(nsec < NSEC_PER_SEC, "wallclock nsec is below 10^9", "not", "below");

    printk("timer: %u ok, %u failed\n", check_passed, check_failed);
    return check_failed == 0 ? 0 : 1;
}

/*
 * ticks: timekeeping, the question of whether a mode loses timer ticks: a
 * periodic tick of PERIOD_US (<paravane/platform.h>: PV Xen's periodic
 * timer on VIRQ_TIMER, natively the PIT's counter 0 on IRQ 0) counted for
 * DURATION_MS of the clock (PV the PV clock, natively the TSC calibrated
 * against the PIT), waiting between ticks. A tick the vCPU was not there
 * to take is lost: under PV Xen's periodic timer coalesces missed periods
 * into one event, natively a missed interrupt is gone. The window is
 * stretched until the first tick if none came in it (a host that loaded
 * loses them all), so a tick that never comes is a hang, not a zero.
 * Prints
 *   ticks: <counted> of <expected> ticks of <period> us in <ms> ms, lost <n>
 */
#include <paravane/guest.h>
#include <paravane/platform.h>
#include <paravane/traps.h>

#define PERIOD_US 1000u
#define DURATION_MS 300u

static volatile unsigned long counted;

static void on_tick(void)
{
    counted++;
}

int main(start_info_t *si)
{
    uint64_t start, elapsed, expected;
    long rc;

    (void)si;
    traps_init();
    printk("ticks: platform %s\n", platform_name());
    rc = platform_tick_start(PERIOD_US, on_tick);
    if (rc != 0) {
        printk("ticks: %s: the tick could not be started: %ld\n", platform_name(), rc);
        return 1;
    }
    start = platform_now_ns();
    counted = 0;
    /* Until the window has passed and a tick has come: on a host too loaded to give one in the window, the count is still not zero. */
    while (platform_now_ns() - start < (uint64_t)DURATION_MS * 1000000 || counted == 0)
        platform_wait();
    elapsed = platform_now_ns() - start;
    platform_tick_stop();
    expected = elapsed / ((uint64_t)PERIOD_US * 1000);
    printk("ticks: %lu of %lu ticks of %u us in %lu ms, lost %lu\n", counted, (unsigned long)expected, PERIOD_US,
           (unsigned long)(elapsed / 1000000), counted < expected ? (unsigned long)(expected - counted) : 0UL);
    return counted > 0 ? 0 : 1;
}

/*
 * From _start to main and back out: store start_info, run main, and turn
 * its return value into a shutdown reason (see <paravane/start.h>).
 * Input: the start_info pointer the hypervisor passed in rsi (trusted: the
 * hypervisor built it).
 */
#include <paravane/guest.h>

start_info_t *start_info;

void guest_start(start_info_t *si)
{
    int rc;

    start_info = si;
    rc = main(si);
    if (rc != 0) {
        printk("main returned %d: shutting down with SHUTDOWN_crash\n", rc);
        shutdown(SHUTDOWN_crash);
    }
    shutdown(SHUTDOWN_poweroff);
}

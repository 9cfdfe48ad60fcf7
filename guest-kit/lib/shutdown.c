/*
 * Ending the domain: SCHEDOP_shutdown with a reason. It does not return;
 * if a hypervisor lets it, the guest tries SHUTDOWN_crash and then faults
 * (ud2 with no trap table installed ends the domain too).
 */
#include <paravane/guest.h>

void shutdown(unsigned int reason)
{
    struct sched_shutdown s = { .reason = reason };
    long rc;

    console_flush();
    rc = HYPERVISOR_sched_op(SCHEDOP_shutdown, &s);
    printk("SCHEDOP_shutdown(%u) returned %ld: crashing\n", reason, rc);
    console_flush();
    s.reason = SHUTDOWN_crash;
    HYPERVISOR_sched_op(SCHEDOP_shutdown, &s);
    for (;;)
        asm volatile("ud2");
}

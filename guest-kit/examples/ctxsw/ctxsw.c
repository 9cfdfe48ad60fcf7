/*
 * ctxsw: what switching between two processes' address spaces costs in
 * each mode (lmbench's context switch, less the scheduler): two address
 * spaces (<paravane/platform.h>), each with a window of PAGES pages of its
 * own, entered in turn SWITCHES times, every page of the window read after
 * each switch (the TLB refills a switch causes). PV switches base
 * pointers by hypercall; natively CR3 is loaded. The reads give the same
 * checksum in every mode. Prints
 *   ctxsw: switch <cycles per switch> cycles per switch (<n> switches)
 *   ctxsw: checksum <sum>
 */
#include <paravane/guest.h>
#include <paravane/platform.h>

#define SWITCHES 1000u
#define PAGES 8u

static uint8_t pages[2][PAGES][4096] __attribute__((aligned(4096)));

int main(start_info_t *si)
{
    const void *list[2][PAGES];
    unsigned long sum = 0;
    uint64_t t;
    long rc = 0;

    (void)si;
    for (unsigned int a = 0; a < 2; a++) {
        for (unsigned int i = 0; i < PAGES; i++) {
            pages[a][i][0] = (uint8_t)(10 * a + i + 1);
            list[a][i] = pages[a][i];
        }
        if (rc == 0)
            rc = platform_aspace_create(a, list[a], PAGES);
    }
    printk("ctxsw: platform %s\n", platform_name());
    t = platform_cycles();
    for (unsigned int s = 0; s < SWITCHES && rc == 0; s++) {
        rc = platform_aspace_enter(s & 1);
        for (unsigned int i = 0; i < PAGES && rc == 0; i++)
            sum += *(volatile uint8_t *)(PLATFORM_WINDOW_VA + ((unsigned long)i << 12));
    }
    t = platform_cycles() - t;
    if (rc == 0)
        rc = platform_aspace_leave();
    for (unsigned int a = 0; a < 2 && rc == 0; a++)
        rc = platform_aspace_destroy(a);
    if (rc != 0) {
        printk("ctxsw: %s: an address-space operation failed: %ld\n", platform_name(), rc);
        return 1;
    }
    printk("ctxsw: switch %lu cycles per switch (%u switches)\n", (unsigned long)(t / SWITCHES), SWITCHES);
    printk("ctxsw: checksum %lu\n", sum);
    return 0;
}

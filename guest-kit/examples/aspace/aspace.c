/*
 * aspace: what a new address space costs in each mode, the core of
 * lmbench's fork and exec (and Xen's SOSP'03 comparison): ROUNDS times an
 * address space of the workload's own is built (the kernel's mappings and
 * a window of PAGES of the kernel's pages), entered, read through the
 * window, left and taken apart (<paravane/platform.h>: PV validates and
 * pins four tables and switches base pointers by hypercall; natively
 * stores and CR3 loads). The reads give the same checksum in every mode.
 * Prints
 *   aspace: create-enter-destroy <cycles per round> cycles per round (<n> rounds)
 *   aspace: checksum <sum>
 */
#include <paravane/guest.h>
#include <paravane/platform.h>

#define ROUNDS 64u
#define PAGES 16u

static uint8_t pages[PAGES][4096] __attribute__((aligned(4096)));

int main(start_info_t *si)
{
    const void *list[PAGES];
    unsigned long sum = 0;
    uint64_t t;
    long rc = 0;

    (void)si;
    for (unsigned int i = 0; i < PAGES; i++) {
        pages[i][0] = (uint8_t)(i + 1);
        list[i] = pages[i];
    }
    printk("aspace: platform %s\n", platform_name());
    t = platform_cycles();
    for (unsigned int r = 0; r < ROUNDS && rc == 0; r++) {
        /* Each round maps the pages rotated by r, so each build differs. */
        const void *rotated[PAGES];

        for (unsigned int i = 0; i < PAGES; i++)
            rotated[i] = list[(i + r) % PAGES];
        rc = platform_aspace_create(0, rotated, PAGES);
        if (rc == 0)
            rc = platform_aspace_enter(0);
        if (rc == 0) {
            for (unsigned int i = 0; i < PAGES; i++)
                sum += (i + 1) * *(volatile uint8_t *)(PLATFORM_WINDOW_VA + ((unsigned long)i << 12));
            rc = platform_aspace_leave();
        }
        if (rc == 0)
            rc = platform_aspace_destroy(0);
    }
    t = platform_cycles() - t;
    if (rc != 0) {
        printk("aspace: %s: an address-space operation failed: %ld\n", platform_name(), rc);
        return 1;
    }
    printk("aspace: create-enter-destroy %lu cycles per round (%u rounds)\n", (unsigned long)(t / ROUNDS), ROUNDS);
    printk("aspace: checksum %lu\n", sum);
    return 0;
}

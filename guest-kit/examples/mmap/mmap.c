/*
 * mmap: what mapping and unmapping N pages costs, after lmbench's mmap
 * latency (the page-table side of mmap and munmap, without a file
 * system): ROUNDS times, N of the kernel's pages are mapped into the
 * region (<paravane/platform.h>) in one batch, each is read through it,
 * and all N are unmapped in one batch (PV: two mmu_update batches of N
 * and their TLB flushes; natively N stores and a CR3 reload each way),
 * for N = 16, 128 and 512. The reads give the same checksum in every
 * mode. Prints
 *   mmap: <N> pages <cycles per round> cycles per round (<rounds> rounds)
 *   mmap: checksum <sum>
 */
#include <paravane/guest.h>
#include <paravane/platform.h>

#define ROUNDS 16u
#define MAX_PAGES PLATFORM_REGION_SLOTS

/* The pages mapped: page k holds k + 1 in its first byte. */
static uint8_t pages[MAX_PAGES][4096] __attribute__((aligned(4096)));
static uint64_t ptes[MAX_PAGES], none[MAX_PAGES];

int main(start_info_t *si)
{
    static const unsigned int sizes[] = { 16, 128, 512 };
    unsigned long sum = 0;
    long rc;

    (void)si;
    printk("mmap: platform %s\n", platform_name());
    rc = platform_region_init();
    if (rc != 0) {
        printk("mmap: the region could not be set up: %ld\n", rc);
        return 1;
    }
    for (unsigned int k = 0; k < MAX_PAGES; k++) {
        pages[k][0] = (uint8_t)(k + 1);
        ptes[k] = platform_pte(pages[k], 0);
    }
    for (unsigned int s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        unsigned int n = sizes[s];
        uint64_t t0 = platform_cycles();

        for (unsigned int r = 0; r < ROUNDS; r++) {
            rc = platform_region_set_all(ptes, n);
            for (unsigned int k = 0; rc == 0 && k < n; k++)
                sum += *(volatile uint8_t *)(PLATFORM_REGION_VA + ((unsigned long)k << 12));
            if (rc == 0)
                rc = platform_region_set_all(none, n);
            if (rc != 0) {
                printk("mmap: mapping %u pages failed: %ld\n", n, rc);
                return 1;
            }
        }
        printk("mmap: %u pages %lu cycles per round (%u rounds)\n", n, (unsigned long)((platform_cycles() - t0) / ROUNDS), ROUNDS);
    }
    printk("mmap: checksum %lu\n", sum);
    return 0;
}

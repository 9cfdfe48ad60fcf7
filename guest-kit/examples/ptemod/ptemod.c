/*
 * ptemod: what a page-table update costs in each mode, after Adams &
 * Agesen's ptemod: the 512 entries of a page table of its own
 * (<paravane/platform.h>'s region) are rewritten ROUNDS times one at a
 * time (PV: an update_va_mapping each; natively a store and invlpg) and
 * ROUNDS times all at once (PV: one mmu_update of 512 and a TLB flush;
 * natively 512 stores and a CR3 reload), alternating two pages of the
 * kernel's so that each round changes every entry. Reading the pages
 * through the region after each round checks every update took: the same
 * checksum in every mode. Prints
 *   ptemod: single <cycles per entry> cycles per entry (<n> entries)
 *   ptemod: batch <cycles per entry> cycles per entry (<n> entries)
 *   ptemod: checksum <sum>
 */
#include <paravane/guest.h>
#include <paravane/platform.h>

#define ROUNDS 8u
#define SLOTS PLATFORM_REGION_SLOTS

static uint8_t page_a[4096] __attribute__((aligned(4096))) = { 1 };
static uint8_t page_b[4096] __attribute__((aligned(4096))) = { 2 };
static uint64_t ptes[SLOTS];

/* The first byte of each slot's page, summed, read through the region. */
static unsigned long region_sum(void)
{
    unsigned long sum = 0;

    for (unsigned int i = 0; i < SLOTS; i++)
        sum += *(volatile uint8_t *)(PLATFORM_REGION_VA + ((unsigned long)i << 12));
    return sum;
}

int main(start_info_t *si)
{
    uint64_t a, b, t, single = 0, batch = 0;
    unsigned long check = 0;
    long rc;

    (void)si;
    rc = platform_region_init();
    if (rc != 0) {
        printk("ptemod: %s: the region could not be set up: %ld\n", platform_name(), rc);
        return 1;
    }
    a = platform_pte(page_a, 0);
    b = platform_pte(page_b, 0);
    printk("ptemod: platform %s\n", platform_name());
    for (unsigned int r = 0; r < ROUNDS; r++) {
        /* One at a time: even slots page a, odd slots page b (then the other way round). */
        t = platform_cycles();
        for (unsigned int i = 0; i < SLOTS && rc == 0; i++)
            rc = platform_region_set(i, ((i + r) & 1) ? b : a);
        single += platform_cycles() - t;
        check += region_sum();
        /* All at once, each entry swapped. */
        for (unsigned int i = 0; i < SLOTS; i++)
            ptes[i] = ((i + r) & 1) ? a : b;
        t = platform_cycles();
        if (rc == 0)
            rc = platform_region_set_all(ptes, SLOTS);
        batch += platform_cycles() - t;
        check += region_sum();
    }
    if (rc != 0) {
        printk("ptemod: an update failed: %ld\n", rc);
        return 1;
    }
    printk("ptemod: single %lu cycles per entry (%u entries)\n", (unsigned long)(single / (ROUNDS * SLOTS)), ROUNDS * SLOTS);
    printk("ptemod: batch %lu cycles per entry (%u entries)\n", (unsigned long)(batch / (ROUNDS * SLOTS)), ROUNDS * SLOTS);
    printk("ptemod: checksum %lu\n", check);
    return 0;
}

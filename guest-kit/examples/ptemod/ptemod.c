/*
 * ptemod: what a page-table update costs in each mode, after Adams &
 * Agesen's ptemod: the 512 entries of a page table of its own
 * (<paravane/platform.h>'s region) are rewritten ROUNDS times one at a
 * time (PV: an update_va_mapping each; natively a store and invlpg) and
 * ROUNDS times all at once (PV: one mmu_update of 512 and a TLB flush;
 * natively 512 stores and a CR3 reload), alternating two pages of the
 * kernel's so that each round changes every entry. Reading the pages
 * through the region after each round checks every update took: the same
 * checksum in every mode. Last, every entry is cleared in one batch and
 * each slot touched: the #PF handler maps it and the access is retried
 * (a demand fault: the fault's delivery, one update and the return).
 * Prints
 *   ptemod: single <cycles per entry> cycles per entry (<n> entries)
 *   ptemod: batch <cycles per entry> cycles per entry (<n> entries)
 *   ptemod: demand fault <cycles per entry> cycles per entry (<n> entries)
 *   ptemod: checksum <sum>
 */
#include <paravane/guest.h>
#include <paravane/platform.h>
#include <paravane/traps.h>

#define ROUNDS 8u
#define SLOTS PLATFORM_REGION_SLOTS

static uint8_t page_a[4096] __attribute__((aligned(4096))) = { 1 };
static uint8_t page_b[4096] __attribute__((aligned(4096))) = { 2 };
static uint64_t ptes[SLOTS];

/* What a demand fault in the region maps: slot i's page, as the rounds above left it. */
static uint64_t fault_pte[SLOTS];
static unsigned long faults;

/* #PF: a slot of the region not mapped yet is mapped (the access is then retried); anything else is a real fault. */
static void on_page_fault(struct trap_frame *f)
{
    unsigned long va = trap_cr2();

    if (va < PLATFORM_REGION_VA || va >= PLATFORM_REGION_VA + ((unsigned long)SLOTS << 12) || (f->error_code & TRAP_PF_PRESENT))
        trap_default_handler(f);
    faults++;
    if (platform_region_set((unsigned int)((va - PLATFORM_REGION_VA) >> 12), fault_pte[(va - PLATFORM_REGION_VA) >> 12]) != 0)
        trap_default_handler(f);
}

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
    /* Demand faults: every slot unmapped in one batch, then each first touch maps its page in the #PF handler. */
    traps_init();
    trap_set_handler(TRAP_PF, on_page_fault);
    for (unsigned int i = 0; i < SLOTS; i++) {
        fault_pte[i] = ptes[i];
        ptes[i] = 0;
    }
    if (rc == 0)
        rc = platform_region_set_all(ptes, SLOTS);
    t = platform_cycles();
    if (rc == 0)
        check += region_sum();
    t = platform_cycles() - t;
    if (rc != 0 || faults != SLOTS) {
        printk("ptemod: an update failed (%ld), or %lu faults for %u slots\n", rc, faults, SLOTS);
        return 1;
    }
    printk("ptemod: single %lu cycles per entry (%u entries)\n", (unsigned long)(single / (ROUNDS * SLOTS)), ROUNDS * SLOTS);
    printk("ptemod: batch %lu cycles per entry (%u entries)\n", (unsigned long)(batch / (ROUNDS * SLOTS)), ROUNDS * SLOTS);
    printk("ptemod: demand fault %lu cycles per entry (%u entries)\n", (unsigned long)(t / SLOTS), SLOTS);
    printk("ptemod: checksum %lu\n", check);
    return 0;
}

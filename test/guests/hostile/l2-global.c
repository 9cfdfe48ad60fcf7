/*
 * Sets the global bit on the valid L2 entry over the scratch pages (G is
 * for L1 entries only).
 * Xen: -EINVAL.
 */
#include "hostile.h"

static int attack(void)
{
    unsigned long va;
    uint64_t before;
    long rc;

    va = hx_scratch(0);
    before = hx_pte(va, 2);
    rc = hx_mmu1(hx_pte_maddr(va, 2), before | _PAGE_GLOBAL);
    hx_attempt(rc, hx_pte(va, 2) == before, "setting G on an L2 entry");
    return 0;
}

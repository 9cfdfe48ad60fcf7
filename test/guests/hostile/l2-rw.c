/*
 * A writable mapping of the live L2 table (the one on the walk to the
 * scratch page), through mmu_update on an L1 entry and through
 * update_va_mapping: the guest could then rewrite its L2 at will.
 * Xen: -EBUSY.
 */
#include "hostile.h"

int main(start_info_t *si)
{
    unsigned long va, target;
    uint64_t before;
    long rc;

    (void)si;
    if ((rc = hx_setup()))
        return (int)rc;
    va = hx_scratch(0);
    target = hx_table_mfn(va, 2);
    before = hx_pte(va, 1);
    rc = hx_mmu1(hx_pte_maddr(va, 1), (target << 12) | HX_RW);
    hx_attempt(rc, hx_pte(va, 1) == before, "mmu_update mapping the L2 writable");
    rc = hx_update_va_mapping(va, (target << 12) | HX_RW, UVMF_INVLPG);
    hx_attempt(rc, hx_pte(va, 1) == before, "update_va_mapping mapping the L2 writable");
    return hx_finish();
}

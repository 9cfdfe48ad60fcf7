/*
 * A writable mapping of a live L1 table, asked with mmu_update on that
 * very L1: one of its entries would map the L1 itself read-write.
 * Xen: -EBUSY (a page table cannot take a writable type reference).
 */
#include "hostile.h"

int main(start_info_t *si)
{
    unsigned long va, l1;
    uint64_t before;
    long rc;

    (void)si;
    if ((rc = hx_setup()))
        return (int)rc;
    va = hx_scratch(0);
    l1 = hx_table_mfn(va, 1);
    before = hx_pte(va, 1);
    rc = hx_mmu1(hx_pte_maddr(va, 1), (l1 << 12) | HX_RW);
    hx_attempt(rc, hx_pte(va, 1) == before, "mmu_update mapping its own L1 writable");
    return hx_finish();
}

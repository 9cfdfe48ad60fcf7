/*
 * Re-maps the scratch page to its own frame with bit 62 set, the bit
 * Xen keeps for grant mappings.
 * Xen: -EINVAL (debug builds; a release build lets it through).
 */
#include "hostile.h"

int main(start_info_t *si)
{
    unsigned long va;
    uint64_t before;
    long rc;

    (void)si;
    if ((rc = hx_setup()))
        return (int)rc;
    va = hx_scratch(0);
    before = hx_pte(va, 1);
    rc = hx_update_va_mapping(va, before | _PAGE_GNTTAB, UVMF_INVLPG);
    hx_attempt(rc, hx_pte(va, 1) == before, "update_va_mapping with bit 62 (Xen's grant-mapping bit)");
    rc = hx_mmu1(hx_pte_maddr(va, 1), before | _PAGE_GNTTAB);
    hx_attempt(rc, hx_pte(va, 1) == before, "mmu_update with bit 62 (Xen's grant-mapping bit)");
    return hx_finish();
}

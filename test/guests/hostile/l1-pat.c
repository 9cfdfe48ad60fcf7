/*
 * Re-maps the scratch page to its own frame with the PAT bit set:
 * cache attributes are for domains with I/O privileges.
 * Xen: -EINVAL.
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
    rc = hx_update_va_mapping(va, before | _PAGE_PAT, UVMF_INVLPG);
    hx_attempt(rc, hx_pte(va, 1) == before, "update_va_mapping with PAT");
    rc = hx_mmu1(hx_pte_maddr(va, 1), before | _PAGE_PAT);
    hx_attempt(rc, hx_pte(va, 1) == before, "mmu_update with PAT");
    return hx_finish();
}

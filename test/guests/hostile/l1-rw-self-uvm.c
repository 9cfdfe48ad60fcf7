/*
 * A writable mapping of a live L1 table through update_va_mapping, at an
 * address that L1 itself maps.
 * Xen: -EBUSY.
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
    rc = hx_update_va_mapping(va, (l1 << 12) | HX_RW, UVMF_INVLPG);
    hx_attempt(rc, hx_pte(va, 1) == before, "update_va_mapping mapping its own L1 writable");
    return hx_finish();
}

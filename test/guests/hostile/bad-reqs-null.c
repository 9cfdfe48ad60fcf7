/*
 * mmu_update, mmuext_op and multicall with their request array at
 * address 0 (nothing is mapped in the first page).
 * Xen: -EFAULT for each.
 */
#include "hostile.h"

int main(start_info_t *si)
{
    long rc;

    (void)si;
    if ((rc = hx_setup()))
        return (int)rc;
    rc = hx_mmu_update(0UL, 1, 0, DOMID_SELF);
    hx_attempt(rc, 1, "mmu_update");
    rc = hx_mmuext_op(0UL, 1, 0, DOMID_SELF);
    hx_attempt(rc, 1, "mmuext_op");
    rc = hx_multicall(0UL, 1);
    hx_attempt(rc, 1, "multicall");
    return hx_finish();
}

/*
 * mmu_update, mmuext_op and multicall with their request array at
 * 0x0000800000000000, the first non-canonical address.
 * Xen: -EFAULT for each.
 */
#include "hostile.h"

int main(start_info_t *si)
{
    long rc;

    (void)si;
    if ((rc = hx_setup()))
        return (int)rc;
    rc = hx_mmu_update(HX_NON_CANONICAL, 1, 0, DOMID_SELF);
    hx_attempt(rc, 1, "mmu_update");
    rc = hx_mmuext_op(HX_NON_CANONICAL, 1, 0, DOMID_SELF);
    hx_attempt(rc, 1, "mmuext_op");
    rc = hx_multicall(HX_NON_CANONICAL, 1);
    hx_attempt(rc, 1, "multicall");
    return hx_finish();
}

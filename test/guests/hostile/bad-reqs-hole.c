/*
 * mmu_update, mmuext_op and multicall with their request array at
 * 0xffff800000000000, in the hypervisor's area (Xen's M2P: readable
 * there on Xen, but never a hypercall argument).
 * Xen: -EFAULT for each.
 */
#include "hostile.h"

int main(start_info_t *si)
{
    long rc;

    (void)si;
    if ((rc = hx_setup()))
        return (int)rc;
    rc = hx_mmu_update(HX_HOLE_M2P, 1, 0, DOMID_SELF);
    hx_attempt(rc, 1, "mmu_update");
    rc = hx_mmuext_op(HX_HOLE_M2P, 1, 0, DOMID_SELF);
    hx_attempt(rc, 1, "mmuext_op");
    rc = hx_multicall(HX_HOLE_M2P, 1);
    hx_attempt(rc, 1, "multicall");
    return hx_finish();
}

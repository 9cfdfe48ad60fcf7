/*
 * Points L2 slot 511 at the L2 itself, writable: the L2 would be walked
 * as an L1, its entries as page mappings.
 * Xen: -EINVAL (paravane refuses linear page tables; Xen does too for
 * writable ones, and for read-only ones when built without PV_LINEAR_PT).
 */
#include "hostile.h"

int main(start_info_t *si)
{
    unsigned long table, target;
    long rc;

    (void)si;
    if ((rc = hx_setup()))
        return (int)rc;
    table = hx_table_mfn(HX_VIRT_BASE, 2);
    target = hx_table_mfn(HX_VIRT_BASE, 2);
    if (hx_table(table)[511] != 0)
        return hx_setup_failed("the slot is in use", (long)hx_table(table)[511]);
    rc = hx_mmu1(hx_slot_maddr(table, 511), (target << 12) | HX_RW);
    hx_attempt(rc, hx_table(table)[511] == 0, "an L2 naming itself");
    return hx_finish();
}

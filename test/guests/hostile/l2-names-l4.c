/*
 * Points L2 slot 511 at the L4: a table two levels up, to be walked as an
 * L1.
 * Xen: -EINVAL (a type conflict; the linear-table exception needs the
 * same level).
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
    target = hx_l4_mfn();
    if (hx_table(table)[511] != 0)
        return hx_setup_failed("the slot is in use", (long)hx_table(table)[511]);
    rc = hx_mmu1(hx_slot_maddr(table, 511), (target << 12) | HX_RO);
    hx_attempt(rc, hx_table(table)[511] == 0, "an L2 entry naming the L4");
    return hx_finish();
}

/*
 * Points L3 slot 0 at the L3 itself, writable (an L3 naming an L3;
 * XSA-185's shape).
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
    table = hx_table_mfn(HX_VIRT_BASE, 3);
    target = hx_table_mfn(HX_VIRT_BASE, 3);
    if (hx_table(table)[0] != 0)
        return hx_setup_failed("the slot is in use", (long)hx_table(table)[0]);
    rc = hx_mmu1(hx_slot_maddr(table, 0), (target << 12) | HX_RW);
    hx_attempt(rc, hx_table(table)[0] == 0, "an L3 naming itself");
    return hx_finish();
}

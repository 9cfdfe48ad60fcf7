/*
 * Points L4 slot 0 at the L4 itself, writable: a self-map through which
 * every table would be a writable page.
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
    table = hx_l4_mfn();
    target = hx_l4_mfn();
    if (hx_table(table)[0] != 0)
        return hx_setup_failed("the slot is in use", (long)hx_table(table)[0]);
    rc = hx_mmu1(hx_slot_maddr(table, 0), (target << 12) | HX_RW);
    hx_attempt(rc, hx_table(table)[0] == 0, "a writable L4 self-map");
    return hx_finish();
}

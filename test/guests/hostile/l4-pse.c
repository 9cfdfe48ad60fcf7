/*
 * Writes, in an empty L4 slot, an entry with PSE (reserved at L4) naming
 * its own L3.
 * Xen: -EINVAL.
 */
#include "hostile.h"

int main(start_info_t *si)
{
    unsigned long l4, l3;
    long rc;

    (void)si;
    if ((rc = hx_setup()))
        return (int)rc;
    l4 = hx_l4_mfn();
    l3 = hx_table_mfn(HX_VIRT_BASE, 3);
    if (hx_table(l4)[0] != 0)
        return hx_setup_failed("L4 slot 0 is in use", (long)hx_table(l4)[0]);
    rc = hx_mmu1(hx_slot_maddr(l4, 0), (l3 << 12) | HX_RW | _PAGE_PSE);
    hx_attempt(rc, hx_table(l4)[0] == 0, "a PSE entry in the L4");
    return hx_finish();
}

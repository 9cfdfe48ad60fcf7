/*
 * Writes, in an empty L3 slot, an entry with PSE set naming its own L2: a
 * 1 GiB superpage over whatever machine memory follows that frame.
 * Xen: -EINVAL.
 */
#include "hostile.h"

int main(start_info_t *si)
{
    unsigned long l3, l2;
    long rc;

    (void)si;
    if ((rc = hx_setup()))
        return (int)rc;
    l3 = hx_table_mfn(HX_VIRT_BASE, 3);
    l2 = hx_table_mfn(HX_VIRT_BASE, 2);
    if (hx_table(l3)[0] != 0)
        return hx_setup_failed("L3 slot 0 is in use", (long)hx_table(l3)[0]);
    rc = hx_mmu1(hx_slot_maddr(l3, 0), (l2 << 12) | HX_RW | _PAGE_PSE);
    hx_attempt(rc, hx_table(l3)[0] == 0, "a PSE entry in the L3");
    return hx_finish();
}

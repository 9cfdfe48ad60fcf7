/*
 * Hooks a frame number past machine memory into an empty slot of its L2.
 * Xen: -EINVAL (upper-level entries have no device-memory case).
 */
#include "hostile.h"

static int attack(void)
{
    unsigned long l2;
    long rc;

    l2 = hx_table_mfn(HX_VIRT_BASE, 2);
    if (hx_table(l2)[511] != 0)
        return hx_setup_failed("L2 slot 511 is in use", (long)hx_table(l2)[511]);
    rc = hx_mmu1(hx_slot_maddr(l2, 511), (HX_FAR_MFN << 12) | HX_RW);
    hx_attempt(rc, hx_table(l2)[511] == 0, "hooking a frame past machine memory into the L2");
    return 0;
}

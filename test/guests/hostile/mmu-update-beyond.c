/*
 * Aims an mmu_update store past machine memory (16 TiB up, and at the
 * last page a 52-bit machine address can name).
 * Xen: -EINVAL.
 */
#include "hostile.h"

static int attack(void)
{
    long rc;

    rc = hx_mmu1(HX_FAR_MFN << 12, 0);
    hx_attempt(rc, 1, "mmu_update 16 TiB up");
    rc = hx_mmu1(0x000ffffffffff000UL, 0);
    hx_attempt(rc, 1, "mmu_update at the top of the 52-bit machine address space");
    return 0;
}

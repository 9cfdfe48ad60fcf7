/*
 * mmu_update's ptr is a machine address: aims a store at the first word of
 * every frame the M2P shows belonging to another domain.
 * Xen: -EINVAL for each (ptr must name a frame of the page-table owner).
 */
#include "hostile.h"

static unsigned long foreign[4096];

static int attack(void)
{
    unsigned int i, n;
    long rc;

    n = hx_need_foreign(foreign, ARRAY_SIZE(foreign));
    if (n == 0)
        return 1;
    for (i = 0; i < n; i++) {
        rc = hx_mmu1((foreign[i] << 12) | MMU_NORMAL_PT_UPDATE, 0x4141414141414141UL);
        /* The victim's checksum, in the test, says whether anything landed. */
        hx_attempt(rc, 1, "mmu_update storing into another domain's frame");
    }
    return 0;
}

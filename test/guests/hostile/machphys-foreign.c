/*
 * MMU_MACHPHYS_UPDATE on every frame the M2P gives another domain: the
 * victim's M2P entries (which its kernel trusts) rewritten.
 * Xen: -EINVAL for each ("could not get page for mach->phys update"; its
 * -EPERM is for a foreign page-table owner).
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
        unsigned long before = hx_m2p()[foreign[i]];

        rc = hx_mmu1((foreign[i] << 12) | MMU_MACHPHYS_UPDATE, 7);
        hx_attempt(rc, hx_m2p()[foreign[i]] == before, "MMU_MACHPHYS_UPDATE of another domain's frame");
    }
    return 0;
}

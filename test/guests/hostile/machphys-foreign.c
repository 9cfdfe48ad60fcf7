/*
 * MMU_MACHPHYS_UPDATE on every frame the M2P gives another domain: the
 * victim's M2P entries (which its kernel trusts) rewritten.
 * Xen: -EINVAL for each ("could not get page for mach->phys update"; its
 * -EPERM is for a foreign page-table owner).
 */
#include "hostile.h"

static unsigned long foreign[4096];

int main(start_info_t *si)
{
    unsigned int i, n;
    long rc;

    (void)si;
    if ((rc = hx_setup()))
        return (int)rc;
    n = hx_foreign_frames(foreign, ARRAY_SIZE(foreign));
    if (n == 0)
        return hx_setup_failed("the M2P shows no other domain's frame", 0);
    for (i = 0; i < n; i++) {
        unsigned long before = hx_m2p()[foreign[i]];

        rc = hx_mmu1((foreign[i] << 12) | MMU_MACHPHYS_UPDATE, 7);
        hx_attempt(rc, hx_m2p()[foreign[i]] == before, "MMU_MACHPHYS_UPDATE of another domain's frame");
    }
    return hx_finish();
}

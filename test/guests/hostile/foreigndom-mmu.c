/*
 * mmu_update on behalf of the victim (foreigndom = its domain id): one of
 * its own L1 entries to map a victim frame read-write, as if the victim
 * owned the data pages.
 * Xen: -EPERM (an unprivileged domain may not act for another).
 */
#include "hostile.h"

static unsigned long foreign[1];

static int attack(void)
{
    mmu_update_t req;
    unsigned long va;
    uint64_t before;
    long rc;

    if (hx_need_foreign(foreign, 1) == 0)
        return 1;
    va = hx_scratch(0);
    before = hx_pte(va, 1);
    req.ptr = hx_pte_maddr(va, 1);
    req.val = (foreign[0] << 12) | HX_RW;
    rc = hx_mmu_update((unsigned long)&req, 1, 0, HX_VICTIM_DOMID);
    hx_attempt(rc, hx_pte(va, 1) == before, "mmu_update with foreigndom = the victim");
    return 0;
}

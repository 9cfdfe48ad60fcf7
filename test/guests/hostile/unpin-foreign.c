/*
 * Unpins other domains' frames (every frame the M2P gives another domain,
 * among them the victim's pinned L4) and the hypervisor's tables: an unpin
 * that worked would devalidate a table still in use.
 * Xen: -EINVAL for each (not the caller's frame).
 */
#include "hostile.h"

static unsigned long foreign[4096];

static int attack(void)
{
    const volatile uint64_t *l4;
    unsigned int slot, i, n;
    long rc;

    n = hx_need_foreign(foreign, ARRAY_SIZE(foreign));
    if (n == 0)
        return 1;
    for (i = 0; i < n; i++) {
        rc = hx_mmuext1(MMUEXT_UNPIN_TABLE, foreign[i], 0);
        hx_attempt(rc, 1, "unpinning another domain's frame");
    }
    l4 = hx_table(hx_l4_mfn());
    for (slot = HYPERVISOR_L4_FIRST_SLOT; slot <= HYPERVISOR_L4_LAST_SLOT; slot++) {
        if (!(l4[slot] & _PAGE_PRESENT))
            continue;
        rc = hx_mmuext1(MMUEXT_UNPIN_TABLE, hx_entry_mfn(l4[slot]), 0);
        hx_attempt(rc, 1, "unpinning a hypervisor table");
    }
    return 0;
}

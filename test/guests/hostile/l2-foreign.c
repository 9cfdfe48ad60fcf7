/*
 * Hooks another domain's frame into an empty slot of its L2, as an L1: the
 * victim's memory would be walked as page-table entries of the attacker.
 * Xen: -EINVAL (get_page_and_type_from_mfn: not the caller's frame).
 */
#include "hostile.h"

static unsigned long foreign[64];

static int attack(void)
{
    unsigned long l2;
    unsigned int i, n;
    long rc;

    n = hx_need_foreign(foreign, ARRAY_SIZE(foreign));
    if (n == 0)
        return 1;
    l2 = hx_table_mfn(HX_VIRT_BASE, 2);
    if (hx_table(l2)[511] != 0)
        return hx_setup_failed("L2 slot 511 is in use", (long)hx_table(l2)[511]);
    for (i = 0; i < n; i++) {
        rc = hx_mmu1(hx_slot_maddr(l2, 511), (foreign[i] << 12) | HX_RW);
        hx_attempt(rc, hx_table(l2)[511] == 0, "hooking another domain's frame into the L2");
    }
    return 0;
}

/*
 * Hooks a page it still maps writable (the scratch page) into an empty slot
 * of its L2, L3 and L4, as the next level's table.
 * Xen: -EINVAL for each.
 */
#include "hostile.h"

static int attack(void)
{
    static const int slot[5] = { 0, 0, 511, 0, 0 };
    unsigned long va, x;
    int level;
    long rc;

    va = hx_scratch(0);
    x = hx_virt_to_mfn(va);
    for (level = 2; level <= 4; level++) {
        unsigned long t = hx_table_mfn(HX_VIRT_BASE, level);

        if (hx_table(t)[slot[level]] != 0)
            return hx_setup_failed("the slot is in use", level);
        rc = hx_mmu1(hx_slot_maddr(t, slot[level]), (x << 12) | HX_RW);
        hx_attempt(rc, hx_table(t)[slot[level]] == 0, "hooking a writable page into a table");
    }
    return 0;
}

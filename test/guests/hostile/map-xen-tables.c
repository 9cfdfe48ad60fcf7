/*
 * Its L4's hypervisor slots (256-271) name the hypervisor's own tables:
 * the M2P's, and the per-domain area's (its GDT, TSS and ring-0 stack).
 * Maps each of those frames read-write, then read-only.
 * Xen: -EBUSY for each.
 */
#include "hostile.h"

static int attack(void)
{
    const volatile uint64_t *l4;
    unsigned long va;
    uint64_t before;
    unsigned int slot, n = 0;
    long rc;

    l4 = hx_table(hx_l4_mfn());
    va = hx_scratch(0);
    before = hx_pte(va, 1);
    for (slot = HYPERVISOR_L4_FIRST_SLOT; slot <= HYPERVISOR_L4_LAST_SLOT; slot++) {
        unsigned long t;

        if (!(l4[slot] & _PAGE_PRESENT))
            continue;
        t = hx_entry_mfn(l4[slot]);
        n++;
        rc = hx_update_va_mapping(va, (t << 12) | HX_RW, UVMF_INVLPG);
        hx_attempt(rc, hx_pte(va, 1) == before, "mapping a hypervisor table writable");
        rc = hx_update_va_mapping(va, (t << 12) | HX_RO, UVMF_INVLPG);
        hx_attempt(rc, hx_pte(va, 1) == before, "mapping a hypervisor table read-only");
    }
    if (n == 0)
        return hx_setup_failed("no hypervisor slot of the L4 is present", 0);
    return 0;
}

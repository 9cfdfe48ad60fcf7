/*
 * Aims mmu_update stores at the hypervisor's frames: the tables its L4's
 * hypervisor slots name (M2P, per-domain area), and every frame below its
 * own highest with no M2P entry that is not its own.
 * Xen: -EINVAL for each.
 */
#include "hostile.h"

static unsigned long unowned[4096];

static int attack(void)
{
    const volatile uint64_t *l4;
    unsigned int slot, i, n;
    long rc;

    l4 = hx_table(hx_l4_mfn());
    for (slot = HYPERVISOR_L4_FIRST_SLOT; slot <= HYPERVISOR_L4_LAST_SLOT; slot++) {
        if (!(l4[slot] & _PAGE_PRESENT))
            continue;
        /* Entry 0 of the M2P's or the per-domain area's L3: the rc says whether it landed. */
        rc = hx_mmu1(hx_slot_maddr(hx_entry_mfn(l4[slot]), 0), 0);
        hx_attempt(rc, 1, "mmu_update on a hypervisor table");
    }
    n = hx_unowned_frames(unowned, ARRAY_SIZE(unowned));
    for (i = 0; i < n; i++) {
        rc = hx_mmu1(hx_slot_maddr(unowned[i], 0), 0);
        hx_attempt(rc, 1, "mmu_update on a frame with no M2P entry");
    }
    return 0;
}

/*
 * Rewrites each of its L4's hypervisor slots (256-271) with mmu_update: to
 * one of its own L3s (taking over the M2P's or the per-domain area's
 * addresses: its GDT, TSS and ring-0 stack), and to empty.
 * Xen: -EINVAL for each (an L4 update in the Xen-private area).
 */
#include "hostile.h"

static int attack(void)
{
    const volatile uint64_t *t;
    unsigned long l4, l3;
    unsigned int slot;
    long rc;

    l4 = hx_l4_mfn();
    l3 = hx_table_mfn(HX_VIRT_BASE, 3);
    t = hx_table(l4);
    for (slot = HYPERVISOR_L4_FIRST_SLOT; slot <= HYPERVISOR_L4_LAST_SLOT; slot++) {
        uint64_t before = t[slot];

        rc = hx_mmu1(hx_slot_maddr(l4, slot), (l3 << 12) | HX_RW);
        hx_attempt(rc, t[slot] == before, "pointing a hypervisor L4 slot at its own L3");
        rc = hx_mmu1(hx_slot_maddr(l4, slot) | MMU_PT_UPDATE_PRESERVE_AD, (l3 << 12) | HX_RO);
        hx_attempt(rc, t[slot] == before, "the same with PRESERVE_AD");
        rc = hx_mmu1(hx_slot_maddr(l4, slot), 0);
        hx_attempt(rc, t[slot] == before, "clearing a hypervisor L4 slot");
    }
    return 0;
}

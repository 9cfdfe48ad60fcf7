/*
 * The boot mapping of the L4 is read-only: set just its RW bit, the one
 * change a fast path that skips revalidation for "harmless" bits could let
 * through (XSA-182's class), with a plain and a PRESERVE_AD update.
 * Xen: -EBUSY.
 */
#include "hostile.h"

static int attack(void)
{
    unsigned long va;
    uint64_t before;
    long rc;

    va = start_info->pt_base;
    before = hx_pte(va, 1);
    if (!(before & _PAGE_PRESENT) || (before & _PAGE_RW) || hx_entry_mfn(before) != hx_l4_mfn())
        return hx_setup_failed("pt_base is not mapped read-only to the L4", (long)before);
    rc = hx_mmu1(hx_pte_maddr(va, 1) | MMU_NORMAL_PT_UPDATE, before | _PAGE_RW);
    hx_attempt(rc, hx_pte(va, 1) == before, "mmu_update setting RW on the L4's mapping");
    rc = hx_mmu1(hx_pte_maddr(va, 1) | MMU_PT_UPDATE_PRESERVE_AD, before | _PAGE_RW);
    hx_attempt(rc, hx_pte(va, 1) == before, "PRESERVE_AD update setting RW on the L4's mapping");
    rc = hx_update_va_mapping(va, before | _PAGE_RW, UVMF_INVLPG);
    hx_attempt(rc, hx_pte(va, 1) == before, "update_va_mapping setting RW on the L4's mapping");
    return 0;
}

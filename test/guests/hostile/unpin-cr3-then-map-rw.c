/*
 * Unpins the L4 that is still its CR3 (allowed: CR3 holds its own type
 * reference), then asks for a writable mapping of it, hoping the unpin
 * left it an ordinary page.
 * Xen: the unpin succeeds; the mapping is -EBUSY (it is still an L4).
 */
#include "hostile.h"

static int attack(void)
{
    unsigned long va, l4;
    uint64_t before;
    long rc;

    va = hx_scratch(0);
    l4 = hx_l4_mfn();
    before = hx_pte(va, 1);
    rc = hx_mmuext1(MMUEXT_UNPIN_TABLE, l4, 0);
    if (rc != 0)
        return hx_setup_failed("MMUEXT_UNPIN_TABLE of the boot L4 failed", rc);
    rc = hx_update_va_mapping(va, (l4 << 12) | HX_RW, UVMF_INVLPG);
    hx_attempt(rc, hx_pte(va, 1) == before, "update_va_mapping mapping the unpinned CR3 writable");
    rc = hx_mmu1(hx_pte_maddr(va, 1), (l4 << 12) | HX_RW);
    hx_attempt(rc, hx_pte(va, 1) == before, "mmu_update mapping the unpinned CR3 writable");
    return 0;
}

/*
 * Takes the valid L2 entry that maps the scratch pages' 2 MiB and sets
 * PSE: the L1 it names would become a 2 MiB superpage over whatever frames
 * follow it (XSA-148: a fast path that let PSE change).
 * Xen: -EINVAL (PSE is refused in PV L2 entries).
 */
#include "hostile.h"

static int attack(void)
{
    unsigned long va;
    uint64_t before;
    long rc;

    va = hx_scratch(0);
    /* That 2 MiB must hold neither the kernel, nor the boot tables, nor the stack. */
    if (hx_2m_in_use(va, &rc, 0))
        return hx_setup_failed("the scratch pages share their 2 MiB with the kernel", (long)va);
    before = hx_pte(va, 2);
    rc = hx_mmu1(hx_pte_maddr(va, 2), before | _PAGE_PSE);
    hx_attempt(rc, hx_pte(va, 2) == before, "setting PSE on a valid L2 entry");
    rc = hx_mmu1(hx_pte_maddr(va, 2) | MMU_PT_UPDATE_PRESERVE_AD, before | _PAGE_PSE);
    hx_attempt(rc, hx_pte(va, 2) == before, "setting PSE on a valid L2 entry, PRESERVE_AD");
    return 0;
}

/*
 * Maps machine frame 0 read-write (here the first frame of the M2P table;
 * on hardware, firmware memory).
 * Xen: -EBUSY (a RAM frame the caller does not own).
 */
#include "hostile.h"

static int attack(void)
{
    unsigned long va;
    uint64_t before;
    long rc;

    if (hx_own(0))
        return hx_setup_failed("frame 0 is this domain's", 0);
    va = hx_scratch(0);
    before = hx_pte(va, 1);
    rc = hx_mmu1(hx_pte_maddr(va, 1), (0UL << 12) | HX_RW);
    hx_attempt(rc, hx_pte(va, 1) == before, "mmu_update mapping frame 0");
    rc = hx_update_va_mapping(va, (0UL << 12) | HX_RW, UVMF_INVLPG);
    hx_attempt(rc, hx_pte(va, 1) == before, "update_va_mapping mapping frame 0");
    return 0;
}

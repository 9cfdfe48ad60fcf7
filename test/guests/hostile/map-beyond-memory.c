/*
 * Maps a frame 16 TiB up, far past machine memory: not RAM, so it would be
 * device memory, which an unprivileged domain may not map.
 * Xen: -EPERM (no I/O memory access).
 */
#include "hostile.h"

static int attack(void)
{
    unsigned long va;
    uint64_t before;
    long rc;

    va = hx_scratch(0);
    before = hx_pte(va, 1);
    rc = hx_update_va_mapping(va, (HX_FAR_MFN << 12) | HX_RW, UVMF_INVLPG);
    hx_attempt(rc, hx_pte(va, 1) == before, "mapping a frame past machine memory");
    rc = hx_mmu1(hx_pte_maddr(va, 1), (HX_FAR_MFN << 12) | HX_RO);
    hx_attempt(rc, hx_pte(va, 1) == before, "mmu_update mapping a frame past machine memory");
    return 0;
}

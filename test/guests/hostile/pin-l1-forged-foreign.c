/*
 * Prepares a frame whose entries map another domain's frames (found in the
 * M2P) read-write, and pins it as an L1: validation must check every
 * entry's frame belongs to the pinning domain.
 * Xen: -EBUSY (an L1 entry naming a frame the domain does not own).
 */
#include "hostile.h"

static unsigned long foreign[64];

static int attack(void)
{
    unsigned long va, x;
    volatile uint64_t *page;
    unsigned int i, n;
    long rc;

    n = hx_need_foreign(foreign, 64);
    if (n == 0)
        return 1;
    va = hx_scratch(0);
    x = hx_virt_to_mfn(va);
    page = (volatile uint64_t *)va;
    for (i = 0; i < n; i++)
        page[i] = (foreign[i] << 12) | HX_RW;
    rc = hx_update_va_mapping(va, (x << 12) | HX_RO, UVMF_INVLPG);
    if (rc != 0)
        return hx_setup_failed("could not map the prepared frame read-only", rc);
    rc = hx_mmuext1(MMUEXT_PIN_L1_TABLE, x, 0);
    hx_attempt(rc, hx_still_writable(va, x),
               "pinning as L1 a frame that maps another domain's frames");
    return 0;
}

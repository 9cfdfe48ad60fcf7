/*
 * Prepares a frame whose entry 7 maps the frame itself read-write, drops
 * its own writable mapping of it, and pins it as an L1: validation would
 * then hand it a writable mapping of a page table.
 * Xen: -EBUSY (validating the entry needs a writable type on a frame that
 * is becoming an L1).
 */
#include "hostile.h"

static int attack(void)
{
    unsigned long va, x;
    volatile uint64_t *page;
    long rc;

    va = hx_scratch(0);
    x = hx_virt_to_mfn(va);
    page = (volatile uint64_t *)va;
    page[7] = (x << 12) | HX_RW;
    rc = hx_update_va_mapping(va, (x << 12) | HX_RO, UVMF_INVLPG);
    if (rc != 0)
        return hx_setup_failed("could not map the prepared frame read-only", rc);
    rc = hx_mmuext1(MMUEXT_PIN_L1_TABLE, x, 0);
    /* Still an ordinary page: it can be mapped writable again. */
    hx_attempt(rc, hx_still_writable(va, x),
               "pinning as L1 a frame that maps itself writable");
    return 0;
}

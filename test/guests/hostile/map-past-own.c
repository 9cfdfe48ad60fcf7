/*
 * Guesses that the frames just past its own highest are somebody's, and
 * maps the next 16 read-write.
 * Xen: -EBUSY for each (free frames and other owners' alike).
 */
#include "hostile.h"

static int attack(void)
{
    unsigned long va, mfn, top;
    uint64_t before;
    long rc;

    va = hx_scratch(0);
    before = hx_pte(va, 1);
    top = hx_own_max();
    for (mfn = top + 1; mfn <= top + 16; mfn++) {
        rc = hx_update_va_mapping(va, (mfn << 12) | HX_RW, UVMF_INVLPG);
        hx_attempt(rc, hx_pte(va, 1) == before, "mapping a frame past its own");
    }
    return 0;
}

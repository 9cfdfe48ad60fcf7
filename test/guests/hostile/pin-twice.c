/*
 * Pins its L4 again (the domain builder pinned it): pins are not counted,
 * so a second pin that worked would let one unpin leave a pin behind or
 * two unpins drop a reference that CR3 holds.
 * Xen: -EINVAL.
 */
#include "hostile.h"

static int attack(void)
{
    long rc;

    rc = hx_mmuext1(MMUEXT_PIN_L4_TABLE, hx_l4_mfn(), 0);
    hx_attempt(rc, 1, "pinning the pinned L4 again");
    return 0;
}

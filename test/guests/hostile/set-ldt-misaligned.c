/*
 * MMUEXT_SET_LDT with a base that is not page aligned (an LDT page would
 * then straddle two frames the hypervisor types separately).
 * Xen: -EINVAL.
 */
#include "hostile.h"

static int attack(void)
{
    long rc;

    rc = hx_mmuext1(MMUEXT_SET_LDT, hx_scratch(1) + 8, 1);
    hx_attempt(rc, 1, "SET_LDT at base + 8");
    rc = hx_mmuext1(MMUEXT_SET_LDT, hx_scratch(1) + 0x800, 16);
    hx_attempt(rc, 1, "SET_LDT at base + 0x800");
    return 0;
}

/*
 * MMUEXT_SET_LDT with more entries than an LDT holds (8192): 8193, and
 * 0xffffffff.
 * Xen: -EINVAL.
 */
#include "hostile.h"

static int attack(void)
{
    long rc;

    rc = hx_mmuext1(MMUEXT_SET_LDT, hx_scratch(16), 8193);
    hx_attempt(rc, 1, "SET_LDT with 8193 entries");
    rc = hx_mmuext1(MMUEXT_SET_LDT, hx_scratch(16), 0xffffffffUL);
    hx_attempt(rc, 1, "SET_LDT with 0xffffffff entries");
    return 0;
}

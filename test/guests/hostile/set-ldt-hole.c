/*
 * MMUEXT_SET_LDT with its base where no guest address is: the hypervisor's
 * area (the M2P, wherever it is readable; the per-domain area with the
 * GDT) and the first non-canonical address.
 * Xen: -EINVAL for each.
 */
#include "hostile.h"

static int attack(void)
{
    const unsigned long base[] = {
        HX_HOLE_M2P, (unsigned long)hx_m2p(), 0xffff808000000000UL, HX_NON_CANONICAL,
    };
    unsigned int i;
    long rc;

    for (i = 0; i < ARRAY_SIZE(base); i++) {
        rc = hx_mmuext1(MMUEXT_SET_LDT, base[i], 1);
        hx_attempt(rc, 1, "SET_LDT outside guest addresses");
    }
    return 0;
}

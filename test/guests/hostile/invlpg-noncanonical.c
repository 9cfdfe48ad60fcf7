/*
 * MMUEXT_INVLPG_LOCAL, _MULTI and _ALL at non-canonical addresses and in
 * the hypervisor's area (XSA-279's shape: a hypervisor that executed
 * INVLPG or INVPCID on such an address took a fault itself).
 * Xen: 0 for each; the address is ignored, not flushed. The line says
 * "refused ...: 0" when the guest is still running afterwards.
 */
#include "hostile.h"

static int attack(void)
{
    const unsigned long va[] = { HX_NON_CANONICAL, 0x8000000000000000UL, HX_HOLE_M2P, HX_HOLE_RING0_STACK };
    static const unsigned int cmd[] = { MMUEXT_INVLPG_LOCAL, MMUEXT_INVLPG_MULTI, MMUEXT_INVLPG_ALL };
    static unsigned long vcpus = 1;   /* the vCPU bitmap of INVLPG_MULTI: vCPU 0 */
    unsigned int i, j;
    long rc;

    for (i = 0; i < ARRAY_SIZE(va); i++)
        for (j = 0; j < ARRAY_SIZE(cmd); j++) {
            rc = hx_mmuext1(cmd[j], va[i], cmd[j] == MMUEXT_INVLPG_MULTI ? (unsigned long)&vcpus : 0);
            hx_attempt_any(rc, 1, "INVLPG at an address that is not the guest's");
        }
    return 0;
}

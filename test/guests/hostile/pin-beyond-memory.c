/*
 * Pins, at each level, a frame number past machine memory (the page-type
 * state of a frame that does not exist).
 * Xen: -EINVAL for each.
 */
#include "hostile.h"

static int attack(void)
{
    unsigned int cmd;
    long rc;

    for (cmd = MMUEXT_PIN_L1_TABLE; cmd <= MMUEXT_PIN_L4_TABLE; cmd++) {
        rc = hx_mmuext1(cmd, HX_FAR_MFN, 0);
        hx_attempt(rc, 1, "pinning a frame past machine memory");
        rc = hx_mmuext1(cmd, ~0UL, 0);
        hx_attempt(rc, 1, "pinning frame ~0");
    }
    return 0;
}

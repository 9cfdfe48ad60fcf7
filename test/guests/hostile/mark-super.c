/*
 * MMUEXT_MARK_SUPER and UNMARK_SUPER with frame 0xffffffffffe00000 (XTF's
 * xsa-167: the frame number indexed a table unchecked).
 * Xen: -EOPNOTSUPP (PV superpages are gone).
 */
#include "hostile.h"

static int attack(void)
{
    long rc;

    rc = hx_mmuext1(MMUEXT_MARK_SUPER, 0xffffffffffe00000UL, 0);
    hx_attempt(rc, 1, "MMUEXT_MARK_SUPER");
    rc = hx_mmuext1(MMUEXT_UNMARK_SUPER, 0xffffffffffe00000UL, 0);
    hx_attempt(rc, 1, "MMUEXT_UNMARK_SUPER");
    return 0;
}

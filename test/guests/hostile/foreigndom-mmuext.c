/*
 * mmuext_op on behalf of the victim (foreigndom = its domain id): pin one
 * of its frames as an L1, and load one as the caller's root.
 * Xen: -EPERM for each.
 */
#include "hostile.h"

static unsigned long foreign[1];

static int attack(void)
{
    struct mmuext_op op;
    long rc;

    if (hx_need_foreign(foreign, 1) == 0)
        return 1;
    memset(&op, 0, sizeof(op));
    op.cmd = MMUEXT_PIN_L1_TABLE;
    op.arg1.mfn = foreign[0];
    rc = hx_mmuext_op((unsigned long)&op, 1, 0, HX_VICTIM_DOMID);
    hx_attempt(rc, 1, "MMUEXT_PIN_L1_TABLE with foreigndom = the victim");
    op.cmd = MMUEXT_NEW_BASEPTR;
    rc = hx_mmuext_op((unsigned long)&op, 1, 0, HX_VICTIM_DOMID);
    hx_attempt(rc, 1, "MMUEXT_NEW_BASEPTR with foreigndom = the victim");
    return 0;
}

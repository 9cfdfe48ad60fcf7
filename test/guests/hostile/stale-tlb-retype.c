/*
 * A stale translation as a way in. It writes through its writable mapping
 * of frame X (so the CPU caches it), moves that address to frame Y without
 * asking for a flush (UVMF_NONE), pins X as an L1 (allowed: X has no
 * writable mapping left), and writes through the address again. If the
 * hypervisor left the old translation in place, the store lands in X, a
 * validated L1. Both stores are non-present entries, so nothing breaks if
 * it does. Xen flushes when X's type changes; paravane when a present
 * entry changes.
 * Xen: 0 and the second store in Y. The line says "refused ...: 0" then.
 */
#include "hostile.h"

static int attack(void)
{
    volatile uint64_t *p;
    unsigned long va, x, y;
    long rc;

    va = hx_scratch(0);
    p = (volatile uint64_t *)va;
    x = hx_virt_to_mfn(va);
    y = hx_virt_to_mfn(hx_scratch(1));
    if ((rc = hx_stale_first(p)))
        return (int)rc;
    rc = hx_update_va_mapping(va, (y << 12) | HX_RW, UVMF_NONE);
    if (rc != 0)
        return hx_setup_failed("could not move the scratch address to another frame", rc);
    return hx_stale_store(p, x, "a store through a translation the hypervisor should have dropped");
}
